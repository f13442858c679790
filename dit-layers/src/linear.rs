//! Linear layers from PyTorch-layout weights, dense or kept quantized.

use std::ops::Range;

use burn::{
    module::{Module, Param},
    nn,
    tensor::{Int, Tensor, TensorData, backend::Backend, module::linear as affine},
};

use crate::{LoadError, QuantizedMatrix, WeightsView, layout};

/// A linear layer `y = x Wᵀ + b`: its weight a tensor on the device, or ggml blocks kept
/// quantized in the checkpoint's memory map and decoded for each forward (GGUF checkpoints).
#[derive(Module, Debug)]
pub enum Linear<B: Backend> {
    /// Burn's linear layer (weight `[d_in, d_out]`).
    Dense(nn::Linear<B>),
    /// A weight decoded when the layer runs.
    Quantized(QuantizedLinear<B>),
}

impl<B: Backend> Linear<B> {
    /// Applies the layer to the last dimension of `x`.
    ///
    /// `x` is applied as a matrix of rows `[.., d_in]`: Burn's linear gives the weight as many
    /// leading dimensions as `x` has, a reshape that copies the (transposed, so strided) weight
    /// on Flex at every call; a matrix product of two matrices reads it in place.
    pub fn forward<const D: usize>(&self, x: Tensor<B, D>) -> Tensor<B, D> {
        let dims = x.dims();
        let d_in = dims[D - 1];
        let rows = x.shape().num_elements() / d_in.max(1);
        let x = layout::reshape(x, [rows, d_in]);
        let y = match self {
            Linear::Dense(layer) => dense(layer, x),
            Linear::Quantized(layer) => layer.forward(x),
        };
        let mut out = dims;
        out[D - 1] = y.dims()[1];
        y.reshape(out)
    }

    /// The layer with its outputs reordered: output `i` of the result is output `order[i]` of
    /// this layer (every index below the output count).
    pub fn reorder_outputs(self, order: &[usize]) -> Self {
        let index = |device: &B::Device| {
            let order: Vec<i64> = order.iter().map(|&i| i as i64).collect();
            let len = order.len();
            Tensor::<B, 1, Int>::from_data(TensorData::new(order, [len]), device)
        };
        let reorder_bias = |bias: Option<Param<Tensor<B, 1>>>| {
            bias.map(|b| Param::from_tensor(b.val().select(0, index(&b.device()))))
        };
        match self {
            Linear::Dense(layer) => Linear::Dense(nn::Linear {
                weight: Param::from_tensor(
                    layer.weight.val().select(1, index(&layer.weight.device())),
                ),
                bias: reorder_bias(layer.bias),
            }),
            Linear::Quantized(layer) => Linear::Quantized(QuantizedLinear {
                weight: layer.weight.gather_rows(order.iter().copied()),
                bias: reorder_bias(layer.bias),
            }),
        }
    }
}

/// Burn's `layer` applied to the rows `x`; on the Flex backend with f32 tensors one `gemm`
/// call that adds the bias as it goes (`cpu::linear`).
fn dense<B: Backend>(layer: &nn::Linear<B>, x: Tensor<B, 2>) -> Tensor<B, 2> {
    #[cfg(feature = "flex")]
    let x = {
        let bias = layer.bias.as_ref().map(Param::val);
        match crate::cpu::linear::try_linear(x, &layer.weight.val(), bias.as_ref()) {
            Ok(y) => return y,
            Err(x) => x,
        }
    };
    layer.forward(x)
}

impl<B: Backend> From<nn::Linear<B>> for Linear<B> {
    fn from(layer: nn::Linear<B>) -> Self {
        Linear::Dense(layer)
    }
}

/// A linear layer whose weight `[d_out, d_in]` stays as ggml blocks in host memory (the
/// checkpoint's memory map, nothing copied) and is decoded, then moved to the device, each time
/// the layer runs: memory for one layer's dense weight at a time instead of the whole model's.
#[derive(Module, Debug)]
pub struct QuantizedLinear<B: Backend> {
    /// The weight, `[d_out, d_in]` as PyTorch stores it.
    #[module(skip)]
    pub weight: QuantizedMatrix,
    /// The bias `[d_out]`.
    pub bias: Option<Param<Tensor<B, 1>>>,
}

impl<B: Backend> QuantizedLinear<B> {
    /// Applies the layer to the last dimension of `x`.
    pub fn forward<const D: usize>(&self, x: Tensor<B, D>) -> Tensor<B, D> {
        let weight = Tensor::<B, 2>::from_data(
            TensorData::new(self.weight.dequantize(), self.weight.shape()),
            &x.device(),
        );
        affine(x, weight.transpose(), self.bias.as_ref().map(Param::val))
    }
}

/// The bias `[d_out]` (rows `rows` of a stored `[total_out]`) stored under `w`, if the layer
/// has one.
fn bias_rows<B: Backend>(
    w: &WeightsView<'_>,
    total_out: usize,
    rows: Range<usize>,
    bias: bool,
    device: &B::Device,
) -> Result<Option<Tensor<B, 1>>, LoadError> {
    if !bias {
        return Ok(None);
    }
    Ok(Some(
        w.tensor::<B, 1>("bias", [total_out], device)?.slice([rows]),
    ))
}

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
    let bias_of = |rows| Ok(bias_rows(w, total_out, rows, bias, device)?.map(Param::from_tensor));
    if let Some(weight) = w.quantized("weight", [total_out, d_in])? {
        return Ok(Linear::Quantized(QuantizedLinear {
            weight: weight.rows(rows.clone()),
            bias: bias_of(rows)?,
        }));
    }
    let weight = w.tensor::<B, 2>("weight", [total_out, d_in], device)?;
    let weight = weight.slice([rows.clone(), 0..d_in]).transpose();
    let bias = bias_of(rows)?;
    Ok(Linear::Dense(nn::Linear {
        weight: Param::from_tensor(weight),
        bias,
    }))
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
    let order: Vec<usize> = (half..d_out).chain(0..half).collect();
    Ok(linear(w, d_in, d_out, bias, device)?.reorder_outputs(&order))
}
