//! Shared helpers of the integration tests: fixture files and tolerant comparison.

use std::{
    collections::HashMap,
    path::{Path, PathBuf},
};

use burn::tensor::{Tensor, TensorData, backend::Backend};
use safetensors::SafeTensors;

/// The CPU backend the tests run on.
pub type Cpu = burn_flex::Flex;

/// `tests/fixtures/<rel>`.
pub fn fixture(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures")
        .join(rel)
}

/// All tensors of a fixture file, as f32 host data keyed by name.
pub fn load_fixture(rel: &str) -> HashMap<String, TensorData> {
    let path = fixture(rel);
    let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let st = SafeTensors::deserialize(&bytes).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    st.tensors()
        .into_iter()
        .map(|(name, view)| {
            let shape = view.shape().to_vec();
            let data = match view.dtype() {
                safetensors::Dtype::F32 => TensorData::new(
                    view.data()
                        .chunks_exact(4)
                        .map(|b| f32::from_le_bytes(b.try_into().unwrap()))
                        .collect::<Vec<f32>>(),
                    shape,
                ),
                safetensors::Dtype::I64 => TensorData::new(
                    view.data()
                        .chunks_exact(8)
                        .map(|b| i64::from_le_bytes(b.try_into().unwrap()))
                        .collect::<Vec<i64>>(),
                    shape,
                ),
                other => panic!(
                    "{}: tensor {name} has unsupported fixture dtype {other:?}",
                    path.display()
                ),
            };
            (name, data)
        })
        .collect()
}

/// The fixture tensor `name` on `device`.
pub fn tensor<B: Backend, const D: usize>(
    fixtures: &HashMap<String, TensorData>,
    name: &str,
    device: &B::Device,
) -> Tensor<B, D> {
    let data = fixtures
        .get(name)
        .unwrap_or_else(|| panic!("fixture has no tensor {name:?}"))
        .clone();
    Tensor::from_data(data, device)
}

/// Asserts `|actual - expected| <= atol + rtol * |expected|` elementwise, naming the first
/// offending element and the largest absolute error.
pub fn assert_close<B: Backend, const D: usize>(
    actual: Tensor<B, D>,
    expected: &TensorData,
    atol: f32,
    rtol: f32,
    what: &str,
) {
    let actual_data = actual.into_data();
    assert_eq!(actual_data.shape, expected.shape, "{what}: shape");
    let a: Vec<f32> = actual_data.iter::<f32>().collect();
    let e: Vec<f32> = expected.iter::<f32>().collect();
    let mut worst = (0usize, 0f32);
    for (i, (x, y)) in a.iter().zip(&e).enumerate() {
        let err = (x - y).abs();
        assert!(err.is_finite(), "{what}[{i}]: {x} vs {y}");
        if err > worst.1 {
            worst = (i, err);
        }
        assert!(
            err <= atol + rtol * y.abs(),
            "{what}[{i}]: {x} vs {y} (|diff| {err} > {atol} + {rtol}*|ref|)"
        );
    }
    eprintln!("{what}: max |diff| {:.3e} at {}", worst.1, worst.0);
}
