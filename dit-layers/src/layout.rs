//! Joining tensors and laying them out anew, with a multi-threaded copy on the Flex CPU
//! backend (`cpu::layout`), where Burn's own copies run on one thread.

use burn::tensor::{Tensor, backend::Backend};

/// `Tensor::cat(parts, dim)`.
pub fn cat<B: Backend, const D: usize>(parts: Vec<Tensor<B, D>>, dim: usize) -> Tensor<B, D> {
    #[cfg(feature = "flex")]
    let parts = match crate::cpu::layout::try_cat(parts, dim) {
        Ok(joined) => return joined,
        Err(parts) => parts,
    };
    Tensor::cat(parts, dim)
}

/// `t.reshape(shape)` for a `t` that may be a strided view (heads swapped with tokens, say),
/// which a reshape has to copy.
pub fn reshape<B: Backend, const D: usize, const D2: usize>(
    t: Tensor<B, D>,
    shape: [usize; D2],
) -> Tensor<B, D2> {
    #[cfg(feature = "flex")]
    let t = crate::cpu::layout::contiguous(t);
    t.reshape(shape)
}
