//! The text attention mask (`encoder_attention_mask`): which text tokens are real and which
//! are padding, and the masks diffusers derives from it.

use burn::tensor::{Bool, Tensor, TensorData, backend::Backend};

/// The valid-token counts of a right-padded text batch: row `b` of the mask is `lengths[b]`
/// ones followed by zeros (the LLaMA text encoder of HunyuanVideo pads on the right).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TextMask {
    lengths: Vec<usize>,
    tokens: usize,
}

impl dicache_core::JoinRows for TextMask {
    /// The rows of every part, of one text length.
    fn join(parts: Vec<Self>) -> Self {
        let tokens = parts[0].tokens;
        let lengths = parts.into_iter().flat_map(|m| m.lengths).collect();
        Self { lengths, tokens }
    }
}

impl TextMask {
    /// The mask of `tokens` text tokens per row whose first `lengths[b]` tokens are valid.
    pub(crate) fn new(lengths: Vec<usize>, tokens: usize) -> Self {
        Self { lengths, tokens }
    }

    /// Valid tokens per batch row.
    pub fn lengths(&self) -> &[usize] {
        &self.lengths
    }

    /// Text tokens per row, padding included.
    pub fn tokens(&self) -> usize {
        self.tokens
    }

    /// `1.0` for valid, `0.0` for padded tokens, `[batch, tokens]`.
    pub fn weights<B: Backend>(&self, device: &B::Device) -> Tensor<B, 2> {
        let values: Vec<f32> = self
            .lengths
            .iter()
            .flat_map(|&n| (0..self.tokens).map(move |t| if t < n { 1.0 } else { 0.0 }))
            .collect();
        Tensor::from_data(
            TensorData::new(values, [self.lengths.len(), self.tokens]),
            device,
        )
    }

    /// The token refiner's self-attention mask `[batch, heads, tokens, tokens]`, `true` where a
    /// key is ignored: diffusers lets query `i` see key `j` when both are valid, and every
    /// query see key 0 (so a padded query attends to the first token only).
    pub fn refiner_mask<B: Backend>(&self, heads: usize, device: &B::Device) -> Tensor<B, 4, Bool> {
        let t = self.tokens;
        let values: Vec<bool> = self
            .lengths
            .iter()
            .flat_map(|&n| {
                (0..t).flat_map(move |i| (0..t).map(move |j| !(j == 0 || (i < n && j < n))))
            })
            .collect();
        let batch = self.lengths.len();
        Tensor::<B, 4, Bool>::from_data(TensorData::new(values, [batch, 1, t, t]), device)
            .expand([batch, heads, t, t])
    }

    /// Keys each batch row's joint attention over `[video; text]` sees: the `video_tokens`
    /// video tokens and the valid text tokens (diffusers masks every key at index
    /// `>= video_tokens + valid tokens`, for every query).
    pub fn joint_key_lengths(&self, video_tokens: usize) -> Vec<usize> {
        self.lengths.iter().map(|&n| video_tokens + n).collect()
    }
}
