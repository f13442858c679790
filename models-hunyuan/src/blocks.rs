//! diffusers `HunyuanVideoTransformerBlock` (dual-stream) and
//! `HunyuanVideoSingleTransformerBlock` (single-stream).

use burn::{
    module::Module,
    nn::Linear,
    tensor::{Tensor, backend::Backend},
};
use dit_layers::{
    ADALN_NORM_EPS, AdaLayerNormZero, AdaLayerNormZeroSingle, FeedForward, LayerNorm, LoadError,
    MlpActivation, ParamSource, RopeTable,
};

use crate::attention::{JointAttention, SingleAttention};

/// One dual-stream block (`transformer_blocks.N`): video and text tokens keep separate weights
/// but attend jointly.
#[derive(Module, Debug)]
pub struct DualStreamBlock<B: Backend> {
    /// `norm1`: modulation of the video stream.
    pub norm1: AdaLayerNormZero<B>,
    /// `norm1_context`: modulation of the text stream.
    pub norm1_context: AdaLayerNormZero<B>,
    /// `attn`: joint attention.
    pub attn: JointAttention<B>,
    /// `norm2`: parameter-free norm before the video MLP.
    pub norm2: LayerNorm<B>,
    /// `ff`: video MLP (GELU, tanh).
    pub ff: FeedForward<B>,
    /// `norm2_context`: parameter-free norm before the text MLP.
    pub norm2_context: LayerNorm<B>,
    /// `ff_context`: text MLP (GELU, tanh).
    pub ff_context: FeedForward<B>,
}

impl<B: Backend> DualStreamBlock<B> {
    /// Builds the block with `heads` heads of `head_dim` channels and MLP width `mlp_dim`.
    pub fn new(
        src: &impl ParamSource<B>,
        heads: usize,
        head_dim: usize,
        mlp_dim: usize,
    ) -> Result<Self, LoadError> {
        let hidden = heads * head_dim;
        let ff =
            |name: &str| FeedForward::new(&src.at(name), hidden, mlp_dim, MlpActivation::GeluTanh);
        Ok(Self {
            norm1: AdaLayerNormZero::new(&src.at("norm1"), hidden)?,
            norm1_context: AdaLayerNormZero::new(&src.at("norm1_context"), hidden)?,
            attn: JointAttention::new(&src.at("attn"), heads, head_dim)?,
            norm2: LayerNorm::plain(ADALN_NORM_EPS),
            ff: ff("ff")?,
            norm2_context: LayerNorm::plain(ADALN_NORM_EPS),
            ff_context: ff("ff_context")?,
        })
    }

    /// Runs the block on `video` `[batch, video_tokens, hidden]` and `text`
    /// `[batch, text_tokens, hidden]` with conditioning `temb` `[batch, hidden]`, the rotary
    /// table of the video tokens and the visible key counts; returns the new `(video, text)`.
    pub fn forward(
        &self,
        video: Tensor<B, 3>,
        text: Tensor<B, 3>,
        temb: Tensor<B, 2>,
        rope: &RopeTable<B>,
        key_lengths: &[usize],
    ) -> (Tensor<B, 3>, Tensor<B, 3>) {
        let (video_in, video_msa, video_mlp) = self.norm1.forward(video.clone(), temb.clone());
        let (text_in, text_msa, text_mlp) = self.norm1_context.forward(text.clone(), temb);
        let (video_attn, text_attn) = self.attn.forward(video_in, text_in, rope, key_lengths);

        let video = video + video_msa.gate(video_attn);
        let text = text + text_msa.gate(text_attn);

        let video_ff = self
            .ff
            .forward(video_mlp.scale_shift(self.norm2.forward(video.clone())));
        let text_ff = self
            .ff_context
            .forward(text_mlp.scale_shift(self.norm2_context.forward(text.clone())));
        (
            video + video_mlp.gate(video_ff),
            text + text_mlp.gate(text_ff),
        )
    }
}

/// One single-stream block (`single_transformer_blocks.N`) over the joined `[video; text]`
/// sequence, attention and MLP in parallel.
#[derive(Module, Debug)]
pub struct SingleStreamBlock<B: Backend> {
    /// `norm`: modulation.
    pub norm: AdaLayerNormZeroSingle<B>,
    /// `proj_mlp` `[hidden -> mlp_dim]`: the MLP input, GELU (tanh) follows.
    pub proj_mlp: Linear<B>,
    /// `attn`: self-attention without output projection.
    pub attn: SingleAttention<B>,
    /// `proj_out` `[hidden + mlp_dim -> hidden]` over `[attention; mlp]`.
    pub proj_out: Linear<B>,
}

impl<B: Backend> SingleStreamBlock<B> {
    /// Builds the block with `heads` heads of `head_dim` channels and MLP width `mlp_dim`.
    pub fn new(
        src: &impl ParamSource<B>,
        heads: usize,
        head_dim: usize,
        mlp_dim: usize,
    ) -> Result<Self, LoadError> {
        let hidden = heads * head_dim;
        Ok(Self {
            norm: AdaLayerNormZeroSingle::new(&src.at("norm"), hidden)?,
            proj_mlp: src.linear("proj_mlp", hidden, mlp_dim, true)?,
            attn: SingleAttention::new(&src.at("attn"), heads, head_dim)?,
            proj_out: src.linear("proj_out", hidden + mlp_dim, hidden, true)?,
        })
    }

    /// Runs the block on the joined `x` `[batch, video_tokens + text_tokens, hidden]` with
    /// conditioning `temb` `[batch, hidden]`, the rotary table of the video tokens and the
    /// visible key counts.
    pub fn forward(
        &self,
        x: Tensor<B, 3>,
        temb: Tensor<B, 2>,
        rope: &RopeTable<B>,
        key_lengths: &[usize],
    ) -> Tensor<B, 3> {
        let (normed, m) = self.norm.forward(x.clone(), temb);
        let mlp = MlpActivation::GeluTanh.forward(self.proj_mlp.forward(normed.clone()));
        let attn = self.attn.forward(normed, rope, key_lengths);
        x + m.gate(self.proj_out.forward(Tensor::cat(vec![attn, mlp], 2)))
    }
}
