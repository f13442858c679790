//! Checks for NaN and infinite values where they enter a generation (the initial noise, the
//! text encoders' outputs) and where they would leave it (each step's sample, the decoded
//! output), so a damaged model or an overflowing dtype is an error naming the stage, never a
//! black picture.

use burn::tensor::{ElementConversion, FloatDType, Tensor, backend::Backend};

use crate::{MAX_NOISE, PipelineError};

/// Fails, naming `what`, when `t` holds a NaN or an infinity. One reduction and one scalar read
/// (in f32, so a half-precision sum cannot overflow on its own).
pub fn check_finite<B: Backend, const D: usize>(
    t: &Tensor<B, D>,
    what: impl FnOnce() -> String,
) -> Result<(), PipelineError> {
    let sum: f32 = t.clone().cast(FloatDType::F32).sum().into_scalar().elem();
    if sum.is_finite() {
        Ok(())
    } else {
        Err(PipelineError::NonFinite {
            what: what(),
            dtype: format!("{:?}", t.dtype()),
        })
    }
}

/// Checks that the initial noise is finite and within `±`[`MAX_NOISE`] (noise of another scale
/// is a file of something else).
pub fn check_noise_values<B: Backend, const D: usize>(
    noise: &Tensor<B, D>,
) -> Result<(), PipelineError> {
    check_finite(noise, || "the initial noise".into())?;
    let largest: f32 = noise
        .clone()
        .cast(FloatDType::F32)
        .abs()
        .max()
        .into_scalar()
        .elem();
    if largest > MAX_NOISE {
        return Err(PipelineError::Request(format!(
            "the initial noise holds values up to {largest}; Gaussian noise stays within \
             +-{MAX_NOISE}"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use burn::tensor::Tensor;
    use burn_flex::Flex;

    use super::*;

    #[test]
    fn nan_infinity_and_huge_noise_are_named() {
        let device = Default::default();
        let fine = Tensor::<Flex, 2>::from_floats([[0.5, -3.0], [1.0, 2.0]], &device);
        assert!(check_finite(&fine, || "x".into()).is_ok());
        assert!(check_noise_values(&fine).is_ok());
        for bad in [f32::NAN, f32::INFINITY, f32::NEG_INFINITY] {
            let t = Tensor::<Flex, 2>::from_floats([[0.5, bad], [1.0, 2.0]], &device);
            let msg = check_finite(&t, || "step 3 of 28: the sample".into())
                .unwrap_err()
                .to_string();
            assert!(
                msg.contains("step 3 of 28: the sample") && msg.contains("NaN"),
                "{msg}"
            );
            let msg = check_noise_values(&t).unwrap_err().to_string();
            assert!(msg.contains("initial noise"), "{msg}");
        }
        let huge = Tensor::<Flex, 2>::from_floats([[0.5, 6e4], [1.0, 2.0]], &device);
        let msg = check_noise_values(&huge).unwrap_err().to_string();
        assert!(msg.contains("60000"), "{msg}");
    }
}
