//! The inputs of one transformer call and their checks against the configuration.

use burn::tensor::{Int, Tensor, backend::Backend};
use thiserror::Error;

use crate::{HunyuanVideoConfig, TextMask};

/// Inputs that do not fit the model; every variant names the input.
#[derive(Debug, Error, PartialEq)]
pub enum InputError {
    /// A tensor has the wrong shape.
    #[error("input {name}: expected shape {expected}, found {found:?}")]
    Shape {
        /// The input (`latents`, `timestep`, ...).
        name: &'static str,
        /// The expected shape, with symbolic sizes.
        expected: String,
        /// The shape given.
        found: Vec<usize>,
    },
    /// A video size is not a positive multiple of the patch.
    #[error(
        "input latents: {axis} = {size} is not a positive multiple of the patch size {patch} on \
         that axis"
    )]
    NotDivisible {
        /// `frames`, `height` or `width`.
        axis: &'static str,
        /// The size given.
        size: usize,
        /// The patch size on that axis.
        patch: usize,
    },
    /// Guidance given to a model without guidance embedding, or missing for one with it.
    #[error(
        "input guidance: the model {} a guidance embedding (guidance_embeds = {model}) but guidance was {}",
        if *model { "has" } else { "has no" },
        if *model { "not given" } else { "given" }
    )]
    Guidance {
        /// Whether the model embeds guidance.
        model: bool,
    },
    /// A row of the text mask is not ones followed by zeros, or has no valid token.
    #[error(
        "input encoder_attention_mask: row {row} is {values:?}; each row must be 1s (valid \
         tokens, at least one) followed by 0s (right padding)"
    )]
    Mask {
        /// The batch row.
        row: usize,
        /// Its values.
        values: Vec<i64>,
    },
}

/// The inputs of one HunyuanVideo transformer call, as diffusers'
/// `HunyuanVideoTransformer3DModel.forward` takes them.
#[derive(Debug, Clone)]
pub struct HunyuanVideoInput<B: Backend> {
    /// Latent video (`hidden_states`) `[batch, in_channels, frames, height, width]`.
    pub latents: Tensor<B, 5>,
    /// Timestep as the pipeline passes it (the scheduler's timestep, 0..1000) `[batch]`.
    pub timestep: Tensor<B, 1>,
    /// Text encoder (LLaMA) hidden states `[batch, text_tokens, text_embed_dim]`.
    pub encoder_hidden_states: Tensor<B, 3>,
    /// `1` for real text tokens, `0` for right padding, `[batch, text_tokens]`.
    pub encoder_attention_mask: Tensor<B, 2, Int>,
    /// Pooled CLIP embedding `[batch, pooled_projection_dim]`.
    pub pooled_projections: Tensor<B, 2>,
    /// Embedded guidance scale as the pipeline passes it (scale x 1000) `[batch]`; required
    /// exactly when the model has `guidance_embeds`.
    pub guidance: Option<Tensor<B, 1>>,
}

/// A [`HunyuanVideoInput`] checked against a model's configuration by
/// [`crate::HunyuanVideoTransformer::check_input`]; the only input the model runs on.
#[derive(Debug, Clone)]
pub struct CheckedInput<B: Backend> {
    input: HunyuanVideoInput<B>,
    grid: [usize; 3],
    mask: TextMask,
}

impl<B: Backend> CheckedInput<B> {
    /// The inputs.
    pub fn get(&self) -> &HunyuanVideoInput<B> {
        &self.input
    }

    /// The token grid `[frames, height, width]` after patching.
    pub fn grid(&self) -> [usize; 3] {
        self.grid
    }

    /// The valid text tokens of each row.
    pub fn text_mask(&self) -> &TextMask {
        &self.mask
    }

    /// Back to the unchecked inputs (to change them for the next call).
    pub fn into_inner(self) -> HunyuanVideoInput<B> {
        self.input
    }
}

impl<B: Backend> HunyuanVideoInput<B> {
    /// Checks every shape against `config` and each other, and reads the text mask.
    pub(crate) fn check(self, config: &HunyuanVideoConfig) -> Result<CheckedInput<B>, InputError> {
        let shape = |name, expected: String, found: &[usize]| InputError::Shape {
            name,
            expected,
            found: found.to_vec(),
        };
        let [batch, channels, frames, height, width] = self.latents.dims();
        if channels != config.in_channels || batch == 0 {
            return Err(shape(
                "latents",
                format!("[batch > 0, {}, frames, height, width]", config.in_channels),
                &self.latents.dims(),
            ));
        }
        let mut grid = [0; 3];
        let sizes = [("frames", frames), ("height", height), ("width", width)];
        for (i, ((axis, size), patch)) in sizes.into_iter().zip(config.patch()).enumerate() {
            if size == 0 || size % patch != 0 {
                return Err(InputError::NotDivisible { axis, size, patch });
            }
            grid[i] = size / patch;
        }
        if self.timestep.dims() != [batch] {
            return Err(shape(
                "timestep",
                format!("[{batch}]"),
                &self.timestep.dims(),
            ));
        }
        let [text_batch, tokens, text_dim] = self.encoder_hidden_states.dims();
        if text_batch != batch || tokens == 0 || text_dim != config.text_embed_dim {
            return Err(shape(
                "encoder_hidden_states",
                format!("[{batch}, text_tokens > 0, {}]", config.text_embed_dim),
                &self.encoder_hidden_states.dims(),
            ));
        }
        if self.encoder_attention_mask.dims() != [batch, tokens] {
            return Err(shape(
                "encoder_attention_mask",
                format!("[{batch}, {tokens}]"),
                &self.encoder_attention_mask.dims(),
            ));
        }
        if self.pooled_projections.dims() != [batch, config.pooled_projection_dim] {
            return Err(shape(
                "pooled_projections",
                format!("[{batch}, {}]", config.pooled_projection_dim),
                &self.pooled_projections.dims(),
            ));
        }
        match (&self.guidance, config.guidance_embeds) {
            (Some(g), true) if g.dims() != [batch] => {
                return Err(shape("guidance", format!("[{batch}]"), &g.dims()));
            }
            (Some(_), true) | (None, false) => {}
            _ => {
                return Err(InputError::Guidance {
                    model: config.guidance_embeds,
                });
            }
        }
        let values: Vec<i64> = self
            .encoder_attention_mask
            .clone()
            .into_data()
            .iter::<i64>()
            .collect();
        let lengths = values
            .chunks_exact(tokens)
            .enumerate()
            .map(|(row, v)| {
                let n = v.iter().take_while(|&&x| x == 1).count();
                if n == 0 || v[n..].iter().any(|&x| x != 0) {
                    Err(InputError::Mask {
                        row,
                        values: v.to_vec(),
                    })
                } else {
                    Ok(n)
                }
            })
            .collect::<Result<_, _>>()?;
        Ok(CheckedInput {
            input: self,
            grid,
            mask: TextMask::new(lengths, tokens),
        })
    }
}
