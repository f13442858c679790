//! 2-D convolutions from PyTorch-layout weights.

use burn::{
    module::{Module, Param},
    nn::{PaddingConfig2d, conv::Conv2dConfig},
    tensor::{Tensor, backend::Backend, module::conv2d as burn_conv2d, ops::ConvOptions},
};

use crate::{LoadError, WeightsView};

/// `nn.Conv2d(c_in, c_out, kernel, stride=1, padding)` with a square kernel and one group: maps
/// `[batch, c_in, h, w]` to `[batch, c_out, h + 2 * padding - kernel + 1, w + 2 * padding -
/// kernel + 1]`. On Burn's Flex CPU backend in f32 it runs as a one-frame 3-D convolution
/// (`cpu::conv`); elsewhere as Burn's convolution.
#[derive(Module, Debug)]
pub struct Conv2d<B: Backend> {
    /// `[c_out, c_in, kernel, kernel]` (`weight`).
    pub weight: Param<Tensor<B, 4>>,
    /// `[c_out]` (`bias`), if the layer has one.
    pub bias: Option<Param<Tensor<B, 1>>>,
    /// Zeros on each side of both spatial axes.
    pub padding: usize,
}

impl<B: Backend> Conv2d<B> {
    /// The convolution of `x` `[batch, c_in, h, w]`.
    pub fn forward(&self, x: Tensor<B, 4>) -> Tensor<B, 4> {
        let bias = self.bias.as_ref().map(Param::val);
        #[cfg(feature = "flex")]
        let x = {
            let weight = self.weight.val().unsqueeze_dim(2);
            let padding = [0, self.padding, self.padding];
            match crate::cpu::conv::try_conv3d(x.unsqueeze_dim(2), &weight, bias.as_ref(), padding)
            {
                Ok(y) => return y.squeeze_dim(2),
                Err(x) => x.squeeze_dim(2),
            }
        };
        let padding = [self.padding; 2];
        let options = ConvOptions::new([1, 1], padding, [1, 1], 1);
        burn_conv2d(x, self.weight.val(), bias, options)
    }
}

/// The [`Conv2d`] `nn.Conv2d(c_in, c_out, kernel, padding=padding)` stored under `w` (`weight`
/// `[c_out, c_in, kernel, kernel]`, `bias` `[c_out]`).
pub fn conv2d<B: Backend>(
    w: &WeightsView<'_>,
    c_in: usize,
    c_out: usize,
    kernel: usize,
    padding: usize,
    bias: bool,
    device: &B::Device,
) -> Result<Conv2d<B>, LoadError> {
    let weight = w.tensor::<B, 4>("weight", [c_out, c_in, kernel, kernel], device)?;
    let bias = if bias {
        Some(Param::from_tensor(w.tensor::<B, 1>(
            "bias",
            [c_out],
            device,
        )?))
    } else {
        None
    };
    Ok(Conv2d {
        weight: Param::from_tensor(weight),
        bias,
        padding,
    })
}

/// A fresh [`conv2d`] layer of the same shape: weight and bias Kaiming-uniform as PyTorch
/// initialises `nn.Conv2d` (bound `1 / sqrt(c_in * kernel²)`).
pub(crate) fn conv2d_random<B: Backend>(
    c_in: usize,
    c_out: usize,
    kernel: usize,
    padding: usize,
    bias: bool,
    device: &B::Device,
) -> Conv2d<B> {
    let layer = Conv2dConfig::new([c_in, c_out], [kernel, kernel])
        .with_padding(PaddingConfig2d::Explicit(
            padding, padding, padding, padding,
        ))
        .with_bias(bias)
        .init(device);
    Conv2d {
        weight: layer.weight,
        bias: layer.bias,
        padding,
    }
}
