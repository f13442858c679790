//! Linear layers from PyTorch-layout weights.

use std::ops::Range;

use burn::{
    module::Param,
    nn::Linear,
    tensor::{Tensor, backend::Backend},
};

use crate::{LoadError, WeightsView};

/// `nn.Linear(d_in, d_out, bias)` stored under `w` (`weight` `[d_out, d_in]`, `bias` `[d_out]`).
pub fn linear<B: Backend>(
    w: &WeightsView<'_>,
    d_in: usize,
    d_out: usize,
    bias: bool,
    device: &B::Device,
) -> Result<Linear<B>, LoadError> {
    linear_from_rows(w, d_out, 0..d_out, d_in, bias, device)
}

/// Output rows `rows` of a fused `nn.Linear(d_in, total_out)` stored under `w`: one of the
/// projections packed into a fused weight such as BFL's `qkv` or `linear1`.
pub fn linear_from_rows<B: Backend>(
    w: &WeightsView<'_>,
    total_out: usize,
    rows: Range<usize>,
    d_in: usize,
    bias: bool,
    device: &B::Device,
) -> Result<Linear<B>, LoadError> {
    let weight = w.tensor::<B, 2>("weight", [total_out, d_in], device)?;
    let weight = weight.slice([rows.clone(), 0..d_in]).transpose();
    let bias = if bias {
        let b = w.tensor::<B, 1>("bias", [total_out], device)?;
        Some(Param::from_tensor(b.slice([rows])))
    } else {
        None
    };
    Ok(Linear {
        weight: Param::from_tensor(weight),
        bias,
    })
}

/// `nn.Linear(d_in, d_out, bias)` stored under `w` with the two halves of its output rows
/// swapped: a modulation stored as (shift, scale) where the model reads (scale, shift), as in
/// BFL's and HunyuanVideo's final layers.
pub fn linear_swapped_halves<B: Backend>(
    w: &WeightsView<'_>,
    d_in: usize,
    d_out: usize,
    bias: bool,
    device: &B::Device,
) -> Result<Linear<B>, LoadError> {
    let half = d_out / 2;
    let swap = |t: Tensor<B, 2>| {
        Tensor::cat(
            vec![
                t.clone().narrow(0, half, d_out - half),
                t.narrow(0, 0, half),
            ],
            0,
        )
    };
    let weight = swap(w.tensor::<B, 2>("weight", [d_out, d_in], device)?);
    let bias = if bias {
        let b = w.tensor::<B, 1>("bias", [d_out], device)?;
        Some(Param::from_tensor(swap(b.unsqueeze_dim(1)).squeeze_dim(1)))
    } else {
        None
    };
    Ok(Linear {
        weight: Param::from_tensor(weight.transpose()),
        bias,
    })
}
