//! Where the model's parameters come from: a diffusers checkpoint or random initialisation.
//!
//! The model asks for every parameter by its diffusers module path; [`HunyuanParams`] answers.
//! Besides the linear layers and RMS norms of [`ParamSource`], HunyuanVideo needs affine layer
//! norms (the token refiner) and a 3-D patch embedding.

use burn::{nn::Linear, tensor::backend::Backend};
use dit_layers::{
    LayerNorm, LoadError, ParamSource, PatchEmbed3d, RandomInit, RmsNorm, Weights, WeightsView,
    linear,
};

/// Parameters of a HunyuanVideo transformer addressed by diffusers module paths.
#[derive(Clone)]
pub struct HunyuanParams<'a, B: Backend> {
    /// The checkpoint viewed at this source's path; `None` for random parameters.
    view: Option<WeightsView<'a>>,
    device: &'a B::Device,
}

impl<'a, B: Backend> HunyuanParams<'a, B> {
    /// The tensors of a diffusers checkpoint `weights`, loaded onto `device`.
    pub fn checkpoint(weights: &'a Weights, device: &'a B::Device) -> Self {
        Self {
            view: Some(weights.root()),
            device,
        }
    }

    /// Random parameters on `device` (seed with `B::seed`): linear layers and the patch
    /// embedding from Burn's Kaiming-uniform initialiser, norm scales one and shifts zero.
    pub fn random(device: &'a B::Device) -> Self {
        Self { view: None, device }
    }

    /// `nn.LayerNorm(dim, eps, elementwise_affine=True)` called `name`.
    pub fn layer_norm(&self, name: &str, dim: usize, eps: f64) -> Result<LayerNorm<B>, LoadError> {
        match &self.view {
            Some(view) => LayerNorm::load(&view.at(name), dim, true, eps, self.device),
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
        match &self.view {
            Some(view) => PatchEmbed3d::load(
                &view.at(name),
                in_channels,
                out_channels,
                patch,
                self.device,
            ),
            None => Ok(PatchEmbed3d::random(
                in_channels,
                out_channels,
                patch,
                self.device,
            )),
        }
    }
}

impl<B: Backend> ParamSource<B> for HunyuanParams<'_, B> {
    fn at(&self, name: impl std::fmt::Display) -> Self {
        Self {
            view: self.view.as_ref().map(|v| v.at(name)),
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
        match &self.view {
            Some(view) => linear(&view.at(name), d_in, d_out, bias, self.device),
            None => RandomInit::new(self.device).linear(name, d_in, d_out, bias),
        }
    }

    fn rms_norm(&self, name: &str, dim: usize, eps: f64) -> Result<RmsNorm<B>, LoadError> {
        match &self.view {
            Some(view) => RmsNorm::load(&view.at(name), dim, eps, self.device),
            None => RandomInit::new(self.device).rms_norm(name, dim, eps),
        }
    }
}
