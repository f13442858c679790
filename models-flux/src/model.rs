//! diffusers `FluxTransformer2DModel`: its image and text embedders and rotary positions
//! around the MM-DiT trunk (conditioning, double- then single-stream blocks, output norm and
//! projection); its place among the loadable transformers; the cache-engine interface.

use std::{ops::Range, path::Path};

use burn::{
    module::Module,
    tensor::{Tensor, backend::Backend},
};
use dicache_core::CacheableModel;
use dit_layers::{
    ConfigCheck, DiffusionTransformer, FromParams, InputError, JointLayout, Linear, LoadError,
    MmditContext, MmditDims, MmditState, MmditTrunk, ModelParams, MultiAxisRope, ParamSource,
    TransformerConfig,
};

use crate::{CheckedInput, FluxConfig, FluxInput, FluxPrepared, MLP_RATIO};

/// Timesteps and guidance arrive in `[0, 1]`-ish units and are scaled by this before the
/// sinusoidal projection (diffusers `FluxTransformer2DModel.forward`).
const TIME_SCALE: f64 = 1000.0;

/// The FLUX.1 transformer (dev or schnell): its embedders around the MM-DiT trunk it shares
/// with HunyuanVideo.
#[derive(Module, Debug)]
pub struct FluxTransformer<B: Backend> {
    /// `x_embedder` `[in_channels -> hidden]`.
    pub x_embedder: Linear<B>,
    /// `context_embedder` `[joint_attention_dim -> hidden]`.
    pub context_embedder: Linear<B>,
    /// `time_text_embed`, the blocks, `norm_out` and `proj_out` `[hidden -> patch_size² *
    /// out_channels]`.
    pub trunk: MmditTrunk<B>,
    /// `pos_embed`: rotary embedding over the position ids.
    #[module(skip)]
    pub pos_embed: MultiAxisRope,
    /// The configuration the model was built for.
    #[module(skip)]
    pub config: FluxConfig,
}

impl<B: Backend> FromParams<B> for FluxTransformer<B> {
    type Config = FluxConfig;

    fn from_params(
        config: &FluxConfig,
        src: &ModelParams<'_, B>,
        source: &Path,
    ) -> Result<Self, LoadError> {
        config.validate(source)?;
        let hidden = config.hidden_size();
        let dims = MmditDims {
            blocks: [config.num_layers, config.num_single_layers],
            heads: config.num_attention_heads,
            head_dim: config.attention_head_dim,
            mlp_dim: MLP_RATIO * hidden,
            pooled_projection_dim: config.pooled_projection_dim,
            guidance_embeds: config.guidance_embeds,
            out_channels: config.output_channels(),
            layout: JointLayout::TextFirst,
        };
        // The conditioning first, as diffusers declares it: a checkpoint of another model is
        // refused naming `time_text_embed`'s tensors.
        let trunk = MmditTrunk::new(src, dims)?;
        Ok(Self {
            x_embedder: src.linear("x_embedder", config.in_channels, hidden, true)?,
            context_embedder: src.linear(
                "context_embedder",
                config.joint_attention_dim,
                hidden,
                true,
            )?,
            trunk,
            pos_embed: config
                .rope()
                .map_err(|e| ConfigCheck::new(source).fail(e))?,
            config: config.clone(),
        })
    }
}

impl<B: Backend> DiffusionTransformer<B> for FluxTransformer<B> {
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
        self.trunk.time_text_embed.forward(
            scale(input.timestep.clone()),
            input.guidance.clone().map(scale),
            input.pooled_projections.clone(),
        )
    }
}

impl<B: Backend> CacheableModel<B> for FluxTransformer<B> {
    type Input = CheckedInput<B>;
    type Context = MmditContext<B>;
    /// Image and text tokens.
    type State = MmditState<B>;
    /// The velocity prediction `[batch, img_tokens, patch_size² * out_channels]`.
    type Output = Tensor<B, 3>;

    /// Double-stream blocks `0..num_layers`, then single-stream blocks.
    fn num_blocks(&self) -> usize {
        self.trunk.num_blocks()
    }

    fn embed(&self, input: &Self::Input) -> (Self::Context, Self::State) {
        let ctx = MmditContext {
            temb: self.conditioning(input.get()),
            rope: input.prepared().rope.clone(),
            key_lengths: None,
            sparse: None,
        };
        let state = MmditState {
            image: self.x_embedder.forward(input.get().latents.clone()),
            text: input.prepared().txt.clone(),
        };
        (ctx, state)
    }

    /// The trunk's blocks; the text tokens come first in the joined sequence.
    fn run_blocks(
        &self,
        ctx: &Self::Context,
        state: Self::State,
        blocks: Range<usize>,
    ) -> Self::State {
        self.trunk.run(ctx, state, blocks)
    }

    fn image_stream(&self, state: &Self::State) -> Tensor<B, 3> {
        state.image.clone()
    }

    /// `proj_out(norm_out(img, temb))`: `[batch, img_tokens, patch_size² * out_channels]`.
    fn head(&self, ctx: &Self::Context, image: Tensor<B, 3>) -> Self::Output {
        self.trunk.head(ctx, image)
    }
}
