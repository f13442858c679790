//! Where a model's parameters come from: a checkpoint in the reference (diffusers) layout,
//! another layout mapped onto the reference names, or random initialisation.
//!
//! A model written against [`ParamSource`] has one constructor for all of them: it asks for
//! each layer by its reference name, and the source answers.

use burn::{
    module::Param,
    nn::{Linear, LinearConfig},
    tensor::{Tensor, backend::Backend},
};

use crate::{LoadError, RmsNorm, WeightsView, linear};

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

/// Parameters read from a checkpoint stored under the reference names.
#[derive(Clone)]
pub struct Checkpoint<'a, B: Backend> {
    view: WeightsView<'a>,
    device: &'a B::Device,
}

impl<'a, B: Backend> Checkpoint<'a, B> {
    /// The tensors of `view`, loaded onto `device`.
    pub fn new(view: WeightsView<'a>, device: &'a B::Device) -> Self {
        Self { view, device }
    }
}

impl<B: Backend> ParamSource<B> for Checkpoint<'_, B> {
    fn at(&self, name: impl std::fmt::Display) -> Self {
        Self {
            view: self.view.at(name),
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
        linear(&self.view.at(name), d_in, d_out, bias, self.device)
    }

    fn rms_norm(&self, name: &str, dim: usize, eps: f64) -> Result<RmsNorm<B>, LoadError> {
        RmsNorm::load(&self.view.at(name), dim, eps, self.device)
    }
}

/// Fresh parameters from Burn's initialisers (for benchmarks and shape checks): linear layers
/// take Burn's default (Kaiming-uniform, like PyTorch's), norm scales are ones.
#[derive(Clone)]
pub struct RandomInit<'a, B: Backend> {
    device: &'a B::Device,
}

impl<'a, B: Backend> RandomInit<'a, B> {
    /// Random parameters on `device` (seed them with `B::seed` for repeatable values).
    pub fn new(device: &'a B::Device) -> Self {
        Self { device }
    }
}

impl<B: Backend> ParamSource<B> for RandomInit<'_, B> {
    fn at(&self, _name: impl std::fmt::Display) -> Self {
        self.clone()
    }

    fn device(&self) -> &B::Device {
        self.device
    }

    fn linear(
        &self,
        _name: &str,
        d_in: usize,
        d_out: usize,
        bias: bool,
    ) -> Result<Linear<B>, LoadError> {
        Ok(LinearConfig::new(d_in, d_out)
            .with_bias(bias)
            .init(self.device))
    }

    fn rms_norm(&self, _name: &str, dim: usize, eps: f64) -> Result<RmsNorm<B>, LoadError> {
        Ok(RmsNorm {
            weight: Param::from_tensor(Tensor::ones([dim], self.device)),
            eps,
        })
    }
}
