//! `cargo xtask gpu-check`: the prepared check for a machine with a GPU, run from binaries
//! built elsewhere (the machine needs no network): every GPU backend against the CPU on the
//! mini models in each dtype it offers, then the forward benchmarks at the published models'
//! real widths with the throughput they reach. Writes `<out>/REPORT.md` and exits non-zero
//! when a backend fails or draws another picture than the CPU.
//!
//! Each run is a child process of this binary (`run …`, `bench …`): a device's dtype is set
//! once per process, and a crash or an out-of-memory in one run must not end the check.

use std::{
    fmt::Write as _,
    fs,
    path::{Path, PathBuf},
    process::Command,
    time::Instant,
};

use anyhow::{Context, Result, bail};
use clap::{Args, ValueEnum};
use dicache_bench::{
    Size,
    backend::{BackendKind, Dtype},
    quality::{video_psnr, video_ssim},
};
use vae::Rgb8Image;

/// Arguments of `cargo xtask gpu-check`.
#[derive(Debug, Args)]
pub struct GpuCheckArgs {
    /// Backends to check against the CPU (each needs its cargo feature in this binary).
    #[arg(long, value_enum, value_delimiter = ',', default_value = "cuda,wgpu")]
    backends: Vec<BackendKind>,
    /// Folder of the outputs and of REPORT.md.
    #[arg(long, default_value = "out/gpu-check")]
    out: PathBuf,
    /// Denoising steps of the mini-model runs [default: their own].
    #[arg(long)]
    steps: Option<usize>,
    /// Size of the forward benchmarks: `real` (FLUX.1-dev at 1024x1024, WAN 1.3B at 480p x 81
    /// frames, HunyuanVideo at 544x960 x 61 frames) or `medium` (a quick smoke test).
    #[arg(long, value_enum, default_value = "real")]
    size: Size,
    /// Skip the forward benchmarks.
    #[arg(long)]
    no_bench: bool,
    /// The card's peak dense bf16 (f16 on wgpu) throughput in TFLOP/s [default: from the name
    /// nvidia-smi reports, for the cards in `PEAK_TFLOPS`].
    #[arg(long)]
    peak_tflops: Option<f64>,
}

/// Dense bf16 tensor-core peaks (TFLOP/s, without sparsity) of common cards, by a part of the
/// name nvidia-smi prints; the first match wins.
const PEAK_TFLOPS: &[(&str, f64)] = &[
    ("H200", 989.4),
    ("H100 PCIe", 756.5),
    ("H100", 989.4),
    ("A100", 312.0),
    ("L40S", 362.1),
    ("L4", 121.0),
    ("A10", 125.0),
    ("RTX 4090", 165.2),
    ("RTX 3090", 71.0),
];

/// The least PSNR (dB) a backend's picture must reach against the CPU's float32 one, by dtype.
/// float32 differs by summation order only. The half types round every value, and a mini
/// model's trajectory can amplify that into another arrangement of the same prompt: the CPU's
/// own bf16 run of FLUX-mini at seed 0 lands at 16.5 dB (SSIM 0.85; its blobs move), its f16
/// run at 57 dB. So for them the check catches broken pictures (NaN, noise: about 5 dB), not
/// chaos.
fn min_psnr(dtype: Dtype) -> f64 {
    match dtype {
        Dtype::F32 => 45.0,
        Dtype::F16 => 30.0,
        Dtype::Bf16 => 12.0,
    }
}

/// The dtypes `backend` offers.
fn dtypes(backend: BackendKind) -> &'static [Dtype] {
    match backend {
        BackendKind::Wgpu => &[Dtype::F32, Dtype::F16],
        BackendKind::Cpu | BackendKind::Cuda => &[Dtype::F32, Dtype::F16, Dtype::Bf16],
    }
}

/// The name of a value on the command line (`cuda`, `bf16`).
fn flag<T: ValueEnum>(value: T) -> String {
    value
        .to_possible_value()
        .expect("no variant is skipped")
        .get_name()
        .to_string()
}

/// One child run: whether it succeeded, how long it took, the end of what it printed.
struct Child {
    ok: bool,
    seconds: f64,
    tail: String,
}

/// Runs this binary with `args`.
fn child(args: &[String]) -> Result<Child> {
    let start = Instant::now();
    let out = Command::new(std::env::current_exe()?)
        .args(args)
        .output()
        .with_context(|| format!("starting {args:?}"))?;
    let text = String::from_utf8_lossy(&out.stderr);
    let lines: Vec<&str> = text.lines().collect();
    Ok(Child {
        ok: out.status.success(),
        seconds: start.elapsed().as_secs_f64(),
        tail: lines[lines.len().saturating_sub(3)..].join(" / "),
    })
}

/// The mini models the check runs, each with its prompt: FLUX-mini writes `flux.png`, the video
/// models `<model>.gif` and their frames as PNGs in `<model>/`.
const MINI_RUNS: [(&str, &str); 3] = [
    ("flux", "a large red circle on a blue background"),
    (
        "wan",
        "a large yellow square moving right on a purple background",
    ),
    (
        "hunyuan",
        "a large red circle moving right on a blue background",
    ),
];

/// The mini-model runs of one backend and dtype, into `dir`, in the order of [`MINI_RUNS`].
fn generate(
    args: &GpuCheckArgs,
    backend: BackendKind,
    dtype: Dtype,
    dir: &Path,
) -> Result<Vec<Child>> {
    let path = |name: &str| dir.join(name).to_string_lossy().into_owned();
    MINI_RUNS
        .iter()
        .map(|&(model, prompt)| {
            let mut v: Vec<String> = ["run", model, "--cache", "none", "--backend"]
                .map(String::from)
                .into();
            v.extend([flag(backend), "--dtype".into(), flag(dtype)]);
            if let Some(steps) = args.steps {
                v.extend(["--steps".into(), steps.to_string()]);
            }
            v.extend(["--prompt".into(), prompt.into()]);
            if model == "flux" {
                v.extend(["--out".into(), path("flux.png")]);
            } else {
                v.extend(["--out".into(), path(&format!("{model}.gif"))]);
                v.extend(["--frames-dir".into(), path(model)]);
            }
            child(&v)
        })
        .collect()
}

/// The 8-bit frames of a run: `flux.png`, or the PNGs of `<model>/`.
fn frames(dir: &Path, model: &str) -> Result<Vec<Rgb8Image>> {
    let files: Vec<PathBuf> = if model == "flux" {
        vec![dir.join("flux.png")]
    } else {
        let mut files: Vec<PathBuf> = fs::read_dir(dir.join(model))?
            .map(|e| e.map(|e| e.path()))
            .collect::<Result<_, _>>()?;
        files.sort();
        files
    };
    files
        .iter()
        .map(|f| {
            let img = image::open(f)
                .with_context(|| format!("{}", f.display()))?
                .to_rgb8();
            Ok(Rgb8Image {
                width: img.width() as usize,
                height: img.height() as usize,
                pixels: img.into_raw(),
            })
        })
        .collect()
}

/// The card's name by nvidia-smi, if there is one.
fn gpu_name() -> Option<String> {
    let out = Command::new("nvidia-smi")
        .args(["--query-gpu=name", "--format=csv,noheader"])
        .output()
        .ok()?;
    let name = String::from_utf8_lossy(&out.stdout)
        .lines()
        .next()?
        .trim()
        .to_string();
    (!name.is_empty()).then_some(name)
}

/// Runs the check.
pub fn run(args: &GpuCheckArgs) -> Result<()> {
    fs::create_dir_all(&args.out).with_context(|| format!("creating {}", args.out.display()))?;
    let gpu = gpu_name();
    let peak = args.peak_tflops.or_else(|| {
        let name = gpu.as_deref()?;
        PEAK_TFLOPS
            .iter()
            .find(|(part, _)| name.contains(part))
            .map(|(_, tflops)| *tflops)
    });
    let mut report = format!(
        "# GPU check\n\nCard: {}; peak dense bf16 {}.\n\n",
        gpu.as_deref().unwrap_or("none reported by nvidia-smi"),
        peak.map_or("unknown (pass --peak-tflops)".into(), |p| format!(
            "{p} TFLOP/s"
        ))
    );
    let mut failures = 0;

    eprintln!("gpu-check: the CPU's float32 reference");
    let reference = args.out.join("cpu-f32");
    for c in generate(args, BackendKind::Cpu, Dtype::F32, &reference)? {
        if !c.ok {
            bail!("the CPU reference run failed: {}", c.tail);
        }
    }
    report.push_str(
        "## Mini models against the CPU (float32), uncached\n\n\
         | backend | dtype | model | result | PSNR dB | SSIM | wall s |\n|---|---|---|---|---:|---:|---:|\n",
    );
    for &backend in &args.backends {
        for &dtype in dtypes(backend) {
            let name = format!("{}-{}", flag(backend), flag(dtype));
            eprintln!("gpu-check: {name}");
            let dir = args.out.join(&name);
            let runs = generate(args, backend, dtype, &dir)?;
            for ((model, _), run) in MINI_RUNS.into_iter().zip(runs) {
                let row = |result: &str, psnr: String, ssim: String| {
                    format!(
                        "| {} | {} | {model}-mini | {result} | {psnr} | {ssim} | {:.1} |\n",
                        flag(backend),
                        flag(dtype),
                        run.seconds
                    )
                };
                if !run.ok {
                    failures += 1;
                    report.push_str(&row(
                        &format!("failed: {}", run.tail),
                        "–".into(),
                        "–".into(),
                    ));
                    continue;
                }
                let (want, got) = (frames(&reference, model)?, frames(&dir, model)?);
                let psnr = video_psnr(&want, &got)?;
                let ssim = video_ssim(&want, &got)?;
                let pass = psnr >= min_psnr(dtype);
                failures += usize::from(!pass);
                let verdict = if pass { "same picture" } else { "DIFFERS" };
                report.push_str(&row(verdict, format!("{psnr:.1}"), format!("{ssim:.4}")));
            }
        }
    }

    if !args.no_bench {
        report.push_str(&format!(
            "\n## Transformer forwards ({:?} size), random weights, one call = one uncached step \
             (two with WAN's CFG)\n\n| backend | dtype | benchmark | ms per forward | TFLOP/s | \
             of peak |\n|---|---|---|---:|---:|---:|\n",
            args.size
        ));
        let bench_out = args.out.join("bench");
        for &backend in &args.backends {
            let dtype = if backend == BackendKind::Wgpu {
                Dtype::F16
            } else {
                Dtype::Bf16
            };
            for bench in ["flux-forward", "wan-forward", "hunyuan-forward"] {
                eprintln!("gpu-check: {bench} on {}", flag(backend));
                let run = child(
                    &[
                        "bench",
                        bench,
                        "--no-torch",
                        "--rounds",
                        "1",
                        "--repeat",
                        "3",
                        "--warmup",
                        "1",
                        "--backend",
                        &flag(backend),
                        "--dtype",
                        &flag(dtype),
                        "--size",
                        &flag(args.size),
                        "--out",
                        &bench_out.to_string_lossy(),
                    ]
                    .map(String::from),
                )?;
                let cell = |ms: String, tflops: String, share: String| {
                    format!(
                        "| {} | {} | {bench} | {ms} | {tflops} | {share} |\n",
                        flag(backend),
                        flag(dtype)
                    )
                };
                if !run.ok {
                    failures += 1;
                    report.push_str(&cell(
                        format!("failed: {}", run.tail),
                        "–".into(),
                        "–".into(),
                    ));
                    continue;
                }
                let size = if args.size == Size::Real { "-real" } else { "" };
                let file = bench_out.join(format!("results/{bench}{size}-{}.json", flag(dtype)));
                let result: serde_json::Value = serde_json::from_str(&fs::read_to_string(&file)?)?;
                let case = &result["cases"][0];
                let ms = case["burn_ms"].as_f64().unwrap_or(f64::NAN);
                let tflops = case["burn_tflops"].as_f64().unwrap_or(f64::NAN);
                let share = peak.map_or("–".into(), |p| format!("{:.0} %", 100.0 * tflops / p));
                report.push_str(&cell(format!("{ms:.1}"), format!("{tflops:.2}"), share));
            }
        }
    }

    let path = args.out.join("REPORT.md");
    let mut text = report;
    writeln!(text, "\n{failures} failure(s).")?;
    fs::write(&path, &text).with_context(|| format!("writing {}", path.display()))?;
    println!("{text}");
    if failures > 0 {
        bail!("{failures} check(s) failed; see {}", path.display());
    }
    Ok(())
}
