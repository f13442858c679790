//! diffusers `WanTimeTextImageEmbedding` (text-to-video part): the timestep conditioning and
//! its six modulation vectors per token channel, and the projection of the text embeddings.

use burn::{
    module::Module,
    tensor::{DType, Tensor, activation::silu, backend::Backend},
};
use dit_layers::{
    EmbeddingMlp, Linear, LoadError, MlpActivation, ParamSource, SinusoidalTimesteps, per_sample,
};

/// Number of modulation vectors each block reads (shift, scale, gate of attention and FFN).
pub const BLOCK_MODULATIONS: usize = 6;

/// `condition_embedder`: `timesteps_proj` (sinusoidal, `freq_dim` channels, cosines first)
/// → `time_embedder` (SiLU MLP) → `time_proj(silu(.))` to `6 dim`; `text_embedder` (GELU-tanh
/// MLP) on the text embeddings.
#[derive(Module, Debug)]
pub struct ConditionEmbedder<B: Backend> {
    /// `timesteps_proj`.
    #[module(skip)]
    pub timesteps_proj: SinusoidalTimesteps,
    /// `time_embedder`: `freq_dim -> dim -> dim`, SiLU.
    pub time_embedder: EmbeddingMlp<B>,
    /// `time_proj`: `[dim -> 6 dim]`.
    pub time_proj: Linear<B>,
    /// `text_embedder`: `text_dim -> dim -> dim`, GELU (tanh).
    pub text_embedder: EmbeddingMlp<B>,
}

impl<B: Backend> ConditionEmbedder<B> {
    /// Builds the embedder of width `dim` from `src`.
    pub fn new(
        src: &impl ParamSource<B>,
        dim: usize,
        freq_dim: usize,
        text_dim: usize,
    ) -> Result<Self, LoadError> {
        Ok(Self {
            timesteps_proj: SinusoidalTimesteps {
                num_channels: freq_dim,
                ..SinusoidalTimesteps::standard()
            },
            time_embedder: EmbeddingMlp::new(
                &src.at("time_embedder"),
                freq_dim,
                dim,
                dim,
                MlpActivation::Silu,
            )?,
            time_proj: src.linear("time_proj", dim, BLOCK_MODULATIONS * dim, true)?,
            text_embedder: EmbeddingMlp::new(
                &src.at("text_embedder"),
                text_dim,
                dim,
                dim,
                MlpActivation::GeluTanh,
            )?,
        })
    }

    /// The timestep conditioning of a call: `temb` `[batch, dim]` and the blocks' six
    /// modulation vectors `[batch, 6, dim]`, in `dtype`.
    pub fn time(&self, timestep: Tensor<B, 1>, dtype: DType) -> (Tensor<B, 2>, Tensor<B, 3>) {
        let [batch] = timestep.dims();
        let temb = self
            .time_embedder
            .forward(self.timesteps_proj.forward(timestep).cast(dtype));
        let dim = temb.dims()[1];
        let timestep_proj = per_sample(silu(temb.clone()), |t| self.time_proj.forward(t))
            .reshape([batch, BLOCK_MODULATIONS, dim]);
        (temb, timestep_proj)
    }

    /// The projected text embeddings `[batch, text_tokens, dim]` of the umT5 states `text`;
    /// constant during a generation, so computed once, when the input is checked.
    pub fn text(&self, text: Tensor<B, 3>) -> Tensor<B, 3> {
        self.text_embedder.forward(text)
    }
}
