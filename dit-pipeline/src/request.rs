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

/// How a pipeline's latents relate to its output: the VAE's pixels (and frames) per latent
/// cell, the transformer's patch, the latent channels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LatentGeometry {
    /// Pixels per latent cell along each side.
    pub spatial: usize,
    /// Frames per latent frame after the first, for a causal video VAE; `None` for an image.
    pub temporal: Option<usize>,
    /// The transformer's patch `[frames, height, width]` in latent cells (FLUX.1 packs 2x2).
    pub patch: [usize; 3],
    /// Latent channels.
    pub channels: usize,
    /// The VAE, as messages name it (`"Wan VAE"`).
    pub vae: &'static str,
}

impl LatentGeometry {
    /// The geometry of a causal video VAE of `[temporal, spatial]` frames and pixels per latent
    /// cell (`vae` names it) under a transformer of `patch` and `channels` latent channels.
    pub fn video(
        [temporal, spatial]: [usize; 2],
        patch: [usize; 3],
        channels: usize,
        vae: &'static str,
    ) -> Self {
        Self {
            spatial,
            temporal: Some(temporal),
            patch,
            channels,
            vae,
        }
    }

    /// The transformer's tokens of latents of shape `latent` (`[batch, channels, ...]`): its
    /// cells per batch row over the patch.
    pub fn tokens(&self, latent: &[usize]) -> usize {
        latent[2..].iter().product::<usize>() / self.patch.iter().product::<usize>()
    }

    /// Checks an output of `width` x `height` pixels and `frames` frames (1 for an image) and
    /// returns the latent shape: `[1, channels, height/s, width/s]` for an image,
    /// `[1, channels, latent_frames, height/s, width/s]` for a video. `longest` is the
    /// pipeline's default frame count, for the message.
    pub fn shape(
        &self,
        [width, height, frames]: [usize; 3],
        longest: usize,
    ) -> Result<Vec<usize>, PipelineError> {
        let [pt, ph, pw] = self.patch;
        let medium = if self.temporal.is_some() {
            "video"
        } else {
            "image"
        };
        check_pixel_size(
            medium,
            width,
            height,
            self.spatial,
            ph.max(pw),
            &format!("transformer's {ph}x{pw} patches"),
        )?;
        let (h, w) = (height / self.spatial, width / self.spatial);
        let Some(temporal) = self.temporal else {
            if frames != 1 {
                return Err(PipelineError::Request(format!(
                    "this pipeline makes images: frames must be 1, not {frames}"
                )));
            }
            return Ok(vec![1, self.channels, h, w]);
        };
        let latent_frames = latent_frames(frames, temporal, self.vae, longest)?;
        if !latent_frames.is_multiple_of(pt) {
            return Err(PipelineError::Request(format!(
                "{frames} frames make {latent_frames} latent frames, not a multiple of the \
                 transformer's temporal patch size {pt}"
            )));
        }
        Ok(vec![1, self.channels, latent_frames, h, w])
    }
}

/// The most denoising steps a request may ask for: the flow-matching schedulers' training
/// timesteps (`num_train_timesteps` is 1000 for all three models).
pub const MAX_STEPS: usize = 1000;

/// The largest guidance scale a request may ask for. Published settings stay below 20 (FLUX.1
/// 3.5, HunyuanVideo 6, WAN 5); far beyond, the prediction overflows.
pub const MAX_GUIDANCE: f64 = 100.0;

/// The largest magnitude a value of the initial noise may have: standard Gaussian noise stays
/// within about 6 even over billions of draws.
pub const MAX_NOISE: f32 = 1000.0;

/// The most samples one request may hold: a bound on a mistyped batch size, far above what a
/// machine runs at once at published sizes.
pub const MAX_BATCH: usize = 64;

/// Checks that a request holds between 1 and [`MAX_BATCH`] samples.
pub fn check_batch(samples: usize) -> Result<(), PipelineError> {
    if !(1..=MAX_BATCH).contains(&samples) {
        return Err(PipelineError::Request(format!(
            "a request holds between 1 and {MAX_BATCH} samples (prompts), got {samples}"
        )));
    }
    Ok(())
}

/// Checks that a request asks for between 1 and [`MAX_STEPS`] denoising steps.
pub fn check_steps(steps: usize) -> Result<(), PipelineError> {
    if !(1..=MAX_STEPS).contains(&steps) {
        return Err(PipelineError::Request(format!(
            "steps {steps} must be between 1 and {MAX_STEPS} (the schedulers' training timesteps)"
        )));
    }
    Ok(())
}

/// Checks that a request's prompt length in tokens is between 1 and `max`, the pipeline's
/// longest (its text encoder's context).
pub fn check_max_sequence_length(
    max_sequence_length: usize,
    max: usize,
) -> Result<(), PipelineError> {
    if !(1..=max).contains(&max_sequence_length) {
        return Err(PipelineError::Request(format!(
            "max sequence length {max_sequence_length} must be between 1 and {max} tokens"
        )));
    }
    Ok(())
}

/// Checks that a guidance scale is a finite number between 0 and [`MAX_GUIDANCE`].
pub fn check_guidance_scale(guidance: f64) -> Result<(), PipelineError> {
    if !(guidance.is_finite() && (0.0..=MAX_GUIDANCE).contains(&guidance)) {
        return Err(PipelineError::Request(format!(
            "guidance {guidance:?} must be a finite number between 0 and {MAX_GUIDANCE}"
        )));
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

    const WAN: LatentGeometry = LatentGeometry {
        spatial: 8,
        temporal: Some(4),
        patch: [1, 1, 2],
        channels: 16,
        vae: "Wan VAE",
    };

    #[test]
    fn latent_shapes_of_images_and_videos() {
        assert_eq!(WAN.shape([48, 32, 9], 81).unwrap(), vec![1, 16, 3, 4, 6]);
        let image = LatentGeometry {
            temporal: None,
            patch: [1, 2, 2],
            ..WAN
        };
        assert_eq!(image.shape([48, 32, 1], 1).unwrap(), vec![1, 16, 4, 6]);
        let msg = image.shape([48, 32, 5], 1).unwrap_err().to_string();
        assert!(msg.contains("frames must be 1"), "{msg}");
        let patched_time = LatentGeometry {
            patch: [2, 2, 2],
            ..WAN
        };
        let msg = patched_time.shape([48, 32, 9], 81).unwrap_err().to_string();
        assert!(msg.contains("temporal patch size 2"), "{msg}");
    }

    #[test]
    fn sizes_must_be_positive_multiples_of_the_vae_cell_times_the_patch() {
        assert!(WAN.shape([32, 48, 1], 81).is_ok());
        let msg = WAN.shape([40, 48, 1], 81).unwrap_err().to_string();
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
        assert!(WAN.shape([0, 16, 1], 81).is_err());
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
        assert!(check_steps(MAX_STEPS).is_ok());
        assert!(check_steps(0).is_err());
        let msg = check_steps(1_000_000_000).unwrap_err().to_string();
        assert!(msg.contains("between 1 and 1000"), "{msg}");
        assert!(check_max_sequence_length(1, 512).is_ok());
        assert!(check_max_sequence_length(512, 512).is_ok());
        assert!(check_max_sequence_length(0, 512).is_err());
        let msg = check_max_sequence_length(100_000, 512)
            .unwrap_err()
            .to_string();
        assert!(msg.contains("100000") && msg.contains("512"), "{msg}");
        for bad in [f64::NAN, f64::INFINITY, f64::NEG_INFINITY, 1e300, -1.0] {
            let msg = check_guidance_scale(bad).unwrap_err().to_string();
            assert!(msg.contains("guidance"), "{msg}");
        }
        assert!(check_guidance_scale(0.0).is_ok() && check_guidance_scale(7.5).is_ok());
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
