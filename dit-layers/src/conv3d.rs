//! 3-D convolutions from PyTorch-layout weights.

use burn::{
    module::Param,
    nn::{
        PaddingConfig3d,
        conv::{Conv3d, Conv3dConfig},
    },
    tensor::backend::Backend,
};

use crate::{LoadError, WeightsView};

/// `nn.Conv3d(c_in, c_out, kernel, stride=1, padding)` with one group, stored under `w`
/// (`weight` `[c_out, c_in, kt, kh, kw]`, `bias` `[c_out]`); `kernel` and `padding` are
/// `[time, height, width]`, the padding symmetric on each axis (causal padding is the caller's).
///
/// The returned layer maps `[batch, c_in, t, h, w]` to `[batch, c_out, t', h', w']` with
/// `t' = t + 2 * padding[0] - kernel[0] + 1` and likewise for `h'`, `w'`.
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
    let [pt, ph, pw] = padding;
    Ok(Conv3d {
        weight: Param::from_tensor(weight),
        bias,
        stride: [1, 1, 1],
        kernel_size: kernel,
        dilation: [1, 1, 1],
        groups: 1,
        padding: PaddingConfig3d::Explicit(pt, ph, pw),
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
    Conv3dConfig::new([c_in, c_out], kernel)
        .with_padding(PaddingConfig3d::Explicit(pt, ph, pw))
        .with_bias(bias)
        .init(device)
}
