//! `cargo xtask run wan`.

use std::{path::PathBuf, time::Instant};

use anyhow::Result;
use burn::tensor::backend::Backend;
use clap::Args;
use dicache_core::DiCacheConfig;
use models_wan::{WanPipeline, WanRequest, pipeline};

use super::{CommonArgs, finish, load_pipeline, video};
use crate::backend::{BackendJob, dispatch};

/// Arguments of `cargo xtask run wan`.
#[derive(Debug, Args)]
pub struct WanArgs {
    /// A WAN 2.1 text-to-video pipeline folder in diffusers layout (model_index.json,
    /// scheduler/, text_encoder/, tokenizer/, transformer/, vae/).
    #[arg(long)]
    model: PathBuf,
    /// Use this single-file transformer in Wan's original layout instead of transformer/.
    #[arg(long)]
    transformer: Option<PathBuf>,
    /// What the video should not show (the unconditional pass's prompt).
    #[arg(long, default_value = "")]
    negative_prompt: String,
    /// Video width (multiple of 16).
    #[arg(long, default_value_t = 832)]
    width: usize,
    /// Video height (multiple of 16).
    #[arg(long, default_value_t = 480)]
    height: usize,
    /// Frames (4k+1).
    #[arg(long, default_value_t = 81)]
    frames: usize,
    /// Denoising steps.
    #[arg(long, default_value_t = pipeline::DEFAULT_STEPS)]
    steps: usize,
    /// Classifier-free guidance scale (two transformer passes a step when above 1).
    #[arg(long, default_value_t = pipeline::DEFAULT_GUIDANCE)]
    guidance: f64,
    /// umT5 prompt length in tokens.
    #[arg(long, default_value_t = pipeline::DEFAULT_MAX_SEQUENCE_LENGTH)]
    max_sequence_length: usize,
    /// Frames per second of the written video.
    #[arg(long, default_value_t = 16)]
    fps: u32,
    /// Also write every frame as a PNG into this folder.
    #[arg(long)]
    frames_dir: Option<PathBuf>,
    #[command(flatten)]
    common: CommonArgs,
    /// Where to write the video: .gif (built in), .mp4 or .webp (need ffmpeg on PATH).
    #[arg(long)]
    out: PathBuf,
}

/// Runs WAN on the chosen backend.
pub fn run(args: WanArgs) -> Result<()> {
    let (backend, dtype) = (args.common.backend, args.common.dtype);
    dispatch(backend, dtype, WanJob(args))
}

struct WanJob(WanArgs);

impl BackendJob for WanJob {
    type Output = ();

    fn run<B: Backend>(self, device: B::Device) -> Result<()> {
        let args = self.0;
        let policy = args.common.policy(DiCacheConfig::wan())?;
        let target = video::Target::new(&args.out, args.fps, args.frames_dir.as_deref())?;
        let start = Instant::now();
        let pipe = load_pipeline("WAN", &args.model, || {
            WanPipeline::<B>::load(&args.model, args.transformer.as_deref(), &device)
        })?;
        let shape = pipe.latent_shape(args.width, args.height, args.frames)?;
        let noise = args.common.initial_noise(shape, &device)?;
        let request = WanRequest {
            prompt: args.common.prompt.clone(),
            negative_prompt: args.negative_prompt.clone(),
            width: args.width,
            height: args.height,
            frames: args.frames,
            steps: args.steps,
            guidance: args.guidance,
            max_sequence_length: args.max_sequence_length,
            noise,
        };
        let result = args.common.generate(
            args.steps,
            |on_step| pipe.generate(&request, policy, on_step),
            |r| (&r.latents, &r.trace),
        )?;
        target.save(result.video)?;
        finish(&result.trace, start, &args.out);
        Ok(())
    }
}
