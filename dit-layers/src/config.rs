//! Reading JSON configuration files, finding a model's folder, and opening a model component
//! (configuration and weights) to build a model from.

use std::{
    fs,
    path::{Path, PathBuf},
};

use burn::tensor::backend::Backend;
use serde::de::DeserializeOwned;

use crate::{LoadError, ModelParams, Weights};

/// Name of the configuration file of a diffusers or transformers model.
const CONFIG_FILE: &str = "config.json";

/// The largest integer a model configuration may hold. Real ones stay far below (vocabularies
/// of 256k tokens, 131k positions); the bound keeps the products of sizes a model computes
/// (heads x head dim x patch) from overflowing, whatever a damaged file says.
pub const MAX_CONFIG_INTEGER: u64 = 1 << 20;

/// Reads and parses a model's configuration file (`config.json`) at `path`, naming it in any
/// error; an integer above [`MAX_CONFIG_INTEGER`] (or below its negative) anywhere in it is an
/// error naming its key.
pub fn read_config<T: DeserializeOwned>(path: &Path) -> Result<T, LoadError> {
    let value: serde_json::Value = read_json(path)?;
    if let Some((key, n)) = oversized(&value, "") {
        return Err(LoadError::Config {
            path: path.to_path_buf(),
            message: format!(
                "{key} = {n} is beyond any model's size (at most {MAX_CONFIG_INTEGER})"
            ),
        });
    }
    serde_json::from_value(value).map_err(|e| LoadError::Config {
        path: path.to_path_buf(),
        message: e.to_string(),
    })
}

/// The first integer in `value` (at key path `at`) beyond [`MAX_CONFIG_INTEGER`], with its key
/// path.
fn oversized(value: &serde_json::Value, at: &str) -> Option<(String, serde_json::Number)> {
    use serde_json::Value;
    let key = |k: &dyn std::fmt::Display| match at {
        "" => k.to_string(),
        _ => format!("{at}.{k}"),
    };
    match value {
        Value::Number(n) => {
            let too_big = n.as_u64().is_some_and(|v| v > MAX_CONFIG_INTEGER)
                || n.as_i64()
                    .is_some_and(|v| v.unsigned_abs() > MAX_CONFIG_INTEGER);
            too_big.then(|| (at.to_string(), n.clone()))
        }
        Value::Array(items) => items
            .iter()
            .enumerate()
            .find_map(|(i, v)| oversized(v, &key(&i))),
        Value::Object(map) => map.iter().find_map(|(k, v)| oversized(v, &key(k))),
        _ => None,
    }
}

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
    if nested.join(CONFIG_FILE).is_file() {
        nested
    } else {
        dir.to_path_buf()
    }
}

/// A model built from its configuration and its parameters addressed by reference module
/// path: one constructor serves a checkpoint (any layout [`ModelParams`] reads) and random
/// initialisation.
pub trait FromParams<B: Backend>: Sized {
    /// The configuration the model is built from (its `config.json`).
    type Config;

    /// Builds the model of `config` from `src`; `source` names where the configuration came
    /// from in errors.
    fn from_params(
        config: &Self::Config,
        src: &ModelParams<'_, B>,
        source: &Path,
    ) -> Result<Self, LoadError>;

    /// A model of `config` with random weights (seed with `B::seed`), for tests and benchmarks
    /// that need no reference numbers. Fails only on an invalid configuration.
    fn random(config: &Self::Config, device: &B::Device) -> Result<Self, LoadError> {
        let config_type = std::any::type_name::<Self::Config>();
        let config_type = config_type.rsplit("::").next().unwrap_or(config_type);
        Self::from_params(
            config,
            &ModelParams::random(device),
            Path::new(&format!("{config_type} given in code")),
        )
    }
}

/// A model component as diffusers and transformers store it (a text encoder, a VAE): a folder
/// holding `config.json` and safetensors weights (one file, or shards with their index), or a
/// `.safetensors` file with `config.json` beside it.
pub struct Component<C> {
    /// The parsed `config.json`.
    pub config: C,
    /// Where the configuration was read; errors name it.
    pub config_path: PathBuf,
    /// The weights, memory-mapped.
    pub weights: Weights,
}

impl<C: DeserializeOwned> Component<C> {
    /// Reads the configuration of the folder or weight file `path`, then opens its weights.
    pub fn open(path: &Path) -> Result<Self, LoadError> {
        let folder = if path.is_dir() {
            path
        } else {
            path.parent().unwrap_or(Path::new("."))
        };
        let config_path = folder.join(CONFIG_FILE);
        let config = read_config(&config_path)?;
        let weights = Weights::open(path)?;
        Ok(Self {
            config,
            config_path,
            weights,
        })
    }
}

impl<C> Component<C> {
    /// The component with `prefix` removed from every weight name, when all names have it
    /// (transformers' `text_model.` of CLIP, `model.` of LLaMA).
    pub fn strip_prefix(self, prefix: &str) -> Self {
        Self {
            weights: self.weights.strip_prefix(prefix),
            ..self
        }
    }

    /// Builds the model `M` of the configuration from the checkpoint's parameters (reference
    /// names) on `device`, then fails when the checkpoint holds a tensor the model did not read
    /// and `ignorable` does not accept (a tied tensor's alias, a stored buffer, a VAE's
    /// encoder): the configuration does not describe the weights.
    pub fn build<B: Backend, M: FromParams<B, Config = C>>(
        &self,
        device: &B::Device,
        ignorable: impl Fn(&str) -> bool,
    ) -> Result<M, LoadError> {
        let params = ModelParams::checkpoint(&self.weights, device);
        let model = M::from_params(&self.config, &params, &self.config_path)?;
        self.weights.check_all_used_except(ignorable)?;
        Ok(model)
    }
}
