//! 2-D convolutions from PyTorch-layout weights.

use burn::{
    module::Param,
    nn::{
        PaddingConfig2d,
        conv::{Conv2d, Conv2dConfig},
    },
    tensor::backend::Backend,
};

use crate::{LoadError, WeightsView};

/// `nn.Conv2d(c_in, c_out, kernel, stride=1, padding)` with a square kernel and one group,
/// stored under `w` (`weight` `[c_out, c_in, kernel, kernel]`, `bias` `[c_out]`).
///
/// The returned layer maps `[batch, c_in, h, w]` to
/// `[batch, c_out, h + 2 * padding - kernel + 1, w + 2 * padding - kernel + 1]`.
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
        stride: [1, 1],
        kernel_size: [kernel, kernel],
        dilation: [1, 1],
        groups: 1,
        padding: PaddingConfig2d::Explicit(padding, padding, padding, padding),
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
    Conv2dConfig::new([c_in, c_out], [kernel, kernel])
        .with_padding(PaddingConfig2d::Explicit(
            padding, padding, padding, padding,
        ))
        .with_bias(bias)
        .init(device)
}
