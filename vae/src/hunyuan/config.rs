//! `config.json` of a diffusers `AutoencoderKLHunyuanVideo`: the settings the decoder needs.

use std::path::Path;

use dit_layers::{LoadError, read_config};
use serde::Deserialize;

use crate::decoder_config::{DecoderKeys, invalid};

/// The class a configuration file must name when it names one.
const CLASS_NAME: &str = "AutoencoderKLHunyuanVideo";

/// The only up-block type the decoder has.
const UP_BLOCK: &str = "HunyuanVideoUpBlock3D";

/// The only temporal compression diffusers' `HunyuanVideoDecoder3D` builds.
const TEMPORAL_RATIO: usize = 4;

/// Time upsamplers of a decoder with 4x temporal compression: the up blocks just before the
/// last one.
const TIME_UPSAMPLERS: usize = 2;

/// Decoder settings of `AutoencoderKLHunyuanVideo` with diffusers' defaults (HunyuanVideo's
/// VAE) for absent keys; encoder-only keys (`in_channels`, `down_block_types`) are not read.
///
/// HunyuanVideo (`hunyuanvideo-community/HunyuanVideo/vae`): `latent_channels` 16,
/// `block_out_channels` `[128, 256, 512, 512]`, `layers_per_block` 2, `norm_num_groups` 32,
/// `scaling_factor` 0.476986: 8x spatial and 4x temporal upsampling.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default)]
pub struct HunyuanVideoVaeConfig {
    /// Checked to be `AutoencoderKLHunyuanVideo` when present.
    #[serde(rename = "_class_name")]
    pub class_name: Option<String>,
    /// Channels of the latents.
    pub latent_channels: usize,
    /// Channels of the video (3).
    pub out_channels: usize,
    /// Channels per resolution, finest first; the decoder walks them in reverse.
    pub block_out_channels: Vec<usize>,
    /// One entry per resolution; must be `HunyuanVideoUpBlock3D`.
    pub up_block_types: Vec<String>,
    /// The decoder's up blocks hold `layers_per_block + 1` resnets.
    pub layers_per_block: usize,
    /// Groups of every group norm.
    pub norm_num_groups: usize,
    /// Activation; must be `silu` (or its alias `swish`).
    pub act_fn: String,
    /// Whether the mid block holds its causal self-attention.
    pub mid_block_add_attention: bool,
    /// The pipeline divides latents by it before decoding.
    pub scaling_factor: f64,
    /// Pixels per latent cell along each side: a power of two, `2^k` for the first `k` up
    /// blocks upsampling space.
    pub spatial_compression_ratio: usize,
    /// Video frames per latent frame after the first; must be 4.
    pub temporal_compression_ratio: usize,
}

impl Default for HunyuanVideoVaeConfig {
    fn default() -> Self {
        Self {
            class_name: None,
            latent_channels: 16,
            out_channels: 3,
            block_out_channels: vec![128, 256, 512, 512],
            up_block_types: vec![UP_BLOCK.to_string(); 4],
            layers_per_block: 2,
            norm_num_groups: 32,
            act_fn: "silu".to_string(),
            mid_block_add_attention: true,
            scaling_factor: 0.476986,
            spatial_compression_ratio: 8,
            temporal_compression_ratio: TEMPORAL_RATIO,
        }
    }
}

/// What the upsampler at the end of one up block doubles.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Upsampling {
    /// Height and width.
    pub space: bool,
    /// Frames (all but the first).
    pub time: bool,
}

impl HunyuanVideoVaeConfig {
    /// Reads and checks `config.json` at `path`; every error names the file and the key.
    pub fn from_file(path: &Path) -> Result<Self, LoadError> {
        let config: Self = read_config(path)?;
        config.validate().map_err(invalid(path))?;
        Ok(config)
    }

    /// Per up block (coarsest resolution first), what its upsampler doubles, as
    /// `HunyuanVideoDecoder3D` decides it: space in the first `log2(spatial_compression_ratio)`
    /// blocks, time in the two blocks before the last; `None` for a block without upsampler.
    pub fn upsampling(&self) -> Vec<Option<Upsampling>> {
        let blocks = self.block_out_channels.len();
        let spatial = self.spatial_compression_ratio.trailing_zeros() as usize;
        (0..blocks)
            .map(|i| {
                let up = Upsampling {
                    space: i < spatial,
                    time: i + 1 < blocks && i + 1 + TIME_UPSAMPLERS >= blocks,
                };
                (up.space || up.time).then_some(up)
            })
            .collect()
    }

    /// Fails on settings the decoder cannot be built from, naming the key.
    pub(crate) fn validate(&self) -> Result<(), String> {
        DecoderKeys {
            class_name: self.class_name.as_deref(),
            block_out_channels: &self.block_out_channels,
            up_block_types: &self.up_block_types,
            act_fn: &self.act_fn,
            norm_num_groups: self.norm_num_groups,
        }
        .check(CLASS_NAME, UP_BLOCK)?;
        if self.temporal_compression_ratio != TEMPORAL_RATIO {
            return Err(format!(
                "temporal_compression_ratio {} is not supported, only {TEMPORAL_RATIO}",
                self.temporal_compression_ratio
            ));
        }
        let ratio = self.spatial_compression_ratio;
        if !ratio.is_power_of_two() {
            return Err(format!(
                "spatial_compression_ratio {ratio} must be a power of two"
            ));
        }
        // Tiling and the pipeline take the ratios as the decoder's upsampling: the blocks must
        // be enough to hold every upsampler.
        let blocks = self.block_out_channels.len();
        let needed = (ratio.trailing_zeros() as usize).max(TIME_UPSAMPLERS + 1);
        if blocks < needed {
            return Err(format!(
                "block_out_channels has {blocks} entries: spatial_compression_ratio {ratio} and \
                 temporal_compression_ratio {TEMPORAL_RATIO} need at least {needed}"
            ));
        }
        if self.latent_channels == 0 || self.out_channels == 0 {
            return Err("latent_channels and out_channels must be positive".to_string());
        }
        if !(self.scaling_factor.is_finite() && self.scaling_factor != 0.0) {
            return Err(format!(
                "scaling_factor {} must be finite and non-zero",
                self.scaling_factor
            ));
        }
        Ok(())
    }
}
