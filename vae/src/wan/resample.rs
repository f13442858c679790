//! diffusers' `WanResample` in its decoder modes: `upsample2d` (space) and `upsample3d`
//! (space and time).

use burn::{
    module::Module,
    tensor::{
        Tensor,
        backend::Backend,
        module::interpolate,
        ops::{InterpolateMode, InterpolateOptions},
    },
};
use dit_layers::{Conv2d, LoadError, ModelParams};

use super::{
    causal_conv::{CausalConv3d, FeatureCache},
    frames::{from_frames, to_frames},
};

/// Doubles height and width of every frame (nearest neighbour, then a 3x3 convolution
/// `resample.1` that halves the channels); with `time_conv` (`upsample3d`) it first doubles
/// the frames: a causal `(3, 1, 1)` convolution to twice the channels whose two halves become
/// two consecutive frames. The clip's first frame is not doubled: diffusers skips `time_conv`
/// on the first chunk, and the later chunks continue as if the clip started after it.
#[derive(Module, Debug)]
pub struct Upsample<B: Backend> {
    time_conv: Option<CausalConv3d<B>>,
    conv: Conv2d<B>,
}

impl<B: Backend> Upsample<B> {
    /// Builds the upsampler from `src` (`upsamplers.0`) for `channels` input channels;
    /// `temporal` selects `upsample3d`.
    pub fn new(
        src: &ModelParams<'_, B>,
        channels: usize,
        temporal: bool,
    ) -> Result<Self, LoadError> {
        let time_conv = temporal
            .then(|| CausalConv3d::new(src, "time_conv", (channels, 2 * channels), [3, 1, 1], 0))
            .transpose()?;
        Ok(Self {
            time_conv,
            conv: src.conv2d("resample.1", (channels, channels / 2), 3, 1, true)?,
        })
    }

    /// One chunk `[batch, c, t, h, w]` → `[batch, c / 2, t', 2h, 2w]`, `t' = 2t` with a time
    /// convolution except in the first chunk, else `t`.
    pub fn forward(&self, x: Tensor<B, 5>, cache: &mut FeatureCache<B>) -> Tensor<B, 5> {
        let x = match &self.time_conv {
            Some(time_conv) => {
                let first = cache.first_chunk();
                let slot = cache.next_slot();
                if first {
                    x
                } else {
                    interleave_halves(time_conv.forward(x, slot))
                }
            }
            None => x,
        };
        let [batch, _, _, height, width] = x.dims();
        let nearest = InterpolateOptions::new(InterpolateMode::Nearest);
        let frames = interpolate(to_frames(x), [2 * height, 2 * width], nearest);
        from_frames(self.conv.forward(frames), batch)
    }
}

/// `[batch, 2c, t, h, w]` → `[batch, c, 2t, h, w]`: frame `2i` from the first `c` channels of
/// frame `i`, frame `2i + 1` from the second.
fn interleave_halves<B: Backend>(x: Tensor<B, 5>) -> Tensor<B, 5> {
    let [batch, channels, frames, height, width] = x.dims();
    let half = channels / 2;
    x.reshape([batch, 2, half, frames, height, width])
        .permute([0, 2, 3, 1, 4, 5])
        .reshape([batch, half, 2 * frames, height, width])
}
