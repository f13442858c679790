//! Group normalisation from PyTorch-layout weights, with its statistics in f32.

use std::path::PathBuf;

use burn::{
    module::{Module, Param},
    tensor::{FloatDType, Tensor, backend::Backend},
};

use crate::{LoadError, WeightsView};

/// `nn.GroupNorm(num_groups, channels, eps, affine=True)`: normalises `[batch, channels, ...]`
/// over each group of `channels / num_groups` channels and all trailing positions, then scales
/// and shifts per channel.
///
/// The mean and variance are taken in f32 whatever the input's dtype, as PyTorch's CPU and CUDA
/// kernels accumulate them: a half-precision sum of squares over a group of a VAE's feature
/// map overflows float16's 65504 and turns the whole picture into NaN.
#[derive(Module, Debug)]
pub struct GroupNorm<B: Backend> {
    /// Scale `[channels]` (`weight`).
    pub weight: Param<Tensor<B, 1>>,
    /// Shift `[channels]` (`bias`).
    pub bias: Param<Tensor<B, 1>>,
    /// Groups the channels split into.
    pub num_groups: usize,
    /// Added to the variance.
    pub eps: f64,
}

impl<B: Backend> GroupNorm<B> {
    /// Normalises `x` `[batch, channels, ...]`.
    pub fn forward<const D: usize>(&self, x: Tensor<B, D>) -> Tensor<B, D> {
        #[cfg(feature = "flex")]
        if let Some(y) = crate::cpu::norm::try_group_norm(
            &x,
            self.num_groups,
            self.eps,
            &self.weight.val(),
            &self.bias.val(),
        ) {
            return y;
        }
        let dims = x.dims();
        let dtype = x.dtype();
        let [batch, channels] = [dims[0], dims[1]];
        let grouped = x
            .reshape([batch as i32, self.num_groups as i32, -1])
            .cast(FloatDType::F32);
        let mean = grouped.clone().mean_dim(2);
        let centered = grouped - mean;
        let var = centered.clone().square().mean_dim(2);
        let normalised = (centered / (var + self.eps).sqrt())
            .cast(dtype)
            .reshape(dims);
        let mut per_channel = [1; D];
        per_channel[1] = channels;
        normalised * self.weight.val().reshape(per_channel) + self.bias.val().reshape(per_channel)
    }
}

/// `nn.GroupNorm(num_groups, channels, eps, affine=True)` stored under `w` (`weight` and
/// `bias`, both `[channels]`). Channels that do not split into `num_groups` equal groups are a
/// configuration error naming the layer.
pub fn group_norm<B: Backend>(
    w: &WeightsView<'_>,
    num_groups: usize,
    channels: usize,
    eps: f64,
    device: &B::Device,
) -> Result<GroupNorm<B>, LoadError> {
    check_groups(&w.key("weight"), num_groups, channels)?;
    Ok(GroupNorm {
        weight: Param::from_tensor(w.tensor("weight", [channels], device)?),
        bias: Param::from_tensor(w.tensor("bias", [channels], device)?),
        num_groups,
        eps,
    })
}

/// A fresh [`group_norm`] layer (scale ones, shift zeros, as PyTorch initialises it); `key`
/// (the weight's reference name) names the layer in the error on channels that do not split
/// into `num_groups` groups.
pub(crate) fn group_norm_identity<B: Backend>(
    key: &str,
    num_groups: usize,
    channels: usize,
    eps: f64,
    device: &B::Device,
) -> Result<GroupNorm<B>, LoadError> {
    check_groups(key, num_groups, channels)?;
    Ok(GroupNorm {
        weight: Param::from_tensor(Tensor::ones([channels], device)),
        bias: Param::from_tensor(Tensor::zeros([channels], device)),
        num_groups,
        eps,
    })
}

/// Fails, naming `key`, unless `channels` split into `num_groups` equal groups.
fn check_groups(key: &str, num_groups: usize, channels: usize) -> Result<(), LoadError> {
    if num_groups == 0 || !channels.is_multiple_of(num_groups) {
        return Err(LoadError::Config {
            path: PathBuf::from(key),
            message: format!("{channels} channels do not split into {num_groups} groups"),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use burn::tensor::{Distribution, Tensor};
    use burn_flex::Flex;

    use super::*;

    /// Against burn's own group norm (two-pass f32 statistics here, its in-dtype ones there).
    #[test]
    fn equals_burn_group_norm_in_f32() {
        let device = Default::default();
        let x = Tensor::<Flex, 4>::random([2, 6, 5, 3], Distribution::Normal(0.5, 2.0), &device);
        let ours = GroupNorm {
            weight: Param::from_tensor(Tensor::random([6], Distribution::Default, &device)),
            bias: Param::from_tensor(Tensor::random([6], Distribution::Default, &device)),
            num_groups: 3,
            eps: 1e-6,
        };
        let mut burns = burn::nn::GroupNormConfig::new(3, 6)
            .with_epsilon(1e-6)
            .init::<Flex>(&device);
        burns.gamma = Some(ours.weight.clone());
        burns.beta = Some(ours.bias.clone());
        let diff = (ours.forward(x.clone()) - burns.forward(x))
            .abs()
            .max()
            .into_scalar();
        assert!(diff < 1e-5, "{diff}");
    }
}
