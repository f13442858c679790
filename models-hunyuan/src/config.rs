//! The transformer's configuration: diffusers' `config.json` of
//! `HunyuanVideoTransformer3DModel`, or inferred from the tensor shapes of a checkpoint in
//! Tencent's original layout.

use std::path::Path;

use dit_layers::{
    AnglePrecision, ConfigCheck, LoadError, MultiAxisRope, ShapeProbe, TensorMap,
    TransformerConfig, Weights,
};
use serde::{Deserialize, Serialize};

use crate::OriginalLayout;

/// The only query/key normalisation of HunyuanVideo (and of this port): a per-head RMS norm.
pub const QK_NORM_RMS: &str = "rms_norm";

/// Width of the token refiner's MLP relative to the hidden size: diffusers builds
/// `HunyuanVideoTokenRefiner` with its default `mlp_ratio = 4.0`, whatever the config says.
pub const REFINER_MLP_RATIO: f64 = 4.0;

/// Hyper-parameters of a HunyuanVideo transformer; the keys and defaults are those of
/// diffusers' `HunyuanVideoTransformer3DModel.__init__`, so a diffusers `transformer/config.json`
/// deserialises directly (unknown keys such as `_class_name` are ignored).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct HunyuanVideoConfig {
    /// Latent channels in.
    pub in_channels: usize,
    /// Latent channels out; `None` (or 0, as diffusers' `out_channels or in_channels`) means
    /// `in_channels`.
    pub out_channels: Option<usize>,
    /// Attention heads; the hidden size is `num_attention_heads * attention_head_dim`.
    pub num_attention_heads: usize,
    /// Channels per attention head.
    pub attention_head_dim: usize,
    /// Number of dual-stream blocks (`transformer_blocks`).
    pub num_layers: usize,
    /// Number of single-stream blocks (`single_transformer_blocks`).
    pub num_single_layers: usize,
    /// Number of blocks of the text token refiner (`context_embedder`).
    pub num_refiner_layers: usize,
    /// Width of the blocks' MLPs relative to the hidden size (truncated to an integer width).
    pub mlp_ratio: f64,
    /// Spatial patch size (height and width).
    pub patch_size: usize,
    /// Temporal patch size.
    pub patch_size_t: usize,
    /// Query/key normalisation; only `"rms_norm"` (see [`QK_NORM_RMS`]).
    pub qk_norm: String,
    /// Whether the model embeds a guidance scale (HunyuanVideo is guidance-distilled).
    pub guidance_embeds: bool,
    /// Channels of the text encoder's (LLaMA) hidden states.
    pub text_embed_dim: usize,
    /// Channels of the pooled CLIP embedding.
    pub pooled_projection_dim: usize,
    /// Base of the rotary angles.
    pub rope_theta: f64,
    /// Rotary channels per axis (frames, height, width); sums to `attention_head_dim`.
    pub rope_axes_dim: Vec<usize>,
    /// Image conditioning of the image-to-video models: `None` (text-to-video) or
    /// `"latent_concat"` (the same transformer, image latents concatenated to the channels by
    /// the pipeline); `"token_replace"` is not supported.
    pub image_condition_type: Option<String>,
}

impl Default for HunyuanVideoConfig {
    /// diffusers' constructor defaults: the released HunyuanVideo (T2V, 13B).
    fn default() -> Self {
        Self {
            in_channels: 16,
            out_channels: Some(16),
            num_attention_heads: 24,
            attention_head_dim: 128,
            num_layers: 20,
            num_single_layers: 40,
            num_refiner_layers: 2,
            mlp_ratio: 4.0,
            patch_size: 2,
            patch_size_t: 1,
            qk_norm: QK_NORM_RMS.to_string(),
            guidance_embeds: true,
            text_embed_dim: 4096,
            pooled_projection_dim: 768,
            rope_theta: 256.0,
            rope_axes_dim: vec![16, 56, 56],
            image_condition_type: None,
        }
    }
}

impl HunyuanVideoConfig {
    /// HunyuanVideo text-to-video (13B): 20 dual- + 40 single-stream blocks, 24 heads x 128 =
    /// 3072, 2 refiner blocks, rotary split (16, 56, 56) with theta 256, guidance embedding
    /// (hunyuanvideo-community/HunyuanVideo `transformer/config.json`; Tencent's
    /// `hyvideo/modules/models.py`, `HUNYUAN_VIDEO_CONFIG["HYVideo-T/2-cfgdistill"]`).
    pub fn hunyuan_video() -> Self {
        Self::default()
    }

    /// Hidden size (`num_attention_heads * attention_head_dim`).
    pub fn hidden_size(&self) -> usize {
        self.num_attention_heads * self.attention_head_dim
    }

    /// Latent channels of the output.
    pub fn output_channels(&self) -> usize {
        match self.out_channels {
            Some(c) if c > 0 => c,
            _ => self.in_channels,
        }
    }

    /// The patch (frames, height, width).
    pub fn patch(&self) -> [usize; 3] {
        [self.patch_size_t, self.patch_size, self.patch_size]
    }

    /// Width of `proj_out`: `patch_size_t * patch_size² * out_channels`.
    pub fn proj_out_channels(&self) -> usize {
        self.patch().iter().product::<usize>() * self.output_channels()
    }

    /// Inner width of the blocks' MLPs, `int(hidden * mlp_ratio)` as diffusers computes it.
    pub fn mlp_dim(&self) -> usize {
        (self.hidden_size() as f64 * self.mlp_ratio) as usize
    }

    /// Inner width of the token refiner's MLPs.
    pub fn refiner_mlp_dim(&self) -> usize {
        (self.hidden_size() as f64 * REFINER_MLP_RATIO) as usize
    }

    /// Number of blocks the cache engine sees: dual-stream, then single-stream.
    pub fn num_blocks(&self) -> usize {
        self.num_layers + self.num_single_layers
    }

    /// The rotary embedding (f32 angles, as diffusers' `get_1d_rotary_pos_embed` computes them).
    pub fn rope(&self) -> Result<MultiAxisRope, dit_layers::RopeError> {
        Ok(
            MultiAxisRope::new(self.rope_axes_dim.clone(), self.rope_theta)?
                .with_precision(AnglePrecision::F32),
        )
    }
}

impl TransformerConfig for HunyuanVideoConfig {
    const NAME: &'static str = "HunyuanVideoConfig";
    /// The `module` entry of DeepSpeed's `mp_rank_00_model_states.pt`, flattened.
    const ORIGINAL_PREFIX: &'static str = "module.";
    const GGUF_ARCHITECTURE: &'static str = "hyvid";
    /// The rotary split `rope_axes_dim`.
    type OriginalHint = Option<Vec<usize>>;

    fn validate(&self, source: &Path) -> Result<(), LoadError> {
        let check = ConfigCheck::new(source);
        check.positive(&[
            ("in_channels", self.in_channels),
            ("num_attention_heads", self.num_attention_heads),
            ("attention_head_dim", self.attention_head_dim),
            ("patch_size", self.patch_size),
            ("patch_size_t", self.patch_size_t),
            ("text_embed_dim", self.text_embed_dim),
            ("pooled_projection_dim", self.pooled_projection_dim),
            ("num_layers + num_single_layers", self.num_blocks()),
        ])?;
        check.that(
            self.mlp_ratio.is_finite() && self.mlp_ratio > 0.0 && self.mlp_dim() > 0,
            || {
                format!(
                    "mlp_ratio {} must give a positive MLP width",
                    self.mlp_ratio
                )
            },
        )?;
        check.that(self.rope_theta.is_finite() && self.rope_theta > 0.0, || {
            format!("rope_theta {} must be positive", self.rope_theta)
        })?;
        check.that(self.qk_norm == QK_NORM_RMS, || {
            format!(
                "qk_norm {:?} is not supported, only {QK_NORM_RMS:?}",
                self.qk_norm
            )
        })?;
        check.that(
            matches!(
                self.image_condition_type.as_deref(),
                None | Some("latent_concat")
            ),
            || {
                format!(
                    "image_condition_type {:?} is not supported: only text-to-video (null) and \
                     \"latent_concat\"; the \"token_replace\" image-to-video blocks are not ported",
                    self.image_condition_type.as_deref().unwrap_or_default()
                )
            },
        )?;
        check.that(self.rope_axes_dim.len() == 3, || {
            format!(
                "rope_axes_dim {:?} must have three axes (frames, height, width)",
                self.rope_axes_dim
            )
        })?;
        check.rope(
            "rope_axes_dim",
            &self.rope_axes_dim,
            self.rope(),
            self.attention_head_dim,
        )
    }

    /// Infers the configuration of `weights`, a checkpoint in Tencent's original layout read
    /// from `path` (names without the `module.` prefix): channels, patch, hidden and head size,
    /// MLP width, block and refiner-block counts and the guidance embedding from the tensor
    /// shapes. The rotary split cannot be read from shapes: `rope_axes_dim` gives it, else it
    /// defaults to HunyuanVideo's (16, 56, 56) when the head size is 128 and is an error
    /// otherwise. The rotary base is HunyuanVideo's 256.
    fn infer_original(
        weights: &Weights,
        path: &Path,
        rope_axes_dim: Option<Vec<usize>>,
    ) -> Result<Self, LoadError> {
        let probe = ShapeProbe::new(
            weights,
            path,
            "the HunyuanVideo configuration from an original checkpoint",
        );
        let key = "img_in.proj.weight";
        let (hidden, in_channels, patch_size_t, patch_size) = match probe.shape(key)?.as_slice() {
            &[hidden, in_channels, pt, ph, pw] if ph == pw => (hidden, in_channels, pt, ph),
            other => {
                return Err(probe.fail(format!(
                    "{key:?} has shape {other:?}, expected [hidden, in_channels, pt, p, p]"
                )));
            }
        };
        let (_, text_embed_dim) = probe.matrix("txt_in.input_embedder.weight")?;
        let (_, pooled_projection_dim) = probe.matrix("vector_in.in_layer.weight")?;
        let key = "final_layer.linear.weight";
        let (proj_out, _) = probe.matrix(key)?;
        let patch_volume = patch_size_t * patch_size * patch_size;
        if patch_volume == 0 || proj_out % patch_volume != 0 {
            return Err(probe.fail(format!(
                "{key:?} has {proj_out} rows, not a multiple of the patch volume {patch_volume}"
            )));
        }
        let num_layers = probe.count("double_blocks.");
        let num_single_layers = probe.count("single_blocks.");
        let (norm_key, mlp_key) = if num_layers > 0 {
            (
                "double_blocks.0.img_attn_q_norm.weight",
                "double_blocks.0.img_mlp.fc1.weight",
            )
        } else {
            (
                "single_blocks.0.q_norm.weight",
                "single_blocks.0.linear2.weight",
            )
        };
        let attention_head_dim = match probe.shape(norm_key)?.as_slice() {
            &[d] if d > 0 && hidden % d == 0 => d,
            other => {
                return Err(probe.fail(format!(
                    "{norm_key:?} has shape {other:?}, which does not divide the hidden size \
                     {hidden}"
                )));
            }
        };
        let mlp_dim = match probe.matrix(mlp_key)? {
            (rows, _) if num_layers > 0 => rows,
            (_, cols) => cols.saturating_sub(hidden),
        };
        let mlp_ratio = mlp_dim as f64 / hidden as f64;
        let rope_axes_dim = match rope_axes_dim {
            Some(axes) => axes,
            None if attention_head_dim == 128 => Self::hunyuan_video().rope_axes_dim,
            None => {
                return Err(probe.fail(format!(
                    "the head size is {attention_head_dim}, not HunyuanVideo's 128, so \
                     rope_axes_dim must be given"
                )));
            }
        };
        let config = Self {
            in_channels,
            out_channels: Some(proj_out / patch_volume),
            num_attention_heads: hidden / attention_head_dim,
            attention_head_dim,
            num_layers,
            num_single_layers,
            num_refiner_layers: probe.count("txt_in.individual_token_refiner.blocks."),
            mlp_ratio,
            patch_size,
            patch_size_t,
            qk_norm: QK_NORM_RMS.to_string(),
            guidance_embeds: weights.contains("guidance_in.mlp.0.weight"),
            text_embed_dim,
            pooled_projection_dim,
            rope_theta: Self::hunyuan_video().rope_theta,
            rope_axes_dim,
            image_condition_type: None,
        };
        if config.mlp_dim() != mlp_dim {
            return Err(probe.fail(format!(
                "{mlp_key:?} implies an MLP width of {mlp_dim}, which no mlp_ratio gives for \
                 hidden size {hidden}"
            )));
        }
        config.validate(path)?;
        Ok(config)
    }

    /// Tencent's original `HYVideoDiffusionTransformer` names.
    fn original_layout(&self) -> Box<dyn TensorMap> {
        Box::new(OriginalLayout::of(self))
    }

    fn original_hint(&self) -> Self::OriginalHint {
        Some(self.rope_axes_dim.clone())
    }
}
