//! A block's self-attention over the keys it may see: each batch row's visible keys (padded
//! text tokens hidden) and, for a video model attending sparsely, Sparse VideoGen.

use burn::tensor::{Tensor, backend::Backend};

use crate::{Heads, SparseVideoCall, attention};

/// What a block's attention reads besides its heads: the keys each batch row sees (padding)
/// and, for a video model attending sparsely, the call's Sparse VideoGen with the block's
/// index.
#[derive(Debug, Clone, Copy, Default)]
pub struct BlockKeys<'a> {
    /// Row `b` sees the first `key_lengths[b]` keys of the joint sequence; all when `None`.
    pub key_lengths: Option<&'a [usize]>,
    /// The call's Sparse VideoGen; dense attention when `None`.
    pub sparse: Option<&'a SparseVideoCall>,
    /// The block's index among the model's blocks (HunyuanVideo: dual-stream, then
    /// single-stream).
    pub layer: usize,
}

/// The attention of `h` (`[batch, heads, tokens, dim]`) over `keys`: Sparse VideoGen's
/// where the call has it, else dense over each row's visible keys.
pub fn attend_keys<B: Backend>(h: Heads<B>, keys: BlockKeys<'_>) -> Tensor<B, 4> {
    match keys.sparse {
        Some(sparse) => sparse.attend(keys.layer, h, |h, rows| {
            let lengths: Option<Vec<usize>> = keys
                .key_lengths
                .map(|l| rows.iter().map(|&r| l[r]).collect());
            attend_dense(h, lengths.as_deref())
        }),
        None => attend_dense(h, keys.key_lengths),
    }
}

/// Attention of every query over all keys (`key_lengths` `None`) or, in row `b`, over its first
/// `key_lengths[b]` keys. Dropping the masked keys equals diffusers' boolean mask (a masked key
/// has zero weight) without materialising a `tokens²` mask.
fn attend_dense<B: Backend>(h: Heads<B>, key_lengths: Option<&[usize]>) -> Tensor<B, 4> {
    let Some(key_lengths) = key_lengths else {
        return attention(h.q, h.k, h.v, None);
    };
    let [batch, _, _, _] = h.q.dims();
    let first = key_lengths[0];
    if key_lengths.iter().all(|&n| n == first) {
        let k = h.k.narrow(2, 0, first);
        let v = h.v.narrow(2, 0, first);
        return attention(h.q, k, v, None);
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
    Tensor::cat(rows, 0)
}
