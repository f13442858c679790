//! Prompt to video: diffusers' `WanPipeline` for WAN 2.1 text-to-video (umT5 prompt encoding,
//! UniPC flow sampling with classifier-free guidance, each CFG pass behind its own cache state,
//! Wan VAE decoding), from a diffusers-layout folder.

use std::path::{Path, PathBuf};

use burn::tensor::{Tensor, backend::Backend};
use dicache_core::CacheSettings;
use dit_layers::{DiffusionTransformer, SparseVideoModel, SparseVideoSettings, SvgVariant};
use dit_pipeline::{
    Denoising, Job, LatentGeometry, LoadOptions, ModelSizes, Passes, PipelineFolder, TextEncoders,
    check_finite,
};
pub use dit_pipeline::{GuidanceCalls, Output, Pipeline, PipelineError, Prompt, Request, Settings};
use schedulers::{UniPcMultistepConfig, UniPcMultistepScheduler};
use text_encoders::{PromptTokenizer, T5EncoderModel};
use vae::WanVae;

use crate::{WanInput, WanPrepared, WanTransformer};

/// A WAN generation request: videos; its extra setting is how the two guidance passes run.
pub type WanRequest<B> = Request<B, 5, GuidanceCalls>;
/// A WAN generation's output: `latents` `[samples, 16, (frames-1)/4+1, height/8, width/8]`
/// before the VAE's per-channel mean and deviation are applied, the videos
/// `[samples, 3, frames, height, width]`; the traces have the cond and uncond passes' calls.
pub type WanOutput<B> = Output<B, 5>;
/// The WAN 2.1 denoising loop: UniPC multistep sampling of latent videos.
pub type WanDenoiser<'a, B> = Denoising<
    'a,
    B,
    WanTransformer<B>,
    WanInput<B>,
    WanPrepared<B>,
    UniPcMultistepScheduler<B, 5>,
    5,
    5,
>;
/// A request ready to join a [WanDenoiser]: its encoded prompts, noise and sampler.
pub type WanJob<B> = Job<B, WanInput<B>, WanPrepared<B>, UniPcMultistepScheduler<B, 5>, 5, 5>;

/// The WAN 2.1 text-to-video pipeline: tokenizer, umT5 encoder, transformer, VAE, scheduler.
pub struct WanPipeline<B: Backend> {
    /// Each generation gets a fresh multistep scheduler of this configuration.
    scheduler: UniPcMultistepConfig,
    /// The tokenizer's folder: it is built per request, for the request's prompt length.
    tokenizer: PathBuf,
    text_encoder: TextEncoders<T5EncoderModel<B>>,
    transformer: WanTransformer<B>,
    vae: WanVae<B>,
    device: B::Device,
}

impl<B: Backend> WanPipeline<B> {
    /// The transformer.
    pub fn transformer(&self) -> &WanTransformer<B> {
        &self.transformer
    }

    /// The classifier-free guidance scale of `settings`: WanPipeline's default when none is
    /// given (no scale at all would be no guidance: the conditional pass alone).
    fn guidance_scale(settings: &Settings) -> f64 {
        let default = <Self as Pipeline<B, 5>>::DEFAULTS.guidance;
        settings.guidance.or(default).unwrap_or(1.0)
    }

    /// umT5 hidden states `[samples, max_len, 4096]` of the cleaned prompts, each encoded on
    /// its own and zero past its tokens (WanPipeline cuts each embedding at the prompt's length
    /// and pads it with zeros); `tokenizer` pads to the request's prompt length.
    fn encode_prompts<'a>(
        &self,
        encoder: &T5EncoderModel<B>,
        tokenizer: &PromptTokenizer,
        prompts: impl Iterator<Item = &'a str>,
    ) -> Result<Tensor<B, 3>, PipelineError> {
        let mut embeddings = Vec::new();
        for prompt in prompts {
            let tokens = tokenizer.encode(&[clean_prompt(prompt).as_str()])?;
            let mask = tokens.mask_tensor::<B>(&self.device);
            let hidden =
                encoder.forward(tokens.ids_tensor::<B>(&self.device), Some(mask.clone()))?;
            check_finite(&hidden, || "the umT5 text encoder's output".into())?;
            embeddings.push(hidden * mask.float().unsqueeze_dim::<3>(2));
        }
        Ok(Tensor::cat(embeddings, 0))
    }
}

impl<B: Backend> Pipeline<B, 5> for WanPipeline<B> {
    const NAME: &'static str = "WAN";
    const CLASS_NAME: &'static str = "WanPipeline";
    /// umT5's context in WAN 2.1 (`text_len`).
    const MAX_SEQUENCE_LENGTH: usize = 512;
    /// Twice 1280x720 x 81 frames (WAN 2.1 14B's 720p).
    const MAX_IMAGE_TOKENS: usize = 151_200;
    /// WanPipeline's defaults: 832x480, 81 frames, 50 steps, CFG 5, umT5 prompt length 512.
    const DEFAULTS: Settings = Settings {
        width: 832,
        height: 480,
        frames: 81,
        steps: 50,
        guidance: Some(5.0),
        max_sequence_length: 512,
    };
    const NEGATIVE_PROMPT: bool = true;
    type Extra = GuidanceCalls;
    type Job = WanJob<B>;
    type Denoiser<'a> = WanDenoiser<'a, B>;

    const T5_COMPONENT: Option<&'static str> = Some("text_encoder");
    const SPARSE_VIDEO: Option<SvgVariant> = Some(SvgVariant::Wan);

    fn set_sparse_attention(
        &mut self,
        settings: Option<SparseVideoSettings>,
    ) -> Result<(), PipelineError> {
        Ok(self.transformer.set_sparse_attention(settings)?)
    }

    /// Loads a diffusers-layout WAN 2.1 pipeline folder; `options` may replace its
    /// `transformer/` with a single-file checkpoint in Wan's original layout (safetensors or a
    /// GGUF conversion) and its umT5-XXL weights with a single file
    /// (`umt5-xxl-encoder-Q8_0.gguf`).
    fn load_with(
        folder: &Path,
        options: LoadOptions<'_>,
        device: &B::Device,
    ) -> Result<Self, PipelineError> {
        let folder = PipelineFolder::open_as(folder, Self::CLASS_NAME)?;
        let scheduler = UniPcMultistepConfig::from_file(&folder.scheduler_config()?)?;
        let text_encoder = {
            let (folder, device) = (folder.clone(), device.clone());
            let file = options.t5.map(Path::to_path_buf);
            TextEncoders::new(options.text_encoders, move || {
                folder.load_t5("text_encoder", file.as_deref(), &device)
            })?
        };
        Ok(Self {
            scheduler,
            tokenizer: folder.component("tokenizer", "the umT5 tokenizer")?,
            text_encoder,
            transformer: folder.load_transformer(
                options.transformer,
                "the WAN transformer",
                device,
            )?,
            vae: WanVae::load(&folder.component("vae", "the Wan VAE")?, device)?,
            device: device.clone(),
        })
    }

    /// The Wan VAE (8x, 4 frames per latent frame after the first), the transformer's patch.
    fn geometry(&self) -> LatentGeometry {
        let scale = [
            self.vae.temporal_scale_factor(),
            self.vae.spatial_scale_factor(),
        ];
        let config = self.transformer.config();
        LatentGeometry::video(scale, config.patch_size, config.in_channels, "Wan VAE")
    }

    fn model_sizes(&self) -> ModelSizes {
        let c = self.transformer.config();
        ModelSizes {
            hidden: c.num_attention_heads * c.attention_head_dim,
            mlp_hidden: c.ffn_dim,
            decoder_channels: self.vae.decoder_channels(),
        }
    }

    /// One latent frame at a time: the frames it expands to.
    fn decoded_at_once(&self, settings: &Settings, _: &GuidanceCalls) -> usize {
        self.vae.temporal_scale_factor() * settings.width * settings.height
    }

    /// Both guidance passes' rows in one call when guided and joined.
    fn rows_per_sample(&self, settings: &Settings, calls: &GuidanceCalls) -> usize {
        match (Self::guidance_scale(settings) > 1.0, calls) {
            (true, GuidanceCalls::Joined) => 2,
            _ => 1,
        }
    }

    /// Classifier-free guidance with a scale above 1 (one cache state per sample and pass),
    /// the passes joined in one call or apart as `request.extra` says; at most 1 runs the
    /// conditional pass alone.
    fn denoiser(&self, cache: &CacheSettings) -> Result<WanDenoiser<'_, B>, PipelineError> {
        Denoising::new(&self.transformer, cache, |t| t)
    }

    fn prepare(&self, request: &WanRequest<B>) -> Result<WanJob<B>, PipelineError> {
        let s = &request.settings;
        let scale = Self::guidance_scale(s);
        let tokenizer = PromptTokenizer::t5(&self.tokenizer, s.max_sequence_length)?;
        let prompts = &request.prompts;
        let passes = self.text_encoder.with(|encoder| {
            let encode =
                |texts: Vec<&str>| self.encode_prompts(encoder, &tokenizer, texts.into_iter());
            let cond = || encode(prompts.iter().map(|p| p.text.as_str()).collect());
            let uncond = || encode(prompts.iter().map(|p| p.negative.as_str()).collect());
            let input = |text: Tensor<B, 3>| -> Result<_, PipelineError> {
                let rows = text.dims()[0];
                let copies = rows / prompts.len();
                Ok(self.transformer.check_input(WanInput {
                    latents: Tensor::cat(vec![request.noise.clone(); copies], 0),
                    timestep: Tensor::zeros([rows], &self.device),
                    encoder_hidden_states: text,
                })?)
            };
            Ok(match (scale > 1.0, request.extra) {
                (false, _) => Passes::Single(input(cond()?)?),
                (true, GuidanceCalls::Apart) => Passes::Guided {
                    cond: input(cond()?)?,
                    uncond: input(uncond()?)?,
                    scale,
                },
                (true, GuidanceCalls::Joined) => Passes::GuidedRows {
                    input: input(Tensor::cat(vec![cond()?, uncond()?], 0))?,
                    scale,
                },
            })
        })?;
        let mut sampler = UniPcMultistepScheduler::<B, 5>::new(self.scheduler.clone())?;
        sampler.set_timesteps(s.steps)?;
        Ok(Job::new(*s, request.noise.clone(), passes, sampler, |l| l))
    }

    fn decode(
        &self,
        latents: Tensor<B, 5>,
        _: &GuidanceCalls,
    ) -> Result<Tensor<B, 5>, PipelineError> {
        Ok(self.vae.decode(self.vae.unscale_latents(latents)?)?)
    }
}

/// WanPipeline's prompt cleaning: HTML entities decoded (twice), whitespace runs collapsed to
/// one space, ends trimmed. (Its optional `ftfy` repair is not applied, as in a Python
/// environment without ftfy.)
pub fn clean_prompt(text: &str) -> String {
    let decoded = html_escape::decode_html_entities(text);
    let decoded = html_escape::decode_html_entities(&decoded);
    decoded.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::clean_prompt;

    #[test]
    fn prompts_are_cleaned_as_the_wan_pipeline_does() {
        assert_eq!(
            clean_prompt("  a  cat\t&amp;amp;\n a dog "),
            "a cat & a dog"
        );
        assert_eq!(clean_prompt("&lt;b&gt;"), "<b>");
    }
}
