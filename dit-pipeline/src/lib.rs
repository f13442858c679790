//! What the diffusion pipelines (FLUX, WAN, HunyuanVideo) share: one request and output shape
//! and the [`Pipeline`] trait, the denoising loop ([`Denoising`]: jobs joining and leaving at step
//! boundaries, timesteps, guidance passes, one cache state per sample and pass, progress), finding the components of a diffusers-layout
//! pipeline folder (its `model_index.json` and the defaults it may carry), CLIP's pooled prompt
//! embedding, one error type naming the component or setting at fault, the checks of a request
//! (sizes, steps, guidance, prompt length, the noise, NaN and infinity at every stage, the
//! memory it needs), and wall-clock timing on asynchronous backends.

mod clip;
mod denoise;
mod encoders;
mod error;
mod finite;
mod folder;
mod memory;
mod pipeline;
mod request;
mod timing;

pub use clip::ClipPooled;
pub use denoise::{
    Denoise, Denoising, Ended, Finished, GuidanceCalls, Job, JobId, Passes, Progress, decode_each,
};
pub use encoders::{EncoderResidency, TextEncoders};
pub use error::PipelineError;
pub use finite::{check_finite, check_noise_values};
pub use folder::{DEFAULTS_FILE, LoadOptions, PipelineFolder};
pub use memory::{ModelSizes, WorkingSet, available_memory, check_weights, describe};
pub use pipeline::{Output, Pipeline, Prompt, Request, Settings};
pub use request::{
    LatentGeometry, MAX_BATCH, MAX_GUIDANCE, MAX_NOISE, MAX_STEPS, check_batch,
    check_guidance_scale, check_max_sequence_length, check_noise_shape, check_pixel_size,
    check_steps, latent_frames,
};
pub use timing::elapsed_synced;
