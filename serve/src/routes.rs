//! The HTTP routes: axum handlers over the job table and the worker's command channel.

use std::{
    convert::Infallible,
    sync::{Arc, atomic::Ordering, mpsc::Sender},
    time::{SystemTime, UNIX_EPOCH},
};

use axum::{
    Json, Router,
    body::Bytes,
    extract::{DefaultBodyLimit, Path, State},
    http::{StatusCode, header},
    response::{
        Html, IntoResponse, Response,
        sse::{Event, KeepAlive, Sse},
    },
    routing::{get, post},
};
use base64::Engine;
use futures_util::stream::{self, Stream};
use tokio::sync::watch;

use crate::{
    Checker, Limits,
    api::{
        ApiError, GeneratedSample, GenerationRequest, GenerationResponse, JobSpec, JobState,
        JobStatus, ResponseFormat,
    },
    jobs::Jobs,
    worker::Command,
};

/// The page at `/`: no build step, nothing fetched from elsewhere.
const PAGE: &str = include_str!("page.html");

/// What every handler shares.
#[derive(Clone)]
pub struct AppState {
    pub checker: Arc<dyn Checker>,
    pub jobs: Arc<Jobs>,
    pub commands: Sender<Command>,
    pub limits: Limits,
}

/// The server's routes.
pub fn router(state: AppState) -> Router {
    let max_body = state.limits.max_body;
    Router::new()
        .route("/", get(|| async { Html(PAGE) }))
        .route("/health", get(health))
        .route("/metrics", get(metrics))
        .route("/v1/config", get(config))
        .route("/v1/images/generations", post(generate))
        .route("/v1/jobs", post(create_job))
        .route("/v1/jobs/{id}", get(job_status).delete(cancel_job))
        .route("/v1/jobs/{id}/events", get(job_events))
        .route("/v1/jobs/{id}/result/{index}", get(job_file))
        .layer(DefaultBodyLimit::max(max_body))
        .with_state(state)
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        (status, Json(serde_json::json!({ "error": self }))).into_response()
    }
}

async fn health(State(state): State<AppState>) -> Json<serde_json::Value> {
    let config = state.checker.config();
    Json(serde_json::json!({ "status": "ok", "model": config["model"], "name": config["name"] }))
}

async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        state.jobs.metrics.prometheus(),
    )
}

async fn config(State(state): State<AppState>) -> Json<serde_json::Value> {
    Json(state.checker.config())
}

/// Parses and checks a request body; a 400 naming the field otherwise.
fn check_body(state: &AppState, body: &[u8]) -> Result<JobSpec, ApiError> {
    let reject = |e: ApiError| {
        state.jobs.metrics.rejected.fetch_add(1, Ordering::Relaxed);
        e
    };
    let mut de = serde_json::Deserializer::from_slice(body);
    let request: GenerationRequest = serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let field = e.path().to_string();
        let message = format!("invalid request body: {}", e.inner());
        reject(match field.as_str() {
            "." | "" => ApiError::status(400, message),
            _ => ApiError::field(&field, message),
        })
    })?;
    state.checker.check(request).map_err(reject)
}

/// Queues a checked job: its id; a 429 when the queue is full.
fn enqueue(state: &AppState, spec: JobSpec) -> Result<u64, ApiError> {
    let metrics = &state.jobs.metrics;
    let samples = spec.prompts.len();
    let queued = metrics.queued.fetch_add(samples, Ordering::Relaxed);
    if queued + samples > state.limits.max_queue {
        metrics.queued.fetch_sub(samples, Ordering::Relaxed);
        metrics.rejected.fetch_add(1, Ordering::Relaxed);
        return Err(ApiError::status(
            429,
            format!(
                "the queue is full ({queued} samples waiting, at most {}); try again later",
                state.limits.max_queue
            ),
        ));
    }
    let id = state
        .jobs
        .create(samples, spec.settings.steps, spec.cache.policy.threshold());
    if state.commands.send(Command::Submit(id, spec)).is_err() {
        metrics.queued.fetch_sub(samples, Ordering::Relaxed);
        return Err(ApiError::status(503, "the server is stopping"));
    }
    metrics.accepted.fetch_add(1, Ordering::Relaxed);
    Ok(id)
}

/// Cancels job `id` when dropped while armed: a client that went away.
struct CancelOnDrop {
    id: u64,
    commands: Sender<Command>,
    armed: bool,
}

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        if self.armed {
            let _ = self.commands.send(Command::Cancel(self.id));
        }
    }
}

/// `POST /v1/images/generations`: runs the request and answers with its files.
async fn generate(State(state): State<AppState>, body: Bytes) -> Result<Response, ApiError> {
    let spec = check_body(&state, &body)?;
    let format = spec.format;
    let id = enqueue(&state, spec)?;
    let mut guard = CancelOnDrop {
        id,
        commands: state.commands.clone(),
        armed: true,
    };
    let mut status = state
        .jobs
        .watch(id)
        .ok_or_else(|| ApiError::status(500, "the job vanished"))?;
    let ended = status
        .wait_for(|s| s.state.ended())
        .await
        .map_err(|_| ApiError::status(503, "the server is stopping"))?
        .clone();
    guard.armed = false;
    match ended.state {
        JobState::Done => {}
        JobState::Cancelled => return Err(ApiError::status(503, "the job was cancelled")),
        _ => {
            return Err(ended
                .error
                .unwrap_or_else(|| ApiError::status(500, "the job failed")));
        }
    }
    let data = ended
        .results
        .iter()
        .enumerate()
        .map(|(i, link)| GeneratedSample {
            b64_json: (format == ResponseFormat::B64Json)
                .then(|| state.jobs.file(id, i))
                .flatten()
                .map(|f| base64::engine::general_purpose::STANDARD.encode(f.bytes)),
            url: (format == ResponseFormat::Url).then(|| link.url.clone()),
            mime: link.mime,
        })
        .collect();
    let created = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    Ok(Json(GenerationResponse {
        created,
        data,
        id,
        traces: ended.traces,
    })
    .into_response())
}

/// `POST /v1/jobs`: queues the request, answers at once with its status.
async fn create_job(State(state): State<AppState>, body: Bytes) -> Result<Response, ApiError> {
    let spec = check_body(&state, &body)?;
    let id = enqueue(&state, spec)?;
    let status = state
        .jobs
        .status(id)
        .ok_or_else(|| ApiError::status(500, "the job vanished"))?;
    Ok((StatusCode::ACCEPTED, Json(status)).into_response())
}

fn unknown(id: u64) -> ApiError {
    ApiError::status(
        404,
        format!("no job {id} (ended jobs are kept for a while only)"),
    )
}

async fn job_status(
    State(state): State<AppState>,
    Path(id): Path<u64>,
) -> Result<Json<JobStatus>, ApiError> {
    state.jobs.status(id).map(Json).ok_or_else(|| unknown(id))
}

/// `DELETE /v1/jobs/{id}`: cancels the job; answers with its status once cancelled.
async fn cancel_job(
    State(state): State<AppState>,
    Path(id): Path<u64>,
) -> Result<Json<JobStatus>, ApiError> {
    let mut status = state.jobs.watch(id).ok_or_else(|| unknown(id))?;
    let _ = state.commands.send(Command::Cancel(id));
    let ended = status
        .wait_for(|s| s.state.ended())
        .await
        .map_err(|_| ApiError::status(503, "the server is stopping"))?
        .clone();
    Ok(Json(ended))
}

/// `GET /v1/jobs/{id}/events`: the job's status at every change, until it ends (an event
/// named after its state: `queued`, `running`, `done`, `failed`, `cancelled`). A client that
/// leaves before the end cancels the job.
async fn job_events(
    State(state): State<AppState>,
    Path(id): Path<u64>,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, ApiError> {
    let status = state.jobs.watch(id).ok_or_else(|| unknown(id))?;
    let guard = CancelOnDrop {
        id,
        commands: state.commands.clone(),
        armed: true,
    };
    Ok(Sse::new(events(status, guard)).keep_alive(KeepAlive::default()))
}

/// The events of a watched job; the guard is disarmed once the job ended.
fn events(
    status: watch::Receiver<JobStatus>,
    guard: CancelOnDrop,
) -> impl Stream<Item = Result<Event, Infallible>> {
    stream::unfold(Some((status, guard, true)), |st| async move {
        let (mut status, mut guard, first) = st?;
        if !first && status.changed().await.is_err() {
            return None;
        }
        let now = status.borrow_and_update().clone();
        let name = serde_json::to_value(now.state)
            .ok()
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_default();
        let event = Event::default()
            .event(name)
            .json_data(&now)
            .unwrap_or_else(|_| Event::default().comment("unserialisable status"));
        let next = if now.state.ended() {
            guard.armed = false;
            None
        } else {
            Some((status, guard, false))
        };
        Some((Ok(event), next))
    })
}

async fn job_file(
    State(state): State<AppState>,
    Path((id, index)): Path<(u64, usize)>,
) -> Result<Response, ApiError> {
    let file = state
        .jobs
        .file(id, index)
        .ok_or_else(|| ApiError::status(404, format!("job {id} has no file {index} (yet)")))?;
    Ok(([(header::CONTENT_TYPE, file.mime)], file.bytes).into_response())
}
