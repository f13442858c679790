//! `cargo xtask`: the project's command line.
//!
//! - `run flux|wan|hunyuan …`: prompt to image or video, with the cache policy of your choice;
//! - `bench …`: benchmarks against PyTorch on the same machine, and of the cache policies on
//!   the mini models (the crate `dicache-bench`); results under `bench/`;
//! - `fixtures`: regenerates the reference fixtures with the pinned Python environment;
//! - `serve`: an HTTP API and a web page over one pipeline, requests batched step by step;
//! - `gpu-check`: on a machine with a GPU, the backends against the CPU and the forwards at
//!   real widths.

mod fixtures;
mod gpu_check;
mod run;
mod serve;

use anyhow::Result;
use clap::{Parser, Subcommand};
use dicache_bench::BenchCommand;

#[derive(Debug, Parser)]
#[command(name = "cargo xtask", about = "DiCache diffusion transformers in Rust")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

// Parsed once per process: the size of its largest variant does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Subcommand)]
enum Command {
    /// Generate an image or video from a prompt.
    #[command(subcommand)]
    Run(run::RunCommand),
    /// Regenerate the reference fixtures (needs the Python environment).
    Fixtures(fixtures::FixturesArgs),
    /// Benchmark against PyTorch on this machine, or the cache policies; results under `bench/`.
    #[command(subcommand)]
    Bench(BenchCommand),
    /// Serve a pipeline: an HTTP API (OpenAI-style image generations, jobs with progress
    /// events) and a web page, concurrent requests batched step by step.
    Serve(serve::ServeArgs),
    /// On a machine with a GPU: each GPU backend against the CPU on the mini models in every
    /// dtype, and the forward benchmarks at real widths; writes a report.
    GpuCheck(gpu_check::GpuCheckArgs),
}

fn main() -> Result<()> {
    match Cli::parse().command {
        Command::Run(command) => run::run(command),
        Command::Fixtures(args) => fixtures::run(&args),
        Command::Bench(command) => dicache_bench::run(command),
        Command::GpuCheck(args) => gpu_check::run(&args),
        Command::Serve(args) => serve::run(args),
    }
}
