//! Prompt to image: diffusers' `FluxPipeline` (text encoders, flow-match Euler sampling with
//! the transformer behind a cache session, VAE decoding), from a diffusers-layout folder.

use std::path::{Path, PathBuf};

use burn::tensor::{Tensor, TensorData, backend::Backend};
use dicache_core::CacheSettings;
use dit_layers::DiffusionTransformer;
use dit_pipeline::{
    ClipPooled, Denoising, Job, LatentGeometry, LoadOptions, ModelSizes, Passes, PipelineFolder,
    TextEncoders, check_finite,
};
pub use dit_pipeline::{Output, Pipeline, PipelineError, Prompt, Request, Settings};
use schedulers::FlowMatchEulerDiscreteScheduler;
use text_encoders::{PromptTokenizer, T5EncoderModel};
use vae::AutoencoderKl;

use crate::{FluxInput, FluxPrepared, FluxTransformer, latents};

/// The guidance scale FluxPipeline uses when none is given (on guidance-distilled models).
pub const DEFAULT_GUIDANCE: f64 = 3.5;

/// A FLUX generation request: an image, no model-specific settings.
pub type FluxRequest<B> = Request<B, 4, ()>;
/// A FLUX generation's output: `latents` unpacked `[samples, 16, height/8, width/8]`, the
/// images `[samples, 3, height, width]`.
pub type FluxOutput<B> = Output<B, 4>;

/// The FLUX.1 denoising loop: packed latents `[samples, tokens, 64]`, flow-match Euler
/// sampling, images `[samples, 16, h, w]` out.
pub type FluxDenoiser<'a, B> = Denoising<
    'a,
    B,
    FluxTransformer<B>,
    FluxInput<B>,
    FluxPrepared<B>,
    FlowMatchEulerDiscreteScheduler,
    3,
    4,
>;
/// A request ready to join a [FluxDenoiser]: its encoded prompts, noise and sampler.
pub type FluxJob<B> = Job<B, FluxInput<B>, FluxPrepared<B>, FlowMatchEulerDiscreteScheduler, 3, 4>;

/// The FLUX.1 pipeline: tokenizers, CLIP and T5 encoders, transformer, VAE and scheduler.
pub struct FluxPipeline<B: Backend> {
    scheduler: FlowMatchEulerDiscreteScheduler,
    /// The T5 tokenizer's folder: it is built per request, for the request's prompt length.
    t5_tokenizer: PathBuf,
    encoders: TextEncoders<FluxTextEncoders<B>>,
    transformer: FluxTransformer<B>,
    vae: AutoencoderKl<B>,
    device: B::Device,
}

/// FLUX.1's text encoders: CLIP (pooled) and T5-XXL.
struct FluxTextEncoders<B: Backend> {
    clip: ClipPooled<B>,
    t5: T5EncoderModel<B>,
}

impl<B: Backend> FluxPipeline<B> {
    /// The transformer.
    pub fn transformer(&self) -> &FluxTransformer<B> {
        &self.transformer
    }

    /// Pixels per latent cell along each side (8 for FLUX's VAE).
    pub fn vae_scale_factor(&self) -> usize {
        self.vae.scale_factor()
    }

    /// CLIP's pooled embeddings `[samples, 768]` and T5's hidden states
    /// `[samples, max_len, 4096]`, each prompt encoded on its own.
    fn encode_prompts(
        &self,
        encoders: &FluxTextEncoders<B>,
        prompts: &[Prompt],
        max_sequence_length: usize,
    ) -> Result<(Tensor<B, 2>, Tensor<B, 3>), PipelineError> {
        let t5_tokenizer = PromptTokenizer::t5(&self.t5_tokenizer, max_sequence_length)?;
        let (mut pooled, mut text) = (Vec::new(), Vec::new());
        for prompt in prompts {
            pooled.push(encoders.clip.encode(&prompt.text, &self.device)?);
            let t5_ids = t5_tokenizer
                .encode(&[&prompt.text])?
                .ids_tensor::<B>(&self.device);
            let hidden = encoders.t5.forward(t5_ids, None)?;
            check_finite(&hidden, || "the T5 text encoder's output".into())?;
            text.push(hidden);
        }
        Ok((Tensor::cat(pooled, 0), Tensor::cat(text, 0)))
    }

    /// The flow-match Euler schedule of `steps` steps for `image_tokens` packed tokens.
    fn sampler(
        &self,
        steps: usize,
        image_tokens: usize,
    ) -> Result<FlowMatchEulerDiscreteScheduler, PipelineError> {
        let mut scheduler = self.scheduler.clone();
        let mu = scheduler.mu_for_seq_len(image_tokens);
        scheduler.set_timesteps(steps, Some(linspace_sigmas(steps)), Some(mu))?;
        Ok(scheduler)
    }
}

impl<B: Backend> Pipeline<B, 4> for FluxPipeline<B> {
    const NAME: &'static str = "FLUX";
    const CLASS_NAME: &'static str = "FluxPipeline";
    /// FluxPipeline refuses longer T5 prompts.
    const MAX_SEQUENCE_LENGTH: usize = 512;
    /// 2048x2048: twice the 2 megapixels BFL publishes FLUX.1 for.
    const MAX_IMAGE_TOKENS: usize = 16_384;
    /// FluxPipeline's defaults (guidance 3.5 on dev; schnell takes none).
    const DEFAULTS: Settings = Settings {
        width: 1024,
        height: 1024,
        frames: 1,
        steps: 28,
        guidance: None,
        max_sequence_length: 512,
    };
    const NEGATIVE_PROMPT: bool = false;
    type Extra = ();
    type Job = FluxJob<B>;
    type Denoiser<'a> = FluxDenoiser<'a, B>;

    const T5_COMPONENT: Option<&'static str> = Some("text_encoder_2");

    /// Loads a diffusers-layout FLUX pipeline folder; `options` may replace its `transformer/`
    /// with a single-file checkpoint (BFL's `flux1-dev.safetensors`, a GGUF conversion) and
    /// its T5-XXL weights with a single file (`t5-v1_1-xxl-encoder-Q8_0.gguf`).
    fn load_with(
        folder: &Path,
        options: LoadOptions<'_>,
        device: &B::Device,
    ) -> Result<Self, PipelineError> {
        let folder = PipelineFolder::open_as(folder, Self::CLASS_NAME)?;
        let scheduler = FlowMatchEulerDiscreteScheduler::from_file(&folder.scheduler_config()?)?;
        let encoders = {
            let (folder, device) = (folder.clone(), device.clone());
            let t5_file = options.t5.map(Path::to_path_buf);
            TextEncoders::new(options.text_encoders, move || {
                Ok(FluxTextEncoders {
                    clip: ClipPooled::load(&folder, "tokenizer", "text_encoder", &device)?,
                    t5: folder.load_t5("text_encoder_2", t5_file.as_deref(), &device)?,
                })
            })?
        };
        Ok(Self {
            scheduler,
            t5_tokenizer: folder.component("tokenizer_2", "the T5 tokenizer")?,
            encoders,
            transformer: folder.load_transformer(
                options.transformer,
                "the FLUX transformer",
                device,
            )?,
            vae: AutoencoderKl::load(&folder.component("vae", "the VAE")?, device)?,
            device: device.clone(),
        })
    }

    /// VAE 8x, latents packed into 2x2 tokens, 16 channels (`in_channels / 4`).
    fn geometry(&self) -> LatentGeometry {
        LatentGeometry {
            spatial: self.vae_scale_factor(),
            temporal: None,
            patch: [1, 2, 2],
            channels: self.transformer.config().in_channels / 4,
            vae: "VAE",
        }
    }

    /// FLUX.1's blocks widen the feed-forward 4x.
    fn model_sizes(&self) -> ModelSizes {
        let c = self.transformer.config();
        let hidden = c.num_attention_heads * c.attention_head_dim;
        ModelSizes {
            hidden,
            mlp_hidden: 4 * hidden,
            decoder_channels: self.vae.decoder_channels(),
        }
    }

    /// The whole image at once.
    fn decoded_at_once(&self, settings: &Settings, _: &()) -> usize {
        settings.width * settings.height
    }

    fn denoiser(&self, cache: &CacheSettings) -> Result<FluxDenoiser<'_, B>, PipelineError> {
        Denoising::new(&self.transformer, cache, |t| t / 1000.0)
    }

    fn prepare(&self, request: &FluxRequest<B>) -> Result<FluxJob<B>, PipelineError> {
        let s = &request.settings;
        let guidance = resolve_guidance(self.transformer.config().guidance_embeds, s.guidance)?;
        let (pooled, text) = self.encoders.with(|encoders| {
            self.encode_prompts(encoders, &request.prompts, s.max_sequence_length)
        })?;
        let [samples, _, h, w] = request.noise.dims();
        let noise = latents::pack(request.noise.clone());
        let sampler = self.sampler(s.steps, noise.dims()[1])?;
        let input = self.transformer.check_input(FluxInput {
            latents: noise.clone(),
            encoder_hidden_states: text.clone(),
            pooled_projections: pooled,
            timestep: Tensor::zeros([samples], &self.device),
            guidance: guidance.map(|g| {
                let values = TensorData::new(vec![g as f32; samples], [samples]);
                Tensor::from_data(values, &self.device)
            }),
            img_ids: latents::image_ids::<B>(h, w, &self.device),
            txt_ids: Tensor::zeros([text.dims()[1], 3], &self.device),
        })?;
        let unpack = move |packed| latents::unpack(packed, h, w);
        Ok(Job::new(*s, noise, Passes::Single(input), sampler, unpack))
    }

    fn decode(&self, latents: Tensor<B, 4>, _: &()) -> Result<Tensor<B, 4>, PipelineError> {
        Ok(self.vae.decode(self.vae.unscale_latents(latents))?)
    }
}

/// The guidance the transformer gets: the default on guidance-distilled models
/// (`guidance_embeds`), an error when one is asked of a model without guidance embedding.
fn resolve_guidance(
    guidance_embeds: bool,
    asked: Option<f64>,
) -> Result<Option<f64>, PipelineError> {
    match (guidance_embeds, asked) {
        (true, g) => Ok(Some(g.unwrap_or(DEFAULT_GUIDANCE))),
        (false, None) => Ok(None),
        (false, Some(g)) => Err(PipelineError::Request(format!(
            "guidance {g} was given, but this transformer has no guidance embedding \
             (guidance_embeds = false, e.g. FLUX.1-schnell); leave guidance out"
        ))),
    }
}

/// FluxPipeline's unshifted sigmas: `linspace(1, 1/steps, steps)`.
fn linspace_sigmas(steps: usize) -> Vec<f64> {
    schedulers::linspace(1.0, 1.0 / steps as f64, steps)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guidance_defaults_on_dev_and_is_refused_on_schnell() {
        assert_eq!(
            resolve_guidance(true, None).unwrap(),
            Some(DEFAULT_GUIDANCE)
        );
        assert_eq!(resolve_guidance(true, Some(5.0)).unwrap(), Some(5.0));
        assert_eq!(resolve_guidance(false, None).unwrap(), None);
        let msg = resolve_guidance(false, Some(3.5)).unwrap_err().to_string();
        assert!(msg.contains("no guidance embedding"), "{msg}");
    }

    #[test]
    fn sigmas_run_from_one_to_one_over_steps() {
        let s = linspace_sigmas(4);
        assert_eq!(s, vec![1.0, 0.75, 0.5, 0.25]);
    }
}
