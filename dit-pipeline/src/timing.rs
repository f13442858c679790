//! Wall-clock timing of pipeline stages on asynchronous backends.

use std::time::{Duration, Instant};

use burn::tensor::backend::Backend;

use crate::PipelineError;

/// The wall time since `start`, read once the work queued on `device` has finished (wgpu and
/// CUDA run asynchronously; on the CPU the wait is free).
pub fn elapsed_synced<B: Backend>(
    start: Instant,
    device: &B::Device,
) -> Result<Duration, PipelineError> {
    B::sync(device).map_err(|e| PipelineError::Backend(format!("{e:?}")))?;
    Ok(start.elapsed())
}
