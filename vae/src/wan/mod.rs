//! diffusers' `AutoencoderKLWan` (WAN 2.1's causal 3-D VAE), decoder side.

mod attention;
mod causal_conv;
mod config;
mod decoder;
mod frames;
mod norm;
mod resample;
mod resnet;
mod rgb8;

use std::path::Path;

use burn::{
    module::Module,
    tensor::{Tensor, TensorData, backend::Backend},
};
use dit_layers::{Component, Conv3d, FromParams, LoadError, ModelParams, ParamSource};

pub use config::WanVaeConfig;
pub use rgb8::video_to_rgb8;

use crate::{DecoderStage, VaeError, checkpoint, decoder_config::invalid};
use causal_conv::FeatureCache;
use decoder::Decoder3d;

/// The decoder of a diffusers `AutoencoderKLWan`: latent clips `[batch, z_dim, frames, h, w]`
/// to videos `[batch, out_channels, 1 + temporal * (frames - 1), h * spatial, w * spatial]`
/// (WAN 2.1: 16 latent channels, `temporal` 4, `spatial` 8).
///
/// Decoding runs the decoder on one latent frame at a time, each causal convolution keeping
/// the last frames it saw for the next one, exactly as diffusers' `decode` does: the first
/// latent frame becomes one video frame, every later one `temporal` frames.
#[derive(Module, Debug)]
pub struct WanVae<B: Backend> {
    post_quant_conv: Conv3d<B>,
    decoder: Decoder3d<B>,
    /// `latents_mean` `[z_dim]`.
    latents_mean: Tensor<B, 1>,
    /// `1 / latents_std` `[z_dim]`, in f32 as the pipeline computes it.
    latents_inv_std: Tensor<B, 1>,
    z_dim: usize,
    spatial_scale: usize,
    temporal_scale: usize,
    decoder_channels: usize,
}

impl<B: Backend> FromParams<B> for WanVae<B> {
    type Config = WanVaeConfig;

    /// Builds the decoder described by `config` from `src` (diffusers names:
    /// `post_quant_conv`, `decoder`); `source` names where the configuration came from in
    /// errors.
    fn from_params(
        config: &WanVaeConfig,
        src: &ModelParams<'_, B>,
        source: &Path,
    ) -> Result<Self, LoadError> {
        config.validate().map_err(invalid(source))?;
        let z = config.z_dim;
        let device = src.device();
        let per_channel =
            |values: Vec<f32>| Tensor::from_data(TensorData::new(values, [z]), device);
        let upsamplers = config.dim_mult.len() - 1;
        let temporal_upsamplers = config.temporal_upsample().iter().filter(|&&t| t).count();
        Ok(Self {
            post_quant_conv: src.conv3d("post_quant_conv", (z, z), [1, 1, 1], [0, 0, 0], true)?,
            decoder: Decoder3d::new(&src.at("decoder"), config)?,
            latents_mean: per_channel(config.latents_mean.iter().map(|&m| m as f32).collect()),
            latents_inv_std: per_channel(
                config.latents_std.iter().map(|&s| 1.0 / s as f32).collect(),
            ),
            z_dim: z,
            spatial_scale: 1 << upsamplers,
            temporal_scale: 1 << temporal_upsamplers,
            decoder_channels: config.decoder_dims().last().copied().unwrap_or(1),
        })
    }
}

impl<B: Backend> WanVae<B> {
    /// Loads a diffusers `vae/` folder (`config.json` and its safetensors weights, sharded or
    /// not), or a `.safetensors` file with `config.json` beside it.
    ///
    /// Weight names follow diffusers (`decoder.up_blocks.0.upsamplers.0.time_conv.weight`,
    /// ...), so `Wan2.1-T2V-*-Diffusers/vae` loads; encoder weights are skipped, and any other
    /// weight the configuration does not use is an error (config and weights do not match).
    pub fn load(path: &Path, device: &B::Device) -> Result<Self, VaeError> {
        Ok(Component::open(path)?.build(device, checkpoint::encoder_side)?)
    }

    /// Channels of the decoder's feature maps at full resolution: the most it holds per pixel,
    /// for estimates of the memory decoding needs.
    pub fn decoder_channels(&self) -> usize {
        self.decoder_channels
    }

    /// Pixels per latent cell along each side (8 for WAN 2.1), the pipeline's
    /// `vae_scale_factor_spatial`.
    pub fn spatial_scale_factor(&self) -> usize {
        self.spatial_scale
    }

    /// Video frames per latent frame after the first (4 for WAN 2.1), the pipeline's
    /// `vae_scale_factor_temporal`.
    pub fn temporal_scale_factor(&self) -> usize {
        self.temporal_scale
    }

    /// Frames of the video decoded from `latent_frames` latent frames:
    /// `1 + temporal_scale_factor * (latent_frames - 1)` (81 from 21 for WAN 2.1).
    pub fn video_frames(&self, latent_frames: usize) -> usize {
        1 + self.temporal_scale * latent_frames.saturating_sub(1)
    }

    /// Undoes the pipeline's latent normalisation per channel, as `WanPipeline` writes it:
    /// `latents / (1 / latents_std) + latents_mean`, with `1 / latents_std` computed in f32
    /// and both vectors in the latents' dtype. Apply it to the denoised latents
    /// `[batch, z_dim, frames, h, w]` before [`Self::decode`].
    pub fn unscale_latents(&self, latents: Tensor<B, 5>) -> Result<Tensor<B, 5>, VaeError> {
        self.check_latents(&latents)?;
        let dtype = latents.dtype();
        let per_channel =
            |v: &Tensor<B, 1>| v.clone().cast(dtype).reshape([1, self.z_dim, 1, 1, 1]);
        Ok(latents / per_channel(&self.latents_inv_std) + per_channel(&self.latents_mean))
    }

    /// Decodes unscaled latents `[batch, z_dim, frames, h, w]` into a video
    /// `[batch, out_channels, video_frames(frames), h * spatial, w * spatial]` clamped to
    /// `[-1, 1]` as diffusers' `decode` clamps it (see [`crate::video_to_rgb8`]).
    pub fn decode(&self, latents: Tensor<B, 5>) -> Result<Tensor<B, 5>, VaeError> {
        self.decode_inspect(latents, |_, _, _| {})
    }

    /// [`Self::decode`], calling `inspect(frame, stage, activations)` with the activations
    /// after each [`DecoderStage`] while latent frame `frame` is decoded (the decoder's
    /// chunk: for WAN 2.1, 1 frame at the first up block's input, up to 4 after).
    pub fn decode_inspect(
        &self,
        latents: Tensor<B, 5>,
        mut inspect: impl FnMut(usize, DecoderStage, &Tensor<B, 5>),
    ) -> Result<Tensor<B, 5>, VaeError> {
        self.check_latents(&latents)?;
        let frames = latents.dims()[2];
        let z = self.post_quant_conv.forward(latents);
        let mut cache = FeatureCache::default();
        let chunks: Vec<Tensor<B, 5>> = (0..frames)
            .map(|frame| {
                let chunk = z.clone().narrow(2, frame, 1);
                let out = self
                    .decoder
                    .forward_chunk(chunk, &mut cache, |stage, x| inspect(frame, stage, x));
                cache.end_chunk();
                out
            })
            .collect();
        Ok(Tensor::cat(chunks, 2).clamp(-1.0, 1.0))
    }

    /// Fails unless `latents` are `[batch, z_dim, frames, h, w]` with no empty axis.
    fn check_latents(&self, latents: &Tensor<B, 5>) -> Result<(), VaeError> {
        let dims = latents.dims();
        if dims[1] != self.z_dim || dims.contains(&0) {
            return Err(VaeError::VideoLatentShape {
                channels: self.z_dim,
                found: dims.to_vec(),
            });
        }
        Ok(())
    }
}
