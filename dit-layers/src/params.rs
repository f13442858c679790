//! Where a model's parameters come from: a checkpoint in the reference (diffusers) layout,
//! another layout mapped onto the reference names, or random initialisation.
//!
//! A model written against [`ParamSource`] has one constructor for all of them: it asks for
//! each layer by its reference name, and the source answers. [`ModelParams`] is the source of
//! the checkpoint-or-random cases; layouts that fuse or split tensors (FLUX.1's BFL files)
//! implement [`ParamSource`] themselves.

use burn::{
    module::Param,
    nn::{Linear, LinearConfig},
    tensor::{Distribution, Tensor, backend::Backend},
};

use crate::{LayerNorm, LoadError, PatchEmbed3d, RmsNorm, Weights, WeightsView, linear};

/// A provider of layers by their reference (diffusers) module path.
pub trait ParamSource<B: Backend>: Sized {
    /// The source of the sub-module `name` (`"transformer_blocks.3"`, `"attn"`).
    fn at(&self, name: impl std::fmt::Display) -> Self;

    /// The device the parameters are placed on.
    fn device(&self) -> &B::Device;

    /// `nn.Linear(d_in, d_out, bias)` called `name`.
    fn linear(
        &self,
        name: &str,
        d_in: usize,
        d_out: usize,
        bias: bool,
    ) -> Result<Linear<B>, LoadError>;

    /// `RMSNorm(dim, eps)` with a learned scale, called `name`.
    fn rms_norm(&self, name: &str, dim: usize, eps: f64) -> Result<RmsNorm<B>, LoadError>;
}

/// How a checkpoint in a non-reference layout names the reference modules: a pure renaming
/// (every tensor keeps its shape).
#[derive(Debug, Clone, Copy)]
pub struct KeyMap {
    /// The checkpoint's name of the reference module or parameter `path` (dotted segments), or
    /// `None` when the layout has no counterpart.
    pub name: fn(&[&str]) -> Option<String>,
    /// The layout, as errors name it (`"Wan's original checkpoint layout"`).
    pub layout: &'static str,
}

/// Where [`ModelParams`] reads from.
#[derive(Clone, Copy)]
enum Origin<'a> {
    /// A checkpoint, under the reference names or renamed by the map.
    Checkpoint(&'a Weights, Option<KeyMap>),
    /// Burn's initialisers.
    Random,
}

/// The parameters of a model addressed by reference (diffusers) module paths: read from a
/// checkpoint (reference names, or renamed by a [`KeyMap`]) or freshly initialised.
///
/// Random parameters (seed them with `B::seed`): linear layers and patch embeddings from Burn's
/// Kaiming-uniform initialiser (like PyTorch's), norm scales one and shifts zero, raw parameter
/// tensors normal with standard deviation `1 / sqrt(last dim)` as diffusers draws modulation
/// tables.
#[derive(Clone)]
pub struct ModelParams<'a, B: Backend> {
    origin: Origin<'a>,
    /// The reference path of this source, one segment per entry.
    path: Vec<String>,
    device: &'a B::Device,
}

impl<'a, B: Backend> ModelParams<'a, B> {
    /// The tensors of `weights`, stored under the reference names, loaded onto `device`.
    pub fn checkpoint(weights: &'a Weights, device: &'a B::Device) -> Self {
        Self::from_origin(Origin::Checkpoint(weights, None), device)
    }

    /// The tensors of `weights`, stored under the names `map` gives, loaded onto `device`.
    pub fn renamed(weights: &'a Weights, map: KeyMap, device: &'a B::Device) -> Self {
        Self::from_origin(Origin::Checkpoint(weights, Some(map)), device)
    }

    /// Random parameters on `device`.
    pub fn random(device: &'a B::Device) -> Self {
        Self::from_origin(Origin::Random, device)
    }

    fn from_origin(origin: Origin<'a>, device: &'a B::Device) -> Self {
        Self {
            origin,
            path: Vec::new(),
            device,
        }
    }

    /// The checkpoint and the name in it of the module or parameter `name` under this source,
    /// `None` for random parameters.
    fn key(&self, name: &str) -> Result<Option<(&'a Weights, String)>, LoadError> {
        let Origin::Checkpoint(weights, map) = self.origin else {
            return Ok(None);
        };
        let mut path: Vec<&str> = self.path.iter().map(String::as_str).collect();
        path.extend(name.split('.'));
        let key = match map {
            None => path.join("."),
            Some(map) => (map.name)(&path).ok_or_else(|| LoadError::MissingKey {
                key: path.join("."),
                source_desc: format!("{} (no counterpart of this diffusers module)", map.layout),
            })?,
        };
        Ok(Some((weights, key)))
    }

    /// The checkpoint view of the module `name` under this source, `None` for random
    /// parameters.
    fn view(&self, name: &str) -> Result<Option<WeightsView<'a>>, LoadError> {
        Ok(self.key(name)?.map(|(weights, key)| weights.view(&key)))
    }

    /// The parameter tensor `name` of `shape` (e.g. a `scale_shift_table`).
    pub fn parameter<const D: usize>(
        &self,
        name: &str,
        shape: [usize; D],
    ) -> Result<Tensor<B, D>, LoadError> {
        match self.key(name)? {
            Some((weights, key)) => weights.tensor(&key, shape, self.device),
            None => {
                let std = 1.0 / (shape[D - 1] as f64).sqrt();
                Ok(Tensor::random(
                    shape,
                    Distribution::Normal(0.0, std),
                    self.device,
                ))
            }
        }
    }

    /// `nn.LayerNorm(dim, eps, elementwise_affine=True)` called `name`.
    pub fn layer_norm(&self, name: &str, dim: usize, eps: f64) -> Result<LayerNorm<B>, LoadError> {
        match self.view(name)? {
            Some(view) => LayerNorm::load(&view, dim, true, eps, self.device),
            None => Ok(LayerNorm::identity(dim, true, eps, self.device)),
        }
    }

    /// `nn.Conv3d(in_channels, out_channels, kernel_size=patch, stride=patch)` called `name`.
    pub fn patch_embed(
        &self,
        name: &str,
        in_channels: usize,
        out_channels: usize,
        patch: [usize; 3],
    ) -> Result<PatchEmbed3d<B>, LoadError> {
        match self.view(name)? {
            Some(view) => PatchEmbed3d::load(&view, in_channels, out_channels, patch, self.device),
            None => Ok(PatchEmbed3d::random(
                in_channels,
                out_channels,
                patch,
                self.device,
            )),
        }
    }
}

impl<B: Backend> ParamSource<B> for ModelParams<'_, B> {
    fn at(&self, name: impl std::fmt::Display) -> Self {
        let mut path = self.path.clone();
        path.extend(name.to_string().split('.').map(str::to_string));
        Self {
            origin: self.origin,
            path,
            device: self.device,
        }
    }

    fn device(&self) -> &B::Device {
        self.device
    }

    fn linear(
        &self,
        name: &str,
        d_in: usize,
        d_out: usize,
        bias: bool,
    ) -> Result<Linear<B>, LoadError> {
        match self.view(name)? {
            Some(view) => linear(&view, d_in, d_out, bias, self.device),
            None => Ok(LinearConfig::new(d_in, d_out)
                .with_bias(bias)
                .init(self.device)),
        }
    }

    fn rms_norm(&self, name: &str, dim: usize, eps: f64) -> Result<RmsNorm<B>, LoadError> {
        match self.view(name)? {
            Some(view) => RmsNorm::load(&view, dim, eps, self.device),
            None => Ok(RmsNorm {
                weight: Param::from_tensor(Tensor::ones([dim], self.device)),
                eps,
            }),
        }
    }
}
