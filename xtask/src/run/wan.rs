//! `cargo xtask run wan`.

use std::path::PathBuf;

use anyhow::Result;
use burn::tensor::backend::Backend;
use clap::Args;
use dicache_bench::mini::{self, MiniModel};
use dicache_core::DiCacheConfig;
use dit_pipeline::GuidanceCalls;
use models_wan::WanPipeline;

use super::{CommonArgs, Generate, RunModel, video};

/// Arguments of `cargo xtask run wan`.
#[derive(Debug, Args)]
pub struct WanArgs {
    #[command(flatten)]
    common: CommonArgs,
    /// Frames (4k+1) [default: 81; mini model: 9].
    #[arg(long)]
    frames: Option<usize>,
    /// How the two classifier-free guidance passes run: as the rows of one transformer call
    /// (joined) or a call each (apart); each keeps its own cache state either way.
    #[arg(long, value_enum, default_value_t = GuidanceCalls::Joined)]
    cfg_calls: GuidanceCalls,
    /// Frames per second of the written video.
    #[arg(long, default_value_t = 16)]
    fps: u32,
    /// Also write every frame as a PNG into this folder.
    #[arg(long)]
    frames_dir: Option<PathBuf>,
    /// Where to write the video: .gif (built in), .mp4 or .webp (need ffmpeg on PATH); its
    /// folder is created if needed.
    #[arg(long, default_value = "out/wan.gif")]
    out: PathBuf,
}

/// WAN 2.1 text-to-video.
pub(crate) struct Wan;

impl RunModel<5> for Wan {
    type Pipeline<B: Backend> = WanPipeline<B>;
    type Extra = GuidanceCalls;
    type Target = video::Target;
    const MINI: MiniModel = mini::WAN;

    /// One state per CFG pass.
    fn preset() -> DiCacheConfig {
        DiCacheConfig::wan()
    }
}

/// Runs WAN.
pub fn run(args: WanArgs) -> Result<()> {
    Generate::<Wan, 5> {
        common: &args.common,
        frames: args.frames,
        extra: args.cfg_calls,
        target: video::Target::new(&args.out, args.fps, args.frames_dir.as_deref())?,
    }
    .run()
}
