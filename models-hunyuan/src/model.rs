//! diffusers `HunyuanVideoTransformer3DModel` (text-to-video): patch, text and condition
//! embeddings, dual- then single-stream blocks, output norm, projection and unpatchify; loading;
//! the cache-engine interface.

use std::ops::Range;

use burn::{
    module::Module,
    nn::Linear,
    tensor::{Tensor, backend::Backend},
};
use dicache_core::CacheableModel;
use dit_layers::{
    AdaLayerNormContinuous, DiffusionTransformer, InputError, JointLayout, LoadError, MmditBlocks,
    ModelParams, MultiAxisRope, ParamSource, PatchEmbed3d, RopeTable, TimeTextEmbedding,
    config_error,
};

use crate::{
    CheckedInput, HunyuanVideoConfig, HunyuanVideoInput, HunyuanVideoPrepared, TokenRefiner,
};

/// The HunyuanVideo transformer.
#[derive(Module, Debug)]
pub struct HunyuanVideoTransformer<B: Backend> {
    /// `x_embedder.proj`: `Conv3d(in_channels, hidden, (pt, p, p), stride=(pt, p, p))`.
    pub x_embedder: PatchEmbed3d<B>,
    /// `context_embedder`: the text token refiner.
    pub context_embedder: TokenRefiner<B>,
    /// `time_text_embed`: timestep (+ guidance) + pooled CLIP conditioning.
    pub time_text_embed: TimeTextEmbedding<B>,
    /// `transformer_blocks` (dual-stream) and `single_transformer_blocks`.
    pub blocks: MmditBlocks<B>,
    /// `norm_out`: final adaptive norm.
    pub norm_out: AdaLayerNormContinuous<B>,
    /// `proj_out` `[hidden -> out_channels * pt * p * p]`.
    pub proj_out: Linear<B>,
    /// `rope`: rotary embedding over (frame, row, column) of the video tokens.
    #[module(skip)]
    pub rope: MultiAxisRope,
    /// The configuration the model was built for.
    #[module(skip)]
    pub config: HunyuanVideoConfig,
}

/// What one call's blocks and head share.
#[derive(Debug, Clone)]
pub struct HunyuanVideoContext<B: Backend> {
    /// `temb` `[batch, hidden]`.
    pub temb: Tensor<B, 2>,
    /// Rotary table over the video tokens.
    pub rope: RopeTable<B>,
    /// Keys of `[video; text]` each batch row attends to (video + valid text tokens).
    pub key_lengths: Vec<usize>,
    /// Token grid `[frames, height, width]` after patching.
    pub grid: [usize; 3],
}

/// The two streams between blocks.
#[derive(Debug, Clone)]
pub struct HunyuanVideoState<B: Backend> {
    /// Video tokens `[batch, video_tokens, hidden]`.
    pub video: Tensor<B, 3>,
    /// Text tokens `[batch, text_tokens, hidden]`.
    pub text: Tensor<B, 3>,
}

impl<B: Backend> DiffusionTransformer<B> for HunyuanVideoTransformer<B> {
    type Config = HunyuanVideoConfig;

    fn build(config: HunyuanVideoConfig, src: &ModelParams<'_, B>) -> Result<Self, LoadError> {
        let hidden = config.hidden_size();
        let (heads, head_dim) = (config.num_attention_heads, config.attention_head_dim);
        let mlp_dim = config.mlp_dim();
        let rope = config.rope().map_err(config_error::<HunyuanVideoConfig>)?;
        Ok(Self {
            x_embedder: src.patch_embed(
                "x_embedder.proj",
                config.in_channels,
                hidden,
                config.patch(),
            )?,
            context_embedder: TokenRefiner::new(&src.at("context_embedder"), &config)?,
            time_text_embed: TimeTextEmbedding::new(
                &src.at("time_text_embed"),
                hidden,
                config.pooled_projection_dim,
                config.guidance_embeds,
            )?,
            blocks: MmditBlocks::new(
                src,
                [config.num_layers, config.num_single_layers],
                heads,
                head_dim,
                mlp_dim,
                JointLayout::ImageFirst,
            )?,
            norm_out: AdaLayerNormContinuous::new(&src.at("norm_out"), hidden)?,
            proj_out: src.linear("proj_out", hidden, config.proj_out_channels(), true)?,
            rope,
            config,
        })
    }

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
        Ok(CheckedInput::new(
            input,
            HunyuanVideoPrepared { grid, mask, rope },
        ))
    }

    /// The conditioning vector `temb` `[batch, hidden]` of `input`.
    pub fn conditioning(&self, input: &HunyuanVideoInput<B>) -> Tensor<B, 2> {
        self.time_text_embed.forward(
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
    type State = HunyuanVideoState<B>;
    /// The prediction `[batch, out_channels, frames, height, width]`.
    type Output = Tensor<B, 5>;

    /// Dual-stream blocks `0..num_layers`, then single-stream blocks.
    fn num_blocks(&self) -> usize {
        self.config.num_blocks()
    }

    fn embed(&self, input: &Self::Input) -> (Self::Context, Self::State) {
        let raw = input.get();
        let (video, grid) = self
            .x_embedder
            .forward(raw.latents.clone())
            .expect("CheckedInput's sizes are multiples of the patch");
        let video_tokens = video.dims()[1];
        let ctx = HunyuanVideoContext {
            temb: self.conditioning(raw),
            rope: input.prepared().rope.clone(),
            key_lengths: input.prepared().mask.joint_key_lengths(video_tokens),
            grid,
        };
        let state = HunyuanVideoState {
            video,
            text: self.refine_text(input),
        };
        (ctx, state)
    }

    /// Runs `blocks` (indices past the dual-stream blocks are single-stream blocks); the
    /// streams are joined as `[video; text]` on entering the single-stream part and split
    /// again at its end, so any split of the range computes the same as one call. `blocks`
    /// must lie within `0..num_blocks()`.
    fn run_blocks(
        &self,
        ctx: &Self::Context,
        state: Self::State,
        blocks: Range<usize>,
    ) -> Self::State {
        let keys = Some(ctx.key_lengths.as_slice());
        let (video, text) = self.blocks.run(
            (state.video, state.text),
            blocks,
            ctx.temb.clone(),
            &ctx.rope,
            keys,
        );
        HunyuanVideoState { video, text }
    }

    fn image_stream(&self, state: &Self::State) -> Tensor<B, 3> {
        state.video.clone()
    }

    /// `proj_out(norm_out(video, temb))`, unpatchified.
    fn head(&self, ctx: &Self::Context, image: Tensor<B, 3>) -> Self::Output {
        let x = self
            .proj_out
            .forward(self.norm_out.forward(image, ctx.temb.clone()));
        self.unpatchify(x, ctx.grid)
    }
}
