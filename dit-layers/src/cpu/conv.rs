//! Stride-1 convolutions on Flex f32 tensors: for each band of output rows, the input windows
//! the band reads are laid out as a `[kt * kh * kw * c_in, band]` matrix (one shifted, zero-
//! padded copy of an input row per kernel tap and channel, straight from the channels-first
//! layout), and one `gemm` call multiplies the weight `[c_out, kt * kh * kw * c_in]` by it,
//! writing the band of every output channel in place; then the bias is added. Flex's own
//! convolution converts the whole input to channels-last on one thread, zeroes its output on
//! one thread, and copies each tile's product into the output.

use burn::tensor::{Tensor, backend::Backend};
use rayon::prelude::*;

use super::{SharedOut, filled, flex_tensor, from_flex, is_flex_f32, to_flex};

/// Output values (per output channel) a task's product covers, about: the columns of its
/// `gemm` call.
const BAND_VALUES: usize = 512;
/// Multiply-adds from which the bands are spread over rayon's threads.
const PARALLEL_WORK: usize = 1 << 21;

/// `Ok(conv(x))` for `x` `[batch, c_in, t, h, w]` and `weight` `[c_out, c_in, kt, kh, kw]`
/// with stride 1, dilation 1, one group and `padding` zeros on both sides of (t, h, w), plus
/// `bias` `[c_out]`, when they are f32 tensors of the Flex backend of those shapes with a
/// non-empty output; `Err(x)` otherwise (the generic path then computes, or reports, it).
pub fn try_conv3d<B: Backend>(
    x: Tensor<B, 5>,
    weight: &Tensor<B, 5>,
    bias: Option<&Tensor<B, 1>>,
    padding: [usize; 3],
) -> Result<Tensor<B, 5>, Tensor<B, 5>> {
    let ([batch, c_in, t, h, w], [c_out, c_in_w, kt, kh, kw]) = (x.dims(), weight.dims());
    let operands = is_flex_f32(&x)
        && is_flex_f32(weight)
        && bias.is_none_or(|b| is_flex_f32(b) && b.dims() == [c_out]);
    let out_size =
        |size: usize, pad: usize, kernel: usize| (size + 2 * pad + 1).checked_sub(kernel);
    let (Some(to), Some(ho), Some(wo)) = (
        out_size(t, padding[0], kt),
        out_size(h, padding[1], kh),
        out_size(w, padding[2], kw),
    ) else {
        return Err(x);
    };
    let sizes = [batch, c_in, c_out, kt, kh, kw, to, ho, wo];
    if !operands || c_in != c_in_w || sizes.contains(&0) {
        return Err(x);
    }
    // A strided view is copied by the layout kernel (Flex's own copy runs on one thread).
    let x = to_flex(super::layout::contiguous(x));
    let weight = taps_first(
        to_flex(weight.clone()).to_contiguous().storage(),
        c_in,
        c_out,
    );
    let bias = bias.map(|b| to_flex(b.clone()).to_contiguous());
    let conv = Conv {
        x: x.storage(),
        weight: &weight,
        bias: bias.as_ref().map(|b| b.storage()),
        input: [t, h, w],
        kernel: [kt, kh, kw],
        padding,
        output: [to, ho, wo],
        c_in,
        c_out,
    };
    let len = batch * c_out * to * ho * wo;
    let mut out: Vec<f32> = Vec::with_capacity(len);
    let shared = SharedOut(out.as_mut_ptr());
    let rows = (BAND_VALUES / wo).clamp(1, ho);
    let bands_per_frame = ho.div_ceil(rows);
    let bands = batch * to * bands_per_frame;
    let band = |index: usize, col: &mut Vec<f32>| {
        let (frame, band) = (index / bands_per_frame, index % bands_per_frame);
        let y0 = band * rows;
        conv.band(frame / to, frame % to, y0..(y0 + rows).min(ho), shared, col);
    };
    let work = len.saturating_mul(c_in * kt * kh * kw);
    if work >= PARALLEL_WORK && bands > 1 {
        (0..bands)
            .into_par_iter()
            .for_each_init(Vec::new, |col, index| band(index, col));
    } else {
        let mut col = Vec::new();
        (0..bands).for_each(|index| band(index, &mut col));
    }
    // SAFETY: the bands cover every output row of every frame, batch entry and channel, and
    // each band wrote all its values (`Conv::band`).
    unsafe { out.set_len(len) };
    Ok(from_flex(flex_tensor(out, &[batch, c_out, to, ho, wo])))
}

/// The weight `[c_out, c_in, kt, kh, kw]` as `[c_out, kt * kh * kw, c_in]`: the order of the
/// products' sums is then the one of Flex's convolution (kernel tap by kernel tap, all input
/// channels in each), whose rounding the parity tests against PyTorch were written with.
fn taps_first(weight: &[f32], c_in: usize, c_out: usize) -> Vec<f32> {
    let per_out = weight.len() / c_out;
    let taps = per_out / c_in;
    // SAFETY: each chunk is one output channel's filter, and the loops write all its
    // `taps * c_in` values.
    unsafe {
        filled(weight.len(), per_out, |o, dst| {
            let filter = &weight[o * per_out..(o + 1) * per_out];
            for (ci, channel) in filter.chunks_exact(taps).enumerate() {
                for (tap, &value) in channel.iter().enumerate() {
                    dst[tap * c_in + ci].write(value);
                }
            }
        })
    }
}

/// One convolution's contiguous operands and sizes (`[t, h, w]` triples).
struct Conv<'a> {
    x: &'a [f32],
    weight: &'a [f32],
    bias: Option<&'a [f32]>,
    input: [usize; 3],
    kernel: [usize; 3],
    padding: [usize; 3],
    output: [usize; 3],
    c_in: usize,
    c_out: usize,
}

impl Conv<'_> {
    /// Writes output rows `rows` of frame `frame` of batch entry `b`, all channels: the
    /// windows they read into `col`, then `weight x col` onto the bias.
    fn band(
        &self,
        b: usize,
        frame: usize,
        rows: std::ops::Range<usize>,
        out: SharedOut,
        col: &mut Vec<f32>,
    ) {
        let ([t, h, w], [kt, kh, kw], [pt, ph, pw]) = (self.input, self.kernel, self.padding);
        let [to, ho, wo] = self.output;
        let taps = self.c_in * kt * kh * kw;
        let n = rows.len() * wo;
        col.clear();
        col.resize(taps * n, 0.0);
        // Row ((dt, dy, dx), ci) of `col`: input channel ci at frame `frame + dt - pt`, rows
        // `y + dy - ph` and columns `x + dx - pw` of the band's outputs (y, x), zero outside.
        for (row, dst) in col.chunks_exact_mut(n).enumerate() {
            let (ci, tap) = (row % self.c_in, row / self.c_in);
            let (dx, rest) = (tap % kw, tap / kw);
            let (dy, dt) = (rest % kh, rest / kh);
            let Some(src_t) = (frame + dt).checked_sub(pt).filter(|&s| s < t) else {
                continue;
            };
            let plane = ((b * self.c_in + ci) * t + src_t) * h * w;
            // Output columns x whose input column x + dx - pw lies in 0..w.
            let x_lo = pw.saturating_sub(dx).min(wo);
            let x_hi = (w + pw).saturating_sub(dx).min(wo).max(x_lo);
            for (y, dst_row) in rows.clone().zip(dst.chunks_exact_mut(wo)) {
                let Some(src_y) = (y + dy).checked_sub(ph).filter(|&s| s < h) else {
                    continue;
                };
                let src = plane + src_y * w + x_lo + dx - pw;
                dst_row[x_lo..x_hi].copy_from_slice(&self.x[src..src + (x_hi - x_lo)]);
            }
        }
        let channel_stride = to * ho * wo;
        let first = b * self.c_out * channel_stride + frame * ho * wo + rows.start * wo;
        // SAFETY: `first + c * channel_stride + j` for channel c < c_out and j < n is an output
        // value of this band only: rows `rows` of `frame` of entry `b` of channel c.
        let dst = unsafe { out.0.add(first) };
        // SAFETY: the weight is `[c_out, taps]` and `col` `[taps, n]`, both contiguous; `dst`
        // holds `c_out` rows of `n` values `channel_stride` apart (above), which the product
        // writes without reading them (`taps > 0`).
        unsafe {
            gemm::gemm(
                self.c_out,
                n,
                taps,
                dst,
                1,
                channel_stride as isize,
                false,
                self.weight.as_ptr(),
                1,
                taps as isize,
                col.as_ptr(),
                1,
                n as isize,
                0.0,
                1.0,
                false,
                false,
                false,
                gemm::Parallelism::None,
            );
        }
        // The bias after the product, as PyTorch adds it (the same rounding).
        if let Some(bias) = self.bias {
            for (c, &value) in bias.iter().enumerate() {
                // SAFETY: as above, this band's values of channel c, written by the product.
                let row = unsafe { std::slice::from_raw_parts_mut(dst.add(c * channel_stride), n) };
                row.iter_mut().for_each(|y| *y += value);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use burn::tensor::{Tensor, module::conv3d, ops::ConvOptions};
    use burn_flex::Flex;

    use super::{super::random, try_conv3d};

    /// Input shape, weight shape, padding and whether there is a bias.
    type Case = ([usize; 5], [usize; 5], [usize; 3], bool);

    /// Equals Flex's own convolution: 2-D (one frame) and 3-D kernels, with and without
    /// padding and bias, a 1x1 kernel, a kernel as large as the padded input, two batch
    /// entries, serial and parallel sizes, a strided input.
    #[test]
    fn matches_flex_convolution() {
        let cases: [Case; 7] = [
            ([2, 3, 1, 7, 5], [4, 3, 1, 3, 3], [0, 1, 1], true),
            ([1, 5, 3, 6, 9], [2, 5, 3, 3, 3], [1, 1, 1], true),
            ([1, 5, 3, 6, 9], [2, 5, 3, 3, 3], [0, 0, 0], false),
            ([2, 6, 2, 4, 4], [3, 6, 1, 1, 1], [0, 0, 0], true),
            ([1, 2, 1, 3, 2], [2, 2, 1, 5, 4], [0, 1, 1], true),
            ([1, 2, 3, 2, 2], [2, 2, 3, 1, 1], [1, 0, 0], false),
            ([2, 16, 3, 40, 36], [24, 16, 3, 3, 3], [0, 1, 1], true),
        ];
        for (x_shape, w_shape, padding, with_bias) in cases {
            let x: Tensor<Flex, 5> = random(x_shape);
            let weight: Tensor<Flex, 5> = random(w_shape);
            let bias = with_bias.then(|| random::<1>([w_shape[0]]));
            let options = ConvOptions::new([1, 1, 1], padding, [1, 1, 1], 1);
            let expected = conv3d(x.clone(), weight.clone(), bias.clone(), options);
            let got = try_conv3d(x, &weight, bias.as_ref(), padding)
                .unwrap_or_else(|_| panic!("{x_shape:?} * {w_shape:?} should take the kernel"));
            assert_eq!(got.dims(), expected.dims(), "{x_shape:?} * {w_shape:?}");
            let err = (got - expected).abs().max().into_scalar();
            assert!(
                err < 1e-4,
                "{x_shape:?} * {w_shape:?} pad {padding:?}: max error {err}"
            );
        }
        // A strided view (height and width swapped) as the input.
        let x: Tensor<Flex, 5> = random([1, 4, 2, 9, 6]).swap_dims(3, 4);
        let weight: Tensor<Flex, 5> = random([3, 4, 2, 3, 3]);
        let options = ConvOptions::new([1, 1, 1], [1, 1, 1], [1, 1, 1], 1);
        let expected = conv3d(x.clone(), weight.clone(), None, options);
        let got = try_conv3d(x, &weight, None, [1, 1, 1]).expect("a strided view is taken");
        let err = (got - expected).abs().max().into_scalar();
        assert!(err < 1e-4, "strided input: max error {err}");
    }

    /// A kernel larger than the padded input, and mismatched channels, are left to the generic
    /// path (which reports them).
    #[test]
    fn leaves_impossible_shapes_to_the_generic_path() {
        let x: Tensor<Flex, 5> = random([1, 2, 1, 3, 3]);
        assert!(try_conv3d(x.clone(), &random([2, 2, 1, 5, 5]), None, [0, 0, 0]).is_err());
        assert!(try_conv3d(x, &random([2, 3, 1, 3, 3]), None, [0, 1, 1]).is_err());
    }
}
