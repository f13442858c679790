//! diffusers `WanTransformerBlock`: modulated self-attention with rotary embedding,
//! cross-attention to the text, modulated feed-forward network.

use burn::{
    module::{Module, Param},
    tensor::{Tensor, backend::Backend},
};
use dit_layers::{
    BlockKeys, FeedForward, LayerNorm, LoadError, MlpActivation, ModelParams, Modulation,
    ParamSource, RopeTable,
};

use crate::{WanAttention, condition::BLOCK_MODULATIONS};

/// One transformer block (`blocks.N`).
#[derive(Module, Debug)]
pub struct WanTransformerBlock<B: Backend> {
    /// `norm1`: layer norm without affine parameters before self-attention.
    pub norm1: LayerNorm<B>,
    /// `attn1`: self-attention over the video tokens.
    pub attn1: WanAttention<B>,
    /// `norm2`: affine layer norm before cross-attention (`cross_attn_norm`), else none.
    pub norm2: Option<LayerNorm<B>>,
    /// `attn2`: cross-attention to the text tokens.
    pub attn2: WanAttention<B>,
    /// `norm3`: layer norm without affine parameters before the FFN.
    pub norm3: LayerNorm<B>,
    /// `ffn`: `FeedForward(dim, inner_dim=ffn_dim, activation_fn="gelu-approximate")`.
    pub ffn: FeedForward<B>,
    /// `scale_shift_table` `[1, 6, dim]`, added to the call's `timestep_proj`.
    pub scale_shift_table: Param<Tensor<B, 3>>,
}

impl<B: Backend> WanTransformerBlock<B> {
    /// Builds the block from `src`.
    pub fn new(
        src: &ModelParams<'_, B>,
        heads: usize,
        head_dim: usize,
        ffn_dim: usize,
        cross_attn_norm: bool,
        eps: f64,
    ) -> Result<Self, LoadError> {
        let dim = heads * head_dim;
        Ok(Self {
            norm1: LayerNorm::plain(eps),
            attn1: WanAttention::new(&src.at("attn1"), heads, head_dim, eps)?,
            norm2: cross_attn_norm
                .then(|| src.layer_norm("norm2", dim, eps))
                .transpose()?,
            attn2: WanAttention::new(&src.at("attn2"), heads, head_dim, eps)?,
            norm3: LayerNorm::plain(eps),
            ffn: FeedForward::new(&src.at("ffn"), dim, ffn_dim, MlpActivation::GeluTanh)?,
            scale_shift_table: Param::from_tensor(
                src.parameter("scale_shift_table", [1, BLOCK_MODULATIONS, dim])?,
            ),
        })
    }

    /// The attention and FFN modulations of `timestep_proj` `[batch, 6, dim]`.
    pub fn modulations(&self, timestep_proj: Tensor<B, 3>) -> [Modulation<B>; 2] {
        let [batch, rows, dim] = timestep_proj.dims();
        Modulation::split(
            (self.scale_shift_table.val() + timestep_proj).reshape([batch, rows * dim]),
        )
    }

    /// Runs the block on `x` `[batch, tokens, dim]` with the text `[batch, text_tokens, dim]`,
    /// the call's `timestep_proj` `[batch, 6, dim]`, the rotary table over the tokens and the
    /// self-attention's `keys` (its Sparse VideoGen).
    pub fn forward(
        &self,
        x: Tensor<B, 3>,
        text: Tensor<B, 3>,
        timestep_proj: Tensor<B, 3>,
        rope: &RopeTable<B>,
        keys: BlockKeys<'_>,
    ) -> Tensor<B, 3> {
        let [msa, ffn] = self.modulations(timestep_proj);
        let h = msa.norm_scale_shift(&self.norm1, x.clone());
        let x = msa.gated_add(x, self.attn1.forward(h.clone(), h, Some(rope), keys));
        let h = match &self.norm2 {
            Some(norm) => norm.forward(x.clone()),
            None => x.clone(),
        };
        let x = x + self.attn2.forward(h, text, None, BlockKeys::default());
        let h = ffn.norm_scale_shift(&self.norm3, x.clone());
        ffn.gated_add(x, self.ffn.forward(h))
    }
}
