//! `cargo xtask bench serve`: the server under load against the same requests one by one.
//!
//! FLUX-mini answers `--requests` requests (prompt `i % 16`, seed `i`, the model's DiCache
//! preset) sent by `--clients` concurrent clients over loopback to `POST
//! /v1/images/generations`, the server batching them step by step (up to `--max-batch`
//! samples); then the same requests run one by one through the pipeline, as the command line
//! runs them (without its process start and model loading), and (run from `xtask`) with the
//! command line itself, a process per request. It records each request's latency
//! (p50, p95) and the samples per second of both, and writes `<out-dir>/serve.json` and
//! `<out-dir>/SERVE.md`.

use std::{
    marker::PhantomData,
    net::TcpListener,
    path::PathBuf,
    sync::Mutex,
    time::{Duration, Instant},
};

use anyhow::{Result, ensure};
use burn::tensor::{Tensor, backend::Backend};
use dicache_core::{CachePolicy, DiCacheConfig};
use dicache_serve::{Limits, Model};
use dit_layers::gaussian_noise_rows;
use dit_pipeline::{Pipeline, PipelineFolder, Prompt, Request, Settings};
use models_flux::FluxPipeline;
use serde::Serialize;

use crate::{
    backend::{BackendJob, BackendKind, Dtype, dispatch},
    cache::Model as MiniKind,
    mini,
    report::Machine,
};

/// Arguments of `cargo xtask bench serve`.
#[derive(clap::Args, Debug, Clone)]
pub struct ServeArgs {
    /// Requests in all.
    #[arg(long, default_value_t = 64)]
    pub requests: usize,
    /// Concurrent clients, each sending its share of the requests one after another.
    #[arg(long, default_value_t = 8)]
    pub clients: usize,
    /// The server's most samples in flight.
    #[arg(long, default_value_t = 8)]
    pub max_batch: usize,
    /// Denoising steps [default: FLUX-mini's].
    #[arg(long)]
    pub steps: Option<usize>,
    /// Folder of the results (relative to the workspace root).
    #[arg(long, default_value = "bench/serve")]
    pub out_dir: PathBuf,
    /// Backend to run on (each needs its cargo feature).
    #[arg(long, value_enum, default_value = "cpu")]
    pub backend: BackendKind,
}

/// Latencies and throughput of one way of answering the requests.
#[derive(Debug, Clone, Serialize)]
pub struct Load {
    /// Requests answered.
    pub requests: usize,
    /// Wall time of all of them, seconds.
    pub seconds: f64,
    /// Samples per second.
    pub samples_per_second: f64,
    /// Median latency of a request (sent to answered), seconds.
    pub p50: f64,
    /// 95th percentile latency, seconds.
    pub p95: f64,
}

impl Load {
    fn of(latencies: &[Duration], wall: Duration) -> Self {
        let mut l: Vec<f64> = latencies.iter().map(Duration::as_secs_f64).collect();
        l.sort_by(f64::total_cmp);
        let at = |q: f64| l[((l.len() as f64 * q).ceil() as usize).clamp(1, l.len()) - 1];
        Self {
            requests: l.len(),
            seconds: wall.as_secs_f64(),
            samples_per_second: l.len() as f64 / wall.as_secs_f64(),
            p50: at(0.5),
            p95: at(0.95),
        }
    }
}

/// What the benchmark measured.
#[derive(Debug, Clone, Serialize)]
pub struct ServeResult {
    /// The machine it ran on.
    pub machine: Machine,
    /// Requests, clients, batch, steps, size.
    pub requests: usize,
    /// Concurrent clients.
    pub clients: usize,
    /// The server's most samples in flight.
    pub max_batch: usize,
    /// Denoising steps.
    pub steps: usize,
    /// `WIDTHxHEIGHT`.
    pub size: String,
    /// The server under load.
    pub served: Load,
    /// The same requests one by one through the loaded pipeline.
    pub one_by_one: Load,
    /// The same requests one by one with the command line, a process each (`cargo xtask run
    /// flux`, loading the model every time); measured when the benchmark runs from `xtask`.
    pub cli: Option<Load>,
}

/// Runs the benchmark and writes its results.
pub fn run(args: &ServeArgs) -> Result<()> {
    ensure!(
        args.requests >= 1 && args.clients >= 1,
        "--requests and --clients must be at least 1"
    );
    let result = dispatch(args.backend, Dtype::F32, args.clone())?;
    crate::report::write_results(&args.out_dir, "serve", &result, &report(&result))
}

impl BackendJob for ServeArgs {
    type Output = ServeResult;

    fn run<B: Backend>(self, device: B::Device) -> Result<ServeResult> {
        let folder = mini::FLUX.dir();
        let mut settings = PipelineFolder::open(&folder)?
            .defaults(<FluxPipeline<B> as Pipeline<B, 4>>::DEFAULTS)?;
        settings.steps = self.steps.unwrap_or(settings.steps);
        let prompts = MiniKind::Flux.prompts();
        let prompt = |i: usize| prompts[i % prompts.len()];
        let served = load::<B>(&self, settings, &device, &prompt)?;
        let pipe = FluxPipeline::<B>::load(&folder, None, &device)?;
        let shape = pipe.latent_shape(settings.width, settings.height, 1)?;
        let mut latencies = Vec::new();
        let start = Instant::now();
        for i in 0..self.requests {
            let begun = Instant::now();
            let request = Request {
                prompts: vec![Prompt::new(prompt(i))],
                settings,
                noise: Tensor::from_data(gaussian_noise_rows(&shape, [i as u64]), &device),
                extra: (),
            };
            let policy = CachePolicy::DiCache(DiCacheConfig::flux());
            let out = pipe.generate(&request, policy, &mut |_, _| {})?;
            vae::to_rgb8(out.decoded)?;
            latencies.push(begun.elapsed());
        }
        let one_by_one = Load::of(&latencies, start.elapsed());
        let cli = cli_load(self.requests, settings, &prompt)?;
        Ok(ServeResult {
            machine: Machine::current()?,
            requests: self.requests,
            clients: self.clients,
            max_batch: self.max_batch,
            steps: settings.steps,
            size: format!("{}x{}", settings.width, settings.height),
            served,
            one_by_one,
            cli,
        })
    }
}

/// FLUX-mini as the server serves it: `defaults` (or else its folder's) for what requests
/// leave out, its DiCache preset, at most `max_batch` samples in flight, memory unchecked.
pub fn flux_mini<B: Backend>(
    defaults: Option<Settings>,
    max_batch: usize,
    device: &B::Device,
) -> Result<Model<B, FluxPipeline<B>, 4>> {
    let folder = mini::FLUX.dir();
    let defaults = match defaults {
        Some(settings) => settings,
        None => PipelineFolder::open(&folder)?
            .defaults(<FluxPipeline<B> as Pipeline<B, 4>>::DEFAULTS)?,
    };
    Ok(Model {
        pipeline: FluxPipeline::<B>::load(&folder, None, device)?,
        name: folder.display().to_string(),
        defaults,
        extra: (),
        preset: DiCacheConfig::flux(),
        fps: 8,
        memory: None,
        max_batch,
        device: device.clone(),
        backend: PhantomData,
    })
}

/// Serves FLUX-mini with `settings` as its defaults and sends it `args.requests` requests
/// (prompt `prompt(i)`, seed `i`) from `args.clients` concurrent clients: their latencies and
/// the wall time. Any request that fails is an error.
pub fn load<B: Backend>(
    args: &ServeArgs,
    settings: Settings,
    device: &B::Device,
    prompt: &(dyn Fn(usize) -> &'static str + Sync),
) -> Result<Load> {
    let model = flux_mini::<B>(Some(settings), args.max_batch, device)?;
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let url = format!("http://{}/v1/images/generations", listener.local_addr()?);
    let limits = Limits {
        max_queue: args.requests,
        ..Limits::default()
    };
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = std::thread::spawn(move || {
        dicache_serve::serve(model, listener, limits, async {
            let _ = stopped.await;
        })
    });
    let latencies = Mutex::new(Vec::new());
    let failures = Mutex::new(Vec::new());
    let start = Instant::now();
    std::thread::scope(|scope| {
        for client in 0..args.clients {
            let (url, latencies, failures) = (&url, &latencies, &failures);
            scope.spawn(move || {
                let http = reqwest::blocking::Client::builder()
                    .timeout(None)
                    .build()
                    .expect("an HTTP client");
                for i in (client..args.requests).step_by(args.clients) {
                    let body = serde_json::json!({ "prompt": prompt(i), "seed": i });
                    let begun = Instant::now();
                    match http.post(url).json(&body).send() {
                        Ok(r) if r.status().is_success() => {
                            latencies.lock().unwrap().push(begun.elapsed());
                        }
                        Ok(r) => failures.lock().unwrap().push(format!("{}", r.status())),
                        Err(e) => failures.lock().unwrap().push(e.to_string()),
                    }
                }
            });
        }
    });
    let wall = start.elapsed();
    let _ = stop.send(());
    server
        .join()
        .map_err(|_| anyhow::anyhow!("the server thread panicked"))??;
    let failures = failures.into_inner().unwrap();
    ensure!(failures.is_empty(), "requests failed: {failures:?}");
    Ok(Load::of(&latencies.into_inner().unwrap(), wall))
}

/// The requests run one by one with the command line (this executable's `run flux`, a process
/// each, CPU): their latencies and wall time; `None` when this is not the `xtask` binary.
fn cli_load(
    requests: usize,
    settings: Settings,
    prompt: &dyn Fn(usize) -> &'static str,
) -> Result<Option<Load>> {
    let exe = std::env::current_exe()?;
    if exe.file_stem().and_then(|s| s.to_str()) != Some("xtask") {
        return Ok(None);
    }
    let out = tempfile::tempdir()?;
    let mut latencies = Vec::new();
    let start = Instant::now();
    for i in 0..requests {
        let begun = Instant::now();
        let status = std::process::Command::new(&exe)
            .args([
                "run",
                "flux",
                "--prompt",
                prompt(i),
                "--seed",
                &i.to_string(),
            ])
            .args(["--steps", &settings.steps.to_string()])
            .args(["--width", &settings.width.to_string()])
            .args(["--height", &settings.height.to_string()])
            .arg("--out")
            .arg(out.path().join(format!("{i}.png")))
            .stderr(std::process::Stdio::null())
            .status()?;
        ensure!(status.success(), "`xtask run flux` failed on request {i}");
        latencies.push(begun.elapsed());
    }
    Ok(Some(Load::of(&latencies, start.elapsed())))
}

/// The results as a Markdown section.
fn report(r: &ServeResult) -> String {
    let row = |name: &str, l: &Load| {
        format!(
            "| {name} | {} | {:.1} | {:.3} | {:.2} | {:.2} |\n",
            l.requests, l.seconds, l.samples_per_second, l.p50, l.p95
        )
    };
    format!(
        "# Serving under load\n\n`cargo xtask bench serve` on {}: FLUX-mini, {} requests of one sample \
         ({}, {} steps, DiCache preset) from {} concurrent clients over loopback, the server \
         batching up to {} samples step by step; against the same requests one by one, through \
         the loaded pipeline and with the command line (a process each, loading the model).\n\n\
         | | requests | seconds | samples/s | p50 latency (s) | p95 latency (s) |\n\
         |---|---|---|---|---|---|\n{}{}{}\n\
         Served throughput: **{:.2}x** one by one through the loaded pipeline{}.\n",
        r.machine.cpu,
        r.requests,
        r.size,
        r.steps,
        r.clients,
        r.max_batch,
        row("served", &r.served),
        row("one by one (loaded pipeline)", &r.one_by_one),
        r.cli.as_ref().map_or(String::new(), |l| row(
            "one by one (`xtask run`, a process each)",
            l
        )),
        r.served.samples_per_second / r.one_by_one.samples_per_second,
        r.cli.as_ref().map_or(String::new(), |l| format!(
            ", **{:.2}x** one by one with the command line",
            r.served.samples_per_second / l.samples_per_second
        )),
    )
}
