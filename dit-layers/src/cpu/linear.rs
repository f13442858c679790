//! Linear layers on Flex f32 tensors: one `gemm` call that reads the input and the weight
//! through their strides and accumulates onto the bias, in an output buffer written by all
//! threads. Flex's matrix product zeroes its output and copies it into an aligned allocation on
//! one thread, and Burn's linear adds the bias in a second single-threaded pass: with the layout
//! copies (`layout`), a third of a FLUX forward's wall time on two cores went to work on one
//! thread.

use std::ops::Range;

use burn::tensor::{Tensor, backend::Backend};
use rayon::prelude::*;

use super::{SharedOut, filled, flex_tensor, from_flex, is_flex_f32, readable, to_flex};

/// Multiply-adds from which the product is spread over rayon's threads (as Flex's own matmul).
const PARALLEL_WORK: usize = 192 * 192 * 192;
/// Rows per task when writing the bias.
const ROWS: usize = 16;
/// Output columns per task of a product too small for `gemm`'s own threads.
const COLUMNS: usize = 256;
/// Weight values (4 MiB) from which such a product is split into column blocks: reading the
/// weight then takes far longer than handing the blocks to rayon's threads.
const SPLIT_WEIGHT: usize = 1 << 20;

/// `Ok(x weight + bias)` when `x` `[m, k]`, `weight` `[k, n]` and `bias` `[n]` are f32 tensors of
/// the Flex backend (any strides) and no size is zero, `Err(x)` otherwise (a shape mismatch
/// included: the generic path reports it).
pub fn try_linear<B: Backend>(
    x: Tensor<B, 2>,
    weight: &Tensor<B, 2>,
    bias: Option<&Tensor<B, 1>>,
) -> Result<Tensor<B, 2>, Tensor<B, 2>> {
    let ([m, k], [k_w, n]) = (x.dims(), weight.dims());
    let operands = is_flex_f32(&x)
        && is_flex_f32(weight)
        && bias.is_none_or(|b| is_flex_f32(b) && b.dims() == [n]);
    if !operands || k != k_w || m == 0 || n == 0 || k == 0 {
        return Err(x);
    }
    let (x, weight) = (readable(&to_flex(x)), readable(&to_flex(weight.clone())));
    let bias = bias.map(|b| to_flex(b.clone()).to_contiguous());
    let mut out = match &bias {
        Some(bias) => {
            let bias = bias.storage::<f32>();
            // SAFETY: chunks hold whole rows (`ROWS * n` values, the last one fewer rows), and
            // each row gets the `n` values of the bias.
            unsafe {
                filled(m * n, ROWS * n, |_, rows| {
                    for row in rows.chunks_exact_mut(n) {
                        for (y, &b) in row.iter_mut().zip(bias) {
                            y.write(b);
                        }
                    }
                })
            }
        }
        // Left unwritten: `gemm` writes every output when it does not accumulate (`k > 0`).
        None => Vec::with_capacity(m * n),
    };
    let strides = |t: &burn_flex::FlexTensor| {
        let s = t.layout().strides();
        (s[0], s[1])
    };
    let ((x_rs, x_cs), (w_rs, w_cs)) = (strides(&x), strides(&weight));
    let product = Product {
        rows: m,
        depth: k,
        out: SharedOut(out.as_mut_ptr()),
        out_rs: n as isize,
        accumulate: bias.is_some(),
        // SAFETY: the start offsets lie within the storages (Flex's layouts).
        x: unsafe { x.storage::<f32>().as_ptr().add(x.layout().start_offset()) },
        x_strides: (x_rs, x_cs),
        w: unsafe {
            weight
                .storage::<f32>()
                .as_ptr()
                .add(weight.layout().start_offset())
        },
        w_strides: (w_rs, w_cs),
    };
    let work = m.saturating_mul(n).saturating_mul(k);
    if work >= PARALLEL_WORK {
        product.columns(0..n, gemm::Parallelism::Rayon(0));
    } else if n >= 2 * COLUMNS && k.saturating_mul(n) >= SPLIT_WEIGHT {
        // Few rows (an adaLN modulation's one per sample): gemm would run on one thread, and a
        // product of few rows is bound by reading the weight, which the threads then share.
        (0..n.div_ceil(COLUMNS)).into_par_iter().for_each(|block| {
            let start = block * COLUMNS;
            product.columns(start..(start + COLUMNS).min(n), gemm::Parallelism::None);
        });
    } else {
        product.columns(0..n, gemm::Parallelism::None);
    }
    if bias.is_none() {
        // SAFETY: without a bias the product wrote all `m * n` outputs (`k > 0`, checked above)
        // without reading them.
        unsafe { out.set_len(m * n) };
    }
    Ok(from_flex(flex_tensor(out, &[m, n])))
}

/// `out (+)= x w` with `x` `[rows, depth]` and `w` `[depth, n]` read through their `(row,
/// column)` strides, into `out` of row stride `out_rs` (onto what it holds when `accumulate`).
struct Product {
    rows: usize,
    depth: usize,
    out: SharedOut,
    out_rs: isize,
    accumulate: bool,
    x: *const f32,
    x_strides: (isize, isize),
    w: *const f32,
    w_strides: (isize, isize),
}

// SAFETY: the operands are only read, and `out` is shared as `SharedOut` is.
unsafe impl Sync for Product {}

impl Product {
    /// Computes the output columns `columns`.
    fn columns(&self, columns: Range<usize>, parallelism: gemm::Parallelism) {
        let (x_rs, x_cs) = self.x_strides;
        let (w_rs, w_cs) = self.w_strides;
        let first = columns.start as isize;
        // SAFETY: `try_linear` checked the shapes, `readable` gave both operands non-negative
        // strides, so every element read, `i * rs + j * cs` inside the operands' shapes, lies
        // in their storage; `out` holds `rows` rows of `out_rs` values and `columns` lies
        // inside a row.
        unsafe {
            gemm::gemm(
                self.rows,
                columns.len(),
                self.depth,
                self.out.0.offset(first),
                1,
                self.out_rs,
                self.accumulate,
                self.x,
                x_cs,
                x_rs,
                self.w.offset(first * w_cs),
                w_cs,
                w_rs,
                1.0,
                1.0,
                false,
                false,
                false,
                parallelism,
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use burn::tensor::module::linear;

    use super::{super::random, try_linear};

    /// Equals Burn's linear with and without bias, for a strided input and a transposed
    /// weight (how `Linear` stores PyTorch's `[d_out, d_in]`), at a small size, one `gemm`
    /// threads itself and one split into column blocks.
    #[test]
    fn matches_burns_linear() {
        for (m, k, n) in [(3, 5, 7), (300, 256, 320), (2, 1100, 1000)] {
            let x = random([k, m]).transpose();
            let weight = random([n, k]).transpose();
            let bias = random([n]);
            for bias in [None, Some(bias)] {
                let expected = linear(x.clone(), weight.clone(), bias.clone());
                let got = try_linear(x.clone(), &weight, bias.as_ref()).unwrap();
                got.into_data()
                    .assert_approx_eq::<f32>(&expected.into_data(), Default::default());
            }
        }
    }

    /// Other shapes are left to the generic path.
    #[test]
    fn declines_mismatches_and_empty_sizes() {
        let weight = random([4, 6]);
        assert!(try_linear(random([2, 5]), &weight, None).is_err());
        assert!(try_linear(random([0, 4]), &weight, None).is_err());
        assert!(try_linear(random([2, 4]), &weight, Some(&random([5]))).is_err());
    }
}
