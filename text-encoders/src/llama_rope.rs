//! LLaMA's rotary position embedding: transformers' `LlamaRotaryEmbedding` with the default
//! frequencies or Llama 3.1's `"llama3"` scaling (`_compute_llama3_parameters`), computed in f32
//! as transformers does.

use burn::tensor::{Tensor, TensorData, backend::Backend};
use dit_layers::RopeTable;
use serde::Deserialize;

/// The rotary settings of a LLaMA `config.json`: transformers 5's `rope_parameters`, or
/// transformers 4's `rope_scaling` (with `rope_theta` beside it).
#[derive(Debug, Clone, Default, Deserialize)]
pub struct LlamaRopeParameters {
    /// `"default"` or `"llama3"` (`"type"` in older files).
    #[serde(alias = "type")]
    pub rope_type: Option<String>,
    /// Base of the frequencies (transformers 5 keeps it here).
    pub rope_theta: Option<f64>,
    /// `"llama3"`: how much the low frequencies are divided (8).
    pub factor: Option<f64>,
    /// `"llama3"`: wavelengths beyond `original_max_position_embeddings / low_freq_factor` are
    /// divided by `factor` (1).
    pub low_freq_factor: Option<f64>,
    /// `"llama3"`: wavelengths below `original_max_position_embeddings / high_freq_factor`
    /// are kept (4).
    pub high_freq_factor: Option<f64>,
    /// `"llama3"`: the context length of pre-training (8192).
    pub original_max_position_embeddings: Option<f64>,
    /// Fraction of the head rotated; only 1 is supported.
    pub partial_rotary_factor: Option<f64>,
}

/// Llama 3.1's rescaling of the rotary frequencies (`rope_type: "llama3"`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Llama3Scaling {
    /// Divisor of the low frequencies.
    pub factor: f32,
    /// Sets the wavelength above which frequencies are divided.
    pub low_freq_factor: f32,
    /// Sets the wavelength below which frequencies are kept.
    pub high_freq_factor: f32,
    /// Pre-training context length.
    pub original_max_position_embeddings: f32,
}

impl Llama3Scaling {
    /// Reads the four settings, naming the first one missing.
    pub(crate) fn from_parameters(p: &LlamaRopeParameters) -> Result<Self, String> {
        let get = |value: Option<f64>, name: &str| {
            value
                .map(|v| v as f32)
                .ok_or_else(|| format!("rope type \"llama3\" needs {name}"))
        };
        let scaling = Self {
            factor: get(p.factor, "factor")?,
            low_freq_factor: get(p.low_freq_factor, "low_freq_factor")?,
            high_freq_factor: get(p.high_freq_factor, "high_freq_factor")?,
            original_max_position_embeddings: get(
                p.original_max_position_embeddings,
                "original_max_position_embeddings",
            )?,
        };
        if scaling.high_freq_factor == scaling.low_freq_factor {
            return Err("llama3 rope needs high_freq_factor != low_freq_factor".to_string());
        }
        Ok(scaling)
    }

    /// Rescales one inverse frequency: kept above the high-frequency band edge, divided by
    /// `factor` below the low one, interpolated between.
    fn apply(&self, inv_freq: f32) -> f32 {
        let context = self.original_max_position_embeddings;
        let low_freq_wavelen = context / self.low_freq_factor;
        let high_freq_wavelen = context / self.high_freq_factor;
        let wavelen = 2.0 * std::f32::consts::PI / inv_freq;
        if wavelen < high_freq_wavelen {
            inv_freq
        } else if wavelen > low_freq_wavelen {
            inv_freq / self.factor
        } else {
            let smooth = (context / wavelen - self.low_freq_factor)
                / (self.high_freq_factor - self.low_freq_factor);
            (1.0 - smooth) * inv_freq / self.factor + smooth * inv_freq
        }
    }
}

/// The inverse frequencies of one head's rotation.
#[derive(Debug, Clone, PartialEq)]
pub struct LlamaRope {
    inv_freq: Vec<f32>,
}

impl LlamaRope {
    /// Frequencies `theta^(-2j / head_dim)` for `j < head_dim / 2` (in f32, as transformers),
    /// rescaled by `scaling` when given.
    pub fn new(head_dim: usize, theta: f64, scaling: Option<Llama3Scaling>) -> Self {
        let inv_freq = (0..head_dim / 2)
            .map(|j| {
                let f = 1.0 / (theta as f32).powf((2 * j) as f32 / head_dim as f32);
                scaling.map_or(f, |s| s.apply(f))
            })
            .collect();
        Self { inv_freq }
    }

    /// The inverse frequencies, `head_dim / 2` of them (transformers' `inv_freq`).
    pub fn inv_freq(&self) -> &[f32] {
        &self.inv_freq
    }

    /// Cosines and sines for positions `0..seq`, `[seq, head_dim]`, each value repeated for
    /// the adjacent channels `(2j, 2j + 1)` it rotates: the layout of [`RopeTable`], which the
    /// attention's query and key channels are reordered to (see `LlamaAttention`).
    pub fn table<B: Backend>(&self, seq: usize, device: &B::Device) -> RopeTable<B> {
        let head_dim = 2 * self.inv_freq.len();
        let mut cos = Vec::with_capacity(seq * head_dim);
        let mut sin = Vec::with_capacity(seq * head_dim);
        for position in 0..seq {
            for &f in &self.inv_freq {
                let angle = position as f32 * f;
                cos.extend([angle.cos(); 2]);
                sin.extend([angle.sin(); 2]);
            }
        }
        let shape = [seq, head_dim];
        RopeTable {
            cos: Tensor::from_data(TensorData::new(cos, shape), device),
            sin: Tensor::from_data(TensorData::new(sin, shape), device),
        }
    }
}
