//! The transformer's configuration: diffusers' `config.json` of `FluxTransformer2DModel`, or
//! inferred from the tensor shapes of a BFL single-file checkpoint.

use std::path::Path;

use dit_layers::{
    ConfigCheck, LoadError, MultiAxisRope, ShapeProbe, TensorMap, TransformerConfig, Weights,
};
use serde::{Deserialize, Serialize};

use crate::BflLayout;

/// Width of the MLP in every block relative to the hidden size (fixed in FLUX.1).
pub const MLP_RATIO: usize = 4;

/// Base of the rotary angles (fixed in FLUX.1).
pub const ROPE_THETA: f64 = 10000.0;

/// Hyper-parameters of a FLUX.1 transformer; the keys and defaults are those of diffusers'
/// `FluxTransformer2DModel.__init__`, so a diffusers `transformer/config.json` deserialises
/// directly (unknown keys such as `_class_name` are ignored).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct FluxConfig {
    /// Patch size of the output projection (1 in FLUX.1: latents are packed by the pipeline).
    pub patch_size: usize,
    /// Channels of a packed latent token (64 = 16 latent channels x 2 x 2).
    pub in_channels: usize,
    /// Output channels per token; `None` means `in_channels`.
    pub out_channels: Option<usize>,
    /// Number of double-stream blocks (`transformer_blocks`).
    pub num_layers: usize,
    /// Number of single-stream blocks (`single_transformer_blocks`).
    pub num_single_layers: usize,
    /// Channels per attention head.
    pub attention_head_dim: usize,
    /// Attention heads; the hidden size is `num_attention_heads * attention_head_dim`.
    pub num_attention_heads: usize,
    /// Channels of the T5 text embeddings (`encoder_hidden_states`).
    pub joint_attention_dim: usize,
    /// Channels of the pooled CLIP embedding.
    pub pooled_projection_dim: usize,
    /// Whether the model embeds a guidance scale (FLUX.1-dev) or not (FLUX.1-schnell).
    pub guidance_embeds: bool,
    /// Rotary channels per position axis; sums to `attention_head_dim`.
    pub axes_dims_rope: Vec<usize>,
}

impl Default for FluxConfig {
    /// diffusers' constructor defaults (FLUX.1-schnell sizes).
    fn default() -> Self {
        Self {
            patch_size: 1,
            in_channels: 64,
            out_channels: None,
            num_layers: 19,
            num_single_layers: 38,
            attention_head_dim: 128,
            num_attention_heads: 24,
            joint_attention_dim: 4096,
            pooled_projection_dim: 768,
            guidance_embeds: false,
            axes_dims_rope: vec![16, 56, 56],
        }
    }
}

impl FluxConfig {
    /// FLUX.1-dev: 19 double + 38 single blocks, 24 heads x 128, guidance embedding
    /// (black-forest-labs/FLUX.1-dev, `transformer/config.json`; BFL `flux/util.py` `flux-dev`).
    pub fn dev() -> Self {
        Self {
            guidance_embeds: true,
            ..Self::default()
        }
    }

    /// FLUX.1-schnell: as dev without the guidance embedding
    /// (black-forest-labs/FLUX.1-schnell, `transformer/config.json`).
    pub fn schnell() -> Self {
        Self::default()
    }

    /// Hidden size of both streams (`num_attention_heads * attention_head_dim`).
    pub fn hidden_size(&self) -> usize {
        self.num_attention_heads * self.attention_head_dim
    }

    /// Output channels per token of the final projection (`patch_size² * out_channels`).
    pub fn output_channels(&self) -> usize {
        self.patch_size * self.patch_size * self.out_channels.unwrap_or(self.in_channels)
    }

    /// Number of blocks the cache engine sees: double-stream, then single-stream.
    pub fn num_blocks(&self) -> usize {
        self.num_layers + self.num_single_layers
    }

    /// The rotary embedding of this configuration.
    pub fn rope(&self) -> Result<MultiAxisRope, dit_layers::RopeError> {
        MultiAxisRope::new(self.axes_dims_rope.clone(), ROPE_THETA)
    }
}

impl TransformerConfig for FluxConfig {
    const NAME: &'static str = "FluxConfig";
    /// ComfyUI-style exports store every name under this prefix.
    const ORIGINAL_PREFIX: &'static str = "model.diffusion_model.";
    const GGUF_ARCHITECTURE: &'static str = "flux";
    /// FLUX.1's rotary split `axes_dims_rope`.
    type OriginalHint = Option<Vec<usize>>;

    fn validate(&self, source: &Path) -> Result<(), LoadError> {
        let check = ConfigCheck::new(source);
        check.positive(&[
            ("patch_size", self.patch_size),
            ("in_channels", self.in_channels),
            ("attention_head_dim", self.attention_head_dim),
            ("num_attention_heads", self.num_attention_heads),
            ("joint_attention_dim", self.joint_attention_dim),
            ("pooled_projection_dim", self.pooled_projection_dim),
            ("out_channels", self.out_channels.unwrap_or(1)),
            ("num_layers + num_single_layers", self.num_blocks()),
        ])?;
        check.rope(
            "axes_dims_rope",
            &self.axes_dims_rope,
            self.rope(),
            self.attention_head_dim,
        )
    }

    /// Infers the configuration of a BFL single-file checkpoint (`path`, for errors) from its
    /// tensor shapes (prefix already stripped): hidden size from `img_in`, block counts from the
    /// highest `double_blocks.N` / `single_blocks.N`, head size from the QK-norm scale, guidance
    /// from `guidance_in`. The rotary split is not stored: `axes_dims_rope` is used when given,
    /// else FLUX.1's `[16, 56, 56]` when the head size is 128, else this fails.
    fn infer_original(
        weights: &Weights,
        path: &Path,
        axes_dims_rope: Option<Vec<usize>>,
    ) -> Result<Self, LoadError> {
        let probe = ShapeProbe::new(
            weights,
            path,
            "the FLUX configuration from a BFL checkpoint",
        );
        let (hidden, in_channels) = probe.matrix("img_in.weight")?;
        let (_, joint_attention_dim) = probe.matrix("txt_in.weight")?;
        let (_, pooled_projection_dim) = probe.matrix("vector_in.in_layer.weight")?;
        let (out, _) = probe.matrix("final_layer.linear.weight")?;
        let num_layers = probe.count("double_blocks.");
        let num_single_layers = probe.count("single_blocks.");
        let norm_key = if num_layers > 0 {
            "double_blocks.0.img_attn.norm.query_norm.scale"
        } else {
            "single_blocks.0.norm.query_norm.scale"
        };
        let attention_head_dim = match probe.shape(norm_key)?.as_slice() {
            &[d] if d > 0 && hidden % d == 0 => d,
            other => {
                return Err(probe.fail(format!(
                    "{norm_key:?} has shape {other:?}, which does not divide the hidden size {hidden}"
                )));
            }
        };
        let axes_dims_rope = match axes_dims_rope {
            Some(axes) => axes,
            None if attention_head_dim == 128 => Self::dev().axes_dims_rope,
            None => {
                return Err(probe.fail(format!(
                    "the head size is {attention_head_dim}, not FLUX.1's 128, so axes_dims_rope \
                     must be given"
                )));
            }
        };
        let config = Self {
            patch_size: 1,
            in_channels,
            out_channels: (out != in_channels).then_some(out),
            num_layers,
            num_single_layers,
            attention_head_dim,
            num_attention_heads: hidden / attention_head_dim,
            joint_attention_dim,
            pooled_projection_dim,
            guidance_embeds: weights.contains("guidance_in.in_layer.weight"),
            axes_dims_rope,
        };
        config.validate(path)?;
        Ok(config)
    }

    /// Black Forest Labs' single file (`flux1-dev.safetensors`).
    fn original_layout(&self) -> Box<dyn TensorMap> {
        Box::new(BflLayout::of(self))
    }

    fn original_hint(&self) -> Self::OriginalHint {
        Some(self.axes_dims_rope.clone())
    }
}
