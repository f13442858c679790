//! `cargo xtask run hunyuan`.

use std::path::PathBuf;

use anyhow::Result;
use burn::tensor::backend::Backend;
use clap::{Args, ValueEnum};
use dicache_bench::mini::{self, MiniModel};
use dicache_core::DiCacheConfig;
use models_hunyuan::HunyuanVideoPipeline;
use vae::{TemporalTiles, TileConfig};

use super::{CommonArgs, Generate, RunModel, video};

/// Arguments of `cargo xtask run hunyuan`.
#[derive(Debug, Args)]
pub struct HunyuanArgs {
    #[command(flatten)]
    common: CommonArgs,
    /// Frames (4k+1) [default: 129; mini model: 9].
    #[arg(long)]
    frames: Option<usize>,
    /// How the VAE decodes (an axis is tiled only when the video is longer than one tile).
    #[arg(long, value_enum, default_value_t = VaeTiling::SpaceAndTime)]
    vae_tiling: VaeTiling,
    /// Frames per second of the written video (HunyuanVideo's 129 frames are 5 s at 24).
    #[arg(long, default_value_t = 24)]
    fps: u32,
    /// Also write every frame as a PNG into this folder.
    #[arg(long)]
    frames_dir: Option<PathBuf>,
    /// Where to write the video: .gif (built in), .mp4 or .webp (need ffmpeg on PATH); its
    /// folder is created if needed.
    #[arg(long, default_value = "out/hunyuan.gif")]
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

/// HunyuanVideo text-to-video.
pub(crate) struct HunyuanVideo;

impl RunModel<5> for HunyuanVideo {
    type Pipeline<B: Backend> = HunyuanVideoPipeline<B>;
    /// The VAE's tiles.
    type Extra = TileConfig;
    type Target = video::Target;
    const MINI: MiniModel = mini::HUNYUAN;

    fn preset() -> DiCacheConfig {
        DiCacheConfig::hunyuan_video()
    }
}

/// Runs HunyuanVideo.
pub fn run(args: HunyuanArgs) -> Result<()> {
    Generate::<HunyuanVideo, 5> {
        common: &args.common,
        frames: args.frames,
        extra: args.vae_tiling.tiles(),
        target: video::Target::new(&args.out, args.fps, args.frames_dir.as_deref())?,
    }
    .run()
}
