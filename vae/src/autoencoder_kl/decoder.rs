//! diffusers' VAE `Decoder`: `conv_in`, a mid block, up blocks from the coarsest resolution
//! to the finest, then group norm, SiLU and `conv_out`.

use burn::{
    module::Module,
    tensor::{
        Tensor,
        backend::Backend,
        module::interpolate,
        ops::{InterpolateMode, InterpolateOptions},
    },
};
use dit_layers::{Conv2d, GroupNorm, LoadError, ModelParams, ParamSource, silu};

use super::{AutoencoderKlConfig, attention::VaeAttention, resnet::ResnetBlock2d};

/// Epsilon of every group norm in the decoder.
const EPS: f64 = 1e-6;

/// A point in the decoder whose activations [`crate::AutoencoderKl::decode_inspect`],
/// [`crate::WanVae::decode_inspect`] and [`crate::HunyuanVideoVae::decode_inspect`] report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DecoderStage {
    /// After `conv_in`.
    ConvIn,
    /// After the mid block.
    MidBlock,
    /// After up block `i` (`up_blocks.i`, upsampler included).
    UpBlock(usize),
}

/// diffusers' `UNetMidBlock2D` with one layer: `resnets.0`, `attentions.0` (when the
/// configuration keeps it), `resnets.1`, all at the latent resolution.
#[derive(Module, Debug)]
struct MidBlock<B: Backend> {
    first: ResnetBlock2d<B>,
    attention: Option<VaeAttention<B>>,
    second: ResnetBlock2d<B>,
}

impl<B: Backend> MidBlock<B> {
    fn new(
        src: &ModelParams<'_, B>,
        channels: usize,
        groups: usize,
        with_attention: bool,
    ) -> Result<Self, LoadError> {
        let resnet = |i: usize| {
            ResnetBlock2d::new(&src.at("resnets").at(i), (channels, channels), groups, EPS)
        };
        let attention = with_attention
            .then(|| VaeAttention::new(&src.at("attentions.0"), channels, groups, EPS))
            .transpose()?;
        Ok(Self {
            first: resnet(0)?,
            attention,
            second: resnet(1)?,
        })
    }

    fn forward(&self, x: Tensor<B, 4>) -> Tensor<B, 4> {
        let x = self.first.forward(x);
        let x = match &self.attention {
            Some(attention) => attention.forward(x),
            None => x,
        };
        self.second.forward(x)
    }
}

/// diffusers' `UpDecoderBlock2D`: resnets, then (except in the last block) nearest-neighbour
/// 2x upsampling followed by a 3x3 conv (`upsamplers.0.conv`).
#[derive(Module, Debug)]
struct UpDecoderBlock<B: Backend> {
    resnets: Vec<ResnetBlock2d<B>>,
    upsample_conv: Option<Conv2d<B>>,
}

impl<B: Backend> UpDecoderBlock<B> {
    fn new(
        src: &ModelParams<'_, B>,
        (c_in, c_out): (usize, usize),
        num_resnets: usize,
        groups: usize,
        upsample: bool,
    ) -> Result<Self, LoadError> {
        let resnets = (0..num_resnets)
            .map(|i| {
                let c = if i == 0 { c_in } else { c_out };
                ResnetBlock2d::new(&src.at("resnets").at(i), (c, c_out), groups, EPS)
            })
            .collect::<Result<Vec<_>, _>>()?;
        let upsample_conv = upsample
            .then(|| src.conv2d("upsamplers.0.conv", (c_out, c_out), 3, 1, true))
            .transpose()?;
        Ok(Self {
            resnets,
            upsample_conv,
        })
    }

    /// `[batch, c_in, h, w]` → `[batch, c_out, 2h, 2w]` (`[.., h, w]` without upsampler).
    fn forward(&self, x: Tensor<B, 4>) -> Tensor<B, 4> {
        let x = self.resnets.iter().fold(x, |x, resnet| resnet.forward(x));
        match &self.upsample_conv {
            Some(conv) => {
                let [_, _, height, width] = x.dims();
                let nearest = InterpolateOptions::new(InterpolateMode::Nearest);
                conv.forward(interpolate(x, [2 * height, 2 * width], nearest))
            }
            None => x,
        }
    }
}

/// The decoder of `AutoencoderKL` (weights under `decoder.`).
#[derive(Module, Debug)]
pub struct Decoder<B: Backend> {
    conv_in: Conv2d<B>,
    mid_block: MidBlock<B>,
    up_blocks: Vec<UpDecoderBlock<B>>,
    conv_norm_out: GroupNorm<B>,
    conv_out: Conv2d<B>,
}

impl<B: Backend> Decoder<B> {
    /// Builds the decoder described by `config` from `src` (the `decoder` module).
    pub fn new(src: &ModelParams<'_, B>, config: &AutoencoderKlConfig) -> Result<Self, LoadError> {
        let groups = config.norm_num_groups;
        // Coarsest resolution first.
        let channels: Vec<usize> = config.block_out_channels.iter().rev().copied().collect();
        let deepest = channels[0];
        let up_blocks = channels
            .iter()
            .enumerate()
            .map(|(i, &c_out)| {
                let c_in = if i == 0 { deepest } else { channels[i - 1] };
                let upsample = i + 1 < channels.len();
                let src = src.at("up_blocks").at(i);
                let num_resnets = config.layers_per_block + 1;
                UpDecoderBlock::new(&src, (c_in, c_out), num_resnets, groups, upsample)
            })
            .collect::<Result<Vec<_>, _>>()?;
        let finest = channels[channels.len() - 1];
        Ok(Self {
            conv_in: src.conv2d("conv_in", (config.latent_channels, deepest), 3, 1, true)?,
            mid_block: MidBlock::new(
                &src.at("mid_block"),
                deepest,
                groups,
                config.mid_block_add_attention,
            )?,
            up_blocks,
            conv_norm_out: src.group_norm("conv_norm_out", groups, finest, EPS)?,
            conv_out: src.conv2d("conv_out", (finest, config.out_channels), 3, 1, true)?,
        })
    }

    /// Decodes `z` `[batch, latent_channels, h, w]` into `[batch, out_channels, h * 2^(n-1),
    /// w * 2^(n-1)]` for `n` up blocks, calling `inspect` with the activations after each
    /// [`DecoderStage`].
    pub fn forward_inspect(
        &self,
        z: Tensor<B, 4>,
        mut inspect: impl FnMut(DecoderStage, &Tensor<B, 4>),
    ) -> Tensor<B, 4> {
        let x = self.conv_in.forward(z);
        inspect(DecoderStage::ConvIn, &x);
        let x = self.mid_block.forward(x);
        inspect(DecoderStage::MidBlock, &x);
        let x = self.up_blocks.iter().enumerate().fold(x, |x, (i, block)| {
            let x = block.forward(x);
            inspect(DecoderStage::UpBlock(i), &x);
            x
        });
        self.conv_out.forward(silu(self.conv_norm_out.forward(x)))
    }
}
