//! Attention under a [`BandMask`] without a `[heads, N, N]` mask or score matrix.

use burn::tensor::{Bool, Tensor, TensorData, backend::Backend};

use super::BandMask;
use crate::attention;

/// Queries per block of the backend-generic path: each block attends, through the backend's
/// fused attention, to the key ranges its queries see, with a `[QUERY_BLOCK, keys]` mask for
/// the band's edges.
const QUERY_BLOCK: usize = 512;

/// `softmax(q kᵀ / sqrt(dim)) v` per head with every key `mask` hides from a query left out;
/// `q`, `k`, `v` `[batch, heads, tokens, dim]` in the order `mask` reads them.
///
/// On the Flex CPU backend this crate's attention kernel visits only the key tiles in the
/// band; elsewhere each block of queries attends through the backend's attention to the keys
/// of [`BandMask::key_ranges`] gathered, masked element by element where a block of keys is
/// not wholly visible. The work is the band's, not `N²`.
pub fn band_attention<B: Backend>(
    q: Tensor<B, 4>,
    k: Tensor<B, 4>,
    v: Tensor<B, 4>,
    mask: &BandMask,
) -> Tensor<B, 4> {
    #[cfg(feature = "flex")]
    if let Some(out) = crate::cpu::attention::try_band_attention(&q, &k, &v, mask) {
        return out;
    }
    band_attention_by_blocks(q, k, v, mask)
}

/// [`band_attention`]'s backend-generic path, which it takes on every backend but Flex: each
/// block of queries attends through the backend's attention to the key ranges it sees.
pub fn band_attention_by_blocks<B: Backend>(
    q: Tensor<B, 4>,
    k: Tensor<B, 4>,
    v: Tensor<B, 4>,
    mask: &BandMask,
) -> Tensor<B, 4> {
    let [batch, heads, len, _] = q.dims();
    let device = q.device();
    let blocks = (0..len).step_by(QUERY_BLOCK).map(|q0| {
        let queries = q0..(q0 + QUERY_BLOCK).min(len);
        let ranges = mask.key_ranges(queries.clone());
        let gather = |t: &Tensor<B, 4>| {
            let parts = ranges
                .iter()
                .map(|r| t.clone().narrow(2, r.start, r.len()))
                .collect();
            Tensor::cat(parts, 2)
        };
        let keys: usize = ranges.iter().map(|r| r.len()).sum();
        let partial = ranges
            .iter()
            .any(|r| !mask.covers(queries.clone(), r.clone()));
        let hidden = partial.then(|| {
            let hidden: Vec<bool> = queries
                .clone()
                .flat_map(|qi| {
                    ranges
                        .iter()
                        .flat_map(move |r| r.clone().map(move |ki| !mask.allowed(qi, ki)))
                })
                .collect();
            Tensor::<B, 2, Bool>::from_data(TensorData::new(hidden, [queries.len(), keys]), &device)
                .reshape([1, 1, queries.len(), keys])
                .expand([batch, heads, queries.len(), keys])
        });
        attention(
            q.clone().narrow(2, queries.start, queries.len()),
            gather(&k),
            gather(&v),
            hidden,
        )
    });
    Tensor::cat(blocks.collect(), 2)
}
