//! Scaled dot-product attention shared by every model.
//!
//! Both entry points are generic over the backend. On Burn's Flex CPU backend (a run-time check
//! of the backend type; feature `flex`, on by default) they run this crate's multi-threaded
//! kernel (`cpu::attention`, f32 inside, half-precision inputs cast), because Flex's own
//! attention uses one thread. Every other backend (wgpu, CUDA, autodiff) gets Burn's
//! `module::attention`, i.e. the backend's fused kernel.

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
    sdpa(q, k, v, mask, None, None)
}

/// `softmax(scale · q kᵀ + bias) v` per head: attention with an additive score bias (T5's
/// relative position bias, ALiBi) and an explicit scale (T5 does not scale, `scale = 1`).
///
/// Shapes as in [`attention`]; `bias` `[batch, heads, seq_q, seq_k]` (expand a broadcast bias
/// first: not every backend broadcasts it).
pub fn attention_with_bias<B: Backend>(
    q: Tensor<B, 4>,
    k: Tensor<B, 4>,
    v: Tensor<B, 4>,
    mask: Option<Tensor<B, 4, Bool>>,
    bias: Option<Tensor<B, 4>>,
    scale: f64,
) -> Tensor<B, 4> {
    sdpa(q, k, v, mask, bias, Some(scale))
}

/// The shared path of both entry points; `scale` `None` means `1 / sqrt(head_dim)`.
fn sdpa<B: Backend>(
    q: Tensor<B, 4>,
    k: Tensor<B, 4>,
    v: Tensor<B, 4>,
    mask: Option<Tensor<B, 4, Bool>>,
    bias: Option<Tensor<B, 4>>,
    scale: Option<f64>,
) -> Tensor<B, 4> {
    #[cfg(feature = "flex")]
    if let Some(out) =
        crate::cpu::attention::try_attention(&q, &k, &v, mask.as_ref(), bias.as_ref(), scale)
    {
        return out;
    }
    let options = AttentionModuleOptions {
        scale,
        ..AttentionModuleOptions::default()
    };
    module::attention(q, k, v, mask, bias, options)
}
