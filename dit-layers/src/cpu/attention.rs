//! Multi-threaded attention for Burn's Flex CPU backend (computed in f32).
//!
//! Flex's own `attention` runs every head on one thread with a scalar `exp`. This kernel splits
//! the work into (batch, head, block of `QUERY_BLOCK` queries) tasks spread over rayon's threads;
//! each task walks the keys in tiles of `KEY_TILE` with an online softmax (running maximum and
//! sum, as in FlashAttention): `S = scale · Q_blk K_tileᵀ` and `acc += exp(S - max) V_tile` are
//! single-threaded `gemm` calls on cache-sized blocks, the exponentials are vectorised
//! (see `rows`). Inputs are read through their strides, so `[batch, seq, heads, dim]` tensors
//! viewed as `[batch, heads, seq, dim]` need no copy.

use burn::tensor::{Bool, FloatDType, Tensor, backend::Backend};
use burn_flex::FlexTensor;
use rayon::prelude::*;

use super::{
    Strided, cast, dims, flex_tensor, from_flex, is_flex, readable, rows, to_flex, zeroed,
};
use crate::sparse_video::BandMask;

/// Queries per task. The score tile `[QUERY_BLOCK, KEY_TILE]` (512 KiB) stays in L2, and each
/// packed K and V tile serves 256 queries. Measured on a 2-core Zen 4 at `[1, 24, 1024, 128]`
/// (CPU time per call): 190 ms with blocks of 32, 166 ms with 64, 159 ms with 128, 156 ms with
/// 256; 512 is no better at 4096 tokens.
const QUERY_BLOCK: usize = 256;
/// Keys per step of the online softmax; 256, 512 and 1024 measured within 2 %.
const KEY_TILE: usize = 512;
/// Output values times keys up to which a call runs on the calling thread (the mini models'
/// attention), where handing tasks to rayon's threads would cost more than it saves.
const SERIAL_MAX: usize = 1 << 20;

/// `Some(output)` when the inputs are tensors of the Flex backend (then computed here), `None`
/// otherwise. Shapes as in [`crate::attention_with_bias`]; `scale` defaults to
/// `1 / sqrt(head_dim)`. Half-precision inputs are computed in f32 and the output cast back to
/// their dtype, as PyTorch's CPU attention accumulates half-precision inputs in f32 (and Flex's
/// own attention would run on one thread).
pub fn try_attention<B: Backend>(
    q: &Tensor<B, 4>,
    k: &Tensor<B, 4>,
    v: &Tensor<B, 4>,
    mask: Option<&Tensor<B, 4, Bool>>,
    bias: Option<&Tensor<B, 4>>,
    scale: Option<f64>,
) -> Option<Tensor<B, 4>> {
    if !is_flex::<B>() {
        return None;
    }
    let f32 = |t: &Tensor<B, 4>| to_flex(t.clone().cast(FloatDType::F32));
    let extras = Extras {
        mask: mask.map(|m| cast::<B::BoolTensorPrimitive, FlexTensor>(m.clone().into_primitive())),
        bias: bias.map(f32),
        scale: scale.map(|s| s as f32),
        band: None,
    };
    Some(run(q, k, v, &extras))
}

/// `Some(output)` when the inputs are tensors of the Flex backend: attention under `band`
/// (queries and keys in the order it reads them), visiting only the key tiles some query of a block sees;
/// `None` otherwise.
pub fn try_band_attention<B: Backend>(
    q: &Tensor<B, 4>,
    k: &Tensor<B, 4>,
    v: &Tensor<B, 4>,
    band: &BandMask,
) -> Option<Tensor<B, 4>> {
    if !is_flex::<B>() {
        return None;
    }
    let extras = Extras {
        mask: None,
        bias: None,
        scale: None,
        band: Some(band),
    };
    Some(run(q, k, v, &extras))
}

/// The kernel on f32 copies of Flex tensors, the output cast back to `q`'s dtype.
fn run<B: Backend>(
    q: &Tensor<B, 4>,
    k: &Tensor<B, 4>,
    v: &Tensor<B, 4>,
    extras: &Extras,
) -> Tensor<B, 4> {
    let dtype = q.dtype();
    let f32 = |t: &Tensor<B, 4>| to_flex(t.clone().cast(FloatDType::F32));
    let out = attention_f32(&f32(q), &f32(k), &f32(v), extras);
    from_flex::<B, 4>(out).cast(dtype)
}

/// The optional parts of an attention call, as Flex tensors.
struct Extras<'a> {
    /// Broadcastable to `[b, h, sq, sk]`, nonzero = ignore the key.
    mask: Option<FlexTensor>,
    /// Broadcastable to `[b, h, sq, sk]`, added to the scaled scores.
    bias: Option<FlexTensor>,
    /// Score scale; `1 / sqrt(head_dim)` when `None`.
    scale: Option<f32>,
    /// Sparse VideoGen's band: the keys each query sees (query and key indices alike).
    band: Option<&'a BandMask>,
}

/// `t` readable through its strides, after checking that it broadcasts to `target`.
fn broadcastable(t: &FlexTensor, what: &str, target: [usize; 4]) -> FlexTensor {
    for (i, (got, want)) in dims(t).into_iter().zip(target).enumerate() {
        assert!(
            got == want || got == 1,
            "attention: {what} dim {i} is {got}, expected {want} or 1"
        );
    }
    readable(t)
}

/// Attention of f32 Flex tensors: `q` `[b, h, sq, d]`, `k` `[b, h, sk, d]`, `v` `[b, h, sk, dv]`.
/// Returns `[b, h, sq, dv]`, contiguous. A query whose keys are all masked gets zeros.
fn attention_f32(q: &FlexTensor, k: &FlexTensor, v: &FlexTensor, extras: &Extras) -> FlexTensor {
    let [batch, heads, seq_q, dim] = dims(q);
    let [_, _, seq_k, dim_v] = dims(v);
    assert_eq!(dims(k), [batch, heads, seq_k, dim], "attention: key shape");
    assert_eq!(
        dims(v)[..3],
        [batch, heads, seq_k],
        "attention: value shape"
    );
    let mask = extras
        .mask
        .as_ref()
        .map(|m| broadcastable(m, "mask", [batch, heads, seq_q, seq_k]));
    let bias = extras
        .bias
        .as_ref()
        .map(|b| broadcastable(b, "bias", [batch, heads, seq_q, seq_k]));
    let (q, k, v) = (readable(q), readable(k), readable(v));
    let views = Views {
        q: Strided::new(&q, q.storage()),
        k: Strided::new(&k, k.storage()),
        v: Strided::new(&v, v.storage()),
        mask: mask.as_ref().map(|m| Strided::new(m, m.storage())),
        bias: bias.as_ref().map(|b| Strided::new(b, b.storage())),
        band: extras.band,
        scale: extras.scale.unwrap_or(1.0 / (dim as f32).sqrt()),
        seq_k,
        dim,
        dim_v,
    };

    let mut out = zeroed(batch * heads * seq_q * dim_v);
    if seq_q > 0 && dim_v > 0 {
        let (head_len, block_len) = (seq_q * dim_v, QUERY_BLOCK * dim_v);
        // Block `blk` of queries of head `bh` (batch entry and head together).
        let block = |bh: usize, blk: usize, acc: &mut [f32], scratch: &mut Scratch| {
            views.query_block(bh / heads, bh % heads, blk * QUERY_BLOCK, acc, scratch)
        };
        if out.len().saturating_mul(seq_k) <= SERIAL_MAX {
            let mut scratch = Scratch::default();
            for (bh, head_out) in out.chunks_mut(head_len).enumerate() {
                for (blk, acc) in head_out.chunks_mut(block_len).enumerate() {
                    block(bh, blk, acc, &mut scratch);
                }
            }
        } else {
            out.par_chunks_mut(head_len)
                .enumerate()
                .for_each(|(bh, head_out)| {
                    head_out
                        .par_chunks_mut(block_len)
                        .enumerate()
                        .for_each_init(Scratch::default, |scratch, (blk, acc)| {
                            block(bh, blk, acc, scratch)
                        });
                });
        }
    }
    flex_tensor(out, &[batch, heads, seq_q, dim_v])
}

/// Per-thread buffers of a task: scores `[rows, KEY_TILE]`, running row maximum and sum.
#[derive(Default)]
struct Scratch {
    scores: Vec<f32>,
    row_max: Vec<f32>,
    row_sum: Vec<f32>,
}

/// The inputs of one attention call as seen by every task.
struct Views<'a> {
    q: Strided<'a, f32>,
    k: Strided<'a, f32>,
    v: Strided<'a, f32>,
    mask: Option<Strided<'a, u8>>,
    bias: Option<Strided<'a, f32>>,
    band: Option<&'a BandMask>,
    scale: f32,
    seq_k: usize,
    dim: usize,
    dim_v: usize,
}

impl Views<'_> {
    /// Writes the outputs of queries `q0..q0 + rows` of head `(b, h)` into `acc` (`[rows, dim_v]`,
    /// row-major; `rows = acc.len() / dim_v`).
    fn query_block(&self, b: usize, h: usize, q0: usize, acc: &mut [f32], scratch: &mut Scratch) {
        let rows = acc.len() / self.dim_v;
        let tile = KEY_TILE.min(self.seq_k);
        scratch.scores.resize(rows * tile, 0.0);
        scratch.row_max.clear();
        scratch.row_max.resize(rows, f32::NEG_INFINITY);
        scratch.row_sum.clear();
        scratch.row_sum.resize(rows, 0.0);

        let queries = q0..q0 + rows;
        let ranges = match self.band {
            Some(band) => band.key_ranges(queries.clone()),
            None => std::iter::once(0..self.seq_k).collect(),
        };
        let tiles = ranges.iter().flat_map(|r| {
            r.clone()
                .step_by(tile.max(1))
                .map(|k0| k0..(k0 + tile).min(r.end))
        });
        for (t, keys) in tiles.enumerate() {
            let (k0, cols) = (keys.start, keys.len());
            let hidden = self
                .band
                .filter(|band| !band.covers(queries.clone(), keys.clone()));
            let scores = &mut scratch.scores[..rows * cols];
            // SAFETY: every index the gemm touches lies inside the views' tensors (shapes
            // checked above), and `scores` holds `rows * cols` elements, row stride `cols`.
            unsafe {
                gemm::gemm(
                    rows,
                    cols,
                    self.dim,
                    scores.as_mut_ptr(),
                    1,
                    cols as isize,
                    false,
                    self.q.data.as_ptr().add(self.q.at(b, h, q0, 0)),
                    self.q.strides[3] as isize,
                    self.q.strides[2] as isize,
                    self.k.data.as_ptr().add(self.k.at(b, h, k0, 0)),
                    self.k.strides[2] as isize,
                    self.k.strides[3] as isize,
                    0.0,
                    self.scale,
                    false,
                    false,
                    false,
                    gemm::Parallelism::None,
                );
            }
            for (r, row) in scores.chunks_exact_mut(cols).enumerate() {
                if let Some(bias) = &self.bias {
                    let start = bias.at(b, h, q0 + r, k0);
                    for (j, s) in row.iter_mut().enumerate() {
                        *s += bias.data[start + j * bias.strides[3]];
                    }
                }
                if let Some(mask) = &self.mask {
                    let start = mask.at(b, h, q0 + r, k0);
                    for (j, s) in row.iter_mut().enumerate() {
                        if mask.data[start + j * mask.strides[3]] != 0 {
                            *s = f32::NEG_INFINITY;
                        }
                    }
                }
                if let Some(band) = hidden {
                    for (j, s) in row.iter_mut().enumerate() {
                        if !band.allowed(q0 + r, k0 + j) {
                            *s = f32::NEG_INFINITY;
                        }
                    }
                }
                let tile_max = rows::max(row);
                let old_max = scratch.row_max[r];
                let new_max = old_max.max(tile_max);
                if new_max == f32::NEG_INFINITY {
                    // Every key so far is masked: this tile adds nothing.
                    row.fill(0.0);
                    continue;
                }
                let tile_sum = rows::exp_shifted_sum(row, new_max);
                if new_max > old_max && old_max > f32::NEG_INFINITY {
                    let correction = (old_max - new_max).exp();
                    rows::scale(&mut acc[r * self.dim_v..(r + 1) * self.dim_v], correction);
                    scratch.row_sum[r] *= correction;
                }
                scratch.row_sum[r] += tile_sum;
                scratch.row_max[r] = new_max;
            }
            // SAFETY: as above; `acc` holds `rows * dim_v` elements, row stride `dim_v`.
            unsafe {
                gemm::gemm(
                    rows,
                    self.dim_v,
                    cols,
                    acc.as_mut_ptr(),
                    1,
                    self.dim_v as isize,
                    t > 0,
                    scores.as_ptr(),
                    1,
                    cols as isize,
                    self.v.data.as_ptr().add(self.v.at(b, h, k0, 0)),
                    self.v.strides[3] as isize,
                    self.v.strides[2] as isize,
                    1.0,
                    1.0,
                    false,
                    false,
                    false,
                    gemm::Parallelism::None,
                );
            }
        }
        for (r, out) in acc.chunks_exact_mut(self.dim_v).enumerate() {
            let sum = scratch.row_sum[r];
            rows::scale(out, if sum > 0.0 { 1.0 / sum } else { 0.0 });
        }
    }
}
