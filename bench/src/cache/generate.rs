//! One generation of the benchmark, timed: prompt to 8-bit RGB frames (one for an image) with a
//! cache policy, through a pipeline loaded once — any [`Pipeline`], image or video.

use std::{
    path::Path,
    time::{Duration, Instant},
};

use anyhow::{Context, Result};
use burn::tensor::{Tensor, TensorData, backend::Backend};
use dicache_core::{CachePolicy, Trace};
use dit_pipeline::{Pipeline, Request, Settings};
use models_flux::FluxPipeline;
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

/// A pipeline as the benchmark drives it, whatever the dimensions of its output.
trait Generates<B: Backend> {
    /// The initial noise's shape at `settings`.
    fn noise_shape(&self, settings: &Settings) -> Result<Vec<usize>>;

    /// Generates `prompt` from `noise` (put on `device`) at `settings` with `policy`: the
    /// frames, the trace and the loop's time.
    fn frames(
        &self,
        prompt: &str,
        noise: (&TensorData, &B::Device),
        settings: Settings,
        policy: CachePolicy,
    ) -> Result<(Vec<Rgb8Image>, Trace, Duration)>;
}

/// A pipeline `P` whose noise and output have `N` dimensions.
struct Driven<P, const N: usize>(P);

impl<B: Backend, P: Pipeline<B, N>, const N: usize> Generates<B> for Driven<P, N> {
    fn noise_shape(&self, s: &Settings) -> Result<Vec<usize>> {
        Ok(self.0.latent_shape(s.width, s.height, s.frames)?.to_vec())
    }

    fn frames(
        &self,
        prompt: &str,
        (noise, device): (&TensorData, &B::Device),
        settings: Settings,
        policy: CachePolicy,
    ) -> Result<(Vec<Rgb8Image>, Trace, Duration)> {
        let request = Request {
            prompt: prompt.to_string(),
            negative_prompt: String::new(),
            settings,
            noise: Tensor::from_data(noise.clone(), device),
            extra: P::Extra::default(),
        };
        // The computed and skipped calls are timed apart: each call waits for the backend.
        let out = self.0.generate_timed(&request, policy, &mut |_, _| {})?;
        // An image `[1, 3, h, w]` is a video of one frame.
        let mut dims = out.decoded.dims().to_vec();
        if N == 4 {
            dims.insert(2, 1);
        }
        let video = out.decoded.reshape::<5, _>(
            <[usize; 5]>::try_from(dims).expect("decoded outputs are images or videos"),
        );
        let mut videos = vae::video_to_rgb8(video)?;
        Ok((videos.remove(0), out.trace, out.denoise_time))
    }
}

/// A pipeline loaded once, generating at the settings of a preset.
pub struct Generator<B: Backend> {
    pipeline: Box<dyn Generates<B>>,
    preset: Preset,
    device: B::Device,
}

impl<B: Backend> Generator<B> {
    /// Loads `model`'s pipeline from `folder`, to generate at `preset`'s settings.
    pub fn load(model: Model, folder: &Path, preset: Preset, device: &B::Device) -> Result<Self> {
        let context = || format!("loading the {model:?} pipeline from {}", folder.display());
        let pipeline: Box<dyn Generates<B>> = match model {
            Model::Flux => Box::new(Driven::<_, 4>(
                FluxPipeline::load(folder, None, device).with_context(context)?,
            )),
            Model::Wan => Box::new(Driven::<_, 5>(
                WanPipeline::load(folder, None, device).with_context(context)?,
            )),
        };
        Ok(Self {
            pipeline,
            preset,
            device: device.clone(),
        })
    }

    /// The shape of the initial noise at the preset's size.
    pub fn noise_shape(&self) -> Result<Vec<usize>> {
        self.pipeline.noise_shape(&self.preset.settings())
    }

    /// Generates `prompt` from the initial `noise` with `policy`, timed.
    pub fn generate(
        &self,
        prompt: &str,
        noise: &TensorData,
        policy: CachePolicy,
    ) -> Result<Generation> {
        let start = Instant::now();
        let (frames, trace, loop_time) = self.pipeline.frames(
            prompt,
            (noise, &self.device),
            self.preset.settings(),
            policy,
        )?;
        Ok(Generation {
            frames,
            trace,
            loop_time,
            total_time: start.elapsed(),
        })
    }
}
