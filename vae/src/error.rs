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
    /// Images that are not `[batch, 3, height, width]`.
    #[error("images have shape {found:?}; RGB conversion takes [batch, 3, height, width]")]
    ImageShape {
        /// The shape passed.
        found: Vec<usize>,
    },
}
