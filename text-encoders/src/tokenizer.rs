//! Prompt tokenizers, called the way the diffusers pipelines call them: special tokens added,
//! truncated and padded to a fixed length (`padding="max_length"`, `truncation=True`).

use std::path::{Path, PathBuf};

use burn::tensor::{Int, Tensor, TensorData, backend::Backend};
use dit_layers::read_json;
use serde_json::Value;
use tokenizers::{
    AddedToken, PaddingDirection, PaddingParams, PaddingStrategy, PostProcessor,
    SplitDelimiterBehavior, Tokenizer, TruncationDirection, TruncationParams, TruncationStrategy,
    models::bpe::BPE,
    normalizers::{
        Lowercase, NFC, Replace, Sequence as NormalizerSequence, replace::ReplacePattern,
    },
    pre_tokenizers::{
        byte_level::ByteLevel,
        sequence::Sequence as PreTokenizerSequence,
        split::{Split, SplitPattern},
    },
    processors::roberta::RobertaProcessing,
};

use crate::TokenizerError;

/// The special tokens of transformers' `CLIPTokenizer` and their defaults.
const CLIP_SPECIALS: [(&str, &str); 4] = [
    ("bos_token", "<|startoftext|>"),
    ("eos_token", "<|endoftext|>"),
    ("unk_token", "<|endoftext|>"),
    ("pad_token", "<|endoftext|>"),
];

/// CLIP's pre-tokenisation pattern (transformers' `CLIPTokenizer`): the special tokens,
/// English contractions, letter runs, single digits, runs of other non-space characters.
const CLIP_SPLIT: &str =
    r"<\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+";

/// Token ids of a batch of prompts, all of the tokenizer's fixed length.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tokens {
    /// Token ids, one row per prompt.
    pub ids: Vec<Vec<u32>>,
    /// 1 for tokens, 0 for padding, one row per prompt.
    pub mask: Vec<Vec<u32>>,
}

impl Tokens {
    /// The ids as a `[batch, seq]` tensor.
    pub fn ids_tensor<B: Backend>(&self, device: &B::Device) -> Tensor<B, 2, Int> {
        Self::tensor(&self.ids, device)
    }

    /// The attention mask as a `[batch, seq]` tensor.
    pub fn mask_tensor<B: Backend>(&self, device: &B::Device) -> Tensor<B, 2, Int> {
        Self::tensor(&self.mask, device)
    }

    fn tensor<B: Backend>(rows: &[Vec<u32>], device: &B::Device) -> Tensor<B, 2, Int> {
        let seq = rows.first().map_or(0, Vec::len);
        let flat: Vec<i64> = rows.iter().flatten().map(|&id| i64::from(id)).collect();
        Tensor::from_data(TensorData::new(flat, [rows.len(), seq]), device)
    }
}

/// A tokenizer that pads and truncates every prompt to `max_length` tokens.
#[derive(Debug, Clone)]
pub struct PromptTokenizer {
    tokenizer: Tokenizer,
    folder: PathBuf,
}

impl PromptTokenizer {
    /// CLIP's tokenizer from a transformers folder (FLUX's `tokenizer/`): its `tokenizer.json`
    /// when present, else the original `vocab.json` + `merges.txt`, built as transformers'
    /// `CLIPTokenizer` does (NFC, whitespace runs to one space, lower case, CLIP's split,
    /// byte-level BPE with `</w>` word ends, `<|startoftext|>` … `<|endoftext|>` around).
    /// Special tokens come from `tokenizer_config.json` / `special_tokens_map.json`.
    /// FLUX uses `max_length` 77.
    pub fn clip(folder: &Path, max_length: usize) -> Result<Self, TokenizerError> {
        let json = folder.join("tokenizer.json");
        let tokenizer = if json.is_file() {
            load_json(&json)?
        } else {
            clip_from_vocab(folder)?
        };
        let pad = special_token(folder, CLIP_SPECIALS[3])?;
        Self::new(tokenizer, folder, &pad, max_length)
    }

    /// T5's (or umT5's) tokenizer from the `tokenizer.json` of a transformers folder (FLUX's
    /// `tokenizer_2/`, WAN's `tokenizer/`); `</s>` is appended by its post-processor and the
    /// padding token comes from the configuration files (default `<pad>`). FLUX uses
    /// `max_length` 512 (`max_sequence_length`), WAN 512.
    pub fn t5(folder: &Path, max_length: usize) -> Result<Self, TokenizerError> {
        let tokenizer = load_json(&folder.join("tokenizer.json"))?;
        let pad = special_token(folder, ("pad_token", "<pad>"))?;
        Self::new(tokenizer, folder, &pad, max_length)
    }

    /// LLaMA's tokenizer from the `tokenizer.json` of a transformers folder (HunyuanVideo's
    /// `tokenizer/`, Llama 3 byte-level BPE): `<|begin_of_text|>` is prepended by its
    /// post-processor; the padding token comes from the configuration files (default `<pad>`,
    /// HunyuanVideo's). Padding is on the right; a folder configured to pad on the left
    /// (`padding_side`) is an error naming `tokenizer_config.json`.
    pub fn llama(folder: &Path, max_length: usize) -> Result<Self, TokenizerError> {
        let side = special_token(folder, ("padding_side", "right"))?;
        if side != "right" {
            return Err(TokenizerError::Load {
                path: folder.join("tokenizer_config.json"),
                message: format!("padding_side {side:?} is not supported (only \"right\")"),
            });
        }
        let tokenizer = load_json(&folder.join("tokenizer.json"))?;
        let pad = special_token(folder, ("pad_token", "<pad>"))?;
        Self::new(tokenizer, folder, &pad, max_length)
    }

    fn new(
        mut tokenizer: Tokenizer,
        folder: &Path,
        pad_token: &str,
        max_length: usize,
    ) -> Result<Self, TokenizerError> {
        let pad_id =
            tokenizer
                .token_to_id(pad_token)
                .ok_or_else(|| TokenizerError::MissingToken {
                    folder: folder.to_path_buf(),
                    role: "pad",
                    token: pad_token.to_string(),
                })?;
        // The tokenizers crate subtracts the special tokens from the length unchecked.
        let specials = tokenizer
            .get_post_processor()
            .map_or(0, |p| p.added_tokens(false));
        if max_length < specials {
            return Err(TokenizerError::Load {
                path: folder.to_path_buf(),
                message: format!(
                    "a prompt length of {max_length} tokens cannot hold the {specials} special \
                     tokens the tokenizer adds"
                ),
            });
        }
        tokenizer
            .with_truncation(Some(TruncationParams {
                direction: TruncationDirection::Right,
                max_length,
                strategy: TruncationStrategy::LongestFirst,
                stride: 0,
            }))
            .map_err(|e| TokenizerError::Load {
                path: folder.to_path_buf(),
                message: format!("cannot truncate to {max_length} tokens: {e}"),
            })?;
        tokenizer.with_padding(Some(PaddingParams {
            strategy: PaddingStrategy::Fixed(max_length),
            direction: PaddingDirection::Right,
            pad_to_multiple_of: None,
            pad_id,
            pad_type_id: 0,
            pad_token: pad_token.to_string(),
        }));
        Ok(Self {
            tokenizer,
            folder: folder.to_path_buf(),
        })
    }

    /// Tokenizes `prompts`: special tokens added, each truncated and padded to `max_length`.
    pub fn encode(&self, prompts: &[&str]) -> Result<Tokens, TokenizerError> {
        let encodings = self
            .tokenizer
            .encode_batch(prompts.to_vec(), true)
            .map_err(|e| TokenizerError::Encode {
                folder: self.folder.clone(),
                message: e.to_string(),
            })?;
        Ok(Tokens {
            ids: encodings.iter().map(|e| e.get_ids().to_vec()).collect(),
            mask: encodings
                .iter()
                .map(|e| e.get_attention_mask().to_vec())
                .collect(),
        })
    }

    /// The number of tokens of `text`, special tokens included, neither truncated nor padded.
    pub fn count_tokens(&self, text: &str) -> Result<usize, TokenizerError> {
        let mut unpadded = self.tokenizer.clone();
        unpadded.with_padding(None);
        let unpadded = unpadded
            .with_truncation(None)
            .map_err(|e| self.encode_error(e))?;
        let encoding = unpadded
            .encode(text, true)
            .map_err(|e| self.encode_error(e))?;
        Ok(encoding.len())
    }

    fn encode_error(&self, e: impl ToString) -> TokenizerError {
        TokenizerError::Encode {
            folder: self.folder.clone(),
            message: e.to_string(),
        }
    }

    /// The id of `token`, if it is in the vocabulary.
    pub fn token_to_id(&self, token: &str) -> Option<u32> {
        self.tokenizer.token_to_id(token)
    }
}

/// The tokenizer of the `tokenizer.json` file at `path`.
fn load_json(path: &Path) -> Result<Tokenizer, TokenizerError> {
    let fail = |message: String| TokenizerError::Load {
        path: path.to_path_buf(),
        message,
    };
    let text = std::fs::read_to_string(path).map_err(|e| fail(e.to_string()))?;
    // The JSON's syntax is checked first: tokenizers 0.22 panics (an `expect` in its decoder's
    // deserializer) on a syntax error inside the `decoder` section instead of failing.
    serde_json::from_str::<serde::de::IgnoredAny>(&text).map_err(|e| fail(e.to_string()))?;
    text.parse::<Tokenizer>().map_err(|e| fail(e.to_string()))
}

/// transformers' `CLIPTokenizer` built from `vocab.json` and `merges.txt` in `folder`.
fn clip_from_vocab(folder: &Path) -> Result<Tokenizer, TokenizerError> {
    let [bos, eos, unk, pad] = CLIP_SPECIALS.map(|s| special_token(folder, s));
    let (bos, eos, unk, pad) = (bos?, eos?, unk?, pad?);
    let (vocab, merges) = (folder.join("vocab.json"), folder.join("merges.txt"));
    for file in [&vocab, &merges] {
        if !file.is_file() {
            return Err(TokenizerError::Load {
                path: file.clone(),
                message: "no such file (and no tokenizer.json beside it)".to_string(),
            });
        }
    }
    let load_error = |message: String| TokenizerError::Load {
        path: vocab.clone(),
        message: format!("with {}: {message}", merges.display()),
    };
    let bpe = BPE::from_file(&vocab.to_string_lossy(), &merges.to_string_lossy())
        .unk_token(unk.clone())
        .continuing_subword_prefix(String::new())
        .end_of_word_suffix("</w>".to_string())
        .fuse_unk(false)
        .build()
        .map_err(|e| load_error(e.to_string()))?;
    let normalizer = NormalizerSequence::new(vec![
        NFC.into(),
        Replace::new(ReplacePattern::Regex(r"\s+".to_string()), " ")
            .map_err(|e| load_error(e.to_string()))?
            .into(),
        Lowercase.into(),
    ]);
    let split = Split::new(
        SplitPattern::Regex(CLIP_SPLIT.to_string()),
        SplitDelimiterBehavior::Removed,
        true,
    )
    .map_err(|e| load_error(e.to_string()))?;
    let pre_tokenizer =
        PreTokenizerSequence::new(vec![split.into(), ByteLevel::new(false, true, true).into()]);

    let mut tokenizer = Tokenizer::new(bpe);
    tokenizer
        .with_normalizer(Some(normalizer))
        .map_err(|e| load_error(e.to_string()))?
        .with_pre_tokenizer(Some(pre_tokenizer));
    let specials: Vec<AddedToken> = [&bos, &eos, &unk, &pad]
        .into_iter()
        .map(|t| AddedToken::from(t.clone(), true))
        .collect();
    tokenizer
        .add_special_tokens(specials)
        .map_err(|e| load_error(e.to_string()))?;
    let id = |role: &'static str, token: &str| {
        tokenizer
            .token_to_id(token)
            .ok_or_else(|| TokenizerError::MissingToken {
                folder: folder.to_path_buf(),
                role,
                token: token.to_string(),
            })
    };
    let post = RobertaProcessing::new(
        (eos.clone(), id("eos", &eos)?),
        (bos.clone(), id("bos", &bos)?),
    )
    .trim_offsets(false)
    .add_prefix_space(false);
    tokenizer.with_post_processor(Some(post));
    Ok(tokenizer)
}

/// The special token `name` (`"pad_token"`, ...) from `tokenizer_config.json`, else
/// `special_tokens_map.json`, else `default`. Values are strings or `{"content": ...}`.
fn special_token(folder: &Path, (name, default): (&str, &str)) -> Result<String, TokenizerError> {
    for file in ["tokenizer_config.json", "special_tokens_map.json"] {
        let path = folder.join(file);
        if !path.is_file() {
            continue;
        }
        let config: Value = read_json(&path)?;
        let token = match config.get(name) {
            Some(Value::String(s)) => Some(s.clone()),
            Some(Value::Object(o)) => o.get("content").and_then(Value::as_str).map(str::to_string),
            _ => None,
        };
        if let Some(token) = token {
            return Ok(token);
        }
    }
    Ok(default.to_string())
}
