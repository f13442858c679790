//! 3-D convolutions from PyTorch-layout weights.

use burn::{
    module::{Module, Param},
    nn::{PaddingConfig3d, conv::Conv3dConfig},
    tensor::{Tensor, backend::Backend, module::conv3d as burn_conv3d, ops::ConvOptions},
};

use crate::{LoadError, WeightsView};

/// `nn.Conv3d(c_in, c_out, kernel, stride=1, padding)` with one group: maps `[batch, c_in, t,
/// h, w]` to `[batch, c_out, t', h', w']` with `t' = t + 2 * padding[0] - kernel[0] + 1` and
/// likewise for `h'`, `w'`. On Burn's Flex CPU backend in f32 it runs as one matrix product per
/// band of output rows (`cpu::conv`); elsewhere as Burn's convolution.
#[derive(Module, Debug)]
pub struct Conv3d<B: Backend> {
    /// `[c_out, c_in, kt, kh, kw]` (`weight`).
    pub weight: Param<Tensor<B, 5>>,
    /// `[c_out]` (`bias`), if the layer has one.
    pub bias: Option<Param<Tensor<B, 1>>>,
    /// Zeros on both sides of `[time, height, width]` (causal padding is the caller's).
    pub padding: [usize; 3],
}

impl<B: Backend> Conv3d<B> {
    /// The convolution of `x` `[batch, c_in, t, h, w]`.
    pub fn forward(&self, x: Tensor<B, 5>) -> Tensor<B, 5> {
        let bias = self.bias.as_ref().map(Param::val);
        #[cfg(feature = "flex")]
        let x = match crate::cpu::conv::try_conv3d(
            x,
            &self.weight.val(),
            bias.as_ref(),
            self.padding,
        ) {
            Ok(y) => return y,
            Err(x) => x,
        };
        let options = ConvOptions::new([1, 1, 1], self.padding, [1, 1, 1], 1);
        burn_conv3d(x, self.weight.val(), bias, options)
    }
}

/// The [`Conv3d`] `nn.Conv3d(c_in, c_out, kernel, padding=padding)` stored under `w` (`weight`
/// `[c_out, c_in, kt, kh, kw]`, `bias` `[c_out]`); `kernel` and `padding` are `[time, height,
/// width]`.
pub fn conv3d<B: Backend>(
    w: &WeightsView<'_>,
    c_in: usize,
    c_out: usize,
    kernel: [usize; 3],
    padding: [usize; 3],
    bias: bool,
    device: &B::Device,
) -> Result<Conv3d<B>, LoadError> {
    let [kt, kh, kw] = kernel;
    let weight = w.tensor::<B, 5>("weight", [c_out, c_in, kt, kh, kw], device)?;
    let bias = if bias {
        Some(Param::from_tensor(w.tensor::<B, 1>(
            "bias",
            [c_out],
            device,
        )?))
    } else {
        None
    };
    Ok(Conv3d {
        weight: Param::from_tensor(weight),
        bias,
        padding,
    })
}

/// A fresh [`conv3d`] layer of the same shape: weight and bias Kaiming-uniform as PyTorch
/// initialises `nn.Conv3d` (bound `1 / sqrt(c_in * kt * kh * kw)`).
pub(crate) fn conv3d_random<B: Backend>(
    c_in: usize,
    c_out: usize,
    kernel: [usize; 3],
    padding: [usize; 3],
    bias: bool,
    device: &B::Device,
) -> Conv3d<B> {
    let [pt, ph, pw] = padding;
    let layer = Conv3dConfig::new([c_in, c_out], kernel)
        .with_padding(PaddingConfig3d::Explicit(pt, ph, pw))
        .with_bias(bias)
        .init(device);
    Conv3d {
        weight: layer.weight,
        bias: layer.bias,
        padding,
    }
}
