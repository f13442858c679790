//! Sparse VideoGen (SVG v1; Xi et al., ICML 2025; svg-project/Sparse-VideoGen) for the
//! self-attention of the video transformers (WAN 2.1, HunyuanVideo).
//!
//! A video DiT's heads attend in one of two ways: within their own and nearby frames
//! (spatial heads) or to the same positions across frames (temporal heads). SVG tells them
//! apart online, per layer and call: it samples query rows, computes their full attention and
//! their attention under an emulated spatial and temporal mask, and gives each (batch row,
//! head) the mask with the smaller mean squared error ([`sample_mse`]). A temporal head's video
//! tokens are then reordered from frame-major to token-major ([`to_token_major`]), so that both
//! classes attend through one banded mask ([`BandMask`]) whose width follows from the
//! `sparsity`; [`band_attention`] computes it without a `[heads, N, N]` mask or score matrix.
//! The first steps and layers stay dense. [`SparseVideoCall`] runs all of it for one
//! transformer call.

mod band;
mod call;
mod layout;
mod pattern;
mod profile;

use std::{fmt, sync::Arc};

use rand::{RngExt, SeedableRng, rngs::StdRng};
use thiserror::Error;

pub use band::{band_attention, band_attention_by_blocks};
pub use call::{SparseVideoCall, SparseVideoPlan};
pub use layout::{from_token_major, to_token_major};
pub use pattern::{BandMask, HeadClass, VideoTokens, band_frames, band_tokens, profile_allowed};
pub use profile::{classify, sample_mse};

/// The reference ships one set of masks per model; they differ in how the band's width is
/// rounded and compared, in the profiling masks' band (2 frames for WAN, 1.5 for
/// HunyuanVideo), in WAN's first-frame sink and in HunyuanVideo's text tokens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SvgVariant {
    /// `svg/models/wan`: video tokens only, a sink on the first frame's keys.
    Wan,
    /// `svg/models/hyvideo`: video tokens, then text tokens that attend and are attended
    /// densely; padded text tokens attend only to each other.
    HunyuanVideo,
}

/// Sparse VideoGen's settings; [`SparseVideoSettings::reference`] gives the reference's.
#[derive(Debug, Clone, PartialEq)]
pub struct SparseVideoSettings {
    /// Whose masks.
    pub variant: SvgVariant,
    /// The fraction of the attention map computed (`--sparsity`), which sets the band's
    /// width; in `(0, 1]`.
    pub sparsity: f64,
    /// The fraction of the denoising steps computed densely first (`first_times_fp`): the first
    /// `floor(warmup_steps * steps)` steps.
    pub warmup_steps: f64,
    /// The fraction of the layers that always attend densely (`first_layers_fp`): the first
    /// `floor(dense_layers * layers)`, counting HunyuanVideo's dual- then single-stream blocks.
    pub dense_layers: f64,
    /// Query rows sampled per profiling (`num_sampled_rows`).
    pub sampled_rows: usize,
    /// Rows are sampled, with replacement, among the first this many (`sample_mse_max_row`).
    pub sample_range: usize,
    /// Where the sampled rows come from.
    pub rows: RowSampler,
}

impl SparseVideoSettings {
    /// The settings of the reference's shipped text-to-video scripts
    /// (`scripts/{wan,hyvideo}/*_t2v_720p_svg.sh`): WAN sparsity 0.3 with the first 20 % of the
    /// steps dense, HunyuanVideo 0.25 with 10 %; both 3 % of the layers dense, 64 rows sampled
    /// among the first 10 000. Rows are drawn from seed 0.
    pub fn reference(variant: SvgVariant) -> Self {
        let (sparsity, warmup_steps) = match variant {
            SvgVariant::Wan => (0.3, 0.2),
            SvgVariant::HunyuanVideo => (0.25, 0.1),
        };
        Self {
            variant,
            sparsity,
            warmup_steps,
            dense_layers: 0.03,
            sampled_rows: 64,
            sample_range: 10_000,
            rows: RowSampler::Seeded(0),
        }
    }

    /// Checks every setting's range.
    pub fn validate(&self) -> Result<(), SparseVideoError> {
        let fraction = |name: &'static str, value: f64, lowest_open: bool| {
            let ok = value.is_finite()
                && value <= 1.0
                && if lowest_open {
                    value > 0.0
                } else {
                    value >= 0.0
                };
            if ok {
                Ok(())
            } else {
                let range = if lowest_open { "(0, 1]" } else { "[0, 1]" };
                Err(SparseVideoError::Setting {
                    name,
                    value: value.to_string(),
                    expected: format!("a number in {range}"),
                })
            }
        };
        fraction("sparsity", self.sparsity, true)?;
        fraction("warm-up steps", self.warmup_steps, false)?;
        fraction("dense layers", self.dense_layers, false)?;
        for (name, value) in [
            ("sampled rows", self.sampled_rows),
            ("sample range", self.sample_range),
        ] {
            if value == 0 {
                return Err(SparseVideoError::Setting {
                    name,
                    value: "0".into(),
                    expected: "at least 1".into(),
                });
            }
        }
        Ok(())
    }

    /// The layers that always attend densely, of `layers`.
    pub fn dense_layer_count(&self, layers: usize) -> usize {
        (self.dense_layers * layers as f64).floor() as usize
    }

    /// Whether step `step` of `steps` is a dense warm-up step. The reference compares the
    /// timestep with `timesteps[n - 1] - 1`, `n = floor(warmup_steps * steps)`, which selects
    /// exactly the first `n` steps of its schedule.
    pub fn is_warmup(&self, step: usize, steps: usize) -> bool {
        step < (self.warmup_steps * steps as f64).floor() as usize
    }
}

/// Where the query rows of a profiling come from.
#[derive(Clone)]
pub enum RowSampler {
    /// Drawn with replacement from a generator seeded by this seed, the step and the layer: a
    /// generation's draws do not depend on what shares its transformer calls.
    Seeded(u64),
    /// Given by a function of (step, layer): how fixtures replay the reference's draws.
    Given(Arc<dyn Fn(usize, usize) -> Vec<usize> + Send + Sync>),
}

impl RowSampler {
    /// `count` rows in `0..range` for `layer` at `step`.
    pub fn draw(&self, step: usize, layer: usize, count: usize, range: usize) -> Vec<usize> {
        match self {
            Self::Seeded(seed) => {
                let stream = ((step as u64) << 32) | layer as u64;
                let mut rng =
                    StdRng::seed_from_u64(seed ^ stream.wrapping_mul(0x9e37_79b9_7f4a_7c15));
                (0..count).map(|_| rng.random_range(0..range)).collect()
            }
            Self::Given(rows) => rows(step, layer),
        }
    }
}

impl fmt::Debug for RowSampler {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Seeded(seed) => write!(f, "Seeded({seed})"),
            Self::Given(_) => f.write_str("Given(..)"),
        }
    }
}

impl PartialEq for RowSampler {
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (Self::Seeded(a), Self::Seeded(b)) => a == b,
            (Self::Given(a), Self::Given(b)) => Arc::ptr_eq(a, b),
            _ => false,
        }
    }
}

/// Sparse VideoGen settings that cannot work, or cannot work on a given video.
#[derive(Debug, Clone, Error, PartialEq)]
pub enum SparseVideoError {
    /// A setting out of its range.
    #[error("{name} {value}: expected {expected}")]
    Setting {
        /// The setting.
        name: &'static str,
        /// Its value.
        value: String,
        /// What it may be.
        expected: String,
    },
    /// A sparsity that leaves no band on this video.
    #[error(
        "sparsity {sparsity} leaves no attention band on {frames} latent frames of {frame_size} \
         tokens{}: raise the sparsity or generate a larger video",
        if *text > 0 { format!(" with {text} text tokens") } else { String::new() }
    )]
    NoBand {
        /// The sparsity asked for.
        sparsity: f64,
        /// Latent frames.
        frames: usize,
        /// Tokens per latent frame.
        frame_size: usize,
        /// Text tokens in the attention.
        text: usize,
    },
}

/// A video transformer whose self-attention can run Sparse VideoGen.
pub trait SparseVideoModel {
    /// Whose masks its attention follows.
    const SVG_VARIANT: SvgVariant;

    /// Where the model keeps its settings (`None`: dense attention).
    fn sparse_video_mut(&mut self) -> &mut Option<Arc<SparseVideoSettings>>;

    /// Makes the model attend sparsely with `settings` from the next checked input on, or
    /// densely with `None`; an error for settings out of range or of another model's variant.
    fn set_sparse_attention(
        &mut self,
        settings: Option<SparseVideoSettings>,
    ) -> Result<(), SparseVideoError> {
        if let Some(s) = &settings {
            s.validate()?;
            if s.variant != Self::SVG_VARIANT {
                return Err(SparseVideoError::Setting {
                    name: "variant",
                    value: format!("{:?}", s.variant),
                    expected: format!("{:?}, this model's", Self::SVG_VARIANT),
                });
            }
        }
        *self.sparse_video_mut() = settings.map(Arc::new);
        Ok(())
    }
}
