//! The benchmarks of `cargo xtask bench`, and what the command line and the benchmarks share.
//!
//! `cargo xtask bench <name>` times a workload in Burn on the chosen backend and, when the
//! Python environment (`.venv`) exists, the same workload in PyTorch on the same machine in the
//! same run; writes `bench/results/<name>.json` and regenerates `bench/RESULTS.md`.
//!
//! Every timing is the median of `--repeat` runs after `--warmup` untimed runs; the JSON keeps
//! all samples.
//!
//! `cargo xtask bench cache` is of another kind: speed and fidelity of the cache policies on
//! the mini models (see [`cache`]), written to `bench/cache/`, with the fidelity metrics of
//! [`quality`].
//!
//! Shared with `cargo xtask run`: the backend and dtype choice ([`backend`]), the mini models
//! and their settings ([`mini`]), the progress bar ([`progress`]) and [`workspace_root`].

mod attention;
pub mod backend;
pub mod batch;
pub mod cache;
mod chart;
mod flux_forward;
mod font;
pub mod gguf;
mod hunyuan_forward;
pub mod memory;
pub mod mini;
pub mod pipeline;
mod profile;
pub mod progress;
pub mod quality;
mod report;
pub mod serve;
pub mod sparse;
mod timing;
mod torch;
mod wan_forward;

use std::path::{Path, PathBuf};

use anyhow::Result;
use burn::tensor::backend::Backend;
use clap::Subcommand;
use serde::{Deserialize, Serialize};

use crate::backend::{BackendJob, BackendKind, Dtype, dispatch};

pub use timing::Samples;

/// The workspace root (the parent of this crate's folder `bench/`): where `fixtures/`,
/// `mini-models/`, `.venv` and the results under `bench/` are found.
pub fn workspace_root() -> PathBuf {
    let built = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("bench lives in the workspace")
        .to_path_buf();
    if built.join("mini-models").is_dir() {
        return built;
    }
    // A binary carried to another machine runs from a copy of the repository.
    std::env::current_dir()
        .ok()
        .filter(|dir| dir.join("mini-models").is_dir())
        .unwrap_or(built)
}

/// The benchmarks of `cargo xtask bench`.
#[derive(Debug, Subcommand)]
pub enum BenchCommand {
    /// Scaled dot-product attention, `[1, 24, seq, 128]`, against `F.scaled_dot_product_attention`.
    Attention(BenchArgs),
    /// One forward of a medium FLUX transformer with random weights, against diffusers'
    /// `FluxTransformer2DModel`.
    FluxForward(BenchArgs),
    /// One forward of the WAN 2.1 T2V-1.3B transformer (random weights) on a small clip, against
    /// diffusers' `WanTransformer3DModel`.
    WanForward(BenchArgs),
    /// One forward of a medium HunyuanVideo transformer with random weights, against diffusers'
    /// `HunyuanVideoTransformer3DModel`.
    HunyuanForward(BenchArgs),
    /// The cache policies (uniform, First-Block Cache, DiCache) against no cache on the mini
    /// models: speedup and fidelity (PSNR, SSIM) per setting; writes `bench/cache/`.
    Cache(cache::CacheArgs),
    /// Many samples at once on the mini models: samples per second in batches against one by
    /// one, and a cache decision per sample against one per batch; writes `bench/batch/`.
    Batch(batch::BatchArgs),
    /// The server under load on FLUX-mini (concurrent clients over loopback) against the same
    /// requests one by one: latency p50/p95 and samples per second; writes `bench/serve/`.
    Serve(serve::ServeArgs),
    /// The mini models with their transformers as GGUF at every type the `gguf` package
    /// writes: PSNR and SSIM against f32, file sizes; writes `bench/gguf/`.
    Gguf(gguf::GgufArgs),
    /// FLUX.1-dev and WAN 2.1 14B transformers (random weights) as GGUF files: peak resident
    /// memory and time of loading and one forward; writes `bench/memory/`.
    Memory(memory::MemoryArgs),
    /// Whole generations of the mini models against diffusers' pipelines on the same noise:
    /// prompt encoding, denoising loop and VAE decoding timed apart, uncached and with
    /// DiCache; results in bench/pipeline.
    Pipeline(pipeline::PipelineArgs),
    /// Sparse VideoGen against dense attention at real video token counts: the attention op
    /// and one transformer block per video model; results in bench/sparse.
    Sparse(sparse::SparseArgs),
    /// One case of `bench memory`, run by it in a process of its own.
    #[command(hide = true)]
    MemoryCase(memory::CaseArgs),
}

/// Runs the benchmark `command` asks for and writes its results.
pub fn run(command: BenchCommand) -> Result<()> {
    let (name, args) = match command {
        BenchCommand::Cache(args) => return cache::run(&args),
        BenchCommand::Batch(args) => return batch::run(&args),
        BenchCommand::Serve(args) => return serve::run(&args),
        BenchCommand::Gguf(args) => return gguf::run(&args),
        BenchCommand::Memory(args) => return memory::run(&args),
        BenchCommand::Sparse(args) => return sparse::run(&args),
        BenchCommand::Pipeline(args) => return pipeline::run(&args),
        BenchCommand::MemoryCase(args) => return memory::run_case_here(&args),
        BenchCommand::Attention(args) => (BenchName::Attention, args),
        BenchCommand::FluxForward(args) => (BenchName::FluxForward, args),
        BenchCommand::WanForward(args) => (BenchName::WanForward, args),
        BenchCommand::HunyuanForward(args) => (BenchName::HunyuanForward, args),
    };
    run_against_torch(name, &args)
}

/// Arguments of the benchmarks against PyTorch.
#[derive(clap::Args, Debug)]
pub struct BenchArgs {
    /// Timed runs per case (the median is reported).
    #[arg(long, default_value_t = 5)]
    pub repeat: usize,
    /// Untimed runs before timing (in each round).
    #[arg(long, default_value_t = 2)]
    pub warmup: usize,
    /// Rounds, alternating the Burn and the PyTorch side (each round times `--repeat` runs of
    /// each): on a machine shared with other work, both sides then see the same load.
    #[arg(long, default_value_t = 1)]
    pub rounds: usize,
    /// Folder of the results: `<out>/results/<name>.json` and `<out>/RESULTS.md`.
    #[arg(long, default_value = "bench")]
    pub out: PathBuf,
    /// Backend of the Burn side.
    #[arg(long, value_enum, default_value = "cpu")]
    pub backend: BackendKind,
    /// Float dtype of both sides.
    #[arg(long, value_enum, default_value = "f32")]
    pub dtype: Dtype,
    /// Skip the PyTorch side even when `.venv` exists.
    #[arg(long)]
    pub no_torch: bool,
    /// The transformers' size: `medium` (CPU-sized, compared with PyTorch here) or `real` (the
    /// published models at real widths, for GPUs: FLUX.1-dev's 19 + 38 blocks at 1024x1024,
    /// WAN 2.1 1.3B at 480p x 81 frames, HunyuanVideo's 20 + 40 blocks at 544x960 x 61 frames).
    #[arg(long, value_enum, default_value = "medium")]
    pub size: Size,
    /// Also print where a forward's time goes: the embedding, each block and the head, each
    /// timed on its own (the forward benchmarks only).
    #[arg(long)]
    pub profile: bool,
}

/// The size of a forward benchmark's transformer and input.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Size {
    /// Few blocks and tokens: seconds on a CPU.
    Medium,
    /// The published model at a real resolution: a GPU's workload.
    Real,
}

/// The benchmarks against PyTorch (see [`BenchCommand`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BenchName {
    /// Scaled dot-product attention.
    Attention,
    /// One forward of a medium FLUX transformer.
    FluxForward,
    /// One forward of the WAN 2.1 T2V-1.3B transformer.
    WanForward,
    /// One forward of a medium HunyuanVideo transformer.
    HunyuanForward,
}

impl BenchName {
    /// The name used for files and in the report (`flux-forward`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Attention => "attention",
            Self::FluxForward => "flux-forward",
            Self::WanForward => "wan-forward",
            Self::HunyuanForward => "hunyuan-forward",
        }
    }

    /// The PyTorch side: `fixtures/bench_<name>.py`.
    fn script(self) -> PathBuf {
        let file = format!("bench_{}.py", self.as_str().replace('-', "_"));
        workspace_root().join("fixtures").join(file)
    }

    /// The cases of this benchmark, each with the parameters the PyTorch script receives.
    fn cases(self, size: Size) -> Vec<Case> {
        match self {
            Self::Attention => attention::cases(),
            Self::FluxForward => flux_forward::cases(size),
            Self::WanForward => wan_forward::cases(size),
            Self::HunyuanForward => hunyuan_forward::cases(size),
        }
    }
}

/// One measured configuration of a benchmark.
#[derive(Debug, Clone, Serialize)]
pub struct Case {
    /// Short name shown in the report (`seq 1024`).
    pub name: String,
    /// What the PyTorch script needs to build the same workload (and what the report records).
    pub params: serde_json::Value,
    /// Floating-point operations of one run (two per multiply-add of the matrix products and
    /// attention; element-wise work left out), for the throughput reached.
    pub flops: Option<f64>,
}

/// Runs the benchmark `name` against PyTorch and writes its results.
fn run_against_torch(name: BenchName, args: &BenchArgs) -> Result<()> {
    anyhow::ensure!(args.repeat > 0, "--repeat must be at least 1");
    anyhow::ensure!(args.rounds > 0, "--rounds must be at least 1");
    let cases = name.cases(args.size);
    let python = workspace_root().join(".venv/bin/python");
    let python = (!args.no_torch && python.exists()).then_some(python);
    if python.is_none() {
        eprintln!("bench: no PyTorch side (no .venv or --no-torch)");
    }
    let job = Rounds {
        name,
        args,
        cases: &cases,
        python,
    };
    let (burn, torch) = dispatch(args.backend, args.dtype, job)?;
    let result = report::BenchResult::new(name, args, &cases, burn, torch)?;
    let out = workspace_root().join(&args.out);
    result.write(&out)?;
    report::write_summary(&out)?;
    result.print();
    Ok(())
}

/// All rounds of a benchmark: in each, the Burn side on the backend the user picked (one
/// backend set-up for the whole run), then the PyTorch side when `python` is given.
struct Rounds<'a> {
    name: BenchName,
    args: &'a BenchArgs,
    cases: &'a [Case],
    python: Option<PathBuf>,
}

impl BackendJob for Rounds<'_> {
    type Output = (BurnTimings, Option<torch::TorchTimings>);

    fn run<B: Backend>(self, device: B::Device) -> Result<Self::Output> {
        let args = self.args;
        let mut burn: Option<BurnTimings> = None;
        let mut torch: Option<torch::TorchTimings> = None;
        for round in 0..args.rounds {
            eprintln!("bench: round {}/{}", round + 1, args.rounds);
            let b = burn_side::<B>(self.name, args, self.cases, &device)?;
            match &mut burn {
                Some(all) => all
                    .samples
                    .iter_mut()
                    .zip(b.samples)
                    .for_each(|(a, s)| a.extend(s)),
                None => burn = Some(b),
            }
            if let Some(python) = &self.python {
                let settings = torch::Settings {
                    warmup: args.warmup,
                    repeat: args.repeat,
                    dtype: args.dtype,
                    device: torch::device_for(args.backend),
                };
                let t = torch::run(python, &self.name.script(), self.cases, &settings)?;
                match &mut torch {
                    Some(all) => all.merge(t),
                    None => torch = Some(t),
                }
            }
        }
        Ok((burn.expect("at least one round ran"), torch))
    }
}

/// One round of the Burn side: every case, timed.
fn burn_side<B: Backend>(
    name: BenchName,
    args: &BenchArgs,
    cases: &[Case],
    device: &B::Device,
) -> Result<BurnTimings> {
    let samples = cases
        .iter()
        .map(|case| {
            eprintln!("bench: burn {} {}", name.as_str(), case.name);
            let timer = timing::Timer::<B>::new(device, args.warmup, args.repeat);
            match name {
                BenchName::Attention => attention::time::<B>(case, &timer),
                BenchName::FluxForward => flux_forward::time::<B>(case, &timer, args.profile),
                BenchName::WanForward => wan_forward::time::<B>(case, &timer, args.profile),
                BenchName::HunyuanForward => hunyuan_forward::time::<B>(case, &timer, args.profile),
            }
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(BurnTimings {
        backend: B::name(device),
        samples,
    })
}

/// What the Burn side measured: the backend's own name and one sample set per case.
pub struct BurnTimings {
    /// `B::name(device)`, e.g. `flex<f32>`.
    pub backend: String,
    /// Per case, in the order of the cases.
    pub samples: Vec<Samples>,
}
