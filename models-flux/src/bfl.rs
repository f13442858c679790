//! Black Forest Labs' single-file checkpoint layout (`flux1-dev.safetensors`), mapped onto the
//! diffusers module paths the model is built from.
//!
//! BFL fuses the projections diffusers keeps apart: `img_attn.qkv` / `txt_attn.qkv` hold
//! q, k, v of a double block as consecutive row blocks, and a single block's `linear1` holds
//! q, k, v and the MLP input. Its final modulation stores (shift, scale) where diffusers'
//! `norm_out` expects (scale, shift). QK-norm scales are called `scale`, not `weight`.

use burn::{module::Param, nn::Linear, tensor::Tensor, tensor::backend::Backend};
use dit_layers::{LoadError, ParamSource, RmsNorm, Weights, linear_from_rows};

use crate::config::MLP_RATIO;

/// Where a diffusers linear layer lives in a BFL checkpoint.
enum Located {
    /// The whole tensor `key`.
    Whole(String),
    /// Output rows `start .. start + d_out` of `key`, which has `total` rows.
    Rows {
        key: String,
        start: usize,
        total: usize,
    },
    /// `key` with its two row halves swapped.
    Swapped(String),
}

/// Parameters of a BFL checkpoint, addressed by diffusers module paths.
#[derive(Clone)]
pub struct BflCheckpoint<'a, B: Backend> {
    weights: &'a Weights,
    path: Vec<String>,
    device: &'a B::Device,
}

impl<'a, B: Backend> BflCheckpoint<'a, B> {
    /// The tensors of `weights` (with any `model.diffusion_model.` prefix stripped), loaded
    /// onto `device`.
    pub fn new(weights: &'a Weights, device: &'a B::Device) -> Self {
        Self {
            weights,
            path: Vec::new(),
            device,
        }
    }

    /// The diffusers path of `name` under this source, split at the dots.
    fn full_path(&self, name: &str) -> Vec<String> {
        let mut path = self.path.clone();
        path.extend(name.split('.').map(str::to_string));
        path
    }

    fn unknown(&self, path: &[String]) -> LoadError {
        LoadError::MissingKey {
            key: path.join("."),
            source_desc: "the BFL checkpoint layout (no counterpart of this diffusers module)"
                .into(),
        }
    }

    /// The BFL tensor behind the diffusers linear layer at `path`.
    fn locate_linear(&self, path: &[String], d_in: usize, d_out: usize) -> Option<Located> {
        let p: Vec<&str> = path.iter().map(String::as_str).collect();
        let whole = |key: String| Some(Located::Whole(key));
        let part = |key: String, index: usize, of: usize| {
            Some(Located::Rows {
                key,
                start: index * d_out,
                total: of * d_out,
            })
        };
        match p.as_slice() {
            ["x_embedder"] => whole("img_in".into()),
            ["context_embedder"] => whole("txt_in".into()),
            ["proj_out"] => whole("final_layer.linear".into()),
            ["norm_out", "linear"] => {
                Some(Located::Swapped("final_layer.adaLN_modulation.1".into()))
            }
            ["time_text_embed", embedder, layer] => {
                let stem = match *embedder {
                    "timestep_embedder" => "time_in",
                    "guidance_embedder" => "guidance_in",
                    "text_embedder" => "vector_in",
                    _ => return None,
                };
                let layer = match *layer {
                    "linear_1" => "in_layer",
                    "linear_2" => "out_layer",
                    _ => return None,
                };
                whole(format!("{stem}.{layer}"))
            }
            ["transformer_blocks", i, rest @ ..] => {
                let b = format!("double_blocks.{i}");
                match rest {
                    ["norm1", "linear"] => whole(format!("{b}.img_mod.lin")),
                    ["norm1_context", "linear"] => whole(format!("{b}.txt_mod.lin")),
                    ["attn", "to_q"] => part(format!("{b}.img_attn.qkv"), 0, 3),
                    ["attn", "to_k"] => part(format!("{b}.img_attn.qkv"), 1, 3),
                    ["attn", "to_v"] => part(format!("{b}.img_attn.qkv"), 2, 3),
                    ["attn", "add_q_proj"] => part(format!("{b}.txt_attn.qkv"), 0, 3),
                    ["attn", "add_k_proj"] => part(format!("{b}.txt_attn.qkv"), 1, 3),
                    ["attn", "add_v_proj"] => part(format!("{b}.txt_attn.qkv"), 2, 3),
                    ["attn", "to_out", "0"] => whole(format!("{b}.img_attn.proj")),
                    ["attn", "to_add_out"] => whole(format!("{b}.txt_attn.proj")),
                    ["ff", "net", "0", "proj"] => whole(format!("{b}.img_mlp.0")),
                    ["ff", "net", "2"] => whole(format!("{b}.img_mlp.2")),
                    ["ff_context", "net", "0", "proj"] => whole(format!("{b}.txt_mlp.0")),
                    ["ff_context", "net", "2"] => whole(format!("{b}.txt_mlp.2")),
                    _ => None,
                }
            }
            ["single_transformer_blocks", i, rest @ ..] => {
                let b = format!("single_blocks.{i}");
                // linear1 = [q; k; v; mlp] with q, k, v of d_in rows each and the MLP input of
                // MLP_RATIO * d_in rows.
                let total = (3 + MLP_RATIO) * d_in;
                let rows = |start| {
                    Some(Located::Rows {
                        key: format!("{b}.linear1"),
                        start,
                        total,
                    })
                };
                match rest {
                    ["norm", "linear"] => whole(format!("{b}.modulation.lin")),
                    ["attn", "to_q"] => rows(0),
                    ["attn", "to_k"] => rows(d_in),
                    ["attn", "to_v"] => rows(2 * d_in),
                    ["proj_mlp"] => rows(3 * d_in),
                    ["proj_out"] => whole(format!("{b}.linear2")),
                    _ => None,
                }
            }
            _ => None,
        }
    }

    /// The BFL name of the diffusers RMS norm at `path` (its tensor is `<name>.scale`).
    fn locate_norm(path: &[String]) -> Option<String> {
        let p: Vec<&str> = path.iter().map(String::as_str).collect();
        match p.as_slice() {
            ["transformer_blocks", i, "attn", norm] => {
                let (stream, which) = match *norm {
                    "norm_q" => ("img_attn", "query_norm"),
                    "norm_k" => ("img_attn", "key_norm"),
                    "norm_added_q" => ("txt_attn", "query_norm"),
                    "norm_added_k" => ("txt_attn", "key_norm"),
                    _ => return None,
                };
                Some(format!("double_blocks.{i}.{stream}.norm.{which}"))
            }
            ["single_transformer_blocks", i, "attn", norm] => {
                let which = match *norm {
                    "norm_q" => "query_norm",
                    "norm_k" => "key_norm",
                    _ => return None,
                };
                Some(format!("single_blocks.{i}.norm.{which}"))
            }
            _ => None,
        }
    }

    /// The two halves of `tensor` (rows) in swapped order.
    fn swap_halves<const D: usize>(tensor: Tensor<B, D>) -> Tensor<B, D> {
        let half = tensor.dims()[0] / 2;
        Tensor::cat(
            vec![
                tensor.clone().narrow(0, half, half),
                tensor.narrow(0, 0, half),
            ],
            0,
        )
    }
}

impl<B: Backend> ParamSource<B> for BflCheckpoint<'_, B> {
    fn at(&self, name: impl std::fmt::Display) -> Self {
        Self {
            path: self.full_path(&name.to_string()),
            ..self.clone()
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
        let path = self.full_path(name);
        let root = self.weights.root();
        match self.locate_linear(&path, d_in, d_out) {
            Some(Located::Whole(key)) => {
                linear_from_rows(&root.at(key), d_out, 0..d_out, d_in, bias, self.device)
            }
            Some(Located::Rows { key, start, total }) => linear_from_rows(
                &root.at(key),
                total,
                start..start + d_out,
                d_in,
                bias,
                self.device,
            ),
            Some(Located::Swapped(key)) => {
                let view = root.at(key);
                let weight = view.tensor::<B, 2>("weight", [d_out, d_in], self.device)?;
                let bias = bias
                    .then(|| view.tensor::<B, 1>("bias", [d_out], self.device))
                    .transpose()?;
                Ok(Linear {
                    weight: Param::from_tensor(Self::swap_halves(weight).transpose()),
                    bias: bias.map(|b| Param::from_tensor(Self::swap_halves(b))),
                })
            }
            None => Err(self.unknown(&path)),
        }
    }

    fn rms_norm(&self, name: &str, dim: usize, eps: f64) -> Result<RmsNorm<B>, LoadError> {
        let path = self.full_path(name);
        let key = Self::locate_norm(&path).ok_or_else(|| self.unknown(&path))?;
        let scale = self
            .weights
            .root()
            .at(key)
            .tensor("scale", [dim], self.device)?;
        Ok(RmsNorm {
            weight: Param::from_tensor(scale),
            eps,
        })
    }
}
