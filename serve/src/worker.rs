//! The model's thread: it takes checked jobs from the queue while the batch has room, runs one
//! denoising step of every job in flight per transformer call, and decodes and encodes each job
//! that finishes. A job joins at a step boundary and leaves after its last step; a failure
//! (even a panic) fails only the jobs it touched.

use std::{
    collections::{HashMap, VecDeque},
    panic::{AssertUnwindSafe, catch_unwind},
    sync::{Arc, atomic::Ordering, mpsc::Receiver},
};

use burn::tensor::{Tensor, backend::Backend};
use dicache_core::{CachePolicy, CacheSettings, Trace};
use dit_layers::gaussian_noise_rows;
use dit_pipeline::{Denoise, JobId, Pipeline, PipelineError, Request, check_finite};

use crate::{
    Model,
    api::{ApiError, JobSpec, JobState, ResultLink},
    jobs::Jobs,
    media::{Encode, Encoder, Media},
};

/// What the HTTP side asks of the worker.
pub enum Command {
    /// Run job `id`.
    Submit(u64, JobSpec),
    /// Drop job `id`, queued or running.
    Cancel(u64),
    /// Cancel everything and stop.
    Shutdown,
}

/// A denoising loop of jobs that share a transformer call: one cache setting, joinable
/// settings.
struct Loop<'p, B: Backend, P: Pipeline<B, N> + 'p, const N: usize> {
    cache: CacheSettings,
    denoiser: P::Denoiser<'p>,
    /// The server's job id and spec of each of the loop's jobs.
    jobs: HashMap<JobId, (u64, JobSpec)>,
}

/// Runs the worker until [`Command::Shutdown`] or until every sender is gone.
pub fn run<B, P, const N: usize>(
    model: Arc<Model<B, P, N>>,
    jobs: Arc<Jobs>,
    commands: Receiver<Command>,
) where
    B: Backend,
    P: Pipeline<B, N>,
    Encoder: Encode<N>,
{
    let mut worker = Worker {
        model: &model,
        jobs: &jobs,
        queue: VecDeque::new(),
        loops: Vec::new(),
    };
    loop {
        let idle = worker.loops.is_empty() && worker.queue.is_empty();
        // Wait for work when there is none; else take what came in since the last step.
        let first = if idle {
            match commands.recv() {
                Ok(command) => Some(command),
                Err(_) => break,
            }
        } else {
            None
        };
        let incoming: Vec<Command> = first
            .into_iter()
            .chain(std::iter::from_fn(|| commands.try_recv().ok()))
            .collect();
        let mut shutdown = false;
        for command in incoming {
            match command {
                Command::Submit(id, spec) => worker.queue.push_back((id, spec)),
                Command::Cancel(id) => worker.cancel(id),
                Command::Shutdown => shutdown = true,
            }
        }
        if shutdown {
            worker.cancel_all();
            break;
        }
        worker.admit();
        worker.step();
    }
}

struct Worker<'p, B: Backend, P: Pipeline<B, N> + 'p, const N: usize> {
    model: &'p Model<B, P, N>,
    jobs: &'p Jobs,
    queue: VecDeque<(u64, JobSpec)>,
    loops: Vec<Loop<'p, B, P, N>>,
}

impl<'p, B, P, const N: usize> Worker<'p, B, P, N>
where
    B: Backend,
    P: Pipeline<B, N>,
    Encoder: Encode<N>,
{
    /// Samples in the denoising loops.
    fn running(&self) -> usize {
        self.loops.iter().map(|l| l.denoiser.samples()).sum()
    }

    fn fail(&self, id: u64, status: u16, error: &dyn std::fmt::Display) {
        let error = ApiError::status(status, error.to_string());
        self.jobs.update(
            id,
            |s| {
                s.state = JobState::Failed;
                s.error = Some(error);
            },
            None,
        );
    }

    /// Moves queued jobs, first come first served, into a loop while the batch has room.
    fn admit(&mut self) {
        while let Some((_, spec)) = self.queue.front() {
            if self.running() + spec.prompts.len() > self.model.max_batch {
                break;
            }
            let (id, spec) = self.queue.pop_front().expect("a queued job");
            self.jobs
                .metrics
                .queued
                .fetch_sub(spec.prompts.len(), Ordering::Relaxed);
            let admitted = catch_unwind(AssertUnwindSafe(|| self.start(id, spec)));
            match admitted {
                Ok(Ok(())) => {}
                Ok(Err(e)) => self.fail(id, 400, &e),
                Err(panic) => self.fail(id, 500, &panic_message(&*panic)),
            }
        }
        self.publish_load();
    }

    /// Encodes job `id`'s prompts and adds it to the loop of its cache settings that its
    /// settings join (a new loop if none does).
    fn start(&mut self, id: u64, spec: JobSpec) -> Result<(), PipelineError> {
        let pipe = &self.model.pipeline;
        let s = spec.settings;
        let shape = pipe.latent_shape(s.width, s.height, s.frames)?;
        let noise = Tensor::from_data(
            gaussian_noise_rows(&shape, spec.seeds.iter().copied()),
            &self.model.device,
        );
        let request = Request {
            prompts: spec.prompts.clone(),
            settings: s,
            noise,
            extra: self.model.extra.clone(),
        };
        pipe.check_request(&request)?;
        let joins = |l: &Loop<'p, B, P, N>| {
            l.cache == spec.cache && l.denoiser.settings().is_none_or(|t| t.joins(&s))
        };
        let index = match self.loops.iter().position(joins) {
            Some(i) => i,
            None => {
                self.loops.push(Loop {
                    cache: spec.cache.clone(),
                    denoiser: pipe.denoiser(&spec.cache)?,
                    jobs: HashMap::new(),
                });
                self.loops.len() - 1
            }
        };
        let l = &mut self.loops[index];
        let job = pipe.admit(&mut l.denoiser, &request)?;
        let batch = l.denoiser.samples();
        l.jobs.insert(job, (id, spec));
        self.jobs.update(
            id,
            |st| {
                st.state = JobState::Running;
                st.batch_samples = batch;
            },
            None,
        );
        Ok(())
    }

    /// One step of every loop; finished jobs decoded, progress published.
    fn step(&mut self) {
        let mut loops = std::mem::take(&mut self.loops);
        loops.retain_mut(|l| {
            let stepped = catch_unwind(AssertUnwindSafe(|| l.denoiser.step()));
            let ended = match stepped {
                Ok(Ok(ended)) => ended,
                Ok(Err(e)) => {
                    for (id, _) in l.jobs.values() {
                        self.fail(*id, 500, &e);
                    }
                    return false;
                }
                Err(panic) => {
                    let message = panic_message(&*panic);
                    for (id, _) in l.jobs.values() {
                        self.fail(*id, 500, &message);
                    }
                    return false;
                }
            };
            for (job, result) in ended {
                let Some((id, spec)) = l.jobs.remove(&job) else {
                    continue;
                };
                match result {
                    Ok(finished) => self.finish(id, &spec, finished),
                    Err(e) => self.fail(id, 500, &e),
                }
            }
            let batch = l.denoiser.samples();
            for (&job, (id, _)) in &l.jobs {
                if let Some(p) = l.denoiser.progress(job) {
                    self.jobs.update(
                        *id,
                        |s| {
                            (s.step, s.computed, s.skipped) = (p.step, p.computed, p.skipped);
                            s.batch_samples = batch;
                        },
                        None,
                    );
                }
            }
            !l.jobs.is_empty()
        });
        self.loops = loops;
        self.publish_load();
    }

    /// Decodes and encodes a finished job's samples; the job is done (or failed).
    fn finish(&self, id: u64, spec: &JobSpec, finished: dit_pipeline::Finished<B, N>) {
        let encoded = catch_unwind(AssertUnwindSafe(|| self.encode(&finished.latents)));
        let files = match encoded {
            Ok(Ok(files)) => files,
            Ok(Err(e)) => return self.fail(id, 500, &e),
            Err(panic) => return self.fail(id, 500, &panic_message(&*panic)),
        };
        let metrics = &self.jobs.metrics;
        let (computed, skipped) = counts(&finished.traces);
        metrics
            .computed
            .fetch_add(computed as u64, Ordering::Relaxed);
        metrics.skipped.fetch_add(skipped as u64, Ordering::Relaxed);
        let results = files
            .iter()
            .enumerate()
            .map(|(i, f)| ResultLink {
                url: format!("/v1/jobs/{id}/result/{i}"),
                mime: f.mime,
            })
            .collect();
        let steps = spec.settings.steps;
        self.jobs.update(
            id,
            |s| {
                s.state = JobState::Done;
                s.step = steps;
                (s.computed, s.skipped) = (computed, skipped);
                s.results = results;
                s.traces = finished.traces;
            },
            Some(files),
        );
    }

    /// Each sample of `latents` decoded, checked and encoded.
    fn encode(&self, latents: &Tensor<B, N>) -> Result<Vec<Media>, Box<dyn std::error::Error>> {
        let pipe = &self.model.pipeline;
        (0..latents.dims()[0])
            .map(|i| {
                let decoded = pipe.decode(latents.clone().narrow(0, i, 1), &self.model.extra)?;
                check_finite(&decoded, || "the VAE's decoded output".into())?;
                Ok(Encoder::encode(decoded, self.model.fps)?)
            })
            .collect()
    }

    /// Cancels job `id` wherever it is.
    fn cancel(&mut self, id: u64) {
        if let Some(i) = self.queue.iter().position(|(q, _)| *q == id) {
            let (_, spec) = self.queue.remove(i).expect("a queued job");
            self.jobs
                .metrics
                .queued
                .fetch_sub(spec.prompts.len(), Ordering::Relaxed);
        }
        for l in &mut self.loops {
            let found = l.jobs.iter().find(|(_, (j, _))| *j == id).map(|(k, _)| *k);
            if let Some(job) = found {
                l.denoiser.cancel(job);
                l.jobs.remove(&job);
            }
        }
        self.loops.retain(|l| !l.jobs.is_empty());
        self.jobs
            .update(id, |s| s.state = JobState::Cancelled, None);
        self.publish_load();
    }

    /// Cancels every job: the server is stopping.
    fn cancel_all(&mut self) {
        let ids: Vec<u64> = self
            .queue
            .iter()
            .map(|(id, _)| *id)
            .chain(
                self.loops
                    .iter()
                    .flat_map(|l| l.jobs.values().map(|(id, _)| *id)),
            )
            .collect();
        for id in ids {
            self.cancel(id);
        }
    }

    fn publish_load(&self) {
        self.jobs
            .metrics
            .running
            .store(self.running(), Ordering::Relaxed);
    }
}

/// Computed and skipped calls over `traces`.
fn counts(traces: &[Trace]) -> (usize, usize) {
    let calls = traces.iter().flat_map(|t| &t.steps);
    let computed = calls.clone().filter(|e| e.computed).count();
    (computed, calls.count() - computed)
}

/// The threshold a policy compares its indicator with, if it has one.
pub fn threshold(policy: &CachePolicy) -> Option<f64> {
    match policy {
        CachePolicy::DiCache(c) => Some(c.threshold),
        CachePolicy::FirstBlock(c) => Some(c.threshold),
        CachePolicy::None | CachePolicy::Uniform(_) => None,
    }
}

/// What a caught panic said.
fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    let text = panic
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown cause".into());
    format!("internal error (a panic, caught): {text}")
}
