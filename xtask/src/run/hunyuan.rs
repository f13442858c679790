//! `cargo xtask run hunyuan`.

use std::{path::PathBuf, time::Instant};

use anyhow::Result;
use burn::tensor::backend::Backend;
use clap::{Args, ValueEnum};
use dicache_bench::backend::{BackendJob, dispatch};
use dicache_core::DiCacheConfig;
use models_hunyuan::{HunyuanVideoPipeline, HunyuanVideoRequest, pipeline};
use vae::{TemporalTiles, TileConfig};

use super::{CommonArgs, finish, load_pipeline, video};

/// Arguments of `cargo xtask run hunyuan`.
#[derive(Debug, Args)]
pub struct HunyuanArgs {
    /// A HunyuanVideo pipeline folder in diffusers layout (model_index.json, scheduler/,
    /// text_encoder/, tokenizer/, text_encoder_2/, tokenizer_2/, transformer/, vae/).
    #[arg(long)]
    model: PathBuf,
    /// Use this single-file transformer in Tencent's original layout instead of transformer/.
    #[arg(long)]
    transformer: Option<PathBuf>,
    /// Video width (multiple of 16).
    #[arg(long, default_value_t = pipeline::DEFAULT_WIDTH)]
    width: usize,
    /// Video height (multiple of 16).
    #[arg(long, default_value_t = pipeline::DEFAULT_HEIGHT)]
    height: usize,
    /// Frames (4k+1).
    #[arg(long, default_value_t = pipeline::DEFAULT_FRAMES)]
    frames: usize,
    /// Denoising steps.
    #[arg(long, default_value_t = pipeline::DEFAULT_STEPS)]
    steps: usize,
    /// Embedded guidance scale (one transformer pass a step).
    #[arg(long, default_value_t = pipeline::DEFAULT_GUIDANCE)]
    guidance: f64,
    /// LLaMA prompt length in tokens (after the template).
    #[arg(long, default_value_t = pipeline::DEFAULT_MAX_SEQUENCE_LENGTH)]
    max_sequence_length: usize,
    /// How the VAE decodes (an axis is tiled only when the video is longer than one tile).
    #[arg(long, value_enum, default_value_t = VaeTiling::SpaceAndTime)]
    vae_tiling: VaeTiling,
    /// Frames per second of the written video (HunyuanVideo's 129 frames are 5 s at 24).
    #[arg(long, default_value_t = 24)]
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

/// The VAE's decoding, in diffusers' terms.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum VaeTiling {
    /// As after `vae.enable_tiling()` (HunyuanVideo's own example): 17 frames of 256x256 pixels
    /// at a time, for memory bounded by the tile rather than the video.
    SpaceAndTime,
    /// The pipeline without `enable_tiling`: 17 frames at a time, whole frames.
    Time,
    /// One pass of the decoder over the whole video.
    None,
}

impl VaeTiling {
    fn tiles(self) -> TileConfig {
        match self {
            Self::SpaceAndTime => TileConfig::default(),
            Self::Time => TileConfig {
                spatial: None,
                temporal: Some(TemporalTiles::default()),
            },
            Self::None => TileConfig {
                spatial: None,
                temporal: None,
            },
        }
    }
}

/// Runs HunyuanVideo on the chosen backend.
pub fn run(args: HunyuanArgs) -> Result<()> {
    let (backend, dtype) = (args.common.backend, args.common.dtype);
    dispatch(backend, dtype, HunyuanJob(args))
}

struct HunyuanJob(HunyuanArgs);

impl BackendJob for HunyuanJob {
    type Output = ();

    fn run<B: Backend>(self, device: B::Device) -> Result<()> {
        let args = self.0;
        let policy = args.common.policy(DiCacheConfig::hunyuan_video())?;
        let target = video::Target::new(&args.out, args.fps, args.frames_dir.as_deref())?;
        let start = Instant::now();
        let pipe = load_pipeline("HunyuanVideo", &args.model, || {
            HunyuanVideoPipeline::<B>::load(&args.model, args.transformer.as_deref(), &device)
        })?;
        let shape = pipe.latent_shape(args.width, args.height, args.frames)?;
        let noise = args.common.initial_noise(shape, &device)?;
        let request = HunyuanVideoRequest {
            prompt: args.common.prompt.clone(),
            width: args.width,
            height: args.height,
            frames: args.frames,
            steps: args.steps,
            guidance: args.guidance,
            max_sequence_length: args.max_sequence_length,
            noise,
            vae_tiles: args.vae_tiling.tiles(),
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
