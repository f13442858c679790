//! Benchmark results: one JSON file per benchmark (`results/<name>.json`, every sample and the
//! machine it ran on) and a markdown summary of all of them (`RESULTS.md`).

use std::{
    fmt::Write as _,
    path::Path,
    process::Command,
    time::{SystemTime, UNIX_EPOCH},
};

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize, de::DeserializeOwned};

use super::{BenchArgs, BenchName, BurnTimings, Case, Samples, Size, torch::TorchTimings};

/// Where and when a benchmark ran.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Machine {
    /// CPU model (`/proc/cpuinfo`).
    pub cpu: String,
    /// Threads available to this process.
    pub cores: usize,
    /// `linux x86_64`, ...
    pub os: String,
    /// UTC date and time of the run (`2026-11-25T10:30:00Z`).
    pub date: String,
    /// `git rev-parse --short HEAD`, with `-dirty` when the work tree has changes.
    pub commit: String,
    /// Load averages (1, 5, 15 min) when the run ended: other work competing for the cores.
    pub load: String,
}

/// One case's numbers.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CaseResult {
    /// Case name.
    pub name: String,
    /// The workload's parameters.
    pub params: serde_json::Value,
    /// Median Burn wall-clock milliseconds.
    pub burn_ms: f64,
    /// Median PyTorch wall-clock milliseconds, when PyTorch ran.
    pub torch_ms: Option<f64>,
    /// `burn_ms / torch_ms` (below 1: Burn is faster).
    pub ratio: Option<f64>,
    /// Median Burn CPU milliseconds (all threads), when measured.
    pub burn_cpu_ms: Option<f64>,
    /// Median PyTorch CPU milliseconds (all threads), when measured.
    pub torch_cpu_ms: Option<f64>,
    /// `burn_cpu_ms / torch_cpu_ms`.
    pub cpu_ratio: Option<f64>,
    /// Floating-point operations of one run, where the benchmark counts them.
    #[serde(default)]
    pub flops: Option<f64>,
    /// The throughput the Burn side reached, TFLOP/s (`flops / burn_ms`).
    #[serde(default)]
    pub burn_tflops: Option<f64>,
    /// Every timed Burn run.
    pub burn_samples: Samples,
    /// Every timed PyTorch run.
    pub torch_samples: Option<Samples>,
}

/// Everything one `cargo xtask bench <name>` measured.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BenchResult {
    /// Benchmark name.
    pub bench: String,
    /// The machine.
    pub machine: Machine,
    /// Burn backend as Burn names it.
    pub backend: String,
    /// Float dtype of both sides.
    pub dtype: String,
    /// The transformers' size.
    #[serde(default = "medium")]
    pub size: Size,
    /// Untimed runs per case.
    pub warmup: usize,
    /// Timed runs per case and round.
    pub repeat: usize,
    /// Rounds alternating the two sides.
    #[serde(default = "one")]
    pub rounds: usize,
    /// PyTorch version, threads and device, when PyTorch ran.
    pub torch: Option<TorchInfo>,
    /// Per case.
    pub cases: Vec<CaseResult>,
}

fn medium() -> Size {
    Size::Medium
}

/// The PyTorch side's setup.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TorchInfo {
    /// `torch.__version__`.
    pub version: String,
    /// Intra-op threads.
    pub threads: usize,
    /// Device.
    pub device: String,
}

impl BenchResult {
    /// Combines both sides' timings.
    pub fn new(
        name: BenchName,
        args: &BenchArgs,
        cases: &[Case],
        burn: BurnTimings,
        torch: Option<TorchTimings>,
    ) -> Result<Self> {
        let cases = cases
            .iter()
            .zip(burn.samples)
            .map(|(case, burn_samples)| {
                let torch_samples = torch.as_ref().map(|t| t.cases[&case.name].clone());
                let burn_ms = burn_samples.wall();
                let torch_ms = torch_samples.as_ref().map(Samples::wall);
                let burn_cpu_ms = burn_samples.cpu();
                let torch_cpu_ms = torch_samples.as_ref().and_then(Samples::cpu);
                CaseResult {
                    name: case.name.clone(),
                    params: case.params.clone(),
                    burn_ms,
                    torch_ms,
                    ratio: torch_ms.map(|t| burn_ms / t),
                    burn_cpu_ms,
                    torch_cpu_ms,
                    cpu_ratio: burn_cpu_ms.zip(torch_cpu_ms).map(|(b, t)| b / t),
                    flops: case.flops,
                    burn_tflops: case.flops.map(|f| f / (burn_ms * 1e9)),
                    burn_samples,
                    torch_samples,
                }
            })
            .collect();
        Ok(Self {
            bench: name.as_str().to_string(),
            machine: Machine::current()?,
            backend: burn.backend,
            dtype: format!("{:?}", args.dtype).to_lowercase(),
            size: args.size,
            warmup: args.warmup,
            repeat: args.repeat,
            rounds: args.rounds,
            torch: torch.map(|t| TorchInfo {
                version: t.torch,
                threads: t.threads,
                device: t.device,
            }),
            cases,
        })
    }

    /// The result's name: the benchmark's, then `-real` for the real size and the dtype unless
    /// f32 (`flux-forward`, `flux-forward-bf16`, `flux-forward-real-bf16`), so each size and
    /// dtype keeps its own result.
    pub fn name(&self) -> String {
        let mut name = self.bench.clone();
        if self.size == Size::Real {
            name.push_str("-real");
        }
        if self.dtype != "f32" {
            name = format!("{name}-{}", self.dtype);
        }
        name
    }

    /// Writes `<out>/results/<name>.json` ([`Self::name`]).
    pub fn write(&self, out: &Path) -> Result<()> {
        let dir = out.join("results");
        std::fs::create_dir_all(&dir)
            .with_context(|| format!("cannot create {}", dir.display()))?;
        write_json(self, &dir.join(format!("{}.json", self.name())))
    }

    /// Prints the markdown table of this result.
    pub fn print(&self) {
        println!("{}", self.markdown());
    }

    /// A heading, the setup and a table: case, then Burn ms, PyTorch ms and their ratio, in
    /// wall-clock and in CPU time.
    fn markdown(&self) -> String {
        let m = &self.machine;
        let mut s = format!("## {}\n\n", self.name());
        let torch = match &self.torch {
            Some(t) => format!(
                "PyTorch {} ({} threads, {})",
                t.version, t.threads, t.device
            ),
            None => "no PyTorch side".to_string(),
        };
        let _ = writeln!(
            s,
            "{} ({} threads, {}), Burn backend `{}`, {}; {}; median of {} runs x {} alternating rounds, {} warm-up each; \
             {}, commit {}, load average {}.\n",
            m.cpu,
            m.cores,
            m.os,
            self.backend,
            self.dtype,
            torch,
            self.repeat,
            self.rounds,
            self.warmup,
            m.date,
            m.commit,
            m.load
        );
        s.push_str(
            "| case | Burn ms | PyTorch ms | Burn / PyTorch | Burn CPU ms | PyTorch CPU ms | CPU ratio |\n\
             |---|---:|---:|---:|---:|---:|---:|\n",
        );
        let ms = |v: Option<f64>| v.map_or("–".to_string(), |t| format!("{t:.1}"));
        let ratio = |v: Option<f64>| v.map_or("–".to_string(), |r| format!("{r:.2}x"));
        for c in &self.cases {
            let _ = writeln!(
                s,
                "| {} | {:.1} | {} | {} | {} | {} | {} |",
                c.name,
                c.burn_ms,
                ms(c.torch_ms),
                ratio(c.ratio),
                ms(c.burn_cpu_ms),
                ms(c.torch_cpu_ms),
                ratio(c.cpu_ratio)
            );
        }
        s
    }
}

/// Results written before `rounds` existed ran one round.
fn one() -> usize {
    1
}

/// Regenerates `<out>/RESULTS.md` from every `<out>/results/*.json`.
pub fn write_summary(out: &Path) -> Result<()> {
    let dir = out.join("results");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .with_context(|| format!("cannot read {}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    files.sort();
    let mut md = String::from(
        "# Benchmarks: Burn vs PyTorch on the same machine\n\n\
         Generated by `cargo xtask bench <name>` from `results/*.json` (all samples are there).\n\
         Ratio below 1: Burn is faster. Times are medians; \"CPU ms\" is the CPU time of all the\n\
         process's threads, which still measures the work when other jobs share the cores (see the\n\
         load average), while wall-clock times then grow for both sides.\n\n",
    );
    for path in files {
        let result: BenchResult = read_json(&path, "a benchmark result")?;
        md.push_str(&result.markdown());
        md.push('\n');
    }
    let path = out.join("RESULTS.md");
    std::fs::write(&path, md).with_context(|| format!("cannot write {}", path.display()))?;
    eprintln!("bench: wrote {}", path.display());
    Ok(())
}

/// Writes a benchmark's results under the workspace's `out_dir` (created if missing):
/// `<name>.json` and `md` as `<NAME>.md`, and prints `md`.
pub fn write_results<T: Serialize>(
    out_dir: &Path,
    name: &str,
    results: &T,
    md: &str,
) -> Result<()> {
    let dir = crate::workspace_root().join(out_dir);
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    write_json(results, &dir.join(format!("{name}.json")))?;
    std::fs::write(dir.join(format!("{}.md", name.to_uppercase())), md)?;
    println!("{md}");
    Ok(())
}

/// Writes `value` as pretty JSON to `path`, and says so.
pub fn write_json<T: Serialize>(value: &T, path: &Path) -> Result<()> {
    let text = serde_json::to_string_pretty(value)?;
    std::fs::write(path, text + "\n")
        .with_context(|| format!("cannot write {}", path.display()))?;
    eprintln!("bench: wrote {}", path.display());
    Ok(())
}

/// Reads `what` (for the error message, e.g. "a benchmark result") from the JSON file `path`.
pub fn read_json<T: DeserializeOwned>(path: &Path, what: &str) -> Result<T> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    serde_json::from_str(&text).with_context(|| format!("{} is not {what}", path.display()))
}

impl Machine {
    /// This machine, now.
    pub fn current() -> Result<Self> {
        let cpu = std::fs::read_to_string("/proc/cpuinfo")
            .ok()
            .and_then(|info| {
                info.lines()
                    .find(|l| l.starts_with("model name"))
                    .and_then(|l| l.split(':').nth(1))
                    .map(|s| s.trim().to_string())
            })
            .unwrap_or_else(|| "unknown CPU".to_string());
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        let secs = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .context("system clock before 1970")?
            .as_secs();
        Ok(Self {
            cpu,
            cores,
            os: format!("{} {}", std::env::consts::OS, std::env::consts::ARCH),
            date: utc_timestamp(secs),
            commit: git_commit(),
            load: std::fs::read_to_string("/proc/loadavg")
                .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
                .unwrap_or_else(|_| "unknown".to_string()),
        })
    }
}

/// `git rev-parse --short HEAD`, `-dirty` appended when `git status` lists changes; `unknown`
/// without git.
fn git_commit() -> String {
    let run = |args: &[&str]| {
        Command::new("git")
            .args(args)
            .current_dir(crate::workspace_root())
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
    };
    match run(&["rev-parse", "--short", "HEAD"]) {
        Some(hash) => match run(&["status", "--porcelain", "--untracked-files=no"]) {
            Some(status) if !status.is_empty() => format!("{hash}-dirty"),
            _ => hash,
        },
        None => "unknown".to_string(),
    }
}

/// Seconds since 1970 as `YYYY-MM-DDTHH:MM:SSZ` (proleptic Gregorian calendar).
fn utc_timestamp(secs: u64) -> String {
    let (days, rem) = ((secs / 86_400) as i64, secs % 86_400);
    // Civil date from a day count, with years starting in March so leap days come last.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rem / 3_600,
        rem % 3_600 / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps() {
        assert_eq!(utc_timestamp(0), "1970-01-01T00:00:00Z");
        assert_eq!(utc_timestamp(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(utc_timestamp(1_795_602_600), "2026-11-25T10:30:00Z");
    }
}
