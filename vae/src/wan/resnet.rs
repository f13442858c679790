//! diffusers' `WanResidualBlock`: two causal 3x3x3 convolutions behind RMS norms and SiLU.

use burn::{
    module::Module,
    nn::conv::Conv3d,
    tensor::{Tensor, activation::silu, backend::Backend},
};
use dit_layers::{LoadError, WeightsView, conv3d};

use super::{
    causal_conv::{CausalConv3d, FeatureCache},
    norm::WanRmsNorm,
};

/// `conv2(silu(norm2(conv1(silu(norm1(x)))))) + skip(x)`, the skip a 1x1x1 `conv_shortcut`
/// when the channel count changes (dropout is inactive in inference).
#[derive(Module, Debug)]
pub struct ResidualBlock<B: Backend> {
    norm1: WanRmsNorm<B>,
    conv1: CausalConv3d<B>,
    norm2: WanRmsNorm<B>,
    conv2: CausalConv3d<B>,
    conv_shortcut: Option<Conv3d<B>>,
}

impl<B: Backend> ResidualBlock<B> {
    /// Loads the block under `w` mapping `c_in` to `c_out` channels.
    pub fn load(
        w: &WeightsView<'_>,
        c_in: usize,
        c_out: usize,
        device: &B::Device,
    ) -> Result<Self, LoadError> {
        let conv_shortcut = if c_in == c_out {
            None
        } else {
            let w = w.at("conv_shortcut");
            Some(conv3d(&w, c_in, c_out, [1, 1, 1], [0, 0, 0], true, device)?)
        };
        Ok(Self {
            norm1: WanRmsNorm::load(&w.at("norm1"), c_in, false, device)?,
            conv1: CausalConv3d::load(&w.at("conv1"), (c_in, c_out), [3, 3, 3], 1, device)?,
            norm2: WanRmsNorm::load(&w.at("norm2"), c_out, false, device)?,
            conv2: CausalConv3d::load(&w.at("conv2"), (c_out, c_out), [3, 3, 3], 1, device)?,
            conv_shortcut,
        })
    }

    /// One chunk `[batch, c_in, t, h, w]` → `[batch, c_out, t, h, w]`, both convolutions
    /// continuing from their `cache` slots.
    pub fn forward(&self, x: Tensor<B, 5>, cache: &mut FeatureCache<B>) -> Tensor<B, 5> {
        let skip = match &self.conv_shortcut {
            Some(conv) => conv.forward(x.clone()),
            None => x.clone(),
        };
        let h = self
            .conv1
            .forward(silu(self.norm1.forward(x)), cache.next_slot());
        let h = self
            .conv2
            .forward(silu(self.norm2.forward(h)), cache.next_slot());
        h + skip
    }
}
