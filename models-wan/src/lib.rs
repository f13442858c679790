//! WAN 2.1 text-to-video diffusion transformer in Burn, a faithful port of diffusers'
//! `WanTransformer3DModel`, with the [`dicache_core::CacheableModel`] interface so the cache
//! engine can probe and skip its blocks.
//!
//! The video tokens are the only stream: the cached state is the token sequence itself. With
//! classifier-free guidance the conditional and unconditional passes are separate calls, each
//! with its own cache state in a [`dicache_core::CacheSession`] (`Pass::Cond` /
//! `Pass::Uncond`).
//!
//! Loads like every transformer of the workspace ([`DiffusionTransformer`]): diffusers folders,
//! Wan's original single files (the [`Layout::Original`], [`WanOriginalLayout`]) and random
//! weights for benchmarks.

mod attention;
mod block;
mod condition;
mod config;
mod input;
mod model;
mod original;
pub mod pipeline;

pub use attention::WanAttention;
pub use block::WanTransformerBlock;
pub use condition::{BLOCK_MODULATIONS, ConditionEmbedder};
pub use config::{QK_NORM_ACROSS_HEADS, ROPE_THETA, WAN21_HEAD_DIM, WanConfig};
pub use dit_layers::{DiffusionTransformer, FromParams, InputError, Layout, TransformerConfig};
pub use input::{CheckedInput, WanInput, WanPrepared};
pub use model::{WanContext, WanTransformer};
pub use original::{WanOriginalLayout, original_name};
pub use pipeline::{WanOutput, WanPipeline, WanRequest};
