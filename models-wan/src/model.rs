//! diffusers `WanTransformer3DModel` (text-to-video): patch and condition embeddings, blocks,
//! output norm, projection and unpatchify; loading from both checkpoint layouts; the
//! cache-engine interface.

use std::{ops::Range, path::Path, sync::Arc};

use burn::{
    module::{Module, Param},
    tensor::{Tensor, backend::Backend},
};
use dicache_core::{BatchRows, CacheableModel, HeadClasses};
use dit_layers::{
    BlockKeys, ConfigCheck, DiffusionTransformer, FromParams, InputError, LayerNorm, Linear,
    LoadError, ModelParams, MultiAxisRope, ParamSource, PatchEmbed3d, RopeTable, SparseVideoCall,
    SparseVideoModel, SparseVideoPlan, SparseVideoSettings, SvgVariant, TransformerConfig,
};

use crate::{
    CheckedInput, WanConfig, WanInput, WanPrepared, WanTransformerBlock,
    condition::ConditionEmbedder,
};

/// The WAN 2.1 text-to-video transformer (1.3B or 14B).
#[derive(Module, Debug)]
pub struct WanTransformer<B: Backend> {
    /// `patch_embedding`: `Conv3d(in_channels, dim, patch_size, stride=patch_size)`.
    pub patch_embedding: PatchEmbed3d<B>,
    /// `condition_embedder`: timestep and text conditioning.
    pub condition_embedder: ConditionEmbedder<B>,
    /// `blocks`.
    pub blocks: Vec<WanTransformerBlock<B>>,
    /// `norm_out`: layer norm without affine parameters.
    pub norm_out: LayerNorm<B>,
    /// `proj_out` `[dim -> out_channels * pt * ph * pw]`.
    pub proj_out: Linear<B>,
    /// `scale_shift_table` `[1, 2, dim]`: (shift, scale) of the output norm, added to `temb`.
    pub scale_shift_table: Param<Tensor<B, 3>>,
    /// `rope`: rotary embedding over (frame, row, column).
    #[module(skip)]
    pub rope: MultiAxisRope,
    /// The configuration the model was built for.
    #[module(skip)]
    pub config: WanConfig,
    /// Sparse VideoGen's settings ([`SparseVideoModel::set_sparse_attention`]); dense
    /// attention when `None`.
    #[module(skip)]
    pub sparse: Option<Arc<SparseVideoSettings>>,
}

/// What one call's blocks and head share.
#[derive(Debug, Clone)]
pub struct WanContext<B: Backend> {
    /// `temb` `[batch, dim]`: the head's conditioning.
    pub temb: Tensor<B, 2>,
    /// `timestep_proj` `[batch, 6, dim]`: the blocks' conditioning.
    pub timestep_proj: Tensor<B, 3>,
    /// The projected text embeddings `[batch, text_tokens, dim]`.
    pub text: Tensor<B, 3>,
    /// Rotary table over the video tokens.
    pub rope: RopeTable<B>,
    /// Token grid `[frames, height, width]` after patching.
    pub grid: [usize; 3],
    /// Sparse VideoGen for the blocks' self-attention; dense when `None`.
    pub sparse: Option<SparseVideoCall>,
}

impl<B: Backend> BatchRows for WanContext<B> {
    /// The rows' conditioning, text and Sparse VideoGen; the rotary table and grid are every
    /// row's.
    fn rows(&self, rows: &[usize]) -> Self {
        Self {
            temb: self.temb.rows(rows),
            timestep_proj: self.timestep_proj.rows(rows),
            text: self.text.rows(rows),
            rope: self.rope.clone(),
            grid: self.grid,
            sparse: self.sparse.rows(rows),
        }
    }
}

impl<B: Backend> FromParams<B> for WanTransformer<B> {
    type Config = WanConfig;

    fn from_params(
        config: &WanConfig,
        src: &ModelParams<'_, B>,
        source: &Path,
    ) -> Result<Self, LoadError> {
        config.validate(source)?;
        let dim = config.hidden_size();
        let (heads, head_dim) = (config.num_attention_heads, config.attention_head_dim);
        let rope = config
            .rope()
            .map_err(|e| ConfigCheck::new(source).fail(e))?;
        Ok(Self {
            patch_embedding: src.patch_embed(
                "patch_embedding",
                config.in_channels,
                dim,
                config.patch_size,
            )?,
            condition_embedder: ConditionEmbedder::new(
                &src.at("condition_embedder"),
                dim,
                config.freq_dim,
                config.text_dim,
            )?,
            blocks: (0..config.num_layers)
                .map(|i| {
                    WanTransformerBlock::new(
                        &src.at("blocks").at(i),
                        heads,
                        head_dim,
                        config.ffn_dim,
                        config.cross_attn_norm,
                        config.eps,
                    )
                })
                .collect::<Result<_, _>>()?,
            norm_out: LayerNorm::plain(config.eps),
            proj_out: src.linear("proj_out", dim, config.proj_out_channels(), true)?,
            scale_shift_table: Param::from_tensor(src.parameter("scale_shift_table", [1, 2, dim])?),
            rope,
            config: config.clone(),
            sparse: None,
        })
    }
}

impl<B: Backend> DiffusionTransformer<B> for WanTransformer<B> {
    fn config(&self) -> &WanConfig {
        &self.config
    }
}

impl<B: Backend> WanTransformer<B> {
    /// Checks `input` against the configuration and computes its constant parts (rotary table,
    /// projected text); the model runs only on checked inputs.
    pub fn check_input(&self, input: WanInput<B>) -> Result<CheckedInput<B>, InputError> {
        let grid = input.check(&self.config)?;
        let rope = self
            .rope
            .grid_table(grid, &input.latents.device())
            .expect("a validated configuration has three rotary axes");
        let text = self
            .condition_embedder
            .text(input.encoder_hidden_states.clone());
        let sparse = SparseVideoPlan::for_grid(self.sparse.as_ref(), grid, 0)?;
        Ok(CheckedInput::new(
            input,
            WanPrepared {
                grid,
                rope,
                text,
                sparse,
            },
        ))
    }

    /// Output norm modulated by `temb`, projection: `[batch, tokens, dim]` to
    /// `[batch, tokens, out_channels * pt * ph * pw]`.
    pub fn project_out(&self, x: Tensor<B, 3>, temb: Tensor<B, 2>) -> Tensor<B, 3> {
        let mut halves = (self.scale_shift_table.val() + temb.unsqueeze_dim(1))
            .chunk(2, 1)
            .into_iter();
        let mut half = || halves.next().expect("two halves").squeeze_dim::<2>(1);
        let (shift, scale) = (half(), half());
        self.proj_out
            .forward(self.norm_out.forward_scale_shift(x, &scale, &shift))
    }

    /// Folds patch tokens `[batch, f * h * w, pt * ph * pw * out_channels]` (patch-major, as
    /// `proj_out` orders them) back into a video `[batch, out_channels, f * pt, h * ph, w * pw]`.
    pub fn unpatchify(&self, x: Tensor<B, 3>, [f, h, w]: [usize; 3]) -> Tensor<B, 5> {
        let batch = x.dims()[0];
        let [pt, ph, pw] = self.config.patch_size;
        let c = self.config.output_channels();
        x.reshape([batch, f, h, w, pt, ph, pw, c])
            .permute([0, 7, 1, 4, 2, 5, 3, 6])
            .reshape([batch, c, f * pt, h * ph, w * pw])
    }
}

impl<B: Backend> CacheableModel<B> for WanTransformer<B> {
    type Input = CheckedInput<B>;
    type Context = WanContext<B>;
    /// The video tokens `[batch, tokens, dim]`, the only stream.
    type State = Tensor<B, 3>;
    /// The prediction `[batch, out_channels, frames, height, width]`.
    type Output = Tensor<B, 5>;

    fn num_blocks(&self) -> usize {
        self.blocks.len()
    }

    fn embed(&self, input: &Self::Input) -> (Self::Context, Self::State) {
        let raw = input.get();
        let (x, grid) = self
            .patch_embedding
            .forward(raw.latents.clone())
            .expect("CheckedInput's sizes are multiples of the patch");
        let (temb, timestep_proj) = self
            .condition_embedder
            .time(raw.timestep.clone(), raw.encoder_hidden_states.dtype());
        let tokens = x.dims()[1];
        let sparse =
            input.prepared().sparse.as_ref().map(|plan| {
                plan.call(self.num_blocks(), input.steps(), &vec![tokens; x.dims()[0]])
            });
        let ctx = WanContext {
            temb,
            timestep_proj,
            text: input.prepared().text.clone(),
            rope: input.prepared().rope.clone(),
            grid,
            sparse,
        };
        (ctx, x)
    }

    fn run_blocks(
        &self,
        ctx: &Self::Context,
        state: Self::State,
        blocks: Range<usize>,
    ) -> Self::State {
        let layers = blocks.clone();
        layers
            .zip(&self.blocks[blocks])
            .fold(state, |x, (layer, block)| {
                let keys = BlockKeys {
                    key_lengths: None,
                    sparse: ctx.sparse.as_ref(),
                    layer,
                };
                block.forward(
                    x,
                    ctx.text.clone(),
                    ctx.timestep_proj.clone(),
                    &ctx.rope,
                    keys,
                )
            })
    }

    fn image_stream(&self, state: &Self::State) -> Tensor<B, 3> {
        state.clone()
    }

    /// `norm_out` + `scale_shift_table` modulation, `proj_out`, unpatchify.
    fn head(&self, ctx: &Self::Context, image: Tensor<B, 3>) -> Self::Output {
        self.unpatchify(self.project_out(image, ctx.temb.clone()), ctx.grid)
    }

    fn head_classes(&self, ctx: &Self::Context) -> Vec<HeadClasses> {
        SparseVideoCall::report(ctx.sparse.as_ref())
    }
}

impl<B: Backend> SparseVideoModel for WanTransformer<B> {
    const SVG_VARIANT: SvgVariant = SvgVariant::Wan;

    fn sparse_video_mut(&mut self) -> &mut Option<Arc<SparseVideoSettings>> {
        &mut self.sparse
    }
}
