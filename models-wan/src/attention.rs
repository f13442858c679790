//! diffusers `WanAttention` with `WanAttnProcessor` (text-to-video): projections, one RMS norm
//! over all heads' channels of the queries and of the keys, rotary embedding in
//! self-attention, scaled dot-product attention, output projection.

use burn::{module::Module, nn::Linear, tensor::Tensor, tensor::backend::Backend};
use dit_layers::{LoadError, ParamSource, RmsNorm, RopeTable, attention};

/// Self-attention (`attn1`, keys from the video tokens) or cross-attention (`attn2`, keys from
/// the text tokens).
#[derive(Module, Debug)]
pub struct WanAttention<B: Backend> {
    /// `to_q` `[dim -> dim]`.
    pub to_q: Linear<B>,
    /// `to_k` `[dim -> dim]`.
    pub to_k: Linear<B>,
    /// `to_v` `[dim -> dim]`.
    pub to_v: Linear<B>,
    /// `to_out.0` `[dim -> dim]`.
    pub to_out: Linear<B>,
    /// `norm_q`: RMS norm over all `dim` query channels (`rms_norm_across_heads`).
    pub norm_q: RmsNorm<B>,
    /// `norm_k`: RMS norm over all `dim` key channels.
    pub norm_k: RmsNorm<B>,
    /// Number of heads.
    pub heads: usize,
}

impl<B: Backend> WanAttention<B> {
    /// Builds the attention of `heads` heads of `head_dim` channels from `src`; `eps` is the
    /// norms' epsilon.
    pub fn new(
        src: &impl ParamSource<B>,
        heads: usize,
        head_dim: usize,
        eps: f64,
    ) -> Result<Self, LoadError> {
        let dim = heads * head_dim;
        Ok(Self {
            to_q: src.linear("to_q", dim, dim, true)?,
            to_k: src.linear("to_k", dim, dim, true)?,
            to_v: src.linear("to_v", dim, dim, true)?,
            to_out: src.linear("to_out.0", dim, dim, true)?,
            norm_q: src.rms_norm("norm_q", dim, eps)?,
            norm_k: src.rms_norm("norm_k", dim, eps)?,
            heads,
        })
    }

    /// Attention of `x` `[batch, tokens, dim]` to `context` `[batch, context_tokens, dim]`
    /// (`x` itself for self-attention); queries and keys are rotated by `rope` (over `x`'s and
    /// `context`'s tokens, which must then be the same) when given. Returns
    /// `[batch, tokens, dim]`.
    pub fn forward(
        &self,
        x: Tensor<B, 3>,
        context: Tensor<B, 3>,
        rope: Option<&RopeTable<B>>,
    ) -> Tensor<B, 3> {
        let [batch, tokens, dim] = x.dims();
        let context_tokens = context.dims()[1];
        let heads = |t: Tensor<B, 3>, len: usize| {
            t.reshape([batch, len, self.heads, dim / self.heads])
                .swap_dims(1, 2)
        };
        let q = heads(self.norm_q.forward(self.to_q.forward(x)), tokens);
        let k = heads(
            self.norm_k.forward(self.to_k.forward(context.clone())),
            context_tokens,
        );
        let v = heads(self.to_v.forward(context), context_tokens);
        let (q, k) = match rope {
            Some(rope) => (rope.apply(q), rope.apply(k)),
            None => (q, k),
        };
        let out = attention(q, k, v, None)
            .swap_dims(1, 2)
            .reshape([batch, tokens, dim]);
        self.to_out.forward(out)
    }
}
