//! HunyuanVideo (v1) text-to-video diffusion transformer in Burn, a faithful port of diffusers'
//! `HunyuanVideoTransformer3DModel`, with the [`dicache_core::CacheableModel`] interface so the
//! cache engine can probe and skip its blocks.
//!
//! The text encoder's hidden states are refined by a small transformer (the token refiner);
//! video and text tokens then pass dual-stream blocks (separate weights, joint attention) and
//! single-stream blocks over `[video; text]`, padded text tokens masked out as keys. The cached
//! stream is the video tokens. HunyuanVideo is guidance-distilled: one call per denoising step
//! (`Pass::Single`).
//!
//! Loads diffusers folders ([`HunyuanVideoTransformer::load_diffusers`]) and single files in
//! Tencent's original layout ([`HunyuanVideoTransformer::load_original`]);
//! [`HunyuanVideoTransformer::random`] builds a model of any [`HunyuanVideoConfig`] with random
//! weights for benchmarks.

mod config;
mod input;
mod model;
mod original;
pub mod pipeline;
mod refiner;
mod text_mask;

pub use config::{HunyuanVideoConfig, QK_NORM_RMS, REFINER_MLP_RATIO};
pub use dit_layers::{DualStreamBlock, JointAttention, SingleAttention, SingleStreamBlock};
pub use input::{CheckedInput, HunyuanVideoInput, InputError};
pub use model::{HunyuanVideoContext, HunyuanVideoState, HunyuanVideoTransformer};
pub use original::{Layout, OriginalLayout};
pub use pipeline::{HunyuanVideoOutput, HunyuanVideoPipeline, HunyuanVideoRequest};
pub use refiner::{RefinerAttention, RefinerBlock, TokenRefiner};
pub use text_mask::TextMask;
