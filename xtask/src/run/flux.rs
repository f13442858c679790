//! `cargo xtask run flux`.

use std::{path::PathBuf, time::Instant};

use anyhow::{Result, bail};
use burn::tensor::backend::Backend;
use clap::Args;
use dicache_bench::{
    backend::{BackendJob, dispatch},
    mini::{self, Given, Preset},
};
use dicache_core::DiCacheConfig;
use models_flux::{FluxPipeline, FluxRequest, pipeline};

use super::{CommonArgs, finish, load_pipeline, output};

/// Arguments of `cargo xtask run flux`.
#[derive(Debug, Args)]
pub struct FluxArgs {
    /// A FLUX.1 pipeline folder in diffusers layout (model_index.json, scheduler/,
    /// text_encoder/, text_encoder_2/, tokenizer/, tokenizer_2/, transformer/, vae/). Without
    /// it: the mini model mini-models/flux-mini, whose own settings then become the defaults
    /// (128x128, 28 steps, guidance 3.5, 24 prompt tokens).
    #[arg(long)]
    model: Option<PathBuf>,
    /// Use this single-file transformer (BFL's flux1-dev.safetensors) instead of transformer/.
    #[arg(long)]
    transformer: Option<PathBuf>,
    /// Image width (multiple of 16) [default: 1024; mini model: 128].
    #[arg(long)]
    width: Option<usize>,
    /// Image height (multiple of 16) [default: 1024; mini model: 128].
    #[arg(long)]
    height: Option<usize>,
    /// Denoising steps [default: 28].
    #[arg(long)]
    steps: Option<usize>,
    /// Embedded guidance scale [default: 3.5 on dev models and the mini model]. Schnell has
    /// none.
    #[arg(long)]
    guidance: Option<f64>,
    /// T5 prompt length in tokens [default: 512; mini model: 24].
    #[arg(long)]
    max_sequence_length: Option<usize>,
    #[command(flatten)]
    common: CommonArgs,
    /// Where to write the image (PNG); its folder is created if needed.
    #[arg(long, default_value = "out/flux.png")]
    out: PathBuf,
}

/// FluxPipeline's own defaults, used with an explicit --model.
const REFERENCE: Preset = Preset {
    width: 1024,
    height: 1024,
    frames: None,
    steps: pipeline::DEFAULT_STEPS,
    guidance: None,
    max_sequence_length: pipeline::DEFAULT_MAX_SEQUENCE_LENGTH,
};

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
        let given = Given {
            width: args.width,
            height: args.height,
            frames: None,
            steps: args.steps,
            guidance: args.guidance,
            max_sequence_length: args.max_sequence_length,
        };
        let (model, s) = mini::FLUX.resolve(args.model.as_deref(), REFERENCE, given)?;
        output::create_parent(&args.out)?;
        let start = Instant::now();
        let pipe = load_pipeline("FLUX", &model, || {
            FluxPipeline::<B>::load(&model, args.transformer.as_deref(), &device)
        })?;
        let shape = pipe.latent_shape(s.width, s.height)?;
        let noise = args.common.initial_noise(shape, &device)?;
        let request = FluxRequest {
            prompt: args.common.prompt.clone(),
            width: s.width,
            height: s.height,
            steps: s.steps,
            guidance: s.guidance,
            max_sequence_length: s.max_sequence_length,
            noise,
        };
        let result = args.common.generate(
            s.steps,
            |on_step| pipe.generate(&request, policy, on_step),
            |r| (&r.latents, &r.trace),
        )?;
        output::save_image(result.image, &args.out)?;
        finish(&result.trace, start, &args.out);
        Ok(())
    }
}
