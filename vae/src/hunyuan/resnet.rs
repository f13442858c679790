//! diffusers' `HunyuanVideoResnetBlockCausal3D`: two causal 3x3x3 convolutions behind group
//! norms and SiLU.

use burn::{
    module::Module,
    nn::GroupNorm,
    tensor::{Tensor, activation::silu, backend::Backend},
};
use dit_layers::{LoadError, WeightsView, group_norm};

use super::causal_conv::CausalConv3d;

/// Epsilon of every group norm in the decoder.
pub const EPS: f64 = 1e-6;

/// `conv2(silu(norm2(conv1(silu(norm1(x)))))) + skip(x)`, the skip a 1x1x1 causal
/// `conv_shortcut` when the channel count changes (dropout is inactive in inference). The group
/// norms pool each group over all frames of the clip.
#[derive(Module, Debug)]
pub struct ResnetBlock<B: Backend> {
    norm1: GroupNorm<B>,
    conv1: CausalConv3d<B>,
    norm2: GroupNorm<B>,
    conv2: CausalConv3d<B>,
    conv_shortcut: Option<CausalConv3d<B>>,
}

impl<B: Backend> ResnetBlock<B> {
    /// Loads the block under `w` mapping `c_in` to `c_out` channels with `groups` norm groups.
    pub fn load(
        w: &WeightsView<'_>,
        (c_in, c_out): (usize, usize),
        groups: usize,
        device: &B::Device,
    ) -> Result<Self, LoadError> {
        let conv_shortcut = if c_in == c_out {
            None
        } else {
            Some(CausalConv3d::load(
                &w.at("conv_shortcut"),
                (c_in, c_out),
                1,
                device,
            )?)
        };
        Ok(Self {
            norm1: group_norm(&w.at("norm1"), groups, c_in, EPS, device)?,
            conv1: CausalConv3d::load(&w.at("conv1"), (c_in, c_out), 3, device)?,
            norm2: group_norm(&w.at("norm2"), groups, c_out, EPS, device)?,
            conv2: CausalConv3d::load(&w.at("conv2"), (c_out, c_out), 3, device)?,
            conv_shortcut,
        })
    }

    /// `[batch, c_in, t, h, w]` → `[batch, c_out, t, h, w]`.
    pub fn forward(&self, x: Tensor<B, 5>) -> Tensor<B, 5> {
        let h = self.conv1.forward(silu(self.norm1.forward(x.clone())));
        let h = self.conv2.forward(silu(self.norm2.forward(h)));
        let skip = match &self.conv_shortcut {
            Some(conv) => conv.forward(x),
            None => x,
        };
        h + skip
    }
}
