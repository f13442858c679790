//! diffusers `HunyuanVideoTokenRefiner` (the `context_embedder`): projects the text encoder's
//! hidden states to the hidden size and refines them with a few self-attention blocks
//! conditioned on the timestep and the mean of the valid text tokens.

use burn::{
    module::Module,
    tensor::{Bool, Tensor, activation::silu, backend::Backend},
};
use dit_layers::{
    FeedForward, LayerNorm, Linear, LoadError, MlpActivation, ModelParams, ParamSource, QkvNames,
    QkvProjection, TimeTextEmbedding, attention, merge_heads, over_tokens, per_sample,
};

use crate::{HunyuanVideoConfig, text_mask::TextMask};

/// Epsilon of the refiner blocks' affine layer norms.
const REFINER_NORM_EPS: f64 = 1e-6;

/// diffusers `Attention` as the refiner uses it: self-attention with biased projections, no QK
/// normalisation, no rotary embedding, the text mask applied.
#[derive(Module, Debug)]
pub struct RefinerAttention<B: Backend> {
    /// `to_q`, `to_k`, `to_v`.
    pub qkv: QkvProjection<B>,
    /// `to_out.0` `[hidden -> hidden]`.
    pub to_out: Linear<B>,
}

impl<B: Backend> RefinerAttention<B> {
    fn new(src: &impl ParamSource<B>, heads: usize, head_dim: usize) -> Result<Self, LoadError> {
        let hidden = heads * head_dim;
        Ok(Self {
            qkv: QkvProjection::new(src, QkvNames::main(false), heads, head_dim)?,
            to_out: src.linear("to_out.0", hidden, hidden, true)?,
        })
    }

    /// Attention over `x` `[batch, tokens, hidden]` with `mask` `[batch, heads, tokens, tokens]`
    /// (`true` where a key is ignored).
    pub fn forward(&self, x: Tensor<B, 3>, mask: Tensor<B, 4, Bool>) -> Tensor<B, 3> {
        let h = self.qkv.forward(x);
        self.to_out
            .forward(merge_heads(attention(h.q, h.k, h.v, Some(mask))))
    }
}

/// diffusers `HunyuanVideoIndividualTokenRefinerBlock` (`refiner_blocks.N`): pre-norm
/// self-attention and SiLU MLP, each residual branch scaled by a gate from `temb`.
#[derive(Module, Debug)]
pub struct RefinerBlock<B: Backend> {
    /// `norm1`: affine layer norm before the attention.
    pub norm1: LayerNorm<B>,
    /// `attn`.
    pub attn: RefinerAttention<B>,
    /// `norm2`: affine layer norm before the MLP.
    pub norm2: LayerNorm<B>,
    /// `ff`: `FeedForward(activation_fn="linear-silu")`.
    pub ff: FeedForward<B>,
    /// `norm_out.linear` (`HunyuanVideoAdaNorm`) `[hidden -> 2 hidden]`: the two gates.
    pub norm_out: Linear<B>,
}

impl<B: Backend> RefinerBlock<B> {
    fn new(src: &ModelParams<'_, B>, config: &HunyuanVideoConfig) -> Result<Self, LoadError> {
        let hidden = config.hidden_size();
        let heads = config.num_attention_heads;
        Ok(Self {
            norm1: src.layer_norm("norm1", hidden, REFINER_NORM_EPS)?,
            attn: RefinerAttention::new(&src.at("attn"), heads, config.attention_head_dim)?,
            norm2: src.layer_norm("norm2", hidden, REFINER_NORM_EPS)?,
            ff: FeedForward::new(
                &src.at("ff"),
                hidden,
                config.refiner_mlp_dim(),
                MlpActivation::Silu,
            )?,
            norm_out: src.linear("norm_out.linear", hidden, 2 * hidden, true)?,
        })
    }

    /// Runs the block on `x` `[batch, tokens, hidden]` with conditioning `temb`
    /// `[batch, hidden]` and the refiner mask.
    pub fn forward(
        &self,
        x: Tensor<B, 3>,
        temb: Tensor<B, 2>,
        mask: Tensor<B, 4, Bool>,
    ) -> Tensor<B, 3> {
        let tokens = x.dims()[1];
        let gates = per_sample(silu(temb), |t| self.norm_out.forward(t));
        let mut gates = gates.chunk(2, 1).into_iter();
        let mut gate = || over_tokens(gates.next().expect("two gates"), tokens);
        let (gate_msa, gate_mlp) = (gate(), gate());
        let attn = self.attn.forward(self.norm1.forward(x.clone()), mask);
        let x = x + attn * gate_msa;
        let ff = self.ff.forward(self.norm2.forward(x.clone()));
        x + ff * gate_mlp
    }
}

/// diffusers `HunyuanVideoTokenRefiner`.
#[derive(Module, Debug)]
pub struct TokenRefiner<B: Backend> {
    /// `time_text_embed`: timestep + pooled-text conditioning of the refiner (no guidance).
    pub time_text_embed: TimeTextEmbedding<B>,
    /// `proj_in` `[text_embed_dim -> hidden]`.
    pub proj_in: Linear<B>,
    /// `token_refiner.refiner_blocks`.
    pub refiner_blocks: Vec<RefinerBlock<B>>,
}

impl<B: Backend> TokenRefiner<B> {
    /// Builds the refiner of `config` from `src` (the `context_embedder` module).
    pub fn new(src: &ModelParams<'_, B>, config: &HunyuanVideoConfig) -> Result<Self, LoadError> {
        let hidden = config.hidden_size();
        let blocks = src.at("token_refiner").at("refiner_blocks");
        Ok(Self {
            time_text_embed: TimeTextEmbedding::new(
                &src.at("time_text_embed"),
                hidden,
                config.text_embed_dim,
                false,
            )?,
            proj_in: src.linear("proj_in", config.text_embed_dim, hidden, true)?,
            refiner_blocks: (0..config.num_refiner_layers)
                .map(|i| RefinerBlock::new(&blocks.at(i), config))
                .collect::<Result<_, _>>()?,
        })
    }

    /// Refines `text` `[batch, tokens, text_embed_dim]` (valid tokens per `mask`) at timesteps
    /// `timestep` `[batch]` into `[batch, tokens, hidden]`. The pooled text is the mean of the
    /// valid tokens; the blocks attend as diffusers' refiner mask allows (valid queries see the
    /// valid keys, padded queries see the first token only).
    pub fn forward(
        &self,
        text: Tensor<B, 3>,
        timestep: Tensor<B, 1>,
        mask: &TextMask,
        heads: usize,
    ) -> Tensor<B, 3> {
        let device = text.device();
        let weights = mask.weights::<B>(&device).unsqueeze_dim::<3>(2);
        let pooled = (text.clone() * weights.clone())
            .sum_dim(1)
            .squeeze_dim::<2>(1)
            / weights.sum_dim(1).squeeze_dim::<2>(1);
        let temb = self.time_text_embed.forward(timestep, None, pooled);
        let attn_mask = mask.refiner_mask::<B>(heads, &device);
        let x = self.proj_in.forward(text);
        self.refiner_blocks.iter().fold(x, |x, block| {
            block.forward(x, temb.clone(), attn_mask.clone())
        })
    }
}
