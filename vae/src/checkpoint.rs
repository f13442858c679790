//! Opening a diffusers `vae/` checkpoint: its `config.json` and its decoder weights.

use std::path::{Path, PathBuf};

use dit_layers::{LoadError, Weights};

/// Name of the configuration file in a diffusers `vae/` folder.
const CONFIG_FILE: &str = "config.json";

/// Prefixes of the encoder-side weights a full VAE checkpoint holds and decoding does not read.
const ENCODER_PREFIXES: [&str; 2] = ["encoder.", "quant_conv."];

/// The `config.json` of `path`: inside it when it is a folder, beside it when it is a
/// `.safetensors` file.
pub(crate) fn config_path(path: &Path) -> PathBuf {
    let folder = if path.is_dir() {
        path
    } else {
        path.parent().unwrap_or(Path::new("."))
    };
    folder.join(CONFIG_FILE)
}

/// Fails when `weights` hold tensors that are neither encoder-side nor read by the decoder
/// built from them: the configuration does not match the checkpoint.
pub(crate) fn check_decoder_weights_used(weights: &Weights) -> Result<(), LoadError> {
    let unused: Vec<String> = weights
        .unused()
        .into_iter()
        .filter(|k| !ENCODER_PREFIXES.iter().any(|p| k.starts_with(p)))
        .collect();
    if unused.is_empty() {
        Ok(())
    } else {
        Err(LoadError::Unused {
            count: unused.len(),
            examples: unused.into_iter().take(5).collect(),
        })
    }
}
