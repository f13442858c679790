//! diffusers' `WanAttentionBlock`: single-head self-attention within each frame.

use burn::{
    module::Module,
    tensor::{Tensor, backend::Backend},
};
use dit_layers::{Conv2d, LoadError, ModelParams, ParamSource, attention};

use super::{
    frames::{from_frames, to_frames},
    norm::WanRmsNorm,
};

/// `x + proj(softmax(q kᵀ / sqrt(channels)) v)` per frame, every pixel a token, with `q`, `k`,
/// `v` from one 1x1 convolution (`to_qkv`) of the RMS-normed frame. Frames never attend to
/// each other, so chunked decoding needs no cache here.
#[derive(Module, Debug)]
pub struct AttentionBlock<B: Backend> {
    norm: WanRmsNorm<B>,
    to_qkv: Conv2d<B>,
    proj: Conv2d<B>,
}

impl<B: Backend> AttentionBlock<B> {
    /// Builds the block over `channels` channels from `src`.
    pub fn new(src: &ModelParams<'_, B>, channels: usize) -> Result<Self, LoadError> {
        Ok(Self {
            norm: WanRmsNorm::new(&src.at("norm"), channels, true)?,
            to_qkv: src.conv2d("to_qkv", (channels, 3 * channels), 1, 0, true)?,
            proj: src.conv2d("proj", (channels, channels), 1, 0, true)?,
        })
    }

    /// `[batch, channels, t, h, w]` → same shape.
    pub fn forward(&self, x: Tensor<B, 5>) -> Tensor<B, 5> {
        let [batch, channels, _, height, width] = x.dims();
        let frames = to_frames(x.clone());
        let n = frames.dims()[0];
        // [n, 3 * channels, h, w] → one head of tokens [n, 1, h * w, 3 * channels].
        let qkv = self
            .to_qkv
            .forward(self.norm.forward(frames))
            .reshape([n, 1, 3 * channels, height * width])
            .swap_dims(2, 3);
        let [q, k, v] = [0, 1, 2].map(|i| qkv.clone().narrow(3, i * channels, channels));
        // [n, 1, h * w, channels] → [n, channels, h, w].
        let out = attention(q, k, v, None)
            .squeeze_dim::<3>(1)
            .swap_dims(1, 2)
            .reshape([n, channels, height, width]);
        from_frames(self.proj.forward(out), batch) + x
    }
}
