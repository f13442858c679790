//! Errors of configuring and running a scheduler.

use dit_layers::LoadError;
use thiserror::Error;

/// A scheduler configuration or call that cannot be honoured; each variant names the setting
/// or argument at fault.
#[derive(Debug, Error)]
pub enum SchedulerError {
    /// The configuration file could not be read or parsed.
    #[error(transparent)]
    Load(#[from] LoadError),
    /// The configuration asks for an option this port does not implement.
    #[error("{origin}: scheduler option {key:?} = {value} is not supported ({reason})")]
    Unsupported {
        /// The configuration file, or a description of where the settings came from.
        origin: String,
        /// The configuration key.
        key: String,
        /// The value found.
        value: String,
        /// What is supported instead.
        reason: String,
    },
    /// `set_timesteps` was asked for no steps.
    #[error("num_steps must be at least 1, got 0")]
    NoSteps,
    /// Custom sigmas whose count differs from the number of steps.
    #[error("{given} custom sigmas were passed for {num_steps} steps; the counts must match")]
    SigmasLength {
        /// The number of steps asked for.
        num_steps: usize,
        /// The number of sigmas passed.
        given: usize,
    },
    /// Shifting made a sigma leave `[0, 1]` (or NaN).
    #[error(
        "the schedule holds sigma {sigma}, outside [0, 1]: the shift settings (or mu) are \
         unusable"
    )]
    Sigma {
        /// The first sigma out of range (NaN included).
        sigma: f32,
    },
    /// Dynamic shifting is configured but no `mu` was passed.
    #[error("use_dynamic_shifting is set: set_timesteps needs mu (see calculate_shift)")]
    MissingMu,
    /// `step` was called with an index outside the schedule (or before `set_timesteps`).
    #[error("step index {index} is outside the schedule of {num_steps} steps")]
    StepIndex {
        /// The index passed.
        index: usize,
        /// The number of steps set.
        num_steps: usize,
    },
    /// `step` got a model output and a sample of different shapes.
    #[error("model output has shape {model_output:?} but the sample has shape {sample:?}")]
    ShapeMismatch {
        /// Shape of the model output.
        model_output: Vec<usize>,
        /// Shape of the sample.
        sample: Vec<usize>,
    },
    /// A multistep `step` got a sample of another shape than the earlier steps of its
    /// generation.
    #[error(
        "the sample has shape {sample:?} but earlier steps of this generation had {history:?} \
         (reset the scheduler to start a new generation)"
    )]
    HistoryShape {
        /// Shape of the tensors of the earlier steps.
        history: Vec<usize>,
        /// Shape of the sample passed.
        sample: Vec<usize>,
    },
}
