//! GGUF checkpoints: llama.cpp's container, in which city96's FLUX.1, Wan 2.1 and HunyuanVideo
//! conversions (the files ComfyUI and stable-diffusion.cpp users have) are published.
//!
//! The header — metadata, then each tensor's name, ggml shape, ggml type and offset — is read
//! here, with every count and offset checked against the file; quantized blocks are decoded by
//! candle's ggml block decoders when a tensor is read.

use std::collections::HashMap;

use burn::tensor::DType;
use candle_core::quantized::{
    GgmlDType,
    k_quants::{
        BlockQ2K, BlockQ3K, BlockQ4_0, BlockQ4_1, BlockQ4K, BlockQ5_0, BlockQ5_1, BlockQ5K,
        BlockQ6K, BlockQ8_0, GgmlType,
    },
};
use rayon::prelude::*;

use super::{Encoding, Entry};

/// The magic bytes a GGUF file starts with.
pub(super) const MAGIC: &[u8; 4] = b"GGUF";
/// The data section's alignment when `general.alignment` does not set it.
const DEFAULT_ALIGNMENT: usize = 32;
/// The most dimensions a tensor may have (ggml has 4; ComfyUI-GGUF adds 5-D patch embeddings).
const MAX_DIMS: usize = 8;
/// How deeply metadata arrays may nest.
const MAX_NESTING: usize = 8;
/// The metadata key prefix under which ComfyUI-GGUF records a tensor's shape before it was
/// flattened into rows of 256 for quantization.
const ORIGINAL_SHAPE_KEY: &str = "comfy.gguf.orig_shape.";

/// How a tensor of ggml type `id` is stored and its block size (values, bytes), or the type's
/// name (or number) when this loader cannot read it.
fn encoding(id: u32) -> Result<(Encoding, (usize, usize)), String> {
    let float = |dtype: DType| (Encoding::Float(dtype), (1, dtype.size()));
    let blocks = |dtype: GgmlDType| {
        let block = (dtype.block_size(), dtype.type_size());
        (Encoding::Blocks(dtype), block)
    };
    Ok(match id {
        0 => float(DType::F32),
        1 => float(DType::F16),
        30 => float(DType::BF16),
        2 => blocks(GgmlDType::Q4_0),
        3 => blocks(GgmlDType::Q4_1),
        6 => blocks(GgmlDType::Q5_0),
        7 => blocks(GgmlDType::Q5_1),
        8 => blocks(GgmlDType::Q8_0),
        10 => blocks(GgmlDType::Q2K),
        11 => blocks(GgmlDType::Q3K),
        12 => blocks(GgmlDType::Q4K),
        13 => blocks(GgmlDType::Q5K),
        14 => blocks(GgmlDType::Q6K),
        other => return Err(unsupported_name(other)),
    })
}

/// ggml's name of a block type (`Q4_K`, `Q8_0`).
pub(super) fn block_name(dtype: GgmlDType) -> String {
    format!("{dtype:?}").replace('K', "_K")
}

/// The ggml types [`encoding`] reads.
pub(crate) const SUPPORTED: &str =
    "F32, F16, BF16, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q2_K, Q3_K, Q4_K, Q5_K, Q6_K";

/// ggml's name of a type this loader does not read.
fn unsupported_name(id: u32) -> String {
    let name = match id {
        9 => "Q8_1",
        15 => "Q8_K",
        16 => "IQ2_XXS",
        17 => "IQ2_XS",
        18 => "IQ3_XXS",
        19 => "IQ1_S",
        20 => "IQ4_NL",
        21 => "IQ3_S",
        22 => "IQ2_S",
        23 => "IQ4_XS",
        24 => "I8",
        25 => "I16",
        26 => "I32",
        27 => "I64",
        28 => "F64",
        29 => "IQ1_M",
        34 => "TQ1_0",
        35 => "TQ2_0",
        39 => "MXFP4",
        40 => "NVFP4",
        _ => return format!("unknown ggml type {id}"),
    };
    name.to_string()
}

/// What the header of a GGUF file says.
#[derive(Debug)]
pub(super) struct GgufHeader {
    /// `general.architecture` (`flux`, `wan`, `hyvid` for city96's conversions).
    pub architecture: Option<String>,
    /// The tensors by name.
    pub tensors: HashMap<String, Entry>,
}

/// Why a GGUF header could not be read.
#[derive(Debug)]
pub(super) enum HeaderError {
    /// The file is truncated or damaged.
    Corrupt(String),
    /// A tensor is stored in a type this loader does not read.
    Unsupported {
        /// The tensor.
        key: String,
        /// ggml's name of its type.
        kind: String,
    },
}

impl From<String> for HeaderError {
    fn from(message: String) -> Self {
        Self::Corrupt(message)
    }
}

/// A metadata value.
#[derive(Debug, Clone, PartialEq)]
enum Value {
    Uint(u64),
    Int(i64),
    Float(f64),
    Bool(bool),
    Str(String),
    Array(Vec<Value>),
}

impl Value {
    fn as_usize(&self) -> Option<usize> {
        match *self {
            Self::Uint(v) => usize::try_from(v).ok(),
            Self::Int(v) => usize::try_from(v).ok(),
            _ => None,
        }
    }
}

/// A reader over the file's bytes that fails, naming what it read, where the file ends.
struct Cursor<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize, what: &str) -> Result<&'a [u8], String> {
        let end = self
            .at
            .checked_add(n)
            .filter(|&end| end <= self.bytes.len())
            .ok_or_else(|| {
                format!(
                    "the file ends (at byte {}) inside {what}, which starts at byte {}",
                    self.bytes.len(),
                    self.at
                )
            })?;
        let taken = &self.bytes[self.at..end];
        self.at = end;
        Ok(taken)
    }

    fn array<const N: usize>(&mut self, what: &str) -> Result<[u8; N], String> {
        Ok(self.take(N, what)?.try_into().expect("took N bytes"))
    }

    fn u32(&mut self, what: &str) -> Result<u32, String> {
        Ok(u32::from_le_bytes(self.array(what)?))
    }

    fn u64(&mut self, what: &str) -> Result<u64, String> {
        Ok(u64::from_le_bytes(self.array(what)?))
    }

    /// A count or length, at most `remaining bytes / min_size` (each item takes at least
    /// `min_size` bytes), so a damaged count fails before anything is allocated for it.
    fn count(&mut self, min_size: usize, what: &str) -> Result<usize, String> {
        let count = self.u64(what)?;
        let fits = (self.bytes.len() - self.at) / min_size.max(1);
        usize::try_from(count)
            .ok()
            .filter(|&n| n <= fits)
            .ok_or_else(|| format!("{what} is {count}, more than the rest of the file holds"))
    }

    fn string(&mut self, what: &str) -> Result<String, String> {
        let len = self.count(1, &format!("the length of {what}"))?;
        let bytes = self.take(len, what)?;
        String::from_utf8(bytes.to_vec()).map_err(|_| format!("{what} is not UTF-8"))
    }

    fn value(&mut self, kind: u32, key: &str, depth: usize) -> Result<Value, String> {
        let what = format!("the value of {key:?}");
        Ok(match kind {
            0 => Value::Uint(self.array::<1>(&what)?[0].into()),
            1 => Value::Int(i8::from_le_bytes(self.array(&what)?).into()),
            2 => Value::Uint(u16::from_le_bytes(self.array(&what)?).into()),
            3 => Value::Int(i16::from_le_bytes(self.array(&what)?).into()),
            4 => Value::Uint(self.u32(&what)?.into()),
            5 => Value::Int(i32::from_le_bytes(self.array(&what)?).into()),
            6 => Value::Float(f32::from_le_bytes(self.array(&what)?).into()),
            7 => Value::Bool(self.array::<1>(&what)?[0] != 0),
            8 => Value::Str(self.string(&what)?),
            9 => {
                if depth >= MAX_NESTING {
                    return Err(format!("{what} nests arrays more than {MAX_NESTING} deep"));
                }
                let item = self.u32(&what)?;
                let len = self.count(1, &format!("the length of {what}"))?;
                let items = (0..len)
                    .map(|_| self.value(item, key, depth + 1))
                    .collect::<Result<_, _>>()?;
                Value::Array(items)
            }
            10 => Value::Uint(self.u64(&what)?),
            11 => Value::Int(i64::from_le_bytes(self.array(&what)?)),
            12 => Value::Float(f64::from_le_bytes(self.array(&what)?)),
            other => return Err(format!("{what} has the unknown value type {other}")),
        })
    }
}

/// Reads the header of the GGUF file `bytes` (versions 2 and 3) and locates every tensor in it.
pub(super) fn read_header(bytes: &[u8]) -> Result<GgufHeader, HeaderError> {
    let mut cursor = Cursor { bytes, at: 0 };
    if cursor.take(4, "the magic bytes")? != MAGIC {
        return Err(HeaderError::Corrupt(
            "it does not start with \"GGUF\"".into(),
        ));
    }
    let version = cursor.u32("the version")?;
    if !(2..=3).contains(&version) {
        return Err(HeaderError::Corrupt(format!(
            "GGUF version {version} is not supported (2 and 3 are)"
        )));
    }
    // A tensor entry takes at least 8 (name length) + 4 (dims) + 4 (type) + 8 (offset) bytes,
    // a metadata entry 8 (key length) + 4 (type) + 1.
    let tensor_count = cursor.count(24, "the tensor count")?;
    let metadata_count = cursor.count(13, "the metadata count")?;
    let mut metadata = HashMap::with_capacity(metadata_count);
    for _ in 0..metadata_count {
        let key = cursor.string("a metadata key")?;
        let kind = cursor.u32(&format!("the value type of {key:?}"))?;
        let value = cursor.value(kind, &key, 0)?;
        metadata.insert(key, value);
    }
    let mut entries = Vec::with_capacity(tensor_count);
    for _ in 0..tensor_count {
        let name = cursor.string("a tensor name")?;
        let dims = cursor.u32(&format!("the rank of {name:?}"))? as usize;
        if dims > MAX_DIMS {
            return Err(format!("tensor {name:?} has {dims} dimensions").into());
        }
        let mut shape = (0..dims)
            .map(|_| {
                let dim = cursor.u64(&format!("the shape of {name:?}"))?;
                usize::try_from(dim).map_err(|_| format!("tensor {name:?} has dimension {dim}"))
            })
            .collect::<Result<Vec<usize>, String>>()?;
        shape.reverse();
        let id = cursor.u32(&format!("the type of {name:?}"))?;
        let (encoding, block) = encoding(id).map_err(|kind| HeaderError::Unsupported {
            key: name.clone(),
            kind,
        })?;
        let offset = cursor.u64(&format!("the offset of {name:?}"))?;
        entries.push((name, shape, encoding, block, offset));
    }
    let alignment = match metadata.get("general.alignment") {
        None => DEFAULT_ALIGNMENT,
        Some(value) => value
            .as_usize()
            .filter(|&a| a > 0)
            .ok_or_else(|| format!("general.alignment is {value:?}"))?,
    };
    let data_start = cursor.at.div_ceil(alignment) * alignment;

    let mut tensors = HashMap::with_capacity(entries.len());
    for (name, mut shape, encoding, block, offset) in entries {
        let len = byte_len(&name, &shape, block)?;
        let bytes = usize::try_from(offset)
            .ok()
            .and_then(|offset| offset.checked_add(data_start))
            .and_then(|start| Some(start..start.checked_add(len)?))
            .filter(|range| range.end <= cursor.bytes.len())
            .ok_or_else(|| {
                format!(
                    "tensor {name:?} ({len} bytes at offset {offset} of the data, which starts \
                     at byte {data_start}) lies past the end of the file ({} bytes): truncated?",
                    cursor.bytes.len()
                )
            })?;
        if let Some(value) = metadata.get(&format!("{ORIGINAL_SHAPE_KEY}{name}")) {
            shape = original_shape(&name, &shape, value)?;
        }
        if tensors
            .insert(
                name.clone(),
                Entry {
                    shape,
                    encoding,
                    bytes,
                },
            )
            .is_some()
        {
            return Err(format!("tensor {name:?} appears twice").into());
        }
    }
    let architecture = match metadata.get("general.architecture") {
        Some(Value::Str(arch)) => Some(arch.clone()),
        Some(other) => return Err(format!("general.architecture is {other:?}").into()),
        None => None,
    };
    Ok(GgufHeader {
        architecture,
        tensors,
    })
}

/// The bytes a tensor of `shape` stored in blocks of `per_block` values and `block_bytes` bytes
/// takes; its rows must be whole blocks.
fn byte_len(
    name: &str,
    shape: &[usize],
    (per_block, block_bytes): (usize, usize),
) -> Result<usize, String> {
    let row = shape.last().copied().unwrap_or(1);
    if row % per_block != 0 {
        return Err(format!(
            "tensor {name:?} has rows of {row} values, not whole blocks of {per_block}"
        ));
    }
    shape
        .iter()
        .try_fold(1usize, |n, &d| n.checked_mul(d))
        .and_then(|values| (values / per_block).checked_mul(block_bytes))
        .ok_or_else(|| format!("tensor {name:?} has the impossible shape {shape:?}"))
}

/// The shape ComfyUI-GGUF recorded for `name` before flattening it to `stored`.
fn original_shape(name: &str, stored: &[usize], value: &Value) -> Result<Vec<usize>, String> {
    let shape = match value {
        Value::Array(items) => items
            .iter()
            .map(Value::as_usize)
            .collect::<Option<Vec<_>>>(),
        _ => None,
    };
    match shape {
        Some(shape)
            if shape.iter().try_fold(1usize, |n, &d| n.checked_mul(d))
                == Some(stored.iter().product()) =>
        {
            Ok(shape)
        }
        _ => Err(format!(
            "{ORIGINAL_SHAPE_KEY}{name} is {value:?}, not a shape of the stored {stored:?}"
        )),
    }
}

/// Blocks decoded per task when a tensor is decoded in parallel.
const CHUNK_BLOCKS: usize = 1 << 14;

/// The values of the quantized blocks `bytes` of type `dtype`, in order, decoded in parallel
/// chunks of whole blocks.
pub(super) fn dequantize(dtype: GgmlDType, bytes: &[u8]) -> Result<Vec<f32>, String> {
    let mut values = vec![0f32; bytes.len() / dtype.type_size() * dtype.block_size()];
    dequantize_into(dtype, bytes, &mut values)?;
    Ok(values)
}

/// Decodes the quantized blocks `bytes` of type `dtype` into `out` (one value per slot), in
/// parallel chunks of whole blocks.
pub(super) fn dequantize_into(
    dtype: GgmlDType,
    bytes: &[u8],
    out: &mut [f32],
) -> Result<(), String> {
    let (per_block, block_bytes) = (dtype.block_size(), dtype.type_size());
    if !bytes.len().is_multiple_of(block_bytes)
        || bytes.len() / block_bytes * per_block != out.len()
    {
        return Err(format!(
            "{} bytes of {} blocks do not decode to {} values",
            bytes.len(),
            block_name(dtype),
            out.len()
        ));
    }
    out.par_chunks_mut(CHUNK_BLOCKS * per_block)
        .zip(bytes.par_chunks(CHUNK_BLOCKS * block_bytes))
        .try_for_each(|(out, chunk)| decode_chunk(dtype, chunk, out))
}

/// Where a block of type `dtype` keeps its f16 scales (`d`, and `dmin` or `m` where it has
/// one), in bytes from the block's start: every value of a block is a finite combination of
/// small integers and these, so the block decodes to finite values exactly when they are finite.
fn scale_offsets(dtype: GgmlDType) -> &'static [usize] {
    match dtype {
        GgmlDType::Q4_0 | GgmlDType::Q5_0 | GgmlDType::Q8_0 => &[0],
        GgmlDType::Q4_1 | GgmlDType::Q5_1 | GgmlDType::Q4K | GgmlDType::Q5K => &[0, 2],
        // scales[16], qs[64], then d and dmin.
        GgmlDType::Q2K => &[80, 82],
        // hmask[32], qs[64], scales[12], then d.
        GgmlDType::Q3K => &[108],
        // ql[128], qh[64], scales[16], then d.
        GgmlDType::Q6K => &[208],
        // Types the loader does not read as blocks (see `encoding`) have no entry.
        _ => &[],
    }
}

/// How many values of the quantized blocks `bytes` of type `dtype` would decode to NaN or
/// infinity, found from the blocks' scales without decoding them.
pub(super) fn non_finite_values(dtype: GgmlDType, bytes: &[u8]) -> usize {
    let offsets = scale_offsets(dtype);
    let blocks = bytes
        .par_chunks(CHUNK_BLOCKS * dtype.type_size())
        .map(|chunk| {
            chunk
                .chunks_exact(dtype.type_size())
                .filter(|block| {
                    offsets.iter().any(|&at| {
                        let bits = u16::from_le_bytes([block[at], block[at + 1]]);
                        bits & 0x7c00 == 0x7c00
                    })
                })
                .count()
        })
        .sum::<usize>();
    blocks * dtype.block_size()
}

/// Decodes the whole blocks `bytes` of type `dtype` into `out` with candle's decoder of that
/// block type.
fn decode_chunk(dtype: GgmlDType, bytes: &[u8], out: &mut [f32]) -> Result<(), String> {
    match dtype {
        GgmlDType::Q4_0 => decode::<BlockQ4_0>(bytes, out),
        GgmlDType::Q4_1 => decode::<BlockQ4_1>(bytes, out),
        GgmlDType::Q5_0 => decode::<BlockQ5_0>(bytes, out),
        GgmlDType::Q5_1 => decode::<BlockQ5_1>(bytes, out),
        GgmlDType::Q8_0 => decode::<BlockQ8_0>(bytes, out),
        GgmlDType::Q2K => decode::<BlockQ2K>(bytes, out),
        GgmlDType::Q3K => decode::<BlockQ3K>(bytes, out),
        GgmlDType::Q4K => decode::<BlockQ4K>(bytes, out),
        GgmlDType::Q5K => decode::<BlockQ5K>(bytes, out),
        GgmlDType::Q6K => decode::<BlockQ6K>(bytes, out),
        other => Err(format!("{} blocks are not decoded here", block_name(other))),
    }
}

/// Decodes the blocks of type `T` in `bytes` into `out`, reading them where they lie (in the
/// memory map) when `bytes` is aligned for `T`, else from an aligned copy.
fn decode<T: GgmlType>(bytes: &[u8], out: &mut [f32]) -> Result<(), String> {
    let size = std::mem::size_of::<T>();
    let count = bytes.len() / size;
    if !bytes.len().is_multiple_of(size) || count * T::BLCK_SIZE != out.len() {
        return Err(format!(
            "{} bytes are not {} whole {} blocks",
            bytes.len(),
            out.len() / T::BLCK_SIZE,
            block_name(T::DTYPE)
        ));
    }
    let copy: Vec<u64>;
    let bytes = if bytes.as_ptr().align_offset(std::mem::align_of::<T>()) == 0 {
        bytes
    } else {
        let mut words = vec![0u64; bytes.len().div_ceil(8)];
        bytemuck::cast_slice_mut::<u64, u8>(&mut words)[..bytes.len()].copy_from_slice(bytes);
        copy = words;
        &bytemuck::cast_slice::<u64, u8>(&copy)[..bytes.len()]
    };
    // SAFETY: `T` is one of candle's `repr(C)` ggml block structs, made of f16 scales and byte
    // arrays only, so every bit pattern is a valid value; `bytes` holds exactly `count` of them
    // and is aligned for `T` (checked above, or an 8-byte aligned copy), and outlives `blocks`.
    let blocks = unsafe { std::slice::from_raw_parts(bytes.as_ptr().cast::<T>(), count) };
    T::to_float(blocks, out);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Two Q8_0 blocks (scale 0.5 and -2, quants -16..16 and 15..-17).
    fn q8_0_blocks() -> (Vec<u8>, Vec<f32>) {
        let (mut bytes, mut values) = (Vec::new(), Vec::new());
        for (scale, first) in [(0.5f32, -16i8), (-2.0, 15)] {
            bytes.extend_from_slice(&half::f16::from_f32(scale).to_le_bytes());
            let step = if first < 0 { 1 } else { -1 };
            for i in 0..32i8 {
                let q = first + step * i;
                bytes.push(q as u8);
                values.push(scale * q as f32);
            }
        }
        (bytes, values)
    }

    #[test]
    fn blocks_decode_in_place_and_from_an_aligned_copy() {
        let (bytes, want) = q8_0_blocks();
        let mut out = vec![0f32; 64];
        dequantize_into(GgmlDType::Q8_0, &bytes, &mut out).unwrap();
        assert_eq!(out, want);
        // The same blocks one byte off their alignment.
        let mut shifted = vec![0u8; bytes.len() + 1];
        shifted[1..].copy_from_slice(&bytes);
        let misaligned = &shifted[1..];
        assert_ne!(misaligned.as_ptr().align_offset(2), 0);
        out.fill(0.0);
        decode::<BlockQ8_0>(misaligned, &mut out).unwrap();
        assert_eq!(out, want);
        // Not whole blocks, or too few slots: an error, not a panic.
        assert!(dequantize_into(GgmlDType::Q8_0, &bytes[..40], &mut out).is_err());
        assert!(decode::<BlockQ8_0>(&bytes, &mut out[..32]).is_err());
    }
}
