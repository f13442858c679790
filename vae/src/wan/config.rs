//! `config.json` of a diffusers `AutoencoderKLWan`: the settings the decoder needs.

use std::path::Path;

use dit_layers::{LoadError, read_config};
use serde::Deserialize;

use crate::decoder_config::invalid;

/// The class a configuration file must name when it names one.
const CLASS_NAME: &str = "AutoencoderKLWan";

/// Per-channel means of WAN 2.1's latents: diffusers' default `latents_mean`
/// (`AutoencoderKLWan.__init__`), also written in `Wan2.1-T2V-*-Diffusers/vae/config.json`.
const WAN21_LATENTS_MEAN: [f64; 16] = [
    -0.7571, -0.7089, -0.9113, 0.1075, -0.1745, 0.9653, -0.1517, 1.5508, 0.4134, -0.0715, 0.5517,
    -0.3632, -0.1922, -0.9497, 0.2503, -0.2921,
];

/// Per-channel standard deviations of WAN 2.1's latents: diffusers' default `latents_std`.
const WAN21_LATENTS_STD: [f64; 16] = [
    2.8184, 1.4541, 2.3275, 2.6558, 1.2196, 1.7708, 2.6052, 2.0743, 3.2687, 2.1526, 2.8652, 1.5579,
    1.6382, 1.1253, 2.8251, 1.9160,
];

/// Decoder settings of `AutoencoderKLWan` with diffusers' defaults (WAN 2.1's VAE) for absent
/// keys; encoder-only keys (`in_channels`, `attn_scales`, `dropout`, ...) are not read.
///
/// WAN 2.1 (`Wan2.1-T2V-1.3B-Diffusers/vae`): `base_dim` 96, `z_dim` 16, `dim_mult`
/// `[1, 2, 4, 4]`, `num_res_blocks` 2, `temperal_downsample` `[false, true, true]`: 8x
/// spatial and 4x temporal upsampling.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default)]
pub struct WanVaeConfig {
    /// Checked to be `AutoencoderKLWan` when present.
    #[serde(rename = "_class_name")]
    pub class_name: Option<String>,
    /// Channel unit of the encoder, and of the decoder unless `decoder_base_dim` is set.
    pub base_dim: usize,
    /// Channel unit of the decoder when it differs from `base_dim`.
    pub decoder_base_dim: Option<usize>,
    /// Channels of the latents.
    pub z_dim: usize,
    /// Channel multipliers per resolution, finest first; the decoder walks them in reverse.
    pub dim_mult: Vec<usize>,
    /// The decoder's up blocks hold `num_res_blocks + 1` residual blocks.
    pub num_res_blocks: usize,
    /// Per encoder downsampling (one fewer than `dim_mult`), whether it also halves time; the
    /// decoder upsamples time where this is true, in reverse order.
    pub temperal_downsample: Vec<bool>,
    /// Per-channel latent means (`z_dim` entries).
    pub latents_mean: Vec<f64>,
    /// Per-channel latent standard deviations (`z_dim` entries).
    pub latents_std: Vec<f64>,
    /// WAN 2.2's residual up blocks; must be false.
    pub is_residual: bool,
    /// WAN 2.2's output patching; must be absent.
    pub patch_size: Option<usize>,
    /// Channels of the video (3).
    pub out_channels: usize,
}

impl Default for WanVaeConfig {
    fn default() -> Self {
        Self {
            class_name: None,
            base_dim: 96,
            decoder_base_dim: None,
            z_dim: 16,
            dim_mult: vec![1, 2, 4, 4],
            num_res_blocks: 2,
            temperal_downsample: vec![false, true, true],
            latents_mean: WAN21_LATENTS_MEAN.to_vec(),
            latents_std: WAN21_LATENTS_STD.to_vec(),
            is_residual: false,
            patch_size: None,
            out_channels: 3,
        }
    }
}

impl WanVaeConfig {
    /// Reads and checks `config.json` at `path`; every error names the file and the key.
    pub fn from_file(path: &Path) -> Result<Self, LoadError> {
        let config: Self = read_config(path)?;
        config.validate().map_err(invalid(path))?;
        Ok(config)
    }

    /// Channels per decoder stage, as diffusers' `WanDecoder3d` lays them out: the mid block's
    /// first, then each up block's output (coarsest resolution first).
    pub fn decoder_dims(&self) -> Vec<usize> {
        let base = self.decoder_base_dim.unwrap_or(self.base_dim);
        let deepest = self.dim_mult.last().copied().unwrap_or(1);
        std::iter::once(deepest)
            .chain(self.dim_mult.iter().rev().copied())
            .map(|m| base * m)
            .collect()
    }

    /// Per up block that upsamples (all but the last), whether it also doubles time.
    pub fn temporal_upsample(&self) -> Vec<bool> {
        self.temperal_downsample.iter().rev().copied().collect()
    }

    /// Fails on settings the decoder cannot be built from, naming the key.
    pub(crate) fn validate(&self) -> Result<(), String> {
        if let Some(class) = &self.class_name
            && class != CLASS_NAME
        {
            return Err(format!("_class_name is {class:?}, expected {CLASS_NAME:?}"));
        }
        if self.is_residual {
            return Err(
                "is_residual is true (WAN 2.2's residual VAE), only WAN 2.1's decoder is supported"
                    .to_string(),
            );
        }
        if let Some(patch) = self.patch_size {
            return Err(format!(
                "patch_size {patch} (WAN 2.2's patched VAE) is not supported, only null"
            ));
        }
        if self.dim_mult.is_empty() || self.dim_mult.contains(&0) {
            return Err(format!(
                "dim_mult {:?} must be non-empty and positive",
                self.dim_mult
            ));
        }
        if self.temperal_downsample.len() + 1 != self.dim_mult.len() {
            return Err(format!(
                "temperal_downsample has {} entries, dim_mult {}: expected one fewer",
                self.temperal_downsample.len(),
                self.dim_mult.len()
            ));
        }
        // Every upsampler halves its channels: each upsampled stage needs at least two.
        let dims = self.decoder_dims();
        if dims.iter().any(|&d| d < 2) {
            return Err(format!(
                "base_dim {} (decoder_base_dim {:?}) with dim_mult {:?} gives channel counts \
                 {dims:?}; each must be at least 2",
                self.base_dim, self.decoder_base_dim, self.dim_mult
            ));
        }
        if self.z_dim == 0 || self.out_channels == 0 {
            return Err("z_dim and out_channels must be positive".to_string());
        }
        for (key, values) in [
            ("latents_mean", &self.latents_mean),
            ("latents_std", &self.latents_std),
        ] {
            if values.len() != self.z_dim {
                return Err(format!(
                    "{key} has {} entries, z_dim is {}",
                    values.len(),
                    self.z_dim
                ));
            }
            if let Some(bad) = values.iter().find(|v| !v.is_finite()) {
                return Err(format!("{key} holds {bad}; every entry must be finite"));
            }
        }
        if self.latents_std.contains(&0.0) {
            return Err("latents_std holds a zero".to_string());
        }
        Ok(())
    }
}
