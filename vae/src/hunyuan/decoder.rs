//! diffusers' `HunyuanVideoDecoder3D`: `conv_in`, a mid block, up blocks from the coarsest
//! resolution to the finest, then group norm, SiLU and `conv_out`, over a whole clip at once.

use burn::{
    module::Module,
    tensor::{Bool, Int, Tensor, backend::Backend},
};
use dit_layers::{GroupNorm, LoadError, ModelParams, ParamSource, silu};

use super::{
    HunyuanVideoVaeConfig,
    causal_conv::CausalConv3d,
    config::Upsampling,
    resnet::{EPS, ResnetBlock},
    upsample::Upsample,
};
use crate::{DecoderStage, autoencoder_kl::attention::VaeAttention};

/// diffusers' `HunyuanVideoMidBlock3D` with one layer: `resnets.0`, `attentions.0` (when the
/// configuration keeps it), `resnets.1`.
#[derive(Module, Debug)]
struct MidBlock<B: Backend> {
    first: ResnetBlock<B>,
    attention: Option<VaeAttention<B>>,
    second: ResnetBlock<B>,
}

impl<B: Backend> MidBlock<B> {
    fn new(
        src: &ModelParams<'_, B>,
        channels: usize,
        groups: usize,
        with_attention: bool,
    ) -> Result<Self, LoadError> {
        let resnet =
            |i: usize| ResnetBlock::new(&src.at("resnets").at(i), (channels, channels), groups);
        let first = resnet(0)?;
        let attention = with_attention
            .then(|| VaeAttention::new(&src.at("attentions.0"), channels, groups, EPS))
            .transpose()?;
        Ok(Self {
            first,
            attention,
            second: resnet(1)?,
        })
    }

    /// `[batch, c, t, h, w]` → same shape. The attention runs over every pixel of every frame,
    /// a pixel seeing all pixels of its own and earlier frames.
    fn forward(&self, x: Tensor<B, 5>) -> Tensor<B, 5> {
        let x = self.first.forward(x);
        let x = match &self.attention {
            Some(attention) => {
                let [batch, channels, frames, height, width] = x.dims();
                let mask = causal_frame_mask(batch, frames, height * width, &x.device());
                let tokens = x.reshape([batch, channels, frames * height * width]);
                attention
                    .forward_sequence(tokens, Some(mask))
                    .reshape([batch, channels, frames, height, width])
            }
            None => x,
        };
        self.second.forward(x)
    }
}

/// The mask of diffusers' `prepare_causal_attention_mask` as `[batch, 1, seq, seq]` booleans
/// for `seq = frames * pixels` tokens in frame order: `true` where the key's frame comes after
/// the query's.
fn causal_frame_mask<B: Backend>(
    batch: usize,
    frames: usize,
    pixels: usize,
    device: &B::Device,
) -> Tensor<B, 4, Bool> {
    let seq = frames * pixels;
    let index = Tensor::<B, 1, Int>::arange(0..frames as i64, device);
    // [query frame, key frame].
    let later = index
        .clone()
        .reshape([1, frames])
        .greater(index.reshape([frames, 1]));
    later
        .reshape([frames, 1, frames, 1])
        .expand([frames, pixels, frames, pixels])
        .reshape([1, 1, seq, seq])
        .expand([batch, 1, seq, seq])
}

/// diffusers' `HunyuanVideoUpBlock3D`: resnets, then (where the layout puts one) an upsampler.
#[derive(Module, Debug)]
struct UpBlock<B: Backend> {
    resnets: Vec<ResnetBlock<B>>,
    upsampler: Option<Upsample<B>>,
}

impl<B: Backend> UpBlock<B> {
    fn new(
        src: &ModelParams<'_, B>,
        (c_in, c_out): (usize, usize),
        num_resnets: usize,
        groups: usize,
        upsampling: Option<Upsampling>,
    ) -> Result<Self, LoadError> {
        let resnets = (0..num_resnets)
            .map(|i| {
                let c = if i == 0 { c_in } else { c_out };
                ResnetBlock::new(&src.at("resnets").at(i), (c, c_out), groups)
            })
            .collect::<Result<Vec<_>, _>>()?;
        let upsampler = upsampling
            .map(|up| Upsample::new(&src.at("upsamplers.0"), c_out, up))
            .transpose()?;
        Ok(Self { resnets, upsampler })
    }

    /// `[batch, c_in, t, h, w]` → `[batch, c_out, t', h', w']` as the upsampler makes them.
    fn forward(&self, x: Tensor<B, 5>) -> Tensor<B, 5> {
        let x = self.resnets.iter().fold(x, |x, resnet| resnet.forward(x));
        match &self.upsampler {
            Some(upsampler) => upsampler.forward(x),
            None => x,
        }
    }
}

/// The decoder of `AutoencoderKLHunyuanVideo` (weights under `decoder.`).
#[derive(Module, Debug)]
pub struct Decoder3d<B: Backend> {
    conv_in: CausalConv3d<B>,
    mid_block: MidBlock<B>,
    up_blocks: Vec<UpBlock<B>>,
    conv_norm_out: GroupNorm<B>,
    conv_out: CausalConv3d<B>,
}

impl<B: Backend> Decoder3d<B> {
    /// Builds the decoder described by `config` from `src` (the `decoder` module).
    pub fn new(
        src: &ModelParams<'_, B>,
        config: &HunyuanVideoVaeConfig,
    ) -> Result<Self, LoadError> {
        let groups = config.norm_num_groups;
        // Coarsest resolution first.
        let channels: Vec<usize> = config.block_out_channels.iter().rev().copied().collect();
        let deepest = channels[0];
        let finest = channels[channels.len() - 1];
        // Loaded in the order data flows, so a mismatch is reported at its first layer.
        let conv_in = CausalConv3d::new(&src.at("conv_in"), (config.latent_channels, deepest), 3)?;
        let mid_block = MidBlock::new(
            &src.at("mid_block"),
            deepest,
            groups,
            config.mid_block_add_attention,
        )?;
        let up_blocks = config
            .upsampling()
            .into_iter()
            .enumerate()
            .map(|(i, upsampling)| {
                let c_in = if i == 0 { deepest } else { channels[i - 1] };
                let src = src.at("up_blocks").at(i);
                let num_resnets = config.layers_per_block + 1;
                UpBlock::new(&src, (c_in, channels[i]), num_resnets, groups, upsampling)
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self {
            conv_in,
            mid_block,
            up_blocks,
            conv_norm_out: src.group_norm("conv_norm_out", groups, finest, EPS)?,
            conv_out: CausalConv3d::new(&src.at("conv_out"), (finest, config.out_channels), 3)?,
        })
    }

    /// Decodes a latent clip `z` `[batch, latent_channels, t, h, w]` into
    /// `[batch, out_channels, 1 + 4 (t - 1), 8h, 8w]` (HunyuanVideo's ratios), calling
    /// `inspect` with the activations after each [`DecoderStage`].
    pub fn forward_inspect(
        &self,
        z: Tensor<B, 5>,
        mut inspect: impl FnMut(DecoderStage, &Tensor<B, 5>),
    ) -> Tensor<B, 5> {
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
