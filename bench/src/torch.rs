//! The PyTorch side of a benchmark: runs `fixtures/bench_<name>.py`, which builds the same
//! workload for each case and prints its timings as JSON on stdout.
//!
//! Protocol: the script gets `--cases <json list of {name, params}> --warmup N --repeat N
//! --dtype f32|f16|bf16 --device cpu|cuda` and prints
//! `{"torch": version, "threads": n, "device": d, "cases": {name: {"wall_ms": [..], "cpu_ms": [..]}}}`.

use std::{collections::HashMap, ffi::OsStr, path::Path, process::Command};

use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};

use super::{Case, Samples};
use crate::backend::{BackendKind, Dtype};

/// How the script runs every case.
pub struct Settings {
    /// Untimed runs per case.
    pub warmup: usize,
    /// Timed runs per case.
    pub repeat: usize,
    /// Float dtype of weights and activations.
    pub dtype: Dtype,
    /// PyTorch device name.
    pub device: &'static str,
}

/// What the script reported.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TorchTimings {
    /// `torch.__version__`.
    pub torch: String,
    /// `torch.get_num_threads()` during the run.
    pub threads: usize,
    /// The device it ran on.
    pub device: String,
    /// Wall-clock and CPU milliseconds per run, by case name.
    pub cases: HashMap<String, Samples>,
}

impl TorchTimings {
    /// Appends the runs of another round of the same cases.
    pub fn merge(&mut self, other: TorchTimings) {
        for (name, samples) in other.cases {
            match self.cases.get_mut(&name) {
                Some(all) => all.extend(samples),
                None => {
                    self.cases.insert(name, samples);
                }
            }
        }
    }
}

/// The PyTorch device matching a Burn backend: CUDA for CUDA, the CPU otherwise (wgpu has no
/// PyTorch counterpart; its numbers are compared against the CPU).
pub fn device_for(backend: BackendKind) -> &'static str {
    match backend {
        BackendKind::Cuda => "cuda",
        BackendKind::Cpu | BackendKind::Wgpu => "cpu",
    }
}

/// Runs `script` with `python` on `cases`.
pub fn run(
    python: &Path,
    script: &Path,
    cases: &[Case],
    settings: &Settings,
) -> Result<TorchTimings> {
    eprintln!("bench: torch {}", script.display());
    let dtype = match settings.dtype {
        Dtype::F32 => "f32",
        Dtype::F16 => "f16",
        Dtype::Bf16 => "bf16",
    };
    let cases_json = serde_json::to_string(cases)?;
    let (warmup, repeat) = (settings.warmup.to_string(), settings.repeat.to_string());
    let args = [
        "--cases",
        &cases_json,
        "--warmup",
        &warmup,
        "--repeat",
        &repeat,
        "--dtype",
        dtype,
        "--device",
        settings.device,
    ];
    let stdout = run_script(python, script, args.map(OsStr::new))?;
    let timings: TorchTimings = serde_json::from_str(stdout.trim())
        .with_context(|| format!("{} printed no timing JSON: {stdout}", script.display()))?;
    for case in cases {
        if !timings.cases.contains_key(&case.name) {
            bail!(
                "{} reported no timing for case {:?}",
                script.display(),
                case.name
            );
        }
    }
    Ok(timings)
}

/// Runs the Python `script` with `python` and `args`: what it printed on stdout; a failure is an
/// error carrying its stderr.
pub fn run_script<'a>(
    python: &Path,
    script: &Path,
    args: impl IntoIterator<Item = &'a OsStr>,
) -> Result<String> {
    let output = Command::new(python)
        .arg(script)
        .args(args)
        .output()
        .with_context(|| format!("cannot start {}", python.display()))?;
    if !output.status.success() {
        bail!(
            "{} failed with {}:\n{}",
            script.display(),
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}
