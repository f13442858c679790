//! The text encoders of the diffusion pipelines, in Burn, with their tokenizers.
//!
//! - [`ClipTextModel`]: transformers' `CLIPTextModel` (FLUX `text_encoder/`, HunyuanVideo
//!   `text_encoder_2/`): last hidden state and pooled output.
//! - [`T5EncoderModel`]: transformers' `T5EncoderModel` (FLUX `text_encoder_2/`) and
//!   `UMT5EncoderModel` (WAN `text_encoder/`).
//! - [`LlamaModel`]: transformers' `LlamaModel` (HunyuanVideo `text_encoder/`): every hidden
//!   state; [`LlamaPromptEncoder`] turns prompts into HunyuanVideo's prompt embeddings.
//! - [`PromptTokenizer`]: the matching tokenizers, padded and truncated to a fixed length as
//!   the diffusers pipelines call them.
//!
//! Every model loads from a transformers folder (`config.json` + safetensors) with the
//! checkpoint's own weight names, so real checkpoints load unchanged; a configuration or
//! checkpoint that does not describe the model is an error naming the file and key. The same
//! constructor (`new`, over a [`dit_layers::ModelParams`]) builds a model with random weights
//! (`random(&config, device)`).

mod clip;
mod error;
mod input;
mod llama;
mod llama_prompt;
mod llama_rope;
mod t5;
mod t5_gguf;
mod tokenizer;

pub use clip::{
    ClipAttention, ClipEncoderLayer, ClipMlp, ClipTextConfig, ClipTextEmbeddings, ClipTextModel,
    ClipTextOutput, EosRule,
};
pub use error::{InputError, TokenizerError};
pub use llama::{
    LlamaAttention, LlamaConfig, LlamaDecoderLayer, LlamaMlp, LlamaModel, LlamaOutput,
};
pub use llama_prompt::{
    HUNYUAN_VIDEO_HIDDEN_LAYERS_TO_SKIP, LlamaPromptEmbeds, LlamaPromptEncoder, LlamaPromptError,
    PromptTemplate,
};
pub use llama_rope::{Llama3Scaling, LlamaRope, LlamaRopeParameters};
pub use t5::{
    T5Attention, T5Block, T5Config, T5DenseActDense, T5EncoderModel, T5EncoderOutput, T5Variant,
    relative_position_bucket,
};
pub use t5_gguf::{LlamaCppT5Layout, T5_GGUF_ARCHITECTURE};
pub use tokenizer::{PromptTokenizer, Tokens};
