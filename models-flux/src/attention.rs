//! diffusers `FluxAttention` with `FluxAttnProcessor`: per-head RMS-normalised queries and
//! keys, rotary embedding over the joint (text, image) sequence, scaled dot-product attention.

use burn::{module::Module, nn::Linear, tensor::Tensor, tensor::backend::Backend};
use dit_layers::{
    Heads, LoadError, ParamSource, QkvNames, QkvProjection, RopeTable, attention, merge_heads,
};

/// diffusers `FluxAttention` of a double-stream block: both streams attend jointly over
/// `[txt; img]`, each with its own projections.
#[derive(Module, Debug)]
pub struct JointAttention<B: Backend> {
    /// `to_q`, `to_k`, `to_v`, `norm_q`, `norm_k`.
    pub image: QkvProjection<B>,
    /// `add_q_proj`, `add_k_proj`, `add_v_proj`, `norm_added_q`, `norm_added_k`.
    pub context: QkvProjection<B>,
    /// `to_out.0` `[hidden -> hidden]`.
    pub to_out: Linear<B>,
    /// `to_add_out` `[hidden -> hidden]`.
    pub to_add_out: Linear<B>,
}

impl<B: Backend> JointAttention<B> {
    /// Builds the attention of width `heads * head_dim` from `src`.
    pub fn new(
        src: &impl ParamSource<B>,
        heads: usize,
        head_dim: usize,
    ) -> Result<Self, LoadError> {
        let hidden = heads * head_dim;
        Ok(Self {
            image: QkvProjection::new(src, QkvNames::main(true), heads, head_dim)?,
            context: QkvProjection::new(src, QkvNames::added(), heads, head_dim)?,
            to_out: src.linear("to_out.0", hidden, hidden, true)?,
            to_add_out: src.linear("to_add_out", hidden, hidden, true)?,
        })
    }

    /// Attention over `[txt; img]` for `img` `[batch, img_tokens, hidden]` and `txt`
    /// `[batch, txt_tokens, hidden]`; returns the projected `(img, txt)` outputs, same shapes.
    pub fn forward(
        &self,
        img: Tensor<B, 3>,
        txt: Tensor<B, 3>,
        rope: &RopeTable<B>,
    ) -> (Tensor<B, 3>, Tensor<B, 3>) {
        let txt_len = txt.dims()[1];
        let joint = self.context.forward(txt).cat(self.image.forward(img));
        let out = attend(joint, rope);
        let tokens = out.dims()[1];
        let txt_out = out.clone().narrow(1, 0, txt_len);
        let img_out = out.narrow(1, txt_len, tokens - txt_len);
        (
            self.to_out.forward(img_out),
            self.to_add_out.forward(txt_out),
        )
    }
}

/// diffusers `FluxAttention` of a single-stream block (`pre_only`: no output projection, the
/// block's `proj_out` follows).
#[derive(Module, Debug)]
pub struct SingleAttention<B: Backend> {
    /// `to_q`, `to_k`, `to_v`, `norm_q`, `norm_k`.
    pub image: QkvProjection<B>,
}

impl<B: Backend> SingleAttention<B> {
    /// Builds the attention of width `heads * head_dim` from `src`.
    pub fn new(
        src: &impl ParamSource<B>,
        heads: usize,
        head_dim: usize,
    ) -> Result<Self, LoadError> {
        Ok(Self {
            image: QkvProjection::new(src, QkvNames::main(true), heads, head_dim)?,
        })
    }

    /// Self-attention over `x` `[batch, tokens, hidden]`, heads merged back to that shape.
    pub fn forward(&self, x: Tensor<B, 3>, rope: &RopeTable<B>) -> Tensor<B, 3> {
        attend(self.image.forward(x), rope)
    }
}

/// Rotates queries and keys, attends, and merges the heads back to `[batch, tokens, hidden]`.
fn attend<B: Backend>(h: Heads<B>, rope: &RopeTable<B>) -> Tensor<B, 3> {
    merge_heads(attention(rope.apply(h.q), rope.apply(h.k), h.v, None))
}
