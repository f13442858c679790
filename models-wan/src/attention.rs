//! diffusers `WanAttention` with `WanAttnProcessor` (text-to-video): projections, one RMS norm
//! over all heads' channels of the queries and of the keys, rotary embedding in
//! self-attention, scaled dot-product attention, output projection.

use burn::{module::Module, tensor::Tensor, tensor::backend::Backend};
use dit_layers::{
    BlockKeys, Linear, LoadError, ParamSource, QkNormScope, QkvNames, QkvProjection, RopeTable,
    attend_keys, merge_heads,
};

/// Self-attention (`attn1`, keys from the video tokens) or cross-attention (`attn2`, keys from
/// the text tokens).
#[derive(Module, Debug)]
pub struct WanAttention<B: Backend> {
    /// `to_q`, `to_k`, `to_v` `[dim -> dim]`; `norm_q`, `norm_k`: RMS norms over all `dim`
    /// query and key channels (`rms_norm_across_heads`).
    pub qkv: QkvProjection<B>,
    /// `to_out.0` `[dim -> dim]`.
    pub to_out: Linear<B>,
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
            qkv: QkvProjection::with_norm(
                src,
                QkvNames::main(true),
                heads,
                head_dim,
                QkNormScope::AcrossHeads,
                eps,
            )?,
            to_out: src.linear("to_out.0", dim, dim, true)?,
        })
    }

    /// Attention of `x` `[batch, tokens, dim]` to `context` `[batch, context_tokens, dim]`
    /// (`x` itself for self-attention) over `keys` (self-attention's Sparse VideoGen); queries
    /// and keys are rotated by `rope` (over `x`'s and `context`'s tokens, which must then be the
    /// same) when given. Returns `[batch, tokens, dim]`.
    pub fn forward(
        &self,
        x: Tensor<B, 3>,
        context: Tensor<B, 3>,
        rope: Option<&RopeTable<B>>,
        keys: BlockKeys<'_>,
    ) -> Tensor<B, 3> {
        let h = self.qkv.forward_cross(x, context);
        let h = match rope {
            Some(rope) => h.rotate(rope),
            None => h,
        };
        self.to_out.forward(merge_heads(attend_keys(h, keys)))
    }
}
