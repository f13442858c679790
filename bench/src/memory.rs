//! `cargo xtask bench memory`: whether the released models' transformers fit this machine as
//! GGUF files, and what loading them and one forward cost.
//!
//! For FLUX.1-dev (11.9 B parameters) and WAN 2.1 T2V-14B, a GGUF file of random weights in
//! the original layout is written at each type asked for ([`random_gguf`]; under
//! `<out-dir>/models/`, git-ignored, deleted after its case unless `--keep-files`). Each case
//! runs in a child process (`xtask bench memory-case`) so its peak resident memory is its own:
//! it loads the transformer as `run --transformer` does (matrices stay quantized in the memory
//! map) and runs one forward, FLUX.1-dev at 256x256 (256 image + 512 text tokens), WAN-14B on
//! a 5-frame 256x256 clip (512 video + 512 text tokens). The bf16 safetensors path is not
//! run: its weights alone are compared with the machine's memory. Writes
//! `<out-dir>/memory.json` and `<out-dir>/MEMORY.md`.

mod random_gguf;

use std::{
    fmt::Write as _,
    path::{Path, PathBuf},
    process::Command,
    time::Instant,
};

use anyhow::{Context, Result, bail, ensure};
use burn::tensor::backend::Backend;
use dicache_core::CacheableModel;
use dit_layers::DiffusionTransformer;
use models_flux::{FluxConfig, FluxTransformer, MLP_RATIO};
use models_wan::{WanConfig, WanTransformer};
use serde::{Deserialize, Serialize};

use crate::{
    backend::{BackendJob, BackendKind, Dtype, dispatch},
    flux_forward, report,
    report::Machine,
    wan_forward, workspace_root,
};

pub use random_gguf::Quant;

/// Channels of the sinusoidal timestep (and guidance) projection the time embedders take.
const TIMESTEP_CHANNELS: usize = 256;
/// Bytes in a GiB.
const GIB: f64 = (1u64 << 30) as f64;

/// Arguments of `cargo xtask bench memory`.
#[derive(clap::Args, Debug)]
pub struct MemoryArgs {
    /// The transformers to measure.
    #[arg(long, value_enum, value_delimiter = ',', default_values = ["flux-dev", "wan-14b"])]
    pub model: Vec<BigModel>,
    /// The GGUF types to write and load.
    #[arg(long, value_enum, value_delimiter = ',', default_values = ["Q8_0", "Q4_K"])]
    pub types: Vec<Quant>,
    /// Folder of the results (relative to the workspace root); the GGUF files go to its
    /// `models/` (git-ignored).
    #[arg(long, default_value = "bench/memory")]
    pub out_dir: PathBuf,
    /// Keep the GGUF files (13–15 GB each at Q8_0) instead of deleting each after its case.
    #[arg(long)]
    pub keep_files: bool,
    /// Backend to run on (each needs its cargo feature).
    #[arg(long, value_enum, default_value = "cpu")]
    pub backend: BackendKind,
    /// Float dtype of compute.
    #[arg(long, value_enum, default_value = "f32")]
    pub dtype: Dtype,
}

/// Arguments of one case, run in a child process (`xtask bench memory-case`).
#[derive(clap::Args, Debug)]
pub struct CaseArgs {
    /// The transformer the file holds.
    #[arg(long, value_enum)]
    pub model: BigModel,
    /// The GGUF file.
    #[arg(long)]
    pub file: PathBuf,
    /// Backend to run on.
    #[arg(long, value_enum, default_value = "cpu")]
    pub backend: BackendKind,
    /// Float dtype of compute.
    #[arg(long, value_enum, default_value = "f32")]
    pub dtype: Dtype,
}

/// A released transformer, at its real size.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize, Deserialize)]
pub enum BigModel {
    /// FLUX.1-dev: 19 double + 38 single blocks, hidden 3072.
    #[value(name = "flux-dev")]
    #[serde(rename = "flux-dev")]
    FluxDev,
    /// WAN 2.1 T2V-14B: 40 blocks, hidden 5120.
    #[value(name = "wan-14b")]
    #[serde(rename = "wan-14b")]
    Wan14b,
}

/// FLUX.1-dev's forward: latent tokens per side (a 256x256 image) ...
const FLUX_GRID: usize = 16;
/// ... and T5 tokens (FLUX.1-dev's default `max_sequence_length`).
const FLUX_TEXT: usize = 512;
/// WAN's forward: latent frames, height, width (5 frames of 256x256) ...
const WAN_LATENT: [usize; 3] = [2, 32, 32];
/// ... and umT5 tokens (WAN's text length).
const WAN_TEXT: usize = 512;

impl BigModel {
    fn name(self) -> &'static str {
        match self {
            BigModel::FluxDev => "FLUX.1-dev",
            BigModel::Wan14b => "WAN 2.1 T2V-14B",
        }
    }

    fn slug(self) -> &'static str {
        match self {
            BigModel::FluxDev => "flux-dev",
            BigModel::Wan14b => "wan-14b",
        }
    }

    /// `general.architecture` of city96's conversions.
    fn architecture(self) -> &'static str {
        match self {
            BigModel::FluxDev => "flux",
            BigModel::Wan14b => "wan",
        }
    }

    /// What one forward processes.
    fn workload(self) -> &'static str {
        match self {
            BigModel::FluxDev => "256x256: 256 image + 512 text tokens",
            BigModel::Wan14b => "5 frames of 256x256: 512 video + 512 text tokens",
        }
    }

    /// The tensors of the original checkpoint (name, shape), as city96's files name them.
    fn tensors(self) -> Vec<(String, Vec<usize>)> {
        match self {
            BigModel::FluxDev => flux_tensors(&FluxConfig::dev()),
            BigModel::Wan14b => wan_tensors(&WanConfig::t2v_14b()),
        }
    }
}

/// A linear layer's weight and bias.
fn linear(tensors: &mut Vec<(String, Vec<usize>)>, name: &str, d_in: usize, d_out: usize) {
    tensors.push((format!("{name}.weight"), vec![d_out, d_in]));
    tensors.push((format!("{name}.bias"), vec![d_out]));
}

/// Black Forest Labs' FLUX.1 layout.
fn flux_tensors(c: &FluxConfig) -> Vec<(String, Vec<usize>)> {
    let h = c.hidden_size();
    let mlp = h * MLP_RATIO;
    let head = c.attention_head_dim;
    let mut t = Vec::new();
    linear(&mut t, "img_in", c.in_channels, h);
    linear(&mut t, "txt_in", c.joint_attention_dim, h);
    let mut embedders = vec![
        ("time_in", TIMESTEP_CHANNELS),
        ("vector_in", c.pooled_projection_dim),
    ];
    if c.guidance_embeds {
        embedders.push(("guidance_in", TIMESTEP_CHANNELS));
    }
    for (name, d_in) in embedders {
        linear(&mut t, &format!("{name}.in_layer"), d_in, h);
        linear(&mut t, &format!("{name}.out_layer"), h, h);
    }
    for i in 0..c.num_layers {
        for stream in ["img", "txt"] {
            let b = format!("double_blocks.{i}.{stream}");
            linear(&mut t, &format!("{b}_mod.lin"), h, 6 * h);
            linear(&mut t, &format!("{b}_attn.qkv"), h, 3 * h);
            for norm in ["query_norm", "key_norm"] {
                t.push((format!("{b}_attn.norm.{norm}.scale"), vec![head]));
            }
            linear(&mut t, &format!("{b}_attn.proj"), h, h);
            linear(&mut t, &format!("{b}_mlp.0"), h, mlp);
            linear(&mut t, &format!("{b}_mlp.2"), mlp, h);
        }
    }
    for i in 0..c.num_single_layers {
        let b = format!("single_blocks.{i}");
        linear(&mut t, &format!("{b}.linear1"), h, 3 * h + mlp);
        linear(&mut t, &format!("{b}.linear2"), h + mlp, h);
        for norm in ["query_norm", "key_norm"] {
            t.push((format!("{b}.norm.{norm}.scale"), vec![head]));
        }
        linear(&mut t, &format!("{b}.modulation.lin"), h, 3 * h);
    }
    linear(&mut t, "final_layer.linear", h, c.output_channels());
    linear(&mut t, "final_layer.adaLN_modulation.1", h, 2 * h);
    t
}

/// Wan's original layout.
fn wan_tensors(c: &WanConfig) -> Vec<(String, Vec<usize>)> {
    let h = c.hidden_size();
    let [pt, ph, pw] = c.patch_size;
    let out = c.output_channels() * pt * ph * pw;
    let mut t = vec![
        (
            "patch_embedding.weight".to_string(),
            vec![h, c.in_channels, pt, ph, pw],
        ),
        ("patch_embedding.bias".to_string(), vec![h]),
    ];
    linear(&mut t, "text_embedding.0", c.text_dim, h);
    linear(&mut t, "text_embedding.2", h, h);
    linear(&mut t, "time_embedding.0", c.freq_dim, h);
    linear(&mut t, "time_embedding.2", h, h);
    linear(&mut t, "time_projection.1", h, 6 * h);
    for i in 0..c.num_layers {
        let b = format!("blocks.{i}");
        for attn in ["self_attn", "cross_attn"] {
            for proj in ["q", "k", "v", "o"] {
                linear(&mut t, &format!("{b}.{attn}.{proj}"), h, h);
            }
            for norm in ["norm_q", "norm_k"] {
                t.push((format!("{b}.{attn}.{norm}.weight"), vec![h]));
            }
        }
        if c.cross_attn_norm {
            t.push((format!("{b}.norm3.weight"), vec![h]));
            t.push((format!("{b}.norm3.bias"), vec![h]));
        }
        linear(&mut t, &format!("{b}.ffn.0"), h, c.ffn_dim);
        linear(&mut t, &format!("{b}.ffn.2"), c.ffn_dim, h);
        t.push((format!("{b}.modulation"), vec![1, 6, h]));
    }
    linear(&mut t, "head.head", h, out);
    t.push(("head.modulation".to_string(), vec![1, 2, h]));
    t
}

/// What one case measured (the child's report).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CaseReport {
    /// Seconds to open the file and load the transformer.
    pub load_s: f64,
    /// Seconds of one forward (output read back to the host).
    pub forward_s: f64,
    /// Resident memory after loading, bytes.
    pub loaded_rss: u64,
    /// Peak resident memory of the process, bytes (`VmHWM`).
    pub peak_rss: u64,
    /// Of the resident memory after the forward, the file-backed part (the memory-mapped GGUF,
    /// which the kernel can drop and read again under pressure), bytes.
    pub file_rss: u64,
    /// Of it, the anonymous part (parameters, activations, the allocator's pools), bytes.
    pub anon_rss: u64,
}

/// One model at one type.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TypeResult {
    /// The type of the quantized matrices.
    pub kind: Quant,
    /// The file's size, bytes.
    pub file_bytes: u64,
    /// Seconds to write the random file (not part of the measurement).
    pub write_s: f64,
    /// The case's measurements.
    pub report: CaseReport,
}

/// One model's results.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ModelResult {
    /// The model.
    pub model: BigModel,
    /// Its parameters.
    pub values: u64,
    /// What one forward processes.
    pub workload: String,
    /// One entry per type.
    pub types: Vec<TypeResult>,
}

/// The benchmark's results.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MemoryResult {
    /// The machine, commit and load.
    pub machine: Machine,
    /// The machine's memory, bytes (`MemTotal`).
    pub mem_total: u64,
    /// Memory available when the benchmark started, bytes (`MemAvailable`).
    pub mem_available: u64,
    /// Burn backend and dtype.
    pub backend: String,
    /// Float dtype of compute.
    pub dtype: String,
    /// Per model.
    pub models: Vec<ModelResult>,
}

/// Runs `cargo xtask bench memory`.
pub fn run(args: &MemoryArgs) -> Result<()> {
    ensure!(!args.model.is_empty(), "--model names no model");
    ensure!(!args.types.is_empty(), "--types names no type");
    let out = workspace_root().join(&args.out_dir);
    let files = out.join("models");
    std::fs::create_dir_all(&files)
        .with_context(|| format!("cannot create {}", files.display()))?;
    let (mem_total, mem_available) = (meminfo("MemTotal")?, meminfo("MemAvailable")?);
    let mut models = Vec::new();
    for &model in &args.model {
        let tensors = model.tensors();
        let values = tensors
            .iter()
            .map(|(_, s)| s.iter().product::<usize>() as u64)
            .sum();
        let mut types = Vec::new();
        for &kind in &args.types {
            let path = files.join(format!("{}-{}.gguf", model.slug(), kind.name()));
            let started = Instant::now();
            let file_bytes = if path.exists() {
                std::fs::metadata(&path)?.len()
            } else {
                eprintln!("bench: writing {} ...", path.display());
                random_gguf::write(&path, model.architecture(), &tensors, kind)?
            };
            let write_s = started.elapsed().as_secs_f64();
            eprintln!(
                "bench: {} {}: {:.1} GB file, loading and one forward ...",
                model.name(),
                kind.name(),
                file_bytes as f64 / 1e9
            );
            let report = run_case(model, &path, args)?;
            eprintln!(
                "bench: {} {}: load {:.1} s, forward {:.1} s, peak {:.2} GiB",
                model.name(),
                kind.name(),
                report.load_s,
                report.forward_s,
                report.peak_rss as f64 / GIB
            );
            if !args.keep_files {
                std::fs::remove_file(&path)
                    .with_context(|| format!("cannot remove {}", path.display()))?;
            }
            types.push(TypeResult {
                kind,
                file_bytes,
                write_s,
                report,
            });
        }
        models.push(ModelResult {
            model,
            values,
            workload: model.workload().to_string(),
            types,
        });
    }
    let result = MemoryResult {
        machine: Machine::current()?,
        mem_total,
        mem_available,
        backend: format!("{:?}", args.backend),
        dtype: format!("{:?}", args.dtype),
        models,
    };
    report::write_json(&result, &out.join("memory.json"))?;
    let md = out.join("MEMORY.md");
    std::fs::write(&md, markdown(&result))
        .with_context(|| format!("cannot write {}", md.display()))?;
    eprintln!("bench: wrote {}", md.display());
    Ok(())
}

/// Runs one case in a child process and reads its report.
fn run_case(model: BigModel, file: &Path, args: &MemoryArgs) -> Result<CaseReport> {
    let exe = std::env::current_exe().context("cannot find this program to run a case")?;
    let output = Command::new(exe)
        .args(["bench", "memory-case", "--model", model.slug(), "--file"])
        .arg(file)
        .args(["--backend", &format!("{:?}", args.backend).to_lowercase()])
        .args(["--dtype", &format!("{:?}", args.dtype).to_lowercase()])
        .stderr(std::process::Stdio::inherit())
        .output()
        .context("cannot start a case")?;
    if !output.status.success() {
        bail!(
            "the {} case on {} failed ({})",
            model.name(),
            file.display(),
            output.status
        );
    }
    let stdout = String::from_utf8_lossy(&output.stdout);
    let line = stdout.lines().last().unwrap_or_default();
    serde_json::from_str(line).with_context(|| format!("the case printed {line:?}"))
}

/// Runs one case in this process and prints its report as one JSON line.
pub fn run_case_here(args: &CaseArgs) -> Result<()> {
    let report = dispatch(
        args.backend,
        args.dtype,
        Case {
            model: args.model,
            file: args.file.clone(),
        },
    )?;
    println!("{}", serde_json::to_string(&report)?);
    Ok(())
}

struct Case {
    model: BigModel,
    file: PathBuf,
}

impl BackendJob for Case {
    type Output = CaseReport;

    fn run<B: Backend>(self, device: B::Device) -> Result<CaseReport> {
        let started = Instant::now();
        let what = || format!("loading {}", self.file.display());
        let forward = match self.model {
            BigModel::FluxDev => {
                let model = FluxTransformer::<B>::load_original_for(&self.file, None, &device)
                    .with_context(what)?;
                let input =
                    flux_forward::random_input(model.config(), FLUX_GRID, FLUX_TEXT, &device);
                let input = model.check_input(input).context("FLUX inputs")?;
                Box::new(move || model.forward(&input).into_data())
                    as Box<dyn Fn() -> burn::tensor::TensorData>
            }
            BigModel::Wan14b => {
                let model = WanTransformer::<B>::load_original_for(&self.file, None, &device)
                    .with_context(what)?;
                let input =
                    wan_forward::random_input(model.config(), WAN_LATENT, WAN_TEXT, &device);
                let input = model.check_input(input).context("WAN inputs")?;
                Box::new(move || model.forward(&input).into_data())
            }
        };
        let load_s = started.elapsed().as_secs_f64();
        let loaded_rss = status("VmRSS")?;
        let started = Instant::now();
        let output = forward();
        let forward_s = started.elapsed().as_secs_f64();
        // Read while the model (owned by `forward`) is still loaded.
        let (file_rss, anon_rss) = (status("RssFile")?, status("RssAnon")?);
        drop(forward);
        let values = output
            .convert::<f32>()
            .into_vec::<f32>()
            .map_err(|e| anyhow::anyhow!("{e:?}"))?;
        ensure!(
            values.iter().all(|v| v.is_finite()),
            "the forward's output holds NaN or infinite values"
        );
        Ok(CaseReport {
            load_s,
            forward_s,
            loaded_rss,
            peak_rss: status("VmHWM")?,
            file_rss,
            anon_rss,
        })
    }
}

/// A `kB` field of `/proc/self/status`, in bytes.
fn status(field: &str) -> Result<u64> {
    kb_field("/proc/self/status", field)
}

/// A `kB` field of `/proc/meminfo`, in bytes.
fn meminfo(field: &str) -> Result<u64> {
    kb_field("/proc/meminfo", field)
}

fn kb_field(path: &str, field: &str) -> Result<u64> {
    let text = std::fs::read_to_string(path).with_context(|| format!("cannot read {path}"))?;
    text.lines()
        .find_map(|line| {
            let rest = line.strip_prefix(field)?.strip_prefix(':')?;
            rest.trim().strip_suffix("kB")?.trim().parse::<u64>().ok()
        })
        .map(|kb| kb * 1024)
        .with_context(|| format!("{path} has no {field}"))
}

/// The peak-memory goals of the issue on this machine: FLUX.1-dev Q8_0 within 16 GB, Q4_K
/// within 10 GB.
fn goal(model: BigModel, kind: Quant) -> Option<f64> {
    match (model, kind) {
        (BigModel::FluxDev, Quant::Q8_0) => Some(16.0),
        (BigModel::FluxDev, Quant::Q4K) => Some(10.0),
        _ => None,
    }
}

fn markdown(r: &MemoryResult) -> String {
    let mut s = String::from(
        "# Memory: the released transformers as GGUF on this machine\n\n\
         `cargo xtask bench memory` (bench/src/memory.rs). Random weights in the original \
         layout, written as city96's GGUF conversions lay them out (matrices quantized, small \
         and 1-D tensors F32); each case loads the transformer as `run --transformer` does \
         (matrices stay quantized in the memory-mapped file, each decoded when its layer runs) \
         and runs one forward, in a process of its own. Peak = the process's peak resident \
         memory (`VmHWM`), the mapped file's pages included; GB = 10^9 bytes. Load times are \
         with the file just written (in the page cache); from a cold disk, reading the file \
         adds its size at the disk's speed.\n\n",
    );
    let _ = writeln!(
        s,
        "Machine memory: {:.1} GB, {:.1} GB available at the start.\n",
        r.mem_total as f64 / 1e9,
        r.mem_available as f64 / 1e9
    );
    let _ = writeln!(
        s,
        "| model | forward | type | file GB | load s | forward s | after load GB | peak GB | after the forward: file / anonymous GB | goal |"
    );
    let _ = writeln!(s, "|---|---|---|---|---|---|---|---|---|---|");
    for m in &r.models {
        for t in &m.types {
            let c = &t.report;
            let goal = match goal(m.model, t.kind) {
                Some(g) if (c.peak_rss as f64 / 1e9) <= g => format!("≤ {g} GB: met"),
                Some(g) => format!("≤ {g} GB: missed"),
                None => "–".to_string(),
            };
            let _ = writeln!(
                s,
                "| {} | {} | {} | {:.1} | {:.1} | {:.1} | {:.1} | {:.1} | {:.1} / {:.1} | {} |",
                m.model.name(),
                m.workload,
                t.kind.name(),
                t.file_bytes as f64 / 1e9,
                c.load_s,
                c.forward_s,
                c.loaded_rss as f64 / 1e9,
                c.peak_rss as f64 / 1e9,
                c.file_rss as f64 / 1e9,
                c.anon_rss as f64 / 1e9,
                goal
            );
        }
    }
    s.push_str("\nThe bf16 safetensors path (not run):\n\n");
    for m in &r.models {
        let bf16 = m.values * 2;
        let fits = if bf16 < r.mem_available {
            "within the memory available, with little left for the text encoders and activations"
        } else {
            "more than the memory available: `run` refuses it before loading (the weights guard)"
        };
        let _ = writeln!(
            s,
            "- {}: {:.2} B parameters, {:.1} GB in bf16 ({:.1} GB in f32) for the weights alone: {}.",
            m.model.name(),
            m.values as f64 / 1e9,
            bf16 as f64 / 1e9,
            2.0 * bf16 as f64 / 1e9,
            fits
        );
    }
    let _ = write!(
        s,
        "\nMachine: {} ({} threads, {}), Burn backend {}, {}; {}, commit {}, load average {}.\n",
        r.machine.cpu,
        r.machine.cores,
        r.machine.os,
        r.backend,
        r.dtype,
        r.machine.date,
        r.machine.commit,
        r.machine.load
    );
    s
}
