//! Errors of the cache engine.

use thiserror::Error;

/// Bad settings or misuse of a [`CacheSession`](crate::CacheSession).
#[derive(Debug, Error, Clone, PartialEq)]
pub enum CacheError {
    /// A threshold was negative or not a finite number.
    #[error("cache threshold must be a finite number >= 0, got {0}")]
    Threshold(f64),
    /// The warm-up ratio was outside `[0, 1]`.
    #[error("warm-up ratio must lie in [0, 1], got {0}")]
    WarmupRatio(f64),
    /// The probe depth was 0 or not smaller than the number of blocks.
    #[error(
        "probe depth must be at least 1 and smaller than the model's {blocks} blocks, got {depth}"
    )]
    ProbeDepth {
        /// The probe depth asked for.
        depth: usize,
        /// The number of blocks of the model (0 when not known yet).
        blocks: usize,
    },
    /// The uniform policy's interval was 0.
    #[error("uniform cache interval must be at least 1, got 0")]
    UniformInterval,
    /// The gamma clip bound was below 1 or not finite.
    #[error("gamma_max must be a finite number >= 1, got {0}")]
    GammaMax(f64),
    /// A generation of zero steps.
    #[error("a generation needs at least one denoising step")]
    NoSteps,
    /// A model without blocks.
    #[error("the model has no transformer blocks to cache")]
    NoBlocks,
    /// A transformer call for a step outside the generation.
    #[error("step {step} is outside the generation's {num_steps} steps")]
    StepOutOfRange {
        /// The step asked for.
        step: usize,
        /// The number of steps of the generation.
        num_steps: usize,
    },
    /// The rows named for a call do not match its batch, or name one row twice.
    #[error("a call of {batch} batch rows was given {rows} row keys (one per row, none twice)")]
    Rows {
        /// Row keys given.
        rows: usize,
        /// Batch rows of the call.
        batch: usize,
    },
    /// One batch-wide decision would cover rows at different denoising steps.
    #[error(
        "a batch-wide cache decision covers rows at steps {first} and {other}: rows at \
         different steps need per-sample decisions (cache scope sample)"
    )]
    MixedSteps {
        /// The step of the decision's first row.
        first: usize,
        /// A step of another of its rows.
        other: usize,
    },
    /// A sample key admitted while it is in use.
    #[error("sample {0} is already in the session; release it before admitting it again")]
    SampleInUse(usize),
    /// A setting given to a policy that does not take it.
    #[error("{knob} does not apply to cache policy {policy}")]
    Knob {
        /// The setting (`threshold`, `probe_depth`, `warmup_ratio`, `interval`).
        knob: &'static str,
        /// The policy's name.
        policy: &'static str,
    },
    /// A policy name that does not exist.
    #[error("unknown cache policy {0:?} (expected none, uniform, fbcache or dicache)")]
    UnknownPolicy(String),
    /// The backend failed to finish the call's work.
    #[error("backend error while running the transformer: {0}")]
    Backend(String),
}
