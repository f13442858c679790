//! The layout transformation of temporal heads (the reference's `*_sparse_head_placement` and
//! `*_hidden_states_placement`): video tokens frame-major ↔ token-major, text tokens in place.

use burn::tensor::{Tensor, backend::Backend};

use super::VideoTokens;

/// `x` `[batch, heads, tokens, dim]` with its video tokens reordered from frame-major
/// (`frame * frame_size + patch`) to token-major (`patch * frames + frame`).
pub fn to_token_major<B: Backend>(x: Tensor<B, 4>, tokens: VideoTokens) -> Tensor<B, 4> {
    reorder(x, tokens, [tokens.frames, tokens.frame_size])
}

/// The inverse of [`to_token_major`].
pub fn from_token_major<B: Backend>(x: Tensor<B, 4>, tokens: VideoTokens) -> Tensor<B, 4> {
    reorder(x, tokens, [tokens.frame_size, tokens.frames])
}

/// Transposes the video tokens of `x`, read as an `[outer, inner]` grid.
fn reorder<B: Backend>(
    x: Tensor<B, 4>,
    tokens: VideoTokens,
    [outer, inner]: [usize; 2],
) -> Tensor<B, 4> {
    let [batch, heads, len, dim] = x.dims();
    let video = tokens.video();
    let reordered = x
        .clone()
        .narrow(2, 0, video)
        .reshape([batch * heads, outer, inner, dim])
        .swap_dims(1, 2)
        .reshape([batch, heads, video, dim]);
    if len == video {
        reordered
    } else {
        Tensor::cat(vec![reordered, x.narrow(2, video, len - video)], 2)
    }
}
