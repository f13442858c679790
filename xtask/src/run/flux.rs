//! `cargo xtask run flux`.

use std::{path::PathBuf, time::Instant};

use anyhow::{Result, bail};
use burn::tensor::backend::Backend;
use clap::Args;
use dicache_core::DiCacheConfig;
use models_flux::{FluxPipeline, FluxRequest, pipeline};

use super::{CommonArgs, finish, load_pipeline, output};
use crate::backend::{BackendJob, dispatch};

/// Arguments of `cargo xtask run flux`.
#[derive(Debug, Args)]
pub struct FluxArgs {
    /// A FLUX.1 pipeline folder in diffusers layout (model_index.json, scheduler/,
    /// text_encoder/, text_encoder_2/, tokenizer/, tokenizer_2/, transformer/, vae/).
    #[arg(long)]
    model: PathBuf,
    /// Use this single-file transformer (BFL's flux1-dev.safetensors) instead of transformer/.
    #[arg(long)]
    transformer: Option<PathBuf>,
    /// Image width (multiple of 16).
    #[arg(long, default_value_t = 1024)]
    width: usize,
    /// Image height (multiple of 16).
    #[arg(long, default_value_t = 1024)]
    height: usize,
    /// Denoising steps.
    #[arg(long, default_value_t = pipeline::DEFAULT_STEPS)]
    steps: usize,
    /// Embedded guidance scale (dev models; default 3.5). Schnell has none.
    #[arg(long)]
    guidance: Option<f64>,
    /// T5 prompt length in tokens.
    #[arg(long, default_value_t = pipeline::DEFAULT_MAX_SEQUENCE_LENGTH)]
    max_sequence_length: usize,
    #[command(flatten)]
    common: CommonArgs,
    /// Where to write the image (PNG).
    #[arg(long)]
    out: PathBuf,
}

/// Runs FLUX on the chosen backend.
pub fn run(args: FluxArgs) -> Result<()> {
    let (backend, dtype) = (args.common.backend, args.common.dtype);
    dispatch(backend, dtype, FluxJob(args))
}

struct FluxJob(FluxArgs);

impl BackendJob for FluxJob {
    type Output = ();

    fn run<B: Backend>(self, device: B::Device) -> Result<()> {
        let args = self.0;
        let policy = args.common.policy(DiCacheConfig::flux())?;
        if args.out.extension().is_none() {
            bail!(
                "--out {} needs an image extension such as .png",
                args.out.display()
            );
        }
        let start = Instant::now();
        let pipe = load_pipeline("FLUX", &args.model, || {
            FluxPipeline::<B>::load(&args.model, args.transformer.as_deref(), &device)
        })?;
        let shape = pipe.latent_shape(args.width, args.height)?;
        let noise = args.common.initial_noise(shape, &device)?;
        let request = FluxRequest {
            prompt: args.common.prompt.clone(),
            width: args.width,
            height: args.height,
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
        output::save_image(result.image, &args.out)?;
        finish(&result.trace, start, &args.out);
        Ok(())
    }
}
