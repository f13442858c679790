//! diffusers `WanTransformer3DModel` (text-to-video): patch and condition embeddings, blocks,
//! output norm, projection and unpatchify; loading from both checkpoint layouts; the
//! cache-engine interface.

use std::{ops::Range, path::Path};

use burn::{
    module::{Module, Param},
    nn::Linear,
    tensor::{Tensor, backend::Backend},
};
use dicache_core::CacheableModel;
use dit_layers::{
    LayerNorm, LoadError, ModelParams, MultiAxisRope, ParamSource, PatchEmbed3d, RopeTable,
    Weights, model_folder,
};

use crate::{
    CheckedInput, InputError, WanConfig, WanInput, WanTransformerBlock,
    condition::ConditionEmbedder,
    params::{Layout, checkpoint_params},
};

/// Original-layout checkpoints may store every name under this prefix (ComfyUI-style exports).
const ORIGINAL_PREFIX: &str = "model.diffusion_model.";

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
}

impl<B: Backend> WanTransformer<B> {
    /// Builds the model for `config` from `src`; `source` names the configuration's origin in
    /// errors.
    fn build(
        config: WanConfig,
        src: &ModelParams<'_, B>,
        source: &Path,
    ) -> Result<Self, LoadError> {
        config.validate(source)?;
        let dim = config.hidden_size();
        let (heads, head_dim) = (config.num_attention_heads, config.attention_head_dim);
        let rope = config.rope().map_err(|e| LoadError::Config {
            path: source.to_path_buf(),
            message: e.to_string(),
        })?;
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
            config,
        })
    }

    /// A model of `config` with random weights (seed with `B::seed`), for benchmarks and tests
    /// that need no reference numbers; e.g. `WanConfig::t2v_1_3b()` at full size, or a smaller
    /// one: `WanConfig { num_layers: 4, ..WanConfig::t2v_1_3b() }`. Fails only on an invalid
    /// configuration.
    pub fn random(config: &WanConfig, device: &B::Device) -> Result<Self, LoadError> {
        Self::build(
            config.clone(),
            &ModelParams::random(device),
            Path::new("WanConfig given in code"),
        )
    }

    /// Loads `weights`, stored in `layout`, as a model of `config`. Every tensor must have the
    /// shape `config` implies and every tensor of the checkpoint must be used, so a configuration
    /// that does not match the weights is an error.
    pub fn from_weights(
        config: WanConfig,
        weights: &Weights,
        layout: Layout,
        device: &B::Device,
    ) -> Result<Self, LoadError> {
        let model = Self::build(
            config,
            &checkpoint_params(weights, layout, device),
            Path::new("WanConfig given for the checkpoint"),
        )?;
        weights.check_all_used()?;
        Ok(model)
    }

    /// Loads a diffusers transformer folder (`config.json` and one or more `*.safetensors`
    /// shards with their index), or a pipeline folder holding one in `transformer/`.
    pub fn load_diffusers(dir: &Path, device: &B::Device) -> Result<Self, LoadError> {
        let dir = model_folder(dir, "transformer");
        let config = WanConfig::from_file(&dir.join("config.json"))?;
        let weights = Weights::open(&dir)?;
        Self::from_weights(config, &weights, Layout::Diffusers, device)
    }

    /// Loads a single file in Wan's original layout (with or without the
    /// `model.diffusion_model.` prefix), inferring the configuration from its shapes (see
    /// [`WanConfig::infer_original`] for `num_heads`).
    pub fn load_original(
        file: &Path,
        num_heads: Option<usize>,
        device: &B::Device,
    ) -> Result<Self, LoadError> {
        let weights = Weights::open(file)?.strip_prefix(ORIGINAL_PREFIX);
        let config = WanConfig::infer_original(&weights, file, num_heads)?;
        Self::from_weights(config, &weights, Layout::Original, device)
    }

    /// Loads a checkpoint in either layout: a folder as diffusers, a file as Wan's original
    /// (head size 128).
    pub fn load(path: &Path, device: &B::Device) -> Result<Self, LoadError> {
        if path.is_dir() {
            Self::load_diffusers(path, device)
        } else {
            Self::load_original(path, None, device)
        }
    }

    /// The configuration.
    pub fn config(&self) -> &WanConfig {
        &self.config
    }

    /// Checks `input` against the configuration; the model runs only on checked inputs.
    pub fn check_input(&self, input: WanInput<B>) -> Result<CheckedInput<B>, InputError> {
        input.check(&self.config)
    }

    /// The prediction `[batch, out_channels, frames, height, width]` of one call, every block
    /// computed (no cache).
    pub fn forward(&self, input: &CheckedInput<B>) -> Tensor<B, 5> {
        let (ctx, x) = self.embed(input);
        let x = self.run_blocks(&ctx, x, 0..self.blocks.len());
        self.head(&ctx, x)
    }

    /// The rotary table over a token grid `[frames, height, width]` (after patching), tokens
    /// in (frame, row, column) order; positions past `rope_max_seq_len` are refused by
    /// [`Self::check_input`].
    pub fn rotary_table(&self, [f, h, w]: [usize; 3], device: &B::Device) -> RopeTable<B> {
        let positions: Vec<f64> = (0..f)
            .flat_map(|i| (0..h).flat_map(move |j| (0..w).flat_map(move |k| [i, j, k])))
            .map(|p| p as f64)
            .collect();
        self.rope
            .table_from_positions(&positions, device)
            .expect("three positions per token for a three-axis embedding")
    }

    /// Output norm modulated by `temb`, projection: `[batch, tokens, dim]` to
    /// `[batch, tokens, out_channels * pt * ph * pw]`.
    pub fn project_out(&self, x: Tensor<B, 3>, temb: Tensor<B, 2>) -> Tensor<B, 3> {
        let mut halves = (self.scale_shift_table.val() + temb.unsqueeze_dim(1))
            .chunk(2, 1)
            .into_iter();
        let shift = halves.next().expect("two halves");
        let scale = halves.next().expect("two halves");
        let x = self.norm_out.forward(x) * (scale + 1.0) + shift;
        self.proj_out.forward(x)
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
        let cond = self
            .condition_embedder
            .forward(raw.timestep.clone(), raw.encoder_hidden_states.clone());
        let ctx = WanContext {
            temb: cond.temb,
            timestep_proj: cond.timestep_proj,
            text: cond.text,
            rope: self.rotary_table(grid, &x.device()),
            grid,
        };
        (ctx, x)
    }

    fn run_blocks(
        &self,
        ctx: &Self::Context,
        state: Self::State,
        blocks: Range<usize>,
    ) -> Self::State {
        self.blocks[blocks].iter().fold(state, |x, block| {
            block.forward(x, ctx.text.clone(), ctx.timestep_proj.clone(), &ctx.rope)
        })
    }

    fn image_stream(&self, state: &Self::State) -> Tensor<B, 3> {
        state.clone()
    }

    /// `norm_out` + `scale_shift_table` modulation, `proj_out`, unpatchify.
    fn head(&self, ctx: &Self::Context, image: Tensor<B, 3>) -> Self::Output {
        self.unpatchify(self.project_out(image, ctx.temb.clone()), ctx.grid)
    }
}
