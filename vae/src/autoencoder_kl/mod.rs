//! diffusers' `AutoencoderKL` (FLUX.1's VAE), decoder side.

pub(crate) mod attention;
mod config;
mod decoder;
mod resnet;

use std::path::Path;

use burn::{
    module::Module,
    tensor::{Tensor, backend::Backend},
};
use dit_layers::{Component, Conv2d, FromParams, LoadError, ModelParams, ParamSource};

pub use config::AutoencoderKlConfig;
pub use decoder::DecoderStage;

use crate::{VaeError, checkpoint, decoder_config::invalid};
use decoder::Decoder;

/// The decoder of a diffusers `AutoencoderKL`: latents `[batch, latent_channels, h, w]` to
/// images `[batch, out_channels, h * 2^(n-1), w * 2^(n-1)]` for `n` entries of
/// `block_out_channels` (FLUX.1: 16 latent channels, 8x upsampling).
#[derive(Module, Debug)]
pub struct AutoencoderKl<B: Backend> {
    post_quant_conv: Option<Conv2d<B>>,
    decoder: Decoder<B>,
    latent_channels: usize,
    scaling_factor: f64,
    shift_factor: Option<f64>,
    scale_factor: usize,
    decoder_channels: usize,
}

impl<B: Backend> FromParams<B> for AutoencoderKl<B> {
    type Config = AutoencoderKlConfig;

    /// Builds the decoder described by `config` from `src` (diffusers names:
    /// `post_quant_conv`, `decoder`); `source` names where the configuration came from in
    /// errors.
    fn from_params(
        config: &AutoencoderKlConfig,
        src: &ModelParams<'_, B>,
        source: &Path,
    ) -> Result<Self, LoadError> {
        config.validate().map_err(invalid(source))?;
        let c = config.latent_channels;
        let post_quant_conv = config
            .use_post_quant_conv
            .then(|| src.conv2d("post_quant_conv", (c, c), 1, 0, true))
            .transpose()?;
        Ok(Self {
            post_quant_conv,
            decoder: Decoder::new(&src.at("decoder"), config)?,
            latent_channels: c,
            scaling_factor: config.scaling_factor,
            shift_factor: config.shift_factor,
            scale_factor: 1 << config.block_out_channels.len().saturating_sub(1),
            decoder_channels: config.block_out_channels[0],
        })
    }
}

impl<B: Backend> AutoencoderKl<B> {
    /// Loads a diffusers `vae/` folder (`config.json` and its safetensors weights, sharded or
    /// not), or a `.safetensors` file with `config.json` beside it.
    ///
    /// Weight names follow diffusers (`decoder.mid_block.attentions.0.to_q.weight`, ...), so
    /// real checkpoints load; encoder weights are skipped, and any other weight the
    /// configuration does not use is an error (config and weights do not match).
    pub fn load(path: &Path, device: &B::Device) -> Result<Self, VaeError> {
        Ok(Component::open(path)?.build(device, checkpoint::encoder_side)?)
    }

    /// Channels of the decoder's feature maps at full resolution: the most it holds per pixel,
    /// for estimates of the memory decoding needs.
    pub fn decoder_channels(&self) -> usize {
        self.decoder_channels
    }

    /// Pixels per latent cell along each side: `2^(n-1)` for `n` entries of
    /// `block_out_channels` (8 for FLUX.1), the pipelines' `vae_scale_factor`.
    pub fn scale_factor(&self) -> usize {
        self.scale_factor
    }

    /// Undoes the pipeline's latent scaling: `latents / scaling_factor + shift_factor` (the
    /// shift only when configured), in the latents' dtype as diffusers computes it. Apply it to
    /// the denoised latents before [`Self::decode`].
    pub fn unscale_latents<const D: usize>(&self, latents: Tensor<B, D>) -> Tensor<B, D> {
        let latents = latents.div_scalar(self.scaling_factor);
        match self.shift_factor {
            Some(shift) => latents.add_scalar(shift),
            None => latents,
        }
    }

    /// Decodes unscaled latents `[batch, latent_channels, h, w]` into images
    /// `[batch, out_channels, h * 2^(n-1), w * 2^(n-1)]`, nominally in `[-1, 1]` (not clamped;
    /// see [`crate::to_rgb8`]).
    pub fn decode(&self, latents: Tensor<B, 4>) -> Result<Tensor<B, 4>, VaeError> {
        self.decode_inspect(latents, |_, _| {})
    }

    /// [`Self::decode`], calling `inspect` with the activations after each [`DecoderStage`].
    pub fn decode_inspect(
        &self,
        latents: Tensor<B, 4>,
        inspect: impl FnMut(DecoderStage, &Tensor<B, 4>),
    ) -> Result<Tensor<B, 4>, VaeError> {
        let [_, channels, height, width] = latents.dims();
        if channels != self.latent_channels || height == 0 || width == 0 {
            return Err(VaeError::LatentShape {
                channels: self.latent_channels,
                found: latents.dims().to_vec(),
            });
        }
        let z = match &self.post_quant_conv {
            Some(conv) => conv.forward(latents),
            None => latents,
        };
        Ok(self.decoder.forward_inspect(z, inspect))
    }
}
