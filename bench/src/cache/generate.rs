//! One generation of the benchmark, timed: prompts to 8-bit RGB frames (one for an image) with
//! a cache policy, one sample or a batch, through a pipeline loaded once — any [`Pipeline`],
//! image or video.

use std::{
    path::Path,
    time::{Duration, Instant},
};

use anyhow::{Context, Result};
use burn::tensor::{Tensor, TensorData, backend::Backend};
use dicache_core::{CachePolicy, CacheScope, CacheSettings, CallTiming, Trace};
use dit_pipeline::{Pipeline, Prompt, Request, Settings};
use models_flux::FluxPipeline;
use models_hunyuan::HunyuanVideoPipeline;
use models_wan::WanPipeline;
use vae::Rgb8Image;

use super::Model;
use crate::mini::Preset;

/// What one generation produced and how long it took.
pub struct Generation {
    /// The decoded output as 8-bit RGB: one frame for an image.
    pub frames: Vec<Rgb8Image>,
    /// The cache trace (one entry per transformer call, with its wall time).
    pub trace: Trace,
    /// Wall time of the denoising loop, as the pipeline measured it.
    pub loop_time: Duration,
    /// Wall time of the whole generation: prompt encoding, loop, VAE decoding and the
    /// conversion to 8-bit RGB (which waits for the backend).
    pub total_time: Duration,
}

/// One sample of a batch generation: its frames and its trace.
pub struct Sample {
    /// The decoded output as 8-bit RGB: one frame for an image.
    pub frames: Vec<Rgb8Image>,
    /// The sample's cache trace; the calls' wall times are those of the batched calls.
    pub trace: Trace,
}

/// A pipeline as the benchmark drives it, whatever the dimensions of its output.
trait Generates<B: Backend> {
    /// The initial noise's shape of one sample at `settings`.
    fn noise_shape(&self, settings: &Settings) -> Result<Vec<usize>>;

    /// Generates `prompts` as one batch from `noise` (a row per prompt, put on `device`) at
    /// `settings`, caching as `cache` says: each sample's frames and trace, and the loop's
    /// time.
    fn frames(
        &self,
        prompts: &[&str],
        noise: (&TensorData, &B::Device),
        settings: Settings,
        cache: CacheSettings,
    ) -> Result<(Vec<Sample>, Duration)>;
}

/// A pipeline `P` whose noise and output have `N` dimensions.
struct Driven<P, const N: usize>(P);

impl<B: Backend, P: Pipeline<B, N>, const N: usize> Generates<B> for Driven<P, N> {
    fn noise_shape(&self, s: &Settings) -> Result<Vec<usize>> {
        Ok(self.0.latent_shape(s.width, s.height, s.frames)?.to_vec())
    }

    fn frames(
        &self,
        prompts: &[&str],
        (noise, device): (&TensorData, &B::Device),
        settings: Settings,
        cache: CacheSettings,
    ) -> Result<(Vec<Sample>, Duration)> {
        let request = Request {
            prompts: prompts.iter().map(|p| Prompt::new(*p)).collect(),
            settings,
            noise: Tensor::from_data(noise.clone(), device),
            extra: P::Extra::default(),
        };
        let out = self.0.generate(&request, cache, &mut |_, _| {})?;
        // Images `[n, 3, h, w]` are videos of one frame.
        let mut dims = out.decoded.dims().to_vec();
        if N == 4 {
            dims.insert(2, 1);
        }
        let video = out.decoded.reshape::<5, _>(
            <[usize; 5]>::try_from(dims).expect("decoded outputs are images or videos"),
        );
        let samples = vae::video_to_rgb8(video)?
            .into_iter()
            .zip(out.traces)
            .map(|(frames, trace)| Sample { frames, trace })
            .collect();
        Ok((samples, out.denoise_time))
    }
}

/// A pipeline loaded once, generating at the settings of a preset.
pub struct Generator<B: Backend> {
    pipeline: Box<dyn Generates<B>>,
    preset: Preset,
    device: B::Device,
}

impl<B: Backend> Generator<B> {
    /// Loads `model`'s pipeline from `folder` (its transformer from the single file
    /// `transformer` when given), to generate at `preset`'s settings.
    pub fn load(
        model: Model,
        (folder, transformer): (&Path, Option<&Path>),
        preset: Preset,
        device: &B::Device,
    ) -> Result<Self> {
        let context = || format!("loading the {model:?} pipeline from {}", folder.display());
        let pipeline: Box<dyn Generates<B>> = match model {
            Model::Flux => Box::new(Driven::<_, 4>(
                FluxPipeline::load(folder, transformer, device).with_context(context)?,
            )),
            Model::Wan => Box::new(Driven::<_, 5>(
                WanPipeline::load(folder, transformer, device).with_context(context)?,
            )),
            Model::Hunyuan => Box::new(Driven::<_, 5>(
                HunyuanVideoPipeline::load(folder, transformer, device).with_context(context)?,
            )),
        };
        Ok(Self {
            pipeline,
            preset,
            device: device.clone(),
        })
    }

    /// The shape of one sample's initial noise at the preset's size.
    pub fn noise_shape(&self) -> Result<Vec<usize>> {
        self.pipeline.noise_shape(&self.preset.settings())
    }

    /// Generates `prompt` from the initial `noise` with `policy`, each transformer call
    /// waiting for the backend so the computed and skipped calls are timed apart.
    pub fn generate(
        &self,
        prompt: &str,
        noise: &TensorData,
        policy: CachePolicy,
    ) -> Result<Generation> {
        let start = Instant::now();
        let cache = CacheSettings {
            timing: CallTiming::Synced,
            ..policy.into()
        };
        let (mut samples, loop_time) = self.pipeline.frames(
            &[prompt],
            (noise, &self.device),
            self.preset.settings(),
            cache,
        )?;
        let Sample { frames, trace } = samples.remove(0);
        Ok(Generation {
            frames,
            trace,
            loop_time,
            total_time: start.elapsed(),
        })
    }

    /// Generates `prompts` as one batch from `noise` (a row per prompt) with `policy` deciding
    /// as `scope` says: each sample's frames and trace, and the whole generation's wall time.
    pub fn generate_batch(
        &self,
        prompts: &[&str],
        noise: &TensorData,
        (policy, scope): (CachePolicy, CacheScope),
    ) -> Result<(Vec<Sample>, Duration)> {
        let start = Instant::now();
        let cache = CacheSettings {
            scope,
            ..policy.into()
        };
        let (samples, _) = self.pipeline.frames(
            prompts,
            (noise, &self.device),
            self.preset.settings(),
            cache,
        )?;
        Ok((samples, start.elapsed()))
    }
}
