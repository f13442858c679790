//! Prompt to video: diffusers' `WanPipeline` for WAN 2.1 text-to-video (umT5 prompt encoding,
//! UniPC flow sampling with classifier-free guidance, each CFG pass behind its own cache state,
//! Wan VAE decoding), from a diffusers-layout folder.

use std::{
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use burn::tensor::{Tensor, TensorData, backend::Backend};
use dicache_core::{CachePolicy, CacheSession, CacheableModel, Pass, Trace};
pub use dit_pipeline::PipelineError;
use dit_pipeline::PipelineFolder;
use schedulers::{UniPcMultistepConfig, UniPcMultistepScheduler};
use text_encoders::{PromptTokenizer, T5EncoderModel};
use vae::WanVae;

use crate::{WanInput, WanTransformer};

/// WanPipeline's default number of denoising steps.
pub const DEFAULT_STEPS: usize = 50;
/// WanPipeline's default guidance scale.
pub const DEFAULT_GUIDANCE: f64 = 5.0;
/// WanPipeline's default umT5 prompt length.
pub const DEFAULT_MAX_SEQUENCE_LENGTH: usize = 512;

/// What to generate.
#[derive(Debug, Clone)]
pub struct WanRequest<B: Backend> {
    /// The prompt.
    pub prompt: String,
    /// What the video should not show (the unconditional pass's prompt; empty when none).
    pub negative_prompt: String,
    /// Width in pixels (a multiple of 16).
    pub width: usize,
    /// Height in pixels (a multiple of 16).
    pub height: usize,
    /// Frames, `4k + 1`.
    pub frames: usize,
    /// Denoising steps.
    pub steps: usize,
    /// Classifier-free guidance scale; at most 1 runs the conditional pass alone.
    pub guidance: f64,
    /// umT5 prompt length in tokens.
    pub max_sequence_length: usize,
    /// The initial noise `[1, 16, (frames-1)/4+1, height/8, width/8]`.
    pub noise: Tensor<B, 5>,
}

/// What a generation returns.
#[derive(Debug)]
pub struct WanOutput<B: Backend> {
    /// The sampler's final latents `[1, 16, (frames-1)/4+1, height/8, width/8]`, before the
    /// VAE's per-channel mean and deviation are applied.
    pub latents: Tensor<B, 5>,
    /// The decoded video `[1, 3, frames, height, width]`, nominally in `[-1, 1]`.
    pub video: Tensor<B, 5>,
    /// Wall time of the denoising loop (every transformer call and scheduler step, not the
    /// prompt encoding or the VAE decoding), read after the backend finished its work.
    pub denoise_time: Duration,
    /// The cache trace, one entry per transformer call (cond and uncond passes).
    pub trace: Trace,
}

/// The WAN 2.1 text-to-video pipeline: tokenizer, umT5 encoder, transformer, VAE, scheduler.
pub struct WanPipeline<B: Backend> {
    /// Each generation gets a fresh multistep scheduler of this configuration.
    scheduler: UniPcMultistepConfig,
    /// The tokenizer's folder: it is built per request, for the request's prompt length.
    tokenizer: PathBuf,
    text_encoder: T5EncoderModel<B>,
    transformer: WanTransformer<B>,
    vae: WanVae<B>,
    device: B::Device,
}

impl<B: Backend> WanPipeline<B> {
    /// Loads a diffusers-layout WAN 2.1 pipeline folder; `transformer_file` replaces its
    /// `transformer/` with a single-file checkpoint in Wan's original layout.
    pub fn load(
        folder: &Path,
        transformer_file: Option<&Path>,
        device: &B::Device,
    ) -> Result<Self, PipelineError> {
        let folder = PipelineFolder::open(folder)?;
        let scheduler = UniPcMultistepConfig::from_file(&folder.scheduler_config()?)?;
        let tokenizer = folder.component("tokenizer", "the umT5 tokenizer")?;
        let text_encoder = T5EncoderModel::load(
            &folder.component("text_encoder", "the umT5 text encoder")?,
            device,
        )?;
        let transformer = folder.transformer(
            transformer_file,
            "the WAN transformer",
            |file| WanTransformer::load(file, device),
            |dir| WanTransformer::load_diffusers(dir, device),
        )?;
        let vae = WanVae::load(&folder.component("vae", "the Wan VAE")?, device)?;
        Ok(Self {
            scheduler,
            tokenizer,
            text_encoder,
            transformer,
            vae,
            device: device.clone(),
        })
    }

    /// The transformer.
    pub fn transformer(&self) -> &WanTransformer<B> {
        &self.transformer
    }

    /// Checks the video size and returns the latent shape
    /// `[1, 16, (frames-1)/t+1, height/s, width/s]` (t = 4, s = 8 for WAN 2.1's VAE).
    pub fn latent_shape(
        &self,
        width: usize,
        height: usize,
        frames: usize,
    ) -> Result<[usize; 5], PipelineError> {
        let (s, t) = (
            self.vae.spatial_scale_factor(),
            self.vae.temporal_scale_factor(),
        );
        let [_, ph, pw] = self.transformer.config().patch_size;
        dit_pipeline::check_video_size(width, height, s, [ph, pw])?;
        let latent_frames = dit_pipeline::latent_frames(frames, t, "Wan VAE", 81)?;
        let channels = self.transformer.config().in_channels;
        Ok([1, channels, latent_frames, height / s, width / s])
    }

    /// Runs the pipeline with the cache `policy` (one state per CFG pass), calling
    /// `on_step(done, total)` after each denoising step.
    pub fn generate(
        &self,
        request: &WanRequest<B>,
        policy: CachePolicy,
        on_step: &mut dyn FnMut(usize, usize),
    ) -> Result<WanOutput<B>, PipelineError> {
        let shape = self.latent_shape(request.width, request.height, request.frames)?;
        dit_pipeline::check_steps(request.steps)?;
        dit_pipeline::check_noise_shape(
            &request.noise.dims(),
            &shape,
            &format!(
                "a {}x{}x{} video",
                request.width, request.height, request.frames
            ),
        )?;
        let guided = request.guidance > 1.0;
        dit_pipeline::check_max_sequence_length(request.max_sequence_length)?;
        let tokenizer = PromptTokenizer::t5(&self.tokenizer, request.max_sequence_length)?;
        let cond = self.encode_prompt(&tokenizer, &request.prompt)?;
        let uncond = if guided {
            Some(self.encode_prompt(&tokenizer, &request.negative_prompt)?)
        } else {
            None
        };

        let mut scheduler = UniPcMultistepScheduler::<B, 5>::new(self.scheduler.clone())?;
        scheduler.set_timesteps(request.steps)?;
        let mut session = CacheSession::new(policy, request.steps, self.transformer.num_blocks())?;
        let mut sample = request.noise.clone();
        let timesteps = scheduler.timesteps().to_vec();
        let start = Instant::now();
        for (i, t) in timesteps.iter().enumerate() {
            // Integer timesteps (0..1000), exact in f32.
            let timestep =
                Tensor::<B, 1>::from_data(TensorData::new(vec![*t as f32], [1]), &self.device);
            let mut predict = |text: &Tensor<B, 3>, pass| {
                let input = self
                    .transformer
                    .check_input(WanInput {
                        latents: sample.clone(),
                        timestep: timestep.clone(),
                        encoder_hidden_states: text.clone(),
                    })
                    .map_err(|e| PipelineError::Transformer(e.to_string()))?;
                Ok::<_, PipelineError>(session.forward(&self.transformer, &input, i, pass)?)
            };
            let velocity = match &uncond {
                Some(uncond) => {
                    let v_cond = predict(&cond, Pass::Cond)?;
                    let v_uncond = predict(uncond, Pass::Uncond)?;
                    v_uncond.clone() + (v_cond - v_uncond).mul_scalar(request.guidance)
                }
                None => predict(&cond, Pass::Cond)?,
            };
            sample = scheduler.step(velocity, sample)?;
            on_step(i + 1, timesteps.len());
        }
        let denoise_time = dit_pipeline::elapsed_synced::<B>(start, &self.device)?;
        let video = self.vae.decode(self.vae.unscale_latents(sample.clone())?)?;
        Ok(WanOutput {
            latents: sample,
            video,
            denoise_time,
            trace: session.into_trace(),
        })
    }

    /// umT5 hidden states `[1, max_len, 4096]` of the cleaned prompt, zero past its tokens
    /// (WanPipeline cuts each embedding at the prompt's length and pads it with zeros);
    /// `tokenizer` pads to the request's prompt length.
    fn encode_prompt(
        &self,
        tokenizer: &PromptTokenizer,
        prompt: &str,
    ) -> Result<Tensor<B, 3>, PipelineError> {
        let tokens = tokenizer.encode(&[clean_prompt(prompt).as_str()])?;
        let mask = tokens.mask_tensor::<B>(&self.device);
        let hidden = self
            .text_encoder
            .forward(tokens.ids_tensor::<B>(&self.device), Some(mask.clone()))?;
        Ok(hidden * mask.float().unsqueeze_dim::<3>(2))
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
