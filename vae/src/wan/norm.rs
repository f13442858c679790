//! diffusers' `WanRMS_norm`: RMS normalisation over the channels of every pixel.

use burn::{
    module::{Module, Param},
    tensor::{Tensor, backend::Backend},
};
use dit_layers::{LoadError, ModelParams};

/// Smallest norm `F.normalize` divides by.
const NORMALIZE_EPS: f64 = 1e-12;

/// `x / max(‖x‖₂, 1e-12) * sqrt(channels) * gamma` with the L2 norm over the channel axis
/// (axis 1) of `[batch, channels, ...]`, as diffusers' `WanRMS_norm` with `channel_first` and
/// no bias (the WAN VAE's only use) computes it.
#[derive(Module, Debug)]
pub struct WanRmsNorm<B: Backend> {
    /// Per-channel scale `[channels]`.
    gamma: Param<Tensor<B, 1>>,
    /// `sqrt(channels)`.
    scale: f64,
}

impl<B: Backend> WanRmsNorm<B> {
    /// Builds the norm from `src`'s `gamma`, stored `[channels, 1, 1, 1]` for video tensors
    /// (diffusers' `images=False`) or `[channels, 1, 1]` for frames (`images=True`); ones when
    /// random.
    pub fn new(src: &ModelParams<'_, B>, channels: usize, images: bool) -> Result<Self, LoadError> {
        let gamma = if images {
            src.norm_scale("gamma", [channels, 1, 1])?
                .reshape([channels])
        } else {
            src.norm_scale("gamma", [channels, 1, 1, 1])?
                .reshape([channels])
        };
        Ok(Self {
            gamma: Param::from_tensor(gamma),
            scale: (channels as f64).sqrt(),
        })
    }

    /// Normalises `x` `[batch, channels, ...]` over axis 1; same shape out.
    pub fn forward<const D: usize>(&self, x: Tensor<B, D>) -> Tensor<B, D> {
        let norm = x
            .clone()
            .square()
            .sum_dim(1)
            .sqrt()
            .clamp_min(NORMALIZE_EPS);
        let mut gamma_shape = [1; D];
        gamma_shape[1] = self.gamma.dims()[0];
        (x / norm).mul_scalar(self.scale) * self.gamma.val().reshape(gamma_shape)
    }
}
