//! Black Forest Labs' single-file checkpoint layout (`flux1-dev.safetensors`) as a
//! [`TensorMap`] onto the diffusers module paths the model is built from.
//!
//! BFL fuses the projections diffusers keeps apart: `img_attn.qkv` / `txt_attn.qkv` hold
//! q, k, v of a double block as consecutive row blocks, and a single block's `linear1` holds
//! q, k, v and the MLP input. Its final modulation stores (shift, scale) where diffusers'
//! `norm_out` expects (scale, shift). QK-norm scales are called `scale`, not `weight`.

use dit_layers::{FusedRows, Stored, TensorMap};

use crate::{FluxConfig, MLP_RATIO};

/// Where a BFL checkpoint of a model stores each diffusers parameter.
#[derive(Debug, Clone, Copy)]
pub struct BflLayout {
    /// The sizes of the fused row blocks.
    rows: FusedRows,
}

impl BflLayout {
    /// The layout of a model of `config`.
    pub fn of(config: &FluxConfig) -> Self {
        let hidden = config.hidden_size();
        Self {
            rows: FusedRows {
                hidden,
                mlp_dim: MLP_RATIO * hidden,
            },
        }
    }

    /// A double block's module `rest` (under `transformer_blocks.N`) in BFL's double block `b`.
    fn double_block(&self, b: &str, rest: &[&str]) -> Option<Stored> {
        let renamed = |name: &str| Some(Stored::Renamed(format!("{b}.{name}")));
        let scale = |name: &str| Some(Stored::Scale(format!("{b}.{name}")));
        match rest {
            ["norm1", "linear"] => renamed("img_mod.lin"),
            ["norm1_context", "linear"] => renamed("txt_mod.lin"),
            ["attn", "to_out", "0"] => renamed("img_attn.proj"),
            ["attn", "to_add_out"] => renamed("txt_attn.proj"),
            ["attn", "norm_q"] => scale("img_attn.norm.query_norm"),
            ["attn", "norm_k"] => scale("img_attn.norm.key_norm"),
            ["attn", "norm_added_q"] => scale("txt_attn.norm.query_norm"),
            ["attn", "norm_added_k"] => scale("txt_attn.norm.key_norm"),
            ["ff", "net", "0", "proj"] => renamed("img_mlp.0"),
            ["ff", "net", "2"] => renamed("img_mlp.2"),
            ["ff_context", "net", "0", "proj"] => renamed("txt_mlp.0"),
            ["ff_context", "net", "2"] => renamed("txt_mlp.2"),
            _ => self.rows.joint_qkv(
                rest,
                &format!("{b}.img_attn.qkv"),
                &format!("{b}.txt_attn.qkv"),
            ),
        }
    }

    /// A single block's module `rest` (under `single_transformer_blocks.N`) in BFL's single
    /// block `b`.
    fn single_block(&self, b: &str, rest: &[&str]) -> Option<Stored> {
        match rest {
            ["norm", "linear"] => Some(Stored::Renamed(format!("{b}.modulation.lin"))),
            ["proj_out"] => Some(Stored::Renamed(format!("{b}.linear2"))),
            ["attn", "norm_q"] => Some(Stored::Scale(format!("{b}.norm.query_norm"))),
            ["attn", "norm_k"] => Some(Stored::Scale(format!("{b}.norm.key_norm"))),
            _ => self.rows.single_linear1(rest, &format!("{b}.linear1")),
        }
    }
}

impl TensorMap for BflLayout {
    fn locate(&self, path: &[&str]) -> Option<Stored> {
        let renamed = |name: &str| Some(Stored::Renamed(name.to_string()));
        match path {
            ["x_embedder"] => renamed("img_in"),
            ["context_embedder"] => renamed("txt_in"),
            ["proj_out"] => renamed("final_layer.linear"),
            ["norm_out", "linear"] => Some(Stored::SwappedHalves(
                "final_layer.adaLN_modulation.1".into(),
            )),
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
                Some(Stored::Renamed(format!("{stem}.{layer}")))
            }
            ["transformer_blocks", i, rest @ ..] => {
                self.double_block(&format!("double_blocks.{i}"), rest)
            }
            ["single_transformer_blocks", i, rest @ ..] => {
                self.single_block(&format!("single_blocks.{i}"), rest)
            }
            _ => None,
        }
    }

    fn layout(&self) -> &'static str {
        "the BFL checkpoint layout"
    }
}
