//! Samplers of the diffusion pipelines, configured from diffusers' `scheduler_config.json` and
//! matching diffusers' numbers (f32 where diffusers computes in f32, f64 where it uses NumPy's
//! float64), so a Rust pipeline walks the same timesteps as the reference.

mod error;
mod flow_match_euler;
mod linspace;

pub use error::SchedulerError;
pub use flow_match_euler::{
    FlowMatchEulerDiscreteConfig, FlowMatchEulerDiscreteScheduler, TimeShiftType, calculate_shift,
};
pub use linspace::linspace;
