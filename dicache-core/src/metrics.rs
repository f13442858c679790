//! Scalar statistics of tensors that the policies decide on.

use burn::tensor::{FloatDType, Tensor, backend::Backend};

/// `mean(|t|)`, computed in f32 whatever the tensor's dtype, returned as f64.
pub fn mean_abs<B: Backend, const D: usize>(t: Tensor<B, D>) -> f64 {
    let mean = t.cast(FloatDType::F32).abs().mean();
    mean.into_data()
        .iter::<f64>()
        .next()
        .expect("mean of a tensor has one element")
}

/// Relative L1 distance `mean|a - b| / mean|b|` (0 when both are zero).
pub fn relative_l1<B: Backend, const D: usize>(a: Tensor<B, D>, b: Tensor<B, D>) -> f64 {
    ratio(mean_abs(a - b.clone()), mean_abs(b))
}

/// `mean(|t|)` of every batch row of each tensor (`[rows, ...]`), computed in f32 and read
/// back from the device at once: `result[i][r]` is row `r` of `tensors[i]`.
pub fn row_mean_abs<B: Backend, const D: usize>(tensors: Vec<Tensor<B, D>>) -> Vec<Vec<f64>> {
    let counts: Vec<usize> = tensors.iter().map(|t| t.dims()[0]).collect();
    if counts.iter().sum::<usize>() == 0 {
        return counts.iter().map(|_| Vec::new()).collect();
    }
    let means: Vec<Tensor<B, 1>> = tensors
        .into_iter()
        .map(|t| {
            let dims = t.dims();
            let (rows, per_row) = (dims[0], dims[1..].iter().product::<usize>());
            t.cast(FloatDType::F32)
                .abs()
                .reshape([rows, per_row])
                .mean_dim(1)
                .reshape([rows])
        })
        .collect();
    let values: Vec<f64> = Tensor::cat(means, 0).into_data().iter::<f64>().collect();
    let mut rest = values.as_slice();
    counts
        .iter()
        .map(|&n| {
            let (head, tail) = rest.split_at(n);
            rest = tail;
            head.to_vec()
        })
        .collect()
}

/// `num / den` of two sums of means, as [`relative_l1`] divides (0 when both are zero).
pub(crate) fn ratio(num: f64, den: f64) -> f64 {
    if den == 0.0 {
        if num == 0.0 { 0.0 } else { f64::INFINITY }
    } else {
        num / den
    }
}
