//! Fidelity of a generated image or video to a reference (the uncached output of the same seed),
//! as the caching papers report it: PSNR and SSIM on 8-bit RGB.
//!
//! Both follow scikit-image, the reference the DiCache evaluation uses: `psnr` is
//! `peak_signal_noise_ratio(a, b, data_range=255)` and `ssim` is
//! `structural_similarity(a, b, channel_axis=-1, data_range=255, gaussian_weights=True,
//! sigma=1.5, use_sample_covariance=False)`: an 11x11 Gaussian window (sigma 1.5, truncated at
//! 3.5 sigma), K1 = 0.01, K2 = 0.03, population covariances, the SSIM map averaged over the
//! positions where the window fits inside the image, then over the three channels. The SSIM map
//! itself comes from the `iqa` crate, whose RGB-averaged SSIM is exactly this definition.

use vae::Rgb8Image;

/// Why two images or videos cannot be compared.
#[derive(Debug, thiserror::Error)]
pub enum QualityError {
    /// The images differ in size.
    #[error("cannot compare a {0}x{1} image with a {2}x{3} one")]
    Size(usize, usize, usize, usize),
    /// The videos differ in length, or are empty.
    #[error("cannot compare a video of {0} frames with one of {1}")]
    Frames(usize, usize),
    /// The SSIM computation refused the images (smaller than its 11x11 window).
    #[error("SSIM: {0}")]
    Ssim(String),
}

/// Peak signal-to-noise ratio of `b` against `a` in dB, with a data range of 255; infinite when
/// they are equal.
pub fn psnr(a: &Rgb8Image, b: &Rgb8Image) -> Result<f64, QualityError> {
    check_size(a, b)?;
    Ok(psnr_of(squared_error(a, b), a.pixels.len()))
}

/// Mean structural similarity of `a` and `b`, averaged over the RGB channels (1 when equal).
/// Both need at least 11x11 pixels.
pub fn ssim(a: &Rgb8Image, b: &Rgb8Image) -> Result<f64, QualityError> {
    check_size(a, b)?;
    let image = |img: &Rgb8Image| {
        iqa::Image::srgb8(img.width as u32, img.height as u32, img.pixels.clone())
            .map_err(|e| QualityError::Ssim(e.to_string()))
    };
    iqa::ssim(&image(a)?, &image(b)?, iqa::SsimOptions::default())
        .map_err(|e| QualityError::Ssim(e.to_string()))
}

/// PSNR of video `b` against `a` over the whole clip (one mean squared error over every frame);
/// infinite when they are equal.
pub fn video_psnr(a: &[Rgb8Image], b: &[Rgb8Image]) -> Result<f64, QualityError> {
    check_frames(a, b)?;
    let mut error = 0.0;
    for (fa, fb) in a.iter().zip(b) {
        check_size(fa, fb)?;
        error += squared_error(fa, fb);
    }
    Ok(psnr_of(error, a.iter().map(|f| f.pixels.len()).sum()))
}

/// SSIM of video `b` against `a`: [`ssim`] of each pair of frames, averaged.
pub fn video_ssim(a: &[Rgb8Image], b: &[Rgb8Image]) -> Result<f64, QualityError> {
    check_frames(a, b)?;
    let mut total = 0.0;
    for (fa, fb) in a.iter().zip(b) {
        total += ssim(fa, fb)?;
    }
    Ok(total / a.len() as f64)
}

/// `10 log10(255² / mse)` for a summed squared `error` over `samples` values.
fn psnr_of(error: f64, samples: usize) -> f64 {
    let mse = error / samples as f64;
    10.0 * (255.0 * 255.0 / mse).log10()
}

fn squared_error(a: &Rgb8Image, b: &Rgb8Image) -> f64 {
    a.pixels
        .iter()
        .zip(&b.pixels)
        .map(|(&x, &y)| (f64::from(x) - f64::from(y)).powi(2))
        .sum()
}

fn check_size(a: &Rgb8Image, b: &Rgb8Image) -> Result<(), QualityError> {
    if (a.width, a.height) == (b.width, b.height) {
        Ok(())
    } else {
        Err(QualityError::Size(a.width, a.height, b.width, b.height))
    }
}

fn check_frames(a: &[Rgb8Image], b: &[Rgb8Image]) -> Result<(), QualityError> {
    if a.len() == b.len() && !a.is_empty() {
        Ok(())
    } else {
        Err(QualityError::Frames(a.len(), b.len()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flat(value: u8) -> Rgb8Image {
        Rgb8Image {
            width: 12,
            height: 11,
            pixels: vec![value; 12 * 11 * 3],
        }
    }

    #[test]
    fn equal_images_have_infinite_psnr_and_unit_ssim() {
        assert_eq!(psnr(&flat(7), &flat(7)).unwrap(), f64::INFINITY);
        assert_eq!(ssim(&flat(7), &flat(7)).unwrap(), 1.0);
    }

    #[test]
    fn psnr_of_a_constant_offset() {
        // mse = 10² = 100: 10 log10(65025 / 100).
        let expected = 10.0 * (650.25f64).log10();
        assert!((psnr(&flat(100), &flat(110)).unwrap() - expected).abs() < 1e-12);
        let clip = [flat(100), flat(100)];
        let other = [flat(110), flat(90)];
        assert!((video_psnr(&clip, &other).unwrap() - expected).abs() < 1e-12);
    }

    #[test]
    fn mismatched_inputs_are_refused() {
        let small = Rgb8Image {
            width: 5,
            height: 5,
            pixels: vec![0; 75],
        };
        assert!(matches!(
            psnr(&flat(0), &small),
            Err(QualityError::Size(..))
        ));
        assert!(matches!(ssim(&small, &small), Err(QualityError::Ssim(_))));
        assert!(matches!(
            video_ssim(&[flat(0)], &[]),
            Err(QualityError::Frames(1, 0))
        ));
    }
}
