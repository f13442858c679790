//! The layout transformation of temporal heads (the reference's `*_sparse_head_placement` and
//! `*_hidden_states_placement`): video tokens frame-major ↔ token-major, text tokens in place.

use burn::tensor::{Int, Tensor, TensorData, backend::Backend};

use super::VideoTokens;

/// `x` `[batch, heads, tokens, dim]` with its video tokens reordered from frame-major
/// (`frame * frame_size + patch`) to token-major (`patch * frames + frame`).
pub fn to_token_major<B: Backend>(x: Tensor<B, 4>, tokens: VideoTokens) -> Tensor<B, 4> {
    // Token-major position j holds frame-major token (frame j % frames, patch j / frames).
    gather_tokens(x, tokens, |j| {
        let (patch, frame) = (j / tokens.frames, j % tokens.frames);
        frame * tokens.frame_size + patch
    })
}

/// The inverse of [`to_token_major`].
pub fn from_token_major<B: Backend>(x: Tensor<B, 4>, tokens: VideoTokens) -> Tensor<B, 4> {
    gather_tokens(x, tokens, |i| tokens.token_major(i))
}

/// `x` with its token `i` taken from token `source(i)` for the video tokens, the text tokens
/// in place: one gather of whole rows, which every backend does at memory speed (a reshape
/// and transpose of the `[frames, frame_size]` grid copies element by element on the CPU).
fn gather_tokens<B: Backend>(
    x: Tensor<B, 4>,
    tokens: VideoTokens,
    source: impl Fn(usize) -> usize,
) -> Tensor<B, 4> {
    let len = x.dims()[2];
    let video = tokens.video();
    let index: Vec<i64> = (0..len)
        .map(|i| if i < video { source(i) } else { i } as i64)
        .collect();
    let index = Tensor::<B, 1, Int>::from_data(TensorData::new(index, [len]), &x.device());
    x.select(2, index)
}
