//! diffusers' `HunyuanVideoCausalConv3d`: a 3-D convolution over edge-padded input, causal in
//! time.

use burn::{
    module::Module,
    tensor::{Tensor, backend::Backend, ops::PadMode},
};
use dit_layers::{Conv3d, LoadError, ModelParams};

/// A cubic `kernel`³ convolution (weights under `conv`) that keeps the frame count and the
/// frame size: the input is padded by repeating its edge values, `kernel - 1` copies of the
/// first frame before the clip (none after it, so frame `t` sees only frames `..= t`) and
/// `kernel / 2` copies of the border pixels on every spatial side.
#[derive(Module, Debug)]
pub struct CausalConv3d<B: Backend> {
    conv: Conv3d<B>,
    /// `kernel - 1` frames before the clip.
    past: usize,
    /// `kernel / 2` cells on each spatial side.
    border: usize,
}

impl<B: Backend> CausalConv3d<B> {
    /// Builds the convolution from `src` (`conv.weight` `[c_out, c_in, k, k, k]`, `conv.bias`).
    pub fn new(
        src: &ModelParams<'_, B>,
        channels: (usize, usize),
        kernel: usize,
    ) -> Result<Self, LoadError> {
        Ok(Self {
            conv: src.conv3d("conv", channels, [kernel; 3], [0, 0, 0], true)?,
            past: kernel - 1,
            border: kernel / 2,
        })
    }

    /// `[batch, c_in, t, h, w]` → `[batch, c_out, t, h, w]` (odd kernels).
    pub fn forward(&self, x: Tensor<B, 5>) -> Tensor<B, 5> {
        let (p, b) = (self.past, self.border);
        let padded = if p == 0 && b == 0 {
            x
        } else {
            x.pad([(p, 0), (b, b), (b, b)], PadMode::Edge)
        };
        self.conv.forward(padded)
    }
}
