//! GGUF files of random weights at the released models' sizes, laid out as city96's
//! conversions are (original tensor names, `general.architecture`), for the memory benchmark:
//! matrices quantized, 1-D and small tensors F32, matrices whose rows are not whole blocks F16.

use std::{
    fs::File,
    io::{BufWriter, Write},
    path::Path,
};

use anyhow::{Context, Result};
use half::f16;
use rand::{Rng, SeedableRng, rngs::StdRng};

/// GGUF's data alignment (the default, which the files do not override).
const ALIGNMENT: u64 = 32;
/// Tensors of at most this many values stay F32 (ComfyUI-GGUF's rule).
const SMALL: usize = 1024;
/// Bytes generated at a time.
const CHUNK: usize = 32 << 20;

/// The quantized types the benchmark writes.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize, serde::Deserialize,
)]
pub enum Quant {
    /// 8-bit blocks of 32 with an f16 scale (34 bytes).
    #[value(name = "Q8_0")]
    #[serde(rename = "Q8_0")]
    Q8_0,
    /// 4-bit super-blocks of 256 with f16 scale and minimum and 6-bit sub-block scales (144
    /// bytes).
    #[value(name = "Q4_K")]
    #[serde(rename = "Q4_K")]
    Q4K,
}

impl Quant {
    /// ggml's name.
    pub fn name(self) -> &'static str {
        match self {
            Quant::Q8_0 => "Q8_0",
            Quant::Q4K => "Q4_K",
        }
    }
}

/// How one tensor is stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stored {
    F32,
    F16,
    Blocks(Quant),
}

impl Stored {
    /// ggml's type id.
    fn id(self) -> u32 {
        match self {
            Stored::F32 => 0,
            Stored::F16 => 1,
            Stored::Blocks(Quant::Q8_0) => 8,
            Stored::Blocks(Quant::Q4K) => 12,
        }
    }

    /// (values, bytes) per block.
    fn block(self) -> (usize, usize) {
        match self {
            Stored::F32 => (1, 4),
            Stored::F16 => (1, 2),
            Stored::Blocks(Quant::Q8_0) => (32, 34),
            Stored::Blocks(Quant::Q4K) => (256, 144),
        }
    }

    /// ComfyUI-GGUF's choice for a tensor of `shape`: small and non-matrix tensors F32,
    /// matrices quantized when their rows are whole blocks, else F16.
    fn of(shape: &[usize], quant: Quant) -> Self {
        let values: usize = shape.iter().product();
        match shape {
            [_, cols] if values > SMALL => {
                let blocks = Stored::Blocks(quant);
                if cols % blocks.block().0 == 0 {
                    blocks
                } else {
                    Stored::F16
                }
            }
            _ => Stored::F32,
        }
    }

    fn bytes(self, shape: &[usize]) -> u64 {
        let (per_block, block_bytes) = self.block();
        (shape.iter().product::<usize>() / per_block * block_bytes) as u64
    }
}

/// Writes `tensors` (name, shape outermost first) as a GGUF file of architecture
/// `architecture` at `path` with random values of magnitude about 0.02 (norm scales 1), every
/// matrix that allows it quantized to `quant`. Returns the file's size in bytes.
pub fn write(
    path: &Path,
    architecture: &str,
    tensors: &[(String, Vec<usize>)],
    quant: Quant,
) -> Result<u64> {
    let partial = path.with_extension("gguf.partial");
    let file =
        File::create(&partial).with_context(|| format!("cannot create {}", partial.display()))?;
    let mut out = BufWriter::with_capacity(1 << 20, file);
    let stored: Vec<Stored> = tensors.iter().map(|(_, s)| Stored::of(s, quant)).collect();

    let mut header = Vec::new();
    header.extend_from_slice(b"GGUF");
    header.extend_from_slice(&3u32.to_le_bytes());
    header.extend_from_slice(&(tensors.len() as u64).to_le_bytes());
    header.extend_from_slice(&1u64.to_le_bytes());
    push_string(&mut header, "general.architecture");
    header.extend_from_slice(&8u32.to_le_bytes()); // a string
    push_string(&mut header, architecture);
    let mut offset = 0u64;
    for ((name, shape), kind) in tensors.iter().zip(&stored) {
        push_string(&mut header, name);
        header.extend_from_slice(&(shape.len() as u32).to_le_bytes());
        for &dim in shape.iter().rev() {
            header.extend_from_slice(&(dim as u64).to_le_bytes());
        }
        header.extend_from_slice(&kind.id().to_le_bytes());
        header.extend_from_slice(&offset.to_le_bytes());
        offset = (offset + kind.bytes(shape)).div_ceil(ALIGNMENT) * ALIGNMENT;
    }
    pad(&mut header);
    out.write_all(&header)?;

    let mut rng = StdRng::seed_from_u64(0);
    let mut buffer = Vec::new();
    for ((name, shape), kind) in tensors.iter().zip(&stored) {
        let total = kind.bytes(shape) as usize;
        let block_bytes = kind.block().1;
        let norm = name.contains("norm");
        let mut written = 0;
        while written < total {
            let len = (total - written).min(CHUNK / block_bytes * block_bytes);
            buffer.resize(len, 0);
            fill(&mut rng, *kind, norm, &mut buffer);
            out.write_all(&buffer)?;
            written += len;
        }
        let padding = (total as u64).div_ceil(ALIGNMENT) * ALIGNMENT - total as u64;
        out.write_all(&vec![0u8; padding as usize])?;
    }
    out.into_inner()
        .map_err(|e| e.into_error())?
        .sync_all()
        .with_context(|| format!("cannot write {}", partial.display()))?;
    std::fs::rename(&partial, path)
        .with_context(|| format!("cannot move {} into place", partial.display()))?;
    Ok(std::fs::metadata(path)?.len())
}

/// Random values of `kind` in whole blocks: floats uniform in ±0.02 (norm scales 1); blocks
/// with random quants and scales chosen so the values span about ±0.02.
fn fill(rng: &mut StdRng, kind: Stored, norm: bool, bytes: &mut [u8]) {
    let uniform = |rng: &mut StdRng| (rng.next_u32() as f32 / u32::MAX as f32 - 0.5) * 0.04;
    match kind {
        Stored::F32 => {
            for value in bytes.chunks_exact_mut(4) {
                let v = if norm { 1.0 } else { uniform(rng) };
                value.copy_from_slice(&v.to_le_bytes());
            }
        }
        Stored::F16 => {
            for value in bytes.chunks_exact_mut(2) {
                value.copy_from_slice(&f16::from_f32(uniform(rng)).to_le_bytes());
            }
        }
        Stored::Blocks(quant) => {
            rng.fill_bytes(bytes);
            let (_, block_bytes) = kind.block();
            // Q8_0: d * q, q in ±127. Q4_K: d * scale * q - dmin * min, with 6-bit scales and
            // minimums and 4-bit q.
            let scales: &[f32] = match quant {
                Quant::Q8_0 => &[0.02 / 127.0],
                Quant::Q4K => &[0.04 / (63.0 * 15.0), 0.02 / 63.0],
            };
            for block in bytes.chunks_exact_mut(block_bytes) {
                for (i, &scale) in scales.iter().enumerate() {
                    block[2 * i..2 * i + 2].copy_from_slice(&f16::from_f32(scale).to_le_bytes());
                }
            }
        }
    }
}

fn push_string(header: &mut Vec<u8>, s: &str) {
    header.extend_from_slice(&(s.len() as u64).to_le_bytes());
    header.extend_from_slice(s.as_bytes());
}

fn pad(header: &mut Vec<u8>) {
    let len = header.len() as u64;
    header.resize((len.div_ceil(ALIGNMENT) * ALIGNMENT) as usize, 0);
}
