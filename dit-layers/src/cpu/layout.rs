//! Concatenation and contiguous copies of Flex f32 tensors, read through their strides, rows
//! spread over rayon's threads. Flex copies on one thread (element by element where a layout
//! does not collapse): joining the text and image streams' heads and merging heads after
//! attention took a fifth of a FLUX forward's wall time on two cores.

use burn::tensor::{Tensor, backend::Backend};
use burn_flex::FlexTensor;

use super::{flex_tensor, for_chunks, from_flex, is_flex_f32, readable, to_flex, zeroed};

/// Rows (last-dimension runs) per task.
const ROWS: usize = 64;

/// `Ok(cat(parts, dim))` when every part is an f32 tensor of the Flex backend and all sizes but
/// `dim` agree, `Err(parts)` otherwise (small results are copied on the calling thread).
pub fn try_cat<B: Backend, const D: usize>(
    parts: Vec<Tensor<B, D>>,
    dim: usize,
) -> Result<Tensor<B, D>, Vec<Tensor<B, D>>> {
    let Some(first) = parts.first() else {
        return Err(parts);
    };
    let mut shape = first.dims();
    let agree = |t: &Tensor<B, D>| {
        let dims = t.dims();
        (0..D).all(|d| d == dim || dims[d] == shape[d])
    };
    if dim >= D || !parts.iter().all(|t| is_flex_f32(t) && agree(t)) {
        return Err(parts);
    }
    shape[dim] = parts.iter().map(|t| t.dims()[dim]).sum();
    let parts: Vec<FlexTensor> = parts.into_iter().map(|t| readable(&to_flex(t))).collect();
    Ok(from_flex(gather(&parts, shape, dim)))
}

/// `t` with a contiguous layout: a copy, run by run of the last dimension (on rayon's threads
/// unless `t` is small), when `t` is an f32 tensor of the Flex backend that is not contiguous
/// yet, `t` itself otherwise (other backends, and Burn's reshape, copy where they need to).
/// Flex's own copy of a small permuted view, element by element, took a quarter of the mini
/// models' single-threaded time (merging heads after attention).
pub fn contiguous<B: Backend, const D: usize>(t: Tensor<B, D>) -> Tensor<B, D> {
    if !is_flex_f32(&t) {
        return t;
    }
    let shape = t.dims();
    let flex = readable(&to_flex(t));
    if flex.is_contiguous() && flex.layout().start_offset() == 0 {
        return from_flex(flex);
    }
    from_flex(gather(&[flex], shape, 0))
}

/// `parts` (non-negative strides, equal sizes but along `dim`) joined along `dim` into a new
/// contiguous tensor of `shape`; each task copies `ROWS` runs of the last dimension.
fn gather<const D: usize>(parts: &[FlexTensor], shape: [usize; D], dim: usize) -> FlexTensor {
    let last = shape[D - 1];
    let mut out = zeroed(shape.iter().product());
    let sources: Vec<Source> = parts
        .iter()
        .scan(0, |start, t| {
            let len = t.layout().shape()[dim];
            *start += len;
            Some(Source {
                data: t.storage::<f32>(),
                offset: t.layout().start_offset(),
                strides: t.layout().strides().iter().map(|&s| s as usize).collect(),
                start: *start - len,
                len,
            })
        })
        .collect();
    if last > 0 {
        for_chunks(&mut out, ROWS * last, |task, rows| {
            for (i, row) in rows.chunks_exact_mut(last).enumerate() {
                let mut index = [0usize; D];
                let mut r = task * ROWS + i;
                for d in (0..D - 1).rev() {
                    index[d] = r % shape[d];
                    r /= shape[d];
                }
                if dim == D - 1 {
                    for s in &sources {
                        s.copy_run(&index, &mut row[s.start..s.start + s.len]);
                    }
                } else {
                    let s = sources
                        .iter()
                        .find(|s| (s.start..s.start + s.len).contains(&index[dim]))
                        .expect("every index along the joined dimension has its part");
                    index[dim] -= s.start;
                    s.copy_run(&index, row);
                }
            }
        });
    }
    flex_tensor(out, &shape)
}

/// One part of a concatenation as the copy reads it.
struct Source<'a> {
    data: &'a [f32],
    offset: usize,
    strides: Vec<usize>,
    /// Where the part starts along the joined dimension of the result.
    start: usize,
    /// Its size along the joined dimension.
    len: usize,
}

impl Source<'_> {
    /// Copies the part's run of the last dimension at `index` (its last entry ignored) into
    /// `out`.
    fn copy_run(&self, index: &[usize], out: &mut [f32]) {
        let last = index.len() - 1;
        let start = self.offset
            + index[..last]
                .iter()
                .zip(&self.strides)
                .map(|(i, s)| i * s)
                .sum::<usize>();
        let step = self.strides[last];
        if step == 1 || out.len() <= 1 {
            out.copy_from_slice(&self.data[start..start + out.len()]);
        } else {
            for (j, y) in out.iter_mut().enumerate() {
                *y = self.data[start + j * step];
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use burn::tensor::Tensor;
    use burn_flex::Flex;

    use super::{super::random, contiguous, try_cat};

    /// Equals Burn's cat along every dimension, on strided views (heads split from tokens, as
    /// the attention's inputs are) of different lengths along the joined dimension.
    #[test]
    fn equals_burns_cat() {
        let a = random([2, 300, 4, 32]).swap_dims(1, 2);
        let b = random([2, 100, 4, 32]).swap_dims(1, 2);
        let expected = Tensor::cat(vec![a.clone(), b.clone()], 2);
        let got = try_cat(vec![a, b], 2).unwrap();
        assert_eq!(got.into_data(), expected.into_data());
        for dim in [0, 1, 3] {
            let a = random([2, 40, 6, 70]).swap_dims(1, 3);
            let mut shape = a.dims();
            shape[dim] = 3;
            let b = random(shape);
            let expected = Tensor::cat(vec![a.clone(), b.clone()], dim);
            let got = try_cat(vec![a, b], dim).unwrap();
            assert_eq!(got.into_data(), expected.into_data(), "dim {dim}");
        }
    }

    /// Parts that do not join are left to Burn (which reports them); small ones are joined,
    /// on the calling thread.
    #[test]
    fn declines_what_it_does_not_join() {
        assert!(try_cat(vec![random([300, 200]), random([300, 100])], 0).is_err());
        assert!(try_cat::<Flex, 2>(vec![], 0).is_err());
        let (a, b) = (random([3, 2]), random([2, 3]).swap_dims(0, 1));
        let expected = Tensor::cat(vec![a.clone(), b.clone()], 1).into_data();
        assert_eq!(try_cat(vec![a, b], 1).unwrap().into_data(), expected);
    }

    /// A transposed view is copied into the layout its shape implies.
    #[test]
    fn makes_views_contiguous() {
        let x = random([4, 300, 8, 16]).swap_dims(1, 2);
        let expected = x.clone().into_data();
        let y = contiguous(x);
        assert_eq!(y.clone().into_data(), expected);
        let flex = super::to_flex(y);
        assert!(flex.is_contiguous());
    }
}
