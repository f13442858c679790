//! The jobs the server knows: each one's status, watched by its clients, and the counters
//! `/metrics` reports.

use std::{
    collections::{HashMap, VecDeque},
    sync::{
        Mutex,
        atomic::{AtomicU64, AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use tokio::sync::watch;

use crate::{
    api::{JobState, JobStatus},
    media::Media,
};

/// How many ended jobs (and their files) the server keeps for clients to fetch.
pub const KEPT_JOBS: usize = 64;

/// One job: its status, sent to whoever watches it, and its files once done.
struct Entry {
    status: watch::Sender<JobStatus>,
    files: Vec<Media>,
}

/// Every job the server knows: the running and queued ones, and the last [`KEPT_JOBS`] that
/// ended.
#[derive(Default)]
pub struct Jobs {
    next_id: AtomicU64,
    entries: Mutex<HashMap<u64, Entry>>,
    /// Ended jobs, oldest first: the ones to forget first.
    ended: Mutex<VecDeque<u64>>,
    /// The counters of `/metrics`.
    pub metrics: Metrics,
}

impl Jobs {
    /// A new queued job of `samples` samples and `steps` steps: its id.
    pub fn create(&self, samples: usize, steps: usize, threshold: Option<f64>) -> u64 {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let status = JobStatus {
            id,
            state: JobState::Queued,
            samples,
            step: 0,
            steps,
            computed: 0,
            skipped: 0,
            batch_samples: 0,
            error: None,
            results: Vec::new(),
            traces: Vec::new(),
            threshold,
        };
        let entry = Entry {
            status: watch::Sender::new(status),
            files: Vec::new(),
        };
        self.lock().insert(id, entry);
        id
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Entry>> {
        // A panic while holding the lock leaves the map itself intact.
        self.entries.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Job `id`'s status now.
    pub fn status(&self, id: u64) -> Option<JobStatus> {
        self.lock().get(&id).map(|e| e.status.borrow().clone())
    }

    /// A receiver of job `id`'s status changes.
    pub fn watch(&self, id: u64) -> Option<watch::Receiver<JobStatus>> {
        self.lock().get(&id).map(|e| e.status.subscribe())
    }

    /// File `index` of job `id`.
    pub fn file(&self, id: u64, index: usize) -> Option<Media> {
        self.lock().get(&id)?.files.get(index).cloned()
    }

    /// Changes job `id`'s status with `change` (nothing once it ended); `files` are its
    /// results when it is done. A job that ends is counted and, beyond [`KEPT_JOBS`] ended
    /// ones, the oldest ended job is forgotten.
    pub fn update(&self, id: u64, change: impl FnOnce(&mut JobStatus), files: Option<Vec<Media>>) {
        let mut entries = self.lock();
        let Some(entry) = entries.get_mut(&id) else {
            return;
        };
        let mut ended = None;
        entry.status.send_if_modified(|status| {
            if status.state.ended() {
                return false;
            }
            change(status);
            if status.state.ended() {
                ended = Some((status.state, status.samples));
            }
            true
        });
        if let Some(files) = files {
            entry.files = files;
        }
        let Some((state, samples)) = ended else {
            return;
        };
        self.metrics.ended(state, samples);
        let mut order = self.ended.lock().unwrap_or_else(|e| e.into_inner());
        order.push_back(id);
        while order.len() > KEPT_JOBS {
            if let Some(old) = order.pop_front() {
                entries.remove(&old);
            }
        }
    }
}

/// The counters of `/metrics`.
#[derive(Default)]
pub struct Metrics {
    /// Requests accepted.
    pub accepted: AtomicU64,
    /// Requests refused: bad (400) or the queue full (429).
    pub rejected: AtomicU64,
    /// Jobs done, failed and cancelled.
    pub done: AtomicU64,
    /// Jobs failed.
    pub failed: AtomicU64,
    /// Jobs cancelled.
    pub cancelled: AtomicU64,
    /// Samples generated.
    pub samples: AtomicU64,
    /// Transformer calls of samples that ran every block.
    pub computed: AtomicU64,
    /// Transformer calls of samples answered from the cache.
    pub skipped: AtomicU64,
    /// Samples waiting for room in the batch.
    pub queued: AtomicUsize,
    /// Samples in the denoising loops.
    pub running: AtomicUsize,
    /// When the last samples finished, for the rate over the last minute.
    finished_at: Mutex<VecDeque<(Instant, usize)>>,
}

/// The window of [`Metrics::samples_per_second`].
const RATE_WINDOW: Duration = Duration::from_secs(60);

impl Metrics {
    fn ended(&self, state: JobState, samples: usize) {
        match state {
            JobState::Done => {
                self.done.fetch_add(1, Ordering::Relaxed);
                self.samples.fetch_add(samples as u64, Ordering::Relaxed);
                let mut finished = self.finished_at.lock().unwrap_or_else(|e| e.into_inner());
                finished.push_back((Instant::now(), samples));
            }
            JobState::Failed => {
                self.failed.fetch_add(1, Ordering::Relaxed);
            }
            JobState::Cancelled => {
                self.cancelled.fetch_add(1, Ordering::Relaxed);
            }
            JobState::Queued | JobState::Running => {}
        }
    }

    /// Samples finished per second over the last minute.
    pub fn samples_per_second(&self) -> f64 {
        let mut finished = self.finished_at.lock().unwrap_or_else(|e| e.into_inner());
        while finished
            .front()
            .is_some_and(|(t, _)| t.elapsed() > RATE_WINDOW)
        {
            finished.pop_front();
        }
        finished.iter().map(|(_, n)| *n).sum::<usize>() as f64 / RATE_WINDOW.as_secs_f64()
    }

    /// The Prometheus text exposition of the counters.
    pub fn prometheus(&self) -> String {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        let (computed, skipped) = (get(&self.computed), get(&self.skipped));
        let fraction = match computed + skipped {
            0 => 1.0,
            calls => computed as f64 / calls as f64,
        };
        let lines: [(&str, &str, &str, String); 10] = [
            (
                "dicache_requests_total{outcome=\"accepted\"}",
                "counter",
                "Requests accepted.",
                get(&self.accepted).to_string(),
            ),
            (
                "dicache_requests_total{outcome=\"rejected\"}",
                "counter",
                "",
                get(&self.rejected).to_string(),
            ),
            (
                "dicache_jobs_total{state=\"done\"}",
                "counter",
                "Jobs that ended, by how.",
                get(&self.done).to_string(),
            ),
            (
                "dicache_jobs_total{state=\"failed\"}",
                "counter",
                "",
                get(&self.failed).to_string(),
            ),
            (
                "dicache_jobs_total{state=\"cancelled\"}",
                "counter",
                "",
                get(&self.cancelled).to_string(),
            ),
            (
                "dicache_samples_total",
                "counter",
                "Samples generated.",
                get(&self.samples).to_string(),
            ),
            (
                "dicache_samples_per_second",
                "gauge",
                "Samples finished per second over the last minute.",
                format!("{:.4}", self.samples_per_second()),
            ),
            (
                "dicache_computed_fraction",
                "gauge",
                "Transformer calls that ran every block, of all calls.",
                format!("{fraction:.4}"),
            ),
            (
                "dicache_queue_samples",
                "gauge",
                "Samples waiting for room in the batch.",
                self.queued.load(Ordering::Relaxed).to_string(),
            ),
            (
                "dicache_running_samples",
                "gauge",
                "Samples in the denoising loops.",
                self.running.load(Ordering::Relaxed).to_string(),
            ),
        ];
        let mut out = String::new();
        for (name, kind, help, value) in lines {
            let family = name.split('{').next().unwrap_or(name);
            if !help.is_empty() {
                out.push_str(&format!("# HELP {family} {help}\n# TYPE {family} {kind}\n"));
            }
            out.push_str(&format!("{name} {value}\n"));
        }
        out
    }
}
