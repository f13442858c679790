//! diffusers `Attention` with `HunyuanVideoAttnProcessor2_0`: per-head RMS-normalised queries
//! and keys, rotary embedding on the video tokens only, attention over `[video; text]` with
//! the padded text tokens masked out as keys.

use burn::{
    module::Module,
    nn::Linear,
    tensor::{Tensor, backend::Backend},
};
use dit_layers::{
    Heads, LoadError, ParamSource, QkvNames, QkvProjection, RopeTable, attention, merge_heads,
};

/// diffusers' attention of a dual-stream block: video and text tokens keep their own
/// projections and attend jointly over `[video; text]`.
#[derive(Module, Debug)]
pub struct JointAttention<B: Backend> {
    /// `to_q`, `to_k`, `to_v`, `norm_q`, `norm_k`.
    pub video: QkvProjection<B>,
    /// `add_q_proj`, `add_k_proj`, `add_v_proj`, `norm_added_q`, `norm_added_k`.
    pub text: QkvProjection<B>,
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
            video: QkvProjection::new(src, QkvNames::main(true), heads, head_dim)?,
            text: QkvProjection::new(src, QkvNames::added(), heads, head_dim)?,
            to_out: src.linear("to_out.0", hidden, hidden, true)?,
            to_add_out: src.linear("to_add_out", hidden, hidden, true)?,
        })
    }

    /// Attention for `video` `[batch, video_tokens, hidden]` and `text`
    /// `[batch, text_tokens, hidden]`, `key_lengths[b]` keys of `[video; text]` visible in row
    /// `b`; returns the projected `(video, text)` outputs, same shapes.
    pub fn forward(
        &self,
        video: Tensor<B, 3>,
        text: Tensor<B, 3>,
        rope: &RopeTable<B>,
        key_lengths: &[usize],
    ) -> (Tensor<B, 3>, Tensor<B, 3>) {
        let video_len = video.dims()[1];
        let v = self.video.forward(video);
        let v = Heads {
            q: rope.apply(v.q),
            k: rope.apply(v.k),
            v: v.v,
        };
        let out = attend(v.cat(self.text.forward(text)), key_lengths);
        let tokens = out.dims()[1];
        let text_out = out.clone().narrow(1, video_len, tokens - video_len);
        let video_out = out.narrow(1, 0, video_len);
        (
            self.to_out.forward(video_out),
            self.to_add_out.forward(text_out),
        )
    }
}

/// diffusers' attention of a single-stream block (`pre_only`: no output projection, the
/// block's `proj_out` follows).
#[derive(Module, Debug)]
pub struct SingleAttention<B: Backend> {
    /// `to_q`, `to_k`, `to_v`, `norm_q`, `norm_k`.
    pub qkv: QkvProjection<B>,
}

impl<B: Backend> SingleAttention<B> {
    /// Builds the attention of width `heads * head_dim` from `src`.
    pub fn new(
        src: &impl ParamSource<B>,
        heads: usize,
        head_dim: usize,
    ) -> Result<Self, LoadError> {
        Ok(Self {
            qkv: QkvProjection::new(src, QkvNames::main(true), heads, head_dim)?,
        })
    }

    /// Self-attention over the joined `x` `[batch, video_tokens + text_tokens, hidden]`, the
    /// rotary table rotating the first `video_tokens` (its rows); heads merged back to that shape.
    pub fn forward(
        &self,
        x: Tensor<B, 3>,
        rope: &RopeTable<B>,
        key_lengths: &[usize],
    ) -> Tensor<B, 3> {
        let video_len = rope.cos.dims()[0];
        let h = self.qkv.forward(x);
        let rotate_video = |t: Tensor<B, 4>| {
            let tokens = t.dims()[2];
            let text = t.clone().narrow(2, video_len, tokens - video_len);
            Tensor::cat(vec![rope.apply(t.narrow(2, 0, video_len)), text], 2)
        };
        let h = Heads {
            q: rotate_video(h.q),
            k: rotate_video(h.k),
            v: h.v,
        };
        attend(h, key_lengths)
    }
}

/// Attention of every query of row `b` over its first `key_lengths[b]` keys, heads merged to
/// `[batch, tokens, hidden]`. Dropping the masked keys equals diffusers' boolean mask (a masked
/// key has zero weight) without materialising a `tokens²` mask.
fn attend<B: Backend>(h: Heads<B>, key_lengths: &[usize]) -> Tensor<B, 3> {
    let [batch, _, _, _] = h.q.dims();
    let first = key_lengths[0];
    if key_lengths.iter().all(|&n| n == first) {
        let k = h.k.narrow(2, 0, first);
        let v = h.v.narrow(2, 0, first);
        return merge_heads(attention(h.q, k, v, None));
    }
    let rows = (0..batch)
        .map(|b| {
            let row = |t: Tensor<B, 4>| t.narrow(0, b, 1);
            let n = key_lengths[b];
            let k = row(h.k.clone()).narrow(2, 0, n);
            let v = row(h.v.clone()).narrow(2, 0, n);
            attention(row(h.q.clone()), k, v, None)
        })
        .collect();
    merge_heads(Tensor::cat(rows, 0))
}
