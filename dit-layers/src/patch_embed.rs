//! Video patch embedding: `nn.Conv3d(c_in, c_out, kernel_size=patch, stride=patch)`, the
//! patchify layer of WAN (`patch_embedding`) and HunyuanVideo (`x_embedder.proj`).
//!
//! With kernel = stride the convolution sees each patch once, so it is exactly a linear layer on
//! the unfolded patches: one matrix product instead of a convolution kernel.

use burn::{
    module::{Module, Param},
    nn::{Linear, LinearConfig},
    tensor::{Tensor, backend::Backend},
};
use thiserror::Error;

use crate::{LoadError, WeightsView};

/// A video whose size is not a multiple of the patch.
#[derive(Debug, Error, PartialEq)]
#[error(
    "video of {frames} frames x {height} x {width} (frames x height x width) is not divisible by the patch {patch:?}"
)]
pub struct PatchError {
    /// Frames of the input.
    pub frames: usize,
    /// Height of the input.
    pub height: usize,
    /// Width of the input.
    pub width: usize,
    /// The patch (frames, height, width).
    pub patch: [usize; 3],
}

/// `Conv3d(in_channels, out_channels, kernel_size=patch, stride=patch)` applied as a linear
/// layer to the flattened patches (channel-major within a patch, as the conv weight is stored).
#[derive(Module, Debug)]
pub struct PatchEmbed3d<B: Backend> {
    /// The conv weight flattened to `[in_channels * pt * ph * pw -> out_channels]`, with bias.
    pub proj: Linear<B>,
    /// The patch (frames, height, width).
    pub patch: [usize; 3],
    /// Input channels.
    pub in_channels: usize,
}

impl<B: Backend> PatchEmbed3d<B> {
    /// Loads the conv stored under `w` (`weight` `[c_out, c_in, pt, ph, pw]`, `bias` `[c_out]`).
    pub fn load(
        w: &WeightsView<'_>,
        in_channels: usize,
        out_channels: usize,
        patch: [usize; 3],
        device: &B::Device,
    ) -> Result<Self, LoadError> {
        let [pt, ph, pw] = patch;
        let weight = w.tensor::<B, 5>("weight", [out_channels, in_channels, pt, ph, pw], device)?;
        let bias = w.tensor::<B, 1>("bias", [out_channels], device)?;
        let fan_in = in_channels * pt * ph * pw;
        Ok(Self {
            proj: Linear {
                weight: Param::from_tensor(weight.reshape([out_channels, fan_in]).transpose()),
                bias: Some(Param::from_tensor(bias)),
            },
            patch,
            in_channels,
        })
    }

    /// Random weights from Burn's linear initialiser over the patch's `in_channels * pt * ph *
    /// pw` inputs (Kaiming-uniform, like PyTorch's conv default).
    pub fn random(
        in_channels: usize,
        out_channels: usize,
        patch: [usize; 3],
        device: &B::Device,
    ) -> Self {
        let fan_in = in_channels * patch.iter().product::<usize>();
        Self {
            proj: LinearConfig::new(fan_in, out_channels).init(device),
            patch,
            in_channels,
        }
    }

    /// The token grid (frames, height, width after patching) of a video of
    /// `[frames, height, width]`; fails unless the patch divides each.
    pub fn grid(&self, [frames, height, width]: [usize; 3]) -> Result<[usize; 3], PatchError> {
        let [pt, ph, pw] = self.patch;
        if frames % pt != 0 || height % ph != 0 || width % pw != 0 {
            return Err(PatchError {
                frames,
                height,
                width,
                patch: self.patch,
            });
        }
        Ok([frames / pt, height / ph, width / pw])
    }

    /// Embeds `x` `[batch, in_channels, frames, height, width]` into tokens
    /// `[batch, f * h * w, out_channels]` in (frame, row, column) order, with the grid
    /// `[f, h, w]`; as the conv's `flatten(2).transpose(1, 2)`.
    pub fn forward(&self, x: Tensor<B, 5>) -> Result<(Tensor<B, 3>, [usize; 3]), PatchError> {
        let [batch, channels, frames, height, width] = x.dims();
        let [f, h, w] = self.grid([frames, height, width])?;
        let [pt, ph, pw] = self.patch;
        let patches = x
            .reshape([batch, channels, f, pt, h, ph, w, pw])
            .permute([0, 2, 4, 6, 1, 3, 5, 7])
            .reshape([batch, f * h * w, channels * pt * ph * pw]);
        Ok((self.proj.forward(patches), [f, h, w]))
    }
}

#[cfg(test)]
mod tests {
    use super::{PatchEmbed3d, PatchError};

    #[test]
    fn grid_divides_by_the_patch_or_fails() {
        let device = Default::default();
        let embed = PatchEmbed3d::<burn_flex::Flex>::random(4, 8, [1, 2, 2], &device);
        assert_eq!(embed.grid([21, 60, 104]), Ok([21, 30, 52]));
        let err = embed.grid([3, 5, 4]).unwrap_err();
        assert_eq!(
            err,
            PatchError {
                frames: 3,
                height: 5,
                width: 4,
                patch: [1, 2, 2]
            }
        );
        assert!(err.to_string().contains("[1, 2, 2]"), "{err}");
    }
}
