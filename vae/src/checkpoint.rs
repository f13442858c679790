//! What a diffusers VAE checkpoint holds beyond the decoder.

/// Prefixes of the encoder-side weights a full VAE checkpoint holds and decoding does not read.
const ENCODER_PREFIXES: [&str; 2] = ["encoder.", "quant_conv."];

/// Whether the tensor `key` of a full VAE checkpoint is encoder-side (not read by a decoder).
pub(crate) fn encoder_side(key: &str) -> bool {
    ENCODER_PREFIXES.iter().any(|p| key.starts_with(p))
}
