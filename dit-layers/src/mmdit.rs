//! The MM-DiT blocks FLUX.1 and HunyuanVideo share: diffusers `FluxTransformerBlock` /
//! `HunyuanVideoTransformerBlock` (dual-stream: image and text tokens keep their own weights
//! but attend jointly) and `FluxSingleTransformerBlock` / `HunyuanVideoSingleTransformerBlock`
//! (single-stream over the joined sequence, attention and MLP in parallel), with their
//! attentions (`FluxAttnProcessor`, `HunyuanVideoAttnProcessor2_0`): per-head RMS-normalised
//! queries and keys, rotary embedding, scaled dot-product attention.
//!
//! The two models differ only in the [`JointLayout`] (which stream comes first, which tokens
//! the rotary table covers) and in whether padded text keys are masked (`key_lengths`).

use std::ops::Range;

use burn::{
    module::Module,
    tensor::{Tensor, backend::Backend},
};

use crate::{
    ADALN_NORM_EPS, AdaLayerNormZero, AdaLayerNormZeroSingle, BlockKeys, FeedForward, Heads,
    LayerNorm, Linear, LoadError, MlpActivation, ParamSource, QkvNames, QkvProjection, RopeTable,
    attend_keys, layout, merge_heads,
};

/// How the image (or video) and text streams are joined into one sequence, and which of its
/// tokens the rotary table rotates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JointLayout {
    /// `[text; image]`, the rotary table covering every token (FLUX.1: text tokens have
    /// position ids too).
    TextFirst,
    /// `[image; text]`, the rotary table covering the image tokens only (HunyuanVideo).
    ImageFirst,
}

impl JointLayout {
    /// Joins `image` `[batch, image_tokens, hidden]` and `text` `[batch, text_tokens, hidden]`
    /// into `[batch, image_tokens + text_tokens, hidden]` in this order.
    pub fn join<B: Backend>(self, image: Tensor<B, 3>, text: Tensor<B, 3>) -> Tensor<B, 3> {
        match self {
            Self::TextFirst => layout::cat(vec![text, image], 1),
            Self::ImageFirst => layout::cat(vec![image, text], 1),
        }
    }

    /// Splits a joined `x` `[batch, tokens, hidden]` with `image_len` image tokens back into
    /// `(image, text)`.
    pub fn split<B: Backend>(
        self,
        x: Tensor<B, 3>,
        image_len: usize,
    ) -> (Tensor<B, 3>, Tensor<B, 3>) {
        let text_len = x.dims()[1] - image_len;
        match self {
            Self::TextFirst => (
                x.clone().narrow(1, text_len, image_len),
                x.narrow(1, 0, text_len),
            ),
            Self::ImageFirst => (
                x.clone().narrow(1, 0, image_len),
                x.narrow(1, image_len, text_len),
            ),
        }
    }

    /// Joins the two streams' heads, rotating the tokens the rotary table covers.
    fn join_heads<B: Backend>(
        self,
        image: Heads<B>,
        text: Heads<B>,
        rope: &RopeTable<B>,
    ) -> Heads<B> {
        match self {
            Self::TextFirst => text.cat(image).rotate(rope),
            Self::ImageFirst => image.rotate(rope).cat(text),
        }
    }

    /// Rotates the tokens the rotary table covers in already joined heads.
    fn rotate_joined<B: Backend>(self, h: Heads<B>, rope: &RopeTable<B>) -> Heads<B> {
        match self {
            Self::TextFirst => h.rotate(rope),
            Self::ImageFirst => {
                let image_len = rope.cos.dims()[0];
                let rotate_image = |t: Tensor<B, 4>| {
                    let tokens = t.dims()[2];
                    let text = t.clone().narrow(2, image_len, tokens - image_len);
                    layout::cat(vec![rope.apply(t.narrow(2, 0, image_len)), text], 2)
                };
                Heads {
                    q: rotate_image(h.q),
                    k: rotate_image(h.k),
                    v: h.v,
                }
            }
        }
    }
}

/// The joint attention of `h` with `keys`, heads merged to `[batch, tokens, hidden]`.
fn attend<B: Backend>(h: Heads<B>, keys: BlockKeys<'_>) -> Tensor<B, 3> {
    merge_heads(attend_keys(h, keys))
}

/// The attention of a dual-stream block: both streams attend jointly, each with its own
/// projections.
#[derive(Module, Debug)]
pub struct JointAttention<B: Backend> {
    /// `to_q`, `to_k`, `to_v`, `norm_q`, `norm_k`: the image (video) stream.
    pub image: QkvProjection<B>,
    /// `add_q_proj`, `add_k_proj`, `add_v_proj`, `norm_added_q`, `norm_added_k`: the text
    /// stream.
    pub context: QkvProjection<B>,
    /// `to_out.0` `[hidden -> hidden]`.
    pub to_out: Linear<B>,
    /// `to_add_out` `[hidden -> hidden]`.
    pub to_add_out: Linear<B>,
    /// Order of the joint sequence.
    #[module(skip)]
    pub layout: JointLayout,
}

impl<B: Backend> JointAttention<B> {
    /// Builds the attention of width `heads * head_dim` from `src`.
    pub fn new(
        src: &impl ParamSource<B>,
        heads: usize,
        head_dim: usize,
        layout: JointLayout,
    ) -> Result<Self, LoadError> {
        let hidden = heads * head_dim;
        Ok(Self {
            image: QkvProjection::new(src, QkvNames::main(true), heads, head_dim)?,
            context: QkvProjection::new(src, QkvNames::added(), heads, head_dim)?,
            to_out: src.linear("to_out.0", hidden, hidden, true)?,
            to_add_out: src.linear("to_add_out", hidden, hidden, true)?,
            layout,
        })
    }

    /// Attention for `image` `[batch, image_tokens, hidden]` and `text`
    /// `[batch, text_tokens, hidden]` over the joint sequence's `keys`; returns the projected
    /// `(image, text)` outputs, same shapes.
    pub fn forward(
        &self,
        image: Tensor<B, 3>,
        text: Tensor<B, 3>,
        rope: &RopeTable<B>,
        keys: BlockKeys<'_>,
    ) -> (Tensor<B, 3>, Tensor<B, 3>) {
        let image_len = image.dims()[1];
        let joint =
            self.layout
                .join_heads(self.image.forward(image), self.context.forward(text), rope);
        let (image_out, text_out) = self.layout.split(attend(joint, keys), image_len);
        (
            self.to_out.forward(image_out),
            self.to_add_out.forward(text_out),
        )
    }
}

/// The attention of a single-stream block (`pre_only`: no output projection, the block's
/// `proj_out` follows).
#[derive(Module, Debug)]
pub struct SingleAttention<B: Backend> {
    /// `to_q`, `to_k`, `to_v`, `norm_q`, `norm_k`.
    pub qkv: QkvProjection<B>,
    /// Order of the joint sequence.
    #[module(skip)]
    pub layout: JointLayout,
}

impl<B: Backend> SingleAttention<B> {
    /// Builds the attention of width `heads * head_dim` from `src`.
    pub fn new(
        src: &impl ParamSource<B>,
        heads: usize,
        head_dim: usize,
        layout: JointLayout,
    ) -> Result<Self, LoadError> {
        Ok(Self {
            qkv: QkvProjection::new(src, QkvNames::main(true), heads, head_dim)?,
            layout,
        })
    }

    /// Self-attention over the joined `x` `[batch, tokens, hidden]` and its `keys`, heads
    /// merged back to that shape.
    pub fn forward(
        &self,
        x: Tensor<B, 3>,
        rope: &RopeTable<B>,
        keys: BlockKeys<'_>,
    ) -> Tensor<B, 3> {
        let h = self.layout.rotate_joined(self.qkv.forward(x), rope);
        attend(h, keys)
    }
}

/// One dual-stream block (`transformer_blocks.N`).
#[derive(Module, Debug)]
pub struct DualStreamBlock<B: Backend> {
    /// `norm1`: modulation of the image stream.
    pub norm1: AdaLayerNormZero<B>,
    /// `norm1_context`: modulation of the text stream.
    pub norm1_context: AdaLayerNormZero<B>,
    /// `attn`: joint attention.
    pub attn: JointAttention<B>,
    /// `norm2`: parameter-free norm before the image MLP.
    pub norm2: LayerNorm<B>,
    /// `ff`: image MLP (`hidden -> mlp_dim`, GELU (tanh), `-> hidden`).
    pub ff: FeedForward<B>,
    /// `norm2_context`: parameter-free norm before the text MLP.
    pub norm2_context: LayerNorm<B>,
    /// `ff_context`: text MLP.
    pub ff_context: FeedForward<B>,
}

impl<B: Backend> DualStreamBlock<B> {
    /// Builds the block with `heads` heads of `head_dim` channels and MLP width `mlp_dim` from
    /// `src`.
    pub fn new(
        src: &impl ParamSource<B>,
        heads: usize,
        head_dim: usize,
        mlp_dim: usize,
        layout: JointLayout,
    ) -> Result<Self, LoadError> {
        let hidden = heads * head_dim;
        let ff =
            |name: &str| FeedForward::new(&src.at(name), hidden, mlp_dim, MlpActivation::GeluTanh);
        Ok(Self {
            norm1: AdaLayerNormZero::new(&src.at("norm1"), hidden)?,
            norm1_context: AdaLayerNormZero::new(&src.at("norm1_context"), hidden)?,
            attn: JointAttention::new(&src.at("attn"), heads, head_dim, layout)?,
            norm2: LayerNorm::plain(ADALN_NORM_EPS),
            ff: ff("ff")?,
            norm2_context: LayerNorm::plain(ADALN_NORM_EPS),
            ff_context: ff("ff_context")?,
        })
    }

    /// Runs the block on `image` `[batch, image_tokens, hidden]` and `text`
    /// `[batch, text_tokens, hidden]` with conditioning `temb` `[batch, hidden]` and the
    /// attention's `keys` (see [`JointAttention::forward`]); returns the new `(image, text)`.
    pub fn forward(
        &self,
        image: Tensor<B, 3>,
        text: Tensor<B, 3>,
        temb: Tensor<B, 2>,
        rope: &RopeTable<B>,
        keys: BlockKeys<'_>,
    ) -> (Tensor<B, 3>, Tensor<B, 3>) {
        let (image_in, image_msa, image_mlp) = self.norm1.forward(image.clone(), temb.clone());
        let (text_in, text_msa, text_mlp) = self.norm1_context.forward(text.clone(), temb);
        let (image_attn, text_attn) = self.attn.forward(image_in, text_in, rope, keys);

        let image = image_msa.gated_add(image, image_attn);
        let text = text_msa.gated_add(text, text_attn);

        let image_ff = self
            .ff
            .forward(image_mlp.norm_scale_shift(&self.norm2, image.clone()));
        let text_ff = self
            .ff_context
            .forward(text_mlp.norm_scale_shift(&self.norm2_context, text.clone()));
        (
            image_mlp.gated_add(image, image_ff),
            text_mlp.gated_add(text, text_ff),
        )
    }
}

/// One single-stream block (`single_transformer_blocks.N`) over the joined sequence,
/// attention and MLP in parallel.
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
    /// Builds the block with `heads` heads of `head_dim` channels and MLP width `mlp_dim` from
    /// `src`.
    pub fn new(
        src: &impl ParamSource<B>,
        heads: usize,
        head_dim: usize,
        mlp_dim: usize,
        layout: JointLayout,
    ) -> Result<Self, LoadError> {
        let hidden = heads * head_dim;
        Ok(Self {
            norm: AdaLayerNormZeroSingle::new(&src.at("norm"), hidden)?,
            proj_mlp: src.linear("proj_mlp", hidden, mlp_dim, true)?,
            attn: SingleAttention::new(&src.at("attn"), heads, head_dim, layout)?,
            proj_out: src.linear("proj_out", hidden + mlp_dim, hidden, true)?,
        })
    }

    /// Runs the block on the joined `x` `[batch, tokens, hidden]` with conditioning `temb`
    /// `[batch, hidden]` and the attention's `keys` (see [`SingleAttention::forward`]).
    pub fn forward(
        &self,
        x: Tensor<B, 3>,
        temb: Tensor<B, 2>,
        rope: &RopeTable<B>,
        keys: BlockKeys<'_>,
    ) -> Tensor<B, 3> {
        let (normed, m) = self.norm.forward(x.clone(), temb);
        let mlp = MlpActivation::GeluTanh.forward(self.proj_mlp.forward(normed.clone()));
        let attn = self.attn.forward(normed, rope, keys);
        m.gated_add(x, self.proj_out.forward(layout::cat(vec![attn, mlp], 2)))
    }
}

/// The blocks of an MM-DiT: dual-stream blocks (`transformer_blocks.N`), then single-stream
/// blocks (`single_transformer_blocks.N`) over the joined sequence.
#[derive(Module, Debug)]
pub struct MmditBlocks<B: Backend> {
    /// `transformer_blocks`: dual-stream blocks, indices `0..transformer_blocks.len()`.
    pub transformer_blocks: Vec<DualStreamBlock<B>>,
    /// `single_transformer_blocks`: single-stream blocks, the indices after the dual-stream ones.
    pub single_transformer_blocks: Vec<SingleStreamBlock<B>>,
    /// How the streams are joined.
    #[module(skip)]
    pub layout: JointLayout,
}

impl<B: Backend> MmditBlocks<B> {
    /// Loads `num_layers` dual-stream blocks from `src.transformer_blocks.N` and
    /// `num_single_layers` single-stream blocks from `src.single_transformer_blocks.N`, each
    /// with `heads` heads of `head_dim` channels and MLP width `mlp_dim`.
    pub fn new(
        src: &impl ParamSource<B>,
        [num_layers, num_single_layers]: [usize; 2],
        heads: usize,
        head_dim: usize,
        mlp_dim: usize,
        layout: JointLayout,
    ) -> Result<Self, LoadError> {
        let transformer_blocks = (0..num_layers)
            .map(|i| {
                let src = src.at("transformer_blocks").at(i);
                DualStreamBlock::new(&src, heads, head_dim, mlp_dim, layout)
            })
            .collect::<Result<_, _>>()?;
        let single_transformer_blocks = (0..num_single_layers)
            .map(|i| {
                let src = src.at("single_transformer_blocks").at(i);
                SingleStreamBlock::new(&src, heads, head_dim, mlp_dim, layout)
            })
            .collect::<Result<_, _>>()?;
        Ok(Self {
            transformer_blocks,
            single_transformer_blocks,
            layout,
        })
    }

    /// Runs the blocks with indices in `blocks` (within `0..` the number of blocks) on
    /// `(image, text)`; the streams are joined on entering the single-stream part and split
    /// again at its end, so any split of the range computes the same as one call. `keys` is
    /// every block's (its `layer` is set to each block's index). Returns the new
    /// `(image, text)`.
    pub fn run(
        &self,
        (mut image, mut text): (Tensor<B, 3>, Tensor<B, 3>),
        blocks: Range<usize>,
        temb: Tensor<B, 2>,
        rope: &RopeTable<B>,
        keys: BlockKeys<'_>,
    ) -> (Tensor<B, 3>, Tensor<B, 3>) {
        let duals = self.transformer_blocks.len();
        let at = |layer| BlockKeys { layer, ..keys };
        let dual_range = blocks.start.min(duals)..blocks.end.min(duals);
        for (layer, block) in dual_range.clone().zip(&self.transformer_blocks[dual_range]) {
            (image, text) = block.forward(image, text, temb.clone(), rope, at(layer));
        }
        let singles = blocks.start.max(duals) - duals..blocks.end.max(duals) - duals;
        if !singles.is_empty() {
            let image_len = image.dims()[1];
            let mut x = self.layout.join(image, text);
            for (i, block) in singles
                .clone()
                .zip(&self.single_transformer_blocks[singles])
            {
                x = block.forward(x, temb.clone(), rope, at(duals + i));
            }
            (image, text) = self.layout.split(x, image_len);
        }
        (image, text)
    }
}
