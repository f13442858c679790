//! diffusers `FluxTransformer2DModel`: embeddings, double- then single-stream blocks, output
//! norm and projection; its place among the loadable transformers; the cache-engine interface.

use std::ops::Range;

use burn::{
    module::Module,
    nn::Linear,
    tensor::{Tensor, backend::Backend},
};
use dicache_core::CacheableModel;
use dit_layers::{
    AdaLayerNormContinuous, DiffusionTransformer, InputError, JointLayout, LoadError, MmditBlocks,
    ModelParams, MultiAxisRope, ParamSource, RopeTable, TimeTextEmbedding, config_error,
};

use crate::{CheckedInput, FluxConfig, FluxInput, FluxPrepared, MLP_RATIO};

/// Timesteps and guidance arrive in `[0, 1]`-ish units and are scaled by this before the
/// sinusoidal projection (diffusers `FluxTransformer2DModel.forward`).
const TIME_SCALE: f64 = 1000.0;

/// The FLUX.1 transformer (dev or schnell).
#[derive(Module, Debug)]
pub struct FluxTransformer<B: Backend> {
    /// `time_text_embed`: timestep (+ guidance) + pooled text conditioning.
    pub time_text_embed: TimeTextEmbedding<B>,
    /// `context_embedder` `[joint_attention_dim -> hidden]`.
    pub context_embedder: Linear<B>,
    /// `x_embedder` `[in_channels -> hidden]`.
    pub x_embedder: Linear<B>,
    /// `transformer_blocks` (double-stream) and `single_transformer_blocks`.
    pub blocks: MmditBlocks<B>,
    /// `norm_out`: final adaptive norm.
    pub norm_out: AdaLayerNormContinuous<B>,
    /// `proj_out` `[hidden -> patch_size² * out_channels]`.
    pub proj_out: Linear<B>,
    /// `pos_embed`: rotary embedding over the position ids.
    #[module(skip)]
    pub pos_embed: MultiAxisRope,
    /// The configuration the model was built for.
    #[module(skip)]
    pub config: FluxConfig,
}

/// What one call's blocks and head share: the conditioning vector and the rotary table.
#[derive(Debug, Clone)]
pub struct FluxContext<B: Backend> {
    /// `temb` `[batch, hidden]`.
    pub temb: Tensor<B, 2>,
    /// Rotary table over `[txt; img]` tokens.
    pub rope: RopeTable<B>,
}

/// The two streams between blocks.
#[derive(Debug, Clone)]
pub struct FluxState<B: Backend> {
    /// Text tokens `[batch, txt_tokens, hidden]`.
    pub txt: Tensor<B, 3>,
    /// Image tokens `[batch, img_tokens, hidden]`.
    pub img: Tensor<B, 3>,
}

impl<B: Backend> DiffusionTransformer<B> for FluxTransformer<B> {
    type Config = FluxConfig;

    fn build(config: FluxConfig, src: &ModelParams<'_, B>) -> Result<Self, LoadError> {
        let hidden = config.hidden_size();
        let (heads, head_dim) = (config.num_attention_heads, config.attention_head_dim);
        let pos_embed = config.rope().map_err(config_error::<FluxConfig>)?;
        Ok(Self {
            time_text_embed: TimeTextEmbedding::new(
                &src.at("time_text_embed"),
                hidden,
                config.pooled_projection_dim,
                config.guidance_embeds,
            )?,
            context_embedder: src.linear(
                "context_embedder",
                config.joint_attention_dim,
                hidden,
                true,
            )?,
            x_embedder: src.linear("x_embedder", config.in_channels, hidden, true)?,
            blocks: MmditBlocks::new(
                src,
                [config.num_layers, config.num_single_layers],
                heads,
                head_dim,
                MLP_RATIO * hidden,
                JointLayout::TextFirst,
            )?,
            norm_out: AdaLayerNormContinuous::new(&src.at("norm_out"), hidden)?,
            proj_out: src.linear("proj_out", hidden, config.output_channels(), true)?,
            pos_embed,
            config,
        })
    }

    fn config(&self) -> &FluxConfig {
        &self.config
    }
}

impl<B: Backend> FluxTransformer<B> {
    /// Checks `input` against the configuration and computes its constant parts (rotary table,
    /// embedded text); the model runs only on checked inputs.
    pub fn check_input(&self, input: FluxInput<B>) -> Result<CheckedInput<B>, InputError> {
        input.check(&self.config)?;
        let ids = Tensor::cat(vec![input.txt_ids.clone(), input.img_ids.clone()], 0);
        let rope = self
            .pos_embed
            .table(ids)
            .expect("checked: one id column per rotary axis");
        let txt = self
            .context_embedder
            .forward(input.encoder_hidden_states.clone());
        Ok(CheckedInput::new(input, FluxPrepared { rope, txt }))
    }

    /// The conditioning vector `[batch, hidden]` of `input`.
    pub fn conditioning(&self, input: &FluxInput<B>) -> Tensor<B, 2> {
        let scale = |t: Tensor<B, 1>| t.mul_scalar(TIME_SCALE);
        self.time_text_embed.forward(
            scale(input.timestep.clone()),
            input.guidance.clone().map(scale),
            input.pooled_projections.clone(),
        )
    }
}

impl<B: Backend> CacheableModel<B> for FluxTransformer<B> {
    type Input = CheckedInput<B>;
    type Context = FluxContext<B>;
    type State = FluxState<B>;
    /// The velocity prediction `[batch, img_tokens, patch_size² * out_channels]`.
    type Output = Tensor<B, 3>;

    /// Double-stream blocks `0..num_layers`, then single-stream blocks.
    fn num_blocks(&self) -> usize {
        self.config.num_blocks()
    }

    fn embed(&self, input: &Self::Input) -> (Self::Context, Self::State) {
        let ctx = FluxContext {
            temb: self.conditioning(input.get()),
            rope: input.prepared().rope.clone(),
        };
        let state = FluxState {
            txt: input.prepared().txt.clone(),
            img: self.x_embedder.forward(input.get().latents.clone()),
        };
        (ctx, state)
    }

    /// Runs `blocks` (indices past the double-stream blocks are single-stream blocks); the
    /// streams are joined on entering the single-stream part and split again at its end, so
    /// any split of the range computes the same as one call. `blocks` must lie within
    /// `0..num_blocks()`.
    fn run_blocks(
        &self,
        ctx: &Self::Context,
        state: Self::State,
        blocks: Range<usize>,
    ) -> Self::State {
        let (img, txt) = self.blocks.run(
            (state.img, state.txt),
            blocks,
            ctx.temb.clone(),
            &ctx.rope,
            None,
        );
        FluxState { txt, img }
    }

    fn image_stream(&self, state: &Self::State) -> Tensor<B, 3> {
        state.img.clone()
    }

    /// `proj_out(norm_out(img, temb))`: `[batch, img_tokens, patch_size² * out_channels]`.
    fn head(&self, ctx: &Self::Context, image: Tensor<B, 3>) -> Self::Output {
        self.proj_out
            .forward(self.norm_out.forward(image, ctx.temb.clone()))
    }
}
