//! Seeded Gaussian noise for the initial latents.

use burn::tensor::{Distribution, TensorData};
use rand::{SeedableRng, rngs::StdRng};

/// Standard-normal f32 noise of `shape`, drawn on the host from a generator seeded with `seed`,
/// so a seed gives the same latents on every backend. (It does not reproduce PyTorch's
/// generator; pass `--init-noise` to start from noise made elsewhere.)
pub fn gaussian_noise(shape: &[usize], seed: u64) -> TensorData {
    let mut rng = StdRng::seed_from_u64(seed);
    TensorData::random::<f32, _, _>(shape.to_vec(), Distribution::Normal(0.0, 1.0), &mut rng)
}

/// The noise of several samples: [`gaussian_noise`] of one sample's `shape` (`[1, ...]`) for
/// each of `seeds`, joined along the first dimension in order.
pub fn gaussian_noise_rows(shape: &[usize], seeds: impl IntoIterator<Item = u64>) -> TensorData {
    let mut values = Vec::new();
    let mut rows = 0;
    for seed in seeds {
        let noise = gaussian_noise(shape, seed).into_vec::<f32>();
        values.extend(noise.expect("the noise is drawn as f32"));
        rows += shape[0];
    }
    let mut dims = shape.to_vec();
    dims[0] = rows;
    TensorData::new(values, dims)
}
