//! The self-attention of a VAE mid block: one head over all channels, every pixel a token
//! (`AutoencoderKL`'s over one image, HunyuanVideo's over all frames of a clip).

use burn::{
    module::Module,
    tensor::{Bool, Tensor, backend::Backend},
};
use dit_layers::{GroupNorm, Linear, LoadError, ModelParams, ParamSource, attention};

/// diffusers' `Attention` with `group_norm`, a residual connection and a single head of
/// `channels` dimensions: `x + to_out(softmax(q kᵀ / sqrt(channels)) v)` with `q`, `k`, `v`
/// projected from the group-normed pixels.
#[derive(Module, Debug)]
pub struct VaeAttention<B: Backend> {
    group_norm: GroupNorm<B>,
    to_q: Linear<B>,
    to_k: Linear<B>,
    to_v: Linear<B>,
    to_out: Linear<B>,
}

impl<B: Backend> VaeAttention<B> {
    /// Builds the attention over `channels` channels from `src`.
    pub fn new(
        src: &ModelParams<'_, B>,
        channels: usize,
        groups: usize,
        eps: f64,
    ) -> Result<Self, LoadError> {
        let proj = |name: &str| src.linear(name, channels, channels, true);
        Ok(Self {
            group_norm: src.group_norm("group_norm", groups, channels, eps)?,
            to_q: proj("to_q")?,
            to_k: proj("to_k")?,
            to_v: proj("to_v")?,
            to_out: proj("to_out.0")?,
        })
    }

    /// `[batch, channels, h, w]` → same shape.
    pub fn forward(&self, x: Tensor<B, 4>) -> Tensor<B, 4> {
        let [batch, channels, height, width] = x.dims();
        self.forward_sequence(x.reshape([batch, channels, height * width]), None)
            .reshape([batch, channels, height, width])
    }

    /// The attention over a sequence of pixels `x` `[batch, channels, seq]` (group-normed over
    /// the whole sequence), with `mask` `[batch, 1, seq, seq]` `true` where a query must not see
    /// a key; same shape out.
    pub fn forward_sequence(
        &self,
        x: Tensor<B, 3>,
        mask: Option<Tensor<B, 4, Bool>>,
    ) -> Tensor<B, 3> {
        // Tokens [batch, seq, channels], normed.
        let tokens = self.group_norm.forward(x.clone()).swap_dims(1, 2);
        // One head: [batch, 1, seq, channels].
        let q = self.to_q.forward(tokens.clone()).unsqueeze_dim(1);
        let k = self.to_k.forward(tokens.clone()).unsqueeze_dim(1);
        let v = self.to_v.forward(tokens).unsqueeze_dim(1);
        let out = self
            .to_out
            .forward(attention(q, k, v, mask).squeeze_dim::<3>(1));
        out.swap_dims(1, 2) + x
    }
}
