//! `cargo xtask run flux`.

use std::path::PathBuf;

use anyhow::{Result, bail};
use burn::tensor::{Tensor, backend::Backend};
use clap::Args;
use dicache_bench::mini::{self, MiniModel};
use dicache_core::DiCacheConfig;
use models_flux::FluxPipeline;

use super::{CommonArgs, Generate, RunModel, output};

/// Arguments of `cargo xtask run flux`.
#[derive(Debug, Args)]
pub struct FluxArgs {
    #[command(flatten)]
    common: CommonArgs,
    /// Where to write the image (PNG); its folder is created if needed.
    #[arg(long, default_value = "out/flux.png")]
    out: PathBuf,
}

/// FLUX.1 text-to-image.
struct Flux;

impl RunModel<4> for Flux {
    type Pipeline<B: Backend> = FluxPipeline<B>;
    type Extra = ();
    /// The image file.
    type Target = PathBuf;
    const MINI: Option<MiniModel> = Some(mini::FLUX);

    fn preset() -> DiCacheConfig {
        DiCacheConfig::flux()
    }

    fn save<B: Backend>(decoded: Tensor<B, 4>, target: &PathBuf) -> Result<()> {
        output::save_image(decoded, target)
    }
}

/// Runs FLUX.
pub fn run(args: FluxArgs) -> Result<()> {
    if args.out.extension().is_none() {
        bail!(
            "--out {} needs an image extension such as .png",
            args.out.display()
        );
    }
    Generate::<Flux, 4> {
        common: &args.common,
        frames: None,
        extra: (),
        target: args.out.clone(),
        out: &args.out,
    }
    .run()
}
