//! Checkpoints, memory-mapped: a safetensors file, a folder of safetensors shards, or a GGUF
//! file (see [`gguf`]).

mod gguf;
mod quantized;

pub(crate) use gguf::SUPPORTED as GGUF_TYPES;
pub use quantized::QuantizedMatrix;

use std::{
    collections::{BTreeSet, HashMap},
    fs::File,
    ops::Range,
    path::{Path, PathBuf},
    sync::{Arc, Mutex},
};

use burn::tensor::{DType, Tensor, TensorData, backend::Backend};
use candle_core::quantized::GgmlDType;
use memmap2::Mmap;
use safetensors::{Dtype, SafeTensors};
use serde::Deserialize;

use crate::LoadError;

/// How a file stores one tensor's values.
#[derive(Debug, Clone)]
enum Encoding {
    /// Little-endian floats of this dtype.
    Float(DType),
    /// ggml's quantized blocks (GGUF).
    Blocks(GgmlDType),
    /// A dtype that is not floating point, named for the error.
    Other(String),
}

/// Where a file stores one tensor.
#[derive(Debug, Clone)]
struct Entry {
    shape: Vec<usize>,
    encoding: Encoding,
    /// The tensor's bytes within the file.
    bytes: Range<usize>,
}

impl Entry {
    /// The block type of a matrix of ggml blocks whose rows are whole blocks: a linear weight
    /// that stays quantized when loaded.
    fn kept_quantized(&self) -> Option<GgmlDType> {
        match (&self.encoding, self.shape.as_slice()) {
            (&Encoding::Blocks(dtype), [_, cols]) if cols % dtype.block_size() == 0 => Some(dtype),
            _ => None,
        }
    }
}

/// One memory-mapped checkpoint file and the tensors its header lists.
struct WeightFile {
    path: PathBuf,
    /// Shared with the [`QuantizedMatrix`]es read from it, which decode from it when used.
    mmap: Arc<Mmap>,
    tensors: HashMap<String, Entry>,
    /// A GGUF file's `general.architecture` (safetensors files have none).
    architecture: Option<String>,
}

impl WeightFile {
    fn open(path: &Path) -> Result<Self, LoadError> {
        let io = |source| LoadError::Io {
            path: path.to_path_buf(),
            source,
        };
        let file = File::open(path).map_err(io)?;
        // SAFETY: the map is read-only; a checkpoint changed on disk while loading is the
        // user's race, as with every memory-mapped loader.
        let mmap = unsafe { Mmap::map(&file) }.map_err(io)?;
        let corrupt = |format, message| LoadError::Corrupt {
            path: path.to_path_buf(),
            format,
            message,
        };
        let (tensors, architecture) = if mmap.starts_with(gguf::MAGIC) {
            let header = gguf::read_header(&mmap).map_err(|e| match e {
                gguf::HeaderError::Corrupt(message) => corrupt("GGUF", message),
                gguf::HeaderError::Unsupported { key, kind } => LoadError::Quantization {
                    key,
                    path: path.to_path_buf(),
                    kind,
                },
            })?;
            (header.tensors, header.architecture)
        } else {
            let (header, metadata) = SafeTensors::read_metadata(&mmap)
                .map_err(|e| corrupt("safetensors", e.to_string()))?;
            let data_start = 8 + header;
            let tensors = metadata
                .tensors()
                .into_iter()
                .map(|(name, info)| {
                    let encoding = match info.dtype {
                        Dtype::F32 => Encoding::Float(DType::F32),
                        Dtype::F16 => Encoding::Float(DType::F16),
                        Dtype::BF16 => Encoding::Float(DType::BF16),
                        Dtype::F64 => Encoding::Float(DType::F64),
                        other => Encoding::Other(format!("{other:?}")),
                    };
                    let (start, end) = info.data_offsets;
                    let entry = Entry {
                        shape: info.shape.clone(),
                        encoding,
                        bytes: data_start + start..data_start + end,
                    };
                    (name, entry)
                })
                .collect();
            (tensors, None)
        };
        Ok(Self {
            path: path.to_path_buf(),
            mmap: Arc::new(mmap),
            tensors,
            architecture,
        })
    }
}

/// The `weight_map` of a diffusers/transformers shard index.
#[derive(Deserialize)]
struct ShardIndex {
    weight_map: HashMap<String, String>,
}

/// The tensors of a checkpoint, memory-mapped: nothing is read until a tensor is asked for,
/// and each tensor is converted straight into the device's float dtype, so loading needs no
/// second copy of the model in memory.
///
/// Every name read is remembered, so [`Weights::check_all_used`] can tell a checkpoint that
/// holds more than the configured model uses (a configuration that does not match).
pub struct Weights {
    files: Vec<WeightFile>,
    /// Tensor name (after prefix stripping) → (file index, name in the file).
    index: HashMap<String, (usize, String)>,
    used: Mutex<BTreeSet<String>>,
}

impl Weights {
    /// Opens a `.safetensors` or GGUF file (told apart by its first bytes), or a folder: with a
    /// `*.safetensors.index.json` the shards it names (each must exist), else every
    /// `.safetensors` file in it.
    pub fn open(path: &Path) -> Result<Self, LoadError> {
        if !path.exists() {
            return Err(LoadError::Io {
                path: path.to_path_buf(),
                source: std::io::Error::new(std::io::ErrorKind::NotFound, "no such file or folder"),
            });
        }
        if path.is_file() {
            return Self::from_files(&[path.to_path_buf()]);
        }
        let io = |source| LoadError::Io {
            path: path.to_path_buf(),
            source,
        };
        let mut entries: Vec<PathBuf> = std::fs::read_dir(path)
            .map_err(io)?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .collect();
        entries.sort();
        let index = entries
            .iter()
            .find(|p| p.to_string_lossy().ends_with(".safetensors.index.json"));
        let files: Vec<PathBuf> = match index {
            Some(index_path) => {
                let idx: ShardIndex =
                    crate::read_json(index_path).map_err(|e| LoadError::Index {
                        path: index_path.clone(),
                        message: e.to_string(),
                    })?;
                let shards: BTreeSet<&String> = idx.weight_map.values().collect();
                let mut files = Vec::new();
                for shard in shards {
                    let shard_path = path.join(shard);
                    if !shard_path.is_file() {
                        return Err(LoadError::Index {
                            path: index_path.clone(),
                            message: format!("shard {shard} is missing from {}", path.display()),
                        });
                    }
                    files.push(shard_path);
                }
                files
            }
            None => entries
                .into_iter()
                .filter(|p| p.extension().is_some_and(|e| e == "safetensors"))
                .collect(),
        };
        if files.is_empty() {
            return Err(LoadError::NoWeights(path.to_path_buf()));
        }
        Self::from_files(&files)
    }

    /// Opens the given safetensors files as one checkpoint; a tensor name held by two of them
    /// is an error naming both.
    pub fn from_files(paths: &[PathBuf]) -> Result<Self, LoadError> {
        let files = paths
            .iter()
            .map(|p| WeightFile::open(p))
            .collect::<Result<Vec<_>, _>>()?;
        let mut index = HashMap::new();
        for (i, file) in files.iter().enumerate() {
            for name in file.tensors.keys() {
                if let Some((first, _)) = index.insert(name.clone(), (i, name.clone())) {
                    return Err(LoadError::Duplicate {
                        key: name.clone(),
                        first: files[first].path.clone(),
                        second: file.path.clone(),
                    });
                }
            }
        }
        Ok(Self {
            files,
            index,
            used: Mutex::new(BTreeSet::new()),
        })
    }

    /// Removes `prefix` from every name that starts with it (e.g. BFL's
    /// `model.diffusion_model.`), when all names do.
    pub fn strip_prefix(mut self, prefix: &str) -> Self {
        if !self.index.is_empty() && self.index.keys().all(|k| k.starts_with(prefix)) {
            self.index = self
                .index
                .drain()
                .map(|(k, v)| (k[prefix.len()..].to_string(), v))
                .collect();
        }
        self
    }

    /// A view of the names under `prefix` (`"a.b"` reads `"a.b.<name>"`).
    pub fn view(&self, prefix: &str) -> WeightsView<'_> {
        WeightsView {
            weights: self,
            prefix: prefix.to_string(),
        }
    }

    /// A view of all names.
    pub fn root(&self) -> WeightsView<'_> {
        self.view("")
    }

    /// Whether the checkpoint holds a tensor called `key`.
    pub fn contains(&self, key: &str) -> bool {
        self.index.contains_key(key)
    }

    /// All tensor names, sorted.
    pub fn keys(&self) -> Vec<&str> {
        let mut keys: Vec<&str> = self.index.keys().map(String::as_str).collect();
        keys.sort_unstable();
        keys
    }

    /// The number of values of all tensors, whatever the files store them as.
    pub fn values(&self) -> u64 {
        self.entries()
            .map(|entry| entry.shape.iter().map(|&d| d as u64).product::<u64>())
            .sum()
    }

    /// The bytes all tensors take once loaded with floats of `dtype_bytes` bytes: matrices of
    /// ggml blocks (linear weights, see [`Weights::quantized`]) stay quantized at their stored
    /// size, every other tensor is decoded into the compute dtype.
    pub fn loaded_bytes(&self, dtype_bytes: usize) -> u64 {
        self.entries()
            .map(|entry| match entry.kept_quantized() {
                Some(_) => entry.bytes.len() as u64,
                None => entry.shape.iter().map(|&d| d as u64).product::<u64>() * dtype_bytes as u64,
            })
            .sum()
    }

    fn entries(&self) -> impl Iterator<Item = &Entry> {
        self.index
            .values()
            .map(|(file, name)| &self.files[*file].tensors[name])
    }

    /// The shape of `key` (outermost dimension first, in GGUF files too).
    pub fn shape(&self, key: &str) -> Result<Vec<usize>, LoadError> {
        Ok(self.info(key)?.1.shape.clone())
    }

    /// The tensor `key`, checked to have `shape`, on `device` in the device's float dtype.
    pub fn tensor<B: Backend, const D: usize>(
        &self,
        key: &str,
        shape: [usize; D],
        device: &B::Device,
    ) -> Result<Tensor<B, D>, LoadError> {
        let data = self.data(key, &shape)?;
        Ok(Tensor::from_data(data, device))
    }

    /// The tensor `key` as host data, checked to have `shape` and to hold only finite values:
    /// floats in their stored dtype, ggml blocks decoded to f32.
    pub fn data(&self, key: &str, shape: &[usize]) -> Result<TensorData, LoadError> {
        let (file, entry) = self.checked(key, shape)?;
        let bytes = &file.mmap[entry.bytes.clone()];
        let data = match &entry.encoding {
            Encoding::Float(dtype) => {
                TensorData::from_bytes_vec(bytes.to_vec(), shape.to_vec(), *dtype)
            }
            Encoding::Blocks(dtype) => {
                let values =
                    gguf::dequantize(*dtype, bytes).map_err(|message| LoadError::Corrupt {
                        path: file.path.clone(),
                        format: "GGUF",
                        message: format!("tensor {key:?}: {message}"),
                    })?;
                TensorData::new(values, shape.to_vec())
            }
            Encoding::Other(_) => unreachable!("`checked` refuses tensors that are not floats"),
        };
        self.mark_used(key);
        Ok(data)
    }

    /// The matrix `key`, checked to have `shape` and to decode to finite values, kept
    /// quantized in the memory map when the file stores it as ggml blocks whose rows are whole
    /// blocks; `None` when it is stored otherwise (read it with [`Weights::tensor`]).
    pub fn quantized(
        &self,
        key: &str,
        shape: [usize; 2],
    ) -> Result<Option<QuantizedMatrix>, LoadError> {
        let Some(dtype) = self.info(key)?.1.kept_quantized() else {
            return Ok(None);
        };
        let (file, entry) = self.checked(key, &shape)?;
        self.mark_used(key);
        Ok(Some(QuantizedMatrix::new(
            Arc::clone(&file.mmap),
            dtype,
            entry.bytes.clone(),
            shape,
        )))
    }

    /// Where `key` is stored, once checked to have `shape`, to be a float or ggml-block tensor
    /// and to hold only finite values.
    fn checked(&self, key: &str, shape: &[usize]) -> Result<(&WeightFile, &Entry), LoadError> {
        let (file, entry) = self.info(key)?;
        if entry.shape != shape {
            return Err(LoadError::Shape {
                key: key.to_string(),
                path: file.path.clone(),
                expected: shape.to_vec(),
                found: entry.shape.clone(),
            });
        }
        let bytes = &file.mmap[entry.bytes.clone()];
        let non_finite = match &entry.encoding {
            Encoding::Float(dtype) => non_finite(bytes, *dtype),
            Encoding::Blocks(dtype) => gguf::non_finite_values(*dtype, bytes),
            Encoding::Other(dtype) => {
                return Err(LoadError::Dtype {
                    key: key.to_string(),
                    path: file.path.clone(),
                    dtype: dtype.clone(),
                });
            }
        };
        if non_finite > 0 {
            return Err(LoadError::NonFinite {
                key: key.to_string(),
                path: file.path.clone(),
                count: non_finite,
            });
        }
        Ok((file, entry))
    }

    fn mark_used(&self, key: &str) {
        self.used
            .lock()
            .expect("no panics while holding the lock")
            .insert(key.to_string());
    }

    /// How the tensor `key` is stored: `"F32"`, `"BF16"`, a ggml type (`"Q8_0"`, `"Q4_K"`).
    pub fn stored_type(&self, key: &str) -> Result<String, LoadError> {
        Ok(match &self.info(key)?.1.encoding {
            Encoding::Float(dtype) => format!("{dtype:?}").to_uppercase(),
            Encoding::Blocks(dtype) => gguf::block_name(*dtype),
            Encoding::Other(dtype) => dtype.clone(),
        })
    }

    /// The `general.architecture` a GGUF file of the checkpoint declares (`"flux"`,
    /// `"t5encoder"`); `None` for safetensors.
    pub fn architecture(&self) -> Option<&str> {
        self.files
            .iter()
            .find_map(|file| file.architecture.as_deref())
    }

    /// Fails when a GGUF file of the checkpoint declares a `general.architecture` other than
    /// `expected` (`"flux"`, `"wan"`, `"hyvid"`); files that declare none pass.
    pub fn check_architecture(&self, expected: &'static str) -> Result<(), LoadError> {
        for file in &self.files {
            if let Some(found) = file.architecture.as_deref().filter(|a| *a != expected) {
                return Err(LoadError::Architecture {
                    path: file.path.clone(),
                    found: found.to_string(),
                    expected,
                });
            }
        }
        Ok(())
    }

    /// Names never read so far (sorted).
    pub fn unused(&self) -> Vec<String> {
        let used = self.used.lock().expect("no panics while holding the lock");
        let mut unused: Vec<String> = self
            .index
            .keys()
            .filter(|k| !used.contains(*k))
            .cloned()
            .collect();
        unused.sort_unstable();
        unused
    }

    /// Fails when some tensors were never read: the configuration did not ask for them.
    pub fn check_all_used(&self) -> Result<(), LoadError> {
        self.check_all_used_except(|_| false)
    }

    /// Fails when some tensors were never read, other than those `ignorable` accepts (a tied
    /// tensor's alias, a stored buffer, a VAE's encoder).
    pub fn check_all_used_except(&self, ignorable: impl Fn(&str) -> bool) -> Result<(), LoadError> {
        let unused: Vec<String> = self
            .unused()
            .into_iter()
            .filter(|key| !ignorable(key))
            .collect();
        if unused.is_empty() {
            Ok(())
        } else {
            Err(LoadError::Unused {
                count: unused.len(),
                examples: unused.into_iter().take(5).collect(),
            })
        }
    }

    fn info(&self, key: &str) -> Result<(&WeightFile, &Entry), LoadError> {
        let (i, name) = self.index.get(key).ok_or_else(|| LoadError::MissingKey {
            key: key.to_string(),
            source_desc: self.describe(),
        })?;
        let file = &self.files[*i];
        Ok((file, &file.tensors[name]))
    }

    fn describe(&self) -> String {
        match self.files.as_slice() {
            [one] => one.path.display().to_string(),
            many => format!(
                "{} files in {}",
                many.len(),
                many[0]
                    .path
                    .parent()
                    .map(|p| p.display().to_string())
                    .unwrap_or_default()
            ),
        }
    }
}

/// How many of the little-endian floats in `bytes` (of dtype `dtype`) are NaN or infinite: those
/// whose exponent bits are all ones. A bit test, so checking a checkpoint costs little next to
/// copying it.
fn non_finite(bytes: &[u8], dtype: DType) -> usize {
    fn count<const N: usize>(bytes: &[u8], exponent: u64) -> usize {
        bytes
            .chunks_exact(N)
            .filter(|b| {
                let mut word = [0u8; 8];
                word[..N].copy_from_slice(b);
                u64::from_le_bytes(word) & exponent == exponent
            })
            .count()
    }
    match dtype {
        DType::F16 => count::<2>(bytes, 0x7c00),
        DType::BF16 => count::<2>(bytes, 0x7f80),
        DType::F32 => count::<4>(bytes, 0x7f80_0000),
        DType::F64 => count::<8>(bytes, 0x7ff0_0000_0000_0000),
        _ => 0,
    }
}

/// The tensors of a [`Weights`] under a name prefix, as a module's loader sees them.
#[derive(Clone)]
pub struct WeightsView<'a> {
    weights: &'a Weights,
    prefix: String,
}

impl<'a> WeightsView<'a> {
    /// The view of the sub-module `name` (`"blocks.3"`, `"attn"`).
    pub fn at(&self, name: impl std::fmt::Display) -> WeightsView<'a> {
        WeightsView {
            weights: self.weights,
            prefix: self.key(&name.to_string()),
        }
    }

    /// The full tensor name of `name` in this view.
    pub fn key(&self, name: &str) -> String {
        if self.prefix.is_empty() {
            name.to_string()
        } else {
            format!("{}.{name}", self.prefix)
        }
    }

    /// Whether the tensor `name` exists under this view.
    pub fn contains(&self, name: &str) -> bool {
        self.weights.contains(&self.key(name))
    }

    /// The tensor `name`, checked to have `shape`, on `device`.
    pub fn tensor<B: Backend, const D: usize>(
        &self,
        name: &str,
        shape: [usize; D],
        device: &B::Device,
    ) -> Result<Tensor<B, D>, LoadError> {
        self.weights.tensor(&self.key(name), shape, device)
    }

    /// The matrix `name` kept quantized, when stored as ggml blocks (see
    /// [`Weights::quantized`]).
    pub fn quantized(
        &self,
        name: &str,
        shape: [usize; 2],
    ) -> Result<Option<QuantizedMatrix>, LoadError> {
        self.weights.quantized(&self.key(name), shape)
    }

    /// The tensor `name` if present, else `None`; present with a wrong shape is an error.
    pub fn optional<B: Backend, const D: usize>(
        &self,
        name: &str,
        shape: [usize; D],
        device: &B::Device,
    ) -> Result<Option<Tensor<B, D>>, LoadError> {
        if self.contains(name) {
            self.tensor(name, shape, device).map(Some)
        } else {
            Ok(None)
        }
    }

    /// The stored shape of the tensor `name`.
    pub fn shape(&self, name: &str) -> Result<Vec<usize>, LoadError> {
        self.weights.shape(&self.key(name))
    }
}
