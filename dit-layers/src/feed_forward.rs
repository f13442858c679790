//! diffusers `FeedForward`: the two-layer MLP of a transformer block.

use burn::{
    module::Module,
    tensor::{Tensor, backend::Backend},
};

use crate::{Linear, LoadError, MlpActivation, ParamSource};

/// diffusers `FeedForward(dim, inner_dim, activation_fn)` with `activation_fn`
/// `"gelu-approximate"` ([`MlpActivation::GeluTanh`], the blocks of FLUX.1, HunyuanVideo and
/// WAN) or `"linear-silu"` ([`MlpActivation::Silu`], HunyuanVideo's token refiner):
/// `hidden -> inner`, activation, `-> hidden`.
#[derive(Module, Debug)]
pub struct FeedForward<B: Backend> {
    /// `net.0.proj` `[hidden -> inner]`.
    pub proj_in: Linear<B>,
    /// `net.2` `[inner -> hidden]`.
    pub proj_out: Linear<B>,
    /// The activation after `net.0.proj`.
    #[module(skip)]
    pub act: MlpActivation,
}

impl<B: Backend> FeedForward<B> {
    /// Builds the MLP of width `hidden` with `inner` hidden channels from `src`.
    pub fn new(
        src: &impl ParamSource<B>,
        hidden: usize,
        inner: usize,
        act: MlpActivation,
    ) -> Result<Self, LoadError> {
        Ok(Self {
            proj_in: src.linear("net.0.proj", hidden, inner, true)?,
            proj_out: src.linear("net.2", inner, hidden, true)?,
            act,
        })
    }

    /// `[batch, tokens, hidden]` to the same shape.
    pub fn forward(&self, x: Tensor<B, 3>) -> Tensor<B, 3> {
        self.proj_out
            .forward(self.act.forward(self.proj_in.forward(x)))
    }
}
