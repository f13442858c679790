//! The inputs of one transformer call, their checks against the configuration, and the
//! rotary table a generation computes from them once rather than every step.

use burn::tensor::{Tensor, backend::Backend};
use dit_layers::{Checked, InputError, RopeTable, SparseVideoPlan, expect_batch, patch_grid};

use crate::WanConfig;

/// The inputs of one WAN 2.1 transformer call, as diffusers' `WanTransformer3DModel.forward`
/// takes them.
#[derive(Debug, Clone)]
pub struct WanInput<B: Backend> {
    /// Latent video (`hidden_states`) `[batch, in_channels, frames, height, width]`.
    pub latents: Tensor<B, 5>,
    /// Timestep as the pipeline passes it (the scheduler's timestep, 0..1000) `[batch]`.
    pub timestep: Tensor<B, 1>,
    /// umT5 text embeddings `[batch, text_tokens, text_dim]`.
    pub encoder_hidden_states: Tensor<B, 3>,
}

/// What [`crate::WanTransformer::check_input`] computes once from a call's constant inputs.
#[derive(Debug, Clone)]
pub struct WanPrepared<B: Backend> {
    /// The token grid `[frames, height, width]` after patching.
    pub grid: [usize; 3],
    /// Rotary table over the video tokens.
    pub rope: RopeTable<B>,
    /// The projected text embeddings `[batch, text_tokens, dim]` (`condition_embedder`'s text
    /// part).
    pub text: Tensor<B, 3>,
    /// Sparse VideoGen on these tokens, when the model attends sparsely.
    pub sparse: Option<SparseVideoPlan>,
}

/// A [`WanInput`] checked by [`crate::WanTransformer::check_input`], with what it prepared.
pub type CheckedInput<B> = Checked<WanInput<B>, WanPrepared<B>>;

dit_layers::step_tensors!(WanInput, 5);
dicache_core::join_rows!(WanInput {
    rows: [latents, timestep, encoder_hidden_states],
    shared: [],
});
dicache_core::join_rows!(WanPrepared {
    rows: [text],
    shared: [grid, rope, sparse]
});

impl<B: Backend> WanInput<B> {
    /// Checks every shape against `config` and each other; the token grid after patching.
    pub(crate) fn check(&self, config: &WanConfig) -> Result<[usize; 3], InputError> {
        let [batch, channels, frames, height, width] = self.latents.dims();
        if channels != config.in_channels {
            return Err(InputError::Shape {
                name: "latents",
                expected: format!("[batch, {}, frames, height, width]", config.in_channels),
                found: self.latents.dims().to_vec(),
            });
        }
        expect_batch("timestep", self.timestep.dims(), batch)?;
        let [text_batch, text_tokens, text_dim] = self.encoder_hidden_states.dims();
        if text_batch != batch || text_dim != config.text_dim || text_tokens == 0 {
            return Err(InputError::Shape {
                name: "encoder_hidden_states",
                expected: format!("[{batch}, text_tokens > 0, {}]", config.text_dim),
                found: self.encoder_hidden_states.dims().to_vec(),
            });
        }
        patch_grid(
            [frames, height, width],
            config.patch_size,
            Some(config.rope_max_seq_len),
        )
    }
}
