//! diffusers' `WanResidualBlock`: two causal 3x3x3 convolutions behind RMS norms and SiLU.

use burn::{
    module::Module,
    tensor::{Tensor, backend::Backend},
};
use dit_layers::{Conv3d, LoadError, ModelParams, ParamSource, silu};

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
    /// Builds the block mapping `c_in` to `c_out` channels from `src`.
    pub fn new(src: &ModelParams<'_, B>, (c_in, c_out): (usize, usize)) -> Result<Self, LoadError> {
        let conv_shortcut = (c_in != c_out)
            .then(|| src.conv3d("conv_shortcut", (c_in, c_out), [1, 1, 1], [0, 0, 0], true))
            .transpose()?;
        let conv = |name: &str, channels| CausalConv3d::new(src, name, channels, [3, 3, 3], 1);
        Ok(Self {
            norm1: WanRmsNorm::new(&src.at("norm1"), c_in, false)?,
            conv1: conv("conv1", (c_in, c_out))?,
            norm2: WanRmsNorm::new(&src.at("norm2"), c_out, false)?,
            conv2: conv("conv2", (c_out, c_out))?,
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
