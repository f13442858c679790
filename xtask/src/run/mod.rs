//! `cargo xtask run flux|wan|hunyuan`: prompt to image or video.

mod flux;
mod hunyuan;
pub(crate) mod output;
mod video;
mod wan;

use std::{
    path::{Path, PathBuf},
    time::Instant,
};

use anyhow::{Context, Result, bail};
use burn::tensor::{Tensor, backend::Backend};
use clap::{Args, Subcommand, ValueEnum};
use dicache_bench::backend::{BackendKind, Dtype};
use dicache_core::{CachePolicy, DiCacheConfig, FirstBlockConfig, Trace, UniformConfig};

/// Which model to run.
#[derive(Debug, Subcommand)]
pub enum RunCommand {
    /// FLUX.1 text-to-image from a diffusers-layout folder.
    Flux(flux::FluxArgs),
    /// WAN 2.1 text-to-video from a diffusers-layout folder.
    Wan(wan::WanArgs),
    /// HunyuanVideo text-to-video from a diffusers-layout folder.
    Hunyuan(hunyuan::HunyuanArgs),
}

/// Runs the chosen model.
pub fn run(command: RunCommand) -> Result<()> {
    match command {
        RunCommand::Flux(args) => flux::run(args),
        RunCommand::Wan(args) => wan::run(args),
        RunCommand::Hunyuan(args) => hunyuan::run(args),
    }
}

/// The cache policy names of the command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum CacheKind {
    /// Every block of every step.
    None,
    /// Compute every `--interval`-th step, reuse the last residual in between.
    Uniform,
    /// First-Block Cache.
    Fbcache,
    /// DiCache with the model's preset.
    Dicache,
}

/// Options every run command shares.
#[derive(Debug, Args)]
pub struct CommonArgs {
    /// The prompt.
    #[arg(long)]
    pub prompt: String,
    /// Seed of the initial noise (ignored with --init-noise).
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Backend to run on (each needs its cargo feature).
    #[arg(long, value_enum, default_value_t = BackendKind::Cpu)]
    pub backend: BackendKind,
    /// Float dtype of weights and compute.
    #[arg(long, value_enum, default_value_t = Dtype::F32)]
    pub dtype: Dtype,
    /// Cache policy.
    #[arg(long, value_enum, default_value_t = CacheKind::Dicache)]
    pub cache: CacheKind,
    /// Skip threshold of dicache (delta) or fbcache (relative L1).
    #[arg(long)]
    pub threshold: Option<f64>,
    /// Blocks in the probe of dicache / fbcache.
    #[arg(long)]
    pub probe_depth: Option<usize>,
    /// Fraction of steps always computed first (dicache).
    #[arg(long)]
    pub warmup_ratio: Option<f64>,
    /// Compute every N-th step (uniform).
    #[arg(long)]
    pub interval: Option<usize>,
    /// Initial noise: a safetensors file with one f32 tensor "latents" in the unpacked latent
    /// layout.
    #[arg(long)]
    pub init_noise: Option<PathBuf>,
    /// Write the sampler's final latents (tensor "latents", unpacked layout, before the VAE's
    /// scaling/shift is undone) to this safetensors file.
    #[arg(long)]
    pub save_latents: Option<PathBuf>,
    /// Write the cache trace (JSON) to this file.
    #[arg(long)]
    pub trace: Option<PathBuf>,
}

impl CommonArgs {
    /// The cache policy the options ask for, starting from the model's DiCache `preset`.
    pub fn policy(&self, preset: DiCacheConfig) -> Result<CachePolicy> {
        let misplaced = |flag: &str, cache: &str| -> Result<CachePolicy> {
            bail!("{flag} does not apply to --cache {cache}")
        };
        let policy = match self.cache {
            CacheKind::None => {
                for (flag, given) in self.knobs() {
                    if given {
                        return misplaced(flag, "none");
                    }
                }
                CachePolicy::None
            }
            CacheKind::Uniform => {
                if self.threshold.is_some()
                    || self.probe_depth.is_some()
                    || self.warmup_ratio.is_some()
                {
                    return misplaced("--threshold/--probe-depth/--warmup-ratio", "uniform");
                }
                CachePolicy::Uniform(UniformConfig {
                    interval: self.interval.unwrap_or(2),
                })
            }
            CacheKind::Fbcache => {
                if self.warmup_ratio.is_some() || self.interval.is_some() {
                    return misplaced("--warmup-ratio/--interval", "fbcache");
                }
                let d = FirstBlockConfig::default();
                CachePolicy::FirstBlock(FirstBlockConfig {
                    threshold: self.threshold.unwrap_or(d.threshold),
                    probe_depth: self.probe_depth.unwrap_or(d.probe_depth),
                })
            }
            CacheKind::Dicache => {
                if self.interval.is_some() {
                    return misplaced("--interval", "dicache");
                }
                CachePolicy::DiCache(DiCacheConfig {
                    threshold: self.threshold.unwrap_or(preset.threshold),
                    probe_depth: self.probe_depth.unwrap_or(preset.probe_depth),
                    warmup_ratio: self.warmup_ratio.unwrap_or(preset.warmup_ratio),
                    ..preset
                })
            }
        };
        Ok(policy)
    }

    /// The initial noise of `shape`: the --init-noise file, or drawn from --seed.
    pub fn initial_noise<B: Backend, const D: usize>(
        &self,
        shape: [usize; D],
        device: &B::Device,
    ) -> Result<Tensor<B, D>> {
        output::initial_noise(self.init_noise.as_deref(), self.seed, shape, device)
    }

    /// Runs `generate` behind a progress bar over `steps` denoising steps (`generate` reports
    /// each step done through the callback it is given), then writes the final latents to
    /// --save-latents and the trace to --trace where asked, taking both from the output with
    /// `parts`.
    pub fn generate<T, E, B: Backend, const D: usize>(
        &self,
        steps: usize,
        generate: impl FnOnce(&mut dyn FnMut(usize, usize)) -> Result<T, E>,
        parts: impl Fn(&T) -> (&Tensor<B, D>, &Trace),
    ) -> Result<T>
    where
        E: std::error::Error + Send + Sync + 'static,
    {
        let bar = output::step_bar(steps);
        let result = generate(&mut |done, _| bar.set_position(done as u64));
        bar.finish_and_clear();
        let result = result?;
        let (latents, trace) = parts(&result);
        if let Some(path) = &self.save_latents {
            output::save_latents(latents.clone(), path)?;
        }
        if let Some(path) = &self.trace {
            trace
                .write_json(path)
                .with_context(|| format!("cannot write {}", path.display()))?;
        }
        Ok(result)
    }

    fn knobs(&self) -> [(&'static str, bool); 4] {
        [
            ("--threshold", self.threshold.is_some()),
            ("--probe-depth", self.probe_depth.is_some()),
            ("--warmup-ratio", self.warmup_ratio.is_some()),
            ("--interval", self.interval.is_some()),
        ]
    }
}

/// Loads the `model` pipeline (e.g. "FLUX") from `folder` with `load`, saying so first and
/// naming both on failure.
pub fn load_pipeline<P, E>(
    model: &str,
    folder: &Path,
    load: impl FnOnce() -> Result<P, E>,
) -> Result<P>
where
    E: std::error::Error + Send + Sync + 'static,
{
    eprintln!("loading {}", folder.display());
    load().with_context(|| format!("loading the {model} pipeline from {}", folder.display()))
}

/// Prints the summary of a generation that began at `start` and wrote `out`.
pub fn finish(trace: &Trace, start: Instant, out: &Path) {
    print_summary(trace, start.elapsed().as_secs_f64());
    eprintln!("wrote {}", out.display());
}

/// Prints the one-screen summary of a generation.
fn print_summary(trace: &Trace, total_seconds: f64) {
    let s = trace.summary();
    let loop_seconds = s.total_ms / 1e3;
    let per_computed = s.mean_computed_ms / 1e3;
    // What the loop would have taken with every call computed, at the measured cost of a
    // computed call.
    let uncached = s.calls as f64 * per_computed;
    eprintln!("cache      {}", trace.policy.name());
    eprintln!(
        "steps      {} computed, {} skipped of {} transformer calls",
        s.computed, s.skipped, s.calls
    );
    eprintln!("blocks     {} of {} run", s.blocks_run, s.blocks_uncached);
    eprintln!(
        "per step   {per_computed:.3} s computed, {:.3} s skipped",
        s.mean_skipped_ms / 1e3
    );
    eprintln!("time       {loop_seconds:.2} s in the transformer, {total_seconds:.2} s in all");
    if loop_seconds > 0.0 && s.computed > 0 {
        eprintln!(
            "speedup    {:.2}x over computing every step (estimated {uncached:.2} s)",
            uncached / loop_seconds
        );
    }
}
