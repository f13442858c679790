//! Where the model's parameters come from: a diffusers checkpoint, a checkpoint in Wan's
//! original layout (same tensors, other names), or random initialisation.
//!
//! The model asks for every parameter by its diffusers module path; [`WanParams`] answers from
//! the chosen origin. Besides the linear layers and RMS norms of [`ParamSource`], WAN needs raw
//! parameter tensors (the `scale_shift_table`s), an affine layer norm and a 3-D patch embedding.

use burn::{
    module::Param,
    tensor::{Distribution, Tensor, backend::Backend},
};
use dit_layers::{
    LayerNorm, LoadError, ParamSource, PatchEmbed3d, RandomInit, RmsNorm, Weights, WeightsView,
    linear,
};

/// How a checkpoint names its tensors.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    /// diffusers `WanTransformer3DModel` names (`blocks.N.attn1.to_q`).
    Diffusers,
    /// Wan's original `WanModel` names (`blocks.N.self_attn.q`).
    Original,
}

/// The name in Wan's original layout of the diffusers module or parameter `path` (dotted
/// segments), or `None` when the original has no counterpart. The mapping is a renaming: every
/// tensor keeps its shape. Note the swapped norms: diffusers' cross-attention norm `norm2` is
/// the original's `norm3`.
pub fn original_name(path: &[&str]) -> Option<String> {
    let name = match path {
        ["patch_embedding"] => "patch_embedding".to_string(),
        ["condition_embedder", embedder, rest @ ..] => {
            let stem = match (*embedder, rest) {
                ("time_embedder", ["linear_1"]) => "time_embedding.0",
                ("time_embedder", ["linear_2"]) => "time_embedding.2",
                ("time_proj", []) => "time_projection.1",
                ("text_embedder", ["linear_1"]) => "text_embedding.0",
                ("text_embedder", ["linear_2"]) => "text_embedding.2",
                _ => return None,
            };
            stem.to_string()
        }
        ["blocks", i, rest @ ..] => {
            let inner = match rest {
                ["scale_shift_table"] => "modulation".to_string(),
                ["norm2"] => "norm3".to_string(),
                ["ffn", "net", "0", "proj"] => "ffn.0".to_string(),
                ["ffn", "net", "2"] => "ffn.2".to_string(),
                [attn, layer @ ..] => {
                    let attn = match *attn {
                        "attn1" => "self_attn",
                        "attn2" => "cross_attn",
                        _ => return None,
                    };
                    let layer = match layer {
                        ["to_q"] => "q",
                        ["to_k"] => "k",
                        ["to_v"] => "v",
                        ["to_out", "0"] => "o",
                        ["norm_q"] => "norm_q",
                        ["norm_k"] => "norm_k",
                        _ => return None,
                    };
                    format!("{attn}.{layer}")
                }
                [] => return None,
            };
            format!("blocks.{i}.{inner}")
        }
        ["proj_out"] => "head.head".to_string(),
        ["scale_shift_table"] => "head.modulation".to_string(),
        _ => return None,
    };
    Some(name)
}

/// Where the parameters are read from.
#[derive(Clone, Copy)]
enum Origin<'a> {
    /// A checkpoint in the given layout.
    Checkpoint(&'a Weights, Layout),
    /// Burn's initialisers.
    Random,
}

/// Parameters of a WAN transformer addressed by diffusers module paths.
#[derive(Clone)]
pub struct WanParams<'a, B: Backend> {
    origin: Origin<'a>,
    /// The diffusers path of this source, one segment per entry.
    path: Vec<String>,
    device: &'a B::Device,
}

impl<'a, B: Backend> WanParams<'a, B> {
    /// The tensors of `weights`, named as `layout` names them, loaded onto `device`.
    pub fn checkpoint(weights: &'a Weights, layout: Layout, device: &'a B::Device) -> Self {
        Self {
            origin: Origin::Checkpoint(weights, layout),
            path: Vec::new(),
            device,
        }
    }

    /// Random parameters on `device` (seed with `B::seed`): linear layers and the patch
    /// embedding from Burn's Kaiming-uniform initialiser, norm scales one and shifts zero,
    /// modulation tables normal with standard deviation `1 / sqrt(dim)` as diffusers draws them.
    pub fn random(device: &'a B::Device) -> Self {
        Self {
            origin: Origin::Random,
            path: Vec::new(),
            device,
        }
    }

    /// The checkpoint and the name in it of the module or parameter `name` under this source,
    /// `None` for random parameters.
    fn key(&self, name: &str) -> Result<Option<(&'a Weights, String)>, LoadError> {
        let Origin::Checkpoint(weights, layout) = self.origin else {
            return Ok(None);
        };
        let mut path: Vec<&str> = self.path.iter().map(String::as_str).collect();
        path.extend(name.split('.'));
        let key = match layout {
            Layout::Diffusers => path.join("."),
            Layout::Original => original_name(&path).ok_or_else(|| LoadError::MissingKey {
                key: path.join("."),
                source_desc: "Wan's original checkpoint layout (no counterpart of this \
                              diffusers module)"
                    .into(),
            })?,
        };
        Ok(Some((weights, key)))
    }

    /// The checkpoint view of the module `name` under this source, `None` for random
    /// parameters.
    fn view(&self, name: &str) -> Result<Option<WeightsView<'a>>, LoadError> {
        Ok(self.key(name)?.map(|(weights, key)| weights.view(&key)))
    }

    /// The parameter tensor `name` of `shape` (e.g. a `scale_shift_table`); random values are
    /// normal with standard deviation `1 / sqrt(shape[D - 1])`.
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
            None => Ok(LayerNorm {
                weight: Some(Param::from_tensor(Tensor::ones([dim], self.device))),
                bias: Some(Param::from_tensor(Tensor::zeros([dim], self.device))),
                eps,
            }),
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

impl<B: Backend> ParamSource<B> for WanParams<'_, B> {
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
    ) -> Result<burn::nn::Linear<B>, LoadError> {
        match self.view(name)? {
            Some(view) => linear(&view, d_in, d_out, bias, self.device),
            None => RandomInit::new(self.device).linear(name, d_in, d_out, bias),
        }
    }

    fn rms_norm(&self, name: &str, dim: usize, eps: f64) -> Result<RmsNorm<B>, LoadError> {
        match self.view(name)? {
            Some(view) => RmsNorm::load(&view, dim, eps, self.device),
            None => RandomInit::new(self.device).rms_norm(name, dim, eps),
        }
    }
}
