//! What a diffusion transformer exposes to the cache engine.

use std::ops::Range;

use burn::tensor::{Tensor, backend::Backend};

use crate::{BatchRows, HeadClasses};

/// A diffusion transformer whose deep blocks the cache engine may skip.
///
/// One transformer call is `embed`, then `run_blocks(0..num_blocks())`, then `head` on the
/// image stream. The engine may split the block range (probe `0..m`, then resume `m..M`) and
/// replace the image stream entering the head with a cached approximation.
pub trait CacheableModel<B: Backend> {
    /// Inputs of one transformer call (latents, timestep, text embeddings, ...).
    type Input;
    /// What `embed` computes once per call and the blocks and head read (modulation vectors,
    /// rotary tables, masks, token counts); its rows are those of the batch.
    type Context: BatchRows;
    /// The hidden state flowing through the blocks (both streams for dual-stream models),
    /// `[batch, ...]`.
    type State: Clone + BatchRows;
    /// The result of the head (the velocity/noise prediction).
    type Output;

    /// Number of blocks the engine may run, in order (double- then single-stream blocks).
    fn num_blocks(&self) -> usize;

    /// Embeds one call's inputs into the state entering block 0.
    fn embed(&self, input: &Self::Input) -> (Self::Context, Self::State);

    /// Runs blocks `blocks.start .. blocks.end` on `state`.
    fn run_blocks(
        &self,
        ctx: &Self::Context,
        state: Self::State,
        blocks: Range<usize>,
    ) -> Self::State;

    /// The cached stream of a state: the image/video tokens, `[batch, tokens, hidden]`.
    fn image_stream(&self, state: &Self::State) -> Tensor<B, 3>;

    /// Final norm, projection and unpatchify of the image stream after all blocks.
    fn head(&self, ctx: &Self::Context, image: Tensor<B, 3>) -> Self::Output;

    /// What each batch row's self-attention heads did during the call whose context is `ctx`
    /// (the full batch's, after its blocks ran), for the trace; empty (the default) for a model
    /// that attends densely.
    fn head_classes(&self, ctx: &Self::Context) -> Vec<HeadClasses> {
        let _ = ctx;
        Vec::new()
    }

    /// One call with every block computed (no cache): the model's plain forward.
    fn forward(&self, input: &Self::Input) -> Self::Output {
        let (ctx, state) = self.embed(input);
        let state = self.run_blocks(&ctx, state, 0..self.num_blocks());
        self.head(&ctx, self.image_stream(&state))
    }
}
