//! diffusers' `WanCausalConv3d` and the feature cache that lets the decoder run one latent
//! frame at a time.

use burn::{
    module::Module,
    tensor::{Tensor, backend::Backend},
};
use dit_layers::{Conv3d, LoadError, ModelParams};

/// A 3-D convolution that is causal in time: `kernel[0] - 1` frames of padding on the past
/// side only, symmetric `padding` in space. Frame `t` of the output sees input frames
/// `t - kernel[0] + 1 ..= t`.
#[derive(Module, Debug)]
pub struct CausalConv3d<B: Backend> {
    conv: Conv3d<B>,
    /// Frames of the past each output frame sees (`kernel[0] - 1`).
    past: usize,
}

impl<B: Backend> CausalConv3d<B> {
    /// Builds the convolution `name` of `src` with a `[time, height, width]` kernel and
    /// `padding` cells on both sides of each spatial axis (diffusers' `padding=(p_t, p, p)`
    /// with `2 * p_t = kernel[0] - 1`).
    pub fn new(
        src: &ModelParams<'_, B>,
        name: &str,
        channels: (usize, usize),
        kernel: [usize; 3],
        padding: usize,
    ) -> Result<Self, LoadError> {
        Ok(Self {
            conv: src.conv3d(name, channels, kernel, [0, padding, padding], true)?,
            past: kernel[0] - 1,
        })
    }

    /// Convolves the chunk `x` `[batch, c_in, t, h, w]` of a longer clip, given the frames of
    /// the clip before it that this convolution kept in `cache` (none for the first chunk,
    /// whose past is zeros), and keeps this chunk's share of the past for the next call.
    /// Returns `[batch, c_out, t, h', w']`: every chunk yields what the whole clip's causal
    /// convolution yields for those frames.
    pub fn forward(&self, x: Tensor<B, 5>, cache: &mut Option<Tensor<B, 5>>) -> Tensor<B, 5> {
        let past = cache.take();
        let past_frames = past.as_ref().map_or(0, |p| p.dims()[2]);
        let stream = match past {
            Some(past) => Tensor::cat(vec![past, x], 2),
            None => x,
        };
        let [batch, channels, frames, height, width] = stream.dims();
        let kept = frames.min(self.past);
        if kept > 0 {
            *cache = Some(stream.clone().narrow(2, frames - kept, kept));
        }
        // Zeros stand for the frames before the clip.
        let missing = self.past - past_frames;
        let padded = if missing > 0 {
            let zeros =
                Tensor::<B, 5>::zeros([batch, channels, missing, height, width], &stream.device())
                    .cast(stream.dtype());
            Tensor::cat(vec![zeros, stream], 2)
        } else {
            stream
        };
        self.conv.forward(padded)
    }
}

/// What every causal convolution of the decoder keeps between the chunks of one decoding
/// (diffusers' `feat_cache` / `feat_idx`): one slot per convolution, handed out in call order,
/// which is the same in every chunk.
pub struct FeatureCache<B: Backend> {
    slots: Vec<Option<Tensor<B, 5>>>,
    cursor: usize,
    chunk: usize,
}

impl<B: Backend> Default for FeatureCache<B> {
    /// An empty cache: the next chunk is the clip's first.
    fn default() -> Self {
        Self {
            slots: Vec::new(),
            cursor: 0,
            chunk: 0,
        }
    }
}

impl<B: Backend> FeatureCache<B> {
    /// Whether the chunk being decoded is the clip's first.
    pub fn first_chunk(&self) -> bool {
        self.chunk == 0
    }

    /// The slot of the next causal convolution of this chunk.
    pub fn next_slot(&mut self) -> &mut Option<Tensor<B, 5>> {
        if self.cursor == self.slots.len() {
            self.slots.push(None);
        }
        self.cursor += 1;
        &mut self.slots[self.cursor - 1]
    }

    /// Ends a chunk: the next one starts again at the first convolution's slot.
    pub fn end_chunk(&mut self) {
        self.cursor = 0;
        self.chunk += 1;
    }
}
