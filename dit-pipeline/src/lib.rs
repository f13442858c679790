//! What the diffusion pipelines (FLUX, WAN, HunyuanVideo) share: finding the components of a
//! diffusers-layout pipeline folder, and one error type naming the component or setting at
//! fault.

mod error;
mod folder;

pub use error::PipelineError;
pub use folder::PipelineFolder;
