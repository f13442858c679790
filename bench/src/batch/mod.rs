//! `cargo xtask bench batch`: many samples at once on the mini models.
//!
//! For each model, the benchmark generates the same samples (prompt `i % 16`, seed `i`) one by
//! one and in batches of each `--batch-sizes`, without cache and with the model's DiCache
//! preset, `--rounds` times, and records the samples per second of the whole generation (text
//! encoding, loop, VAE decoding; the median round) and, against the uncached samples made one by one, the share of transformer
//! calls computed and the PSNR. Then it compares the two cache scopes at one batch size over
//! several DiCache thresholds: a decision per sample against the reference's one decision per
//! batch, as computed fraction against PSNR and SSIM. It writes `<out-dir>/<model>.json`,
//! `<out-dir>/BATCH.md` and `<out-dir>/<model>-batch.png`.

mod results;

use std::{ops::Range, path::PathBuf};

use anyhow::{Context, Result, ensure};
use burn::tensor::backend::Backend;
use dicache_core::{CachePolicy, CacheScope, DiCacheConfig};
use dit_layers::gaussian_noise_rows;
use vae::Rgb8Image;

use crate::{
    backend::{BackendJob, BackendKind, Dtype, dispatch},
    cache::{Model, Which, generate::Generator, results::Setup},
    mini::{Given, Preset},
    progress::progress_bar,
    workspace_root,
};
use results::{BatchResult, ScopeRow, ThroughputRow};

/// Arguments of `cargo xtask bench batch`.
#[derive(clap::Args, Debug)]
pub struct BatchArgs {
    /// The mini model to measure, or all three.
    #[arg(long, value_enum, default_value_t = Which::All)]
    pub model: Which,
    /// Samples of every run: prompt `i % 16`, seed `i`.
    #[arg(long, default_value_t = 16)]
    pub samples: usize,
    /// Batch sizes timed against one by one (comma-separated).
    #[arg(long, value_delimiter = ',', default_values_t = vec![2, 4, 8])]
    pub batch_sizes: Vec<usize>,
    /// Rounds of the throughput runs, each running every policy and batch size once (the
    /// median round counts): on a shared machine all then see the same load.
    #[arg(long, default_value_t = 3)]
    pub rounds: usize,
    /// Batch size of the cache-scope comparison.
    #[arg(long, default_value_t = 8)]
    pub scope_batch: usize,
    /// DiCache thresholds of the cache-scope comparison (comma-separated) [default: the
    /// model's benchmark table].
    #[arg(long, value_delimiter = ',')]
    pub thresholds: Vec<f64>,
    /// Denoising steps [default: the mini model's: FLUX 28, WAN and HunyuanVideo 30].
    #[arg(long)]
    pub steps: Option<usize>,
    /// Folder of the results (relative to the workspace root).
    #[arg(long, default_value = "bench/batch")]
    pub out_dir: PathBuf,
    /// Backend to run on (each needs its cargo feature).
    #[arg(long, value_enum, default_value = "cpu")]
    pub backend: BackendKind,
    /// Float dtype of weights and compute.
    #[arg(long, value_enum, default_value = "f32")]
    pub dtype: Dtype,
}

/// Runs the benchmark and writes its results and plots.
pub fn run(args: &BatchArgs) -> Result<()> {
    ensure!(args.samples >= 1, "--samples must be at least 1");
    ensure!(args.rounds >= 1, "--rounds must be at least 1");
    let sizes = args.batch_sizes.iter().chain([&args.scope_batch]);
    for &size in sizes {
        ensure!(
            (1..=dit_pipeline::MAX_BATCH).contains(&size),
            "batch size {size} must be between 1 and {}",
            dit_pipeline::MAX_BATCH
        );
    }
    let out = workspace_root().join(&args.out_dir);
    std::fs::create_dir_all(&out).with_context(|| format!("cannot create {}", out.display()))?;
    let mut results = Vec::new();
    for model in args.model.models() {
        let result = dispatch(args.backend, args.dtype, Job { model, args })?;
        result.write(&out)?;
        result.plot(&out.join(format!("{}-batch.png", model.name())))?;
        results.push(result);
    }
    results::write_summary(&out)?;
    for result in &results {
        println!("{}", result.markdown());
    }
    Ok(())
}

/// The benchmark of one model, on the backend the user picked.
struct Job<'a> {
    model: Model,
    args: &'a BatchArgs,
}

/// What one run of all the samples gave: each sample's frames and computed fraction, and the
/// run's wall time in seconds.
struct Run {
    frames: Vec<Vec<Rgb8Image>>,
    computed: Vec<f64>,
    seconds: f64,
}

impl BackendJob for Job<'_> {
    type Output = BatchResult;

    fn run<B: Backend>(self, device: B::Device) -> Result<BatchResult> {
        let (model, args) = (self.model, self.args);
        let mini = model.mini();
        let folder = mini.folder_or(None)?;
        let preset = Preset::for_folder(&folder, &mini)?.with(Given {
            steps: args.steps,
            ..Given::default()
        });
        eprintln!("bench: {} from {}", model.title(), folder.display());
        let generator = Generator::<B>::load(model, (&folder, None), preset, &device)?;
        let shape = generator.noise_shape()?;
        let prompts = model.prompts();
        let noise = |samples: Range<usize>| gaussian_noise_rows(&shape, samples.map(|i| i as u64));
        let thresholds = match args.thresholds.as_slice() {
            [] => model.dicache_thresholds(),
            given => given.to_vec(),
        };
        let preset_policy = model.dicache_preset();
        let runs = 2 * (1 + args.batch_sizes.len()) * args.rounds + 2 * thresholds.len();
        let bar = progress_bar(runs * args.samples, "samples");
        // All the samples in batches of `size`.
        let run = |size: usize, cache: (CachePolicy, CacheScope)| -> Result<Run> {
            let mut all = Run {
                frames: Vec::new(),
                computed: Vec::new(),
                seconds: 0.0,
            };
            for start in (0..args.samples).step_by(size) {
                let batch = start..(start + size).min(args.samples);
                let batch_prompts: Vec<&str> =
                    batch.clone().map(|i| prompts[i % prompts.len()]).collect();
                let (samples, time) =
                    generator.generate_batch(&batch_prompts, &noise(batch), cache.clone())?;
                all.seconds += time.as_secs_f64();
                for sample in samples {
                    let s = sample.trace.summary();
                    all.computed.push(s.computed as f64 / s.calls as f64);
                    all.frames.push(sample.frames);
                }
                bar.inc(size.min(args.samples - start) as u64);
            }
            Ok(all)
        };

        // One untimed generation first: a backend's first run pays one-off costs.
        generator.generate_batch(
            &[prompts[0]],
            &noise(0..1),
            (CachePolicy::None, CacheScope::Sample),
        )?;

        // Every policy and batch size once a round, so all see the same load; the first
        // round's outputs are kept (the later ones are the same).
        let configs: Vec<(CachePolicy, usize)> = [
            CachePolicy::None,
            CachePolicy::DiCache(preset_policy.clone()),
        ]
        .into_iter()
        .flat_map(|policy| {
            let sizes = [1].into_iter().chain(args.batch_sizes.iter().copied());
            sizes.map(move |size| (policy.clone(), size))
        })
        .collect();
        let mut first: Vec<Run> = Vec::new();
        let mut seconds = vec![Vec::new(); configs.len()];
        for round in 0..args.rounds {
            for ((policy, size), times) in configs.iter().zip(&mut seconds) {
                let what = format!("{} {} batch {size}", model.name(), policy.name());
                bar.set_message(format!("{what}, round {}", round + 1));
                let r = run(*size, (policy.clone(), CacheScope::Sample))?;
                times.push(r.seconds);
                if round == 0 {
                    first.push(r);
                }
            }
        }
        let reference = first[0].frames.clone();
        let throughput = configs
            .iter()
            .zip(&first)
            .zip(seconds)
            .map(|(((policy, size), r), times)| {
                ThroughputRow::new(policy, *size, (r, times), &reference)
            })
            .collect::<Result<Vec<_>>>()?;
        let mut scopes = Vec::new();
        for &threshold in &thresholds {
            let policy = CachePolicy::DiCache(DiCacheConfig {
                threshold,
                ..preset_policy.clone()
            });
            for scope in [CacheScope::Sample, CacheScope::Batch] {
                bar.set_message(format!("{} dicache {threshold} {scope:?}", model.name()));
                let r = run(args.scope_batch, (policy.clone(), scope))?;
                scopes.push(ScopeRow::new(threshold, scope, &r, &reference)?);
            }
        }
        bar.finish_and_clear();
        let dtype = format!("{:?}", args.dtype).to_lowercase();
        let setup = Setup::new(model, &folder, (B::name(&device), dtype), preset)?;
        let sizes = (args.samples, args.scope_batch);
        Ok(BatchResult::new(setup, sizes, throughput, scopes))
    }
}
