//! Reading JSON configuration files.

use std::{fs, path::Path};

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
