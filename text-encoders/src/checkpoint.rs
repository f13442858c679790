//! Opening a transformers model folder (`config.json` + safetensors) and checking that the
//! configured model used every stored tensor.

use std::path::{Path, PathBuf};

use dit_layers::{LoadError, Weights, read_json};
use serde::de::DeserializeOwned;

/// The parsed `config.json` of the folder `dir`, its path (for error messages), and the
/// folder's weights.
pub(crate) fn open_folder<C: DeserializeOwned>(
    dir: &Path,
) -> Result<(C, PathBuf, Weights), LoadError> {
    let config_path = dir.join("config.json");
    let config = read_json(&config_path)?;
    let weights = Weights::open(dir)?;
    Ok((config, config_path, weights))
}

/// A configuration error at `path`.
pub(crate) fn config_error(path: &Path, message: impl Into<String>) -> LoadError {
    LoadError::Config {
        path: path.to_path_buf(),
        message: message.into(),
    }
}

/// Fails when `weights` holds tensors that were never read, other than the `ignorable` names
/// (aliases of tied or derived tensors that transformers also skips).
pub(crate) fn check_all_used_except(
    weights: &Weights,
    ignorable: &[&str],
) -> Result<(), LoadError> {
    let unused: Vec<String> = weights
        .unused()
        .into_iter()
        .filter(|k| !ignorable.contains(&k.as_str()))
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
