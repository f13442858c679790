//! `cargo xtask run wan`.

use std::{path::PathBuf, time::Instant};

use anyhow::Result;
use burn::tensor::backend::Backend;
use clap::Args;
use dicache_bench::{
    backend::{BackendJob, dispatch},
    mini::{self, Given, Preset},
};
use dicache_core::DiCacheConfig;
use models_wan::{WanPipeline, WanRequest, pipeline};

use super::{CommonArgs, finish, load_pipeline, output, video};

/// Arguments of `cargo xtask run wan`.
#[derive(Debug, Args)]
pub struct WanArgs {
    /// A WAN 2.1 text-to-video pipeline folder in diffusers layout (model_index.json,
    /// scheduler/, text_encoder/, tokenizer/, transformer/, vae/). Without it: the mini model
    /// mini-models/wan-mini, whose own settings then become the defaults (64x64, 9 frames,
    /// 30 steps, guidance 5, 24 prompt tokens).
    #[arg(long)]
    model: Option<PathBuf>,
    /// Use this single-file transformer in Wan's original layout instead of transformer/.
    #[arg(long)]
    transformer: Option<PathBuf>,
    /// What the video should not show (the unconditional pass's prompt).
    #[arg(long, default_value = "")]
    negative_prompt: String,
    /// Video width (multiple of 16) [default: 832; mini model: 64].
    #[arg(long)]
    width: Option<usize>,
    /// Video height (multiple of 16) [default: 480; mini model: 64].
    #[arg(long)]
    height: Option<usize>,
    /// Frames (4k+1) [default: 81; mini model: 9].
    #[arg(long)]
    frames: Option<usize>,
    /// Denoising steps [default: 50; mini model: 30].
    #[arg(long)]
    steps: Option<usize>,
    /// Classifier-free guidance scale (two transformer passes a step when above 1)
    /// [default: 5].
    #[arg(long)]
    guidance: Option<f64>,
    /// umT5 prompt length in tokens [default: 512; mini model: 24].
    #[arg(long)]
    max_sequence_length: Option<usize>,
    /// Frames per second of the written video.
    #[arg(long, default_value_t = 16)]
    fps: u32,
    /// Also write every frame as a PNG into this folder.
    #[arg(long)]
    frames_dir: Option<PathBuf>,
    #[command(flatten)]
    common: CommonArgs,
    /// Where to write the video: .gif (built in), .mp4 or .webp (need ffmpeg on PATH); its
    /// folder is created if needed.
    #[arg(long, default_value = "out/wan.gif")]
    out: PathBuf,
}

/// WanPipeline's own defaults, used with an explicit --model.
const REFERENCE: Preset = Preset {
    width: 832,
    height: 480,
    frames: Some(81),
    steps: pipeline::DEFAULT_STEPS,
    guidance: Some(pipeline::DEFAULT_GUIDANCE),
    max_sequence_length: pipeline::DEFAULT_MAX_SEQUENCE_LENGTH,
};

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
        let given = Given {
            width: args.width,
            height: args.height,
            frames: args.frames,
            steps: args.steps,
            guidance: args.guidance,
            max_sequence_length: args.max_sequence_length,
        };
        let (model, s) = mini::WAN.resolve(args.model.as_deref(), REFERENCE, given)?;
        output::create_parent(&args.out)?;
        let frames = s.frames.expect("the WAN presets set the frames");
        let start = Instant::now();
        let pipe = load_pipeline("WAN", &model, || {
            WanPipeline::<B>::load(&model, args.transformer.as_deref(), &device)
        })?;
        let shape = pipe.latent_shape(s.width, s.height, frames)?;
        let noise = args.common.initial_noise(shape, &device)?;
        let request = WanRequest {
            prompt: args.common.prompt.clone(),
            negative_prompt: args.negative_prompt.clone(),
            width: s.width,
            height: s.height,
            frames,
            steps: s.steps,
            guidance: s.guidance.expect("the WAN presets set the guidance"),
            max_sequence_length: s.max_sequence_length,
            noise,
        };
        let result = args.common.generate(
            s.steps,
            |on_step| pipe.generate(&request, policy, on_step),
            |r| (&r.latents, &r.trace),
        )?;
        target.save(result.video)?;
        finish(&result.trace, start, &args.out);
        Ok(())
    }
}
