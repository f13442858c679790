//! diffusers `FluxTransformer2DModel`: embeddings, double- then single-stream blocks, output
//! norm and projection; loading from both checkpoint layouts; the cache-engine interface.

use std::{ops::Range, path::Path};

use burn::{
    module::Module,
    nn::Linear,
    tensor::{Tensor, backend::Backend},
};
use dicache_core::CacheableModel;
use dit_layers::{
    AdaLayerNormContinuous, JointLayout, LoadError, MmditBlocks, ModelParams, MultiAxisRope,
    ParamSource, RopeTable, TimeTextEmbedding, Weights, model_folder,
};

use crate::{CheckedInput, FluxConfig, FluxInput, InputError, MLP_RATIO, bfl::BflCheckpoint};

/// BFL checkpoints may store every name under this prefix (ComfyUI-style exports).
const BFL_PREFIX: &str = "model.diffusion_model.";

/// Timesteps and guidance arrive in `[0, 1]`-ish units and are scaled by this before the
/// sinusoidal projection (diffusers `FluxTransformer2DModel.forward`).
const TIME_SCALE: f64 = 1000.0;

/// How a checkpoint names its tensors.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    /// diffusers `FluxTransformer2DModel` names (`transformer_blocks.N.attn.to_q`).
    Diffusers,
    /// Black Forest Labs' original names (`double_blocks.N.img_attn.qkv`, fused).
    Bfl,
}

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

impl<B: Backend> FluxTransformer<B> {
    /// Builds the model for `config` from `src`; `source` names the configuration's origin in
    /// errors.
    fn build(
        config: FluxConfig,
        src: &impl ParamSource<B>,
        source: &Path,
    ) -> Result<Self, LoadError> {
        config.validate(source)?;
        let hidden = config.hidden_size();
        let (heads, head_dim) = (config.num_attention_heads, config.attention_head_dim);
        let pos_embed = config.rope().map_err(|e| LoadError::Config {
            path: source.to_path_buf(),
            message: e.to_string(),
        })?;
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

    /// A model of `config` with random weights from Burn's initialisers (seed with `B::seed`),
    /// for benchmarks and tests that need no reference numbers; e.g. a medium model:
    /// `FluxConfig { num_layers: 4, num_single_layers: 8, num_attention_heads: 6, ..FluxConfig::dev() }`
    /// (hidden 768). Fails only on an invalid configuration.
    pub fn random(config: &FluxConfig, device: &B::Device) -> Result<Self, LoadError> {
        Self::build(
            config.clone(),
            &ModelParams::random(device),
            Path::new("FluxConfig given in code"),
        )
    }

    /// Loads `weights`, stored in `layout`, as a model of `config`. Every tensor must have the
    /// shape `config` implies and every tensor of the checkpoint must be used, so a configuration
    /// that does not match the weights is an error.
    pub fn from_weights(
        config: FluxConfig,
        weights: &Weights,
        layout: Layout,
        device: &B::Device,
    ) -> Result<Self, LoadError> {
        let source = Path::new("FluxConfig given for the checkpoint");
        let model = match layout {
            Layout::Diffusers => {
                Self::build(config, &ModelParams::checkpoint(weights, device), source)?
            }
            Layout::Bfl => Self::build(config, &BflCheckpoint::new(weights, device), source)?,
        };
        weights.check_all_used()?;
        Ok(model)
    }

    /// Loads a diffusers transformer folder (`config.json` and one or more
    /// `*.safetensors` shards with their index), or a pipeline folder holding one in
    /// `transformer/`.
    pub fn load_diffusers(dir: &Path, device: &B::Device) -> Result<Self, LoadError> {
        let dir = model_folder(dir, "transformer");
        let config = FluxConfig::from_file(&dir.join("config.json"))?;
        let weights = Weights::open(&dir)?;
        Self::from_weights(config, &weights, Layout::Diffusers, device)
    }

    /// Loads a BFL single-file checkpoint (`flux1-dev.safetensors`, with or without the
    /// `model.diffusion_model.` prefix), inferring the configuration from its shapes (see
    /// [`FluxConfig::infer_bfl`] for `axes_dims_rope`).
    pub fn load_bfl(
        file: &Path,
        axes_dims_rope: Option<Vec<usize>>,
        device: &B::Device,
    ) -> Result<Self, LoadError> {
        let weights = Weights::open(file)?.strip_prefix(BFL_PREFIX);
        let config = FluxConfig::infer_bfl(&weights, file, axes_dims_rope)?;
        Self::from_weights(config, &weights, Layout::Bfl, device)
    }

    /// Loads a checkpoint in either layout: a folder as diffusers, a file as BFL (FLUX.1's
    /// rotary split).
    pub fn load(path: &Path, device: &B::Device) -> Result<Self, LoadError> {
        if path.is_dir() {
            Self::load_diffusers(path, device)
        } else {
            Self::load_bfl(path, None, device)
        }
    }

    /// The configuration.
    pub fn config(&self) -> &FluxConfig {
        &self.config
    }

    /// Checks `input` against the configuration; the model runs only on checked inputs.
    pub fn check_input(&self, input: FluxInput<B>) -> Result<CheckedInput<B>, InputError> {
        input.check(&self.config)
    }

    /// The velocity prediction `[batch, img_tokens, patch_size² * out_channels]` of one call,
    /// every block computed (no cache).
    pub fn forward(&self, input: &CheckedInput<B>) -> Tensor<B, 3> {
        let (ctx, state) = self.embed(input);
        let state = self.run_blocks(&ctx, state, 0..self.config.num_blocks());
        self.head(&ctx, state.img)
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

    /// The rotary table over `[txt; img]` tokens of `input`.
    pub fn rotary_table(&self, input: &CheckedInput<B>) -> RopeTable<B> {
        let input = input.get();
        let ids = Tensor::cat(vec![input.txt_ids.clone(), input.img_ids.clone()], 0);
        self.pos_embed
            .table(ids)
            .expect("CheckedInput has one id column per rotary axis")
    }
}

impl<B: Backend> CacheableModel<B> for FluxTransformer<B> {
    type Input = CheckedInput<B>;
    type Context = FluxContext<B>;
    type State = FluxState<B>;
    type Output = Tensor<B, 3>;

    /// Double-stream blocks `0..num_layers`, then single-stream blocks.
    fn num_blocks(&self) -> usize {
        self.config.num_blocks()
    }

    fn embed(&self, input: &Self::Input) -> (Self::Context, Self::State) {
        let rope = self.rotary_table(input);
        let raw = input.get();
        let ctx = FluxContext {
            temb: self.conditioning(raw),
            rope,
        };
        let state = FluxState {
            txt: self
                .context_embedder
                .forward(raw.encoder_hidden_states.clone()),
            img: self.x_embedder.forward(raw.latents.clone()),
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
