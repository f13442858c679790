//! `cargo xtask`: the project's command line.
//!
//! - `run flux|wan|hunyuan …`: prompt to image or video, with the cache policy of your choice;
//! - `bench …`: benchmarks against PyTorch on the same machine, results under `bench/`;
//! - `fixtures`: regenerates the reference fixtures with the pinned Python environment.

mod backend;
mod bench;
mod fixtures;
mod mini;
mod run;

use anyhow::Result;
use clap::{Parser, Subcommand};

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
    /// Benchmark against PyTorch on this machine; results under `bench/`.
    Bench(bench::BenchArgs),
}

fn main() -> Result<()> {
    match Cli::parse().command {
        Command::Run(command) => run::run(command),
        Command::Fixtures(args) => fixtures::run(&args),
        Command::Bench(args) => bench::run(&args),
    }
}
