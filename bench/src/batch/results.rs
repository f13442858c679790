//! What the batch benchmark measured for one model, written as `<out-dir>/<model>.json`, summed
//! up in `<out-dir>/BATCH.md` and plotted as `<out-dir>/<model>-batch.png`.

use std::{fmt::Write as _, path::Path};

use anyhow::Result;
use dicache_core::{CachePolicy, CacheScope};
use plotters::style::RGBColor;
use serde::{Deserialize, Serialize};
use vae::Rgb8Image;

use super::Run;
use crate::{
    cache::results::{Setup, db, infinite_as_null, mean_finite, write_sections},
    chart::{self, Panel, Series},
    quality,
    timing::median,
};

/// All the samples at one batch size with one policy.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ThroughputRow {
    /// `none` or `dicache`.
    pub policy: String,
    /// Samples per transformer call (1: one by one).
    pub batch_size: usize,
    /// Wall time of all the samples' generations in each round, seconds.
    pub seconds: Vec<f64>,
    /// Samples per second in the median round.
    pub samples_per_second: f64,
    /// Mean fraction of the transformer calls computed.
    pub computed_fraction: f64,
    /// Mean PSNR against the uncached samples made one by one, dB (null: identical).
    #[serde(with = "infinite_as_null")]
    pub psnr: f64,
}

impl ThroughputRow {
    /// The numbers of `policy` at `batch_size`: the outputs of its first run `r` against the
    /// uncached `reference`, and the wall time `seconds` of every round.
    pub(super) fn new(
        policy: &CachePolicy,
        batch_size: usize,
        (r, seconds): (&Run, Vec<f64>),
        reference: &[Vec<Rgb8Image>],
    ) -> Result<Self> {
        Ok(Self {
            policy: policy.name().to_string(),
            batch_size,
            samples_per_second: r.frames.len() as f64 / median(&seconds),
            seconds,
            computed_fraction: mean(&r.computed),
            psnr: mean_finite(psnrs(r, reference)?.into_iter()),
        })
    }
}

/// DiCache at one threshold and scope, at the comparison's batch size.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ScopeRow {
    /// The DiCache threshold.
    pub threshold: f64,
    /// A decision per sample or per batch.
    pub scope: CacheScope,
    /// Mean fraction of the transformer calls computed.
    pub computed_fraction: f64,
    /// Mean PSNR against the uncached samples, dB (null: identical).
    #[serde(with = "infinite_as_null")]
    pub psnr: f64,
    /// Mean SSIM against the uncached samples.
    pub ssim: f64,
}

impl ScopeRow {
    /// The numbers of run `r` at `threshold` and `scope`, against the uncached `reference`.
    pub(super) fn new(
        threshold: f64,
        scope: CacheScope,
        r: &Run,
        reference: &[Vec<Rgb8Image>],
    ) -> Result<Self> {
        let ssims = r
            .frames
            .iter()
            .zip(reference)
            .map(|(a, b)| quality::video_ssim(b, a))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self {
            threshold,
            scope,
            computed_fraction: mean(&r.computed),
            psnr: mean_finite(psnrs(r, reference)?.into_iter()),
            ssim: mean(&ssims),
        })
    }
}

/// Each sample's PSNR against its reference.
fn psnrs(r: &Run, reference: &[Vec<Rgb8Image>]) -> Result<Vec<f64>> {
    Ok(r.frames
        .iter()
        .zip(reference)
        .map(|(a, b)| quality::video_psnr(b, a))
        .collect::<Result<Vec<_>, _>>()?)
}

fn mean(values: &[f64]) -> f64 {
    values.iter().sum::<f64>() / values.len() as f64
}

/// Everything the benchmark measured for one model.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BatchResult {
    /// What it ran on.
    #[serde(flatten)]
    pub setup: Setup,
    /// Samples of every run.
    pub samples: usize,
    /// Batch size of the cache-scope comparison.
    pub scope_batch: usize,
    /// Without cache, then with DiCache: one by one, then each batch size.
    pub throughput: Vec<ThroughputRow>,
    /// Each threshold with a decision per sample, then per batch.
    pub scopes: Vec<ScopeRow>,
    /// Mean PSNR of deciding per sample minus deciding per batch at the batch scope's
    /// computed fractions (the sample-scope line interpolated there), dB; `None` where no
    /// batch-scope point lies within the sample-scope line's range.
    pub sample_scope_gain_db: Option<f64>,
}

impl BatchResult {
    /// The result on `setup` over `samples` samples with the scopes compared at
    /// `scope_batch`.
    pub(super) fn new(
        setup: Setup,
        (samples, scope_batch): (usize, usize),
        throughput: Vec<ThroughputRow>,
        scopes: Vec<ScopeRow>,
    ) -> Self {
        Self {
            setup,
            samples,
            scope_batch,
            sample_scope_gain_db: scope_gain(&scopes),
            throughput,
            scopes,
        }
    }

    /// Writes `<out>/<model>.json`.
    pub fn write(&self, out: &Path) -> Result<()> {
        self.setup.write(self, out)
    }

    /// The samples per second of `policy` one by one.
    fn one_by_one(&self, policy: &str) -> Option<f64> {
        self.throughput
            .iter()
            .find(|r| r.policy == policy && r.batch_size == 1)
            .map(|r| r.samples_per_second)
    }

    /// The model's section of `BATCH.md`.
    pub fn markdown(&self) -> String {
        let mut s = format!(
            "## {}, {} samples\n\n\
             | Cache | Batch size | Samples/s | Against one by one | Computed | PSNR against \
             uncached one by one |\n|---|---:|---:|---:|---:|---:|\n",
            self.setup.title(),
            self.samples
        );
        for r in &self.throughput {
            let base = self.one_by_one(&r.policy).unwrap_or(f64::NAN);
            let _ = writeln!(
                s,
                "| {} | {} | {:.2} | {:.2}x | {:.1}% | {} |",
                r.policy,
                r.batch_size,
                r.samples_per_second,
                r.samples_per_second / base,
                r.computed_fraction * 100.0,
                db(r.psnr)
            );
        }
        let _ = write!(
            s,
            "\nDiCache's decisions at batch size {}: per sample, or one per batch on indicators \
             over the batch tensor (the reference's).\n\n\
             | Threshold | Scope | Computed | PSNR | SSIM |\n|---:|---|---:|---:|---:|\n",
            self.scope_batch
        );
        for r in &self.scopes {
            let _ = writeln!(
                s,
                "| {} | {:?} | {:.1}% | {} | {:.4} |",
                r.threshold,
                r.scope,
                r.computed_fraction * 100.0,
                db(r.psnr),
                r.ssim
            );
        }
        if let Some(gain) = self.sample_scope_gain_db {
            let _ = writeln!(
                s,
                "\nAt the computed fractions of the batch scope, deciding per sample gives \
                 {gain:+.2} dB PSNR on average."
            );
        }
        s.push_str(&self.setup.footer("batch"));
        s
    }

    /// Samples per second against batch size (left), PSNR against computed fraction per scope
    /// (right), as a PNG at `path`.
    pub fn plot(&self, path: &Path) -> Result<()> {
        let color = |i: usize| [RGBColor(31, 119, 180), RGBColor(214, 39, 40)][i % 2];
        let throughput = ["none", "dicache"]
            .iter()
            .enumerate()
            .map(|(i, policy)| Series {
                name: policy.to_string(),
                color: color(i),
                points: self
                    .throughput
                    .iter()
                    .filter(|r| r.policy == *policy)
                    .map(|r| (r.batch_size as f64, r.samples_per_second, String::new()))
                    .collect(),
            })
            .collect();
        let scopes = [CacheScope::Sample, CacheScope::Batch]
            .iter()
            .enumerate()
            .map(|(i, scope)| Series {
                name: format!("decision per {scope:?}").to_lowercase(),
                color: color(i),
                points: self
                    .scopes
                    .iter()
                    .filter(|r| r.scope == *scope)
                    .map(|r| (r.computed_fraction * 100.0, r.psnr, r.threshold.to_string()))
                    .collect(),
            })
            .collect();
        let title = format!(
            "{}: {} samples in batches; cache scope at batch size {}",
            self.setup.model.title(),
            self.samples,
            self.scope_batch
        );
        let panels = [
            Panel {
                x_desc: "batch size (samples per transformer call)".to_string(),
                y_desc: "samples per second".to_string(),
                x_includes: Some(1.0),
                series: throughput,
            },
            Panel {
                x_desc: "transformer calls computed (%)".to_string(),
                y_desc: "PSNR against no cache (dB)".to_string(),
                x_includes: None,
                series: scopes,
            },
        ];
        chart::write_png(path, &title, &panels)
    }
}

/// Mean PSNR gain of the sample scope over the batch scope at the batch scope's computed
/// fractions (see [`BatchResult::sample_scope_gain_db`]).
fn scope_gain(scopes: &[ScopeRow]) -> Option<f64> {
    let mut line: Vec<(f64, f64)> = scopes
        .iter()
        .filter(|r| r.scope == CacheScope::Sample && r.psnr.is_finite())
        .map(|r| (r.computed_fraction, r.psnr))
        .collect();
    line.sort_by(|a, b| a.0.total_cmp(&b.0));
    let at = |x: f64| {
        line.windows(2)
            .find(|w| w[0].0 <= x && x <= w[1].0)
            .map(|w| match w[1].0 - w[0].0 {
                0.0 => w[0].1,
                dx => w[0].1 + (w[1].1 - w[0].1) * (x - w[0].0) / dx,
            })
    };
    let gains: Vec<f64> = scopes
        .iter()
        .filter(|r| r.scope == CacheScope::Batch && r.psnr.is_finite())
        .filter_map(|r| Some(at(r.computed_fraction)? - r.psnr))
        .collect();
    (!gains.is_empty()).then(|| gains.iter().sum::<f64>() / gains.len() as f64)
}

/// Regenerates `<out>/BATCH.md` from the model results in `<out>`.
pub fn write_summary(out: &Path) -> Result<()> {
    let intro = "# Many samples at once on the mini models\n\n\
         Generated by `cargo xtask bench batch` from the `<model>.json` files beside this one. \
         Every run makes the same samples (prompt `i % 16`, seed `i`), one by one or in batches \
         (samples per transformer call); samples per second count the whole generation (text \
         encoding, loop, VAE decoding). PSNR and SSIM are against the uncached samples made one \
         by one (inf: identical). With a decision per sample, every sample of a batch gets the \
         output and cache schedule it gets alone.\n\n";
    write_sections(
        out,
        ("BATCH.md", intro),
        "a batch benchmark result",
        BatchResult::markdown,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(scope: CacheScope, computed_fraction: f64, psnr: f64) -> ScopeRow {
        ScopeRow {
            threshold: 0.0,
            scope,
            computed_fraction,
            psnr,
            ssim: 1.0,
        }
    }

    #[test]
    fn the_scope_gain_is_read_off_the_sample_line_at_the_batch_points() {
        let scopes = [
            row(CacheScope::Sample, 0.2, 20.0),
            row(CacheScope::Sample, 0.6, 40.0),
            row(CacheScope::Batch, 0.4, 25.0),
            // Outside the sample line: left out.
            row(CacheScope::Batch, 0.9, 50.0),
        ];
        assert_eq!(scope_gain(&scopes), Some(5.0));
        assert_eq!(scope_gain(&scopes[..2]), None);
    }
}
