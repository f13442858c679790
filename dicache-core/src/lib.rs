//! DiCache: training-free, per-sample adaptive caching for diffusion transformers.
//!
//! The engine knows no model. A model implements [`CacheableModel`] (embed, run a range of
//! blocks, name the cached image stream, finish with the head); a [`CacheSession`] created per
//! generation then drives every transformer call of that generation with the chosen
//! [`CachePolicy`], keeping one independent cache state per sample and classifier-free-guidance
//! [`Pass`] and recording a [`Trace`] entry per call in each sample's trace. In a batch every
//! sample decides for itself ([`CacheScope::Sample`]): the probe runs on the whole batch, the
//! deep blocks only on the samples that compute.
//!
//! The DiCache policy implements the two parts of the paper (arXiv 2508.17356):
//! *Online Probe Profiling* (run the first `m` blocks, accumulate the relative L1 change of the
//! probe output, skip the deep blocks while it stays under a threshold) and *Dynamic Cache
//! Trajectory Alignment* (extrapolate the deep residual from the last two cached residuals,
//! with a step size read off the probe residual trajectory).

mod error;
mod metrics;
mod model;
mod policy;
mod rows;
mod session;
mod trace;
mod window;

pub use error::CacheError;
pub use metrics::{mean_abs, relative_l1, row_mean_abs};
pub use model::CacheableModel;
pub use policy::{
    CachePolicy, Comparison, DiCacheConfig, FirstBlockConfig, Indicator, PolicyKnobs,
    UniformConfig, Warmup,
};
pub use rows::{BatchRows, CacheScope, JoinRows, Row};
pub use session::{CacheSession, CacheSettings};
pub use trace::{CallTiming, HeadClasses, Pass, Trace, TraceEntry, TraceSummary};
