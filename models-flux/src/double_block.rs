//! diffusers `FluxTransformerBlock`: the double-stream (MM-DiT) block. Text and image tokens
//! keep separate weights but attend jointly.

use burn::{
    module::Module,
    tensor::{Tensor, backend::Backend},
};
use dit_layers::{
    ADALN_NORM_EPS, AdaLayerNormZero, FeedForward, LayerNorm, LoadError, MlpActivation,
    ParamSource, RopeTable,
};

use crate::{attention::JointAttention, config::MLP_RATIO};

/// One double-stream block (`transformer_blocks.N`).
#[derive(Module, Debug)]
pub struct FluxTransformerBlock<B: Backend> {
    /// `norm1`: modulation of the image stream.
    pub norm1: AdaLayerNormZero<B>,
    /// `norm1_context`: modulation of the text stream.
    pub norm1_context: AdaLayerNormZero<B>,
    /// `attn`: joint attention.
    pub attn: JointAttention<B>,
    /// `norm2`: parameter-free norm before the image MLP.
    pub norm2: LayerNorm<B>,
    /// `ff`: image MLP (`hidden -> 4 hidden`, GELU (tanh), `-> hidden`).
    pub ff: FeedForward<B>,
    /// `norm2_context`: parameter-free norm before the text MLP.
    pub norm2_context: LayerNorm<B>,
    /// `ff_context`: text MLP.
    pub ff_context: FeedForward<B>,
}

impl<B: Backend> FluxTransformerBlock<B> {
    /// Builds the block with `heads` heads of `head_dim` channels from `src`.
    pub fn new(
        src: &impl ParamSource<B>,
        heads: usize,
        head_dim: usize,
    ) -> Result<Self, LoadError> {
        let hidden = heads * head_dim;
        let inner = MLP_RATIO * hidden;
        Ok(Self {
            norm1: AdaLayerNormZero::new(&src.at("norm1"), hidden)?,
            norm1_context: AdaLayerNormZero::new(&src.at("norm1_context"), hidden)?,
            attn: JointAttention::new(&src.at("attn"), heads, head_dim)?,
            norm2: LayerNorm::plain(ADALN_NORM_EPS),
            ff: FeedForward::new(&src.at("ff"), hidden, inner, MlpActivation::GeluTanh)?,
            norm2_context: LayerNorm::plain(ADALN_NORM_EPS),
            ff_context: FeedForward::new(
                &src.at("ff_context"),
                hidden,
                inner,
                MlpActivation::GeluTanh,
            )?,
        })
    }

    /// Runs the block on `img` `[batch, img_tokens, hidden]` and `txt`
    /// `[batch, txt_tokens, hidden]` with conditioning `temb` `[batch, hidden]`; returns the new
    /// `(img, txt)`.
    pub fn forward(
        &self,
        img: Tensor<B, 3>,
        txt: Tensor<B, 3>,
        temb: Tensor<B, 2>,
        rope: &RopeTable<B>,
    ) -> (Tensor<B, 3>, Tensor<B, 3>) {
        let (img_in, img_msa, img_mlp) = self.norm1.forward(img.clone(), temb.clone());
        let (txt_in, txt_msa, txt_mlp) = self.norm1_context.forward(txt.clone(), temb);
        let (img_attn, txt_attn) = self.attn.forward(img_in, txt_in, rope);

        let img = img + img_msa.gate(img_attn);
        let img_ff = self
            .ff
            .forward(img_mlp.scale_shift(self.norm2.forward(img.clone())));
        let img = img + img_mlp.gate(img_ff);

        let txt = txt + txt_msa.gate(txt_attn);
        let txt_ff = self
            .ff_context
            .forward(txt_mlp.scale_shift(self.norm2_context.forward(txt.clone())));
        let txt = txt + txt_mlp.gate(txt_ff);
        (img, txt)
    }
}
