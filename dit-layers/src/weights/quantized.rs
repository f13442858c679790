//! Matrices kept as ggml's quantized blocks in their memory-mapped file and decoded when used,
//! so a GGUF transformer takes about its file's size in memory rather than its f32 size.

use std::{fmt, ops::Range, sync::Arc};

use candle_core::quantized::GgmlDType;
use memmap2::Mmap;

use super::gguf;

/// A `[rows, cols]` matrix stored as ggml blocks in a memory-mapped checkpoint, whose rows are
/// whole blocks: a linear layer's weight (or some of its rows) as a GGUF file holds it.
///
/// Nothing is copied when it is made: it keeps the map alive and the byte ranges of its rows.
/// [`QuantizedMatrix::dequantize`] decodes it, on the CPU, when a forward needs it.
#[derive(Clone)]
pub struct QuantizedMatrix {
    file: Arc<Mmap>,
    dtype: GgmlDType,
    /// The bytes of the rows, in order: one range for a stored matrix, several for rows
    /// gathered from it (a fused layer's slice, reordered outputs).
    segments: Vec<Range<usize>>,
    rows: usize,
    cols: usize,
}

impl QuantizedMatrix {
    /// The `[rows, cols]` matrix stored as `dtype` blocks in `file[bytes]`; `cols` must be a
    /// whole number of blocks and `bytes` must hold exactly the matrix (the loader checks both).
    pub(super) fn new(
        file: Arc<Mmap>,
        dtype: GgmlDType,
        bytes: Range<usize>,
        [rows, cols]: [usize; 2],
    ) -> Self {
        debug_assert_eq!(cols % dtype.block_size(), 0);
        debug_assert_eq!(
            bytes.len(),
            rows * cols / dtype.block_size() * dtype.type_size()
        );
        Self {
            file,
            dtype,
            segments: vec![bytes],
            rows,
            cols,
        }
    }

    /// `[rows, cols]`.
    pub fn shape(&self) -> [usize; 2] {
        [self.rows, self.cols]
    }

    /// The ggml type of the blocks (`"Q8_0"`, `"Q4_K"`).
    pub fn type_name(&self) -> String {
        gguf::block_name(self.dtype)
    }

    /// The bytes one row takes.
    fn row_bytes(&self) -> usize {
        self.cols / self.dtype.block_size() * self.dtype.type_size()
    }

    /// The rows `order` of this matrix (each below its row count), in that order, still
    /// quantized: rows that follow each other in the file stay one byte range.
    pub(crate) fn gather_rows(&self, order: impl IntoIterator<Item = usize>) -> Self {
        let row_bytes = self.row_bytes();
        // The first row of each segment, to find the segment holding a row.
        let firsts: Vec<usize> = self
            .segments
            .iter()
            .scan(0, |first, segment| {
                let this = *first;
                *first += segment.len() / row_bytes;
                Some(this)
            })
            .collect();
        let mut segments: Vec<Range<usize>> = Vec::new();
        let mut rows = 0;
        for row in order {
            assert!(
                row < self.rows,
                "row {row} of a matrix of {} rows",
                self.rows
            );
            let at = firsts.partition_point(|&first| first <= row) - 1;
            let start = self.segments[at].start + (row - firsts[at]) * row_bytes;
            match segments.last_mut() {
                Some(last) if last.end == start => last.end += row_bytes,
                _ => segments.push(start..start + row_bytes),
            }
            rows += 1;
        }
        Self {
            segments,
            rows,
            ..self.clone()
        }
    }

    /// The rows `rows` of this matrix, still quantized.
    pub(crate) fn rows(&self, rows: Range<usize>) -> Self {
        self.gather_rows(rows)
    }

    /// The values, row-major, decoded in parallel.
    pub fn dequantize(&self) -> Vec<f32> {
        let mut values = vec![0f32; self.rows * self.cols];
        let mut at = 0;
        for segment in &self.segments {
            let count = segment.len() / self.dtype.type_size() * self.dtype.block_size();
            gguf::dequantize_into(
                self.dtype,
                &self.file[segment.clone()],
                &mut values[at..at + count],
            )
            .expect("the loader checked that the matrix is whole blocks within the file");
            at += count;
        }
        values
    }
}

impl fmt::Debug for QuantizedMatrix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "QuantizedMatrix({} {:?})",
            self.type_name(),
            self.shape()
        )
    }
}
