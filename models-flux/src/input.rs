//! The inputs of one transformer call, their checks against the configuration, and what a
//! generation computes from them once rather than every step.

use burn::tensor::{Tensor, backend::Backend};
use dit_layers::{Checked, InputError, RopeTable, check_guidance, expect_batch, expect_shape};

use crate::FluxConfig;

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

/// What [`crate::FluxTransformer::check_input`] computes once from a call's constant inputs.
#[derive(Debug, Clone)]
pub struct FluxPrepared<B: Backend> {
    /// Rotary table over `[txt; img]` tokens.
    pub rope: RopeTable<B>,
    /// `context_embedder(encoder_hidden_states)` `[batch, txt_tokens, hidden]`.
    pub txt: Tensor<B, 3>,
}

/// A [`FluxInput`] checked by [`crate::FluxTransformer::check_input`], with what it prepared.
pub type CheckedInput<B> = Checked<FluxInput<B>, FluxPrepared<B>>;

dit_layers::step_tensors!(FluxInput, 3);
dicache_core::join_rows!(FluxInput {
    rows: [
        latents,
        encoder_hidden_states,
        pooled_projections,
        timestep,
        guidance
    ],
    shared: [img_ids, txt_ids],
});
dicache_core::join_rows!(FluxPrepared {
    rows: [txt],
    shared: [rope]
});

impl<B: Backend> FluxInput<B> {
    /// Checks every shape against `config` and each other.
    pub(crate) fn check(&self, config: &FluxConfig) -> Result<(), InputError> {
        let [batch, img_tokens, _] = self.latents.dims();
        let txt_tokens = self.encoder_hidden_states.dims()[1];
        let axes = config.axes_dims_rope.len();
        expect_shape(
            "latents",
            &self.latents.dims(),
            &[batch, img_tokens, config.in_channels],
            format!("[batch, img_tokens, {}]", config.in_channels),
        )?;
        expect_shape(
            "encoder_hidden_states",
            &self.encoder_hidden_states.dims(),
            &[batch, txt_tokens, config.joint_attention_dim],
            format!("[{batch}, txt_tokens, {}]", config.joint_attention_dim),
        )?;
        expect_shape(
            "pooled_projections",
            &self.pooled_projections.dims(),
            &[batch, config.pooled_projection_dim],
            format!("[{batch}, {}]", config.pooled_projection_dim),
        )?;
        expect_batch("timestep", self.timestep.dims(), batch)?;
        check_guidance(
            self.guidance.as_ref().map(Tensor::dims),
            config.guidance_embeds,
            batch,
        )?;
        expect_shape(
            "img_ids",
            &self.img_ids.dims(),
            &[img_tokens, axes],
            format!("[{img_tokens}, {axes}]"),
        )?;
        expect_shape(
            "txt_ids",
            &self.txt_ids.dims(),
            &[txt_tokens, axes],
            format!("[{txt_tokens}, {axes}]"),
        )
    }
}
