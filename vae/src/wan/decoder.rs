//! diffusers' `WanDecoder3d`: `conv_in`, a mid block, up blocks from the coarsest resolution to
//! the finest, then RMS norm, SiLU and `conv_out`, run on one chunk of the clip at a time.

use burn::{
    module::Module,
    tensor::{Tensor, backend::Backend},
};
use dit_layers::{LoadError, ModelParams, ParamSource, silu};

use super::{
    WanVaeConfig,
    attention::AttentionBlock,
    causal_conv::{CausalConv3d, FeatureCache},
    norm::WanRmsNorm,
    resample::Upsample,
    resnet::ResidualBlock,
};
use crate::DecoderStage;

/// diffusers' `WanMidBlock` with one layer: `resnets.0`, `attentions.0`, `resnets.1`.
#[derive(Module, Debug)]
struct MidBlock<B: Backend> {
    first: ResidualBlock<B>,
    attention: AttentionBlock<B>,
    second: ResidualBlock<B>,
}

impl<B: Backend> MidBlock<B> {
    fn new(src: &ModelParams<'_, B>, channels: usize) -> Result<Self, LoadError> {
        let resnet = |i: usize| ResidualBlock::new(&src.at("resnets").at(i), (channels, channels));
        Ok(Self {
            first: resnet(0)?,
            attention: AttentionBlock::new(&src.at("attentions.0"), channels)?,
            second: resnet(1)?,
        })
    }

    fn forward(&self, x: Tensor<B, 5>, cache: &mut FeatureCache<B>) -> Tensor<B, 5> {
        let x = self.first.forward(x, cache);
        let x = self.attention.forward(x);
        self.second.forward(x, cache)
    }
}

/// diffusers' `WanUpBlock`: residual blocks, then (except in the last block) an upsampler.
#[derive(Module, Debug)]
struct UpBlock<B: Backend> {
    resnets: Vec<ResidualBlock<B>>,
    upsampler: Option<Upsample<B>>,
}

impl<B: Backend> UpBlock<B> {
    /// `upsample`: `None` for the last block, else whether it doubles time as well.
    fn new(
        src: &ModelParams<'_, B>,
        (c_in, c_out): (usize, usize),
        num_resnets: usize,
        upsample: Option<bool>,
    ) -> Result<Self, LoadError> {
        let resnets = (0..num_resnets)
            .map(|i| {
                let c = if i == 0 { c_in } else { c_out };
                ResidualBlock::new(&src.at("resnets").at(i), (c, c_out))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let upsampler = upsample
            .map(|temporal| Upsample::new(&src.at("upsamplers.0"), c_out, temporal))
            .transpose()?;
        Ok(Self { resnets, upsampler })
    }

    /// One chunk `[batch, c_in, t, h, w]` → `[batch, c_out / 2, t', 2h, 2w]` (see
    /// [`Upsample::forward`]; `[batch, c_out, t, h, w]` without upsampler).
    fn forward(&self, x: Tensor<B, 5>, cache: &mut FeatureCache<B>) -> Tensor<B, 5> {
        let x = self
            .resnets
            .iter()
            .fold(x, |x, resnet| resnet.forward(x, cache));
        match &self.upsampler {
            Some(upsampler) => upsampler.forward(x, cache),
            None => x,
        }
    }
}

/// The decoder of `AutoencoderKLWan` (weights under `decoder.`).
#[derive(Module, Debug)]
pub struct Decoder3d<B: Backend> {
    conv_in: CausalConv3d<B>,
    mid_block: MidBlock<B>,
    up_blocks: Vec<UpBlock<B>>,
    norm_out: WanRmsNorm<B>,
    conv_out: CausalConv3d<B>,
}

impl<B: Backend> Decoder3d<B> {
    /// Builds the decoder described by `config` from `src` (the `decoder` module).
    pub fn new(src: &ModelParams<'_, B>, config: &WanVaeConfig) -> Result<Self, LoadError> {
        let dims = config.decoder_dims();
        let temporal = config.temporal_upsample();
        let blocks = dims.len() - 1;
        let finest = dims[blocks];
        let conv = |name: &str, c_in: usize, c_out: usize| {
            CausalConv3d::new(src, name, (c_in, c_out), [3, 3, 3], 1)
        };
        // Loaded in the order data flows, so a mismatch is reported at its first layer.
        let conv_in = conv("conv_in", config.z_dim, dims[0])?;
        let mid_block = MidBlock::new(&src.at("mid_block"), dims[0])?;
        let up_blocks = (0..blocks)
            .map(|i| {
                // WAN 2.1: each upsampler halves the channels the next block receives.
                let c_in = if i == 0 { dims[0] } else { dims[i] / 2 };
                let upsample = (i + 1 < blocks).then(|| temporal[i]);
                let src = src.at("up_blocks").at(i);
                let resnets = config.num_res_blocks + 1;
                UpBlock::new(&src, (c_in, dims[i + 1]), resnets, upsample)
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self {
            conv_in,
            mid_block,
            up_blocks,
            norm_out: WanRmsNorm::new(&src.at("norm_out"), finest, false)?,
            conv_out: conv("conv_out", finest, config.out_channels)?,
        })
    }

    /// Decodes one chunk `z` `[batch, z_dim, t, h, w]` of the latent clip into its frames
    /// `[batch, out_channels, t', h * 2^(n-1), w * 2^(n-1)]` for `n` up blocks, continuing from
    /// the earlier chunks through `cache` (`t'` as the upsamplers make it), and calls `inspect`
    /// with the activations after each [`DecoderStage`].
    pub fn forward_chunk(
        &self,
        z: Tensor<B, 5>,
        cache: &mut FeatureCache<B>,
        mut inspect: impl FnMut(DecoderStage, &Tensor<B, 5>),
    ) -> Tensor<B, 5> {
        let x = self.conv_in.forward(z, cache.next_slot());
        inspect(DecoderStage::ConvIn, &x);
        let x = self.mid_block.forward(x, cache);
        inspect(DecoderStage::MidBlock, &x);
        let x = self.up_blocks.iter().enumerate().fold(x, |x, (i, block)| {
            let x = block.forward(x, cache);
            inspect(DecoderStage::UpBlock(i), &x);
            x
        });
        let x = silu(self.norm_out.forward(x));
        self.conv_out.forward(x, cache.next_slot())
    }
}
