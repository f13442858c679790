//! The inputs of one transformer call, their checks against the configuration, and what a
//! generation computes from them once rather than every step.

use burn::tensor::{Int, Tensor, backend::Backend};
use dit_layers::{
    Checked, InputError, RopeTable, SparseVideoPlan, check_guidance, expect_batch, patch_grid,
};

use crate::{HunyuanVideoConfig, TextMask};

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

/// What [`crate::HunyuanVideoTransformer::check_input`] computes once from a call's constant
/// inputs.
#[derive(Debug, Clone)]
pub struct HunyuanVideoPrepared<B: Backend> {
    /// The token grid `[frames, height, width]` after patching.
    pub grid: [usize; 3],
    /// The valid text tokens of each row.
    pub mask: TextMask,
    /// Rotary table over the video tokens.
    pub rope: RopeTable<B>,
    /// Sparse VideoGen on these tokens, when the model attends sparsely.
    pub sparse: Option<SparseVideoPlan>,
}

/// A [`HunyuanVideoInput`] checked by [`crate::HunyuanVideoTransformer::check_input`], with
/// what it prepared.
pub type CheckedInput<B> = Checked<HunyuanVideoInput<B>, HunyuanVideoPrepared<B>>;

dit_layers::step_tensors!(HunyuanVideoInput, 5);
dicache_core::join_rows!(HunyuanVideoInput {
    rows: [
        latents,
        timestep,
        encoder_hidden_states,
        encoder_attention_mask,
        pooled_projections,
        guidance,
    ],
    shared: [],
});
dicache_core::join_rows!(HunyuanVideoPrepared {
    rows: [mask],
    shared: [grid, rope, sparse]
});

impl<B: Backend> HunyuanVideoInput<B> {
    /// Checks every shape against `config` and each other; the token grid and the text mask.
    pub(crate) fn check(
        &self,
        config: &HunyuanVideoConfig,
    ) -> Result<([usize; 3], TextMask), InputError> {
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
        let grid = patch_grid([frames, height, width], config.patch(), None)?;
        expect_batch("timestep", self.timestep.dims(), batch)?;
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
        check_guidance(
            self.guidance.as_ref().map(Tensor::dims),
            config.guidance_embeds,
            batch,
        )?;
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
        Ok((grid, TextMask::new(lengths, tokens)))
    }
}
