//! The inputs of one transformer call and their checks against the configuration.

use burn::tensor::{Tensor, backend::Backend};
use thiserror::Error;

use crate::FluxConfig;

/// Inputs that do not fit the model; every variant names the input.
#[derive(Debug, Error, PartialEq)]
pub enum InputError {
    /// A tensor has the wrong shape.
    #[error("input {name}: expected shape {expected}, found {found:?}")]
    Shape {
        /// The input (`latents`, `img_ids`, ...).
        name: &'static str,
        /// The expected shape, with symbolic sizes (`[batch, img_tokens, 64]`).
        expected: String,
        /// The shape given.
        found: Vec<usize>,
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
}

/// The inputs of one FLUX.1 transformer call, as diffusers' `FluxTransformer2DModel.forward`
/// takes them.
#[derive(Debug, Clone)]
pub struct FluxInput<B: Backend> {
    /// Packed latents (`hidden_states`) `[batch, img_tokens, in_channels]`.
    pub latents: Tensor<B, 3>,
    /// T5 text embeddings `[batch, txt_tokens, joint_attention_dim]`.
    pub encoder_hidden_states: Tensor<B, 3>,
    /// Pooled CLIP embedding `[batch, pooled_projection_dim]`.
    pub pooled_projections: Tensor<B, 2>,
    /// Timestep as the pipeline passes it (the flow sigma in `[0, 1]`; scaled by 1000 inside)
    /// `[batch]`.
    pub timestep: Tensor<B, 1>,
    /// Guidance scale `[batch]` (scaled by 1000 inside); required exactly when the model has
    /// `guidance_embeds`.
    pub guidance: Option<Tensor<B, 1>>,
    /// Image token positions `[img_tokens, axes]` (axis 1 row, axis 2 column in FLUX.1).
    pub img_ids: Tensor<B, 2>,
    /// Text token positions `[txt_tokens, axes]` (zeros in FLUX.1).
    pub txt_ids: Tensor<B, 2>,
}

/// A [`FluxInput`] checked against a model's configuration by
/// [`crate::FluxTransformer::check_input`]; the only input the model runs on.
#[derive(Debug, Clone)]
pub struct CheckedInput<B: Backend>(FluxInput<B>);

impl<B: Backend> CheckedInput<B> {
    /// The inputs.
    pub fn get(&self) -> &FluxInput<B> {
        &self.0
    }

    /// Back to the unchecked inputs (to change them for the next call).
    pub fn into_inner(self) -> FluxInput<B> {
        self.0
    }
}

impl<B: Backend> FluxInput<B> {
    /// Checks every shape against `config` and each other.
    pub(crate) fn check(self, config: &FluxConfig) -> Result<CheckedInput<B>, InputError> {
        let [batch, img_tokens, _] = self.latents.dims();
        let txt_tokens = self.encoder_hidden_states.dims()[1];
        let axes = config.axes_dims_rope.len();
        let expect = |name, found: Vec<usize>, want: &[usize], symbolic: String| {
            if found == want {
                Ok(())
            } else {
                Err(InputError::Shape {
                    name,
                    expected: symbolic,
                    found,
                })
            }
        };
        expect(
            "latents",
            self.latents.dims().to_vec(),
            &[batch, img_tokens, config.in_channels],
            format!("[batch, img_tokens, {}]", config.in_channels),
        )?;
        expect(
            "encoder_hidden_states",
            self.encoder_hidden_states.dims().to_vec(),
            &[batch, txt_tokens, config.joint_attention_dim],
            format!("[{batch}, txt_tokens, {}]", config.joint_attention_dim),
        )?;
        expect(
            "pooled_projections",
            self.pooled_projections.dims().to_vec(),
            &[batch, config.pooled_projection_dim],
            format!("[{batch}, {}]", config.pooled_projection_dim),
        )?;
        expect(
            "timestep",
            self.timestep.dims().to_vec(),
            &[batch],
            format!("[{batch}]"),
        )?;
        match (&self.guidance, config.guidance_embeds) {
            (Some(g), true) => expect(
                "guidance",
                g.dims().to_vec(),
                &[batch],
                format!("[{batch}]"),
            )?,
            (None, false) => {}
            _ => {
                return Err(InputError::Guidance {
                    model: config.guidance_embeds,
                });
            }
        }
        expect(
            "img_ids",
            self.img_ids.dims().to_vec(),
            &[img_tokens, axes],
            format!("[{img_tokens}, {axes}]"),
        )?;
        expect(
            "txt_ids",
            self.txt_ids.dims().to_vec(),
            &[txt_tokens, axes],
            format!("[{txt_tokens}, {axes}]"),
        )?;
        Ok(CheckedInput(self))
    }
}
