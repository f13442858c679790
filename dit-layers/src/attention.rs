//! Scaled dot-product attention shared by every model.

use burn::tensor::{Bool, Tensor, backend::Backend, module, ops::AttentionModuleOptions};

/// `softmax(q kᵀ / sqrt(head_dim)) v` per head.
///
/// Shapes: `q` `[batch, heads, seq_q, head_dim]`, `k` and `v` `[batch, heads, seq_k, head_dim]`;
/// `mask` `[batch, heads, seq_q, seq_k]`, `true` where a key must be ignored. Returns
/// `[batch, heads, seq_q, head_dim]`.
pub fn attention<B: Backend>(
    q: Tensor<B, 4>,
    k: Tensor<B, 4>,
    v: Tensor<B, 4>,
    mask: Option<Tensor<B, 4, Bool>>,
) -> Tensor<B, 4> {
    module::attention(q, k, v, mask, None, AttentionModuleOptions::default())
}
