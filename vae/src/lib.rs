//! VAE decoders of the diffusion pipelines, in Burn: latents in, images out.
//!
//! - [`AutoencoderKl`]: diffusers' `AutoencoderKL` decoder (FLUX.1, SD-family), loaded from a
//!   diffusers `vae/` folder (`config.json` + safetensors).
//! - [`to_rgb8`]: a decoded `[-1, 1]` image batch as 8-bit RGB pixels, rounded as diffusers'
//!   image post-processing rounds them.

mod autoencoder_kl;
mod error;
mod rgb8;

pub use autoencoder_kl::{AutoencoderKl, AutoencoderKlConfig, DecoderStage};
pub use error::VaeError;
pub use rgb8::{Rgb8Image, to_rgb8};
