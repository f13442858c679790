//! Query, key and value projections of one token stream, split into heads, with the optional
//! per-head RMS normalisation of queries and keys (diffusers `Attention(qk_norm="rms_norm")`).

use burn::{
    module::Module,
    nn::Linear,
    tensor::{Tensor, backend::Backend},
};

use crate::{LoadError, ParamSource, RmsNorm};

/// Epsilon of the query/key RMS norms (FLUX.1 and HunyuanVideo).
pub const QK_NORM_EPS: f64 = 1e-6;

/// The module names of one stream's projections: the image stream of an MM-DiT block is
/// `to_q, to_k, to_v, norm_q, norm_k`, its text stream `add_q_proj, ..., norm_added_k`.
#[derive(Debug, Clone, Copy)]
pub struct QkvNames {
    /// Query, key and value projections.
    pub qkv: [&'static str; 3],
    /// Query and key norms; `None` when the attention has no QK normalisation.
    pub norms: Option<[&'static str; 2]>,
}

impl QkvNames {
    /// `to_q`, `to_k`, `to_v`, with `norm_q`, `norm_k` when `qk_norm`.
    pub fn main(qk_norm: bool) -> Self {
        Self {
            qkv: ["to_q", "to_k", "to_v"],
            norms: qk_norm.then_some(["norm_q", "norm_k"]),
        }
    }

    /// `add_q_proj`, `add_k_proj`, `add_v_proj`, `norm_added_q`, `norm_added_k` (the text stream
    /// of a joint attention).
    pub fn added() -> Self {
        Self {
            qkv: ["add_q_proj", "add_k_proj", "add_v_proj"],
            norms: Some(["norm_added_q", "norm_added_k"]),
        }
    }
}

/// Query, key and value projections of one stream, with optional QK norms.
#[derive(Module, Debug)]
pub struct QkvProjection<B: Backend> {
    /// Query projection `[hidden -> hidden]`.
    pub q: Linear<B>,
    /// Key projection `[hidden -> hidden]`.
    pub k: Linear<B>,
    /// Value projection `[hidden -> hidden]`.
    pub v: Linear<B>,
    /// RMS norm of each query head `[head_dim]`.
    pub norm_q: Option<RmsNorm<B>>,
    /// RMS norm of each key head `[head_dim]`.
    pub norm_k: Option<RmsNorm<B>>,
    /// Number of heads.
    pub heads: usize,
}

/// Queries, keys and values, each `[batch, heads, tokens, head_dim]`.
#[derive(Debug, Clone)]
pub struct Heads<B: Backend> {
    /// Queries.
    pub q: Tensor<B, 4>,
    /// Keys.
    pub k: Tensor<B, 4>,
    /// Values.
    pub v: Tensor<B, 4>,
}

impl<B: Backend> Heads<B> {
    /// Joins two token sequences (`self` first) along the token axis.
    pub fn cat(self, other: Self) -> Self {
        let cat = |a, b| Tensor::cat(vec![a, b], 2);
        Self {
            q: cat(self.q, other.q),
            k: cat(self.k, other.k),
            v: cat(self.v, other.v),
        }
    }
}

impl<B: Backend> QkvProjection<B> {
    /// Loads the projections (all with bias) and norms called `names` from `src`.
    pub fn new(
        src: &impl ParamSource<B>,
        names: QkvNames,
        heads: usize,
        head_dim: usize,
    ) -> Result<Self, LoadError> {
        let hidden = heads * head_dim;
        let [q, k, v] = names.qkv;
        let (norm_q, norm_k) = match names.norms {
            Some([nq, nk]) => (
                Some(src.rms_norm(nq, head_dim, QK_NORM_EPS)?),
                Some(src.rms_norm(nk, head_dim, QK_NORM_EPS)?),
            ),
            None => (None, None),
        };
        Ok(Self {
            q: src.linear(q, hidden, hidden, true)?,
            k: src.linear(k, hidden, hidden, true)?,
            v: src.linear(v, hidden, hidden, true)?,
            norm_q,
            norm_k,
            heads,
        })
    }

    /// Projects `x` `[batch, tokens, hidden]` into (normalised) heads.
    pub fn forward(&self, x: Tensor<B, 3>) -> Heads<B> {
        let [batch, tokens, hidden] = x.dims();
        let split = |t: Tensor<B, 3>| t.reshape([batch, tokens, self.heads, hidden / self.heads]);
        let norm = |n: &Option<RmsNorm<B>>, t: Tensor<B, 4>| match n {
            Some(n) => n.forward(t),
            None => t,
        };
        let q = norm(&self.norm_q, split(self.q.forward(x.clone())));
        let k = norm(&self.norm_k, split(self.k.forward(x.clone())));
        let v = split(self.v.forward(x));
        Heads {
            q: q.swap_dims(1, 2),
            k: k.swap_dims(1, 2),
            v: v.swap_dims(1, 2),
        }
    }
}

/// Merges attention output heads `[batch, heads, tokens, head_dim]` back to
/// `[batch, tokens, heads * head_dim]`.
pub fn merge_heads<B: Backend>(x: Tensor<B, 4>) -> Tensor<B, 3> {
    let [batch, heads, tokens, head_dim] = x.dims();
    x.swap_dims(1, 2).reshape([batch, tokens, heads * head_dim])
}
