//! HunyuanVideo's prompt encoding with LLaMA, as diffusers'
//! `HunyuanVideoPipeline._get_llama_prompt_embeds`: each prompt is put into a chat template,
//! tokenized to `crop_start + max_sequence_length` tokens, run through the model, and the
//! hidden state `num_hidden_layers_to_skip` layers before the end is kept without the template's
//! `crop_start` leading tokens.

use std::path::{Path, PathBuf};

use burn::tensor::{Int, Tensor, backend::Backend};
use dit_layers::read_json;
use serde_json::Value;
use thiserror::Error;

use crate::{InputError, LlamaModel, PromptTokenizer, TokenizerError};

/// The template text of diffusers' `DEFAULT_PROMPT_TEMPLATE` for HunyuanVideo; `{}` is the
/// prompt.
const HUNYUAN_VIDEO_TEMPLATE: &str = concat!(
    "<|start_header_id|>system<|end_header_id|>\n\nDescribe the video by detailing the following aspects: ",
    "1. The main content and theme of the video.",
    "2. The color, shape, size, texture, quantity, text, and spatial relationships of the objects.",
    "3. Actions, events, behaviors temporal relationships, physical movement changes of the objects.",
    "4. background environment, light, style and atmosphere.",
    "5. camera angles, movements, and transitions used in the video:<|eot_id|>",
    "<|start_header_id|>user<|end_header_id|>\n\n{}<|eot_id|>",
);

/// diffusers' `crop_start` of [`HUNYUAN_VIDEO_TEMPLATE`]: its tokens before the prompt with
/// Llama 3's tokenizer.
const HUNYUAN_VIDEO_CROP_START: usize = 95;

/// The hidden layers HunyuanVideo skips at the end of the model (`num_hidden_layers_to_skip`).
pub const HUNYUAN_VIDEO_HIDDEN_LAYERS_TO_SKIP: usize = 2;

/// transformers' `LARGE_INTEGER`: a tokenizer's `model_max_length` above it means "none".
const LARGE_INTEGER: f64 = 1e20;

/// A prompt encoding that cannot be set up or run.
#[derive(Debug, Error)]
pub enum LlamaPromptError {
    /// The tokenizer could not be loaded or failed.
    #[error(transparent)]
    Tokenizer(#[from] TokenizerError),
    /// The model rejected the token ids.
    #[error(transparent)]
    Input(#[from] InputError),
    /// The template is not one `{}` placeholder in text without other braces.
    #[error("prompt template {template:?}: {message}")]
    Template {
        /// The template.
        template: String,
        /// What is wrong.
        message: String,
    },
    /// `max_sequence_length` is zero: no tokens would be left after the crop.
    #[error("max_sequence_length must be at least 1")]
    NoTokens,
    /// More layers to skip than the model has hidden states.
    #[error("cannot skip {skip} hidden layers of a model with {layers} layers")]
    Skip {
        /// Layers to skip.
        skip: usize,
        /// Layers of the model.
        layers: usize,
    },
}

/// A chat template around the prompt: the text with one `{}` where the prompt goes, and how
/// many leading tokens to crop (`None`: computed from the template as the pipeline does).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PromptTemplate {
    text: String,
    crop_start: Option<usize>,
}

impl PromptTemplate {
    /// diffusers' `DEFAULT_PROMPT_TEMPLATE` of HunyuanVideo (`crop_start` 95).
    pub fn hunyuan_video() -> Self {
        Self {
            text: HUNYUAN_VIDEO_TEMPLATE.to_string(),
            crop_start: Some(HUNYUAN_VIDEO_CROP_START),
        }
    }

    /// A template `text` with one `{}` placeholder and no other braces (Python's
    /// `str.format` would read those differently), and its `crop_start`.
    pub fn new(text: &str, crop_start: Option<usize>) -> Result<Self, LlamaPromptError> {
        let error = |message: &str| LlamaPromptError::Template {
            template: text.to_string(),
            message: message.to_string(),
        };
        let placeholders = text.matches("{}").count();
        if placeholders != 1 {
            return Err(error("needs exactly one {} placeholder"));
        }
        if text.replacen("{}", "", 1).contains(['{', '}']) {
            return Err(error(
                "braces other than the {} placeholder are not supported",
            ));
        }
        Ok(Self {
            text: text.to_string(),
            crop_start,
        })
    }

    /// The template text.
    pub fn text(&self) -> &str {
        &self.text
    }

    /// The given `crop_start`, if any.
    pub fn crop_start(&self) -> Option<usize> {
        self.crop_start
    }

    /// The template with `prompt` in place of `{}`.
    pub fn apply(&self, prompt: &str) -> String {
        self.text.replacen("{}", prompt, 1)
    }
}

/// Prompt embeddings and their mask, cropped past the template.
#[derive(Debug, Clone)]
pub struct LlamaPromptEmbeds<B: Backend> {
    /// `[batch, max_sequence_length, hidden]` (the pipeline's `prompt_embeds`).
    pub embeds: Tensor<B, 3>,
    /// `[batch, max_sequence_length]`, 1 for tokens, 0 for padding
    /// (`prompt_attention_mask`).
    pub mask: Tensor<B, 2, Int>,
}

/// HunyuanVideo's LLaMA prompt encoding: a tokenizer padding to
/// `crop_start + max_sequence_length`, the template, and the hidden state to keep.
#[derive(Debug, Clone)]
pub struct LlamaPromptEncoder {
    tokenizer: PromptTokenizer,
    template: PromptTemplate,
    crop_start: usize,
    hidden_layers_to_skip: usize,
}

impl LlamaPromptEncoder {
    /// The HunyuanVideo pipeline's encoding (default template, 2 layers skipped) with the
    /// tokenizer folder `tokenizer` (the pipeline's `tokenizer/`); the pipeline's
    /// `max_sequence_length` is 256.
    pub fn hunyuan_video(
        tokenizer: &Path,
        max_sequence_length: usize,
    ) -> Result<Self, LlamaPromptError> {
        Self::new(
            tokenizer,
            PromptTemplate::hunyuan_video(),
            max_sequence_length,
            HUNYUAN_VIDEO_HIDDEN_LAYERS_TO_SKIP,
        )
    }

    /// An encoding with `template`, keeping `hidden_states[-(hidden_layers_to_skip + 1)]`.
    /// Without a `crop_start` in the template it is computed as the pipeline does: the
    /// template's token count (padded to the tokenizer's `model_max_length` when one is set)
    /// less 2, for `{}` and the closing `<|eot_id|>`.
    pub fn new(
        tokenizer: &Path,
        template: PromptTemplate,
        max_sequence_length: usize,
        hidden_layers_to_skip: usize,
    ) -> Result<Self, LlamaPromptError> {
        if max_sequence_length == 0 {
            return Err(LlamaPromptError::NoTokens);
        }
        let crop_start = match template.crop_start {
            Some(crop) => crop,
            None => computed_crop_start(tokenizer, &template)?,
        };
        Ok(Self {
            tokenizer: PromptTokenizer::llama(tokenizer, crop_start + max_sequence_length)?,
            template,
            crop_start,
            hidden_layers_to_skip,
        })
    }

    /// Leading tokens removed from the model's output.
    pub fn crop_start(&self) -> usize {
        self.crop_start
    }

    /// The templated prompts tokenized, `crop_start + max_sequence_length` tokens each.
    pub fn tokenize(&self, prompts: &[&str]) -> Result<crate::Tokens, LlamaPromptError> {
        let texts: Vec<String> = prompts.iter().map(|p| self.template.apply(p)).collect();
        let texts: Vec<&str> = texts.iter().map(String::as_str).collect();
        Ok(self.tokenizer.encode(&texts)?)
    }

    /// Encodes `prompts` with `model` (HunyuanVideo's `text_encoder/`).
    pub fn encode<B: Backend>(
        &self,
        model: &LlamaModel<B>,
        prompts: &[&str],
        device: &B::Device,
    ) -> Result<LlamaPromptEmbeds<B>, LlamaPromptError> {
        let layers = model.layers.len();
        if self.hidden_layers_to_skip > layers {
            return Err(LlamaPromptError::Skip {
                skip: self.hidden_layers_to_skip,
                layers,
            });
        }
        let tokens = self.tokenize(prompts)?;
        let (ids, mask) = (tokens.ids_tensor(device), tokens.mask_tensor(device));
        let hidden = model.hidden_state(ids, mask.clone(), layers - self.hidden_layers_to_skip)?;
        let [batch, seq, hidden_size] = hidden.dims();
        Ok(LlamaPromptEmbeds {
            embeds: hidden.slice([0..batch, self.crop_start..seq, 0..hidden_size]),
            mask: mask.slice([0..batch, self.crop_start..seq]),
        })
    }
}

/// The pipeline's `crop_start` for a template without one: the template tokenized (special
/// tokens included, `{}` as text) with `padding="max_length"` and no `max_length`, which pads to
/// `model_max_length` when `tokenizer_config.json` sets one below transformers'
/// `LARGE_INTEGER`, less 2.
fn computed_crop_start(
    folder: &Path,
    template: &PromptTemplate,
) -> Result<usize, LlamaPromptError> {
    // Any length serves: counting neither truncates nor pads.
    let tokenizer = PromptTokenizer::llama(folder, template.text.len() + 2)?;
    let count = tokenizer.count_tokens(&template.text)?;
    let padded = count.max(model_max_length(folder)?.unwrap_or(0));
    padded
        .checked_sub(2)
        .ok_or_else(|| LlamaPromptError::Template {
            template: template.text.clone(),
            message: format!("{padded} tokens leave nothing to crop"),
        })
}

/// `model_max_length` of `tokenizer_config.json` in `folder`, when set below `LARGE_INTEGER`.
fn model_max_length(folder: &Path) -> Result<Option<usize>, TokenizerError> {
    let path: PathBuf = folder.join("tokenizer_config.json");
    if !path.is_file() {
        return Ok(None);
    }
    let config: Value = read_json(&path)?;
    Ok(config
        .get("model_max_length")
        .and_then(Value::as_f64)
        .filter(|n| (0.0..LARGE_INTEGER).contains(n))
        .map(|n| n as usize))
}
