//! The LLaMA text encoder: transformers' `LlamaModel`, as HunyuanVideo ships it in
//! `text_encoder/` (the text tower of llava-llama-3-8B).
//!
//! Token embeddings, pre-norm decoder layers of causal grouped-query self-attention with rotary
//! positions and a SiLU-gated MLP, RMS norms, and a final norm. Padding is masked out of the
//! keys as transformers combines the attention mask with the causal mask.

use std::path::Path;

use burn::{
    module::{Module, Param},
    tensor::{Bool, Int, Tensor, backend::Backend, module::embedding},
};
use dit_layers::{
    Component, FromParams, Linear, LoadError, MlpActivation, ModelParams, ParamSource, RmsNorm,
    RopeTable, attention,
};
use serde::Deserialize;

use crate::{
    InputError,
    error::config_error,
    input::{check_mask, host_ids},
    llama_rope::{Llama3Scaling, LlamaRope, LlamaRopeParameters},
};

/// The settings of transformers' `LlamaConfig` the model uses (`config.json`), as written by
/// transformers 4 (`rope_theta`, `rope_scaling`) or 5 (`rope_parameters`).
#[derive(Debug, Clone, Deserialize)]
pub struct LlamaConfig {
    /// Vocabulary size (128320 for HunyuanVideo's llava-llama-3-8B).
    pub vocab_size: usize,
    /// Width of the hidden states (4096).
    pub hidden_size: usize,
    /// Width of the MLP (14336).
    pub intermediate_size: usize,
    /// Number of decoder layers (32).
    pub num_hidden_layers: usize,
    /// Query heads per layer (32).
    pub num_attention_heads: usize,
    /// Key/value heads per layer (8); defaults to `num_attention_heads`.
    pub num_key_value_heads: Option<usize>,
    /// Width of one head; defaults to `hidden_size / num_attention_heads`.
    pub head_dim: Option<usize>,
    /// MLP activation, a transformers name (`"silu"`).
    #[serde(default = "LlamaConfig::default_hidden_act")]
    pub hidden_act: String,
    /// Epsilon of every RMS norm.
    #[serde(default = "LlamaConfig::default_rms_norm_eps")]
    pub rms_norm_eps: f64,
    /// Base of the rotary frequencies (transformers 4 files; 500000 for Llama 3).
    pub rope_theta: Option<f64>,
    /// Rotary scaling (transformers 4 files; absent for Llama 3, `"llama3"` for Llama 3.1).
    pub rope_scaling: Option<LlamaRopeParameters>,
    /// Rotary settings (transformers 5 files).
    pub rope_parameters: Option<LlamaRopeParameters>,
    /// Whether the attention projections have biases.
    #[serde(default)]
    pub attention_bias: bool,
    /// Whether the MLP projections have biases.
    #[serde(default)]
    pub mlp_bias: bool,
}

/// The shapes and functions a [`LlamaConfig`] describes, checked.
#[derive(Debug, Clone)]
struct Resolved {
    kv_heads: usize,
    head_dim: usize,
    act: MlpActivation,
    rope: LlamaRope,
}

impl LlamaConfig {
    // Defaults of transformers' `LlamaConfig`.
    fn default_hidden_act() -> String {
        "silu".to_string()
    }
    fn default_rms_norm_eps() -> f64 {
        1e-6
    }
    /// transformers' default `rope_theta` for LLaMA.
    const DEFAULT_ROPE_THETA: f64 = 10000.0;

    /// Checks the configuration, or an error naming `path` (where it came from).
    fn resolve(&self, path: &Path) -> Result<Resolved, LoadError> {
        let err = |message: String| config_error(path, message);
        let heads = self.num_attention_heads;
        let kv_heads = self.num_key_value_heads.unwrap_or(heads);
        if heads == 0 || kv_heads == 0 || !heads.is_multiple_of(kv_heads) {
            return Err(err(format!(
                "num_attention_heads {heads} is not a multiple of num_key_value_heads {kv_heads}"
            )));
        }
        let head_dim = match self.head_dim {
            Some(d) => d,
            None if self.hidden_size.is_multiple_of(heads) => self.hidden_size / heads,
            None => {
                return Err(err(format!(
                    "hidden_size {} is not a multiple of num_attention_heads {heads}",
                    self.hidden_size
                )));
            }
        };
        if head_dim == 0 || !head_dim.is_multiple_of(2) {
            return Err(err(format!("head_dim {head_dim} is not even")));
        }
        let act = MlpActivation::from_transformers_name(&self.hidden_act).ok_or_else(|| {
            err(format!(
                "hidden_act {:?} is not supported (one of {:?})",
                self.hidden_act,
                MlpActivation::TRANSFORMERS_NAMES
            ))
        })?;
        let params = self
            .rope_parameters
            .clone()
            .or_else(|| self.rope_scaling.clone())
            .unwrap_or_default();
        if params.partial_rotary_factor.is_some_and(|f| f != 1.0) {
            return Err(err(
                "partial_rotary_factor other than 1 is not supported".into()
            ));
        }
        let theta = params
            .rope_theta
            .or(self.rope_theta)
            .unwrap_or(Self::DEFAULT_ROPE_THETA);
        let scaling = match params.rope_type.as_deref().unwrap_or("default") {
            "default" => None,
            "llama3" => Some(Llama3Scaling::from_parameters(&params).map_err(err)?),
            other => {
                return Err(err(format!(
                    "rope type {other:?} is not supported (\"default\" or \"llama3\")"
                )));
            }
        };
        Ok(Resolved {
            kv_heads,
            head_dim,
            act,
            rope: LlamaRope::new(head_dim, theta, scaling),
        })
    }
}

/// `self_attn`: grouped-query attention; `num_key_value_heads` key/value heads each serve
/// `num_attention_heads / num_key_value_heads` query heads.
///
/// The checkpoint's `q_proj`/`k_proj` rotate channel `j` of a head with channel
/// `j + head_dim / 2`; their output channels are reordered here so that these pairs are
/// adjacent, `(2j, 2j + 1)`, the layout [`RopeTable`] rotates (and Meta's original layout).
/// Queries and keys are reordered alike, so their dot products are unchanged.
#[derive(Module, Debug)]
pub struct LlamaAttention<B: Backend> {
    /// Query projection `[hidden -> heads * head_dim]`, rows reordered per head.
    pub q_proj: Linear<B>,
    /// Key projection `[hidden -> kv_heads * head_dim]`, rows reordered per head.
    pub k_proj: Linear<B>,
    /// Value projection `[hidden -> kv_heads * head_dim]`.
    pub v_proj: Linear<B>,
    /// Output projection `[heads * head_dim -> hidden]`.
    pub o_proj: Linear<B>,
    /// Query heads.
    pub heads: usize,
    /// Key/value heads.
    pub kv_heads: usize,
    /// Width of one head.
    pub head_dim: usize,
}

impl<B: Backend> LlamaAttention<B> {
    fn new(src: &ModelParams<'_, B>, c: &LlamaConfig, r: &Resolved) -> Result<Self, LoadError> {
        let (heads, kv_heads, d) = (c.num_attention_heads, r.kv_heads, r.head_dim);
        let bias = c.attention_bias;
        let proj = |name: &str, d_in, d_out| src.linear(name, d_in, d_out, bias);
        Ok(Self {
            q_proj: pair_halves(proj("q_proj", c.hidden_size, heads * d)?, heads, d),
            k_proj: pair_halves(proj("k_proj", c.hidden_size, kv_heads * d)?, kv_heads, d),
            v_proj: proj("v_proj", c.hidden_size, kv_heads * d)?,
            o_proj: proj("o_proj", heads * d, c.hidden_size)?,
            heads,
            kv_heads,
            head_dim: d,
        })
    }

    /// `x` `[batch, seq, hidden]` to `[batch, seq, hidden]`; `rope` for positions `0..seq`,
    /// `mask` `[batch, heads, seq, seq]` (`true` = ignore); scores scaled by `1/sqrt(head_dim)`.
    pub fn forward(
        &self,
        x: Tensor<B, 3>,
        rope: &RopeTable<B>,
        mask: Tensor<B, 4, Bool>,
    ) -> Tensor<B, 3> {
        let [batch, seq, _] = x.dims();
        let d = self.head_dim;
        let split =
            |t: Tensor<B, 3>, heads: usize| t.reshape([batch, seq, heads, d]).swap_dims(1, 2);
        let q = rope.apply(split(self.q_proj.forward(x.clone()), self.heads));
        let k = rope.apply(split(self.k_proj.forward(x.clone()), self.kv_heads));
        let v = split(self.v_proj.forward(x), self.kv_heads);
        let groups = self.heads / self.kv_heads;
        let out = attention(q, repeat_kv(k, groups), repeat_kv(v, groups), Some(mask))
            .swap_dims(1, 2)
            .reshape([batch, seq, self.heads * d]);
        self.o_proj.forward(out)
    }
}

/// Reorders each head's output channels of `proj` from halves (`j` with `j + head_dim / 2`) to
/// adjacent pairs (`2j`, `2j + 1`).
fn pair_halves<B: Backend>(proj: Linear<B>, heads: usize, head_dim: usize) -> Linear<B> {
    let half = head_dim / 2;
    let order: Vec<usize> = (0..heads)
        .flat_map(|h| (0..half).flat_map(move |j| [h * head_dim + j, h * head_dim + half + j]))
        .collect();
    proj.reorder_outputs(&order)
}

/// Each of the `[batch, kv_heads, seq, head_dim]` heads repeated `groups` times in a row:
/// `[batch, kv_heads * groups, seq, head_dim]` (transformers' `repeat_kv`).
fn repeat_kv<B: Backend>(x: Tensor<B, 4>, groups: usize) -> Tensor<B, 4> {
    if groups == 1 {
        return x;
    }
    let [batch, kv_heads, seq, d] = x.dims();
    x.unsqueeze_dim::<5>(2)
        .expand([batch, kv_heads, groups, seq, d])
        .reshape([batch, kv_heads * groups, seq, d])
}

/// `mlp`: `down_proj(act(gate_proj(x)) * up_proj(x))`.
#[derive(Module, Debug)]
pub struct LlamaMlp<B: Backend> {
    /// `[hidden -> intermediate]`, activated.
    pub gate_proj: Linear<B>,
    /// `[hidden -> intermediate]`.
    pub up_proj: Linear<B>,
    /// `[intermediate -> hidden]`.
    pub down_proj: Linear<B>,
    /// The activation (`hidden_act`).
    #[module(skip)]
    pub act: MlpActivation,
}

impl<B: Backend> LlamaMlp<B> {
    fn new(
        src: &ModelParams<'_, B>,
        c: &LlamaConfig,
        act: MlpActivation,
    ) -> Result<Self, LoadError> {
        let (d, inner, bias) = (c.hidden_size, c.intermediate_size, c.mlp_bias);
        Ok(Self {
            gate_proj: src.linear("gate_proj", d, inner, bias)?,
            up_proj: src.linear("up_proj", d, inner, bias)?,
            down_proj: src.linear("down_proj", inner, d, bias)?,
            act,
        })
    }

    /// `[batch, seq, hidden]` to `[batch, seq, hidden]`.
    pub fn forward(&self, x: Tensor<B, 3>) -> Tensor<B, 3> {
        let gate = self.act.forward(self.gate_proj.forward(x.clone()));
        self.down_proj.forward(gate * self.up_proj.forward(x))
    }
}

/// `layers.N`: `x + attn(norm(x))`, then `x + mlp(norm(x))`.
#[derive(Module, Debug)]
pub struct LlamaDecoderLayer<B: Backend> {
    /// Norm before attention.
    pub input_layernorm: RmsNorm<B>,
    /// Causal self-attention.
    pub self_attn: LlamaAttention<B>,
    /// Norm before the MLP.
    pub post_attention_layernorm: RmsNorm<B>,
    /// Gated feed-forward network.
    pub mlp: LlamaMlp<B>,
}

impl<B: Backend> LlamaDecoderLayer<B> {
    fn new(src: &ModelParams<'_, B>, c: &LlamaConfig, r: &Resolved) -> Result<Self, LoadError> {
        let norm = |name: &str| src.rms_norm(name, c.hidden_size, c.rms_norm_eps);
        Ok(Self {
            input_layernorm: norm("input_layernorm")?,
            self_attn: LlamaAttention::new(&src.at("self_attn"), c, r)?,
            post_attention_layernorm: norm("post_attention_layernorm")?,
            mlp: LlamaMlp::new(&src.at("mlp"), c, r.act)?,
        })
    }

    /// `[batch, seq, hidden]` to `[batch, seq, hidden]`; `rope` and `mask` as in
    /// [`LlamaAttention::forward`].
    pub fn forward(
        &self,
        x: Tensor<B, 3>,
        rope: &RopeTable<B>,
        mask: Tensor<B, 4, Bool>,
    ) -> Tensor<B, 3> {
        let h = self
            .self_attn
            .forward(self.input_layernorm.forward(x.clone()), rope, mask);
        let x = x + h;
        x.clone() + self.mlp.forward(self.post_attention_layernorm.forward(x))
    }
}

/// What the LLaMA model returns.
#[derive(Debug, Clone)]
pub struct LlamaOutput<B: Backend> {
    /// Output of the final norm, `[batch, seq, hidden]`.
    pub last_hidden_state: Tensor<B, 3>,
    /// transformers' `hidden_states`: the embeddings, the outputs of every layer but the last,
    /// and `last_hidden_state` (the last layer's output after the final norm):
    /// `num_hidden_layers + 1` tensors `[batch, seq, hidden]`.
    pub hidden_states: Vec<Tensor<B, 3>>,
}

/// transformers' `LlamaModel`. Weight names follow the checkpoint, with or without the
/// `model.` prefix: `embed_tokens`, `layers.N.self_attn.q_proj`, `layers.N.mlp.gate_proj`,
/// `layers.N.input_layernorm`, `norm`.
#[derive(Module, Debug)]
pub struct LlamaModel<B: Backend> {
    /// `embed_tokens.weight` `[vocab_size, hidden]`.
    pub embed_tokens: Param<Tensor<B, 2>>,
    /// Decoder layers.
    pub layers: Vec<LlamaDecoderLayer<B>>,
    /// Final norm.
    pub norm: RmsNorm<B>,
    /// Rotary frequencies.
    #[module(skip)]
    pub rope: LlamaRope,
}

impl<B: Backend> FromParams<B> for LlamaModel<B> {
    type Config = LlamaConfig;

    /// Builds the model of `config` from `src` (the checkpoint's names, without `model.`);
    /// `source` names where the configuration came from in errors.
    fn from_params(
        config: &LlamaConfig,
        src: &ModelParams<'_, B>,
        source: &Path,
    ) -> Result<Self, LoadError> {
        let resolved = config.resolve(source)?;
        let layers = (0..config.num_hidden_layers)
            .map(|i| LlamaDecoderLayer::new(&src.at("layers").at(i), config, &resolved))
            .collect::<Result<Vec<_>, _>>()?;
        let embed_tokens = src.embedding("embed_tokens", config.vocab_size, config.hidden_size)?;
        Ok(Self {
            embed_tokens: Param::from_tensor(embed_tokens),
            layers,
            norm: src.rms_norm("norm", config.hidden_size, config.rms_norm_eps)?,
            rope: resolved.rope,
        })
    }
}

impl<B: Backend> LlamaModel<B> {
    /// Loads a transformers folder (`config.json` + `model.safetensors` or shards), such as
    /// HunyuanVideo's `text_encoder/`. Fails, naming the file and key, on a configuration or
    /// checkpoint that does not describe this model, including tensors the model does not use.
    pub fn load(dir: &Path, device: &B::Device) -> Result<Self, LoadError> {
        Component::open(dir)?
            .strip_prefix("model.")
            .build(device, |_| false)
    }

    /// Runs token ids `[batch, seq]` with `mask` `[batch, seq]` (1 = token, 0 = padding, as the
    /// tokenizer returns it) and returns every hidden state, as transformers'
    /// `output_hidden_states=True`. Positions are `0..seq` whatever the padding, as in
    /// transformers; a query whose keys are all padding (only with left padding) gets zeros
    /// from attention. Fails on empty sequences, ids outside the vocabulary and a mask of
    /// another shape.
    pub fn forward(
        &self,
        ids: Tensor<B, 2, Int>,
        mask: Tensor<B, 2, Int>,
    ) -> Result<LlamaOutput<B>, InputError> {
        let hidden_states = self.run(ids, mask, self.layers.len(), true)?;
        let last_hidden_state = hidden_states[self.layers.len()].clone();
        Ok(LlamaOutput {
            last_hidden_state,
            hidden_states,
        })
    }

    /// transformers' `hidden_states[index]` for `index <= num_hidden_layers` (larger indices
    /// give the last), running only the layers it needs: the embeddings for 0, the output of
    /// layer `index - 1` below `num_hidden_layers`, the final norm's output at it. Inputs and
    /// errors as in [`LlamaModel::forward`].
    pub fn hidden_state(
        &self,
        ids: Tensor<B, 2, Int>,
        mask: Tensor<B, 2, Int>,
        index: usize,
    ) -> Result<Tensor<B, 3>, InputError> {
        let mut states = self.run(ids, mask, index.min(self.layers.len()), false)?;
        Ok(states.remove(0))
    }

    /// The hidden states `0..=last` when `keep_all`, else only state `last`.
    fn run(
        &self,
        ids: Tensor<B, 2, Int>,
        mask: Tensor<B, 2, Int>,
        last: usize,
        keep_all: bool,
    ) -> Result<Vec<Tensor<B, 3>>, InputError> {
        check_mask(&ids, &mask)?;
        let [vocab, _] = self.embed_tokens.dims();
        host_ids(&ids, vocab)?;
        let [batch, seq] = ids.dims();
        let device = ids.device();
        let heads = self.layers.first().map_or(1, |l| l.self_attn.heads);
        let causal = Tensor::<B, 2, Bool>::tril_mask([seq, seq], 0, &device)
            .unsqueeze::<4>()
            .expand([batch, 1, seq, seq]);
        let padding = mask
            .equal_elem(0)
            .reshape([batch, 1, 1, seq])
            .expand([batch, 1, seq, seq]);
        let mask = causal.bool_or(padding).expand([batch, heads, seq, seq]);
        let rope = self.rope.table::<B>(seq, &device);

        let mut x = embedding(self.embed_tokens.val(), ids);
        let mut states = Vec::new();
        for (i, layer) in self.layers.iter().enumerate().take(last) {
            if keep_all {
                states.push(x.clone());
            }
            x = layer.forward(x, &rope, mask.clone());
            if i + 1 == self.layers.len() {
                x = self.norm.forward(x);
            }
        }
        states.push(x);
        Ok(states)
    }
}
