//! Decoded samples as files: a PNG per image, an animated GIF per video.

use std::io::{Cursor, Write};

use burn::tensor::{Tensor, backend::Backend};
use image::{
    Delay, Frame, ImageFormat, RgbImage, RgbaImage,
    buffer::ConvertBuffer,
    codecs::gif::{GifEncoder, Repeat},
};
use vae::Rgb8Image;

/// An encoded sample: its bytes and their media type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Media {
    /// The file's bytes.
    pub bytes: Vec<u8>,
    /// `image/png`, `image/gif`.
    pub mime: &'static str,
}

/// Why a decoded sample could not be encoded.
#[derive(Debug, thiserror::Error)]
pub enum MediaError {
    /// The decoded tensor was not an image or video of 3 channels.
    #[error(transparent)]
    Shape(#[from] vae::VaeError),
    /// The encoder failed.
    #[error("encoding the output: {0}")]
    Encode(#[from] image::ImageError),
    /// A video without frames.
    #[error("a video needs at least one frame")]
    NoFrames,
}

/// How a pipeline's decoded samples (`[1, 3, height, width]` or `[1, 3, frames, height,
/// width]`, nominally in `[-1, 1]`) become files.
pub trait Encode<const N: usize> {
    /// The sample as a file.
    fn encode<B: Backend>(decoded: Tensor<B, N>, fps: u32) -> Result<Media, MediaError>;
}

/// Images and videos alike.
pub struct Encoder;

impl Encode<4> for Encoder {
    /// A PNG, quantised as diffusers does.
    fn encode<B: Backend>(decoded: Tensor<B, 4>, _fps: u32) -> Result<Media, MediaError> {
        let image = vae::to_rgb8(decoded)?.remove(0);
        let mut bytes = Vec::new();
        rgb(&image).write_to(&mut Cursor::new(&mut bytes), ImageFormat::Png)?;
        Ok(Media {
            bytes,
            mime: "image/png",
        })
    }
}

impl Encode<5> for Encoder {
    /// An animated GIF at `fps` frames per second, looping.
    fn encode<B: Backend>(decoded: Tensor<B, 5>, fps: u32) -> Result<Media, MediaError> {
        let frames = vae::video_to_rgb8(decoded)?.remove(0);
        let mut bytes = Vec::new();
        write_gif(&frames, fps, &mut bytes)?;
        Ok(Media {
            bytes,
            mime: "image/gif",
        })
    }
}

/// Writes `frames` as a looping animated GIF at `fps` frames per second.
pub fn write_gif(frames: &[Rgb8Image], fps: u32, out: impl Write) -> Result<(), MediaError> {
    if frames.is_empty() {
        return Err(MediaError::NoFrames);
    }
    let mut encoder = GifEncoder::new_with_speed(out, 10);
    encoder.set_repeat(Repeat::Infinite)?;
    let delay = Delay::from_numer_denom_ms(1000, fps.max(1));
    for frame in frames {
        let rgba: RgbaImage = rgb(frame).convert();
        encoder.encode_frame(Frame::from_parts(rgba, 0, 0, delay))?;
    }
    Ok(())
}

/// `image` as an `image` buffer (its pixel count matches its size by construction).
fn rgb(image: &Rgb8Image) -> RgbImage {
    RgbImage::from_raw(
        image.width as u32,
        image.height as u32,
        image.pixels.clone(),
    )
    .expect("an Rgb8Image holds width * height pixels")
}
