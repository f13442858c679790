//! `cargo xtask bench pipeline`: whole generations of the mini models against diffusers'
//! `FluxPipeline` and `WanPipeline` on the same machine, from the same noise, at the mini
//! models' own settings: the prompt encoding, the denoising loop and the VAE decoding timed
//! apart, uncached and with DiCache (the model's preset; diffusers with the DiCache reference of
//! `fixtures/`). The PyTorch side is `fixtures/bench_pipeline.py`. Writes
//! `<out-dir>/pipeline.json` and `<out-dir>/PIPELINE.md`.

use std::{fmt::Write as _, path::PathBuf, time::Instant};

use anyhow::{Context, Result};
use burn::tensor::{Tensor, backend::Backend};
use dicache_core::{CachePolicy, CacheSettings};
use dit_layers::gaussian_noise;
use dit_pipeline::{Denoise, Pipeline, Prompt, Request, decode_each};
use models_flux::FluxPipeline;
use models_wan::WanPipeline;
use serde::{Deserialize, Serialize};

use crate::{
    Case, Samples,
    backend::{BackendJob, BackendKind, Dtype, dispatch},
    cache::Model,
    mini::Preset,
    torch, workspace_root,
};

/// The phases of a generation, as the report names them.
const PHASES: [&str; 3] = ["encode", "denoise", "decode"];

/// Arguments of `cargo xtask bench pipeline`.
#[derive(clap::Args, Debug)]
pub struct PipelineArgs {
    /// Timed generations of each case (the median of each phase is reported).
    #[arg(long, default_value_t = 3)]
    pub repeat: usize,
    /// Untimed generations first.
    #[arg(long, default_value_t = 1)]
    pub warmup: usize,
    /// Skip the PyTorch side even when `.venv` exists.
    #[arg(long)]
    pub no_torch: bool,
    /// Folder of the results (relative to the workspace root).
    #[arg(long, default_value = "bench/pipeline")]
    pub out_dir: PathBuf,
    /// Backend of the Burn side (each needs its cargo feature).
    #[arg(long, value_enum, default_value = "cpu")]
    pub backend: BackendKind,
    /// Float dtype of both sides.
    #[arg(long, value_enum, default_value = "f32")]
    pub dtype: Dtype,
}

/// What both sides need to run one case.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Params {
    /// `flux-mini` or `wan-mini`.
    model: String,
    /// The pipeline folder.
    folder: PathBuf,
    /// The mini model's settings.
    settings: Preset,
    /// The prompt.
    prompt: String,
    /// `none` or `dicache`.
    cache: String,
    /// DiCache's threshold (the model's preset) with `dicache`.
    threshold: Option<f64>,
    /// The initial noise in the unpacked latent layout `[1, channels, (frames,) h, w]`.
    noise_shape: Vec<usize>,
    /// A file of its values, little-endian f32 (too many for a command line).
    noise_file: PathBuf,
}

/// One case's medians per phase, milliseconds: Burn's and PyTorch's.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CaseResult {
    /// `flux-mini, dicache`.
    pub name: String,
    /// Per phase (encode, denoise, decode): Burn's median.
    pub burn_ms: [f64; 3],
    /// Per phase: PyTorch's median, when it ran.
    pub torch_ms: Option<[f64; 3]>,
}

/// Everything one run measured.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PipelineResults {
    /// The backend and dtype.
    pub setup: String,
    /// The PyTorch version and threads, when it ran.
    pub torch: Option<String>,
    /// The cases.
    pub cases: Vec<CaseResult>,
}

/// Runs the benchmark and writes its files.
pub fn run(args: &PipelineArgs) -> Result<()> {
    anyhow::ensure!(args.repeat > 0, "--repeat must be at least 1");
    let results = dispatch(args.backend, args.dtype, args)?;
    crate::report::write_results(&args.out_dir, "pipeline", &results, &markdown(&results))
}

impl BackendJob for &PipelineArgs {
    type Output = PipelineResults;

    fn run<B: Backend>(self, device: B::Device) -> Result<PipelineResults> {
        let noise_dir = tempfile::tempdir()?;
        let mut cases = Vec::new();
        let mut burn = Vec::new();
        for cache in ["none", "dicache"] {
            let flux = CaseSpec {
                model: Model::Flux,
                cache,
                noise_dir: noise_dir.path(),
            };
            let wan = CaseSpec {
                model: Model::Wan,
                ..flux
            };
            for (case, ms) in [
                measure::<B, FluxPipeline<B>, 4>(flux, self, &device)?,
                measure::<B, WanPipeline<B>, 5>(wan, self, &device)?,
            ] {
                cases.push(case);
                burn.push(ms);
            }
        }
        let python = workspace_root().join(".venv/bin/python");
        let timings = match !self.no_torch && python.exists() {
            true => {
                let script = workspace_root().join("fixtures/bench_pipeline.py");
                let settings = torch::Settings {
                    warmup: self.warmup,
                    repeat: self.repeat,
                    dtype: self.dtype,
                    device: torch::device_for(self.backend),
                };
                Some(torch::run(&python, &script, &cases, &settings)?)
            }
            false => None,
        };
        let results = cases
            .iter()
            .zip(burn)
            .map(|(case, burn_ms)| {
                let torch_ms = timings
                    .as_ref()
                    .map(|t| PHASES.map(|phase| t.cases[&format!("{} {phase}", case.name)].wall()));
                CaseResult {
                    name: case.name.clone(),
                    burn_ms,
                    torch_ms,
                }
            })
            .collect();
        Ok(PipelineResults {
            setup: format!("{:?} {:?}", self.backend, self.dtype),
            torch: timings.map(|t| format!("torch {}, {} threads", t.torch, t.threads)),
            cases: results,
        })
    }
}

/// One case: a mini model, the cache (`none` or `dicache`) and the folder for its noise file.
#[derive(Clone, Copy)]
struct CaseSpec<'a> {
    model: Model,
    cache: &'a str,
    noise_dir: &'a std::path::Path,
}

/// Times the phases of `P`'s generations of the case's mini model (DiCache: the model's
/// preset): the case the PyTorch side repeats, and the Burn side's medians.
fn measure<B: Backend, P: Pipeline<B, N>, const N: usize>(
    case: CaseSpec<'_>,
    args: &PipelineArgs,
    device: &B::Device,
) -> Result<(Case, [f64; 3])> {
    let CaseSpec {
        model,
        cache,
        noise_dir,
    } = case;
    let (mini, preset) = (model.mini(), model.dicache_preset());
    let name = mini.folder;
    let folder = mini.folder_or(None)?;
    let preset_settings = Preset::of_folder(&folder)?;
    let settings = preset_settings.settings();
    let pipe =
        P::load(&folder, None, device).with_context(|| format!("loading {}", folder.display()))?;
    let noise_shape = pipe.latent_shape(settings.width, settings.height, settings.frames)?;
    let noise = gaussian_noise(&noise_shape, 0);
    let policy = match cache {
        "none" => CachePolicy::None,
        _ => CachePolicy::DiCache(preset.clone()),
    };
    let prompt = "a large red circle moving right on a blue background".to_string();
    let request = Request {
        prompts: vec![Prompt::new(prompt.clone())],
        settings,
        noise: Tensor::<B, N>::from_data(noise.clone(), device),
        extra: P::Extra::default(),
    };
    pipe.check_request(&request)?;
    let cache_settings = CacheSettings::from(policy);
    eprintln!("bench: burn {name} {cache}");
    let mut runs: Vec<[f64; 3]> = Vec::new();
    for run in 0..args.warmup + args.repeat {
        let times = phases(&pipe, &request, &cache_settings, device)?;
        if run >= args.warmup {
            runs.push(times);
        }
    }
    let medians = std::array::from_fn(|p| {
        Samples {
            wall_ms: runs.iter().map(|r| r[p]).collect(),
            cpu_ms: Vec::new(),
        }
        .wall()
    });
    let noise_file = noise_dir.join(format!("{name}-{cache}.f32"));
    let bytes: Vec<u8> = noise
        .to_vec::<f32>()
        .expect("f32 noise")
        .iter()
        .flat_map(|v| v.to_le_bytes())
        .collect();
    std::fs::write(&noise_file, bytes)?;
    let params = Params {
        model: name.to_string(),
        folder,
        settings: preset_settings,
        prompt,
        cache: cache.to_string(),
        threshold: (cache == "dicache").then_some(preset.threshold),
        noise_shape: noise_shape.to_vec(),
        noise_file,
    };
    let case = Case {
        name: format!("{name}, {cache}"),
        params: serde_json::to_value(params)?,
        flops: None,
    };
    Ok((case, medians))
}

/// One generation of `request`, its phases timed apart (milliseconds, each ended by a sync):
/// encoding the prompt into a job, the denoising loop, decoding.
fn phases<B: Backend, P: Pipeline<B, N>, const N: usize>(
    pipe: &P,
    request: &Request<B, N, P::Extra>,
    cache: &CacheSettings,
    device: &B::Device,
) -> Result<[f64; 3]> {
    let sync = || B::sync(device).map_err(|e| anyhow::anyhow!("backend sync failed: {e:?}"));
    let ms = |start: Instant| start.elapsed().as_secs_f64() * 1e3;
    let start = Instant::now();
    let job = pipe.prepare(request)?;
    sync()?;
    let encode = ms(start);
    let start = Instant::now();
    let mut denoiser = pipe.denoiser(cache)?;
    denoiser.admit(job)?;
    let finished = loop {
        if let Some((_, result)) = denoiser.step()?.into_iter().next() {
            break result?;
        }
    };
    sync()?;
    let denoise = ms(start);
    let start = Instant::now();
    let decoded = decode_each(finished.latents, |l| pipe.decode(l, &request.extra))?;
    sync()?;
    drop(decoded);
    Ok([encode, denoise, ms(start)])
}

/// The results as the README's table.
pub fn markdown(r: &PipelineResults) -> String {
    let mut md = String::new();
    let torch = r.torch.as_deref().unwrap_or("no PyTorch side");
    let _ = writeln!(
        md,
        "# Whole generations of the mini models ({}; {torch})\n",
        r.setup
    );
    let _ = writeln!(
        md,
        "Written by `cargo xtask bench pipeline`: median milliseconds per phase, Burn / PyTorch.\n"
    );
    let _ = writeln!(
        md,
        "| case | encode | denoise | decode | total |\n|---|---|---|---|---|"
    );
    for c in &r.cases {
        let cell = |p: usize| match c.torch_ms {
            Some(t) => format!(
                "{:.0} / {:.0} ms ({:.2}x)",
                c.burn_ms[p],
                t[p],
                c.burn_ms[p] / t[p]
            ),
            None => format!("{:.0} ms", c.burn_ms[p]),
        };
        let burn: f64 = c.burn_ms.iter().sum();
        let total = match c.torch_ms {
            Some(t) => {
                let torch: f64 = t.iter().sum();
                format!("{burn:.0} / {torch:.0} ms ({:.2}x)", burn / torch)
            }
            None => format!("{burn:.0} ms"),
        };
        let _ = writeln!(
            md,
            "| {} | {} | {} | {} | {total} |",
            c.name,
            cell(0),
            cell(1),
            cell(2)
        );
    }
    md
}
