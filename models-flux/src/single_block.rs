//! diffusers `FluxSingleTransformerBlock`: the single-stream block over the joined
//! `[txt; img]` sequence, attention and MLP in parallel.

use burn::{
    module::Module,
    nn::Linear,
    tensor::{Tensor, activation::gelu_approximate, backend::Backend},
};
use dit_layers::{AdaLayerNormZeroSingle, LoadError, ParamSource, RopeTable};

use crate::{attention::SingleAttention, config::MLP_RATIO};

/// One single-stream block (`single_transformer_blocks.N`).
#[derive(Module, Debug)]
pub struct FluxSingleTransformerBlock<B: Backend> {
    /// `norm`: modulation.
    pub norm: AdaLayerNormZeroSingle<B>,
    /// `proj_mlp` `[hidden -> 4 hidden]`: the MLP input, GELU (tanh) follows.
    pub proj_mlp: Linear<B>,
    /// `attn`: self-attention without output projection.
    pub attn: SingleAttention<B>,
    /// `proj_out` `[5 hidden -> hidden]` over `[attention; mlp]`.
    pub proj_out: Linear<B>,
}

impl<B: Backend> FluxSingleTransformerBlock<B> {
    /// Builds the block with `heads` heads of `head_dim` channels from `src`.
    pub fn new(
        src: &impl ParamSource<B>,
        heads: usize,
        head_dim: usize,
    ) -> Result<Self, LoadError> {
        let hidden = heads * head_dim;
        let mlp = MLP_RATIO * hidden;
        Ok(Self {
            norm: AdaLayerNormZeroSingle::new(&src.at("norm"), hidden)?,
            proj_mlp: src.linear("proj_mlp", hidden, mlp, true)?,
            attn: SingleAttention::new(&src.at("attn"), heads, head_dim)?,
            proj_out: src.linear("proj_out", hidden + mlp, hidden, true)?,
        })
    }

    /// Runs the block on the joined sequence `x` `[batch, txt_tokens + img_tokens, hidden]`
    /// with conditioning `temb` `[batch, hidden]`.
    pub fn forward(
        &self,
        x: Tensor<B, 3>,
        temb: Tensor<B, 2>,
        rope: &RopeTable<B>,
    ) -> Tensor<B, 3> {
        let (normed, m) = self.norm.forward(x.clone(), temb);
        let mlp = gelu_approximate(self.proj_mlp.forward(normed.clone()));
        let attn = self.attn.forward(normed, rope);
        x + m.gate(self.proj_out.forward(Tensor::cat(vec![attn, mlp], 2)))
    }
}
