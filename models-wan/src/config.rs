//! The transformer's configuration: diffusers' `config.json` of `WanTransformer3DModel`, or
//! inferred from the tensor shapes of a checkpoint in Wan's original single-file layout.

use std::path::Path;

use dit_layers::{
    ConfigCheck, LoadError, MultiAxisRope, ShapeProbe, TensorMap, TransformerConfig, Weights,
};
use serde::{Deserialize, Serialize};

use crate::WanOriginalLayout;

/// Base of the rotary angles (`WanRotaryPosEmbed(theta=10000)`).
pub const ROPE_THETA: f64 = 10000.0;

/// Channels per head of every released WAN 2.1 model, used to infer the head count of an
/// original checkpoint (its QK norms span all heads, so the shapes do not tell it).
pub const WAN21_HEAD_DIM: usize = 128;

/// The only `qk_norm` this port (and every WAN 2.1 checkpoint) uses: one RMS norm over all
/// heads' channels of the queries and of the keys.
pub const QK_NORM_ACROSS_HEADS: &str = "rms_norm_across_heads";

/// Hyper-parameters of a WAN 2.1 transformer; the keys and defaults are those of diffusers'
/// `WanTransformer3DModel.__init__`, so a diffusers `transformer/config.json` deserialises
/// directly (unknown keys such as `_class_name` are ignored).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct WanConfig {
    /// Patch (frames, height, width) of the patch embedding and the unpatchify.
    pub patch_size: [usize; 3],
    /// Attention heads; the hidden size is `num_attention_heads * attention_head_dim`.
    pub num_attention_heads: usize,
    /// Channels per attention head.
    pub attention_head_dim: usize,
    /// Latent channels in.
    pub in_channels: usize,
    /// Latent channels out; `None` means `in_channels`.
    pub out_channels: Option<usize>,
    /// Channels of the umT5 text embeddings.
    pub text_dim: usize,
    /// Channels of the sinusoidal timestep projection.
    pub freq_dim: usize,
    /// Inner width of each block's feed-forward network.
    pub ffn_dim: usize,
    /// Number of transformer blocks.
    pub num_layers: usize,
    /// Whether the cross-attention input is normalised by an affine layer norm (`norm2`).
    pub cross_attn_norm: bool,
    /// Query/key normalisation; only `"rms_norm_across_heads"` is supported (see
    /// [`QK_NORM_ACROSS_HEADS`]).
    pub qk_norm: Option<String>,
    /// Epsilon of every norm.
    pub eps: f64,
    /// Channels of the CLIP image embedding of the image-to-video models; must be `None`.
    pub image_dim: Option<usize>,
    /// Image key/value projections of the image-to-video models; must be `None`.
    pub added_kv_proj_dim: Option<usize>,
    /// Positions per axis the rotary table covers.
    pub rope_max_seq_len: usize,
    /// Learned image position embedding (first-last-frame model); must be `None`.
    pub pos_embed_seq_len: Option<usize>,
}

impl Default for WanConfig {
    /// diffusers' constructor defaults (the sizes of WAN 2.1 T2V-14B).
    fn default() -> Self {
        Self {
            patch_size: [1, 2, 2],
            num_attention_heads: 40,
            attention_head_dim: 128,
            in_channels: 16,
            out_channels: Some(16),
            text_dim: 4096,
            freq_dim: 256,
            ffn_dim: 13824,
            num_layers: 40,
            cross_attn_norm: true,
            qk_norm: Some(QK_NORM_ACROSS_HEADS.to_string()),
            eps: 1e-6,
            image_dim: None,
            added_kv_proj_dim: None,
            rope_max_seq_len: 1024,
            pos_embed_seq_len: None,
        }
    }
}

impl WanConfig {
    /// WAN 2.1 T2V-1.3B: 30 blocks, 12 heads x 128 = 1536, FFN 8960 (Wan-AI/Wan2.1-T2V-1.3B-Diffusers
    /// `transformer/config.json`; Wan's `wan/configs/wan_t2v_1_3B.py`).
    pub fn t2v_1_3b() -> Self {
        Self {
            num_attention_heads: 12,
            ffn_dim: 8960,
            num_layers: 30,
            ..Self::default()
        }
    }

    /// WAN 2.1 T2V-14B: 40 blocks, 40 heads x 128 = 5120, FFN 13824 (Wan-AI/Wan2.1-T2V-14B-Diffusers
    /// `transformer/config.json`; Wan's `wan/configs/wan_t2v_14B.py`).
    pub fn t2v_14b() -> Self {
        Self::default()
    }

    /// Hidden size (`num_attention_heads * attention_head_dim`).
    pub fn hidden_size(&self) -> usize {
        self.num_attention_heads * self.attention_head_dim
    }

    /// Latent channels of the output.
    pub fn output_channels(&self) -> usize {
        self.out_channels.unwrap_or(self.in_channels)
    }

    /// Width of `proj_out`: `out_channels * pt * ph * pw`.
    pub fn proj_out_channels(&self) -> usize {
        self.output_channels() * self.patch_size.iter().product::<usize>()
    }

    /// Rotary channels per axis (frames, height, width), as `WanRotaryPosEmbed` splits the head:
    /// height and width get `2 * (head_dim / 6)` each, frames the rest.
    pub fn rope_axes(&self) -> [usize; 3] {
        let hw = 2 * (self.attention_head_dim / 6);
        [self.attention_head_dim - 2 * hw, hw, hw]
    }

    /// The rotary embedding of this configuration.
    pub fn rope(&self) -> Result<MultiAxisRope, dit_layers::RopeError> {
        MultiAxisRope::new(self.rope_axes().to_vec(), ROPE_THETA)
    }
}

impl TransformerConfig for WanConfig {
    const NAME: &'static str = "WanConfig";
    /// ComfyUI-style exports store every name under this prefix.
    const ORIGINAL_PREFIX: &'static str = "model.diffusion_model.";
    const GGUF_ARCHITECTURE: &'static str = "wan";
    /// The head count.
    type OriginalHint = Option<usize>;

    fn validate(&self, source: &Path) -> Result<(), LoadError> {
        let check = ConfigCheck::new(source);
        check.positive(&[
            ("num_attention_heads", self.num_attention_heads),
            ("attention_head_dim", self.attention_head_dim),
            ("in_channels", self.in_channels),
            ("text_dim", self.text_dim),
            ("freq_dim", self.freq_dim),
            ("ffn_dim", self.ffn_dim),
            ("num_layers", self.num_layers),
            ("rope_max_seq_len", self.rope_max_seq_len),
            ("out_channels", self.out_channels.unwrap_or(1)),
        ])?;
        check.that(!self.patch_size.contains(&0), || {
            format!("patch_size {:?} must be positive", self.patch_size)
        })?;
        check.that(self.eps.is_finite() && self.eps > 0.0, || {
            format!("eps {} must be positive", self.eps)
        })?;
        check.that(
            self.qk_norm.as_deref() == Some(QK_NORM_ACROSS_HEADS),
            || {
                format!(
                    "qk_norm {:?} is not supported, only {QK_NORM_ACROSS_HEADS:?}",
                    self.qk_norm
                )
            },
        )?;
        let image_to_video = [
            ("image_dim", self.image_dim),
            ("added_kv_proj_dim", self.added_kv_proj_dim),
            ("pos_embed_seq_len", self.pos_embed_seq_len),
        ];
        if let Some((name, Some(v))) = image_to_video.into_iter().find(|(_, v)| v.is_some()) {
            return Err(check.fail(format!(
                "{name} = {v}: image-to-video WAN models are not supported, only text-to-video \
                 (image_dim, added_kv_proj_dim and pos_embed_seq_len must be null)"
            )));
        }
        self.rope().map_err(|e| {
            check.fail(format!(
                "attention_head_dim {} gives the rotary split {:?}: {e}",
                self.attention_head_dim,
                self.rope_axes()
            ))
        })?;
        Ok(())
    }

    /// Infers the configuration of a checkpoint in Wan's original layout (`path`, for errors)
    /// from its tensor shapes (prefix already stripped): hidden size, patch and channels from
    /// `patch_embedding`, text and frequency widths from `text_embedding.0` / `time_embedding.0`,
    /// FFN width from `blocks.0.ffn.0`, block count from the highest `blocks.N`, output channels
    /// from `head.head`, `cross_attn_norm` from `blocks.0.norm3`. The head count is not stored:
    /// `num_heads` is used when given, else `hidden / 128` (every WAN 2.1 model) when that
    /// divides, else this fails. `eps` and `rope_max_seq_len` take Wan's values (1e-6, 1024).
    fn infer_original(
        weights: &Weights,
        path: &Path,
        num_heads: Option<usize>,
    ) -> Result<Self, LoadError> {
        let probe = ShapeProbe::new(
            weights,
            path,
            "the WAN configuration from an original-layout checkpoint",
        );
        if weights.keys().iter().any(|k| k.starts_with("img_emb.")) {
            return Err(probe.fail(
                "it holds an image embedder (img_emb.*): image-to-video WAN models are not \
                 supported, only text-to-video"
                    .into(),
            ));
        }
        let (hidden, in_channels, patch_size) =
            match probe.shape("patch_embedding.weight")?.as_slice() {
                &[hidden, c, pt, ph, pw] => (hidden, c, [pt, ph, pw]),
                other => {
                    return Err(probe.fail(format!(
                        "tensor \"patch_embedding.weight\" has shape {other:?}, expected 5-D"
                    )));
                }
            };
        let (_, text_dim) = probe.matrix("text_embedding.0.weight")?;
        let (_, freq_dim) = probe.matrix("time_embedding.0.weight")?;
        let (ffn_dim, _) = probe.matrix("blocks.0.ffn.0.weight")?;
        let (proj_out, _) = probe.matrix("head.head.weight")?;
        let num_layers = probe.count("blocks.");
        let patch_volume: usize = patch_size.iter().product();
        if patch_volume == 0 || proj_out % patch_volume != 0 {
            return Err(probe.fail(format!(
                "head.head has {proj_out} outputs, not a multiple of the patch volume {patch_volume}"
            )));
        }
        let num_attention_heads = match num_heads {
            Some(heads) => heads,
            None if hidden % WAN21_HEAD_DIM == 0 => hidden / WAN21_HEAD_DIM,
            None => {
                return Err(probe.fail(format!(
                    "the hidden size {hidden} is not a multiple of WAN 2.1's head size \
                     {WAN21_HEAD_DIM}, so the number of heads must be given"
                )));
            }
        };
        if num_attention_heads == 0 || hidden % num_attention_heads != 0 {
            return Err(probe.fail(format!(
                "{num_attention_heads} heads do not divide the hidden size {hidden}"
            )));
        }
        let config = Self {
            patch_size,
            num_attention_heads,
            attention_head_dim: hidden / num_attention_heads,
            in_channels,
            out_channels: Some(proj_out / patch_volume),
            text_dim,
            freq_dim,
            ffn_dim,
            num_layers,
            cross_attn_norm: weights.contains("blocks.0.norm3.weight"),
            ..Self::default()
        };
        config.validate(path)?;
        Ok(config)
    }

    /// Wan's original `WanModel` names (`blocks.N.self_attn.q`).
    fn original_layout(&self) -> Box<dyn TensorMap> {
        Box::new(WanOriginalLayout)
    }

    fn original_hint(&self) -> Self::OriginalHint {
        Some(self.num_attention_heads)
    }
}
