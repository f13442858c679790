//! Kernels for Burn's Flex CPU backend (feature `flex`), used where Flex's own kernels leave
//! cores idle or call scalar libm functions: attention (one thread in Flex), the tanh GELU
//! (scalar `powf` and `tanh` in Flex), linear layers, convolutions, concatenation and layout
//! copies (single-threaded copies in Flex). The public functions stay generic: they take these paths
//! after a run-time check that the backend is Flex and the tensors are f32, and use Burn's
//! operations (the backend's fused kernels on GPUs) otherwise.

pub mod activation;
pub mod attention;
pub mod conv;
pub mod layout;
pub mod linear;
pub mod norm;
pub mod rope;
mod rows;

use std::{
    any::{Any, TypeId},
    mem::MaybeUninit,
};

use burn::tensor::{DType, Tensor, TensorData, TensorPrimitive, backend::Backend};
use burn_flex::{Flex, FlexTensor};
use rayon::prelude::*;

/// Whether `B` is the Flex backend.
fn is_flex<B: Backend>() -> bool {
    TypeId::of::<B>() == TypeId::of::<Flex>()
}

/// Whether `t` is an f32 tensor of the Flex backend.
fn is_flex_f32<B: Backend, const D: usize>(t: &Tensor<B, D>) -> bool {
    is_flex::<B>() && t.dtype() == DType::F32
}

/// The Flex tensor inside `t`; only called where `B` is `Flex`.
fn to_flex<B: Backend, const D: usize>(t: Tensor<B, D>) -> FlexTensor {
    cast::<B::FloatTensorPrimitive, FlexTensor>(t.into_primitive().tensor())
}

/// `t` as a tensor of `B`; only called where `B` is `Flex`.
fn from_flex<B: Backend, const D: usize>(t: FlexTensor) -> Tensor<B, D> {
    let t = cast::<FlexTensor, B::FloatTensorPrimitive>(t);
    Tensor::from_primitive(TensorPrimitive::Float(t))
}

/// A contiguous f32 Flex tensor of `shape` holding `values` (their buffer, not a copy).
fn flex_tensor(values: Vec<f32>, shape: &[usize]) -> FlexTensor {
    FlexTensor::from_data(TensorData::new(values, shape.to_vec()))
}

/// Values per task of [`zeroed`].
const ZERO_CHUNK: usize = 1 << 16;

/// Values up to which a kernel's chunks run on the calling thread: handing work to rayon's
/// threads costs tens of microseconds (two futex wake-ups), more than the mini models'
/// whole norms or activations take.
const SERIAL_MAX: usize = 1 << 15;

/// Calls `f(index, chunk)` on each chunk of `chunk` values of `data` (the last one shorter):
/// on rayon's threads, or on this one when `data` is small.
fn for_chunks<T: Send>(data: &mut [T], chunk: usize, f: impl Fn(usize, &mut [T]) + Sync) {
    let chunk = chunk.max(1);
    if data.len() <= SERIAL_MAX {
        data.chunks_mut(chunk)
            .enumerate()
            .for_each(|(i, c)| f(i, c));
    } else {
        data.par_chunks_mut(chunk)
            .enumerate()
            .for_each(|(i, c)| f(i, c));
    }
}

/// `len` zeros written by rayon's threads: the output buffer of a kernel that then fills it in
/// parallel. Flex zeroes its own outputs on one thread and then copies them into an aligned
/// allocation, and `vec![0.0; len]` zeroes on one thread where the allocator reuses memory;
/// here the zeroing, and the page faults of fresh memory, are spread over the threads.
fn zeroed(len: usize) -> Vec<f32> {
    // SAFETY: every chunk is filled with zeros.
    unsafe {
        filled(len, ZERO_CHUNK, |_, chunk| {
            chunk.fill(MaybeUninit::new(0.0))
        })
    }
}

/// A copy of `src` made chunk by chunk (`chunk` values each, the last one shorter), each chunk
/// then updated in place by `f(index, chunk)` while it is in cache: one pass, on rayon's
/// threads unless `src` is small.
fn mapped(src: &[f32], chunk: usize, f: impl Fn(usize, &mut [f32]) + Sync) -> Vec<f32> {
    let chunk = chunk.max(1);
    // SAFETY: each chunk is written in full from `src` before it is read as initialised.
    unsafe {
        filled(src.len(), chunk, |i, dst| {
            let start = i * chunk;
            let values = &src[start..start + dst.len()];
            for (d, &s) in dst.iter_mut().zip(values) {
                d.write(s);
            }
            f(i, &mut *(dst as *mut [MaybeUninit<f32>] as *mut [f32]));
        })
    }
}

/// A buffer of `len` values made chunk by chunk (`chunk` values each, the last one shorter) by
/// `init(index, chunk)`, on rayon's threads unless `len` is small; no pass zeroes it first.
///
/// # Safety
/// `init` must write every value of each chunk it is given.
unsafe fn filled(
    len: usize,
    chunk: usize,
    init: impl Fn(usize, &mut [MaybeUninit<f32>]) + Sync,
) -> Vec<f32> {
    let mut out = Vec::with_capacity(len);
    for_chunks(&mut out.spare_capacity_mut()[..len], chunk, init);
    // SAFETY: the chunks cover the first `len` values of the capacity, and the caller's `init`
    // wrote all of them.
    unsafe { out.set_len(len) };
    out
}

/// A kernel's output buffer, written by several tasks at disjoint places (a matrix product's
/// column blocks, a convolution's bands of rows).
#[derive(Clone, Copy)]
struct SharedOut(*mut f32);

// SAFETY: the kernels' tasks write disjoint values of the buffer, which outlives them (each
// kernel waits for all its tasks before it reads the output).
unsafe impl Send for SharedOut {}
unsafe impl Sync for SharedOut {}

/// Moves `value` into type `T`; only called where `A` and `T` are the same type (`B` is Flex).
fn cast<A: 'static, T: 'static>(value: A) -> T {
    let mut slot = Some(value);
    (&mut slot as &mut dyn Any)
        .downcast_mut::<Option<T>>()
        .and_then(Option::take)
        .expect("the Flex backend's tensor primitive is FlexTensor")
}

/// A 4-d f32 (or u8 mask) tensor read through its strides; a dimension of size 1 has stride 0,
/// so masks broadcast over batch, heads and queries.
pub struct Strided<'a, T> {
    pub data: &'a [T],
    offset: usize,
    pub strides: [usize; 4],
}

impl<'a, T> Strided<'a, T> {
    /// Views `t` (non-negative strides) whose storage is `data`.
    pub fn new(t: &'a FlexTensor, data: &'a [T]) -> Self {
        let layout = t.layout();
        let shape = layout.shape();
        let mut strides = [0usize; 4];
        for (d, s) in strides.iter_mut().enumerate() {
            let stride = layout.strides()[d];
            *s = if shape[d] == 1 { 0 } else { stride as usize };
        }
        Self {
            data,
            offset: layout.start_offset(),
            strides,
        }
    }

    /// The element offset of `[b, h, i, j]` in `data`.
    pub fn at(&self, b: usize, h: usize, i: usize, j: usize) -> usize {
        self.offset
            + b * self.strides[0]
            + h * self.strides[1]
            + i * self.strides[2]
            + j * self.strides[3]
    }
}

/// `t` itself when all its strides are non-negative, else a contiguous copy.
fn readable(t: &FlexTensor) -> FlexTensor {
    if t.layout().has_positive_strides() {
        t.clone()
    } else {
        t.to_contiguous()
    }
}

/// The shape of a 4-d tensor.
fn dims(t: &FlexTensor) -> [usize; 4] {
    let s = t.layout().shape();
    assert_eq!(s.num_dims(), 4, "attention: inputs must be 4-d, got {s:?}");
    [s[0], s[1], s[2], s[3]]
}

/// A Flex tensor of standard normal values, for the kernels' tests.
#[cfg(test)]
fn random<const D: usize>(shape: [usize; D]) -> Tensor<Flex, D> {
    use burn::tensor::Distribution;
    Tensor::random(shape, Distribution::Normal(0.0, 1.0), &Default::default())
}
