//! The latent layout of the FLUX pipeline: 2x2 patch packing and image token positions.

use burn::tensor::{Tensor, TensorData, backend::Backend};

/// Packs latents `[batch, channels, h, w]` (h, w even) into tokens
/// `[batch, (h/2)·(w/2), channels·4]`, each token a 2x2 patch, channel-major.
pub fn pack<B: Backend>(latents: Tensor<B, 4>) -> Tensor<B, 3> {
    let [b, c, h, w] = latents.dims();
    latents
        .reshape([b, c, h / 2, 2, w / 2, 2])
        .permute([0, 2, 4, 1, 3, 5])
        .reshape([b, (h / 2) * (w / 2), c * 4])
}

/// Inverse of [`pack`]: tokens `[batch, (h/2)·(w/2), channels·4]` back to `[batch, channels, h, w]`.
pub fn unpack<B: Backend>(tokens: Tensor<B, 3>, h: usize, w: usize) -> Tensor<B, 4> {
    let [b, _, cp] = tokens.dims();
    let c = cp / 4;
    tokens
        .reshape([b, h / 2, w / 2, c, 2, 2])
        .permute([0, 3, 1, 4, 2, 5])
        .reshape([b, c, h, w])
}

/// Positions of the packed image tokens, `[(h/2)·(w/2), 3]`: `(0, row, column)` row-major.
pub fn image_ids<B: Backend>(h: usize, w: usize, device: &B::Device) -> Tensor<B, 2> {
    let (rows, cols) = (h / 2, w / 2);
    let ids: Vec<f32> = (0..rows)
        .flat_map(|r| (0..cols).flat_map(move |c| [0.0, r as f32, c as f32]))
        .collect();
    Tensor::from_data(TensorData::new(ids, [rows * cols, 3]), device)
}

#[cfg(test)]
mod tests {
    use burn::tensor::{Tensor, TensorData};
    use burn_flex::Flex;

    use super::*;

    #[test]
    fn pack_groups_2x2_patches_channel_major_and_unpack_inverts_it() {
        let dev = Default::default();
        let values: Vec<f32> = (0..2 * 4 * 6).map(|v| v as f32).collect();
        let latents =
            Tensor::<Flex, 4>::from_data(TensorData::new(values.clone(), [1, 2, 4, 6]), &dev);
        let packed = pack(latents);
        assert_eq!(packed.dims(), [1, 6, 8]);
        // Token 1 is the patch at row 0, columns 2..4: channel 0 then channel 1, each row-major.
        let token1: Vec<f32> = packed
            .clone()
            .slice([0..1, 1..2, 0..8])
            .into_data()
            .to_vec()
            .unwrap();
        assert_eq!(token1, vec![2.0, 3.0, 8.0, 9.0, 26.0, 27.0, 32.0, 33.0]);
        let back: Vec<f32> = unpack(packed, 4, 6).into_data().to_vec().unwrap();
        assert_eq!(back, values);
        let ids: Vec<f32> = image_ids::<Flex>(4, 6, &dev).into_data().to_vec().unwrap();
        assert_eq!(&ids[..9], &[0.0, 0.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 2.0]);
        assert_eq!(&ids[15..], &[0.0, 1.0, 2.0]);
    }
}
