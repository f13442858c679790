//! What the cache benchmark measured for one model: every sample under every setting, the
//! aggregates per setting against no cache, and the probe overhead; written as
//! `<out-dir>/<model>.json`, summed up in `<out-dir>/CACHE.md`.

use std::{fmt::Write as _, path::Path};

use anyhow::{Context, Result};
use dicache_core::{CachePolicy, Trace};
use serde::{Deserialize, Serialize, de::DeserializeOwned};

use super::{Model, generate::Generation, settings::Knob};
use crate::{
    mini::Preset,
    quality,
    report::{self, Machine},
};

/// One sample generated under one setting.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SampleResult {
    /// Sample index (also the seed of its noise).
    pub sample: usize,
    /// Its prompt.
    pub prompt: String,
    /// Wall time of the denoising loop, milliseconds.
    pub loop_ms: f64,
    /// Wall time of the whole generation (text encoding, loop, VAE decoding), milliseconds.
    pub total_ms: f64,
    /// Transformer calls whose deep blocks ran.
    pub computed_calls: usize,
    /// Transformer calls (two a step with CFG).
    pub calls: usize,
    /// Summed wall time of the computed calls, milliseconds.
    pub computed_calls_ms: f64,
    /// Summed wall time of the skipped calls, milliseconds.
    pub skipped_calls_ms: f64,
    /// PSNR against the uncached output of the same sample, dB (null in JSON: identical,
    /// infinite).
    #[serde(with = "infinite_as_null")]
    pub psnr: f64,
    /// SSIM against the uncached output of the same sample (video: mean over frames).
    pub ssim: f64,
}

impl SampleResult {
    /// The numbers of `generation`, sample `sample` of `prompt`, against the uncached frames
    /// `reference` of the same sample.
    pub fn new(
        sample: usize,
        prompt: &str,
        generation: &Generation,
        reference: &[vae::Rgb8Image],
    ) -> Result<Self> {
        let s = generation.trace.summary();
        let (computed_calls_ms, skipped_calls_ms) = call_times(&generation.trace);
        Ok(Self {
            sample,
            prompt: prompt.to_string(),
            loop_ms: generation.loop_time.as_secs_f64() * 1e3,
            total_ms: generation.total_time.as_secs_f64() * 1e3,
            computed_calls: s.computed,
            calls: s.calls,
            computed_calls_ms,
            skipped_calls_ms,
            psnr: quality::video_psnr(reference, &generation.frames)?,
            ssim: quality::video_ssim(reference, &generation.frames)?,
        })
    }
}

/// Summed wall time of the computed and of the skipped calls of `trace`, milliseconds.
fn call_times(trace: &Trace) -> (f64, f64) {
    trace.steps.iter().fold((0.0, 0.0), |(c, s), e| {
        if e.computed {
            (c + e.wall_ms, s)
        } else {
            (c, s + e.wall_ms)
        }
    })
}

/// A setting's numbers over all samples, against no cache.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Summary {
    /// Summed loop time without cache over summed loop time with this setting.
    pub loop_speedup: f64,
    /// The same for the whole generation.
    pub run_speedup: f64,
    /// Mean fraction of the transformer calls computed.
    pub computed_fraction: f64,
    /// Mean PSNR over the samples whose output differs from the uncached one, dB; infinite
    /// (null in JSON) when none differs.
    #[serde(with = "infinite_as_null")]
    pub psnr: f64,
    /// Mean SSIM.
    pub ssim: f64,
}

/// One setting: what ran and what it measured.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SettingResult {
    /// `dicache-0.4`, ...
    pub label: String,
    /// The policy family (`dicache`), one series of the plots.
    pub series: String,
    /// The varied setting alone (`0.4`).
    pub value: String,
    /// Whether the sample sheets show it.
    pub in_sheet: bool,
    /// The policy exactly as run.
    pub policy: CachePolicy,
    /// Aggregates against no cache.
    pub summary: Summary,
    /// Every sample.
    pub samples: Vec<SampleResult>,
}

impl SettingResult {
    /// The result of `knob` over `samples`, aggregated against the uncached `reference`
    /// samples (the same samples in the same order).
    pub fn new(
        knob: Knob,
        in_sheet: bool,
        policy: CachePolicy,
        samples: Vec<SampleResult>,
        reference: &[SampleResult],
    ) -> Self {
        let sum = |v: &[SampleResult], f: fn(&SampleResult) -> f64| v.iter().map(f).sum::<f64>();
        let mean = |f: fn(&SampleResult) -> f64| sum(&samples, f) / samples.len() as f64;
        let summary = Summary {
            loop_speedup: sum(reference, |s| s.loop_ms) / sum(&samples, |s| s.loop_ms),
            run_speedup: sum(reference, |s| s.total_ms) / sum(&samples, |s| s.total_ms),
            computed_fraction: mean(|s| s.computed_calls as f64 / s.calls as f64),
            psnr: mean_finite(samples.iter().map(|s| s.psnr)),
            ssim: mean(|s| s.ssim),
        };
        Self {
            label: knob.label(),
            series: knob.series().to_string(),
            value: knob.value(),
            in_sheet,
            policy,
            summary,
            samples,
        }
    }
}

/// What the DiCache probe costs: a computed call under DiCache (probe, then the remaining
/// blocks from the probe's state) against a call without cache.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ProbeOverhead {
    /// Mean wall time of a call without cache, milliseconds.
    pub uncached_call_ms: f64,
    /// Mean wall time of a computed call under DiCache (all its settings), milliseconds.
    pub computed_call_ms: f64,
    /// Mean wall time of a skipped call under DiCache (probe, alignment, head), milliseconds.
    pub skipped_call_ms: Option<f64>,
}

impl ProbeOverhead {
    /// Over the samples of `none` and of every DiCache setting in `settings`; `None` when
    /// DiCache computed no call.
    fn of(none: &SettingResult, settings: &[SettingResult]) -> Option<Self> {
        let dicache: Vec<_> = settings
            .iter()
            .filter(|s| s.series.starts_with("dicache"))
            .flat_map(|s| &s.samples)
            .collect();
        let count = |f: fn(&SampleResult) -> usize| dicache.iter().map(|s| f(s)).sum::<usize>();
        let total = |f: fn(&SampleResult) -> f64| dicache.iter().map(|s| f(s)).sum::<f64>();
        let (computed, skipped) = (
            count(|s| s.computed_calls),
            count(|s| s.calls - s.computed_calls),
        );
        let none_calls: usize = none.samples.iter().map(|s| s.calls).sum();
        let none_ms: f64 = none.samples.iter().map(|s| s.computed_calls_ms).sum();
        (computed > 0).then(|| Self {
            uncached_call_ms: none_ms / none_calls as f64,
            computed_call_ms: total(|s| s.computed_calls_ms) / computed as f64,
            skipped_call_ms: (skipped > 0).then(|| total(|s| s.skipped_calls_ms) / skipped as f64),
        })
    }
}

/// What a mini-model benchmark ran on: the model, its folder and settings, the machine, the
/// backend and dtype.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Setup {
    /// The model.
    pub model: Model,
    /// The pipeline folder.
    pub model_dir: String,
    /// The machine, commit and load.
    pub machine: Machine,
    /// Burn backend as Burn names it.
    pub backend: String,
    /// Float dtype.
    pub dtype: String,
    /// Size, steps, guidance and prompt length of every generation.
    pub preset: Preset,
}

impl Setup {
    /// `model` from `folder` at `preset` on `backend` in `dtype`, on this machine now.
    pub fn new(
        model: Model,
        folder: &Path,
        (backend, dtype): (String, String),
        preset: Preset,
    ) -> Result<Self> {
        Ok(Self {
            model,
            model_dir: folder.display().to_string(),
            machine: Machine::current()?,
            backend,
            dtype,
            preset,
        })
    }

    /// `FLUX-mini (128x128, 28 steps, guidance 3.5)`: a section heading's start.
    pub fn title(&self) -> String {
        let p = &self.preset;
        let size = match p.frames {
            Some(f) => format!("{}x{}, {f} frames", p.width, p.height),
            None => format!("{}x{}", p.width, p.height),
        };
        let guidance = p
            .guidance
            .map_or(String::new(), |g| format!(", guidance {g}"));
        format!(
            "{} ({size}, {} steps{guidance})",
            self.model.title(),
            p.steps
        )
    }

    /// The machine paragraph closing a section, then the plot `<model>-<plot>.png`.
    pub fn footer(&self, plot: &str) -> String {
        format!(
            "{}\n![{plot}]({}-{plot}.png)\n",
            self.machine_paragraph(),
            self.model.name()
        )
    }

    /// The paragraph naming the machine, backend, dtype, date, commit, load and model folder.
    pub fn machine_paragraph(&self) -> String {
        let m = &self.machine;
        format!(
            "\nMachine: {} ({} threads, {}), Burn backend `{}`, {}; {}, commit {}, load average \
             {}; model `{}`.\n",
            m.cpu,
            m.cores,
            m.os,
            self.backend,
            self.dtype,
            m.date,
            m.commit,
            m.load,
            self.model_dir,
        )
    }

    /// Writes `value` as `<out>/<model>.json`.
    pub fn write<T: Serialize>(&self, value: &T, out: &Path) -> Result<()> {
        report::write_json(value, &out.join(format!("{}.json", self.model.name())))
    }
}

/// Everything the benchmark measured for one model.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ModelResult {
    /// What it ran on.
    #[serde(flatten)]
    pub setup: Setup,
    /// Samples per setting.
    pub samples: usize,
    /// No cache first, then every cached setting.
    pub settings: Vec<SettingResult>,
    /// The DiCache probe's cost, when DiCache ran.
    pub probe_overhead: Option<ProbeOverhead>,
}

impl ModelResult {
    /// The result of `settings` (no cache first) on `setup`.
    pub fn new(setup: Setup, settings: Vec<SettingResult>) -> Result<Self> {
        let none = settings.first().context("no cache ran")?;
        Ok(Self {
            setup,
            samples: none.samples.len(),
            probe_overhead: ProbeOverhead::of(none, &settings),
            settings,
        })
    }

    /// Writes `<out>/<model>.json`.
    pub fn write(&self, out: &Path) -> Result<()> {
        self.setup.write(self, out)
    }

    /// The model's section of `CACHE.md`: heading, table, probe overhead, machine.
    pub fn markdown(&self) -> String {
        let mut s = format!("## {}, {} samples\n\n", self.setup.title(), self.samples);
        s.push_str(
            "| Method | Speedup (loop) | Speedup (run) | Computed | PSNR | SSIM |\n\
             |---|---:|---:|---:|---:|---:|\n",
        );
        for r in &self.settings {
            let m = &r.summary;
            let _ = writeln!(
                s,
                "| {} | {:.2}x | {:.2}x | {:.1}% | {} | {:.4} |",
                r.label,
                m.loop_speedup,
                m.run_speedup,
                m.computed_fraction * 100.0,
                db(m.psnr),
                m.ssim
            );
        }
        if let Some(o) = &self.probe_overhead {
            let skipped = o
                .skipped_call_ms
                .map_or(String::new(), |ms| format!("; a skipped call {ms:.1} ms"));
            let _ = writeln!(
                s,
                "\nProbe overhead: a computed DiCache call takes {:.1} ms against {:.1} ms without \
                 cache ({:+.1}%){skipped}.",
                o.computed_call_ms,
                o.uncached_call_ms,
                (o.computed_call_ms / o.uncached_call_ms - 1.0) * 100.0
            );
        }
        s.push_str(&self.setup.footer("frontier"));
        s
    }

    /// The table, printed at the end of a run.
    pub fn print(&self) {
        println!("{}", self.markdown());
    }
}

/// The mean of the finite `values`; infinite when there are none (identical outputs only).
pub(crate) fn mean_finite(values: impl Iterator<Item = f64>) -> f64 {
    let (sum, n) = values
        .filter(|v| v.is_finite())
        .fold((0.0, 0usize), |(sum, n), v| (sum + v, n + 1));
    if n == 0 {
        f64::INFINITY
    } else {
        sum / n as f64
    }
}

/// A PSNR for the tables: `inf` when infinite.
pub(crate) fn db(psnr: f64) -> String {
    if psnr.is_finite() {
        format!("{psnr:.2}")
    } else {
        "inf".to_string()
    }
}

/// Regenerates `<out>/CACHE.md` from the model results in `<out>` (`flux.json`, `wan.json`).
pub fn write_summary(out: &Path) -> Result<()> {
    let intro = String::from(
        "# Cache policies on the mini models\n\n\
         Generated by `cargo xtask bench cache` from the `<model>.json` files beside this one (every \
         sample is there). Each sample (prompt `i % 16`, seed `i`) runs without cache, then under \
         every setting on the same noise. Speedup: summed wall time without cache over summed \
         wall time with the setting, of the denoising loop and of the whole generation (text \
         encoding, loop, VAE decoding). Computed: transformer calls whose deep blocks ran. PSNR \
         and SSIM (scikit-image's, on 8-bit RGB; videos: PSNR over the clip, SSIM averaged over \
         frames) against the uncached output of the same sample, averaged over samples (PSNR over \
         those that differ from it; inf when none does).\n\n",
    );
    write_sections(
        out,
        ("CACHE.md", &intro),
        "a cache benchmark result",
        ModelResult::markdown,
    )
}

/// Regenerates `<out>/<file>`: `intro`, then the section `markdown` makes of each model's
/// result in `<out>` (`flux.json`, `wan.json`, `hunyuan.json`, read as `what`).
pub fn write_sections<T: DeserializeOwned>(
    out: &Path,
    (file, intro): (&str, &str),
    what: &str,
    markdown: fn(&T) -> String,
) -> Result<()> {
    let mut md = intro.to_string();
    for model in Model::ALL {
        let path = out.join(format!("{}.json", model.name()));
        if !path.exists() {
            continue;
        }
        md.push_str(&markdown(&report::read_json(&path, what)?));
        md.push('\n');
    }
    let path = out.join(file);
    std::fs::write(&path, md).with_context(|| format!("cannot write {}", path.display()))?;
    eprintln!("bench: wrote {}", path.display());
    Ok(())
}

/// JSON has no infinity: an infinite PSNR (identical outputs) is written as `null`.
pub(crate) mod infinite_as_null {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(value: &f64, serializer: S) -> Result<S::Ok, S::Error> {
        if value.is_finite() {
            serializer.serialize_f64(*value)
        } else {
            serializer.serialize_none()
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<f64, D::Error> {
        Ok(Option::<f64>::deserialize(deserializer)?.unwrap_or(f64::INFINITY))
    }
}

#[cfg(test)]
mod tests {
    use super::mean_finite;

    #[test]
    fn identical_outputs_leave_the_mean_psnr() {
        assert_eq!(mean_finite([30.0, f64::INFINITY, 20.0].into_iter()), 25.0);
        assert_eq!(mean_finite([f64::INFINITY].into_iter()), f64::INFINITY);
    }
}
