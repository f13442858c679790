//! What a denoising loop asks of a sampler, whichever it is: the timesteps of the schedule set
//! for this generation, and one step at a time.

use burn::tensor::{Tensor, backend::Backend};

use crate::{FlowMatchEulerDiscreteScheduler, SchedulerError, UniPcMultistepScheduler};

/// A sampler with its schedule set for one generation, stepping a sample of `D` dimensions.
pub trait Sampler<B: Backend, const D: usize> {
    /// The transformer's timestep at each step, as the scheduler computes it, `[num_steps]`.
    fn timesteps(&self) -> Vec<f32>;

    /// Step `index` of the schedule: the sample at the next noise level from the model's
    /// output at this step and the sample here. Steps are taken in order, from 0.
    fn step(
        &mut self,
        index: usize,
        model_output: Tensor<B, D>,
        sample: Tensor<B, D>,
    ) -> Result<Tensor<B, D>, SchedulerError>;
}

impl<B: Backend, const D: usize> Sampler<B, D> for FlowMatchEulerDiscreteScheduler {
    fn timesteps(&self) -> Vec<f32> {
        FlowMatchEulerDiscreteScheduler::timesteps(self).to_vec()
    }

    fn step(
        &mut self,
        index: usize,
        model_output: Tensor<B, D>,
        sample: Tensor<B, D>,
    ) -> Result<Tensor<B, D>, SchedulerError> {
        FlowMatchEulerDiscreteScheduler::step(self, model_output, sample, index)
    }
}

/// UniPC keeps its own step count (its multistep history); a step out of that order is an
/// error.
impl<B: Backend, const D: usize> Sampler<B, D> for UniPcMultistepScheduler<B, D> {
    /// Integers (0..1000), exact in f32.
    fn timesteps(&self) -> Vec<f32> {
        UniPcMultistepScheduler::timesteps(self)
            .iter()
            .map(|&t| t as f32)
            .collect()
    }

    fn step(
        &mut self,
        index: usize,
        model_output: Tensor<B, D>,
        sample: Tensor<B, D>,
    ) -> Result<Tensor<B, D>, SchedulerError> {
        if index != self.step_index() {
            return Err(SchedulerError::StepIndex {
                index,
                num_steps: UniPcMultistepScheduler::timesteps(self).len(),
            });
        }
        UniPcMultistepScheduler::step(self, model_output, sample)
    }
}
