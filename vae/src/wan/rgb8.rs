//! Decoded videos as 8-bit RGB frames.

use burn::tensor::{Tensor, backend::Backend};

use super::frames::to_frames;
use crate::{Rgb8Image, VaeError, to_rgb8};

/// Turns decoded videos `[batch, 3, frames, height, width]` into 8-bit RGB frames, one list
/// per video, exactly as diffusers' `VideoProcessor.postprocess_video(..., output_type="pil")`
/// does: each video's frames through [`to_rgb8`].
pub fn video_to_rgb8<B: Backend>(video: Tensor<B, 5>) -> Result<Vec<Vec<Rgb8Image>>, VaeError> {
    let [batch, channels, frames, _, _] = video.dims();
    if channels != 3 {
        return Err(VaeError::VideoShape {
            found: video.dims().to_vec(),
        });
    }
    let mut images = to_rgb8(to_frames(video))?.into_iter();
    Ok((0..batch)
        .map(|_| images.by_ref().take(frames).collect())
        .collect())
}
