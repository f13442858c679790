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
    let num = mean_abs(a - b.clone());
    let den = mean_abs(b);
    if den == 0.0 {
        if num == 0.0 { 0.0 } else { f64::INFINITY }
    } else {
        num / den
    }
}
