//! VAE decoders of the diffusion pipelines, in Burn: latents in, images out.
//!
//! - [`AutoencoderKl`]: diffusers' `AutoencoderKL` decoder (FLUX.1, SD-family), loaded from a
//!   diffusers `vae/` folder (`config.json` + safetensors).
//! - [`WanVae`]: diffusers' `AutoencoderKLWan` decoder (WAN 2.1's causal 3-D VAE), decoding
//!   latent clips frame by frame with the causal feature cache, as diffusers does.
//! - [`HunyuanVideoVae`]: diffusers' `AutoencoderKLHunyuanVideo` decoder (HunyuanVideo's causal
//!   3-D VAE), decoding whole clips or, as diffusers' tiled decoding, overlapping tiles in
//!   space and time ([`TileConfig`]).
//! - [`to_rgb8`]: a decoded `[-1, 1]` image batch as 8-bit RGB pixels, rounded as diffusers'
//!   image post-processing rounds them; [`video_to_rgb8`] the same for videos.
//!
//! Each decoder loads from a diffusers `vae/` folder (`load`), or is built with random weights
//! (`random(&config, device)`) by the same constructor (`new`, over a
//! [`dit_layers::ModelParams`]).

mod autoencoder_kl;
mod checkpoint;
mod decoder_config;
mod error;
mod hunyuan;
mod rgb8;
mod wan;

pub use autoencoder_kl::{AutoencoderKl, AutoencoderKlConfig, DecoderStage};
pub use error::VaeError;
pub use hunyuan::{
    HunyuanVideoVae, HunyuanVideoVaeConfig, SpatialTiles, TemporalTiles, TileConfig,
};
pub use rgb8::{Rgb8Image, to_rgb8};
pub use wan::{WanVae, WanVaeConfig, video_to_rgb8};
