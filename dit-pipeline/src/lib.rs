//! What the diffusion pipelines (FLUX, WAN, HunyuanVideo) share: finding the components of a
//! diffusers-layout pipeline folder, one error type naming the component or setting at fault,
//! the checks of a request, and wall-clock timing on asynchronous backends.

mod error;
mod folder;
mod request;
mod timing;

pub use error::PipelineError;
pub use folder::PipelineFolder;
pub use request::{
    check_max_sequence_length, check_noise_shape, check_pixel_size, check_steps, check_video_size,
    latent_frames,
};
pub use timing::elapsed_synced;
