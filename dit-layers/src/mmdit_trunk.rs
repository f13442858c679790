//! What FLUX.1 and HunyuanVideo build alike around their own embedders: the timestep, guidance
//! and pooled-text conditioning (`time_text_embed`), the dual- and single-stream blocks
//! (`transformer_blocks`, `single_transformer_blocks`), the final adaptive norm (`norm_out`)
//! and output projection (`proj_out`); with what one call's blocks share and the two streams
//! between them.

use std::ops::Range;

use burn::{
    module::Module,
    tensor::{Tensor, backend::Backend},
};
use dicache_core::BatchRows;

use crate::{
    AdaLayerNormContinuous, BlockKeys, JointLayout, Linear, LoadError, MmditBlocks, ParamSource,
    RopeTable, SparseVideoCall, TimeTextEmbedding,
};

/// The sizes of an MM-DiT trunk, from the model's configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MmditDims {
    /// Dual-stream, then single-stream blocks.
    pub blocks: [usize; 2],
    /// Attention heads.
    pub heads: usize,
    /// Channels per head; the hidden size is `heads * head_dim`.
    pub head_dim: usize,
    /// Inner width of the blocks' MLPs.
    pub mlp_dim: usize,
    /// Channels of the pooled text embedding.
    pub pooled_projection_dim: usize,
    /// Whether the conditioning embeds a guidance scale.
    pub guidance_embeds: bool,
    /// Output channels of `proj_out` per token.
    pub out_channels: usize,
    /// Where the text tokens stand in the joined sequence.
    pub layout: JointLayout,
}

/// The shared part of FLUX.1's and HunyuanVideo's transformers.
#[derive(Module, Debug)]
pub struct MmditTrunk<B: Backend> {
    /// `time_text_embed`: timestep (+ guidance) + pooled text conditioning.
    pub time_text_embed: TimeTextEmbedding<B>,
    /// `transformer_blocks` (dual-stream) and `single_transformer_blocks`.
    pub blocks: MmditBlocks<B>,
    /// `norm_out`: final adaptive norm.
    pub norm_out: AdaLayerNormContinuous<B>,
    /// `proj_out` `[hidden -> out_channels]`.
    pub proj_out: Linear<B>,
}

/// What one call's blocks and head share.
#[derive(Debug, Clone)]
pub struct MmditContext<B: Backend> {
    /// `temb` `[batch, hidden]`.
    pub temb: Tensor<B, 2>,
    /// Rotary table over the joined tokens that carry positions.
    pub rope: RopeTable<B>,
    /// Keys each batch row attends to in the joined sequence (valid text tokens), or `None`
    /// for all.
    pub key_lengths: Option<Vec<usize>>,
    /// Sparse VideoGen for the blocks' attention (a video model's); dense when `None`.
    pub sparse: Option<SparseVideoCall>,
}

/// The two streams between blocks.
#[derive(Debug, Clone)]
pub struct MmditState<B: Backend> {
    /// Image or video tokens `[batch, image_tokens, hidden]`: the stream the cache keeps.
    pub image: Tensor<B, 3>,
    /// Text tokens `[batch, text_tokens, hidden]`.
    pub text: Tensor<B, 3>,
}

impl<B: Backend> BatchRows for MmditContext<B> {
    /// The rows' conditioning and key lengths; the rotary table is every row's.
    fn rows(&self, rows: &[usize]) -> Self {
        Self {
            temb: self.temb.rows(rows),
            rope: self.rope.clone(),
            key_lengths: self.key_lengths.rows(rows),
            sparse: self.sparse.rows(rows),
        }
    }
}

impl<B: Backend> BatchRows for MmditState<B> {
    fn rows(&self, rows: &[usize]) -> Self {
        Self {
            image: self.image.rows(rows),
            text: self.text.rows(rows),
        }
    }
}

impl<B: Backend> MmditTrunk<B> {
    /// Builds the trunk of `dims` from `src` (the transformer's root module).
    pub fn new(src: &impl ParamSource<B>, dims: MmditDims) -> Result<Self, LoadError> {
        let hidden = dims.heads * dims.head_dim;
        Ok(Self {
            time_text_embed: TimeTextEmbedding::new(
                &src.at("time_text_embed"),
                hidden,
                dims.pooled_projection_dim,
                dims.guidance_embeds,
            )?,
            blocks: MmditBlocks::new(
                src,
                dims.blocks,
                dims.heads,
                dims.head_dim,
                dims.mlp_dim,
                dims.layout,
            )?,
            norm_out: AdaLayerNormContinuous::new(&src.at("norm_out"), hidden)?,
            proj_out: src.linear("proj_out", hidden, dims.out_channels, true)?,
        })
    }

    /// The number of blocks, dual- then single-stream.
    pub fn num_blocks(&self) -> usize {
        self.blocks.transformer_blocks.len() + self.blocks.single_transformer_blocks.len()
    }

    /// Runs `blocks` on `state` (see [`MmditBlocks::run`]: any split of the range computes
    /// the same as one call).
    pub fn run(
        &self,
        ctx: &MmditContext<B>,
        state: MmditState<B>,
        blocks: Range<usize>,
    ) -> MmditState<B> {
        let (image, text) = self.blocks.run(
            (state.image, state.text),
            blocks,
            ctx.temb.clone(),
            &ctx.rope,
            BlockKeys {
                key_lengths: ctx.key_lengths.as_deref(),
                sparse: ctx.sparse.as_ref(),
                layer: 0,
            },
        );
        MmditState { image, text }
    }

    /// `proj_out(norm_out(image, temb))`: `[batch, image_tokens, out_channels]`.
    pub fn head(&self, ctx: &MmditContext<B>, image: Tensor<B, 3>) -> Tensor<B, 3> {
        self.proj_out
            .forward(self.norm_out.forward(image, ctx.temb.clone()))
    }
}
