//! The model's thread: it takes checked jobs from the queue while the batch has room and runs
//! one denoising step of every job in flight per transformer call. Two threads beside it keep
//! the loop going: one encodes the prompts of the jobs about to join, one decodes and encodes
//! the files of each job that finishes. A job joins at a step boundary and leaves after its
//! last step; a failure (even a panic) fails only the jobs it touched.

use std::{
    collections::{HashMap, VecDeque},
    panic::{AssertUnwindSafe, catch_unwind},
    sync::{
        Arc,
        atomic::Ordering,
        mpsc::{self, Receiver, Sender},
    },
};

use burn::tensor::{Tensor, backend::Backend};
use dicache_core::{CacheSettings, TraceSummary};
use dit_layers::gaussian_noise_rows;
use dit_pipeline::{Denoise, Finished, JobId, Pipeline, PipelineError, Request, check_finite};

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

/// A finished job on its way to its files.
struct Decode<B: Backend, const N: usize> {
    id: u64,
    steps: usize,
    finished: Finished<B, N>,
}

/// Runs the worker until [`Command::Shutdown`] or until every sender is gone. Finished jobs
/// are decoded and encoded on a thread of their own, beside the denoising loop.
pub fn run<B, P, const N: usize>(
    model: Arc<Model<B, P, N>>,
    jobs: Arc<Jobs>,
    commands: Receiver<Command>,
) where
    B: Backend,
    P: Pipeline<B, N> + Send + Sync,
    P::Extra: Send + Sync,
    P::Job: Send,
    Encoder: Encode<N>,
{
    let (model, jobs) = (&*model, &*jobs);
    std::thread::scope(|scope| {
        let (decode, decodes) = mpsc::channel::<Decode<B, N>>();
        scope.spawn(move || {
            for job in decodes {
                finish(model, jobs, job);
            }
        });
        let (prepare, requests) = mpsc::channel::<(u64, JobSpec)>();
        let (ready, prepared) = mpsc::channel();
        scope.spawn(move || {
            for (id, spec) in requests {
                let job = catch_unwind(AssertUnwindSafe(|| prepare_job(model, &spec)))
                    .unwrap_or_else(|panic| Err((500, panic_message(&*panic))));
                if ready.send(Prepared { id, spec, job }).is_err() {
                    return;
                }
            }
        });
        let mut worker = Worker {
            model,
            jobs,
            queue: VecDeque::new(),
            preparing: 0,
            prepare,
            prepared,
            loops: Vec::new(),
            decode,
        };
        worker.serve(&commands);
    });
}

/// A request whose prompts were encoded beside the loop: its job, or why it could not be made
/// (an HTTP status and a message).
struct Prepared<J> {
    id: u64,
    spec: JobSpec,
    job: Result<J, (u16, String)>,
}

/// The noise of `spec`'s samples, its request checked and its prompts encoded.
fn prepare_job<B, P, const N: usize>(
    model: &Model<B, P, N>,
    spec: &JobSpec,
) -> Result<P::Job, (u16, String)>
where
    B: Backend,
    P: Pipeline<B, N>,
{
    let pipe = &model.pipeline;
    let s = spec.settings;
    let rejected = |e: PipelineError| (400, e.to_string());
    let shape = pipe
        .latent_shape(s.width, s.height, s.frames)
        .map_err(rejected)?;
    let noise = Tensor::from_data(
        gaussian_noise_rows(&shape, spec.seeds.iter().copied()),
        &model.device,
    );
    let request = Request {
        prompts: spec.prompts.clone(),
        settings: s,
        noise,
        extra: model.extra.clone(),
    };
    pipe.check_request(&request).map_err(rejected)?;
    pipe.prepare(&request).map_err(rejected)
}

struct Worker<'p, B: Backend, P: Pipeline<B, N> + 'p, const N: usize> {
    model: &'p Model<B, P, N>,
    jobs: &'p Jobs,
    queue: VecDeque<(u64, JobSpec)>,
    /// Samples whose prompts are being encoded.
    preparing: usize,
    /// The preparing thread's queue, and what it made.
    prepare: Sender<(u64, JobSpec)>,
    prepared: Receiver<Prepared<P::Job>>,
    loops: Vec<Loop<'p, B, P, N>>,
    /// The decoding thread's queue.
    decode: Sender<Decode<B, N>>,
}

impl<'p, B, P, const N: usize> Worker<'p, B, P, N>
where
    B: Backend,
    P: Pipeline<B, N>,
    Encoder: Encode<N>,
{
    /// Takes commands and steps the loops until a shutdown or until every sender is gone.
    fn serve(&mut self, commands: &Receiver<Command>) {
        loop {
            // Wait for work when there is none, or for a prepared job when only those are
            // coming; else take what came in since the last step.
            let mut incoming = Vec::new();
            if self.loops.is_empty() && self.preparing == 0 && self.queue.is_empty() {
                match commands.recv() {
                    Ok(command) => incoming.push(command),
                    Err(_) => return,
                }
            } else if self.loops.is_empty() && self.preparing > 0 {
                match self.prepared.recv() {
                    Ok(prepared) => self.join(prepared),
                    Err(_) => return,
                }
            }
            incoming.extend(std::iter::from_fn(|| commands.try_recv().ok()));
            for command in incoming {
                match command {
                    Command::Submit(id, spec) => self.queue.push_back((id, spec)),
                    Command::Cancel(id) => self.cancel(id),
                    Command::Shutdown => return self.cancel_all(),
                }
            }
            while let Ok(prepared) = self.prepared.try_recv() {
                self.join(prepared);
            }
            self.admit();
            self.step();
        }
    }

    /// Samples in the denoising loops.
    fn running(&self) -> usize {
        self.loops.iter().map(|l| l.denoiser.samples()).sum()
    }

    fn fail(&self, id: u64, status: u16, error: &dyn std::fmt::Display) {
        fail(self.jobs, id, status, error);
    }

    /// Sends queued jobs, first come first served, to have their prompts encoded while the
    /// batch has room for them.
    fn admit(&mut self) {
        while let Some((_, spec)) = self.queue.front() {
            let samples = spec.prompts.len();
            if self.running() + self.preparing + samples > self.model.max_batch {
                break;
            }
            let (id, spec) = self.queue.pop_front().expect("a queued job");
            self.jobs
                .metrics
                .queued
                .fetch_sub(samples, Ordering::Relaxed);
            if self.prepare.send((id, spec)).is_err() {
                self.fail(id, 500, &"the preparing thread stopped");
                continue;
            }
            self.preparing += samples;
        }
        self.publish_load();
    }

    /// Adds a prepared job to the loop of its cache settings that its settings join (a new
    /// loop if none does), unless it was cancelled meanwhile.
    fn join(&mut self, prepared: Prepared<P::Job>) {
        let Prepared { id, spec, job } = prepared;
        self.preparing -= spec.prompts.len();
        if self.jobs.status(id).is_none_or(|s| s.state.ended()) {
            return;
        }
        let job = match job {
            Ok(job) => job,
            Err((status, message)) => return self.fail(id, status, &message),
        };
        let s = spec.settings;
        let joins = |l: &Loop<'p, B, P, N>| {
            l.cache == spec.cache && l.denoiser.settings().is_none_or(|t| t.joins(&s))
        };
        let index = match self.loops.iter().position(joins) {
            Some(i) => i,
            None => match self.model.pipeline.denoiser(&spec.cache) {
                Ok(denoiser) => {
                    self.loops.push(Loop {
                        cache: spec.cache.clone(),
                        denoiser,
                        jobs: HashMap::new(),
                    });
                    self.loops.len() - 1
                }
                Err(e) => return self.fail(id, 400, &e),
            },
        };
        let l = &mut self.loops[index];
        let key = match l.denoiser.admit(job) {
            Ok(key) => key,
            Err(e) => return self.fail(id, 400, &e),
        };
        let batch = l.denoiser.samples();
        l.jobs.insert(key, (id, spec));
        self.jobs.update(
            id,
            |st| {
                st.state = JobState::Running;
                st.batch_samples = batch;
            },
            None,
        );
        self.publish_load();
    }

    /// One step of every loop; finished jobs decoded, progress published.
    fn step(&mut self) {
        let mut loops = std::mem::take(&mut self.loops);
        loops.retain_mut(|l| {
            let stepped = match catch_unwind(AssertUnwindSafe(|| l.denoiser.step())) {
                Ok(stepped) => stepped.map_err(|e| e.to_string()),
                Err(panic) => Err(panic_message(&*panic)),
            };
            let ended = match stepped {
                Ok(ended) => ended,
                Err(e) => {
                    // The call failed (or panicked) for every job in it.
                    for (id, _) in l.jobs.values() {
                        self.fail(*id, 500, &e);
                    }
                    return false;
                }
            };
            for (job, result) in ended {
                let Some((id, spec)) = l.jobs.remove(&job) else {
                    continue;
                };
                match result {
                    Ok(finished) => {
                        let steps = spec.settings.steps;
                        let job = Decode {
                            id,
                            steps,
                            finished,
                        };
                        if self.decode.send(job).is_err() {
                            self.fail(id, 500, &"the decoding thread stopped");
                        }
                    }
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

/// Marks job `id` failed with `error`, answered with HTTP `status`.
fn fail(jobs: &Jobs, id: u64, status: u16, error: &dyn std::fmt::Display) {
    let error = ApiError::status(status, error.to_string());
    jobs.update(
        id,
        |s| {
            s.state = JobState::Failed;
            s.error = Some(error);
        },
        None,
    );
}

/// Decodes and encodes a finished job's samples; the job is done (or failed).
fn finish<B, P, const N: usize>(model: &Model<B, P, N>, jobs: &Jobs, job: Decode<B, N>)
where
    B: Backend,
    P: Pipeline<B, N>,
    Encoder: Encode<N>,
{
    let Decode {
        id,
        steps,
        finished,
    } = job;
    let encoded = catch_unwind(AssertUnwindSafe(|| encode(model, &finished.latents)));
    let files = match encoded {
        Ok(Ok(files)) => files,
        Ok(Err(e)) => return fail(jobs, id, 500, &e),
        Err(panic) => return fail(jobs, id, 500, &panic_message(&*panic)),
    };
    let metrics = &jobs.metrics;
    let TraceSummary {
        computed, skipped, ..
    } = TraceSummary::of(&finished.traces);
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
    jobs.update(
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
fn encode<B, P, const N: usize>(
    model: &Model<B, P, N>,
    latents: &Tensor<B, N>,
) -> Result<Vec<Media>, Box<dyn std::error::Error>>
where
    B: Backend,
    P: Pipeline<B, N>,
    Encoder: Encode<N>,
{
    (0..latents.dims()[0])
        .map(|i| {
            let sample = latents.clone().narrow(0, i, 1);
            let decoded = model.pipeline.decode(sample, &model.extra)?;
            check_finite(&decoded, || "the VAE's decoded output".into())?;
            Ok(Encoder::encode(decoded, model.fps)?)
        })
        .collect()
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
