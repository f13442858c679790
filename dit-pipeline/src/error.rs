//! Why a generation could not run.

use std::path::PathBuf;

use thiserror::Error;

/// Why a pipeline could not load or generate; each variant names the component or setting.
#[derive(Debug, Error)]
pub enum PipelineError {
    /// A component folder or file is missing.
    #[error("the pipeline folder {folder} has no {component} ({what})")]
    MissingComponent {
        /// The pipeline folder.
        folder: PathBuf,
        /// The missing entry (`text_encoder_2/`, `model_index.json`).
        component: String,
        /// What it holds.
        what: String,
    },
    /// The folder holds another pipeline than the one loading it.
    #[error("{folder} holds a {found} (its model_index.json says so), not a {expected}")]
    WrongPipeline {
        /// The pipeline folder.
        folder: PathBuf,
        /// The class its `model_index.json` names.
        found: String,
        /// The class of the pipeline that was loading it.
        expected: String,
    },
    /// A model failed to load.
    #[error(transparent)]
    Load(#[from] dit_layers::LoadError),
    /// A tokenizer failed to load or encode.
    #[error(transparent)]
    Tokenizer(#[from] text_encoders::TokenizerError),
    /// A scheduler configuration or schedule is unusable.
    #[error(transparent)]
    Scheduler(#[from] schedulers::SchedulerError),
    /// The VAE failed to load or decode.
    #[error(transparent)]
    Vae(#[from] vae::VaeError),
    /// A templated LLaMA prompt encoding (HunyuanVideo) could not be set up or run.
    #[error("LLaMA prompt encoding: {0}")]
    Prompt(#[from] text_encoders::LlamaPromptError),
    /// A text encoder rejected its input.
    #[error("text encoder: {0}")]
    TextEncoder(#[from] text_encoders::InputError),
    /// The transformer rejected its input.
    #[error("transformer {0}")]
    Transformer(#[from] dit_layers::InputError),
    /// Sparse attention settings the transformer cannot take.
    #[error("sparse attention: {0}")]
    SparseAttention(#[from] dit_layers::SparseVideoError),
    /// Bad cache settings.
    #[error(transparent)]
    Cache(#[from] dicache_core::CacheError),
    /// The backend failed to finish its queued work.
    #[error("backend: {0}")]
    Backend(String),
    /// A stage produced (or was given) NaN or infinite values.
    #[error(
        "{what} holds NaN or infinite values: a damaged weight, or values beyond what {dtype} \
         holds (try float32)"
    )]
    NonFinite {
        /// The stage and step (`"step 3 of 28: the sample"`).
        what: String,
        /// The dtype it was computed in.
        dtype: String,
    },
    /// An impossible request (size, frames, steps, guidance, noise).
    #[error("{0}")]
    Request(String),
}
