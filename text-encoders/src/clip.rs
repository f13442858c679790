//! The CLIP text encoder: transformers' `CLIPTextModel`, as FLUX (`text_encoder/`) and
//! HunyuanVideo (`text_encoder_2/`) ship it.
//!
//! Token and position embeddings, pre-LN transformer layers with causal self-attention, a final
//! layer norm, and a pooled output taken at the end-of-text token.

use std::path::Path;

use burn::{
    module::{Module, Param},
    tensor::{Bool, Int, Tensor, TensorData, backend::Backend, module::embedding},
};
use dit_layers::{
    Component, FromParams, LayerNorm, Linear, LoadError, MlpActivation, ModelParams, ParamSource,
    attention,
};
use serde::Deserialize;

use crate::{InputError, error::config_error, input::host_ids};

/// The settings of transformers' `CLIPTextConfig` the text encoder uses (`config.json`).
#[derive(Debug, Clone, Deserialize)]
pub struct ClipTextConfig {
    /// Vocabulary size (49408 for CLIP-L).
    pub vocab_size: usize,
    /// Width of the hidden states (768 for CLIP-L).
    pub hidden_size: usize,
    /// Width of the MLP (3072 for CLIP-L).
    pub intermediate_size: usize,
    /// Number of encoder layers.
    pub num_hidden_layers: usize,
    /// Attention heads per layer.
    pub num_attention_heads: usize,
    /// Number of learned positions (77).
    pub max_position_embeddings: usize,
    /// MLP activation, a transformers name (`"quick_gelu"` for OpenAI CLIP).
    #[serde(default = "ClipTextConfig::default_hidden_act")]
    pub hidden_act: String,
    /// Epsilon of every layer norm.
    #[serde(default = "ClipTextConfig::default_layer_norm_eps")]
    pub layer_norm_eps: f64,
    /// End-of-text id; the legacy value 2 (OpenAI configs) means "pool at the largest id".
    #[serde(default = "ClipTextConfig::default_eos_token_id")]
    pub eos_token_id: i64,
}

impl ClipTextConfig {
    // Defaults of transformers' `CLIPTextConfig`.
    fn default_hidden_act() -> String {
        "quick_gelu".to_string()
    }
    fn default_layer_norm_eps() -> f64 {
        1e-5
    }
    fn default_eos_token_id() -> i64 {
        49407
    }

    /// The MLP activation, or an error naming `path` (where the configuration came from) when
    /// the configuration describes no valid model.
    fn validate(&self, path: &Path) -> Result<MlpActivation, LoadError> {
        if self.num_attention_heads == 0
            || !self.hidden_size.is_multiple_of(self.num_attention_heads)
        {
            return Err(config_error(
                path,
                format!(
                    "hidden_size {} is not a multiple of num_attention_heads {}",
                    self.hidden_size, self.num_attention_heads
                ),
            ));
        }
        MlpActivation::from_transformers_name(&self.hidden_act).ok_or_else(|| {
            config_error(
                path,
                format!(
                    "hidden_act {:?} is not supported (one of {:?})",
                    self.hidden_act,
                    MlpActivation::TRANSFORMERS_NAMES
                ),
            )
        })
    }
}

/// Where the pooled output is read: transformers' rule for `eos_token_id`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EosRule {
    /// Legacy configs (`eos_token_id == 2`): the position of the largest id (CLIP's end-of-text
    /// token is the last of the vocabulary); the first one on ties.
    LargestId,
    /// The first position holding this id.
    FirstOf(i64),
}

impl EosRule {
    fn from_config(eos_token_id: i64) -> Self {
        if eos_token_id == 2 {
            Self::LargestId
        } else {
            Self::FirstOf(eos_token_id)
        }
    }

    /// The pooled position in `ids`; the first position when no token matches, as
    /// `argmax` over all-zero matches gives in transformers.
    pub fn position(self, ids: &[i64]) -> usize {
        let first_max = |keys: &mut dyn Iterator<Item = i64>| {
            let mut best = (0, i64::MIN);
            for (i, key) in keys.enumerate() {
                if key > best.1 {
                    best = (i, key);
                }
            }
            best.0
        };
        match self {
            Self::LargestId => first_max(&mut ids.iter().copied()),
            Self::FirstOf(eos) => first_max(&mut ids.iter().map(|&id| i64::from(id == eos))),
        }
    }
}

/// `embeddings`: token plus learned position embeddings.
#[derive(Module, Debug)]
pub struct ClipTextEmbeddings<B: Backend> {
    /// `token_embedding.weight` `[vocab_size, hidden]`.
    pub token_embedding: Param<Tensor<B, 2>>,
    /// `position_embedding.weight` `[max_position_embeddings, hidden]`.
    pub position_embedding: Param<Tensor<B, 2>>,
}

impl<B: Backend> ClipTextEmbeddings<B> {
    fn new(src: &ModelParams<'_, B>, c: &ClipTextConfig) -> Result<Self, LoadError> {
        let table = |name: &str, rows| {
            src.embedding(name, rows, c.hidden_size)
                .map(Param::from_tensor)
        };
        Ok(Self {
            token_embedding: table("token_embedding", c.vocab_size)?,
            position_embedding: table("position_embedding", c.max_position_embeddings)?,
        })
    }

    /// `[batch, seq]` ids (seq within the positions) to `[batch, seq, hidden]`.
    pub fn forward(&self, ids: Tensor<B, 2, Int>) -> Tensor<B, 3> {
        let seq = ids.dims()[1];
        let tokens = embedding(self.token_embedding.val(), ids);
        let positions = self.position_embedding.val().narrow(0, 0, seq);
        tokens + positions.unsqueeze()
    }
}

/// `self_attn`: multi-head attention with biased `q_proj`, `k_proj`, `v_proj`, `out_proj`.
#[derive(Module, Debug)]
pub struct ClipAttention<B: Backend> {
    /// Query projection.
    pub q_proj: Linear<B>,
    /// Key projection.
    pub k_proj: Linear<B>,
    /// Value projection.
    pub v_proj: Linear<B>,
    /// Output projection.
    pub out_proj: Linear<B>,
    /// Number of heads.
    pub heads: usize,
}

impl<B: Backend> ClipAttention<B> {
    fn new(src: &ModelParams<'_, B>, c: &ClipTextConfig) -> Result<Self, LoadError> {
        let d = c.hidden_size;
        let proj = |name: &str| src.linear(name, d, d, true);
        Ok(Self {
            q_proj: proj("q_proj")?,
            k_proj: proj("k_proj")?,
            v_proj: proj("v_proj")?,
            out_proj: proj("out_proj")?,
            heads: c.num_attention_heads,
        })
    }

    /// `x` `[batch, seq, hidden]`, `mask` `[batch, heads, seq, seq]` (`true` = ignore) to
    /// `[batch, seq, hidden]`; scores scaled by `1/sqrt(head_dim)`.
    pub fn forward(&self, x: Tensor<B, 3>, mask: Tensor<B, 4, Bool>) -> Tensor<B, 3> {
        let [batch, seq, hidden] = x.dims();
        let split = |t: Tensor<B, 3>| {
            t.reshape([batch, seq, self.heads, hidden / self.heads])
                .swap_dims(1, 2)
        };
        let q = split(self.q_proj.forward(x.clone()));
        let k = split(self.k_proj.forward(x.clone()));
        let v = split(self.v_proj.forward(x));
        let out = attention(q, k, v, Some(mask))
            .swap_dims(1, 2)
            .reshape([batch, seq, hidden]);
        self.out_proj.forward(out)
    }
}

/// `mlp`: `fc2(act(fc1(x)))`.
#[derive(Module, Debug)]
pub struct ClipMlp<B: Backend> {
    /// `[hidden -> intermediate]`.
    pub fc1: Linear<B>,
    /// `[intermediate -> hidden]`.
    pub fc2: Linear<B>,
    /// The activation (`hidden_act`).
    #[module(skip)]
    pub act: MlpActivation,
}

impl<B: Backend> ClipMlp<B> {
    fn new(
        src: &ModelParams<'_, B>,
        c: &ClipTextConfig,
        act: MlpActivation,
    ) -> Result<Self, LoadError> {
        let (d, inner) = (c.hidden_size, c.intermediate_size);
        Ok(Self {
            fc1: src.linear("fc1", d, inner, true)?,
            fc2: src.linear("fc2", inner, d, true)?,
            act,
        })
    }

    /// `[batch, seq, hidden]` to `[batch, seq, hidden]`.
    pub fn forward(&self, x: Tensor<B, 3>) -> Tensor<B, 3> {
        self.fc2.forward(self.act.forward(self.fc1.forward(x)))
    }
}

/// `encoder.layers.N`: `x + attn(ln1(x))`, then `x + mlp(ln2(x))`.
#[derive(Module, Debug)]
pub struct ClipEncoderLayer<B: Backend> {
    /// Norm before attention.
    pub layer_norm1: LayerNorm<B>,
    /// Causal self-attention.
    pub self_attn: ClipAttention<B>,
    /// Norm before the MLP.
    pub layer_norm2: LayerNorm<B>,
    /// Feed-forward network.
    pub mlp: ClipMlp<B>,
}

impl<B: Backend> ClipEncoderLayer<B> {
    fn new(
        src: &ModelParams<'_, B>,
        c: &ClipTextConfig,
        act: MlpActivation,
    ) -> Result<Self, LoadError> {
        let norm = |name: &str| src.layer_norm(name, c.hidden_size, c.layer_norm_eps);
        Ok(Self {
            layer_norm1: norm("layer_norm1")?,
            self_attn: ClipAttention::new(&src.at("self_attn"), c)?,
            layer_norm2: norm("layer_norm2")?,
            mlp: ClipMlp::new(&src.at("mlp"), c, act)?,
        })
    }

    /// `[batch, seq, hidden]` to `[batch, seq, hidden]`; `mask` as in [`ClipAttention::forward`].
    pub fn forward(&self, x: Tensor<B, 3>, mask: Tensor<B, 4, Bool>) -> Tensor<B, 3> {
        let x = x.clone() + self.self_attn.forward(self.layer_norm1.forward(x), mask);
        x.clone() + self.mlp.forward(self.layer_norm2.forward(x))
    }
}

/// What the CLIP text encoder returns.
#[derive(Debug, Clone)]
pub struct ClipTextOutput<B: Backend> {
    /// Final hidden states after `final_layer_norm`, `[batch, seq, hidden]`.
    pub last_hidden_state: Tensor<B, 3>,
    /// `last_hidden_state` at the end-of-text position of each prompt, `[batch, hidden]`
    /// (transformers' `pooler_output`; FLUX's `pooled_prompt_embeds`).
    pub pooled: Tensor<B, 2>,
    /// The embeddings, then each layer's output (before the final norm): `num_hidden_layers + 1`
    /// tensors `[batch, seq, hidden]`, as transformers' `hidden_states` (clip skip reads these).
    pub hidden_states: Vec<Tensor<B, 3>>,
}

/// transformers' `CLIPTextModel`. Weight names follow the checkpoint, with or without the
/// `text_model.` prefix: `embeddings.token_embedding`, `encoder.layers.N.self_attn.q_proj`,
/// `final_layer_norm`.
#[derive(Module, Debug)]
pub struct ClipTextModel<B: Backend> {
    /// Token and position embeddings.
    pub embeddings: ClipTextEmbeddings<B>,
    /// `encoder.layers`.
    pub layers: Vec<ClipEncoderLayer<B>>,
    /// Norm of the last hidden state.
    pub final_layer_norm: LayerNorm<B>,
    /// Where the pooled output is read.
    #[module(skip)]
    pub eos: EosRule,
}

impl<B: Backend> FromParams<B> for ClipTextModel<B> {
    type Config = ClipTextConfig;

    /// Builds the model of `config` from `src` (the checkpoint's names, without `text_model.`);
    /// `source` names where the configuration came from in errors.
    fn from_params(
        config: &ClipTextConfig,
        src: &ModelParams<'_, B>,
        source: &Path,
    ) -> Result<Self, LoadError> {
        let act = config.validate(source)?;
        let layers = (0..config.num_hidden_layers)
            .map(|i| ClipEncoderLayer::new(&src.at("encoder.layers").at(i), config, act))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self {
            embeddings: ClipTextEmbeddings::new(&src.at("embeddings"), config)?,
            layers,
            final_layer_norm: src.layer_norm(
                "final_layer_norm",
                config.hidden_size,
                config.layer_norm_eps,
            )?,
            eos: EosRule::from_config(config.eos_token_id),
        })
    }
}

impl<B: Backend> ClipTextModel<B> {
    /// Loads a transformers folder (`config.json` + `model.safetensors` or shards), such as a
    /// FLUX pipeline's `text_encoder/`. Fails, naming the file and key, on a configuration or
    /// checkpoint that does not describe this model, including tensors the model does not use.
    pub fn load(dir: &Path, device: &B::Device) -> Result<Self, LoadError> {
        Component::open(dir)?
            .strip_prefix("text_model.")
            // Older checkpoints store the `position_ids` buffer, which transformers ignores.
            .build(device, |key| key == "embeddings.position_ids")
    }

    /// Encodes token ids `[batch, seq]` (from [`crate::PromptTokenizer::clip`]). Fails on
    /// empty or too long sequences and ids outside the vocabulary.
    pub fn forward(&self, ids: Tensor<B, 2, Int>) -> Result<ClipTextOutput<B>, InputError> {
        let [vocab, hidden] = self.embeddings.token_embedding.dims();
        let max = self.embeddings.position_embedding.dims()[0];
        let [batch, seq] = ids.dims();
        if seq > max {
            return Err(InputError::TooLong { len: seq, max });
        }
        let rows = host_ids(&ids, vocab)?;
        let device = ids.device();
        let heads = self.layers.first().map_or(1, |l| l.self_attn.heads);
        let causal = Tensor::<B, 2, Bool>::tril_mask([seq, seq], 0, &device)
            .unsqueeze::<4>()
            .expand([batch, heads, seq, seq]);

        let mut x = self.embeddings.forward(ids);
        let mut hidden_states = vec![x.clone()];
        for layer in &self.layers {
            x = layer.forward(x, causal.clone());
            hidden_states.push(x.clone());
        }
        let last_hidden_state = self.final_layer_norm.forward(x);

        let positions: Vec<i64> = rows
            .iter()
            .map(|row| self.eos.position(row) as i64)
            .collect();
        let index = Tensor::<B, 1, Int>::from_data(TensorData::new(positions, [batch]), &device)
            .reshape([batch, 1, 1])
            .expand([batch, 1, hidden]);
        let pooled = last_hidden_state
            .clone()
            .gather(1, index)
            .reshape([batch, hidden]);
        Ok(ClipTextOutput {
            last_hidden_state,
            pooled,
            hidden_states,
        })
    }
}
