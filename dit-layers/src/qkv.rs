//! Query, key and value projections of one token stream (or, for cross-attention, of the
//! queries' stream and the keys' context), split into heads, with the optional RMS
//! normalisation of queries and keys, per head (diffusers `Attention(qk_norm="rms_norm")`) or
//! across heads (`"rms_norm_across_heads"`, WAN).

use burn::{
    module::Module,
    tensor::{Tensor, backend::Backend},
};

use crate::{Linear, LoadError, ParamSource, RmsNorm, RopeTable, layout};

/// Epsilon of the query/key RMS norms (FLUX.1 and HunyuanVideo).
pub const QK_NORM_EPS: f64 = 1e-6;

/// Which channels the query and key RMS norms normalise together.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QkNormScope {
    /// Each head's `head_dim` channels, after the split into heads (FLUX.1, HunyuanVideo).
    PerHead,
    /// All `heads * head_dim` channels, before the split into heads (WAN).
    AcrossHeads,
}

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
    /// RMS norm of the queries, `[head_dim]` or `[hidden]` by `norm_scope`.
    pub norm_q: Option<RmsNorm<B>>,
    /// RMS norm of the keys, `[head_dim]` or `[hidden]` by `norm_scope`.
    pub norm_k: Option<RmsNorm<B>>,
    /// Which channels `norm_q` and `norm_k` normalise.
    #[module(skip)]
    pub norm_scope: QkNormScope,
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
        let cat = |a, b| layout::cat(vec![a, b], 2);
        Self {
            q: cat(self.q, other.q),
            k: cat(self.k, other.k),
            v: cat(self.v, other.v),
        }
    }

    /// Rotates queries and keys by `rope`, which covers all their tokens.
    pub fn rotate(self, rope: &RopeTable<B>) -> Self {
        Self {
            q: rope.apply(self.q),
            k: rope.apply(self.k),
            v: self.v,
        }
    }
}

impl<B: Backend> QkvProjection<B> {
    /// Loads the projections (all with bias) and per-head norms (epsilon [`QK_NORM_EPS`])
    /// called `names` from `src`.
    pub fn new(
        src: &impl ParamSource<B>,
        names: QkvNames,
        heads: usize,
        head_dim: usize,
    ) -> Result<Self, LoadError> {
        Self::with_norm(
            src,
            names,
            heads,
            head_dim,
            QkNormScope::PerHead,
            QK_NORM_EPS,
        )
    }

    /// Loads the projections (all with bias) and the norms called `names` from `src`, the norms
    /// over `norm_scope`'s channels with epsilon `eps`.
    pub fn with_norm(
        src: &impl ParamSource<B>,
        names: QkvNames,
        heads: usize,
        head_dim: usize,
        norm_scope: QkNormScope,
        eps: f64,
    ) -> Result<Self, LoadError> {
        let hidden = heads * head_dim;
        let norm_dim = match norm_scope {
            QkNormScope::PerHead => head_dim,
            QkNormScope::AcrossHeads => hidden,
        };
        let [q, k, v] = names.qkv;
        let (norm_q, norm_k) = match names.norms {
            Some([nq, nk]) => (
                Some(src.rms_norm(nq, norm_dim, eps)?),
                Some(src.rms_norm(nk, norm_dim, eps)?),
            ),
            None => (None, None),
        };
        Ok(Self {
            q: src.linear(q, hidden, hidden, true)?,
            k: src.linear(k, hidden, hidden, true)?,
            v: src.linear(v, hidden, hidden, true)?,
            norm_q,
            norm_k,
            norm_scope,
            heads,
        })
    }

    /// Projects `x` `[batch, tokens, hidden]` into (normalised) heads.
    pub fn forward(&self, x: Tensor<B, 3>) -> Heads<B> {
        self.forward_cross(x.clone(), x)
    }

    /// Queries from `x` `[batch, tokens, hidden]`, keys and values from `context`
    /// `[batch, context_tokens, hidden]` (cross-attention), as (normalised) heads.
    pub fn forward_cross(&self, x: Tensor<B, 3>, context: Tensor<B, 3>) -> Heads<B> {
        Heads {
            q: self.project(&self.q, self.norm_q.as_ref(), x),
            k: self.project(&self.k, self.norm_k.as_ref(), context.clone()),
            v: self.project(&self.v, None, context),
        }
    }

    /// `proj(x)` normalised by `norm` (over `norm_scope`), as heads
    /// `[batch, heads, tokens, head_dim]`.
    fn project(
        &self,
        proj: &Linear<B>,
        norm: Option<&RmsNorm<B>>,
        x: Tensor<B, 3>,
    ) -> Tensor<B, 4> {
        let y = proj.forward(x);
        let [batch, tokens, hidden] = y.dims();
        let split = |t: Tensor<B, 3>| t.reshape([batch, tokens, self.heads, hidden / self.heads]);
        let y = match (norm, self.norm_scope) {
            (None, _) => split(y),
            (Some(n), QkNormScope::PerHead) => n.forward(split(y)),
            (Some(n), QkNormScope::AcrossHeads) => split(n.forward(y)),
        };
        y.swap_dims(1, 2)
    }
}

/// Merges attention output heads `[batch, heads, tokens, head_dim]` back to
/// `[batch, tokens, heads * head_dim]`.
pub fn merge_heads<B: Backend>(x: Tensor<B, 4>) -> Tensor<B, 3> {
    let [batch, heads, tokens, head_dim] = x.dims();
    layout::reshape(x.swap_dims(1, 2), [batch, tokens, heads * head_dim])
}
