//! The denoising loop every pipeline shares: the sampler's timesteps, the transformer calls of
//! each step behind a cache session (one cache state per sample and guidance pass),
//! classifier-free guidance, the sampler step, progress and timing.

use std::time::{Duration, Instant};

use burn::tensor::{Tensor, TensorData, backend::Backend};
use dicache_core::{CacheSession, CacheSettings, CacheableModel, Pass, Row, Trace};
use dit_layers::{Checked, StepTensors};
use schedulers::Sampler;

use crate::{PipelineError, check_finite, elapsed_synced};

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
}

/// What the denoising loop returns.
#[derive(Debug)]
pub struct Denoised<B: Backend, const D: usize> {
    /// The sampler's final sample, in the transformer's layout.
    pub latents: Tensor<B, D>,
    /// The cache trace of each sample, one entry per transformer call.
    pub traces: Vec<Trace>,
    /// Wall time of the loop (every transformer call and sampler step), read after the backend
    /// finished its work.
    pub time: Duration,
}

/// Denoises `noise` (`[samples, ...]`) with `model` caching as `cache` says, stepping `sampler`
/// through its schedule and calling `on_step(done, total)` after each step. A sample that
/// turns NaN or infinite stops the loop with an error naming the step.
///
/// `inputs` are the model's checked inputs of every pass, as checked for the first step
/// (latents of `noise`'s shape, twice the rows for [`Passes::GuidedRows`]); each step moves
/// them on to its sample and timestep
/// ([`Checked::next_step`]), so what stays constant is checked and prepared once. `timestep`
/// turns a sampler timestep into the model's (FLUX.1 takes it divided by 1000).
pub fn denoise<B, M, I, P, S, const D: usize>(
    model: &M,
    sampler: &mut S,
    cache: &CacheSettings,
    noise: Tensor<B, D>,
    mut inputs: Passes<Checked<I, P>>,
    timestep: impl Fn(f32) -> f32,
    on_step: &mut dyn FnMut(usize, usize),
) -> Result<Denoised<B, D>, PipelineError>
where
    B: Backend,
    M: CacheableModel<B, Input = Checked<I, P>, Output = Tensor<B, D>>,
    I: StepTensors<B, D>,
    S: Sampler<B, D>,
{
    let timesteps = sampler.timesteps();
    let device = noise.device();
    let samples = noise.dims()[0];
    let mut session = CacheSession::new(cache.clone(), timesteps.len(), model.num_blocks())?;
    let mut sample = noise;
    let start = Instant::now();
    for (i, &t) in timesteps.iter().enumerate() {
        let rows = samples * inputs.rows_per_sample();
        let t =
            Tensor::<B, 1>::from_data(TensorData::new(vec![timestep(t); rows], [rows]), &device);
        let mut predict = |rows: &[Row], input: Checked<I, P>| -> Result<_, PipelineError> {
            let latents = match rows.len() / samples {
                1 => sample.clone(),
                n => Tensor::cat(vec![sample.clone(); n], 0),
            };
            let input = input.next_step(latents, t.clone())?;
            let velocity = session.forward_rows(model, &input, i, rows)?;
            Ok((input, velocity))
        };
        let guide = |cond: Tensor<B, D>, uncond: Tensor<B, D>, scale: f64| {
            uncond.clone() + (cond - uncond).mul_scalar(scale)
        };
        let velocity;
        (inputs, velocity) = match inputs {
            Passes::Single(input) => {
                let (input, v) = predict(&Row::samples(Pass::Single, samples), input)?;
                (Passes::Single(input), v)
            }
            Passes::Guided {
                cond,
                uncond,
                scale,
            } => {
                let (cond, v_cond) = predict(&Row::samples(Pass::Cond, samples), cond)?;
                let (uncond, v_uncond) = predict(&Row::samples(Pass::Uncond, samples), uncond)?;
                let passes = Passes::Guided {
                    cond,
                    uncond,
                    scale,
                };
                (passes, guide(v_cond, v_uncond, scale))
            }
            Passes::GuidedRows { input, scale } => {
                let mut rows = Row::samples(Pass::Cond, samples);
                rows.extend(Row::samples(Pass::Uncond, samples));
                let (input, v) = predict(&rows, input)?;
                let (v_cond, v_uncond) = (
                    v.clone().narrow(0, 0, samples),
                    v.narrow(0, samples, samples),
                );
                (
                    Passes::GuidedRows { input, scale },
                    guide(v_cond, v_uncond, scale),
                )
            }
        };
        sample = sampler.step(i, velocity, sample)?;
        check_finite(&sample, || {
            format!(
                "step {} of {}: the sample after the transformer's prediction",
                i + 1,
                timesteps.len()
            )
        })?;
        on_step(i + 1, timesteps.len());
    }
    let time = elapsed_synced::<B>(start, &device)?;
    Ok(Denoised {
        latents: sample,
        traces: session.into_traces(),
        time,
    })
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
