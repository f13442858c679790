//! diffusers' `AutoencoderKLHunyuanVideo` (HunyuanVideo's causal 3-D VAE), decoder side.

mod causal_conv;
mod config;
mod decoder;
mod resnet;
mod tiling;
mod upsample;

use std::path::Path;

use burn::{
    module::Module,
    tensor::{Tensor, backend::Backend},
};
use dit_layers::{Component, Conv3d, FromParams, LoadError, ModelParams, ParamSource};

pub use config::HunyuanVideoVaeConfig;
pub use tiling::{SpatialTiles, TemporalTiles, TileConfig};

use crate::{DecoderStage, VaeError, checkpoint, decoder_config::invalid};
use decoder::Decoder3d;
use tiling::{Axis, decode_spatial_tiles, decode_temporal_tiles};

/// The decoder of a diffusers `AutoencoderKLHunyuanVideo`: latent clips
/// `[batch, latent_channels, frames, h, w]` to videos
/// `[batch, out_channels, 1 + 4 (frames - 1), h * spatial, w * spatial]` (HunyuanVideo: 16
/// latent channels, `spatial` 8).
///
/// [`Self::decode`] runs the decoder once over the whole clip (its group norms and mid-block
/// attention see every frame); [`Self::decode_tiled`] cuts the clip into overlapping tiles in
/// space and time as diffusers' tiled decoding does, for videos too large for one pass.
#[derive(Module, Debug)]
pub struct HunyuanVideoVae<B: Backend> {
    post_quant_conv: Conv3d<B>,
    decoder: Decoder3d<B>,
    latent_channels: usize,
    scaling_factor: f64,
    spatial_scale: usize,
    temporal_scale: usize,
    decoder_channels: usize,
}

impl<B: Backend> FromParams<B> for HunyuanVideoVae<B> {
    type Config = HunyuanVideoVaeConfig;

    /// Builds the decoder described by `config` from `src` (diffusers names:
    /// `post_quant_conv`, `decoder`); `source` names where the configuration came from in
    /// errors.
    fn from_params(
        config: &HunyuanVideoVaeConfig,
        src: &ModelParams<'_, B>,
        source: &Path,
    ) -> Result<Self, LoadError> {
        config.validate().map_err(invalid(source))?;
        let c = config.latent_channels;
        let post_quant_conv = src.conv3d("post_quant_conv", (c, c), [1, 1, 1], [0, 0, 0], true)?;
        Ok(Self {
            post_quant_conv,
            decoder: Decoder3d::new(&src.at("decoder"), config)?,
            latent_channels: c,
            scaling_factor: config.scaling_factor,
            spatial_scale: config.spatial_compression_ratio,
            temporal_scale: config.temporal_compression_ratio,
            decoder_channels: config.block_out_channels[0],
        })
    }
}

impl<B: Backend> HunyuanVideoVae<B> {
    /// Loads a diffusers `vae/` folder (`config.json` and its safetensors weights, sharded or
    /// not), or a `.safetensors` file with `config.json` beside it.
    ///
    /// Weight names follow diffusers (`decoder.up_blocks.1.upsamplers.0.conv.conv.weight`,
    /// ...), so `HunyuanVideo/vae` loads; encoder weights are skipped, and any other weight the
    /// configuration does not use is an error (config and weights do not match).
    pub fn load(path: &Path, device: &B::Device) -> Result<Self, VaeError> {
        Ok(Component::open(path)?.build(device, checkpoint::encoder_side)?)
    }

    /// Channels of the decoder's feature maps at full resolution: the most it holds per pixel,
    /// for estimates of the memory decoding needs.
    pub fn decoder_channels(&self) -> usize {
        self.decoder_channels
    }

    /// Pixels per latent cell along each side (8 for HunyuanVideo), the pipeline's
    /// `vae_scale_factor_spatial`.
    pub fn spatial_scale_factor(&self) -> usize {
        self.spatial_scale
    }

    /// Video frames per latent frame after the first (4), the pipeline's
    /// `vae_scale_factor_temporal`.
    pub fn temporal_scale_factor(&self) -> usize {
        self.temporal_scale
    }

    /// Frames of the video decoded from `latent_frames` latent frames:
    /// `1 + temporal_scale_factor * (latent_frames - 1)` (129 from 33).
    pub fn video_frames(&self, latent_frames: usize) -> usize {
        1 + self.temporal_scale * latent_frames.saturating_sub(1)
    }

    /// Undoes the pipeline's latent scaling as `HunyuanVideoPipeline` writes it,
    /// `latents / scaling_factor`, in the latents' dtype. Apply it to the denoised latents
    /// `[batch, latent_channels, frames, h, w]` before decoding.
    pub fn unscale_latents(&self, latents: Tensor<B, 5>) -> Result<Tensor<B, 5>, VaeError> {
        self.check_latents(&latents)?;
        Ok(latents.div_scalar(self.scaling_factor))
    }

    /// Decodes unscaled latents `[batch, latent_channels, frames, h, w]` into a video
    /// `[batch, out_channels, video_frames(frames), h * spatial, w * spatial]` in one pass of
    /// the decoder (diffusers' `decode` with tiling and framewise decoding off), nominally in
    /// `[-1, 1]` (not clamped; see [`crate::video_to_rgb8`]).
    pub fn decode(&self, latents: Tensor<B, 5>) -> Result<Tensor<B, 5>, VaeError> {
        self.decode_inspect(latents, |_, _| {})
    }

    /// [`Self::decode`], calling `inspect` with the activations after each [`DecoderStage`].
    pub fn decode_inspect(
        &self,
        latents: Tensor<B, 5>,
        inspect: impl FnMut(DecoderStage, &Tensor<B, 5>),
    ) -> Result<Tensor<B, 5>, VaeError> {
        self.check_latents(&latents)?;
        let z = self.post_quant_conv.forward(latents);
        Ok(self.decoder.forward_inspect(z, inspect))
    }

    /// [`Self::decode`] in tiles, as diffusers' `decode` after `enable_tiling` with `tiles`'
    /// sizes: clips of more than `min_frames / 4` latent frames are decoded in temporal tiles,
    /// and clips (or temporal tiles) larger than `min_height / 8` x `min_width / 8` latent cells
    /// in spatial tiles, the overlaps cross-faded. The defaults ([`TileConfig::default`]) decode
    /// HunyuanVideo's 129 frames of 544x960 with 17 frames of 256x256 at a time.
    ///
    /// Fails on latents of the wrong shape and on tiles under one latent cell or with a stride
    /// larger than the tile.
    pub fn decode_tiled(
        &self,
        latents: Tensor<B, 5>,
        tiles: &TileConfig,
    ) -> Result<Tensor<B, 5>, VaeError> {
        self.check_latents(&latents)?;
        let ratio = self.spatial_scale;
        let spatial = tiles
            .spatial
            .map(|t| -> Result<[Axis; 2], VaeError> {
                Ok([
                    Axis::new(t.min_height, t.stride_height, ratio, "height")?,
                    Axis::new(t.min_width, t.stride_width, ratio, "width")?,
                ])
            })
            .transpose()?;
        let temporal = tiles
            .temporal
            .map(|t| Axis::new(t.min_frames, t.stride_frames, self.temporal_scale, "frames"))
            .transpose()?;
        let whole = |z: Tensor<B, 5>| {
            self.decoder
                .forward_inspect(self.post_quant_conv.forward(z), |_, _| {})
        };
        let frames = |z: Tensor<B, 5>| {
            let [_, _, _, height, width] = z.dims();
            match spatial {
                Some(axes) if height > axes[0].tile || width > axes[1].tile => {
                    decode_spatial_tiles(z, axes, ratio, &whole)
                }
                _ => whole(z),
            }
        };
        Ok(match temporal {
            Some(axis) if latents.dims()[2] > axis.tile => {
                decode_temporal_tiles(latents, axis, self.temporal_scale, &frames)
            }
            _ => frames(latents),
        })
    }

    /// Fails unless `latents` are `[batch, latent_channels, frames, h, w]` with no empty axis.
    fn check_latents(&self, latents: &Tensor<B, 5>) -> Result<(), VaeError> {
        let dims = latents.dims();
        if dims[1] != self.latent_channels || dims.contains(&0) {
            return Err(VaeError::VideoLatentShape {
                channels: self.latent_channels,
                found: dims.to_vec(),
            });
        }
        Ok(())
    }
}
