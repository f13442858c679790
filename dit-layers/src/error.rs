//! Errors of loading checkpoints and configurations.

use std::path::PathBuf;

use thiserror::Error;

/// A checkpoint or configuration that could not be loaded; every variant names the file or key.
#[derive(Debug, Error)]
pub enum LoadError {
    /// A file or folder could not be read.
    #[error("cannot read {path}: {source}")]
    Io {
        /// The file or folder.
        path: PathBuf,
        /// What the system said.
        source: std::io::Error,
    },
    /// A folder holds no `.safetensors` file.
    #[error("no .safetensors file in {0}")]
    NoWeights(PathBuf),
    /// A safetensors or GGUF file is truncated or its header is damaged.
    #[error("{path} is not a valid {format} file (truncated or corrupt): {message}")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// Its format: `"safetensors"` or `"GGUF"`.
        format: &'static str,
        /// What the parser found.
        message: String,
    },
    /// A GGUF tensor is stored in a ggml type this loader does not decode.
    #[error(
        "tensor {key:?} in {path} is stored as {kind}, which cannot be read (GGUF types read: {})",
        crate::weights::GGUF_TYPES
    )]
    Quantization {
        /// The tensor name.
        key: String,
        /// The file holding it.
        path: PathBuf,
        /// ggml's name of the type.
        kind: String,
    },
    /// A GGUF file holds a model of another architecture than the one being loaded.
    #[error("{path} is a GGUF file of a {found:?} model, not {expected:?}")]
    Architecture {
        /// The file.
        path: PathBuf,
        /// Its `general.architecture`.
        found: String,
        /// The architecture of the model being loaded.
        expected: &'static str,
    },
    /// A shard index (`*.safetensors.index.json`) is malformed or names a missing shard.
    #[error("shard index {path}: {message}")]
    Index {
        /// The index file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// A tensor the model needs is not in the checkpoint.
    #[error("tensor {key:?} is missing from {source_desc}")]
    MissingKey {
        /// The tensor name.
        key: String,
        /// The files searched.
        source_desc: String,
    },
    /// A tensor has another shape than the configuration implies.
    #[error("tensor {key:?} in {path} has shape {found:?}, the configuration expects {expected:?}")]
    Shape {
        /// The tensor name.
        key: String,
        /// The file holding it.
        path: PathBuf,
        /// The shape the model needs.
        expected: Vec<usize>,
        /// The shape stored.
        found: Vec<usize>,
    },
    /// A tensor is stored in a dtype that cannot be loaded as floating point.
    #[error("tensor {key:?} in {path} has dtype {dtype}, expected F32, F16, BF16 or F64")]
    Dtype {
        /// The tensor name.
        key: String,
        /// The file holding it.
        path: PathBuf,
        /// The dtype stored.
        dtype: String,
    },
    /// Two files of one checkpoint hold a tensor of the same name (a stray or stale file
    /// beside the shards).
    #[error(
        "tensor {key:?} is in both {first} and {second}: remove the stale file, or give the \
         folder a shard index (*.safetensors.index.json) naming the files to read"
    )]
    Duplicate {
        /// The tensor name.
        key: String,
        /// The first file holding it.
        first: PathBuf,
        /// The second.
        second: PathBuf,
    },
    /// A tensor holds NaN or infinite values: a damaged checkpoint.
    #[error("tensor {key:?} in {path} holds {count} NaN or infinite values (a damaged checkpoint)")]
    NonFinite {
        /// The tensor name.
        key: String,
        /// The file holding it.
        path: PathBuf,
        /// How many values are not finite.
        count: usize,
    },
    /// A configuration file is malformed or describes an impossible model.
    #[error("configuration {path}: {message}")]
    Config {
        /// The configuration file (or a description of where the settings came from).
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// The checkpoint holds tensors the configured model does not use: the configuration does
    /// not match the weights.
    #[error(
        "{count} tensors in the checkpoint are not used by the configured model (config and weights do not match), e.g. {examples:?}"
    )]
    Unused {
        /// How many were not used.
        count: usize,
        /// A few of their names.
        examples: Vec<String>,
    },
}
