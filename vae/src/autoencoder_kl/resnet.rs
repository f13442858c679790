//! diffusers' `ResnetBlock2D` as the VAE uses it: no time embedding, output scale 1.

use burn::{
    module::Module,
    tensor::{Tensor, backend::Backend},
};
use dit_layers::{Conv2d, GroupNorm, LoadError, ModelParams, silu};

/// `x + conv2(silu(norm2(conv1(silu(norm1(x))))))`, the skip through a 1x1 `conv_shortcut`
/// when the channel count changes.
#[derive(Module, Debug)]
pub struct ResnetBlock2d<B: Backend> {
    norm1: GroupNorm<B>,
    conv1: Conv2d<B>,
    norm2: GroupNorm<B>,
    conv2: Conv2d<B>,
    conv_shortcut: Option<Conv2d<B>>,
}

impl<B: Backend> ResnetBlock2d<B> {
    /// Builds the block mapping `c_in` to `c_out` channels from `src`.
    pub fn new(
        src: &ModelParams<'_, B>,
        (c_in, c_out): (usize, usize),
        groups: usize,
        eps: f64,
    ) -> Result<Self, LoadError> {
        let conv_shortcut = (c_in != c_out)
            .then(|| src.conv2d("conv_shortcut", (c_in, c_out), 1, 0, true))
            .transpose()?;
        Ok(Self {
            norm1: src.group_norm("norm1", groups, c_in, eps)?,
            conv1: src.conv2d("conv1", (c_in, c_out), 3, 1, true)?,
            norm2: src.group_norm("norm2", groups, c_out, eps)?,
            conv2: src.conv2d("conv2", (c_out, c_out), 3, 1, true)?,
            conv_shortcut,
        })
    }

    /// `[batch, c_in, h, w]` → `[batch, c_out, h, w]`.
    pub fn forward(&self, x: Tensor<B, 4>) -> Tensor<B, 4> {
        let h = self.conv1.forward(silu(self.norm1.forward(x.clone())));
        let h = self.conv2.forward(silu(self.norm2.forward(h)));
        let skip = match &self.conv_shortcut {
            Some(conv) => conv.forward(x),
            None => x,
        };
        skip + h
    }
}
