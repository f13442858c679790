//! Checks of the token ids and masks given to the encoders.

use burn::tensor::{Int, Tensor, backend::Backend};

use crate::InputError;

/// The ids `[batch, seq]` as host rows, checked to be non-empty and to lie in `0..vocab_size`.
pub(crate) fn host_ids<B: Backend>(
    ids: &Tensor<B, 2, Int>,
    vocab_size: usize,
) -> Result<Vec<Vec<i64>>, InputError> {
    let [_, seq] = ids.dims();
    if seq == 0 {
        return Err(InputError::Empty);
    }
    let flat: Vec<i64> = ids.to_data().iter::<i64>().collect();
    if let Some(&id) = flat
        .iter()
        .find(|&&id| id < 0 || id as u64 >= vocab_size as u64)
    {
        return Err(InputError::TokenOutOfRange { id, vocab_size });
    }
    Ok(flat.chunks(seq).map(<[i64]>::to_vec).collect())
}

/// Fails when `mask` does not have the shape of `ids`.
pub(crate) fn check_mask<B: Backend>(
    ids: &Tensor<B, 2, Int>,
    mask: &Tensor<B, 2, Int>,
) -> Result<(), InputError> {
    if mask.dims() != ids.dims() {
        return Err(InputError::MaskShape {
            mask: mask.dims(),
            ids: ids.dims(),
        });
    }
    Ok(())
}
