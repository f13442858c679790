//! `cargo xtask bench cache`: speed and fidelity of the cache policies on the mini models.
//!
//! Each model's pipeline is loaded once. For every sample (prompt `i % 16` of [`prompts`],
//! seed `i`), the benchmark generates without cache, then under every setting of the model's
//! table in [`settings`] from the same noise, and records the loop and total wall time, the
//! share of transformer calls computed, and PSNR/SSIM against the uncached output. It writes
//! `<out-dir>/<model>.json` (every sample), `<out-dir>/CACHE.md` (a table per model),
//! `<out-dir>/<model>-frontier.png` (speedup against PSNR and SSIM) and
//! `<out-dir>/<model>-samples.png` (the first samples side by side).

pub(crate) mod generate;
mod measure;
mod plot;
pub mod prompts;
pub mod results;
pub mod settings;
mod sheet;

use std::path::PathBuf;

use anyhow::{Context, Result, bail, ensure};
use clap::ValueEnum;
use dicache_core::DiCacheConfig;
use serde::{Deserialize, Serialize};

use crate::{
    backend::{BackendKind, Dtype, dispatch},
    mini::{self, MiniModel},
    workspace_root,
};

/// Arguments of `cargo xtask bench cache`.
#[derive(clap::Args, Debug)]
pub struct CacheArgs {
    /// The mini model to measure, or all three.
    #[arg(long, value_enum, default_value_t = Which::All)]
    pub model: Which,
    /// Samples per model: prompt `i % 16`, seed `i`.
    #[arg(long, default_value_t = 16)]
    pub samples: usize,
    /// Denoising steps [default: the mini model's: FLUX 28, WAN and HunyuanVideo 30].
    #[arg(long)]
    pub steps: Option<usize>,
    /// Load this pipeline folder instead of the mini model (needs one --model); the
    /// mini model's size, guidance and prompt length still apply.
    #[arg(long)]
    pub model_dir: Option<PathBuf>,
    /// Run only these settings besides no cache, by label (comma-separated, e.g.
    /// `uniform-2,dicache-0.4`); all of the model's table when left out.
    #[arg(long, value_delimiter = ',')]
    pub only: Vec<String>,
    /// Folder of the results (relative to the workspace root).
    #[arg(long, default_value = "bench/cache")]
    pub out_dir: PathBuf,
    /// Backend to run on (each needs its cargo feature).
    #[arg(long, value_enum, default_value = "cpu")]
    pub backend: BackendKind,
    /// Float dtype of weights and compute.
    #[arg(long, value_enum, default_value = "f32")]
    pub dtype: Dtype,
}

/// `--model`: one mini model or all.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Which {
    /// FLUX-mini.
    Flux,
    /// WAN-mini.
    Wan,
    /// HunyuanVideo-mini.
    Hunyuan,
    /// All three, in the order of [`Model::ALL`].
    All,
}

/// A model the benchmark measures.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Model {
    /// FLUX-mini, images.
    Flux,
    /// WAN-mini, videos.
    Wan,
    /// HunyuanVideo-mini, videos.
    Hunyuan,
}

impl Model {
    /// Every model, in the order the benchmarks run and report them.
    pub const ALL: [Model; 3] = [Model::Flux, Model::Wan, Model::Hunyuan];

    /// `flux`, `wan` or `hunyuan`: the names of its files.
    pub fn name(self) -> &'static str {
        match self {
            Model::Flux => "flux",
            Model::Wan => "wan",
            Model::Hunyuan => "hunyuan",
        }
    }

    /// `FLUX-mini`, `WAN-mini` or `HunyuanVideo-mini`.
    pub fn title(self) -> &'static str {
        match self {
            Model::Flux => "FLUX-mini",
            Model::Wan => "WAN-mini",
            Model::Hunyuan => "HunyuanVideo-mini",
        }
    }

    /// Its folder and settings.
    pub fn mini(self) -> MiniModel {
        match self {
            Model::Flux => mini::FLUX,
            Model::Wan => mini::WAN,
            Model::Hunyuan => mini::HUNYUAN,
        }
    }

    /// Its 16 prompts (the two video models share theirs: one caption grammar).
    pub fn prompts(self) -> &'static [&'static str; 16] {
        match self {
            Model::Flux => &prompts::FLUX,
            Model::Wan | Model::Hunyuan => &prompts::VIDEO,
        }
    }

    /// Whether it makes videos (one row of frames per setting on its sample sheet).
    pub fn is_video(self) -> bool {
        self != Model::Flux
    }

    /// Its table of cache settings.
    pub fn settings(self) -> Vec<settings::Setting> {
        settings::table(match self {
            Model::Flux => settings::FLUX_DICACHE,
            Model::Wan => settings::WAN_DICACHE,
            Model::Hunyuan => settings::HUNYUAN_DICACHE,
        })
    }

    /// The thresholds of its table's DiCache settings (the preset's indicator).
    pub fn dicache_thresholds(self) -> Vec<f64> {
        self.settings()
            .iter()
            .filter_map(|s| match s.knob {
                settings::Knob::DiCache(t) => Some(t),
                _ => None,
            })
            .collect()
    }

    /// The DiCache preset its DiCache settings start from.
    pub fn dicache_preset(self) -> DiCacheConfig {
        match self {
            Model::Flux => DiCacheConfig::flux(),
            Model::Wan => DiCacheConfig::wan(),
            Model::Hunyuan => DiCacheConfig::hunyuan_video(),
        }
    }
}

impl Which {
    /// The models it names, in the order of [`Model::ALL`].
    pub fn models(self) -> Vec<Model> {
        match self {
            Which::Flux => vec![Model::Flux],
            Which::Wan => vec![Model::Wan],
            Which::Hunyuan => vec![Model::Hunyuan],
            Which::All => Model::ALL.to_vec(),
        }
    }
}

/// Runs the benchmark and writes its results, plots and sample sheets.
pub fn run(args: &CacheArgs) -> Result<()> {
    ensure!(args.samples >= 1, "--samples must be at least 1");
    if args.model_dir.is_some() && args.model == Which::All {
        bail!("--model-dir needs one --model: flux, wan or hunyuan");
    }
    let out = workspace_root().join(&args.out_dir);
    std::fs::create_dir_all(&out).with_context(|| format!("cannot create {}", out.display()))?;
    let mut results = Vec::new();
    for model in args.model.models() {
        let job = measure::Job { model, args };
        let (result, shown) = dispatch(args.backend, args.dtype, job)?;
        result.write(&out)?;
        let file = |kind: &str| out.join(format!("{}-{kind}.png", model.name()));
        plot::frontier(&result, &file("frontier"))?;
        sheet::write(model, &shown, &file("samples"))?;
        results.push(result);
    }
    results::write_summary(&out)?;
    for result in &results {
        result.print();
    }
    Ok(())
}
