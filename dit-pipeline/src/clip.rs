//! CLIP's pooled prompt embedding, the vector FLUX.1 and HunyuanVideo condition on besides
//! their main text encoder.

use burn::tensor::{Tensor, backend::Backend};
use text_encoders::{ClipTextModel, PromptTokenizer};

use crate::{PipelineError, PipelineFolder, check_finite};

/// CLIP's prompt length in both pipelines (`tokenizer_max_length`, `_get_clip_prompt_embeds`'
/// `max_sequence_length`).
const CLIP_MAX_LENGTH: usize = 77;

/// A CLIP text encoder with its tokenizer, for the pooled embedding of a prompt.
pub struct ClipPooled<B: Backend> {
    tokenizer: PromptTokenizer,
    model: ClipTextModel<B>,
}

impl<B: Backend> ClipPooled<B> {
    /// Loads the tokenizer from the component folder `tokenizer` and the encoder from
    /// `encoder` of `folder` (`tokenizer`/`text_encoder` in FLUX.1's pipelines,
    /// `tokenizer_2`/`text_encoder_2` in HunyuanVideo's).
    pub fn load(
        folder: &PipelineFolder,
        tokenizer: &str,
        encoder: &str,
        device: &B::Device,
    ) -> Result<Self, PipelineError> {
        Ok(Self {
            tokenizer: PromptTokenizer::clip(
                &folder.component(tokenizer, "the CLIP tokenizer")?,
                CLIP_MAX_LENGTH,
            )?,
            model: ClipTextModel::load(
                &folder.component(encoder, "the CLIP text encoder")?,
                device,
            )?,
        })
    }

    /// The pooled embedding `[1, projection_dim]` of `prompt`.
    pub fn encode(&self, prompt: &str, device: &B::Device) -> Result<Tensor<B, 2>, PipelineError> {
        let ids = self.tokenizer.encode(&[prompt])?.ids_tensor::<B>(device);
        let pooled = self.model.forward(ids)?.pooled;
        check_finite(&pooled, || "the CLIP text encoder's pooled output".into())?;
        Ok(pooled)
    }
}
