//! Errors of tokenizing prompts and of running the encoders on token ids.

use std::path::{Path, PathBuf};

use dit_layers::LoadError;
use thiserror::Error;

/// A tokenizer that could not be loaded or could not tokenize; names the file involved.
#[derive(Debug, Error)]
pub enum TokenizerError {
    /// A tokenizer file is missing, unreadable or malformed.
    #[error("cannot load tokenizer file {path}: {message}")]
    Load {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        message: String,
    },
    /// A special token the tokenizer needs is not in its vocabulary.
    #[error("tokenizer in {folder}: {role} token {token:?} is not in the vocabulary")]
    MissingToken {
        /// The tokenizer folder.
        folder: PathBuf,
        /// Which special token (`"pad"`, `"bos"`, ...).
        role: &'static str,
        /// Its text.
        token: String,
    },
    /// `tokenizer_config.json` or `special_tokens_map.json` is malformed.
    #[error(transparent)]
    Config(#[from] LoadError),
    /// The tokenizer failed on a prompt.
    #[error("tokenizer in {folder} failed on a prompt: {message}")]
    Encode {
        /// The tokenizer folder.
        folder: PathBuf,
        /// What went wrong.
        message: String,
    },
}

/// Token ids (or an attention mask) an encoder cannot run on.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum InputError {
    /// A batch of empty sequences.
    #[error("no tokens to encode")]
    Empty,
    /// More tokens than the model has positions for.
    #[error("{len} tokens exceed the model's {max} positions")]
    TooLong {
        /// Tokens given.
        len: usize,
        /// Positions the model has.
        max: usize,
    },
    /// A token id outside the vocabulary.
    #[error("token id {id} is outside the vocabulary of {vocab_size}")]
    TokenOutOfRange {
        /// The id.
        id: i64,
        /// The vocabulary size.
        vocab_size: usize,
    },
    /// The attention mask has another shape than the token ids.
    #[error("attention mask of shape {mask:?} does not match token ids of shape {ids:?}")]
    MaskShape {
        /// Shape of the mask.
        mask: [usize; 2],
        /// Shape of the ids.
        ids: [usize; 2],
    },
}

/// A configuration error at `path` (where the configuration came from).
pub(crate) fn config_error(path: &Path, message: impl Into<String>) -> LoadError {
    LoadError::Config {
        path: path.to_path_buf(),
        message: message.into(),
    }
}
