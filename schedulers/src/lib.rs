//! Samplers of the diffusion pipelines (flow-match Euler for FLUX.1 and HunyuanVideo, UniPC for
//! WAN 2.1), configured from diffusers' `scheduler_config.json` and matching diffusers' numbers
//! (f32 where diffusers computes in f32, f64 where it uses NumPy's float64), so a Rust pipeline
//! walks the same timesteps as the reference.

mod config_file;
mod error;
mod flow_match_euler;
mod linspace;
mod sampler;
mod unipc;
mod unipc_coefficients;
mod unipc_config;

pub use error::SchedulerError;
pub use flow_match_euler::{
    FlowMatchEulerDiscreteConfig, FlowMatchEulerDiscreteScheduler, TimeShiftType, calculate_shift,
};
pub use linspace::linspace;
pub use sampler::Sampler;
pub use unipc::UniPcMultistepScheduler;
pub use unipc_config::{FinalSigmasType, SolverType, UniPcMultistepConfig};
