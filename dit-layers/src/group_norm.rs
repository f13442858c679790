//! Group normalisation from PyTorch-layout weights.

use std::path::PathBuf;

use burn::{
    module::Param,
    nn::{GroupNorm, GroupNormConfig},
    tensor::backend::Backend,
};

use crate::{LoadError, WeightsView};

/// `nn.GroupNorm(num_groups, channels, eps, affine=True)` stored under `w` (`weight` and
/// `bias`, both `[channels]`).
///
/// The layer normalises `[batch, channels, ...]` over each group of `channels / num_groups`
/// channels and all trailing positions. Channels that do not split into `num_groups` equal
/// groups are a configuration error naming the layer.
pub fn group_norm<B: Backend>(
    w: &WeightsView<'_>,
    num_groups: usize,
    channels: usize,
    eps: f64,
    device: &B::Device,
) -> Result<GroupNorm<B>, LoadError> {
    check_groups(&w.key("weight"), num_groups, channels)?;
    Ok(GroupNorm {
        gamma: Some(Param::from_tensor(w.tensor(
            "weight",
            [channels],
            device,
        )?)),
        beta: Some(Param::from_tensor(w.tensor("bias", [channels], device)?)),
        num_groups,
        num_channels: channels,
        epsilon: eps,
        affine: true,
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
    Ok(GroupNormConfig::new(num_groups, channels)
        .with_epsilon(eps)
        .init(device))
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
