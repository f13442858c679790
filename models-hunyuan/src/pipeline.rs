//! Prompt to video: diffusers' `HunyuanVideoPipeline` (LLaMA prompt encoding in the chat
//! template and CLIP's pooled embedding, flow-match Euler sampling with embedded guidance, one
//! transformer call a step behind a cache session, HunyuanVideo VAE decoding, whole or in
//! tiles), from a diffusers-layout folder.

use std::path::{Path, PathBuf};

use burn::tensor::{Int, Tensor, TensorData, backend::Backend};
use dicache_core::CacheSettings;
use dit_layers::{DiffusionTransformer, SparseVideoModel, SparseVideoSettings, SvgVariant};
use dit_pipeline::{
    ClipPooled, Denoising, Job, LatentGeometry, LoadOptions, ModelSizes, Passes, PipelineFolder,
    TextEncoders, check_finite,
};
pub use dit_pipeline::{Output, Pipeline, PipelineError, Prompt, Request, Settings};
use schedulers::FlowMatchEulerDiscreteScheduler;
use text_encoders::{LlamaModel, LlamaPromptEncoder};
use vae::{HunyuanVideoVae, TileConfig};

use crate::{HunyuanVideoInput, HunyuanVideoPrepared, HunyuanVideoTransformer};

/// A HunyuanVideo generation request; its extra setting is how the VAE decodes: an axis is
/// tiled only when the clip is longer than one tile along it, so small videos decode in one
/// pass whatever the tiles. [`TileConfig::default`] is diffusers after `vae.enable_tiling()` (as
/// HunyuanVideo's own example runs it: 17 frames of 256x256 at a time, for videos too large for
/// one pass); `TileConfig { spatial: None, temporal: Some(TemporalTiles::default()) }` is the
/// pipeline without `enable_tiling` (framewise decoding only); no tiles at all is one pass of
/// the decoder.
///
/// [`TemporalTiles::default()`]: vae::TemporalTiles
pub type HunyuanVideoRequest<B> = Request<B, 5, TileConfig>;
/// A HunyuanVideo generation's output: `latents`
/// `[samples, 16, (frames-1)/4+1, height/8, width/8]` before the VAE's scaling factor is
/// undone, the videos `[samples, 3, frames, height, width]`.
pub type HunyuanVideoOutput<B> = Output<B, 5>;
/// The HunyuanVideo denoising loop: flow-match Euler sampling of latent videos.
pub type HunyuanVideoDenoiser<'a, B> = Denoising<
    'a,
    B,
    HunyuanVideoTransformer<B>,
    HunyuanVideoInput<B>,
    HunyuanVideoPrepared<B>,
    FlowMatchEulerDiscreteScheduler,
    5,
    5,
>;
/// A request ready to join a [HunyuanVideoDenoiser]: its encoded prompts, noise and sampler.
pub type HunyuanVideoJob<B> =
    Job<B, HunyuanVideoInput<B>, HunyuanVideoPrepared<B>, FlowMatchEulerDiscreteScheduler, 5, 5>;

/// The HunyuanVideo text-to-video pipeline: LLaMA and CLIP text encoders with their
/// tokenizers, transformer, VAE, scheduler.
pub struct HunyuanVideoPipeline<B: Backend> {
    scheduler: FlowMatchEulerDiscreteScheduler,
    /// The LLaMA tokenizer's folder: the prompt encoding is built per request, for the
    /// request's prompt length.
    llama_tokenizer: PathBuf,
    encoders: TextEncoders<HunyuanVideoTextEncoders<B>>,
    transformer: HunyuanVideoTransformer<B>,
    vae: HunyuanVideoVae<B>,
    device: B::Device,
}

/// HunyuanVideo's text encoders: LLaMA (LLaVA-LLaMA-3's language model) and CLIP (pooled).
struct HunyuanVideoTextEncoders<B: Backend> {
    llama: LlamaModel<B>,
    clip: ClipPooled<B>,
}

impl<B: Backend> HunyuanVideoPipeline<B> {
    /// The transformer.
    pub fn transformer(&self) -> &HunyuanVideoTransformer<B> {
        &self.transformer
    }

    /// Both text encoders' embeddings of each prompt, encoded on its own (the pipeline's
    /// `encode_prompt`), a row per sample.
    fn encode_prompts(
        &self,
        encoders: &HunyuanVideoTextEncoders<B>,
        prompts: &[Prompt],
        max_sequence_length: usize,
    ) -> Result<PromptEmbeds<B>, PipelineError> {
        let encoder =
            LlamaPromptEncoder::hunyuan_video(&self.llama_tokenizer, max_sequence_length)?;
        let (mut text, mut mask, mut pooled) = (Vec::new(), Vec::new(), Vec::new());
        for prompt in prompts {
            let llama = encoder.encode(&encoders.llama, &[&prompt.text], &self.device)?;
            check_finite(&llama.embeds, || "the LLaMA text encoder's output".into())?;
            text.push(llama.embeds);
            mask.push(llama.mask);
            pooled.push(encoders.clip.encode(&prompt.text, &self.device)?);
        }
        Ok(PromptEmbeds {
            text: Tensor::cat(text, 0),
            mask: Tensor::cat(mask, 0),
            pooled: Tensor::cat(pooled, 0),
        })
    }
}

impl<B: Backend> Pipeline<B, 5> for HunyuanVideoPipeline<B> {
    const NAME: &'static str = "HunyuanVideo";
    const CLASS_NAME: &'static str = "HunyuanVideoPipeline";
    /// A bound on the LLaMA prompt's cost; diffusers' default is 256.
    const MAX_SEQUENCE_LENGTH: usize = 1024;
    /// Twice 1280x720 x 129 frames.
    const MAX_IMAGE_TOKENS: usize = 237_600;
    /// HunyuanVideoPipeline's defaults: 1280x720, 129 frames, 50 steps, embedded guidance 6,
    /// LLaMA prompt length 256 (tokens after the template's crop).
    const DEFAULTS: Settings = Settings {
        width: 1280,
        height: 720,
        frames: 129,
        steps: 50,
        guidance: Some(6.0),
        max_sequence_length: 256,
    };
    const NEGATIVE_PROMPT: bool = false;
    type Extra = TileConfig;
    type Job = HunyuanVideoJob<B>;
    type Denoiser<'a> = HunyuanVideoDenoiser<'a, B>;
    const T5_COMPONENT: Option<&'static str> = None;
    const SPARSE_VIDEO: Option<SvgVariant> = Some(SvgVariant::HunyuanVideo);

    fn set_sparse_attention(
        &mut self,
        settings: Option<SparseVideoSettings>,
    ) -> Result<(), PipelineError> {
        Ok(self.transformer.set_sparse_attention(settings)?)
    }

    /// Loads a diffusers-layout HunyuanVideo pipeline folder (`model_index.json`, `scheduler/`,
    /// `tokenizer/` and `text_encoder/` (LLaMA), `tokenizer_2/` and `text_encoder_2/` (CLIP),
    /// `transformer/`, `vae/`); `options` may replace its `transformer/` with a single-file
    /// checkpoint in Tencent's original layout (safetensors or a GGUF conversion). It has no
    /// T5 encoder to replace.
    fn load_with(
        folder: &Path,
        options: LoadOptions<'_>,
        device: &B::Device,
    ) -> Result<Self, PipelineError> {
        if options.t5.is_some() {
            return Err(PipelineError::Request(format!(
                "{} has no T5 text encoder to replace (its text encoders are LLaMA and CLIP)",
                Self::NAME
            )));
        }
        let folder = PipelineFolder::open_as(folder, Self::CLASS_NAME)?;
        let scheduler = FlowMatchEulerDiscreteScheduler::from_file(&folder.scheduler_config()?)?;
        let encoders = {
            let (folder, device) = (folder.clone(), device.clone());
            TextEncoders::new(options.text_encoders, move || {
                Ok(HunyuanVideoTextEncoders {
                    llama: LlamaModel::load(
                        &folder.component("text_encoder", "the LLaMA text encoder")?,
                        &device,
                    )?,
                    clip: ClipPooled::load(&folder, "tokenizer_2", "text_encoder_2", &device)?,
                })
            })?
        };
        Ok(Self {
            scheduler,
            llama_tokenizer: folder.component("tokenizer", "the LLaMA tokenizer")?,
            encoders,
            transformer: folder.load_transformer(
                options.transformer,
                "the HunyuanVideo transformer",
                device,
            )?,
            vae: HunyuanVideoVae::load(&folder.component("vae", "the HunyuanVideo VAE")?, device)?,
            device: device.clone(),
        })
    }

    /// HunyuanVideo's VAE (8x, 4 frames per latent frame after the first) and the
    /// transformer's patch: the pipeline asks for multiples of 16 pixels (`check_inputs`).
    fn geometry(&self) -> LatentGeometry {
        let (vae, config) = (&self.vae, self.transformer.config());
        LatentGeometry::video(
            [vae.temporal_scale_factor(), vae.spatial_scale_factor()],
            config.patch(),
            config.in_channels,
            "HunyuanVideo VAE",
        )
    }

    fn model_sizes(&self) -> ModelSizes {
        let c = self.transformer.config();
        let hidden = c.num_attention_heads * c.attention_head_dim;
        ModelSizes {
            hidden,
            mlp_hidden: (hidden as f64 * c.mlp_ratio) as usize,
            decoder_channels: self.vae.decoder_channels(),
        }
    }

    /// One tile at a time: its frames (with the one it shares) times its area.
    fn decoded_at_once(&self, s: &Settings, tiles: &TileConfig) -> usize {
        let frames = tiles
            .temporal
            .map_or(s.frames, |t| (t.min_frames + 1).min(s.frames));
        let area = tiles.spatial.map_or(s.width * s.height, |t| {
            t.min_width.min(s.width) * t.min_height.min(s.height)
        });
        frames * area
    }

    /// One transformer call a step, the guidance embedded.
    fn denoiser(
        &self,
        cache: &CacheSettings,
    ) -> Result<HunyuanVideoDenoiser<'_, B>, PipelineError> {
        Denoising::new(&self.transformer, cache, |t| t)
    }

    fn prepare(
        &self,
        request: &HunyuanVideoRequest<B>,
    ) -> Result<HunyuanVideoJob<B>, PipelineError> {
        let s = &request.settings;
        let samples = request.prompts.len();
        let prompt = self.encoders.with(|encoders| {
            self.encode_prompts(encoders, &request.prompts, s.max_sequence_length)
        })?;
        // `torch.tensor([guidance_scale]) * 1000.0` in the transformer's dtype; a model without
        // a guidance embedding ignores it, so it gets none.
        let guidance = s.guidance.or(Self::DEFAULTS.guidance).unwrap_or_default();
        let guidance = self.transformer.config().guidance_embeds.then(|| {
            Tensor::<B, 1>::from_data(
                TensorData::new(vec![guidance as f32 * 1000.0; samples], [samples]),
                &self.device,
            )
        });
        let input = self.transformer.check_input(HunyuanVideoInput {
            latents: request.noise.clone(),
            timestep: Tensor::zeros([samples], &self.device),
            encoder_hidden_states: prompt.text,
            encoder_attention_mask: prompt.mask,
            pooled_projections: prompt.pooled,
            guidance,
        })?;
        let mut sampler = self.scheduler.clone();
        sampler.set_timesteps(s.steps, Some(unshifted_sigmas(s.steps)), None)?;
        Ok(Job::new(
            *s,
            request.noise.clone(),
            Passes::Single(input),
            sampler,
            |l| l,
        ))
    }

    fn decode(
        &self,
        latents: Tensor<B, 5>,
        tiles: &TileConfig,
    ) -> Result<Tensor<B, 5>, PipelineError> {
        Ok(self
            .vae
            .decode_tiled(self.vae.unscale_latents(latents)?, tiles)?)
    }
}

/// The prompts as the transformer takes them, a row per sample.
struct PromptEmbeds<B: Backend> {
    /// LLaMA's templated hidden states `[samples, max_len, text_embed_dim]` (`prompt_embeds`).
    text: Tensor<B, 3>,
    /// `[samples, max_len]`, 1 for a prompt's tokens, 0 for padding (`prompt_attention_mask`).
    mask: Tensor<B, 2, Int>,
    /// CLIP's pooled embeddings `[samples, pooled_projection_dim]` (`pooled_prompt_embeds`).
    pooled: Tensor<B, 2>,
}

/// HunyuanVideoPipeline's sigmas before the scheduler's shift:
/// `linspace(1, 0, steps + 1)` without the final 0.
fn unshifted_sigmas(steps: usize) -> Vec<f64> {
    let mut sigmas = schedulers::linspace(1.0, 0.0, steps + 1);
    sigmas.pop();
    sigmas
}

#[cfg(test)]
mod tests {
    use super::unshifted_sigmas;

    #[test]
    fn sigmas_run_from_one_down_to_one_step_above_zero() {
        assert_eq!(unshifted_sigmas(4), vec![1.0, 0.75, 0.5, 0.25]);
        assert_eq!(unshifted_sigmas(1), vec![1.0]);
    }
}
