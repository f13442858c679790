//! FLUX.1 (dev, schnell) diffusion transformer in Burn, a faithful port of diffusers'
//! `FluxTransformer2DModel`, with the [`dicache_core::CacheableModel`] interface so the cache
//! engine can probe and skip its blocks.
//!
//! Loads diffusers folders ([`FluxTransformer::load_diffusers`]) and Black Forest Labs' single
//! files ([`FluxTransformer::load_bfl`]); [`FluxTransformer::random`] builds a model of any
//! [`FluxConfig`] with random weights for benchmarks. [`FluxPipeline`] runs the whole
//! prompt-to-image pipeline from a diffusers-layout folder.

mod bfl;
mod config;
mod input;
mod latents;
mod model;
pub mod pipeline;

pub use bfl::BflCheckpoint;
pub use config::{FluxConfig, MLP_RATIO, ROPE_THETA};
pub use dit_layers::{
    AdaLayerNormContinuous, AdaLayerNormZero, AdaLayerNormZeroSingle, DualStreamBlock, FeedForward,
    JointAttention, Modulation, QkvProjection, SingleAttention, SingleStreamBlock,
};
pub use input::{CheckedInput, FluxInput, InputError};
pub use model::{FluxContext, FluxState, FluxTransformer, Layout};
pub use pipeline::{FluxOutput, FluxPipeline, FluxRequest};
