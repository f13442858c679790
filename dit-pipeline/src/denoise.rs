//! The denoising loop every pipeline shares: jobs (requests) that join and leave at step
//! boundaries, each with its own sampler and timesteps, the transformer calls of each step
//! behind one cache session (one cache state per sample and guidance pass), classifier-free
//! guidance, the sampler steps and progress.

use burn::tensor::{Tensor, TensorData, backend::Backend};
use dicache_core::{CacheSession, CacheSettings, CacheableModel, JoinRows, Pass, Row, Trace};
use dit_layers::{Checked, DenoisingStep, StepTensors};
use schedulers::Sampler;

use crate::{PipelineError, Settings, check_finite};

/// How a model with classifier-free guidance runs its two passes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
pub enum GuidanceCalls {
    /// Both passes as the rows of one transformer call ([`Passes::GuidedRows`]).
    #[default]
    Joined,
    /// A transformer call per pass ([`Passes::Guided`]).
    Apart,
}

/// The transformer calls of one denoising step; each call's batch rows are the samples.
#[derive(Debug, Clone)]
pub enum Passes<T> {
    /// One call a step: no guidance, or guidance embedded in the model (FLUX.1-dev,
    /// HunyuanVideo).
    Single(T),
    /// Classifier-free guidance: a conditional and an unconditional call a step, each with
    /// its own cache state, combined as `uncond + scale * (cond - uncond)`.
    Guided {
        /// The conditional call (the prompt).
        cond: T,
        /// The unconditional call (the negative prompt).
        uncond: T,
        /// The guidance scale.
        scale: f64,
    },
    /// Classifier-free guidance as one call a step: `input`'s first half of rows is the
    /// conditional pass of every sample, its second half the unconditional one. Each pass
    /// keeps its own cache state, as with [`Passes::Guided`].
    GuidedRows {
        /// Both passes' rows.
        input: T,
        /// The guidance scale.
        scale: f64,
    },
}

impl<T> Passes<T> {
    /// Transformer batch rows per sample in a call.
    pub fn rows_per_sample(&self) -> usize {
        match self {
            Passes::GuidedRows { .. } => 2,
            _ => 1,
        }
    }

    /// The guidance scale; `None` for [`Passes::Single`].
    pub fn scale(&self) -> Option<f64> {
        match self {
            Passes::Single(_) => None,
            Passes::Guided { scale, .. } | Passes::GuidedRows { scale, .. } => Some(*scale),
        }
    }
}

/// A job's key in a [`Denoising`]: the cache key of its first sample (its samples take the
/// keys `id, id + 1, ...`).
pub type JobId = usize;

/// How far a job has come.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Progress {
    /// Steps done.
    pub step: usize,
    /// Steps in all.
    pub steps: usize,
    /// Transformer calls of its samples that ran the deep blocks, so far.
    pub computed: usize,
    /// Transformer calls of its samples answered from the cache, so far.
    pub skipped: usize,
}

/// A job that left the denoising loop after its last step.
#[derive(Debug)]
pub struct Finished<B: Backend, const N: usize> {
    /// The sampler's final latents, a row per sample, in the request's noise layout.
    pub latents: Tensor<B, N>,
    /// The cache trace of each sample.
    pub traces: Vec<Trace>,
}

/// What one step of a [`Denoise`] ended: the jobs that finished and those that failed.
pub type Ended<B, const N: usize> = Vec<(JobId, Result<Finished<B, N>, PipelineError>)>;

/// A denoising loop of jobs that come and go, stepped one step at a time: what a caller needs
/// of any pipeline's [`Denoising`] (the pipelines' [`crate::Pipeline::Denoiser`]), whatever
/// its model, inputs and sampler.
pub trait Denoise<B: Backend, const N: usize> {
    /// A request made ready to join ([`crate::Pipeline::prepare`]).
    type Job;

    /// Adds `job` to the loop at the next step: its key. An error when its settings or passes
    /// do not join those of the jobs in the loop.
    fn admit(&mut self, job: Self::Job) -> Result<JobId, PipelineError>;

    /// Runs one step of every job in one transformer call per pass (each row at its job's own
    /// step and timestep) and returns the jobs that ended. An error is one of the call itself:
    /// every job in it has failed and is gone.
    fn step(&mut self) -> Result<Ended<B, N>, PipelineError>;

    /// How far job `id` has come; `None` once it ended or was cancelled.
    fn progress(&self, id: JobId) -> Option<Progress>;

    /// Drops job `id` and its cache state; false when there is no such job.
    fn cancel(&mut self, id: JobId) -> bool;

    /// The samples in the loop.
    fn samples(&self) -> usize;

    /// The settings of the jobs in the loop (`None` when it is empty): a job joins only with
    /// these ([`Settings::joins`]).
    fn settings(&self) -> Option<&Settings>;
}

/// One request on its way through the denoising loop: its samples' latents, their checked
/// inputs, its own sampler and the step it is at.
pub struct Job<B: Backend, I, P, S, const D: usize, const N: usize> {
    settings: Settings,
    inputs: Passes<Checked<I, P>>,
    sampler: S,
    timesteps: Vec<f32>,
    sample: Tensor<B, D>,
    step: usize,
    unpack: Box<dyn Fn(Tensor<B, D>) -> Tensor<B, N> + Send>,
}

impl<B: Backend, I, P, S: Sampler<B, D>, const D: usize, const N: usize> Job<B, I, P, S, D, N> {
    /// A job of `noise` (`[samples, ...]`, the transformer's layout) at `settings`, stepping
    /// `sampler` (its schedule set), whose model inputs of every pass are `inputs` as checked
    /// for the first step (twice the rows for [`Passes::GuidedRows`]); `unpack` turns its final
    /// latents into the request's noise layout.
    pub fn new(
        settings: Settings,
        noise: Tensor<B, D>,
        inputs: Passes<Checked<I, P>>,
        sampler: S,
        unpack: impl Fn(Tensor<B, D>) -> Tensor<B, N> + Send + 'static,
    ) -> Self {
        Self {
            settings,
            inputs,
            timesteps: sampler.timesteps(),
            sampler,
            sample: noise,
            step: 0,
            unpack: Box::new(unpack),
        }
    }

    fn samples(&self) -> usize {
        self.sample.dims()[0]
    }
}

/// The denoising loop of a model `M`: jobs (requests of one or more samples) admitted at any
/// step boundary share each transformer call, every job at its own step with its own sampler
/// and each sample with its own cache state, and leave after their last step. A sample gets
/// exactly what it gets alone: every row of a call is computed as if alone, and with
/// [`dicache_core::CacheScope::Sample`] decides alone.
pub struct Denoising<'m, B: Backend, M, I, P, S, const D: usize, const N: usize> {
    model: &'m M,
    session: CacheSession<B>,
    timestep: fn(f32) -> f32,
    jobs: Vec<(JobId, Job<B, I, P, S, D, N>)>,
    /// The jobs' inputs joined into one call's, rebuilt when a job comes or goes.
    joined: Option<Passes<Checked<I, P>>>,
    next_sample: usize,
}

impl<'m, B, M, I, P, S, const D: usize, const N: usize> Denoising<'m, B, M, I, P, S, D, N>
where
    B: Backend,
    M: CacheableModel<B, Input = Checked<I, P>, Output = Tensor<B, D>>,
    I: StepTensors<B, D> + JoinRows + Clone,
    P: JoinRows + Clone,
    S: Sampler<B, D>,
{
    /// An empty loop of `model` caching as `cache` says; `timestep` turns a sampler timestep
    /// into the model's (FLUX.1 takes it divided by 1000).
    pub fn new(
        model: &'m M,
        cache: &CacheSettings,
        timestep: fn(f32) -> f32,
    ) -> Result<Self, PipelineError> {
        Ok(Self {
            model,
            // Every job admits its samples with their own step count.
            session: CacheSession::new(cache.clone(), 1, model.num_blocks())?,
            timestep,
            jobs: Vec::new(),
            joined: None,
            next_sample: 0,
        })
    }

    /// The rows of each call of this step: `(pass rows, per-row steps)` for the first (or
    /// only) call and, with [`Passes::Guided`], the unconditional call.
    fn call_rows(&self) -> [(Vec<Row>, Vec<usize>); 2] {
        let mut calls: [(Vec<Row>, Vec<usize>); 2] = Default::default();
        for (id, job) in &self.jobs {
            let keys = *id..*id + job.samples();
            let mut push = |call: usize, pass: Pass| {
                for sample in keys.clone() {
                    calls[call].0.push(Row { pass, sample });
                    calls[call].1.push(job.step);
                }
            };
            match job.inputs {
                Passes::Single(_) => push(0, Pass::Single),
                Passes::Guided { .. } => {
                    push(0, Pass::Cond);
                    push(1, Pass::Uncond);
                }
                Passes::GuidedRows { .. } => {
                    push(0, Pass::Cond);
                    push(0, Pass::Uncond);
                }
            }
        }
        calls
    }

    /// The jobs' inputs joined, pass by pass (the loop has jobs, all of one kind of passes).
    fn join_inputs(&self) -> Passes<Checked<I, P>> {
        let (mut first, mut uncond) = (Vec::new(), Vec::new());
        for (_, job) in &self.jobs {
            match &job.inputs {
                Passes::Single(input) | Passes::GuidedRows { input, .. } => {
                    first.push(input.clone());
                }
                Passes::Guided {
                    cond, uncond: u, ..
                } => {
                    first.push(cond.clone());
                    uncond.push(u.clone());
                }
            }
        }
        let first = Checked::join(first);
        match self.jobs[0].1.inputs {
            Passes::Single(_) => Passes::Single(first),
            Passes::Guided { scale, .. } => Passes::Guided {
                cond: first,
                uncond: Checked::join(uncond),
                scale,
            },
            Passes::GuidedRows { scale, .. } => Passes::GuidedRows {
                input: first,
                scale,
            },
        }
    }

    /// One transformer call on `input` moved on to the jobs' latents (each repeated
    /// `copies` times) and timesteps.
    fn predict(
        &mut self,
        input: Checked<I, P>,
        (rows, steps): &(Vec<Row>, Vec<usize>),
        copies: usize,
    ) -> Result<(Checked<I, P>, Tensor<B, D>), PipelineError> {
        let device = self.jobs[0].1.sample.device();
        let mut latents = Vec::new();
        let mut timesteps = Vec::new();
        let mut places = Vec::new();
        for (_, job) in &self.jobs {
            let t = (self.timestep)(job.timesteps[job.step]);
            let place = DenoisingStep {
                step: job.step,
                of: job.timesteps.len(),
            };
            for _ in 0..copies {
                latents.push(job.sample.clone());
                timesteps.extend(std::iter::repeat_n(t, job.samples()));
                places.extend(std::iter::repeat_n(place, job.samples()));
            }
        }
        let t = Tensor::<B, 1>::from_data(TensorData::new(timesteps, [rows.len()]), &device);
        let input = input
            .next_step(Tensor::cat(latents, 0), t)?
            .at_steps(places);
        let velocity = self
            .session
            .forward_steps(self.model, &input, rows, steps)?;
        Ok((input, velocity))
    }

    /// Job `id`'s samples gone from the cache: their traces.
    fn release(&mut self, id: JobId, samples: usize) -> Vec<Trace> {
        (id..id + samples)
            .filter_map(|s| self.session.release(s))
            .collect()
    }
}

impl<B, M, I, P, S, const D: usize, const N: usize> Denoise<B, N>
    for Denoising<'_, B, M, I, P, S, D, N>
where
    B: Backend,
    M: CacheableModel<B, Input = Checked<I, P>, Output = Tensor<B, D>>,
    I: StepTensors<B, D> + JoinRows + Clone,
    P: JoinRows + Clone,
    S: Sampler<B, D>,
{
    type Job = Job<B, I, P, S, D, N>;

    fn admit(&mut self, job: Job<B, I, P, S, D, N>) -> Result<JobId, PipelineError> {
        if let Some((_, first)) = self.jobs.first() {
            let same_passes = std::mem::discriminant(&first.inputs)
                == std::mem::discriminant(&job.inputs)
                && first.inputs.scale() == job.inputs.scale();
            if !first.settings.joins(&job.settings) || !same_passes {
                return Err(PipelineError::Request(format!(
                    "a job at {:?} cannot join a denoising loop at {:?}: size, frames, prompt \
                     length, guidance and guidance passes must match",
                    job.settings, first.settings
                )));
            }
        }
        // The session refuses a sample without steps.
        let id = self.next_sample;
        for sample in id..id + job.samples() {
            self.session.admit(sample, job.timesteps.len())?;
        }
        self.next_sample += job.samples();
        self.jobs.push((id, job));
        self.joined = None;
        Ok(id)
    }

    fn step(&mut self) -> Result<Ended<B, N>, PipelineError> {
        if self.jobs.is_empty() {
            return Ok(Vec::new());
        }
        let joined = match self.joined.take() {
            Some(joined) => joined,
            None => self.join_inputs(),
        };
        let [first, second] = self.call_rows();
        let called = match joined {
            Passes::Single(input) => self
                .predict(input, &first, 1)
                .map(|(input, v)| (Passes::Single(input), v, None)),
            Passes::Guided {
                cond,
                uncond,
                scale,
            } => self.predict(cond, &first, 1).and_then(|(cond, v_cond)| {
                let (uncond, v_uncond) = self.predict(uncond, &second, 1)?;
                let passes = Passes::Guided {
                    cond,
                    uncond,
                    scale,
                };
                Ok((passes, v_cond, Some(v_uncond)))
            }),
            Passes::GuidedRows { input, scale } => self
                .predict(input, &first, 2)
                .map(|(input, v)| (Passes::GuidedRows { input, scale }, v, None)),
        };
        let (joined, velocity, uncond) = match called {
            Ok(called) => called,
            Err(e) => {
                // The call failed for every job in it.
                for (id, job) in std::mem::take(&mut self.jobs) {
                    self.release(id, job.samples());
                }
                return Err(e);
            }
        };
        self.joined = Some(joined);
        let mut ended = Vec::new();
        let mut row = 0;
        let jobs = std::mem::take(&mut self.jobs);
        for (id, mut job) in jobs {
            let n = job.samples();
            let rows = n * job.inputs.rows_per_sample();
            let v = velocity.clone().narrow(0, row, rows);
            let v = match (&job.inputs, &uncond) {
                (Passes::Guided { scale, .. }, Some(u)) => {
                    guide(v, u.clone().narrow(0, row, rows), *scale)
                }
                (Passes::GuidedRows { scale, .. }, _) => {
                    guide(v.clone().narrow(0, 0, n), v.narrow(0, n, n), *scale)
                }
                _ => v,
            };
            row += rows;
            let stepped = job
                .sampler
                .step(job.step, v, job.sample.clone())
                .map_err(PipelineError::from)
                .and_then(|sample| {
                    let (step, steps) = (job.step + 1, job.timesteps.len());
                    check_finite(&sample, || {
                        format!(
                            "step {step} of {steps}: the sample after the transformer's \
                             prediction"
                        )
                    })?;
                    Ok(sample)
                });
            match stepped {
                Ok(sample) => {
                    job.sample = sample;
                    job.step += 1;
                    if job.step < job.timesteps.len() {
                        self.jobs.push((id, job));
                        continue;
                    }
                    let traces = self.release(id, n);
                    let latents = (job.unpack)(job.sample);
                    ended.push((id, Ok(Finished { latents, traces })));
                }
                Err(e) => {
                    self.release(id, n);
                    ended.push((id, Err(e)));
                }
            }
        }
        if !ended.is_empty() {
            self.joined = None;
        }
        Ok(ended)
    }

    fn progress(&self, id: JobId) -> Option<Progress> {
        let (_, job) = self.jobs.iter().find(|(j, _)| *j == id)?;
        let (mut computed, mut skipped) = (0, 0);
        for trace in (id..id + job.samples()).filter_map(|s| self.session.trace(s)) {
            let summary = trace.summary();
            computed += summary.computed;
            skipped += summary.skipped;
        }
        Some(Progress {
            step: job.step,
            steps: job.timesteps.len(),
            computed,
            skipped,
        })
    }

    fn cancel(&mut self, id: JobId) -> bool {
        let Some(i) = self.jobs.iter().position(|(j, _)| *j == id) else {
            return false;
        };
        let (_, job) = self.jobs.remove(i);
        self.release(id, job.samples());
        self.joined = None;
        true
    }

    fn samples(&self) -> usize {
        self.jobs.iter().map(|(_, j)| j.samples()).sum()
    }

    fn settings(&self) -> Option<&Settings> {
        self.jobs.first().map(|(_, j)| &j.settings)
    }
}

/// Classifier-free guidance: `uncond + scale * (cond - uncond)`.
fn guide<B: Backend, const D: usize>(
    cond: Tensor<B, D>,
    uncond: Tensor<B, D>,
    scale: f64,
) -> Tensor<B, D> {
    uncond.clone() + (cond - uncond).mul_scalar(scale)
}

/// Decodes each sample's latents (`[samples, ...]`) on its own with `decode`, so the VAE holds
/// one sample's feature maps at a time, and joins the outputs in order.
pub fn decode_each<B: Backend, const D: usize>(
    latents: Tensor<B, D>,
    decode: impl Fn(Tensor<B, D>) -> Result<Tensor<B, D>, PipelineError>,
) -> Result<Tensor<B, D>, PipelineError> {
    let samples = latents.dims()[0];
    if samples == 1 {
        return decode(latents);
    }
    let decoded = (0..samples)
        .map(|i| decode(latents.clone().narrow(0, i, 1)))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Tensor::cat(decoded, 0))
}
