//! Online profiling (the reference's `sample_mse`): which mask, spatial or temporal, each head
//! attends under with the smaller error.

use burn::tensor::{Bool, Int, Tensor, TensorData, activation::softmax, backend::Backend};

use super::{HeadClass, SvgVariant, VideoTokens, profile_allowed};

/// The mean squared error `[2, batch, heads]` (spatial, then temporal) between each head's
/// attention of the query rows `rows` under the emulated mask and its full attention, over the
/// rows and channels. `q`, `k` and `v` are `[batch, heads, tokens, dim]` in frame-major order,
/// every key included (HunyuanVideo's padded text too, as the reference profiles).
pub fn sample_mse<B: Backend>(
    q: &Tensor<B, 4>,
    k: &Tensor<B, 4>,
    v: &Tensor<B, 4>,
    rows: &[usize],
    variant: SvgVariant,
    tokens: VideoTokens,
) -> Tensor<B, 3> {
    let [batch, heads, len, dim] = q.dims();
    let device = q.device();
    let picked: Vec<i64> = rows.iter().map(|&r| r as i64).collect();
    let picked = Tensor::<B, 1, Int>::from_data(TensorData::new(picked, [rows.len()]), &device);
    let scores = q
        .clone()
        .select(2, picked)
        .matmul(k.clone().swap_dims(2, 3))
        .div_scalar((dim as f64).sqrt());
    let full = softmax(scores.clone(), 3).matmul(v.clone());
    let errors = [HeadClass::Spatial, HeadClass::Temporal].map(|class| {
        let hidden: Vec<bool> = rows
            .iter()
            .flat_map(|&q| (0..len).map(move |k| !profile_allowed(variant, tokens, class, q, k)))
            .collect();
        let hidden =
            Tensor::<B, 2, Bool>::from_data(TensorData::new(hidden, [rows.len(), len]), &device)
                .reshape([1, 1, rows.len(), len])
                .expand([batch, heads, rows.len(), len]);
        let masked =
            softmax(scores.clone().mask_fill(hidden, f32::NEG_INFINITY), 3).matmul(v.clone());
        (masked - full.clone())
            .powi_scalar(2)
            .mean_dim(3)
            .mean_dim(2)
            .reshape([1, batch, heads])
    });
    Tensor::cat(errors.to_vec(), 0)
}

/// Each (batch row, head)'s class from [`sample_mse`]'s errors `[2, batch, heads]`, row by row:
/// temporal where its error is the smaller, spatial otherwise (a tie goes to the first mask,
/// as `argmin` gives it).
pub fn classify(errors: &[f32], batch: usize, heads: usize) -> Vec<Vec<HeadClass>> {
    let (spatial, temporal) = errors.split_at(batch * heads);
    (0..batch)
        .map(|b| {
            (0..heads)
                .map(|h| {
                    let i = b * heads + h;
                    if temporal[i] < spatial[i] {
                        HeadClass::Temporal
                    } else {
                        HeadClass::Spatial
                    }
                })
                .collect()
        })
        .collect()
}
