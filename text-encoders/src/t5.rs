//! The T5 encoder: transformers' `T5EncoderModel` (FLUX's `text_encoder_2/`, T5 v1.1 XXL) and
//! `UMT5EncoderModel` (WAN's `text_encoder/`, umT5 XXL).
//!
//! A shared token embedding, pre-norm blocks of self-attention and a feed-forward network with
//! T5's RMS layer norm, attention scores without `1/sqrt(d)` scaling plus a learned relative
//! position bias: T5 learns one bias table (block 0) shared by every block, umT5 one per block.

use std::path::Path;

use burn::{
    module::{Module, Param},
    tensor::{Bool, Int, Tensor, TensorData, backend::Backend, module::embedding},
};
use dit_layers::{
    Component, FromParams, Linear, LoadError, MlpActivation, ModelParams, ParamSource, RmsNorm,
    Weights, attention_with_bias, read_config,
};
use serde::Deserialize;

use crate::{
    InputError, LlamaCppT5Layout, T5_GGUF_ARCHITECTURE,
    error::config_error,
    input::{check_mask, host_ids},
};

/// The settings of transformers' `T5Config`/`UMT5Config` the encoder uses (`config.json`).
#[derive(Debug, Clone, Deserialize)]
pub struct T5Config {
    /// `"t5"` or `"umt5"`.
    #[serde(default = "T5Config::default_model_type")]
    pub model_type: String,
    /// Vocabulary size.
    pub vocab_size: usize,
    /// Width of the hidden states (4096 for XXL).
    pub d_model: usize,
    /// Width of one attention head (64).
    pub d_kv: usize,
    /// Width of the feed-forward network (10240 for XXL).
    pub d_ff: usize,
    /// Number of encoder blocks.
    pub num_layers: usize,
    /// Attention heads per block.
    pub num_heads: usize,
    /// Relative position buckets (32).
    #[serde(default = "T5Config::default_num_buckets")]
    pub relative_attention_num_buckets: usize,
    /// Distance from which all relative positions share a bucket (128).
    #[serde(default = "T5Config::default_max_distance")]
    pub relative_attention_max_distance: usize,
    /// Epsilon of every layer norm.
    #[serde(default = "T5Config::default_layer_norm_epsilon")]
    pub layer_norm_epsilon: f64,
    /// `"{act}"` or `"gated-{act}"`; `"gated-gelu"` means the tanh GELU (`gelu_new`). Defaults
    /// to `"relu"` for T5 and `"gated-gelu"` for umT5, as transformers does.
    pub feed_forward_proj: Option<String>,
}

/// Which of the two architectures a [`T5Config`] describes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum T5Variant {
    /// T5: the relative position bias of block 0 serves every block.
    T5,
    /// umT5: every block has its own relative position bias.
    Umt5,
}

/// The feed-forward network a `feed_forward_proj` describes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct FeedForwardKind {
    gated: bool,
    act: MlpActivation,
}

impl T5Config {
    // Defaults of transformers' `T5Config`.
    fn default_model_type() -> String {
        "t5".to_string()
    }
    fn default_num_buckets() -> usize {
        32
    }
    fn default_max_distance() -> usize {
        128
    }
    fn default_layer_norm_epsilon() -> f64 {
        1e-6
    }

    /// The variant, from `model_type`.
    pub fn variant(&self, path: &Path) -> Result<T5Variant, LoadError> {
        match self.model_type.as_str() {
            "t5" => Ok(T5Variant::T5),
            "umt5" => Ok(T5Variant::Umt5),
            other => Err(config_error(
                path,
                format!("model_type {other:?} is neither \"t5\" nor \"umt5\""),
            )),
        }
    }

    /// `feed_forward_proj` parsed as transformers does (`gated-gelu` is the tanh GELU).
    fn feed_forward(&self, variant: T5Variant, path: &Path) -> Result<FeedForwardKind, LoadError> {
        let proj = match (&self.feed_forward_proj, variant) {
            (Some(p), _) => p.as_str(),
            (None, T5Variant::T5) => "relu",
            (None, T5Variant::Umt5) => "gated-gelu",
        };
        let (gated, name) = match proj.split('-').collect::<Vec<_>>().as_slice() {
            [act] => (false, *act),
            ["gated", act] => (true, if *act == "gelu" { "gelu_new" } else { *act }),
            _ => {
                return Err(config_error(
                    path,
                    format!("feed_forward_proj {proj:?} is not \"{{act}}\" or \"gated-{{act}}\""),
                ));
            }
        };
        let act = MlpActivation::from_transformers_name(name).ok_or_else(|| {
            config_error(
                path,
                format!(
                    "feed_forward_proj {proj:?}: activation {name:?} is not supported (one of {:?})",
                    MlpActivation::TRANSFORMERS_NAMES
                ),
            )
        })?;
        Ok(FeedForwardKind { gated, act })
    }
}

/// The bucket of a relative position `key - query` in a bidirectional (encoder) T5 attention
/// with `num_buckets` buckets: half for keys before the query and half after; in each half,
/// exact distances below a quarter of `num_buckets`, logarithmic bins up to `max_distance`
/// beyond. Computed in f32 like transformers' `_relative_position_bucket`, so bin edges match.
pub fn relative_position_bucket(
    relative_position: i64,
    num_buckets: usize,
    max_distance: usize,
) -> usize {
    let half = num_buckets / 2;
    let offset = if relative_position > 0 { half } else { 0 };
    let distance = relative_position.unsigned_abs() as usize;
    let max_exact = half / 2;
    if distance < max_exact {
        return offset + distance;
    }
    let log_ratio = (distance as f32 / max_exact as f32).ln()
        / ((max_distance as f64 / max_exact as f64).ln() as f32)
        * (half - max_exact) as f32;
    offset + (max_exact + log_ratio as usize).min(half - 1)
}

/// `SelfAttention`: projections `q`, `k`, `v`, `o` without bias, optionally with its own
/// `relative_attention_bias` table.
#[derive(Module, Debug)]
pub struct T5Attention<B: Backend> {
    /// `[d_model -> heads * d_kv]`.
    pub q: Linear<B>,
    /// `[d_model -> heads * d_kv]`.
    pub k: Linear<B>,
    /// `[d_model -> heads * d_kv]`.
    pub v: Linear<B>,
    /// `[heads * d_kv -> d_model]`.
    pub o: Linear<B>,
    /// `relative_attention_bias.weight` `[num_buckets, heads]`, in the blocks that have one.
    pub relative_attention_bias: Option<Param<Tensor<B, 2>>>,
    /// Number of heads.
    pub heads: usize,
    /// Buckets of the relative positions.
    pub num_buckets: usize,
    /// Distance from which relative positions share a bucket.
    pub max_distance: usize,
}

impl<B: Backend> T5Attention<B> {
    fn new(src: &ModelParams<'_, B>, c: &T5Config, has_bias: bool) -> Result<Self, LoadError> {
        let inner = c.num_heads * c.d_kv;
        let relative_attention_bias = if has_bias {
            let table = src.embedding(
                "relative_attention_bias",
                c.relative_attention_num_buckets,
                c.num_heads,
            )?;
            Some(Param::from_tensor(table))
        } else {
            None
        };
        Ok(Self {
            q: src.linear("q", c.d_model, inner, false)?,
            k: src.linear("k", c.d_model, inner, false)?,
            v: src.linear("v", c.d_model, inner, false)?,
            o: src.linear("o", inner, c.d_model, false)?,
            relative_attention_bias,
            heads: c.num_heads,
            num_buckets: c.relative_attention_num_buckets,
            max_distance: c.relative_attention_max_distance,
        })
    }

    /// This block's relative position bias for `seq` tokens, `[1, heads, seq, seq]`; `None` in
    /// blocks without a table.
    pub fn position_bias(&self, seq: usize, device: &B::Device) -> Option<Tensor<B, 4>> {
        let table = self.relative_attention_bias.as_ref()?;
        let buckets: Vec<i64> = (0..seq as i64)
            .flat_map(|query| {
                (0..seq as i64).map(move |key| {
                    relative_position_bucket(key - query, self.num_buckets, self.max_distance)
                        as i64
                })
            })
            .collect();
        let buckets = Tensor::<B, 2, Int>::from_data(TensorData::new(buckets, [seq, seq]), device);
        // [seq, seq, heads] -> [1, heads, seq, seq]
        Some(
            embedding(table.val(), buckets)
                .permute([2, 0, 1])
                .unsqueeze(),
        )
    }

    /// `x` `[batch, seq, d_model]` to `[batch, seq, d_model]`: `softmax(q kᵀ + bias) v`, with
    /// `bias` `[1, heads, seq, seq]` and `mask` `[batch, heads, seq, seq]` (`true` = padding).
    pub fn forward(
        &self,
        x: Tensor<B, 3>,
        bias: Option<Tensor<B, 4>>,
        mask: Option<Tensor<B, 4, Bool>>,
    ) -> Tensor<B, 3> {
        let [batch, seq, _] = x.dims();
        let split = |t: Tensor<B, 3>| {
            let inner = t.dims()[2];
            t.reshape([batch, seq, self.heads, inner / self.heads])
                .swap_dims(1, 2)
        };
        let q = split(self.q.forward(x.clone()));
        let k = split(self.k.forward(x.clone()));
        let v = split(self.v.forward(x));
        let bias = bias.map(|b| b.expand([batch, self.heads, seq, seq]));
        let out = attention_with_bias(q, k, v, mask, bias, 1.0).swap_dims(1, 2);
        let inner = out.dims()[2] * out.dims()[3];
        self.o.forward(out.reshape([batch, seq, inner]))
    }
}

/// `DenseReluDense`: `wo(act(wi(x)))`, or gated `wo(act(wi_0(x)) * wi_1(x))`.
#[derive(Module, Debug)]
pub struct T5DenseActDense<B: Backend> {
    /// `wi` (plain) or `wi_0` (gated): `[d_model -> d_ff]`, activated.
    pub wi: Linear<B>,
    /// `wi_1` (gated only): `[d_model -> d_ff]`, the linear factor.
    pub wi_1: Option<Linear<B>>,
    /// `[d_ff -> d_model]`.
    pub wo: Linear<B>,
    /// The activation.
    #[module(skip)]
    pub act: MlpActivation,
}

impl<B: Backend> T5DenseActDense<B> {
    fn new(
        src: &ModelParams<'_, B>,
        c: &T5Config,
        kind: FeedForwardKind,
    ) -> Result<Self, LoadError> {
        let up = |name: &str| src.linear(name, c.d_model, c.d_ff, false);
        let (wi, wi_1) = if kind.gated {
            (up("wi_0")?, Some(up("wi_1")?))
        } else {
            (up("wi")?, None)
        };
        Ok(Self {
            wi,
            wi_1,
            wo: src.linear("wo", c.d_ff, c.d_model, false)?,
            act: kind.act,
        })
    }

    /// `[batch, seq, d_model]` to `[batch, seq, d_model]`.
    pub fn forward(&self, x: Tensor<B, 3>) -> Tensor<B, 3> {
        let h = self.act.forward(self.wi.forward(x.clone()));
        let h = match &self.wi_1 {
            Some(wi_1) => h * wi_1.forward(x),
            None => h,
        };
        self.wo.forward(h)
    }
}

/// `encoder.block.N`: `x + SelfAttention(layer.0.layer_norm(x))`, then
/// `x + DenseReluDense(layer.1.layer_norm(x))`.
#[derive(Module, Debug)]
pub struct T5Block<B: Backend> {
    /// `layer.0.layer_norm`.
    pub attention_norm: RmsNorm<B>,
    /// `layer.0.SelfAttention`.
    pub attention: T5Attention<B>,
    /// `layer.1.layer_norm`.
    pub ff_norm: RmsNorm<B>,
    /// `layer.1.DenseReluDense`.
    pub ff: T5DenseActDense<B>,
}

impl<B: Backend> T5Block<B> {
    fn new(
        src: &ModelParams<'_, B>,
        c: &T5Config,
        has_bias: bool,
        ff: FeedForwardKind,
    ) -> Result<Self, LoadError> {
        let (attn, dense) = (src.at("layer.0"), src.at("layer.1"));
        let norm =
            |src: &ModelParams<'_, B>| src.rms_norm("layer_norm", c.d_model, c.layer_norm_epsilon);
        Ok(Self {
            attention_norm: norm(&attn)?,
            attention: T5Attention::new(&attn.at("SelfAttention"), c, has_bias)?,
            ff_norm: norm(&dense)?,
            ff: T5DenseActDense::new(&dense.at("DenseReluDense"), c, ff)?,
        })
    }

    /// `[batch, seq, d_model]` to `[batch, seq, d_model]`; `bias` and `mask` as in
    /// [`T5Attention::forward`].
    pub fn forward(
        &self,
        x: Tensor<B, 3>,
        bias: Option<Tensor<B, 4>>,
        mask: Option<Tensor<B, 4, Bool>>,
    ) -> Tensor<B, 3> {
        let x = x.clone()
            + self
                .attention
                .forward(self.attention_norm.forward(x), bias, mask);
        x.clone() + self.ff.forward(self.ff_norm.forward(x))
    }
}

/// What [`T5EncoderModel::forward_hidden_states`] returns.
#[derive(Debug, Clone)]
pub struct T5EncoderOutput<B: Backend> {
    /// Hidden states after `encoder.final_layer_norm`, `[batch, seq, d_model]`.
    pub last_hidden_state: Tensor<B, 3>,
    /// The embeddings, then each block's output (before the final norm): `num_layers + 1`
    /// tensors `[batch, seq, d_model]`.
    pub hidden_states: Vec<Tensor<B, 3>>,
}

/// transformers' `T5EncoderModel` / `UMT5EncoderModel`. Weight names follow the checkpoint:
/// `shared` (or `encoder.embed_tokens`), `encoder.block.N.layer.0.SelfAttention.q`,
/// `encoder.final_layer_norm`.
#[derive(Module, Debug)]
pub struct T5EncoderModel<B: Backend> {
    /// `shared.weight` `[vocab_size, d_model]`.
    pub shared: Param<Tensor<B, 2>>,
    /// `encoder.block`.
    pub block: Vec<T5Block<B>>,
    /// `encoder.final_layer_norm`.
    pub final_layer_norm: RmsNorm<B>,
}

/// The modules the tied token embedding is stored as; a checkpoint may hold either or both.
const EMBEDDING_MODULES: [&str; 2] = ["shared", "encoder.embed_tokens"];

/// Whether `key` is the alias of the embedding the model does not read: transformers' tied
/// copy.
fn tied_alias(key: &str) -> bool {
    EMBEDDING_MODULES
        .iter()
        .any(|m| key.strip_suffix(".weight") == Some(m))
}

impl<B: Backend> FromParams<B> for T5EncoderModel<B> {
    type Config = T5Config;

    /// Builds the model of `config` from `src` (the checkpoint's names); `source` names where
    /// the configuration came from in errors.
    fn from_params(
        config: &T5Config,
        src: &ModelParams<'_, B>,
        source: &Path,
    ) -> Result<Self, LoadError> {
        let variant = config.variant(source)?;
        let ff = config.feed_forward(variant, source)?;
        if config.num_heads == 0 || config.relative_attention_num_buckets < 4 {
            return Err(config_error(
                source,
                "num_heads must be positive and relative_attention_num_buckets at least 4",
            ));
        }
        let embedding = EMBEDDING_MODULES
            .into_iter()
            .find(|module| src.has(&format!("{module}.weight")))
            .unwrap_or(EMBEDDING_MODULES[0]);
        let shared = src.embedding(embedding, config.vocab_size, config.d_model)?;
        let blocks = src.at("encoder.block");
        let block = (0..config.num_layers)
            .map(|i| {
                let has_bias = i == 0 || variant == T5Variant::Umt5;
                T5Block::new(&blocks.at(i), config, has_bias, ff)
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self {
            shared: Param::from_tensor(shared),
            block,
            final_layer_norm: src.rms_norm(
                "encoder.final_layer_norm",
                config.d_model,
                config.layer_norm_epsilon,
            )?,
        })
    }
}

impl<B: Backend> T5EncoderModel<B> {
    /// Loads a transformers folder (`config.json` + `model.safetensors` or shards), such as a
    /// FLUX pipeline's `text_encoder_2/` or a WAN pipeline's `text_encoder/`. Fails, naming the
    /// file and key, on a configuration or checkpoint that does not describe this model,
    /// including tensors the model does not use.
    pub fn load(dir: &Path, device: &B::Device) -> Result<Self, LoadError> {
        Component::open(dir)?.build(device, tied_alias)
    }

    /// Loads the encoder that `config_dir`'s `config.json` describes (a pipeline's
    /// `text_encoder_2/` or `text_encoder/`) with its weights from the single file `file`
    /// instead: transformers' safetensors, or a llama.cpp `t5encoder` GGUF file (city96's
    /// T5-XXL and umT5-XXL conversions), whose matrices stay quantized in memory. A GGUF file of
    /// another model is an error naming both architectures.
    pub fn load_file(
        config_dir: &Path,
        file: &Path,
        device: &B::Device,
    ) -> Result<Self, LoadError> {
        let config_path = config_dir.join("config.json");
        let config: T5Config = read_config(&config_path)?;
        let weights = Weights::open(file)?;
        let model = if weights.architecture().is_some() {
            weights.check_architecture(T5_GGUF_ARCHITECTURE)?;
            let params = ModelParams::mapped(&weights, &LlamaCppT5Layout, device);
            Self::from_params(&config, &params, &config_path)?
        } else {
            let params = ModelParams::checkpoint(&weights, device);
            Self::from_params(&config, &params, &config_path)?
        };
        weights.check_all_used_except(tied_alias)?;
        Ok(model)
    }

    /// Encodes token ids `[batch, seq]` to `[batch, seq, d_model]`; `mask` `[batch, seq]` is 1
    /// for tokens and 0 for padding (FLUX passes none, WAN passes the tokenizer's). Fails on
    /// empty sequences, ids outside the vocabulary and a mask of another shape.
    pub fn forward(
        &self,
        ids: Tensor<B, 2, Int>,
        mask: Option<Tensor<B, 2, Int>>,
    ) -> Result<Tensor<B, 3>, InputError> {
        self.run(ids, mask, None)
    }

    /// As [`T5EncoderModel::forward`], also returning every block's output.
    pub fn forward_hidden_states(
        &self,
        ids: Tensor<B, 2, Int>,
        mask: Option<Tensor<B, 2, Int>>,
    ) -> Result<T5EncoderOutput<B>, InputError> {
        let mut hidden_states = Vec::with_capacity(self.block.len() + 1);
        let last_hidden_state = self.run(ids, mask, Some(&mut hidden_states))?;
        Ok(T5EncoderOutput {
            last_hidden_state,
            hidden_states,
        })
    }

    fn run(
        &self,
        ids: Tensor<B, 2, Int>,
        mask: Option<Tensor<B, 2, Int>>,
        mut keep: Option<&mut Vec<Tensor<B, 3>>>,
    ) -> Result<Tensor<B, 3>, InputError> {
        host_ids(&ids, self.shared.dims()[0])?;
        let [batch, seq] = ids.dims();
        let device = ids.device();
        let heads = self.block.first().map_or(1, |b| b.attention.heads);
        let mask = match mask {
            Some(mask) => {
                check_mask(&ids, &mask)?;
                let padding = mask.equal_elem(0).reshape([batch, 1, 1, seq]);
                Some(padding.expand([batch, heads, seq, seq]))
            }
            None => None,
        };

        let mut x = embedding(self.shared.val(), ids);
        let mut bias = None;
        for block in &self.block {
            if let Some(keep) = keep.as_deref_mut() {
                keep.push(x.clone());
            }
            // T5: block 0's bias serves every block; umT5: each block has its own.
            if let Some(own) = block.attention.position_bias(seq, &device) {
                bias = Some(own);
            }
            x = block.forward(x, bias.clone(), mask.clone());
        }
        if let Some(keep) = keep {
            keep.push(x.clone());
        }
        Ok(self.final_layer_norm.forward(x))
    }
}
