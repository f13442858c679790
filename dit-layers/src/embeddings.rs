//! Timestep and pooled-text conditioning embeddings (diffusers `embeddings.py`): the sinusoidal
//! timestep projection, the two-layer MLPs that embed it (`TimestepEmbedding`) or a pooled text
//! vector (`PixArtAlphaTextProjection`), and their sum (`CombinedTimestep[Guidance]TextProjEmbeddings`).

use burn::{
    module::Module,
    tensor::{FloatDType, Tensor, TensorData, activation, backend::Backend},
};

use crate::{Linear, LoadError, ParamSource, per_sample};

/// Sinusoidal projection of (fractional) timesteps, diffusers' `Timesteps` /
/// `get_timestep_embedding`: `[sin(t w_j), cos(t w_j)]` with `w_j = max_period^(-j / (half - shift))`.
#[derive(Debug, Clone, PartialEq)]
pub struct SinusoidalTimesteps {
    /// Output channels (`num_channels`); odd counts are zero-padded by one.
    pub num_channels: usize,
    /// Put the cosines first.
    pub flip_sin_to_cos: bool,
    /// `downscale_freq_shift`.
    pub downscale_freq_shift: f64,
    /// Multiplies the angles.
    pub scale: f64,
    /// Period of the slowest frequency.
    pub max_period: f64,
}

impl SinusoidalTimesteps {
    /// The projection diffusers' FLUX, SD3, HunyuanVideo and WAN use: 256 channels, cosines
    /// first, shift 0, scale 1, period 10000.
    pub fn standard() -> Self {
        Self {
            num_channels: 256,
            flip_sin_to_cos: true,
            downscale_freq_shift: 0.0,
            scale: 1.0,
            max_period: 10000.0,
        }
    }

    /// Projects timesteps `t` `[batch]` to `[batch, num_channels]` (f32).
    pub fn forward<B: Backend>(&self, t: Tensor<B, 1>) -> Tensor<B, 2> {
        let half = self.num_channels / 2;
        let device = t.device();
        // The frequencies are rounded as the reference's float32 computation rounds them.
        let log_period = -(self.max_period.ln() as f32);
        let denom = half as f32 - self.downscale_freq_shift as f32;
        let freqs: Vec<f32> = (0..half)
            .map(|j| (log_period * j as f32 / denom).exp())
            .collect();
        let freqs = Tensor::<B, 1>::from_data(
            TensorData::new(freqs, [half]),
            (&device, FloatDType::F32.into()),
        );
        let angles = t.cast(FloatDType::F32).unsqueeze_dim::<2>(1) * freqs.unsqueeze::<2>();
        let angles = angles.mul_scalar(self.scale);
        let (sin, cos) = (angles.clone().sin(), angles.cos());
        let mut emb = if self.flip_sin_to_cos {
            Tensor::cat(vec![cos, sin], 1)
        } else {
            Tensor::cat(vec![sin, cos], 1)
        };
        if !self.num_channels.is_multiple_of(2) {
            let batch = emb.dims()[0];
            emb = Tensor::cat(
                vec![
                    emb,
                    Tensor::zeros([batch, 1], (&device, FloatDType::F32.into())),
                ],
                1,
            );
        }
        emb
    }
}

/// An elementwise activation: the one between the two layers of an [`EmbeddingMlp`] or a
/// [`crate::FeedForward`], or a text encoder's, selected by its transformers name
/// ([`MlpActivation::from_transformers_name`], config keys `hidden_act`, `dense_act_fn`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MlpActivation {
    /// `x * sigmoid(x)` (transformers' `"silu"`, `"swish"`).
    Silu,
    /// GELU, tanh approximation (transformers' `"gelu_new"`, `"gelu_pytorch_tanh"`).
    GeluTanh,
    /// Exact GELU, `x * Φ(x)` (transformers' `"gelu"`).
    Gelu,
    /// `x * sigmoid(1.702 x)`, OpenAI CLIP's (transformers' `"quick_gelu"`).
    QuickGelu,
    /// `max(x, 0)` (transformers' `"relu"`).
    Relu,
}

impl MlpActivation {
    /// The names [`MlpActivation::from_transformers_name`] accepts.
    pub const TRANSFORMERS_NAMES: &'static [&'static str] = &[
        "relu",
        "gelu",
        "gelu_new",
        "gelu_pytorch_tanh",
        "quick_gelu",
        "silu",
        "swish",
    ];

    /// The activation transformers' `ACT2FN` calls `name`; `None` for names not supported here.
    pub fn from_transformers_name(name: &str) -> Option<Self> {
        Some(match name {
            "relu" => Self::Relu,
            "gelu" => Self::Gelu,
            "gelu_new" | "gelu_pytorch_tanh" => Self::GeluTanh,
            "quick_gelu" => Self::QuickGelu,
            "silu" | "swish" => Self::Silu,
            _ => return None,
        })
    }

    /// Applies the activation.
    pub fn forward<B: Backend, const D: usize>(self, x: Tensor<B, D>) -> Tensor<B, D> {
        match self {
            Self::Silu => crate::silu(x),
            Self::GeluTanh => crate::gelu_tanh(x),
            Self::Gelu => activation::gelu(x),
            Self::QuickGelu => x.clone() * activation::sigmoid(x * 1.702),
            Self::Relu => activation::relu(x),
        }
    }
}

/// `linear_2(act(linear_1(x)))`: diffusers' `TimestepEmbedding` (SiLU) and
/// `PixArtAlphaTextProjection`, whose weights are both named `linear_1` and `linear_2`.
#[derive(Module, Debug)]
pub struct EmbeddingMlp<B: Backend> {
    /// First layer `[d_in -> d_hidden]`.
    pub linear_1: Linear<B>,
    /// Second layer `[d_hidden -> d_out]`.
    pub linear_2: Linear<B>,
    /// The activation between them.
    #[module(skip)]
    pub act: MlpActivation,
}

impl<B: Backend> EmbeddingMlp<B> {
    /// Builds the MLP from `src` (`linear_1`, `linear_2`, both with bias).
    pub fn new(
        src: &impl ParamSource<B>,
        d_in: usize,
        d_hidden: usize,
        d_out: usize,
        act: MlpActivation,
    ) -> Result<Self, LoadError> {
        Ok(Self {
            linear_1: src.linear("linear_1", d_in, d_hidden, true)?,
            linear_2: src.linear("linear_2", d_hidden, d_out, true)?,
            act,
        })
    }

    /// `[batch, ..., d_in]` to `[batch, ..., d_out]`, each sample on its own ([`per_sample`]).
    pub fn forward<const D: usize>(&self, x: Tensor<B, D>) -> Tensor<B, D> {
        per_sample(x, |x| {
            self.linear_2
                .forward(self.act.forward(self.linear_1.forward(x)))
        })
    }
}

/// The conditioning vector of FLUX-style DiTs, diffusers'
/// `CombinedTimestepTextProjEmbeddings` (and `CombinedTimestepGuidanceTextProjEmbeddings` when a
/// guidance embedder is present): `timestep_embedder(proj(t)) [+ guidance_embedder(proj(g))] +
/// text_embedder(pooled)`.
#[derive(Module, Debug)]
pub struct TimeTextEmbedding<B: Backend> {
    /// Sinusoidal projection of timestep and guidance (`time_proj`, 256 channels).
    #[module(skip)]
    pub time_proj: SinusoidalTimesteps,
    /// `timestep_embedder`: 256 -> dim -> dim, SiLU.
    pub timestep_embedder: EmbeddingMlp<B>,
    /// `guidance_embedder` (guidance-distilled models only): 256 -> dim -> dim, SiLU.
    pub guidance_embedder: Option<EmbeddingMlp<B>>,
    /// `text_embedder`: pooled_dim -> dim -> dim, SiLU.
    pub text_embedder: EmbeddingMlp<B>,
}

impl<B: Backend> TimeTextEmbedding<B> {
    /// Builds the embedding of width `dim` for pooled text vectors of `pooled_dim` from `src`
    /// (`timestep_embedder`, `text_embedder`, and `guidance_embedder` when `guidance`).
    pub fn new(
        src: &impl ParamSource<B>,
        dim: usize,
        pooled_dim: usize,
        guidance: bool,
    ) -> Result<Self, LoadError> {
        let time_proj = SinusoidalTimesteps::standard();
        let channels = time_proj.num_channels;
        let mlp = |name: &str, d_in| {
            EmbeddingMlp::new(&src.at(name), d_in, dim, dim, MlpActivation::Silu)
        };
        Ok(Self {
            timestep_embedder: mlp("timestep_embedder", channels)?,
            guidance_embedder: guidance
                .then(|| mlp("guidance_embedder", channels))
                .transpose()?,
            text_embedder: mlp("text_embedder", pooled_dim)?,
            time_proj,
        })
    }

    /// The conditioning `[batch, dim]` from timesteps `[batch]`, guidance `[batch]` (used only
    /// when the model has a guidance embedder) and pooled text `[batch, pooled_dim]`; timesteps
    /// and guidance are taken as given (FLUX scales them by 1000 first).
    pub fn forward(
        &self,
        timestep: Tensor<B, 1>,
        guidance: Option<Tensor<B, 1>>,
        pooled: Tensor<B, 2>,
    ) -> Tensor<B, 2> {
        let dtype = pooled.dtype();
        let embed = |mlp: &EmbeddingMlp<B>, t| mlp.forward(self.time_proj.forward(t).cast(dtype));
        let mut emb = embed(&self.timestep_embedder, timestep);
        if let (Some(mlp), Some(g)) = (&self.guidance_embedder, guidance) {
            emb = emb + embed(mlp, g);
        }
        emb + self.text_embedder.forward(pooled)
    }
}
