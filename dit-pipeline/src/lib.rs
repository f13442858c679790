//! What the diffusion pipelines (FLUX, WAN, HunyuanVideo) share: one request and output shape
//! and the [`Pipeline`] trait, the denoising loop ([`denoise`]: timesteps, guidance passes each
//! with its cache state, progress, timing), finding the components of a diffusers-layout
//! pipeline folder, CLIP's pooled prompt embedding, one error type naming the component or
//! setting at fault, the checks of a request, and wall-clock timing on asynchronous backends.

mod clip;
mod denoise;
mod error;
mod folder;
mod pipeline;
mod request;
mod timing;

pub use clip::ClipPooled;
pub use denoise::{Denoised, Passes, denoise};
pub use error::PipelineError;
pub use folder::PipelineFolder;
pub use pipeline::{Output, Pipeline, Request, Settings};
pub use request::{
    LatentGeometry, check_max_sequence_length, check_noise_shape, check_pixel_size, check_steps,
    latent_frames,
};
pub use timing::elapsed_synced;
