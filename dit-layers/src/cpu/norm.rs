//! Norms on Flex f32 tensors: over the last dimension with the adaLN modulation and the gated
//! residual of the DiT blocks fused in (one pass per row, rows spread over rayon's threads), and
//! the VAEs' group norm (one task per group).
//! Flex evaluates a layer norm as seven single-threaded passes (mean, subtract, square, mean,
//! add, square root, divide), the modulation as two more and a gated residual as two.

use burn::tensor::{Tensor, backend::Backend};
use burn_flex::FlexTensor;

use super::{flex_tensor, from_flex, is_flex_f32, mapped, to_flex};

/// Rows per task.
const ROWS: usize = 16;

/// Which norm of a row.
#[derive(Debug, Clone, Copy)]
pub enum RowNorm {
    /// `(x - mean) / sqrt(var + eps)`.
    Layer,
    /// `x / sqrt(mean(x²) + eps)`.
    Rms,
}

/// What follows the norm of a row: the affine weight and bias (`[n]`), then the modulation
/// `* (1 + scale) + shift` with `scale`, `shift` `[batch, n]` (a row of `x` `[batch, ..., n]`
/// takes its batch entry's).
pub struct Affine<'a, B: Backend> {
    /// Multiplies the normalised row.
    pub weight: Option<&'a Tensor<B, 1>>,
    /// Added after the weight.
    pub bias: Option<&'a Tensor<B, 1>>,
    /// `(scale, shift)` of the adaLN modulation.
    pub modulation: Option<(&'a Tensor<B, 2>, &'a Tensor<B, 2>)>,
}

/// `Some(norm(x))` followed by `affine` when `x` and every operand are f32 tensors of the Flex
/// backend with the shapes documented on [`Affine`], `None` otherwise (a broadcast operand
/// included: the generic path handles it).
pub fn try_norm<B: Backend, const D: usize>(
    x: &Tensor<B, D>,
    kind: RowNorm,
    eps: f64,
    affine: Affine<'_, B>,
) -> Option<Tensor<B, D>> {
    let dims = x.dims();
    let n = dims[D - 1];
    let batch = dims[0];
    let row = |t: &Tensor<B, 1>| is_flex_f32(t) && t.dims() == [n];
    let per_sample = |t: &Tensor<B, 2>| is_flex_f32(t) && t.dims() == [batch, n];
    let operands = affine.weight.is_none_or(row)
        && affine.bias.is_none_or(row)
        && affine
            .modulation
            .is_none_or(|(s, t)| per_sample(s) && per_sample(t));
    if !is_flex_f32(x) || !operands {
        return None;
    }
    let rows_per_batch = x.shape().num_elements() / n / batch.max(1);
    let values = |t: &Tensor<B, 1>| contiguous(t.clone());
    let weight = affine.weight.map(values);
    let bias = affine.bias.map(values);
    let modulation = affine
        .modulation
        .map(|(s, t)| (contiguous(s.clone()), contiguous(t.clone())));
    let (w, b) = (
        weight.as_ref().map(|t| t.storage::<f32>()),
        bias.as_ref().map(|t| t.storage::<f32>()),
    );
    let m = modulation
        .as_ref()
        .map(|(s, t)| (s.storage::<f32>(), t.storage::<f32>()));
    let eps = eps as f32;
    let out = map_chunks(x, n * ROWS, |task, rows| {
        for (i, row) in rows.chunks_exact_mut(n).enumerate() {
            normalise(row, kind, eps);
            if let Some(w) = w {
                row.iter_mut().zip(w).for_each(|(y, w)| *y *= w);
            }
            if let Some(b) = b {
                row.iter_mut().zip(b).for_each(|(y, b)| *y += b);
            }
            if let Some((scale, shift)) = m {
                let entry = (task * ROWS + i) / rows_per_batch * n;
                let (scale, shift) = (&scale[entry..entry + n], &shift[entry..entry + n]);
                for ((y, s), t) in row.iter_mut().zip(scale).zip(shift) {
                    *y = *y * (1.0 + s) + t;
                }
            }
        }
    });
    Some(out)
}

/// `Some(x + gate * y)` with `gate` `[batch, n]` over the rows of `x`, `y` `[batch, ..., n]`
/// when all are f32 tensors of the Flex backend of exactly these shapes, `None` otherwise.
pub fn try_gated_add<B: Backend, const D: usize>(
    x: &Tensor<B, D>,
    y: &Tensor<B, D>,
    gate: &Tensor<B, 2>,
) -> Option<Tensor<B, D>> {
    let dims = x.dims();
    let (n, batch) = (dims[D - 1], dims[0]);
    let operands = is_flex_f32(x)
        && is_flex_f32(y)
        && is_flex_f32(gate)
        && y.dims() == dims
        && gate.dims() == [batch, n];
    if !operands {
        return None;
    }
    let rows_per_batch = x.shape().num_elements() / n / batch.max(1);
    let y = contiguous(y.clone());
    let gate = contiguous(gate.clone());
    let (y_values, gate_values) = (y.storage::<f32>(), gate.storage::<f32>());
    let out = map_chunks(x, n * ROWS, |task, rows| {
        for (i, row) in rows.chunks_exact_mut(n).enumerate() {
            let r = task * ROWS + i;
            let entry = r / rows_per_batch * n;
            let (add, g) = (
                &y_values[r * n..(r + 1) * n],
                &gate_values[entry..entry + n],
            );
            for ((x, a), g) in row.iter_mut().zip(add).zip(g) {
                *x += g * a;
            }
        }
    });
    Some(out)
}

/// `Some(group_norm(x))` with the per-channel `weight` and `bias` when all are f32 tensors of
/// the Flex backend, `None` otherwise. `x` is `[batch, channels, ...]`; each of `groups`
/// groups of consecutive channels is normalised over its channels and positions, one task per
/// (batch entry, group). Flex would make seven passes and a strided broadcast of the affine.
pub fn try_group_norm<B: Backend, const D: usize>(
    x: &Tensor<B, D>,
    groups: usize,
    eps: f64,
    weight: &Tensor<B, 1>,
    bias: &Tensor<B, 1>,
) -> Option<Tensor<B, D>> {
    let dims = x.dims();
    let channels = dims[1];
    let operands = is_flex_f32(x)
        && is_flex_f32(weight)
        && is_flex_f32(bias)
        && weight.dims() == [channels]
        && bias.dims() == [channels];
    if !operands || groups == 0 || !channels.is_multiple_of(groups) {
        return None;
    }
    let positions: usize = dims[2..].iter().product();
    let per_group = channels / groups;
    let (weight, bias) = (contiguous(weight.clone()), contiguous(bias.clone()));
    let (w, b) = (weight.storage::<f32>(), bias.storage::<f32>());
    let eps = eps as f32;
    let out = map_chunks(x, per_group * positions, |task, group| {
        let n = group.len() as f32;
        let mean = sum_of(group, |x| x) / n;
        let var = sum_of(group, |x| (x - mean) * (x - mean)) / n;
        let std = (var + eps).sqrt();
        let first = task % groups * per_group;
        for (c, channel) in group.chunks_exact_mut(positions).enumerate() {
            let (w, b) = (w[first + c], b[first + c]);
            channel
                .iter_mut()
                .for_each(|x| *x = (*x - mean) / std * w + b);
        }
    });
    Some(out)
}

/// A new tensor of `x`'s shape made from chunks of `chunk` values, each copied from `x` and
/// then updated in place by `f(task, chunk)` (`mapped`: one pass, the copy included, where
/// copy-on-write would first copy `x` on one thread).
fn map_chunks<B: Backend, const D: usize>(
    x: &Tensor<B, D>,
    chunk: usize,
    f: impl Fn(usize, &mut [f32]) + Sync,
) -> Tensor<B, D> {
    let dims = x.dims();
    let src = contiguous(x.clone());
    from_flex(flex_tensor(mapped(src.storage::<f32>(), chunk, f), &dims))
}

/// The Flex tensor of `t`, contiguous (a copy only where it was not).
fn contiguous<B: Backend, const D: usize>(t: Tensor<B, D>) -> FlexTensor {
    to_flex(t).to_contiguous()
}

/// Normalises `row` in place, statistics in f32 as the generic path computes them.
fn normalise(row: &mut [f32], kind: RowNorm, eps: f32) {
    let n = row.len() as f32;
    match kind {
        RowNorm::Layer => {
            let mean = sum_of(row, |x| x) / n;
            let var = sum_of(row, |x| (x - mean) * (x - mean)) / n;
            let std = (var + eps).sqrt();
            row.iter_mut().for_each(|x| *x = (*x - mean) / std);
        }
        RowNorm::Rms => {
            let rms = (sum_of(row, |x| x * x) / n + eps).sqrt();
            row.iter_mut().for_each(|x| *x /= rms);
        }
    }
}

/// The sum of `f(x)` over `row`, in 16 interleaved partial sums (vectorised).
fn sum_of(row: &[f32], f: impl Fn(f32) -> f32) -> f32 {
    let mut lanes = [0.0f32; 16];
    let chunks = row.chunks_exact(16);
    let tail: f32 = chunks.remainder().iter().map(|&x| f(x)).sum();
    for chunk in chunks {
        for (lane, &x) in lanes.iter_mut().zip(chunk) {
            *lane += f(x);
        }
    }
    lanes.iter().sum::<f32>() + tail
}
