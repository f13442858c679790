//! diffusers' `HunyuanVideoResnetBlockCausal3D`: two causal 3x3x3 convolutions behind group
//! norms and SiLU.

use burn::{
    module::Module,
    tensor::{Tensor, backend::Backend},
};
use dit_layers::{GroupNorm, LoadError, ModelParams, ParamSource, silu};

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
    /// Builds the block mapping `c_in` to `c_out` channels with `groups` norm groups from
    /// `src`.
    pub fn new(
        src: &ModelParams<'_, B>,
        (c_in, c_out): (usize, usize),
        groups: usize,
    ) -> Result<Self, LoadError> {
        let conv =
            |name: &str, channels, kernel| CausalConv3d::new(&src.at(name), channels, kernel);
        let conv_shortcut = (c_in != c_out)
            .then(|| conv("conv_shortcut", (c_in, c_out), 1))
            .transpose()?;
        Ok(Self {
            norm1: src.group_norm("norm1", groups, c_in, EPS)?,
            conv1: conv("conv1", (c_in, c_out), 3)?,
            norm2: src.group_norm("norm2", groups, c_out, EPS)?,
            conv2: conv("conv2", (c_out, c_out), 3)?,
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
