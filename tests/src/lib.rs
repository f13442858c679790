//! Shared helpers of the integration tests: fixture files, scratch copies of them to damage,
//! and tolerant comparison.

use std::{
    collections::HashMap,
    fs,
    path::{Path, PathBuf},
};

pub mod half;

use burn::tensor::{Tensor, TensorData, backend::Backend};
use dicache_core::Trace;
use dit_layers::{LoadError, Weights};
use safetensors::SafeTensors;

/// The CPU backend the tests run on.
pub type Cpu = burn_flex::Flex;

/// `value` changed by `change`: a request with one setting off, for the error tests.
pub fn changed<T>(mut value: T, change: impl FnOnce(&mut T)) -> T {
    change(&mut value);
    value
}

/// `tests/fixtures/<rel>`.
pub fn fixture(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures")
        .join(rel)
}

/// All tensors of a fixture file as host data keyed by name (f32, i64 and u8 kept as stored).
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
                safetensors::Dtype::U8 => TensorData::new(view.data().to_vec(), shape),
                other => panic!(
                    "{}: tensor {name} has unsupported fixture dtype {other:?}",
                    path.display()
                ),
            };
            (name, data)
        })
        .collect()
}

/// Copies the folder `from` with everything below it to `to` (created).
pub fn copy_tree(from: &Path, to: &Path) {
    fs::create_dir_all(to).unwrap();
    for entry in fs::read_dir(from).unwrap() {
        let path = entry.unwrap().path();
        let target = to.join(path.file_name().unwrap());
        if path.is_dir() {
            copy_tree(&path, &target);
        } else {
            fs::copy(&path, &target).unwrap();
        }
    }
}

/// A scratch folder under the system temp folder, removed on drop.
pub struct Scratch(PathBuf);

impl Scratch {
    /// An empty scratch folder, unique to `tag` within this test process.
    pub fn new(tag: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("dicache-test-{tag}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        Self(dir)
    }

    /// A scratch folder holding a copy of the files (not the subfolders) of the fixture folder
    /// `rel`.
    pub fn copy_of(rel: &str, tag: &str) -> Self {
        let scratch = Self::new(tag);
        for entry in fs::read_dir(fixture(rel)).unwrap() {
            let path = entry.unwrap().path();
            if path.is_file() {
                fs::copy(&path, scratch.0.join(path.file_name().unwrap())).unwrap();
            }
        }
        scratch
    }

    /// The folder.
    pub fn path(&self) -> &Path {
        &self.0
    }

    /// Rewrites `config.json` in the folder, replacing `from` (which must occur) with `to`.
    pub fn edit_config(&self, from: &str, to: &str) {
        let path = self.0.join("config.json");
        let config = fs::read_to_string(&path).unwrap();
        assert!(config.contains(from), "config has no {from}");
        fs::write(path, config.replace(from, to)).unwrap();
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

/// Shard `n` of the four-shard diffusers checkpoint in `dir`.
fn shard(dir: &Path, n: usize) -> PathBuf {
    dir.join(format!(
        "diffusion_pytorch_model-0000{n}-of-00004.safetensors"
    ))
}

/// The shard of the four-shard diffusers checkpoint in `dir` that holds the tensor `key`.
fn shard_holding(dir: &Path, key: &str) -> PathBuf {
    (1..=4)
        .map(|n| shard(dir, n))
        .find(|p| {
            let bytes = fs::read(p).unwrap();
            SafeTensors::deserialize(&bytes)
                .unwrap()
                .names()
                .contains(&key)
        })
        .expect("some shard holds the key")
}

/// Cuts the file at `path` to `len(size)` bytes.
fn truncate(path: &Path, len: impl FnOnce(usize) -> usize) {
    let bytes = fs::read(path).unwrap();
    fs::write(path, &bytes[..len(bytes.len())]).unwrap();
}

/// Rewrites `path` with the tensor `key` stored as `shape` (same values).
pub fn reshape_stored(path: &Path, key: &str, shape: Vec<usize>) {
    let bytes = fs::read(path).unwrap();
    let st = SafeTensors::deserialize(&bytes).unwrap();
    let mut tensors: Vec<(String, safetensors::tensor::TensorView)> = st.tensors();
    let mut found = false;
    for (name, view) in &mut tensors {
        if name == key {
            *view = safetensors::tensor::TensorView::new(view.dtype(), shape.clone(), view.data())
                .unwrap();
            found = true;
        }
    }
    assert!(found, "{key} not in {}", path.display());
    fs::write(path, safetensors::serialize(tensors, None).unwrap()).unwrap();
}

/// Asserts that loading (with `load`) the four-shard diffusers fixture folder `rel` with shard
/// `n` deleted is an index error naming the shard's file.
pub fn assert_missing_shard_named<M: std::fmt::Debug>(
    rel: &str,
    n: usize,
    load: impl FnOnce(&Path) -> Result<M, LoadError>,
) {
    let scratch = Scratch::copy_of(rel, "missing-shard");
    let path = shard(scratch.path(), n);
    fs::remove_file(&path).unwrap();
    let err = load(scratch.path()).unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, LoadError::Index { .. }), "{msg}");
    let file = path.file_name().unwrap().to_str().unwrap();
    assert!(msg.contains(file), "{msg}");
}

/// Asserts that loading (with `load`) the four-shard diffusers fixture folder `rel` with shard
/// `n` cut in half is an error naming the shard and saying it is truncated.
pub fn assert_truncated_shard_named<M: std::fmt::Debug>(
    rel: &str,
    n: usize,
    load: impl FnOnce(&Path) -> Result<M, LoadError>,
) {
    let scratch = Scratch::copy_of(rel, "truncated");
    truncate(&shard(scratch.path(), n), |len| len / 2);
    let msg = load(scratch.path()).unwrap_err().to_string();
    assert!(
        msg.contains(&format!("0000{n}-of-00004")) && msg.contains("truncated"),
        "{msg}"
    );
}

/// Asserts that loading (with `load`) a copy of the fixture file `rel` with its last 100 bytes
/// cut off is an error naming the file and saying it is truncated.
pub fn assert_truncated_file_named<M: std::fmt::Debug>(
    rel: &str,
    load: impl FnOnce(&Path) -> Result<M, LoadError>,
) {
    let scratch = Scratch::new("truncated-file");
    let name = Path::new(rel).file_name().unwrap();
    let path = scratch.path().join(name);
    fs::copy(fixture(rel), &path).unwrap();
    truncate(&path, |len| len - 100);
    let msg = load(&path).unwrap_err().to_string();
    assert!(
        msg.contains(name.to_str().unwrap()) && msg.contains("truncated"),
        "{msg}"
    );
}

/// Asserts that loading (with `load`) the four-shard diffusers fixture folder `rel` with the
/// tensor `key` stored as `shape` (same values) is a shape error naming the key and its shard.
pub fn assert_reshaped_tensor_named<M: std::fmt::Debug>(
    rel: &str,
    key: &str,
    shape: Vec<usize>,
    load: impl FnOnce(&Path) -> Result<M, LoadError>,
) {
    let scratch = Scratch::copy_of(rel, "wrong-shape");
    let path = shard_holding(scratch.path(), key);
    reshape_stored(&path, key, shape);
    let err = load(scratch.path()).unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, LoadError::Shape { .. }), "{msg}");
    assert!(
        msg.contains(key) && msg.contains(path.file_name().unwrap().to_str().unwrap()),
        "{msg}"
    );
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

/// Asserts that the DiCache `trace` matches the reference run's `trace.computed` flags and, to
/// a relative 1e-4, its `trace.indicator`, `trace.accumulated` and `trace.gamma` (NaN in the
/// reference where the trace has no value), call by call.
pub fn assert_trace_matches(trace: &Trace, run: &HashMap<String, TensorData>) {
    let values = |name: &str| -> Vec<f64> { run[name].iter::<f64>().collect() };
    let computed: Vec<bool> = values("trace.computed").iter().map(|&c| c == 1.0).collect();
    let got: Vec<bool> = trace.steps.iter().map(|s| s.computed).collect();
    assert_eq!(got, computed, "computed flags");
    let close = |name: &str, got: Vec<Option<f64>>| {
        for (call, (g, want)) in got.iter().zip(values(name)).enumerate() {
            match g {
                None => assert!(want.is_nan(), "{name} call {call}: none, reference {want}"),
                Some(g) => assert!(
                    (g - want).abs() <= 1e-4 * want.abs(),
                    "{name} call {call}: {g} vs {want}"
                ),
            }
        }
    };
    close(
        "trace.indicator",
        trace.steps.iter().map(|s| s.indicator).collect(),
    );
    close(
        "trace.accumulated",
        trace.steps.iter().map(|s| s.accumulated).collect(),
    );
    close("trace.gamma", trace.steps.iter().map(|s| s.gamma).collect());
}

/// How many values the checkpoint `path` stores as ggml blocks (GGUF's quantized types): what
/// a model loaded from it keeps quantized rather than as parameters.
pub fn quantized_values(path: &Path) -> usize {
    let weights = Weights::open(path).expect("open the checkpoint");
    weights
        .keys()
        .into_iter()
        .filter(|key| weights.stored_type(key).unwrap().starts_with('Q'))
        .map(|key| weights.shape(key).unwrap().iter().product::<usize>())
        .sum()
}
