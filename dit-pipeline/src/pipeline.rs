//! One request and one output shape for every text-to-image and text-to-video pipeline, and the
//! trait the pipelines implement, so a caller (the command line, a benchmark, a server) is
//! written once for all of them.

use std::{fmt::Debug, path::Path, time::Duration, time::Instant};

use burn::tensor::{Tensor, backend::Backend};
use dicache_core::{CacheSettings, Trace};
use dit_layers::{SparseVideoSettings, SvgVariant};

use crate::{
    Denoise, LatentGeometry, LoadOptions, ModelSizes, PipelineError, WorkingSet, check_batch,
    check_finite, check_guidance_scale, check_max_sequence_length, check_noise_shape,
    check_noise_values, check_steps, decode_each, describe, elapsed_synced,
};

/// The settings of a generation besides the prompt and the noise.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Settings {
    /// Width in pixels.
    pub width: usize,
    /// Height in pixels.
    pub height: usize,
    /// Frames of a video (`4k + 1`); 1 for an image.
    pub frames: usize,
    /// Denoising steps.
    pub steps: usize,
    /// Guidance scale (embedded or classifier-free, as the model takes it); `None` where the
    /// model takes none (FLUX.1-schnell).
    pub guidance: Option<f64>,
    /// The text encoder's prompt length in tokens.
    pub max_sequence_length: usize,
}

impl Settings {
    /// Whether a job at `other` settings may share transformer calls with one at these: the
    /// same size, frames, guidance and prompt length (the step counts may differ).
    pub fn joins(&self, other: &Settings) -> bool {
        Settings {
            steps: other.steps,
            ..*self
        } == *other
    }
}

/// The text of one sample.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Prompt {
    /// What to show.
    pub text: String,
    /// What the output should not show: the unconditional pass's prompt of a model with
    /// classifier-free guidance (WAN); empty for none. Models without it refuse one.
    pub negative: String,
}

impl Prompt {
    /// `text` with no negative prompt.
    pub fn new(text: impl Into<String>) -> Self {
        Self {
            text: text.into(),
            negative: String::new(),
        }
    }
}

/// What to generate: the prompts of one or more samples, their settings, the initial noise
/// (`N` dimensions, a row per sample: `[samples, C, h, w]` for images, `[samples, C, f, h, w]`
/// for videos) and the settings only one model has (`X`). The samples run as the rows of
/// each transformer call; each gets what it would get alone.
#[derive(Debug, Clone)]
pub struct Request<B: Backend, const N: usize, X = ()> {
    /// One prompt per sample.
    pub prompts: Vec<Prompt>,
    /// Size, steps, guidance and prompt length.
    pub settings: Settings,
    /// The initial noise, a row per sample, in the pipeline's latent shape
    /// ([`Pipeline::latent_shape`]).
    pub noise: Tensor<B, N>,
    /// Settings of this model alone (HunyuanVideo's VAE tiles); `()` for none.
    pub extra: X,
}

/// What a generation returns.
#[derive(Debug)]
pub struct Output<B: Backend, const N: usize> {
    /// The sampler's final latents in the noise's layout, before the VAE's scaling (and shift,
    /// or per-channel statistics) are undone.
    pub latents: Tensor<B, N>,
    /// The decoded images `[samples, 3, height, width]` or videos
    /// `[samples, 3, frames, height, width]`, nominally in `[-1, 1]` (see [`vae::to_rgb8`],
    /// [`vae::video_to_rgb8`]).
    pub decoded: Tensor<B, N>,
    /// Wall time of the denoising loop (every transformer call and sampler step, not the
    /// prompt encoding or the VAE decoding), read after the backend finished its work.
    pub denoise_time: Duration,
    /// The cache trace of each sample, one entry per transformer call.
    pub traces: Vec<Trace>,
}

/// A text-to-image (`N = 4`) or text-to-video (`N = 5`) pipeline loaded from a diffusers-layout
/// folder.
pub trait Pipeline<B: Backend, const N: usize>: Sized {
    /// The model's name in messages (`"FLUX"`).
    const NAME: &'static str;
    /// diffusers' pipeline class, as `model_index.json` names it (`"FluxPipeline"`).
    const CLASS_NAME: &'static str;
    /// diffusers' pipeline defaults.
    const DEFAULTS: Settings;
    /// The longest prompt in tokens (`max_sequence_length`) the pipeline takes.
    const MAX_SEQUENCE_LENGTH: usize;
    /// The most image or video tokens (latent cells per transformer patch) a request may
    /// make: about twice the largest size the model is published for, so a mistyped size is
    /// an error rather than hours of attention over a picture nobody asked for.
    const MAX_IMAGE_TOKENS: usize;
    /// Whether the model takes a negative prompt (classifier-free guidance).
    const NEGATIVE_PROMPT: bool;
    /// The settings of this model alone.
    type Extra: Clone + Debug + Default;
    /// A request encoded and ready to join its denoising loop ([`crate::Job`]).
    type Job;
    /// Its denoising loop ([`crate::Denoising`] of its transformer, inputs and sampler).
    type Denoiser<'a>: Denoise<B, N, Job = Self::Job>
    where
        Self: 'a;

    /// The folder component holding the T5-family text encoder that [`LoadOptions::t5`]
    /// replaces (`text_encoder_2` for FLUX.1, `text_encoder` for WAN); `None` for a pipeline
    /// without one.
    const T5_COMPONENT: Option<&'static str>;

    /// Whose Sparse VideoGen masks the transformer's self-attention can follow; `None` for a
    /// pipeline whose transformer attends densely only (an image model).
    const SPARSE_VIDEO: Option<SvgVariant> = None;

    /// Makes the transformer attend with Sparse VideoGen's `settings` in the generations that
    /// follow, or densely with `None`; an error for settings out of range, of another model's
    /// variant, or for a pipeline without sparse attention ([`Self::SPARSE_VIDEO`] `None`).
    fn set_sparse_attention(
        &mut self,
        settings: Option<SparseVideoSettings>,
    ) -> Result<(), PipelineError> {
        match settings {
            None => Ok(()),
            Some(_) => Err(PipelineError::Request(format!(
                "{} has no sparse attention (Sparse VideoGen is for the video models)",
                Self::NAME
            ))),
        }
    }

    /// Loads the pipeline folder; `transformer_file` replaces its `transformer/` with a
    /// single-file checkpoint in the original authors' layout.
    fn load(
        folder: &Path,
        transformer_file: Option<&Path>,
        device: &B::Device,
    ) -> Result<Self, PipelineError> {
        let options = LoadOptions {
            transformer: transformer_file,
            ..LoadOptions::default()
        };
        Self::load_with(folder, options, device)
    }

    /// Loads the pipeline folder as `options` say: the components they name replaced by single
    /// files (a T5 file for a pipeline without a T5 encoder is an error), the text encoders
    /// kept or loaded for each request.
    fn load_with(
        folder: &Path,
        options: LoadOptions<'_>,
        device: &B::Device,
    ) -> Result<Self, PipelineError>;

    /// How the pipeline's latents relate to its output.
    fn geometry(&self) -> LatentGeometry;

    /// Checks the output size (`frames` is 1 for an image) and returns the latent shape of one
    /// sample's initial noise (`[1, ...]`).
    fn latent_shape(
        &self,
        width: usize,
        height: usize,
        frames: usize,
    ) -> Result<[usize; N], PipelineError> {
        let geometry = self.geometry();
        let shape = geometry.shape([width, height, frames], Self::DEFAULTS.frames)?;
        let tokens = geometry.tokens(&shape);
        if tokens > Self::MAX_IMAGE_TOKENS {
            return Err(PipelineError::Request(format!(
                "{} makes {tokens} tokens; {} takes at most {} (about twice its largest \
                 published size): lower the width and height{}",
                describe([width, height, frames]),
                Self::NAME,
                Self::MAX_IMAGE_TOKENS,
                if frames == 1 { "" } else { " or the frames" },
            )));
        }
        let dims = shape.len();
        shape.try_into().map_err(|_| {
            PipelineError::Request(format!(
                "{} latents have {dims} dimensions, this pipeline's noise {N}",
                Self::NAME
            ))
        })
    }

    /// The checks of a request's settings that need no loaded pipeline: steps, prompt
    /// length, guidance, and a negative prompt only for a model that takes one. A caller can make
    /// them before loading anything; [`Self::check_request`] makes them again.
    fn check_settings(settings: &Settings, negative_prompt: &str) -> Result<(), PipelineError> {
        check_steps(settings.steps)?;
        check_max_sequence_length(settings.max_sequence_length, Self::MAX_SEQUENCE_LENGTH)?;
        if let Some(g) = settings.guidance {
            check_guidance_scale(g)?;
        }
        if !Self::NEGATIVE_PROMPT && !negative_prompt.is_empty() {
            return Err(PipelineError::Request(format!(
                "{} takes no negative prompt (its guidance is embedded, not classifier-free)",
                Self::NAME
            )));
        }
        Ok(())
    }

    /// The sizes of the transformer and VAE that [`Self::working_set`] needs.
    fn model_sizes(&self) -> ModelSizes;

    /// How many pixels (frames times area) the VAE decodes at once for `settings` with the
    /// model's `extra` settings (its tiles).
    fn decoded_at_once(&self, settings: &Settings, extra: &Self::Extra) -> usize;

    /// Transformer batch rows per sample at `settings` (2 where both guidance passes run as
    /// rows of one call).
    fn rows_per_sample(&self, _settings: &Settings, _extra: &Self::Extra) -> usize {
        1
    }

    /// The memory a generation of `samples` samples at `settings` needs beyond the loaded
    /// weights, computing in a dtype of `dtype_bytes` bytes; the size must be one
    /// [`Self::latent_shape`] accepts.
    fn working_set(
        &self,
        settings: &Settings,
        extra: &Self::Extra,
        samples: usize,
        dtype_bytes: usize,
    ) -> Result<WorkingSet, PipelineError> {
        let latent = self.latent_shape(settings.width, settings.height, settings.frames)?;
        let image_tokens = self.geometry().tokens(&latent);
        let rows = samples * self.rows_per_sample(settings, extra);
        let sizes = self.model_sizes();
        Ok(WorkingSet::estimate(
            [
                rows * (image_tokens + settings.max_sequence_length),
                sizes.hidden,
                sizes.mlp_hidden,
            ],
            [
                sizes.decoder_channels,
                self.decoded_at_once(settings, extra),
                samples * settings.width * settings.height * settings.frames,
            ],
            dtype_bytes,
        ))
    }

    /// Fails when a generation of `samples` samples at `settings` would need more than
    /// `available` bytes ([`Self::working_set`]), naming the flags that lower it. Callers
    /// running on the CPU check against [`crate::available_memory`] before they allocate the
    /// noise.
    fn check_memory(
        &self,
        settings: &Settings,
        extra: &Self::Extra,
        samples: usize,
        dtype_bytes: usize,
        available: u64,
    ) -> Result<(), PipelineError> {
        self.working_set(settings, extra, samples, dtype_bytes)?
            .check(available, &describe_samples(samples, settings))
    }

    /// The checks every request gets before anything is encoded: its number of samples, its
    /// settings ([`Self::check_settings`], with each sample's negative prompt), its size
    /// ([`Self::latent_shape`]), the noise's shape (a row per sample) and values.
    fn check_request(&self, request: &Request<B, N, Self::Extra>) -> Result<(), PipelineError> {
        let s = &request.settings;
        check_batch(request.prompts.len())?;
        for prompt in &request.prompts {
            Self::check_settings(s, &prompt.negative)?;
        }
        let mut latent = self.latent_shape(s.width, s.height, s.frames)?;
        latent[0] = request.prompts.len();
        let target = describe_samples(request.prompts.len(), s);
        check_noise_shape(&request.noise.dims(), &latent, &target)?;
        check_noise_values(&request.noise)
    }

    /// Generates `request` caching as `cache` says (a [`dicache_core::CachePolicy`] alone:
    /// one decision per sample, calls timed as queued), calling `on_step(done, total)` after
    /// each denoising step: [`Self::check_request`], then [`Self::run`], whose latents and
    /// decoded output must be finite.
    fn generate(
        &self,
        request: &Request<B, N, Self::Extra>,
        cache: impl Into<CacheSettings>,
        on_step: &mut dyn FnMut(usize, usize),
    ) -> Result<Output<B, N>, PipelineError> {
        self.check_request(request)?;
        let output = self.run(request, &cache.into(), on_step)?;
        check_finite(&output.latents, || "the final latents".into())?;
        check_finite(&output.decoded, || "the VAE's decoded output".into())?;
        Ok(output)
    }

    /// An empty denoising loop of this pipeline's transformer, caching as `cache` says.
    fn denoiser(&self, cache: &CacheSettings) -> Result<Self::Denoiser<'_>, PipelineError>;

    /// Encodes the prompts of a request [`Self::check_request`] accepted and makes it one job,
    /// which joins a denoising loop ([`Denoise::admit`]) at its next step. It needs no loop, so
    /// a server can prepare a request while its loop runs.
    fn prepare(&self, request: &Request<B, N, Self::Extra>) -> Result<Self::Job, PipelineError>;

    /// Decodes one sample's final latents (`[1, ...]`, as [`Output::latents`] holds them)
    /// into its image or video.
    fn decode(
        &self,
        latents: Tensor<B, N>,
        extra: &Self::Extra,
    ) -> Result<Tensor<B, N>, PipelineError>;

    /// Runs the pipeline on a request [`Self::check_request`] accepted, caching as `cache`
    /// says, as one job of a denoising loop of its own; callers use [`Self::generate`].
    fn run(
        &self,
        request: &Request<B, N, Self::Extra>,
        cache: &CacheSettings,
        on_step: &mut dyn FnMut(usize, usize),
    ) -> Result<Output<B, N>, PipelineError> {
        let mut denoiser = self.denoiser(cache)?;
        let id = denoiser.admit(self.prepare(request)?)?;
        let device = request.noise.device();
        let start = Instant::now();
        let finished = loop {
            let ended = denoiser.step()?;
            if let Some((_, result)) = ended.into_iter().next() {
                break result?;
            }
            let progress = denoiser.progress(id).expect("a running job has progress");
            on_step(progress.step, progress.steps);
        };
        let denoise_time = elapsed_synced::<B>(start, &device)?;
        on_step(request.settings.steps, request.settings.steps);
        let decoded = decode_each(finished.latents.clone(), |l| self.decode(l, &request.extra))?;
        Ok(Output {
            latents: finished.latents,
            decoded,
            denoise_time,
            traces: finished.traces,
        })
    }
}

/// What `samples` samples at `settings` ask for, as messages name it: `"a 64x64 image"`,
/// `"3 samples of a 64x64 image"`.
fn describe_samples(samples: usize, settings: &Settings) -> String {
    let one = describe([settings.width, settings.height, settings.frames]);
    match samples {
        1 => one,
        n => format!("{n} samples of {one}"),
    }
}
