//! The denoising loop every pipeline shares: the sampler's timesteps, one transformer call per
//! guidance pass behind a cache session (one cache state per pass), classifier-free guidance,
//! the sampler step, progress and timing.

use std::time::{Duration, Instant};

use burn::tensor::{Tensor, TensorData, backend::Backend};
use dicache_core::{CachePolicy, CacheSession, CacheableModel, CallTiming, Pass, Trace};
use dit_layers::{Checked, StepTensors};
use schedulers::Sampler;

use crate::{PipelineError, check_finite, elapsed_synced};

/// The transformer calls of one denoising step.
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
}

/// What the denoising loop returns.
#[derive(Debug)]
pub struct Denoised<B: Backend, const D: usize> {
    /// The sampler's final sample, in the transformer's layout.
    pub latents: Tensor<B, D>,
    /// The cache trace, one entry per transformer call.
    pub trace: Trace,
    /// Wall time of the loop (every transformer call and sampler step), read after the backend
    /// finished its work.
    pub time: Duration,
}

/// Denoises `noise` with `model` under the cache `policy` (its calls timed as `timing` says),
/// stepping `sampler` through its schedule and calling `on_step(done, total)` after each step. A sample that turns NaN or
/// infinite stops the loop with an error naming the step.
///
/// `inputs` are the model's checked inputs of every pass, as checked for the first step
/// (latents of `noise`'s shape); each step moves them on to its sample and timestep
/// ([`Checked::next_step`]), so what stays constant is checked and prepared once. `timestep`
/// turns a sampler timestep into the model's (FLUX.1 takes it divided by 1000).
pub fn denoise<B, M, I, P, S, const D: usize>(
    model: &M,
    sampler: &mut S,
    (policy, timing): (CachePolicy, CallTiming),
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
    let batch = noise.dims()[0];
    let mut session =
        CacheSession::new(policy, timesteps.len(), model.num_blocks())?.with_timing(timing);
    let mut sample = noise;
    let start = Instant::now();
    for (i, &t) in timesteps.iter().enumerate() {
        let t =
            Tensor::<B, 1>::from_data(TensorData::new(vec![timestep(t); batch], [batch]), &device);
        let mut predict = |pass, input: Checked<I, P>| -> Result<_, PipelineError> {
            let input = input.next_step(sample.clone(), t.clone())?;
            let velocity = session.forward(model, &input, i, pass)?;
            Ok((input, velocity))
        };
        let velocity;
        (inputs, velocity) = match inputs {
            Passes::Single(input) => {
                let (input, v) = predict(Pass::Single, input)?;
                (Passes::Single(input), v)
            }
            Passes::Guided {
                cond,
                uncond,
                scale,
            } => {
                let (cond, v_cond) = predict(Pass::Cond, cond)?;
                let (uncond, v_uncond) = predict(Pass::Uncond, uncond)?;
                let guided = v_uncond.clone() + (v_cond - v_uncond).mul_scalar(scale);
                (
                    Passes::Guided {
                        cond,
                        uncond,
                        scale,
                    },
                    guided,
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
        trace: session.into_trace(),
        time,
    })
}
