//! diffusers `FluxAttention` with `FluxAttnProcessor`: per-head RMS-normalised queries and
//! keys, rotary embedding over the joint (text, image) sequence, scaled dot-product attention.

use burn::{module::Module, nn::Linear, tensor::Tensor, tensor::backend::Backend};
use dit_layers::{LoadError, ParamSource, RmsNorm, RopeTable, attention};

/// Epsilon of the query/key RMS norms.
const QK_NORM_EPS: f64 = 1e-6;

/// Query, key and value projections of one stream with their QK norms.
#[derive(Module, Debug)]
pub struct QkvProjection<B: Backend> {
    /// Query projection `[hidden -> hidden]`.
    pub q: Linear<B>,
    /// Key projection `[hidden -> hidden]`.
    pub k: Linear<B>,
    /// Value projection `[hidden -> hidden]`.
    pub v: Linear<B>,
    /// RMS norm of each query head `[head_dim]`.
    pub norm_q: RmsNorm<B>,
    /// RMS norm of each key head `[head_dim]`.
    pub norm_k: RmsNorm<B>,
}

/// Queries, keys and values `[batch, heads, tokens, head_dim]`.
struct Heads<B: Backend> {
    q: Tensor<B, 4>,
    k: Tensor<B, 4>,
    v: Tensor<B, 4>,
}

impl<B: Backend> QkvProjection<B> {
    /// Loads the projections and norms called `names` (q, k, v, norm_q, norm_k) from `src`.
    fn new(
        src: &impl ParamSource<B>,
        names: [&str; 5],
        heads: usize,
        head_dim: usize,
    ) -> Result<Self, LoadError> {
        let hidden = heads * head_dim;
        Ok(Self {
            q: src.linear(names[0], hidden, hidden, true)?,
            k: src.linear(names[1], hidden, hidden, true)?,
            v: src.linear(names[2], hidden, hidden, true)?,
            norm_q: src.rms_norm(names[3], head_dim, QK_NORM_EPS)?,
            norm_k: src.rms_norm(names[4], head_dim, QK_NORM_EPS)?,
        })
    }

    /// Splits `x` `[batch, tokens, hidden]` into normalised heads.
    fn heads(&self, x: Tensor<B, 3>, heads: usize) -> Heads<B> {
        let [batch, tokens, hidden] = x.dims();
        let split = |t: Tensor<B, 3>| t.reshape([batch, tokens, heads, hidden / heads]);
        let q = self.norm_q.forward(split(self.q.forward(x.clone())));
        let k = self.norm_k.forward(split(self.k.forward(x.clone())));
        let v = split(self.v.forward(x));
        Heads {
            q: q.swap_dims(1, 2),
            k: k.swap_dims(1, 2),
            v: v.swap_dims(1, 2),
        }
    }
}

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
    /// Number of heads.
    pub heads: usize,
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
            image: QkvProjection::new(
                src,
                ["to_q", "to_k", "to_v", "norm_q", "norm_k"],
                heads,
                head_dim,
            )?,
            context: QkvProjection::new(
                src,
                [
                    "add_q_proj",
                    "add_k_proj",
                    "add_v_proj",
                    "norm_added_q",
                    "norm_added_k",
                ],
                heads,
                head_dim,
            )?,
            to_out: src.linear("to_out.0", hidden, hidden, true)?,
            to_add_out: src.linear("to_add_out", hidden, hidden, true)?,
            heads,
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
        let i = self.image.heads(img, self.heads);
        let t = self.context.heads(txt, self.heads);
        let cat = |a: Tensor<B, 4>, b: Tensor<B, 4>| Tensor::cat(vec![a, b], 2);
        let joint = Heads {
            q: cat(t.q, i.q),
            k: cat(t.k, i.k),
            v: cat(t.v, i.v),
        };
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
    /// Number of heads.
    pub heads: usize,
}

impl<B: Backend> SingleAttention<B> {
    /// Builds the attention of width `heads * head_dim` from `src`.
    pub fn new(
        src: &impl ParamSource<B>,
        heads: usize,
        head_dim: usize,
    ) -> Result<Self, LoadError> {
        Ok(Self {
            image: QkvProjection::new(
                src,
                ["to_q", "to_k", "to_v", "norm_q", "norm_k"],
                heads,
                head_dim,
            )?,
            heads,
        })
    }

    /// Self-attention over `x` `[batch, tokens, hidden]`, heads merged back to that shape.
    pub fn forward(&self, x: Tensor<B, 3>, rope: &RopeTable<B>) -> Tensor<B, 3> {
        attend(self.image.heads(x, self.heads), rope)
    }
}

/// Rotates queries and keys, attends, and merges the heads back to `[batch, tokens, hidden]`.
fn attend<B: Backend>(h: Heads<B>, rope: &RopeTable<B>) -> Tensor<B, 3> {
    let out = attention(rope.apply(h.q), rope.apply(h.k), h.v, None);
    let [batch, heads, tokens, head_dim] = out.dims();
    out.swap_dims(1, 2)
        .reshape([batch, tokens, heads * head_dim])
}
