//! One generation of the benchmark, timed: prompt to 8-bit RGB frames (one for FLUX) with a
//! cache policy, through the FLUX or WAN pipeline loaded once.

use std::{
    path::Path,
    time::{Duration, Instant},
};

use anyhow::{Context, Result};
use burn::tensor::{Tensor, TensorData, backend::Backend};
use dicache_core::{CachePolicy, Trace};
use models_flux::{FluxPipeline, FluxRequest};
use models_wan::{WanPipeline, WanRequest};
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

enum Loaded<B: Backend> {
    Flux(Box<FluxPipeline<B>>),
    Wan(Box<WanPipeline<B>>),
}

/// A pipeline loaded once, generating at the settings of a preset.
pub struct Generator<B: Backend> {
    pipeline: Loaded<B>,
    preset: Preset,
    device: B::Device,
}

impl<B: Backend> Generator<B> {
    /// Loads `model`'s pipeline from `folder`, to generate at `preset`'s settings.
    pub fn load(model: Model, folder: &Path, preset: Preset, device: &B::Device) -> Result<Self> {
        let context = || format!("loading the {model:?} pipeline from {}", folder.display());
        let pipeline = match model {
            Model::Flux => Loaded::Flux(Box::new(
                FluxPipeline::load(folder, None, device).with_context(context)?,
            )),
            Model::Wan => Loaded::Wan(Box::new(
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
        let p = &self.preset;
        Ok(match &self.pipeline {
            Loaded::Flux(pipe) => pipe.latent_shape(p.width, p.height)?.to_vec(),
            Loaded::Wan(pipe) => pipe
                .latent_shape(p.width, p.height, self.frames())?
                .to_vec(),
        })
    }

    /// Generates `prompt` from the initial `noise` with `policy`, timed.
    pub fn generate(
        &self,
        prompt: &str,
        noise: &TensorData,
        policy: CachePolicy,
    ) -> Result<Generation> {
        let p = &self.preset;
        let start = Instant::now();
        let (frames, trace, loop_time) = match &self.pipeline {
            Loaded::Flux(pipe) => {
                let request = FluxRequest {
                    prompt: prompt.to_string(),
                    width: p.width,
                    height: p.height,
                    steps: p.steps,
                    guidance: p.guidance,
                    max_sequence_length: p.max_sequence_length,
                    noise: Tensor::from_data(noise.clone(), &self.device),
                };
                let out = pipe.generate(&request, policy, &mut |_, _| {})?;
                (vae::to_rgb8(out.image)?, out.trace, out.denoise_time)
            }
            Loaded::Wan(pipe) => {
                let request = WanRequest {
                    prompt: prompt.to_string(),
                    negative_prompt: String::new(),
                    width: p.width,
                    height: p.height,
                    frames: self.frames(),
                    steps: p.steps,
                    guidance: p.guidance.expect("the WAN preset sets the guidance"),
                    max_sequence_length: p.max_sequence_length,
                    noise: Tensor::from_data(noise.clone(), &self.device),
                };
                let out = pipe.generate(&request, policy, &mut |_, _| {})?;
                let mut videos = vae::video_to_rgb8(out.video)?;
                (videos.remove(0), out.trace, out.denoise_time)
            }
        };
        Ok(Generation {
            frames,
            trace,
            loop_time,
            total_time: start.elapsed(),
        })
    }

    fn frames(&self) -> usize {
        self.preset.frames.expect("the WAN preset sets the frames")
    }
}
