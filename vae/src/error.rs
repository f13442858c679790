//! Errors of loading a VAE and of decoding.

use dit_layers::LoadError;
use thiserror::Error;

/// A VAE that cannot be loaded, or an input it cannot take.
#[derive(Debug, Error)]
pub enum VaeError {
    /// The configuration or the weights could not be loaded (names the file and key).
    #[error(transparent)]
    Load(#[from] LoadError),
    /// Latents whose channel count differs from the configuration's, or an empty grid.
    #[error(
        "latents have shape {found:?}; the decoder takes [batch, {channels}, height, width] with \
         a non-empty grid"
    )]
    LatentShape {
        /// The configuration's `latent_channels`.
        channels: usize,
        /// The shape passed.
        found: Vec<usize>,
    },
    /// Video latents whose channel count differs from the configuration's, or with an empty
    /// axis.
    #[error(
        "latents have shape {found:?}; the video decoder takes [batch, {channels}, frames, \
         height, width] with no empty axis"
    )]
    VideoLatentShape {
        /// The configuration's `z_dim` (WAN) or `latent_channels` (HunyuanVideo).
        channels: usize,
        /// The shape passed.
        found: Vec<usize>,
    },
    /// Tile sizes tiled decoding cannot use (names the axis).
    #[error("tiled decoding: {0}")]
    Tiles(String),
    /// Videos that are not `[batch, 3, frames, height, width]`.
    #[error("videos have shape {found:?}; RGB conversion takes [batch, 3, frames, height, width]")]
    VideoShape {
        /// The shape passed.
        found: Vec<usize>,
    },
    /// Images that are not `[batch, 3, height, width]`.
    #[error("images have shape {found:?}; RGB conversion takes [batch, 3, height, width]")]
    ImageShape {
        /// The shape passed.
        found: Vec<usize>,
    },
}
