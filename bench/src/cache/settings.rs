//! The cache configurations the benchmark compares with no cache: one table per model, easy to
//! edit. No cache itself runs first for every sample and is on every sheet.

use anyhow::{Result, bail};
use dicache_core::{CachePolicy, DiCacheConfig, FirstBlockConfig, Indicator, UniformConfig};

/// A policy with its one varied setting.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Knob {
    /// No cache: the reference the other settings are measured against.
    None,
    /// Compute every n-th step, reuse the last residual in between.
    Uniform(usize),
    /// First-Block Cache at this threshold.
    FbCache(f64),
    /// DiCache, the model's preset at this threshold.
    DiCache(f64),
    /// DiCache with the delta_minus indicator and no warm-up ratio (the FLUX reference's
    /// alternative) at this threshold.
    DiCacheDeltaMinus(f64),
}

/// One row of a table: a configuration, and whether the sample sheets show it (one per policy).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Setting {
    /// The policy and its setting.
    pub knob: Knob,
    /// Shown on the sample sheets as its policy's representative.
    pub in_sheet: bool,
}

const fn row(knob: Knob) -> Setting {
    Setting {
        knob,
        in_sheet: false,
    }
}

const fn shown(knob: Knob) -> Setting {
    Setting {
        knob,
        in_sheet: true,
    }
}

/// The baselines, the same for every model: uniform caching every 2, 3 and 4 steps and
/// First-Block Cache at four thresholds.
pub const BASELINES: &[Setting] = &[
    row(Knob::Uniform(2)),
    shown(Knob::Uniform(3)),
    row(Knob::Uniform(4)),
    row(Knob::FbCache(0.05)),
    shown(Knob::FbCache(0.1)),
    row(Knob::FbCache(0.15)),
    row(Knob::FbCache(0.25)),
];

/// FLUX-mini's DiCache settings: the preset is delta 0.4 (delta_y); delta_minus 0.08 is the
/// reference's alternative.
pub const FLUX_DICACHE: &[Setting] = &[
    row(Knob::DiCache(0.1)),
    row(Knob::DiCache(0.2)),
    row(Knob::DiCache(0.3)),
    shown(Knob::DiCache(0.4)),
    row(Knob::DiCache(0.6)),
    row(Knob::DiCacheDeltaMinus(0.04)),
    row(Knob::DiCacheDeltaMinus(0.08)),
];

/// WAN-mini's DiCache settings: the preset is delta 0.08.
pub const WAN_DICACHE: &[Setting] = &[
    row(Knob::DiCache(0.05)),
    shown(Knob::DiCache(0.08)),
    row(Knob::DiCache(0.15)),
    row(Knob::DiCache(0.3)),
    row(Knob::DiCache(0.5)),
];

/// HunyuanVideo-mini's DiCache settings: the preset is delta 0.1 (`<=`, warm-up `i < W`).
pub const HUNYUAN_DICACHE: &[Setting] = &[
    row(Knob::DiCache(0.05)),
    shown(Knob::DiCache(0.1)),
    row(Knob::DiCache(0.2)),
    row(Knob::DiCache(0.3)),
    row(Knob::DiCache(0.5)),
];

/// A model's table: the baselines, then its DiCache settings `dicache`.
pub fn table(dicache: &[Setting]) -> Vec<Setting> {
    BASELINES.iter().chain(dicache).copied().collect()
}

impl Knob {
    /// The name of the setting in tables and on the command line (`uniform-2`,
    /// `dicache-0.4`, `dicache-dm-0.08`).
    pub fn label(self) -> String {
        match self {
            Knob::None => "none".to_string(),
            Knob::Uniform(n) => format!("uniform-{n}"),
            Knob::FbCache(t) => format!("fbcache-{t}"),
            Knob::DiCache(t) => format!("dicache-{t}"),
            Knob::DiCacheDeltaMinus(t) => format!("dicache-dm-{t}"),
        }
    }

    /// The policy family, one series of the plots.
    pub fn series(self) -> &'static str {
        match self {
            Knob::None => "none",
            Knob::Uniform(_) => "uniform",
            Knob::FbCache(_) => "fbcache",
            Knob::DiCache(_) => "dicache",
            Knob::DiCacheDeltaMinus(_) => "dicache (delta_minus)",
        }
    }

    /// The varied setting alone, labelling a point of the plots (`2`, `0.4`).
    pub fn value(self) -> String {
        match self {
            Knob::None => String::new(),
            Knob::Uniform(n) => n.to_string(),
            Knob::FbCache(t) | Knob::DiCache(t) | Knob::DiCacheDeltaMinus(t) => t.to_string(),
        }
    }

    /// The policy, DiCache starting from the model's `preset`.
    pub fn policy(self, preset: &DiCacheConfig) -> CachePolicy {
        match self {
            Knob::None => CachePolicy::None,
            Knob::Uniform(interval) => CachePolicy::Uniform(UniformConfig { interval }),
            Knob::FbCache(threshold) => CachePolicy::FirstBlock(FirstBlockConfig {
                threshold,
                ..FirstBlockConfig::default()
            }),
            Knob::DiCache(threshold) => CachePolicy::DiCache(DiCacheConfig {
                threshold,
                ..preset.clone()
            }),
            Knob::DiCacheDeltaMinus(threshold) => CachePolicy::DiCache(DiCacheConfig {
                threshold,
                warmup_ratio: 0.0,
                indicator: Indicator::DeltaMinus,
                ..preset.clone()
            }),
        }
    }
}

/// The settings to run: `none` first, then the rows of `table`, or only those labelled in
/// `only` when it is not empty (an unknown label is an error naming the known ones).
pub fn select(table: &[Setting], only: &[String]) -> Result<Vec<Setting>> {
    for label in only {
        if !table.iter().any(|s| &s.knob.label() == label) {
            let known: Vec<_> = table.iter().map(|s| s.knob.label()).collect();
            bail!("no cache setting {label:?}; known: {}", known.join(", "));
        }
    }
    let rows = table
        .iter()
        .filter(|s| only.is_empty() || only.contains(&s.knob.label()));
    Ok(std::iter::once(shown(Knob::None))
        .chain(rows.copied())
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delta_minus_on_the_flux_preset_is_the_flux_reference_alternative() {
        let policy = Knob::DiCacheDeltaMinus(0.08).policy(&DiCacheConfig::flux());
        assert_eq!(
            policy,
            CachePolicy::DiCache(DiCacheConfig::flux_delta_minus())
        );
        assert_eq!(
            Knob::DiCache(0.4).policy(&DiCacheConfig::flux()),
            CachePolicy::DiCache(DiCacheConfig::flux())
        );
    }

    #[test]
    fn labels_are_unique_and_none_runs_first() {
        for dicache in [FLUX_DICACHE, WAN_DICACHE, HUNYUAN_DICACHE] {
            let rows = table(dicache);
            let mut labels: Vec<_> = select(&rows, &[])
                .unwrap()
                .iter()
                .map(|s| s.knob.label())
                .collect();
            labels.sort();
            labels.dedup();
            assert_eq!(labels.len(), rows.len() + 1);
        }
        let picked = select(
            &table(FLUX_DICACHE),
            &["dicache-0.4".into(), "uniform-2".into()],
        )
        .unwrap();
        let labels: Vec<_> = picked.iter().map(|s| s.knob.label()).collect();
        assert_eq!(labels, ["none", "uniform-2", "dicache-0.4"]);
        assert!(select(&table(WAN_DICACHE), &["dicache-dm-0.08".into()]).is_err());
    }
}
