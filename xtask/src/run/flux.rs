//! `cargo xtask run flux`.

use std::path::PathBuf;

use anyhow::Result;
use burn::tensor::backend::Backend;
use clap::Args;
use dicache_bench::mini::{self, MiniModel};
use dicache_core::DiCacheConfig;
use models_flux::FluxPipeline;

use super::{CommonArgs, Generate, RunModel, output::ImageFile};

/// Arguments of `cargo xtask run flux`.
#[derive(Debug, Args)]
pub struct FluxArgs {
    #[command(flatten)]
    common: CommonArgs,
    /// Where to write the image: .png, .jpg, .webp or .bmp; its folder is created if needed.
    #[arg(long, default_value = "out/flux.png")]
    out: PathBuf,
}

/// FLUX.1 text-to-image.
pub(crate) struct Flux;

impl RunModel<4> for Flux {
    type Pipeline<B: Backend> = FluxPipeline<B>;
    type Extra = ();
    type Target = ImageFile;
    const MINI: MiniModel = mini::FLUX;

    fn preset() -> DiCacheConfig {
        DiCacheConfig::flux()
    }
}

/// Runs FLUX.
pub fn run(args: FluxArgs) -> Result<()> {
    Generate::<Flux, 4> {
        common: &args.common,
        frames: None,
        extra: (),
        target: ImageFile::new("--out", &args.out)?,
    }
    .run()
}
