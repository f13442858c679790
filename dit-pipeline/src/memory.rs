//! How much memory a generation needs beyond its loaded weights, estimated from the request
//! before anything is allocated, and checked against what the machine has free.
//!
//! The estimate counts the largest tensors alive at the peak of each phase; it is meant to
//! refuse requests that cannot fit (a 100000-pixel side, a 4096x4096 image on a 24 GB machine)
//! with an error naming the flag to lower, not to predict the last megabyte.

use crate::PipelineError;

/// Bytes in a GiB, for messages.
const GIB: f64 = (1u64 << 30) as f64;

/// Live `[tokens, hidden]`-sized activations at the peak of a transformer block: the residual
/// streams, the modulated input, q, k, v, the attention output and the projections around them.
const TRANSFORMER_STREAMS: u64 = 10;
/// Live `[tokens, mlp_hidden]`-sized activations in its feed-forward (input, activation, gate).
const MLP_STREAMS: u64 = 3;
/// Full-resolution feature maps' worth of memory at the peak of VAE decoding (the block's
/// input, normalised, activated, convolved and residual maps, the upsampler's output, and the
/// coarser levels still alive). Measured: FLUX-mini's decoder (16 channels at full resolution)
/// peaks at 1.85 GB over the loaded model at 2048x2048 and 0.46 GB at 1024x1024, 6.7 maps.
const DECODER_MAPS: u64 = 7;

/// The memory a generation needs at the peak of its two phases, beyond the loaded weights.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WorkingSet {
    /// Bytes while denoising: the transformer's activations over every token (text included).
    pub denoise: u64,
    /// Bytes while decoding: the VAE decoder's full-resolution feature maps of the frames it
    /// decodes at once, plus the decoded output.
    pub decode: u64,
}

impl WorkingSet {
    /// The estimate for a transformer of width `hidden` with a feed-forward of `mlp_hidden`
    /// over `tokens` tokens, and a VAE decoder of `decoder_channels` channels at full
    /// resolution decoding `pixels_at_once` pixels (frames times area) at a time into an
    /// output of `output_pixels` pixels (every frame), with values of `dtype_bytes` bytes.
    pub fn estimate(
        [tokens, hidden, mlp_hidden]: [usize; 3],
        [decoder_channels, pixels_at_once, output_pixels]: [usize; 3],
        dtype_bytes: usize,
    ) -> Self {
        let bytes = dtype_bytes as u64;
        let per_token = TRANSFORMER_STREAMS * hidden as u64 + MLP_STREAMS * mlp_hidden as u64;
        let maps = DECODER_MAPS * decoder_channels as u64 * pixels_at_once as u64;
        Self {
            denoise: (tokens as u64)
                .saturating_mul(per_token)
                .saturating_mul(bytes),
            decode: maps
                .saturating_add(3 * output_pixels as u64)
                .saturating_mul(bytes),
        }
    }

    /// Fails when either phase needs more than `available` bytes, with a message naming the
    /// `target` (`"a 4096x4096 image"`), the amounts and the flags that lower them.
    pub fn check(&self, available: u64, target: &str) -> Result<(), PipelineError> {
        let phases = [
            (
                self.denoise,
                "the transformer's activations",
                "--width/--height (and --frames, --max-sequence-length, --batch-size)",
            ),
            (
                self.decode,
                "the VAE decoder",
                "--width/--height (and --frames, --batch-size)",
            ),
        ];
        for (need, phase, flags) in phases {
            if need > available {
                return Err(PipelineError::Request(format!(
                    "{target} needs about {:.1} GiB for {phase} beyond the loaded model, and \
                     {:.1} GiB of memory are available: lower {flags}",
                    need as f64 / GIB,
                    available as f64 / GIB
                )));
            }
        }
        Ok(())
    }
}

/// The sizes of a pipeline's models that its memory estimate needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ModelSizes {
    /// The transformer's width (hidden size).
    pub hidden: usize,
    /// The inner width of its feed-forward.
    pub mlp_hidden: usize,
    /// The VAE decoder's channels at full resolution ([`vae::AutoencoderKl::decoder_channels`]).
    pub decoder_channels: usize,
}

/// Fails when a pipeline's weights, `need` bytes loaded with floats of `dtype_bytes` bytes
/// ([`crate::PipelineFolder::weight_bytes`]), do not fit in the `available` bytes, with a
/// message naming the `folder`, the amounts and what lowers them.
pub fn check_weights(
    need: u64,
    dtype_bytes: usize,
    available: u64,
    folder: &str,
) -> Result<(), PipelineError> {
    if need <= available {
        return Ok(());
    }
    Err(PipelineError::Request(format!(
        "loading {folder} needs about {:.1} GiB for its weights with {dtype_bytes}-byte floats \
         (half-precision files are decoded into the compute dtype; only GGUF matrices stay \
         quantized), and {:.1} GiB of memory are available: lower --dtype (bf16 or f16 halve \
         f32's), use a quantized GGUF --transformer, or use a machine with more memory",
        need as f64 / GIB,
        available as f64 / GIB
    )))
}

/// The memory this machine has free now (RAM the OS can hand out without swapping), or `None`
/// where it cannot tell.
pub fn available_memory() -> Option<u64> {
    let mut system = sysinfo::System::new();
    system.refresh_memory();
    Some(system.available_memory()).filter(|&bytes| bytes > 0)
}

/// What a request of `width` x `height` pixels and `frames` frames (1 for an image) asks for,
/// as messages name it: `"a 64x64 image"`, `"a 64x64x9 video"`.
pub fn describe([width, height, frames]: [usize; 3]) -> String {
    match frames {
        1 => format!("a {width}x{height} image"),
        f => format!("a {width}x{height}x{f} video"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weights_that_do_not_fit_are_refused_naming_the_folder_and_the_flag() {
        // FLUX.1-dev's transformer alone: 11.9 billion values.
        let values: u64 = 11_901_408_320;
        assert!(check_weights(values * 2, 2, 24 << 30, "flux-dev").is_ok());
        let msg = check_weights(values * 4, 4, 24 << 30, "flux-dev")
            .unwrap_err()
            .to_string();
        assert!(
            msg.contains("flux-dev") && msg.contains("44.3 GiB") && msg.contains("--dtype"),
            "{msg}"
        );
    }

    #[test]
    fn the_estimate_scales_with_tokens_and_pixels_and_names_the_flag() {
        // FLUX.1-dev at 1024x1024: 4096 image + 512 text tokens, width 3072, MLP 12288; its VAE
        // holds 128 channels at full resolution. bf16.
        let flux = WorkingSet::estimate([4608, 3072, 12288], [128, 1024 * 1024, 1024 * 1024], 2);
        assert_eq!(flux.denoise, 4608 * (10 * 3072 + 3 * 12288) * 2);
        assert_eq!(flux.decode, (7 * 128 + 3) * 1024 * 1024 * 2);
        assert!(flux.check(24 << 30, "a 1024x1024 image").is_ok());
        // The same VAE at 100000x100000 pixels needs terabytes.
        let huge = WorkingSet::estimate([1, 1, 1], [128, 100_000 * 100_000, 100_000 * 100_000], 4);
        let msg = huge
            .check(24 << 30, "a 100000x100000 image")
            .unwrap_err()
            .to_string();
        assert!(
            msg.contains("100000x100000")
                && msg.contains("VAE decoder")
                && msg.contains("--width/--height")
                && msg.contains("24.0 GiB"),
            "{msg}"
        );
        assert!(available_memory().is_some_and(|b| b > 0));
    }
}
