//! The inputs of one transformer call and their checks against the configuration.

use burn::tensor::{Tensor, backend::Backend};
use thiserror::Error;

use crate::WanConfig;

/// Inputs that do not fit the model; every variant names the input.
#[derive(Debug, Error, PartialEq)]
pub enum InputError {
    /// A tensor has the wrong shape.
    #[error("input {name}: expected shape {expected}, found {found:?}")]
    Shape {
        /// The input (`latents`, `timestep`, `encoder_hidden_states`).
        name: &'static str,
        /// The expected shape, with symbolic sizes.
        expected: String,
        /// The shape given.
        found: Vec<usize>,
    },
    /// A video size is not a multiple of the patch.
    #[error(
        "input latents: {axis} = {size} is not divisible by the patch size {patch} on that axis \
         (patch_size {patch_size:?})"
    )]
    NotDivisible {
        /// `frames`, `height` or `width`.
        axis: &'static str,
        /// The size given.
        size: usize,
        /// The patch size on that axis.
        patch: usize,
        /// The whole patch.
        patch_size: [usize; 3],
    },
    /// More patches along an axis than the rotary table covers.
    #[error(
        "input latents: {patches} patches along {axis}, but the rotary table covers \
         rope_max_seq_len = {max} positions"
    )]
    TooLong {
        /// `frames`, `height` or `width`.
        axis: &'static str,
        /// Patches along that axis.
        patches: usize,
        /// `rope_max_seq_len`.
        max: usize,
    },
}

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

/// A [`WanInput`] checked against a model's configuration by
/// [`crate::WanTransformer::check_input`]; the only input the model runs on.
#[derive(Debug, Clone)]
pub struct CheckedInput<B: Backend> {
    input: WanInput<B>,
    grid: [usize; 3],
}

impl<B: Backend> CheckedInput<B> {
    /// The inputs.
    pub fn get(&self) -> &WanInput<B> {
        &self.input
    }

    /// The token grid `[frames, height, width]` after patching.
    pub fn grid(&self) -> [usize; 3] {
        self.grid
    }

    /// Back to the unchecked inputs (to change them for the next call).
    pub fn into_inner(self) -> WanInput<B> {
        self.input
    }
}

impl<B: Backend> WanInput<B> {
    /// Checks every shape against `config` and each other.
    pub(crate) fn check(self, config: &WanConfig) -> Result<CheckedInput<B>, InputError> {
        let [batch, channels, frames, height, width] = self.latents.dims();
        if channels != config.in_channels {
            return Err(InputError::Shape {
                name: "latents",
                expected: format!("[batch, {}, frames, height, width]", config.in_channels),
                found: self.latents.dims().to_vec(),
            });
        }
        if self.timestep.dims() != [batch] {
            return Err(InputError::Shape {
                name: "timestep",
                expected: format!("[{batch}]"),
                found: self.timestep.dims().to_vec(),
            });
        }
        let [text_batch, text_tokens, text_dim] = self.encoder_hidden_states.dims();
        if text_batch != batch || text_dim != config.text_dim || text_tokens == 0 {
            return Err(InputError::Shape {
                name: "encoder_hidden_states",
                expected: format!("[{batch}, text_tokens > 0, {}]", config.text_dim),
                found: self.encoder_hidden_states.dims().to_vec(),
            });
        }
        let mut grid = [0; 3];
        for (i, (axis, size)) in [("frames", frames), ("height", height), ("width", width)]
            .into_iter()
            .enumerate()
        {
            let patch = config.patch_size[i];
            if size == 0 || size % patch != 0 {
                return Err(InputError::NotDivisible {
                    axis,
                    size,
                    patch,
                    patch_size: config.patch_size,
                });
            }
            grid[i] = size / patch;
            if grid[i] > config.rope_max_seq_len {
                return Err(InputError::TooLong {
                    axis,
                    patches: grid[i],
                    max: config.rope_max_seq_len,
                });
            }
        }
        Ok(CheckedInput { input: self, grid })
    }
}
