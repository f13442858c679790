//! The request checks every pipeline makes before it samples: sizes the VAE and the
//! transformer's patches can take, frame counts the video VAEs decode, step counts, prompt
//! lengths and the initial noise's shape.

use crate::PipelineError;

/// Checks that `width` x `height` pixels are positive multiples of `spatial * patch`: `spatial`
/// pixels per latent cell (the VAE) times `patch` latent cells per token side. `medium` names
/// what is generated ("image", "video") and `patches` describes the patches in the message
/// ("2x2 token patches", "transformer's 2x2 patches").
pub fn check_pixel_size(
    medium: &str,
    width: usize,
    height: usize,
    spatial: usize,
    patch: usize,
    patches: &str,
) -> Result<(), PipelineError> {
    let multiple = spatial * patch;
    if width == 0
        || height == 0
        || !width.is_multiple_of(multiple)
        || !height.is_multiple_of(multiple)
    {
        return Err(PipelineError::Request(format!(
            "{medium} size {width}x{height} must be positive multiples of {multiple} (the VAE's \
             {spatial} pixels per latent times the {patches})"
        )));
    }
    Ok(())
}

/// Checks a video size for a VAE of `spatial` pixels per latent cell and a transformer of
/// `[ph, pw]` patches: positive multiples of `spatial * max(ph, pw)`.
pub fn check_video_size(
    width: usize,
    height: usize,
    spatial: usize,
    [ph, pw]: [usize; 2],
) -> Result<(), PipelineError> {
    check_pixel_size(
        "video",
        width,
        height,
        spatial,
        ph.max(pw),
        &format!("transformer's {ph}x{pw} patches"),
    )
}

/// The latent frames of a `frames`-frame video from a causal video VAE that turns the first
/// frame into one latent frame and each `temporal` frames after it into one more; an error
/// unless `frames` is `4k+1`. `vae` names the VAE and `longest` is the pipeline's default
/// frame count, for the message ("1, 5, ..., `longest`").
pub fn latent_frames(
    frames: usize,
    temporal: usize,
    vae: &str,
    longest: usize,
) -> Result<usize, PipelineError> {
    if frames == 0 || !(frames - 1).is_multiple_of(temporal) {
        return Err(PipelineError::Request(format!(
            "{frames} frames: the {vae} decodes 4k+1 frames (1, 5, ..., {longest}), {temporal} \
             per latent frame after the first"
        )));
    }
    Ok((frames - 1) / temporal + 1)
}

/// Checks a video size against a causal video VAE of `[temporal, spatial]` frames and pixels
/// per latent cell (`vae` names it) and a transformer of `patch` `[pt, ph, pw]`, and returns the
/// latent shape `[1, channels, latent_frames, height / spatial, width / spatial]`; `longest` is
/// the pipeline's default frame count, for the message.
pub fn video_latent_shape(
    [width, height, frames]: [usize; 3],
    [temporal, spatial]: [usize; 2],
    [pt, ph, pw]: [usize; 3],
    channels: usize,
    (vae, longest): (&str, usize),
) -> Result<[usize; 5], PipelineError> {
    check_video_size(width, height, spatial, [ph, pw])?;
    let latent_frames = latent_frames(frames, temporal, vae, longest)?;
    if !latent_frames.is_multiple_of(pt) {
        return Err(PipelineError::Request(format!(
            "{frames} frames make {latent_frames} latent frames, not a multiple of the \
             transformer's temporal patch size {pt}"
        )));
    }
    Ok([
        1,
        channels,
        latent_frames,
        height / spatial,
        width / spatial,
    ])
}

/// Checks that a request asks for at least one denoising step.
pub fn check_steps(steps: usize) -> Result<(), PipelineError> {
    if steps == 0 {
        return Err(PipelineError::Request("steps must be at least 1".into()));
    }
    Ok(())
}

/// Checks that a request's prompt length in tokens is at least 1.
pub fn check_max_sequence_length(max_sequence_length: usize) -> Result<(), PipelineError> {
    if max_sequence_length == 0 {
        return Err(PipelineError::Request(
            "max sequence length must be at least 1".into(),
        ));
    }
    Ok(())
}

/// Checks the initial noise's shape `noise` against the latent shape `latent` that the
/// requested `target` (e.g. "a 64x64 image", "a 64x64x5 video") needs.
pub fn check_noise_shape(
    noise: &[usize],
    latent: &[usize],
    target: &str,
) -> Result<(), PipelineError> {
    if noise != latent {
        return Err(PipelineError::Request(format!(
            "initial noise has shape {noise:?}; {target} needs {latent:?}"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_must_be_positive_multiples_of_the_vae_cell_times_the_patch() {
        assert!(check_video_size(32, 48, 8, [2, 2]).is_ok());
        let msg = check_video_size(40, 48, 8, [1, 2]).unwrap_err().to_string();
        assert!(
            msg.contains(
                "video size 40x48 must be positive multiples of 16 (the VAE's 8 pixels per \
                 latent times the transformer's 1x2 patches)"
            ),
            "{msg}"
        );
        let msg = check_pixel_size("image", 24, 32, 8, 2, "2x2 token patches")
            .unwrap_err()
            .to_string();
        assert!(
            msg.contains(
                "image size 24x32 must be positive multiples of 16 (the VAE's 8 pixels per \
                 latent times the 2x2 token patches)"
            ),
            "{msg}"
        );
        assert!(check_pixel_size("video", 0, 16, 8, 2, "patches").is_err());
    }

    #[test]
    fn frames_are_4k_plus_1() {
        assert_eq!(latent_frames(1, 4, "Wan VAE", 81).unwrap(), 1);
        assert_eq!(latent_frames(81, 4, "Wan VAE", 81).unwrap(), 21);
        assert!(latent_frames(0, 4, "Wan VAE", 81).is_err());
        let msg = latent_frames(4, 4, "Wan VAE", 81).unwrap_err().to_string();
        assert!(
            msg.contains(
                "4 frames: the Wan VAE decodes 4k+1 frames (1, 5, ..., 81), 4 per latent frame \
                 after the first"
            ),
            "{msg}"
        );
    }

    #[test]
    fn steps_lengths_and_noise_are_checked() {
        assert!(check_steps(1).is_ok());
        assert!(check_steps(0).is_err());
        assert!(check_max_sequence_length(1).is_ok());
        assert!(check_max_sequence_length(0).is_err());
        assert!(check_noise_shape(&[1, 2], &[1, 2], "an image").is_ok());
        let msg = check_noise_shape(&[1, 3], &[1, 2], "a 16x16 image")
            .unwrap_err()
            .to_string();
        assert!(
            msg.contains("initial noise has shape [1, 3]; a 16x16 image needs [1, 2]"),
            "{msg}"
        );
    }
}
