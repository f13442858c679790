//! Where a model's parameters come from: a checkpoint in the reference (diffusers) layout,
//! another layout mapped onto the reference names, or random initialisation.
//!
//! A model written against [`ParamSource`] has one constructor for all of them: it asks for
//! each layer by its reference name, and the source answers. [`ModelParams`] is that source for
//! every case: a checkpoint under the reference names, a checkpoint in another layout whose
//! [`TensorMap`] says where each reference tensor is stored (renamed, fused into a bigger
//! projection, reordered), or random initialisation.

use std::ops::Range;

use burn::{
    module::Param,
    nn::LinearConfig,
    tensor::{Distribution, Tensor, backend::Backend},
};

use crate::{
    LayerNorm, Linear, LoadError, PatchEmbed3d, RmsNorm, Weights, WeightsView, linear,
    linear_from_rows, linear_swapped_halves,
};

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

/// Where a checkpoint of another layout stores the tensors of a reference module.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Stored {
    /// Under the name given, unchanged (every tensor keeps its shape).
    Renamed(String),
    /// Output rows `rows` of the fused linear layer `key`, which has `total` output rows: one of
    /// the projections packed into a fused weight (a `qkv`, a single block's `linear1`).
    Rows {
        /// The fused layer.
        key: String,
        /// The rows of the reference layer.
        rows: Range<usize>,
        /// All output rows of the fused layer.
        total: usize,
    },
    /// The linear layer `key` with the two halves of its output rows swapped: a modulation
    /// stored as (shift, scale) where the reference reads (scale, shift).
    SwappedHalves(String),
    /// The RMS norm `key` with its learned scale named `scale` rather than `weight` (Black
    /// Forest Labs' QK norms).
    Scale(String),
}

/// How a checkpoint in a non-reference layout stores the reference modules: renamed, fused or
/// reordered. Only linear layers may be [`Stored::Rows`] or [`Stored::SwappedHalves`], only
/// RMS norms [`Stored::Scale`].
pub trait TensorMap {
    /// Where the checkpoint stores the reference module or parameter `path` (dotted segments),
    /// or `None` when the layout has no counterpart.
    fn locate(&self, path: &[&str]) -> Option<Stored>;

    /// The layout, as errors name it (`"HunyuanVideo's original checkpoint layout"`).
    fn layout(&self) -> &'static str;
}

/// Where [`ModelParams`] reads from.
#[derive(Clone, Copy)]
enum Origin<'a> {
    /// A checkpoint under the reference names.
    Reference(&'a Weights),
    /// A checkpoint whose tensors a [`TensorMap`] locates.
    Mapped(&'a Weights, &'a dyn TensorMap),
    /// Burn's initialisers.
    Random,
}

/// The parameters of a model addressed by reference (diffusers) module paths: read from a
/// checkpoint (reference names, or located by a [`TensorMap`]) or freshly initialised.
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
        Self::from_origin(Origin::Reference(weights), device)
    }

    /// The tensors of `weights`, stored where `map` locates them (renamed, fused, reordered),
    /// loaded onto `device`.
    pub fn mapped(weights: &'a Weights, map: &'a dyn TensorMap, device: &'a B::Device) -> Self {
        Self::from_origin(Origin::Mapped(weights, map), device)
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

    /// The checkpoint and where it stores the module or parameter `name` under this source,
    /// `None` for random parameters.
    fn locate(&self, name: &str) -> Result<Option<(&'a Weights, Stored)>, LoadError> {
        let mut path: Vec<&str> = self.path.iter().map(String::as_str).collect();
        path.extend(name.split('.'));
        let (weights, map): (_, &dyn TensorMap) = match &self.origin {
            Origin::Random => return Ok(None),
            Origin::Reference(weights) => {
                return Ok(Some((weights, Stored::Renamed(path.join(".")))));
            }
            Origin::Mapped(weights, map) => (weights, *map),
        };
        let stored = map.locate(&path).ok_or_else(|| LoadError::MissingKey {
            key: path.join("."),
            source_desc: format!("{} (no counterpart of this diffusers module)", map.layout()),
        })?;
        Ok(Some((weights, stored)))
    }

    /// The checkpoint and the name in it of the module or parameter `name` under this source,
    /// `None` for random parameters; a module the layout fuses or reorders is an error (only
    /// linear layers can be).
    fn key(&self, name: &str) -> Result<Option<(&'a Weights, String)>, LoadError> {
        match self.locate(name)? {
            None => Ok(None),
            Some((weights, Stored::Renamed(key))) => Ok(Some((weights, key))),
            Some((
                _,
                Stored::Rows { key, .. } | Stored::SwappedHalves(key) | Stored::Scale(key),
            )) => Err(LoadError::MissingKey {
                key: self.path_of(name),
                source_desc: format!(
                    "the checkpoint as a whole tensor ({key:?} stores it fused or reordered, \
                         which only a linear layer or a norm can be)"
                ),
            }),
        }
    }

    /// The error for the module `name`, which the layout stores in `key` as `what`, a kind of
    /// tensor this module cannot be.
    fn misplaced(&self, name: &str, key: &str, what: &str) -> LoadError {
        LoadError::MissingKey {
            key: self.path_of(name),
            source_desc: format!("the checkpoint ({key:?} is stored as {what})"),
        }
    }

    /// The reference path of `name` under this source.
    fn path_of(&self, name: &str) -> String {
        let mut path = self.path.clone();
        path.push(name.to_string());
        path.join(".")
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

    /// Whether the checkpoint stores the tensor `name` under this source (`false` for random
    /// parameters, and where the layout stores it fused or has no counterpart): for modules a
    /// checkpoint may store under either of two names.
    pub fn has(&self, name: &str) -> bool {
        matches!(self.key(name), Ok(Some((weights, key))) if weights.contains(&key))
    }

    /// The table `[rows, dim]` of `nn.Embedding(rows, dim)` called `name` (stored as
    /// `name.weight`); random: standard normal, as PyTorch initialises it.
    pub fn embedding(
        &self,
        name: &str,
        rows: usize,
        dim: usize,
    ) -> Result<Tensor<B, 2>, LoadError> {
        let name = format!("{name}.weight");
        match self.key(&name)? {
            Some((weights, key)) => weights.tensor(&key, [rows, dim], self.device),
            None => Ok(Tensor::random(
                [rows, dim],
                Distribution::Normal(0.0, 1.0),
                self.device,
            )),
        }
    }

    /// A norm's learned scale `name` (e.g. a `gamma`), stored with `shape`; ones when random.
    pub fn norm_scale<const D: usize>(
        &self,
        name: &str,
        shape: [usize; D],
    ) -> Result<Tensor<B, D>, LoadError> {
        match self.key(name)? {
            Some((weights, key)) => weights.tensor(&key, shape, self.device),
            None => Ok(Tensor::ones(shape, self.device)),
        }
    }

    /// `nn.Conv2d(c_in, c_out, kernel, padding=padding, bias=bias)` with a square kernel,
    /// stride 1 and one group, called `name` (see [`crate::conv2d`]).
    pub fn conv2d(
        &self,
        name: &str,
        (c_in, c_out): (usize, usize),
        kernel: usize,
        padding: usize,
        bias: bool,
    ) -> Result<crate::Conv2d<B>, LoadError> {
        match self.view(name)? {
            Some(view) => crate::conv2d(&view, c_in, c_out, kernel, padding, bias, self.device),
            None => Ok(crate::conv2d::conv2d_random(
                c_in,
                c_out,
                kernel,
                padding,
                bias,
                self.device,
            )),
        }
    }

    /// `nn.Conv3d(c_in, c_out, kernel, padding=padding, bias=bias)` with stride 1 and one
    /// group, called `name`; `kernel` and `padding` are `[time, height, width]` (see
    /// [`crate::conv3d`]).
    pub fn conv3d(
        &self,
        name: &str,
        (c_in, c_out): (usize, usize),
        kernel: [usize; 3],
        padding: [usize; 3],
        bias: bool,
    ) -> Result<crate::Conv3d<B>, LoadError> {
        match self.view(name)? {
            Some(view) => crate::conv3d(&view, c_in, c_out, kernel, padding, bias, self.device),
            None => Ok(crate::conv3d::conv3d_random(
                c_in,
                c_out,
                kernel,
                padding,
                bias,
                self.device,
            )),
        }
    }

    /// `nn.GroupNorm(num_groups, channels, eps)` with affine parameters, called `name` (see
    /// [`crate::group_norm`]); channels that do not split into `num_groups` groups are an
    /// error naming the layer.
    pub fn group_norm(
        &self,
        name: &str,
        num_groups: usize,
        channels: usize,
        eps: f64,
    ) -> Result<crate::GroupNorm<B>, LoadError> {
        match self.view(name)? {
            Some(view) => crate::group_norm(&view, num_groups, channels, eps, self.device),
            None => crate::group_norm::group_norm_identity(
                &self.path_of(&format!("{name}.weight")),
                num_groups,
                channels,
                eps,
                self.device,
            ),
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
        let Some((weights, stored)) = self.locate(name)? else {
            return Ok(LinearConfig::new(d_in, d_out)
                .with_bias(bias)
                .init(self.device)
                .into());
        };
        match stored {
            Stored::Renamed(key) => linear(&weights.view(&key), d_in, d_out, bias, self.device),
            Stored::Rows { key, rows, total } => {
                if rows.len() != d_out || rows.end > total {
                    return Err(LoadError::Config {
                        path: format!("{key} (fused)").into(),
                        message: format!(
                            "rows {rows:?} of {total} cannot hold {} with {d_out} outputs",
                            self.path_of(name)
                        ),
                    });
                }
                linear_from_rows(&weights.view(&key), total, rows, d_in, bias, self.device)
            }
            Stored::SwappedHalves(key) => {
                linear_swapped_halves(&weights.view(&key), d_in, d_out, bias, self.device)
            }
            Stored::Scale(key) => Err(self.misplaced(name, &key, "an RMS norm's scale")),
        }
    }

    fn rms_norm(&self, name: &str, dim: usize, eps: f64) -> Result<RmsNorm<B>, LoadError> {
        let weight = match self.locate(name)? {
            None => Tensor::ones([dim], self.device),
            Some((weights, Stored::Renamed(key))) => {
                return RmsNorm::load(&weights.view(&key), dim, eps, self.device);
            }
            Some((weights, Stored::Scale(key))) => {
                weights.view(&key).tensor("scale", [dim], self.device)?
            }
            Some((_, Stored::Rows { key, .. } | Stored::SwappedHalves(key))) => {
                return Err(self.misplaced(name, &key, "a fused linear layer"));
            }
        };
        Ok(RmsNorm {
            weight: Param::from_tensor(weight),
            eps,
        })
    }
}
