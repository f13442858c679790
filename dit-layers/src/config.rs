//! Reading JSON configuration files, and finding a model's folder.

use std::{
    fs,
    path::{Path, PathBuf},
};

use serde::de::DeserializeOwned;

use crate::LoadError;

/// Reads and parses the JSON file at `path`, naming it in any error.
pub fn read_json<T: DeserializeOwned>(path: &Path) -> Result<T, LoadError> {
    let text = fs::read_to_string(path).map_err(|source| LoadError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    serde_json::from_str(&text).map_err(|e| LoadError::Config {
        path: path.to_path_buf(),
        message: e.to_string(),
    })
}

/// The folder of a diffusers model: `dir/<component>` when `dir` is a pipeline folder holding
/// the model there (with its `config.json`), else `dir` itself.
pub fn model_folder(dir: &Path, component: &str) -> PathBuf {
    let nested = dir.join(component);
    if nested.join("config.json").is_file() {
        nested
    } else {
        dir.to_path_buf()
    }
}
