//! Prompt to image: diffusers' `FluxPipeline` (text encoders, flow-match Euler sampling with
//! the transformer behind a cache session, VAE decoding), from a diffusers-layout folder.

use std::{
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use burn::tensor::{Tensor, TensorData, backend::Backend};
use dicache_core::{CachePolicy, CacheSession, Pass, Trace};
pub use dit_pipeline::PipelineError;
use dit_pipeline::PipelineFolder;
use schedulers::FlowMatchEulerDiscreteScheduler;
use text_encoders::{ClipTextModel, PromptTokenizer, T5EncoderModel};
use vae::AutoencoderKl;

use crate::{FluxInput, FluxTransformer, latents};

/// CLIP's fixed prompt length in the FLUX pipeline (`tokenizer_max_length`).
const CLIP_MAX_LENGTH: usize = 77;
/// The guidance scale FluxPipeline uses when none is given.
pub const DEFAULT_GUIDANCE: f64 = 3.5;
/// FluxPipeline's default number of denoising steps.
pub const DEFAULT_STEPS: usize = 28;
/// FluxPipeline's default T5 prompt length.
pub const DEFAULT_MAX_SEQUENCE_LENGTH: usize = 512;

/// What to generate.
#[derive(Debug, Clone)]
pub struct FluxRequest<B: Backend> {
    /// The prompt.
    pub prompt: String,
    /// Image width in pixels (a multiple of 16 for the FLUX VAE).
    pub width: usize,
    /// Image height in pixels.
    pub height: usize,
    /// Denoising steps.
    pub steps: usize,
    /// Embedded guidance scale; `None` takes 3.5 on guidance-distilled models (dev) and nothing
    /// on the others (schnell), where giving one is an error.
    pub guidance: Option<f64>,
    /// T5 prompt length in tokens.
    pub max_sequence_length: usize,
    /// The initial noise in the unpacked layout `[1, 16, height/8, width/8]`.
    pub noise: Tensor<B, 4>,
}

/// What a generation returns.
#[derive(Debug)]
pub struct FluxOutput<B: Backend> {
    /// The sampler's final latents, unpacked `[1, 16, height/8, width/8]`, before the VAE's
    /// scaling and shift are undone.
    pub latents: Tensor<B, 4>,
    /// The decoded image `[1, 3, height, width]`, nominally in `[-1, 1]` (see
    /// [`vae::to_rgb8`]).
    pub image: Tensor<B, 4>,
    /// Wall time of the denoising loop (every transformer call and scheduler step, not the
    /// prompt encoding or the VAE decoding), read after the backend finished its work.
    pub denoise_time: Duration,
    /// The cache trace, one entry per transformer call.
    pub trace: Trace,
}

/// The FLUX.1 pipeline: tokenizers, CLIP and T5 encoders, transformer, VAE and scheduler.
pub struct FluxPipeline<B: Backend> {
    scheduler: FlowMatchEulerDiscreteScheduler,
    clip_tokenizer: PromptTokenizer,
    /// The T5 tokenizer's folder: it is built per request, for the request's prompt length.
    t5_tokenizer: PathBuf,
    clip: ClipTextModel<B>,
    t5: T5EncoderModel<B>,
    transformer: FluxTransformer<B>,
    vae: AutoencoderKl<B>,
    device: B::Device,
}

impl<B: Backend> FluxPipeline<B> {
    /// Loads a diffusers-layout FLUX pipeline folder; `transformer_file` replaces its
    /// `transformer/` with a single-file checkpoint (BFL's `flux1-dev.safetensors`).
    pub fn load(
        folder: &Path,
        transformer_file: Option<&Path>,
        device: &B::Device,
    ) -> Result<Self, PipelineError> {
        let folder = PipelineFolder::open(folder)?;
        let scheduler = FlowMatchEulerDiscreteScheduler::from_file(&folder.scheduler_config()?)?;
        let clip_tokenizer = PromptTokenizer::clip(
            &folder.component("tokenizer", "the CLIP tokenizer")?,
            CLIP_MAX_LENGTH,
        )?;
        let t5_tokenizer = folder.component("tokenizer_2", "the T5 tokenizer")?;
        let clip = ClipTextModel::load(
            &folder.component("text_encoder", "the CLIP text encoder")?,
            device,
        )?;
        let t5 = T5EncoderModel::load(
            &folder.component("text_encoder_2", "the T5 text encoder")?,
            device,
        )?;
        let transformer = folder.transformer(
            transformer_file,
            "the FLUX transformer",
            |file| FluxTransformer::load(file, device),
            |dir| FluxTransformer::load_diffusers(dir, device),
        )?;
        let vae = AutoencoderKl::load(&folder.component("vae", "the VAE")?, device)?;
        Ok(Self {
            scheduler,
            clip_tokenizer,
            t5_tokenizer,
            clip,
            t5,
            transformer,
            vae,
            device: device.clone(),
        })
    }

    /// The transformer.
    pub fn transformer(&self) -> &FluxTransformer<B> {
        &self.transformer
    }

    /// Pixels per latent cell along each side (8 for FLUX's VAE).
    pub fn vae_scale_factor(&self) -> usize {
        self.vae.scale_factor()
    }

    /// Checks `width` x `height` and returns the unpacked latent shape `[1, 16, h, w]`.
    pub fn latent_shape(&self, width: usize, height: usize) -> Result<[usize; 4], PipelineError> {
        dit_pipeline::check_pixel_size(
            "image",
            width,
            height,
            self.vae_scale_factor(),
            2,
            "2x2 token patches",
        )?;
        let channels = self.transformer.config().in_channels / 4;
        Ok([
            1,
            channels,
            height / self.vae_scale_factor(),
            width / self.vae_scale_factor(),
        ])
    }

    /// Runs the pipeline with the cache `policy`, calling `on_step(done, total)` after each
    /// denoising step.
    pub fn generate(
        &self,
        request: &FluxRequest<B>,
        policy: CachePolicy,
        on_step: &mut dyn FnMut(usize, usize),
    ) -> Result<FluxOutput<B>, PipelineError> {
        let shape = self.latent_shape(request.width, request.height)?;
        dit_pipeline::check_steps(request.steps)?;
        dit_pipeline::check_noise_shape(
            &request.noise.dims(),
            &shape,
            &format!("a {}x{} image", request.width, request.height),
        )?;
        let guidance =
            resolve_guidance(self.transformer.config().guidance_embeds, request.guidance)?;
        let (pooled, text) = self.encode_prompt(&request.prompt, request.max_sequence_length)?;
        let [_, _, h, w] = shape;
        let mut sample = latents::pack(request.noise.clone());
        let img_ids = latents::image_ids::<B>(h, w, &self.device);
        let txt_ids = Tensor::<B, 2>::zeros([text.dims()[1], 3], &self.device);

        let mut scheduler = self.scheduler.clone();
        let sigmas = linspace_sigmas(request.steps);
        let mu = scheduler.mu_for_seq_len(sample.dims()[1]);
        scheduler.set_timesteps(request.steps, Some(sigmas), Some(mu))?;
        let mut session = CacheSession::new(
            policy,
            request.steps,
            dicache_core::CacheableModel::num_blocks(&self.transformer),
        )?;
        let timesteps = scheduler.timesteps().to_vec();
        let start = Instant::now();
        for (i, t) in timesteps.iter().enumerate() {
            let input = self
                .transformer
                .check_input(FluxInput {
                    latents: sample.clone(),
                    encoder_hidden_states: text.clone(),
                    pooled_projections: pooled.clone(),
                    timestep: Tensor::from_data(
                        TensorData::new(vec![*t / 1000.0], [1]),
                        &self.device,
                    ),
                    guidance: guidance.map(|g| {
                        Tensor::from_data(TensorData::new(vec![g as f32], [1]), &self.device)
                    }),
                    img_ids: img_ids.clone(),
                    txt_ids: txt_ids.clone(),
                })
                .map_err(|e| PipelineError::Transformer(e.to_string()))?;
            let velocity = session.forward(&self.transformer, &input, i, Pass::Single)?;
            sample = scheduler.step(velocity, sample, i)?;
            on_step(i + 1, timesteps.len());
        }
        let denoise_time = dit_pipeline::elapsed_synced::<B>(start, &self.device)?;
        let final_latents = latents::unpack(sample, h, w);
        let image = self
            .vae
            .decode(self.vae.unscale_latents(final_latents.clone()))?;
        Ok(FluxOutput {
            latents: final_latents,
            image,
            denoise_time,
            trace: session.into_trace(),
        })
    }

    /// CLIP's pooled embedding `[1, 768]` and T5's hidden states `[1, max_len, 4096]`.
    fn encode_prompt(
        &self,
        prompt: &str,
        max_sequence_length: usize,
    ) -> Result<(Tensor<B, 2>, Tensor<B, 3>), PipelineError> {
        dit_pipeline::check_max_sequence_length(max_sequence_length)?;
        let clip_ids = self
            .clip_tokenizer
            .encode(&[prompt])?
            .ids_tensor::<B>(&self.device);
        let pooled = self.clip.forward(clip_ids)?.pooled;
        let t5_tokenizer = PromptTokenizer::t5(&self.t5_tokenizer, max_sequence_length)?;
        let t5_ids = t5_tokenizer
            .encode(&[prompt])?
            .ids_tensor::<B>(&self.device);
        let text = self.t5.forward(t5_ids, None)?;
        Ok((pooled, text))
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
