//! Building blocks shared by the diffusion-transformer ports: safetensors weight loading
//! (single files and sharded diffusers folders), configuration files, and the layers every
//! model needs (linear, norms).
//!
//! Every loader checks names, shapes and dtypes against what the model expects and reports
//! the file and key of anything wrong, so a mismatched or damaged checkpoint is an error, never
//! a panic or a silently wrong picture.

mod activation;
mod adaln;
mod attention;
mod block_keys;
mod config;
mod conv2d;
mod conv3d;
#[cfg(feature = "flex")]
mod cpu;
mod embeddings;
mod error;
mod feed_forward;
mod fused;
mod group_norm;
mod infer;
mod input;
mod layout;
mod linear;
mod mmdit;
mod mmdit_trunk;
mod noise;
mod norm;
mod params;
mod patch_embed;
mod per_sample;
mod qkv;
mod rope;
mod sparse_video;
mod transformer;
mod weights;

pub use activation::{gelu_tanh, silu};
pub use adaln::{
    ADALN_NORM_EPS, AdaLayerNormContinuous, AdaLayerNormZero, AdaLayerNormZeroSingle, Modulation,
    over_tokens, scale_shift,
};
pub use attention::{attention, attention_with_bias};
pub use block_keys::{BlockKeys, attend_keys};
pub use config::{Component, FromParams, MAX_CONFIG_INTEGER, model_folder, read_config, read_json};
pub use conv2d::{Conv2d, conv2d};
pub use conv3d::{Conv3d, conv3d};
pub use embeddings::{EmbeddingMlp, MlpActivation, SinusoidalTimesteps, TimeTextEmbedding};
pub use error::LoadError;
pub use feed_forward::FeedForward;
pub use fused::FusedRows;
pub use group_norm::{GroupNorm, group_norm};
pub use infer::ShapeProbe;
pub use input::{
    Checked, DenoisingStep, InputError, StepTensors, check_guidance, expect_batch, expect_shape,
    patch_grid, same_shape,
};
pub use linear::{Linear, QuantizedLinear, linear, linear_from_rows, linear_swapped_halves};
pub use mmdit::{
    DualStreamBlock, JointAttention, JointLayout, MmditBlocks, SingleAttention, SingleStreamBlock,
};
pub use mmdit_trunk::{MmditContext, MmditDims, MmditState, MmditTrunk};
pub use noise::{gaussian_noise, gaussian_noise_rows};
pub use norm::{LayerNorm, RmsNorm};
pub use params::{ModelParams, ParamSource, Stored, TensorMap};
pub use patch_embed::{PatchEmbed3d, PatchError};
pub use per_sample::per_sample;
pub use qkv::{Heads, QK_NORM_EPS, QkNormScope, QkvNames, QkvProjection, merge_heads};
pub use rope::{AnglePrecision, MultiAxisRope, RopeError, RopeTable};
pub use sparse_video::{
    BandMask, HeadClass, RowSampler, SparseVideoCall, SparseVideoError, SparseVideoModel,
    SparseVideoPlan, SparseVideoSettings, SvgVariant, VideoTokens, band_attention,
    band_attention_by_blocks, band_frames, band_tokens, classify, from_token_major,
    profile_allowed, sample_mse, to_token_major,
};
pub use transformer::{ConfigCheck, DiffusionTransformer, Layout, TransformerConfig};
pub use weights::{QuantizedMatrix, Weights, WeightsView};
