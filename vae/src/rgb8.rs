//! Decoded images as 8-bit RGB pixels.

use burn::tensor::{Tensor, backend::Backend};

use crate::VaeError;

/// One 8-bit RGB image, rows top to bottom, pixels left to right, `[r, g, b]` each
/// (`pixels.len() == height * width * 3`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rgb8Image {
    /// Columns.
    pub width: usize,
    /// Rows.
    pub height: usize,
    /// Row-major interleaved RGB bytes.
    pub pixels: Vec<u8>,
}

/// Turns decoded images `[batch, 3, height, width]` (nominally in `[-1, 1]`) into 8-bit RGB,
/// exactly as diffusers' `VaeImageProcessor.postprocess(..., output_type="pil")` does: in f32,
/// `(x * 0.5 + 0.5).clamp(0, 1) * 255`, rounded half to even.
pub fn to_rgb8<B: Backend>(images: Tensor<B, 4>) -> Result<Vec<Rgb8Image>, VaeError> {
    let [batch, channels, height, width] = images.dims();
    if channels != 3 {
        return Err(VaeError::ImageShape {
            found: images.dims().to_vec(),
        });
    }
    // [batch, height, width, 3] on the host, as diffusers moves channels last before rounding.
    let values: Vec<f32> = images
        .permute([0, 2, 3, 1])
        .into_data()
        .iter::<f32>()
        .collect();
    let image_len = height * width * 3;
    Ok((0..batch)
        .map(|i| Rgb8Image {
            width,
            height,
            pixels: values[i * image_len..(i + 1) * image_len]
                .iter()
                .map(|&x| to_byte(x))
                .collect(),
        })
        .collect())
}

/// One `[-1, 1]` value as a byte (NaN becomes 0).
fn to_byte(x: f32) -> u8 {
    let unit = (x * 0.5 + 0.5).clamp(0.0, 1.0);
    (unit * 255.0).round_ties_even() as u8
}
