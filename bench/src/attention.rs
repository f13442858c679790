//! `bench attention`: `dit_layers::attention` on `[1, 24, seq, 128]` (FLUX.1's heads), against
//! PyTorch's `F.scaled_dot_product_attention` (`fixtures/bench_attention.py`).

use anyhow::{Context, Result};
use burn::tensor::{Distribution, Tensor, backend::Backend};
use serde::{Deserialize, Serialize};

use super::{Case, Samples, timing::Timer};

/// Shape of one attention case: `q`, `k`, `v` are `[batch, heads, seq, head_dim]`.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
struct Shape {
    batch: usize,
    heads: usize,
    seq: usize,
    head_dim: usize,
}

/// FLUX.1 at 512² (1024 image tokens) and at 1024² (4096).
pub fn cases() -> Vec<Case> {
    [1024, 4096]
        .into_iter()
        .map(|seq| {
            let shape = Shape {
                batch: 1,
                heads: 24,
                seq,
                head_dim: 128,
            };
            Case {
                name: format!("[1, 24, {seq}, 128]"),
                params: serde_json::to_value(shape).expect("a plain struct serialises"),
                // QKᵀ and the weighted sum of V: 2 seq² head_dim multiply-adds per head.
                flops: Some(4.0 * 24.0 * (seq * seq * 128) as f64),
            }
        })
        .collect()
}

/// Times one case on backend `B` (contiguous random `q`, `k`, `v`, no mask).
pub fn time<B: Backend>(case: &Case, timer: &Timer<B>) -> Result<Samples> {
    let s: Shape =
        serde_json::from_value(case.params.clone()).context("attention case parameters")?;
    let dims = [s.batch, s.heads, s.seq, s.head_dim];
    let [q, k, v] = [0, 1, 2]
        .map(|_| Tensor::<B, 4>::random(dims, Distribution::Normal(0.0, 1.0), timer.device()));
    timer.time(|| Ok(dit_layers::attention(q.clone(), k.clone(), v.clone(), None)))
}
