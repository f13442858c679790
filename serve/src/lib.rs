//! `cargo xtask serve`: one loaded pipeline behind an HTTP API and a web page.
//!
//! - `POST /v1/images/generations`: OpenAI's image generation request (`prompt`, `n`, `size`,
//!   `response_format`) plus `steps`, `guidance`, `seed`, `negative_prompt`, `frames`, `cache`
//!   and `threshold`; answers with the files when they are done.
//! - `POST /v1/jobs` (the same body): answers at once with the job's id; `GET /v1/jobs/{id}`
//!   polls it, `GET /v1/jobs/{id}/events` streams its progress (server-sent events),
//!   `DELETE /v1/jobs/{id}` cancels it, `GET /v1/jobs/{id}/result/{i}` fetches a file.
//! - `GET /health`, `GET /metrics` (Prometheus text), `GET /v1/config` (the model and its
//!   defaults), and `GET /`: a page to generate from, showing the result and its cache trace.
//!
//! Requests that arrive while others run join the running batch at the next step: every
//! sample keeps its own timestep, sampler and cache state, so samples at different steps share
//! one transformer call and each gets exactly what it would get alone
//! ([`dit_pipeline::Denoising`]). The queue is bounded (429 when full), every request is
//! checked as the command line checks its flags (400 naming the field), a client that goes
//! away cancels its job, and a failure fails only the jobs it touched.

pub mod api;
pub mod jobs;
pub mod media;
mod routes;
mod worker;

use std::{
    future::Future,
    marker::PhantomData,
    net::TcpListener,
    sync::{Arc, mpsc},
};

use burn::tensor::backend::Backend;
use dicache_core::DiCacheConfig;
use dit_pipeline::{Pipeline, Settings};

pub use api::{ApiError, GenerationRequest, JobSpec};
pub use media::{Encode, Encoder, Media};

/// The loaded pipeline and what the server needs to know of it.
pub struct Model<B: Backend, P: Pipeline<B, N>, const N: usize> {
    /// The pipeline.
    pub pipeline: P,
    /// Its name in `/health` and on the page (the folder it was loaded from).
    pub name: String,
    /// The settings a request leaves out.
    pub defaults: Settings,
    /// Its model-specific settings, for every request.
    pub extra: P::Extra,
    /// Its DiCache preset, the default cache policy.
    pub preset: DiCacheConfig,
    /// Frames per second of its videos.
    pub fps: u32,
    /// The memory a request may use (checked as the command line checks it); `None` where
    /// unknown (a GPU).
    pub memory: Option<u64>,
    /// The most samples in the denoising loops at once.
    pub max_batch: usize,
    /// The device it runs on.
    pub device: B::Device,
    /// The backend.
    pub backend: PhantomData<B>,
}

impl<B: Backend, P: Pipeline<B, N>, const N: usize> Model<B, P, N> {
    /// Whether it makes videos (its VAE has frames).
    pub fn video(&self) -> bool {
        self.pipeline.geometry().temporal.is_some()
    }
}

/// How the server takes requests.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// The most samples waiting for room in the batch; more is a 429.
    pub max_queue: usize,
    /// The largest request body in bytes.
    pub max_body: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_queue: 64,
            max_body: 64 * 1024,
        }
    }
}

/// Why the server stopped or could not start.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// Binding or serving failed.
    #[error("serving: {0}")]
    Io(#[from] std::io::Error),
    /// The model's thread panicked outside any job.
    #[error("the model's thread stopped: {0}")]
    Worker(String),
}

/// Serves `model` on `listener` until `shutdown` completes (e.g. [`shutdown_signal`]): then
/// every job still queued or running is cancelled, connections are closed, and this returns.
pub fn serve<B, P, const N: usize>(
    model: Model<B, P, N>,
    listener: TcpListener,
    limits: Limits,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServeError>
where
    B: Backend,
    P: Pipeline<B, N> + Send + Sync + 'static,
    P::Extra: Send + Sync,
    P::Job: Send,
    Encoder: Encode<N>,
{
    let model = Arc::new(model);
    let jobs = Arc::new(jobs::Jobs::default());
    let (commands, receiver) = mpsc::channel();
    let worker = {
        let (model, jobs) = (model.clone(), jobs.clone());
        std::thread::Builder::new()
            .name("dicache-model".into())
            .spawn(move || worker::run(model, jobs, receiver))?
    };
    let state = routes::AppState {
        checker: model.clone(),
        jobs,
        commands: commands.clone(),
        limits,
    };
    listener.set_nonblocking(true)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let served = runtime.block_on(async move {
        let listener = tokio::net::TcpListener::from_std(listener)?;
        let stop = async move {
            shutdown.await;
            // Ends the jobs, and with them the requests and event streams waiting on them.
            let _ = commands.send(worker::Command::Shutdown);
        };
        axum::serve(listener, routes::router(state))
            .with_graceful_shutdown(stop)
            .await
    });
    runtime.shutdown_timeout(std::time::Duration::from_secs(5));
    let joined = worker.join();
    served?;
    joined.map_err(|p| ServeError::Worker(format!("{p:?}")))
}

/// Completes on SIGINT (Ctrl-C) or SIGTERM.
pub async fn shutdown_signal() {
    let interrupt = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = interrupt => {}
        () = terminate => {}
    }
}

/// What the HTTP side asks of the model without touching the worker: the checks of a request
/// and the model's description.
pub(crate) trait Checker: Send + Sync {
    /// Checks a request as the command line checks its flags.
    fn check(&self, request: GenerationRequest) -> Result<JobSpec, ApiError>;
    /// The model and its defaults, as `/v1/config` tells them.
    fn config(&self) -> serde_json::Value;
}

impl<B, P, const N: usize> Checker for Model<B, P, N>
where
    B: Backend,
    P: Pipeline<B, N> + Send + Sync,
    P::Extra: Send + Sync,
{
    fn check(&self, request: GenerationRequest) -> Result<JobSpec, ApiError> {
        request.check(self)
    }

    fn config(&self) -> serde_json::Value {
        let d = &self.defaults;
        serde_json::json!({
            "model": P::NAME,
            "name": self.name,
            "video": self.video(),
            "negative_prompt": P::NEGATIVE_PROMPT,
            "max_batch": self.max_batch,
            "defaults": {
                "size": format!("{}x{}", d.width, d.height),
                "frames": d.frames,
                "steps": d.steps,
                "guidance": d.guidance,
                "cache": "dicache",
                "threshold": self.preset.threshold,
            },
        })
    }
}
