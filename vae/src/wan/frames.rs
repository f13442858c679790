//! Moving between video tensors and batches of frames, for the decoder's per-frame layers.

use burn::tensor::{Tensor, backend::Backend};

/// `[batch, channels, t, h, w]` → `[batch * t, channels, h, w]`, frames of one video adjacent.
pub fn to_frames<B: Backend>(x: Tensor<B, 5>) -> Tensor<B, 4> {
    let [batch, channels, frames, height, width] = x.dims();
    x.swap_dims(1, 2)
        .reshape([batch * frames, channels, height, width])
}

/// The inverse of [`to_frames`] for videos of `batch` clips.
pub fn from_frames<B: Backend>(x: Tensor<B, 4>, batch: usize) -> Tensor<B, 5> {
    let [n, channels, height, width] = x.dims();
    x.reshape([batch, n / batch, channels, height, width])
        .swap_dims(1, 2)
}
