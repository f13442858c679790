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
//! Loads like every transformer of the workspace ([`DiffusionTransformer`]): diffusers folders,
//! single files in Tencent's original layout (the [`Layout::Original`], [`OriginalLayout`]) and
//! random weights for benchmarks.

mod config;
mod input;
mod model;
mod original;
pub mod pipeline;
mod refiner;
mod text_mask;

pub use config::{HunyuanVideoConfig, QK_NORM_RMS, REFINER_MLP_RATIO};
pub use dit_layers::{
    DiffusionTransformer, DualStreamBlock, FromParams, InputError, JointAttention, Layout,
    SingleAttention, SingleStreamBlock, TransformerConfig,
};
pub use dit_layers::{MmditContext, MmditState, MmditTrunk};
pub use input::{CheckedInput, HunyuanVideoInput, HunyuanVideoPrepared};
pub use model::{HunyuanVideoContext, HunyuanVideoTransformer};
pub use original::OriginalLayout;
pub use pipeline::{HunyuanVideoOutput, HunyuanVideoPipeline, HunyuanVideoRequest};
pub use refiner::{RefinerAttention, RefinerBlock, TokenRefiner};
pub use text_mask::TextMask;
