//! diffusers' `HunyuanVideoUpsampleCausal3D`: nearest-neighbour upsampling that keeps the
//! clip's first frame single, then a causal 3x3x3 convolution.

use burn::{
    module::Module,
    tensor::{Tensor, backend::Backend},
};
use dit_layers::{LoadError, ModelParams, ParamSource};

use super::{causal_conv::CausalConv3d, config::Upsampling};

/// Doubles height and width (when `space`) of every frame and repeats every frame but the
/// first (when `time`), both nearest-neighbour, then convolves (`conv`, channels kept).
#[derive(Module, Debug)]
pub struct Upsample<B: Backend> {
    conv: CausalConv3d<B>,
    /// Repeats per frame after the first (1 or 2).
    time: usize,
    /// Repeats per row and per column (1 or 2).
    space: usize,
}

impl<B: Backend> Upsample<B> {
    /// Builds the upsampler over `channels` channels from `src` (`upsamplers.0`).
    pub fn new(
        src: &ModelParams<'_, B>,
        channels: usize,
        upsampling: Upsampling,
    ) -> Result<Self, LoadError> {
        let factor = |doubles: bool| if doubles { 2 } else { 1 };
        Ok(Self {
            conv: CausalConv3d::new(&src.at("conv"), (channels, channels), 3)?,
            time: factor(upsampling.time),
            space: factor(upsampling.space),
        })
    }

    /// `[batch, c, t, h, w]` → `[batch, c, 1 + time * (t - 1), space * h, space * w]`.
    pub fn forward(&self, x: Tensor<B, 5>) -> Tensor<B, 5> {
        let frames = x.dims()[2];
        let first = repeat_each(x.clone().narrow(2, 0, 1), [1, self.space, self.space]);
        let x = if frames > 1 {
            let rest = x.narrow(2, 1, frames - 1);
            let rest = repeat_each(rest, [self.time, self.space, self.space]);
            Tensor::cat(vec![first, rest], 2)
        } else {
            first
        };
        self.conv.forward(x)
    }
}

/// Nearest-neighbour upsampling by integer factors `[time, height, width]`: every frame,
/// row and column of `[batch, c, t, h, w]` repeated in place (`abc` → `aabbcc`).
fn repeat_each<B: Backend>(x: Tensor<B, 5>, factors: [usize; 3]) -> Tensor<B, 5> {
    let [batch, channels, t, h, w] = x.dims();
    let [ft, fh, fw] = factors;
    if factors == [1, 1, 1] {
        return x;
    }
    // Frames first ([.., t, ft, h * w]), then rows and columns of every frame.
    let frames = t * ft;
    x.reshape([batch * channels, t, 1, h * w])
        .expand([batch * channels, t, ft, h * w])
        .reshape([batch * channels * frames, h, 1, w, 1])
        .expand([batch * channels * frames, h, fh, w, fw])
        .reshape([batch, channels, frames, h * fh, w * fw])
}
