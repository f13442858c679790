//! FLUX.1 (dev, schnell) diffusion transformer in Burn, a faithful port of diffusers'
//! `FluxTransformer2DModel`, with the [`dicache_core::CacheableModel`] interface so the cache
//! engine can probe and skip its blocks.
//!
//! Loads like every transformer of the workspace ([`DiffusionTransformer`]): diffusers folders,
//! Black Forest Labs' single files (the [`Layout::Original`], [`BflLayout`]) and random weights
//! for benchmarks. [`FluxPipeline`] runs the whole prompt-to-image pipeline from a
//! diffusers-layout folder.

mod bfl;
mod config;
mod input;
mod latents;
mod model;
pub mod pipeline;

pub use bfl::BflLayout;
pub use config::{FluxConfig, MLP_RATIO, ROPE_THETA};
pub use dit_layers::{
    AdaLayerNormContinuous, AdaLayerNormZero, AdaLayerNormZeroSingle, DiffusionTransformer,
    DualStreamBlock, FeedForward, FromParams, InputError, JointAttention, Layout, MmditContext,
    MmditState, MmditTrunk, Modulation, QkvProjection, SingleAttention, SingleStreamBlock,
    TransformerConfig,
};
pub use input::{CheckedInput, FluxInput, FluxPrepared};
pub use model::FluxTransformer;
pub use pipeline::{FluxOutput, FluxPipeline, FluxRequest};
