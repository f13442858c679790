//! diffusers `HunyuanVideoTransformer3DModel` (text-to-video): patch, text and condition
//! embeddings, dual- then single-stream blocks, output norm, projection and unpatchify; loading;
//! the cache-engine interface.

use std::{ops::Range, path::Path, sync::Arc};

use burn::{
    module::Module,
    tensor::{Tensor, backend::Backend},
};
use dicache_core::{BatchRows, CacheableModel, HeadClasses};
use dit_layers::{
    ConfigCheck, DiffusionTransformer, FromParams, InputError, JointLayout, LoadError,
    MmditContext, MmditDims, MmditState, MmditTrunk, ModelParams, MultiAxisRope, ParamSource,
    PatchEmbed3d, SparseVideoCall, SparseVideoModel, SparseVideoPlan, SparseVideoSettings,
    SvgVariant, TransformerConfig,
};

use crate::{
    CheckedInput, HunyuanVideoConfig, HunyuanVideoInput, HunyuanVideoPrepared, TokenRefiner,
};

/// The HunyuanVideo transformer: its patch embedding, token refiner and rotary positions around
/// the MM-DiT trunk it shares with FLUX.1.
#[derive(Module, Debug)]
pub struct HunyuanVideoTransformer<B: Backend> {
    /// `x_embedder.proj`: `Conv3d(in_channels, hidden, (pt, p, p), stride=(pt, p, p))`.
    pub x_embedder: PatchEmbed3d<B>,
    /// `context_embedder`: the text token refiner.
    pub context_embedder: TokenRefiner<B>,
    /// `time_text_embed` (timestep, guidance, pooled CLIP), the dual- and single-stream blocks,
    /// `norm_out` and `proj_out` `[hidden -> out_channels * pt * p * p]`.
    pub trunk: MmditTrunk<B>,
    /// `rope`: rotary embedding over (frame, row, column) of the video tokens.
    #[module(skip)]
    pub rope: MultiAxisRope,
    /// The configuration the model was built for.
    #[module(skip)]
    pub config: HunyuanVideoConfig,
    /// Sparse VideoGen's settings ([`SparseVideoModel::set_sparse_attention`]); dense
    /// attention when `None`.
    #[module(skip)]
    pub sparse: Option<Arc<SparseVideoSettings>>,
}

/// What one call's blocks and head share: the trunk's context (conditioning, rotary table over
/// the video tokens, the keys of `[video; text]` each batch row attends to) and the token grid
/// `[frames, height, width]` the head unpatchifies to.
#[derive(Debug, Clone)]
pub struct HunyuanVideoContext<B: Backend> {
    /// What the blocks share.
    pub trunk: MmditContext<B>,
    /// Token grid after patching.
    pub grid: [usize; 3],
}

impl<B: Backend> BatchRows for HunyuanVideoContext<B> {
    fn rows(&self, rows: &[usize]) -> Self {
        Self {
            trunk: self.trunk.rows(rows),
            grid: self.grid,
        }
    }
}

impl<B: Backend> FromParams<B> for HunyuanVideoTransformer<B> {
    type Config = HunyuanVideoConfig;

    fn from_params(
        config: &HunyuanVideoConfig,
        src: &ModelParams<'_, B>,
        source: &Path,
    ) -> Result<Self, LoadError> {
        config.validate(source)?;
        let dims = MmditDims {
            blocks: [config.num_layers, config.num_single_layers],
            heads: config.num_attention_heads,
            head_dim: config.attention_head_dim,
            mlp_dim: config.mlp_dim(),
            pooled_projection_dim: config.pooled_projection_dim,
            guidance_embeds: config.guidance_embeds,
            out_channels: config.proj_out_channels(),
            layout: JointLayout::ImageFirst,
        };
        Ok(Self {
            x_embedder: src.patch_embed(
                "x_embedder.proj",
                config.in_channels,
                config.hidden_size(),
                config.patch(),
            )?,
            context_embedder: TokenRefiner::new(&src.at("context_embedder"), config)?,
            trunk: MmditTrunk::new(src, dims)?,
            rope: config
                .rope()
                .map_err(|e| ConfigCheck::new(source).fail(e))?,
            config: config.clone(),
            sparse: None,
        })
    }
}

impl<B: Backend> DiffusionTransformer<B> for HunyuanVideoTransformer<B> {
    fn config(&self) -> &HunyuanVideoConfig {
        &self.config
    }
}

impl<B: Backend> HunyuanVideoTransformer<B> {
    /// Checks `input` against the configuration and computes its token grid, text mask and
    /// rotary table; the model runs only on checked inputs.
    pub fn check_input(&self, input: HunyuanVideoInput<B>) -> Result<CheckedInput<B>, InputError> {
        let (grid, mask) = input.check(&self.config)?;
        let rope = self
            .rope
            .grid_table(grid, &input.latents.device())
            .expect("a validated configuration has three rotary axes");
        let text_tokens = input.encoder_hidden_states.dims()[1];
        let sparse = SparseVideoPlan::for_grid(self.sparse.as_ref(), grid, text_tokens)?;
        Ok(CheckedInput::new(
            input,
            HunyuanVideoPrepared {
                grid,
                mask,
                rope,
                sparse,
            },
        ))
    }

    /// The conditioning vector `temb` `[batch, hidden]` of `input`.
    pub fn conditioning(&self, input: &HunyuanVideoInput<B>) -> Tensor<B, 2> {
        self.trunk.time_text_embed.forward(
            input.timestep.clone(),
            input.guidance.clone(),
            input.pooled_projections.clone(),
        )
    }

    /// The refined text tokens `[batch, text_tokens, hidden]` of `input` (`context_embedder`).
    pub fn refine_text(&self, input: &CheckedInput<B>) -> Tensor<B, 3> {
        let raw = input.get();
        self.context_embedder.forward(
            raw.encoder_hidden_states.clone(),
            raw.timestep.clone(),
            &input.prepared().mask,
            self.config.num_attention_heads,
        )
    }

    /// Folds patch tokens `[batch, f * h * w, out_channels * pt * p * p]` (channel-major, as
    /// `proj_out` orders them) back into a video `[batch, out_channels, f * pt, h * p, w * p]`.
    pub fn unpatchify(&self, x: Tensor<B, 3>, [f, h, w]: [usize; 3]) -> Tensor<B, 5> {
        let batch = x.dims()[0];
        let [pt, ph, pw] = self.config.patch();
        let c = self.config.output_channels();
        x.reshape([batch, f, h, w, c, pt, ph, pw])
            .permute([0, 4, 1, 5, 2, 6, 3, 7])
            .reshape([batch, c, f * pt, h * ph, w * pw])
    }
}

impl<B: Backend> CacheableModel<B> for HunyuanVideoTransformer<B> {
    type Input = CheckedInput<B>;
    type Context = HunyuanVideoContext<B>;
    /// Video and text tokens.
    type State = MmditState<B>;
    /// The prediction `[batch, out_channels, frames, height, width]`.
    type Output = Tensor<B, 5>;

    /// Dual-stream blocks `0..num_layers`, then single-stream blocks.
    fn num_blocks(&self) -> usize {
        self.trunk.num_blocks()
    }

    fn embed(&self, input: &Self::Input) -> (Self::Context, Self::State) {
        let raw = input.get();
        let (video, grid) = self
            .x_embedder
            .forward(raw.latents.clone())
            .expect("CheckedInput's sizes are multiples of the patch");
        let video_tokens = video.dims()[1];
        let key_lengths = input.prepared().mask.joint_key_lengths(video_tokens);
        let sparse = input.prepared().sparse.as_ref().map(|plan| {
            // The real tokens of each row: the video and its prompt's text tokens.
            plan.call(self.num_blocks(), input.steps(), &key_lengths)
        });
        let trunk = MmditContext {
            temb: self.conditioning(raw),
            rope: input.prepared().rope.clone(),
            key_lengths: Some(key_lengths),
            sparse,
        };
        let state = MmditState {
            image: video,
            text: self.refine_text(input),
        };
        (HunyuanVideoContext { trunk, grid }, state)
    }

    /// The trunk's blocks; the text tokens follow the video tokens in the joined sequence,
    /// padded ones masked out as keys.
    fn run_blocks(
        &self,
        ctx: &Self::Context,
        state: Self::State,
        blocks: Range<usize>,
    ) -> Self::State {
        self.trunk.run(&ctx.trunk, state, blocks)
    }

    fn image_stream(&self, state: &Self::State) -> Tensor<B, 3> {
        state.image.clone()
    }

    /// `proj_out(norm_out(video, temb))`, unpatchified.
    fn head(&self, ctx: &Self::Context, image: Tensor<B, 3>) -> Self::Output {
        self.unpatchify(self.trunk.head(&ctx.trunk, image), ctx.grid)
    }

    fn head_classes(&self, ctx: &Self::Context) -> Vec<HeadClasses> {
        SparseVideoCall::report(ctx.trunk.sparse.as_ref())
    }
}

impl<B: Backend> SparseVideoModel for HunyuanVideoTransformer<B> {
    const SVG_VARIANT: SvgVariant = SvgVariant::HunyuanVideo;

    fn sparse_video_mut(&mut self) -> &mut Option<Arc<SparseVideoSettings>> {
        &mut self.sparse
    }
}
