//! `config.json` of a diffusers `AutoencoderKL`: the settings the decoder needs.

use std::path::Path;

use dit_layers::{LoadError, read_json};
use serde::Deserialize;

use crate::decoder_config::{DecoderKeys, invalid};

/// The class a configuration file must name when it names one.
const CLASS_NAME: &str = "AutoencoderKL";

/// The only up-block type `AutoencoderKL` decoders use.
const UP_BLOCK: &str = "UpDecoderBlock2D";

/// Decoder settings of `AutoencoderKL` with diffusers' defaults for absent keys; encoder-only
/// keys (`in_channels`, `down_block_types`, ...) are not read.
///
/// FLUX.1: `latent_channels` 16, `block_out_channels` `[128, 256, 512, 512]`,
/// `layers_per_block` 2, `norm_num_groups` 32, no quant convs, `scaling_factor` 0.3611,
/// `shift_factor` 0.1159.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default)]
pub struct AutoencoderKlConfig {
    /// Checked to be `AutoencoderKL` when present.
    #[serde(rename = "_class_name")]
    pub class_name: Option<String>,
    /// Channels of the latents.
    pub latent_channels: usize,
    /// Channels of the image (3).
    pub out_channels: usize,
    /// Channels per resolution, highest resolution first; the decoder walks them in reverse
    /// and upsamples 2x between consecutive ones.
    pub block_out_channels: Vec<usize>,
    /// One entry per resolution; must be `UpDecoderBlock2D`.
    pub up_block_types: Vec<String>,
    /// The decoder's up blocks hold `layers_per_block + 1` resnets.
    pub layers_per_block: usize,
    /// Groups of every group norm.
    pub norm_num_groups: usize,
    /// Activation; must be `silu` (or its alias `swish`).
    pub act_fn: String,
    /// Whether a 1x1 `post_quant_conv` runs before the decoder.
    pub use_post_quant_conv: bool,
    /// Whether the mid block holds its self-attention.
    pub mid_block_add_attention: bool,
    /// Pipelines divide latents by it before decoding.
    pub scaling_factor: f64,
    /// Pipelines add it after dividing by `scaling_factor`, when set.
    pub shift_factor: Option<f64>,
}

impl Default for AutoencoderKlConfig {
    fn default() -> Self {
        Self {
            class_name: None,
            latent_channels: 4,
            out_channels: 3,
            block_out_channels: vec![64],
            up_block_types: vec![UP_BLOCK.to_string()],
            layers_per_block: 1,
            norm_num_groups: 32,
            act_fn: "silu".to_string(),
            use_post_quant_conv: true,
            mid_block_add_attention: true,
            scaling_factor: 0.18215,
            shift_factor: None,
        }
    }
}

impl AutoencoderKlConfig {
    /// Reads and checks `config.json` at `path`; every error names the file and the key.
    pub fn from_file(path: &Path) -> Result<Self, LoadError> {
        let config: Self = read_json(path)?;
        config.validate().map_err(invalid(path))?;
        Ok(config)
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
        if self.latent_channels == 0 || self.out_channels == 0 {
            return Err("latent_channels and out_channels must be positive".to_string());
        }
        if !(self.scaling_factor.is_finite() && self.scaling_factor != 0.0) {
            return Err(format!(
                "scaling_factor {} must be finite and non-zero (latents are divided by it)",
                self.scaling_factor
            ));
        }
        if let Some(shift) = self.shift_factor.filter(|s| !s.is_finite()) {
            return Err(format!("shift_factor {shift} must be finite"));
        }
        Ok(())
    }
}
