//! Where the model's parameters come from: a diffusers checkpoint, or a single file in Tencent's
//! original layout (`hunyuan-video-t2v-720p/transformers/mp_rank_00_model_states.pt` converted
//! to safetensors). The model asks for every parameter by its diffusers module path through
//! `ModelParams`; this module locates those in the original layout.
//!
//! The original fuses what diffusers keeps apart: a dual block's `img_attn_qkv` / `txt_attn_qkv`
//! and a refiner block's `self_attn_qkv` hold q, k, v as consecutive row blocks, and a single
//! block's `linear1` holds q, k, v and the MLP input. Its final modulation
//! `final_layer.adaLN_modulation.1` stores (shift, scale) where diffusers' `norm_out` reads
//! (scale, shift). The mapping is the inverse of diffusers'
//! `convert_hunyuan_video_transformer_to_diffusers`.

use dit_layers::{FusedRows, Stored, TensorMap};

use crate::HunyuanVideoConfig;

/// Where Tencent's original `HYVideoDiffusionTransformer` checkpoint
/// (`double_blocks.N.img_attn_qkv`) stores each diffusers parameter.
#[derive(Debug, Clone, Copy)]
pub struct OriginalLayout {
    /// The sizes of the fused row blocks.
    rows: FusedRows,
}

impl OriginalLayout {
    /// The layout of a model of `config`.
    pub fn of(config: &HunyuanVideoConfig) -> Self {
        Self {
            rows: FusedRows {
                hidden: config.hidden_size(),
                mlp_dim: config.mlp_dim(),
            },
        }
    }

    /// A refiner block's module `rest` (under `token_refiner.refiner_blocks.N`) in the block
    /// `b` of the original's `individual_token_refiner`.
    fn refiner_block(&self, b: &str, rest: &[&str]) -> Option<Stored> {
        let renamed = |name: &str| Some(Stored::Renamed(format!("{b}.{name}")));
        match rest {
            ["norm1"] => renamed("norm1"),
            ["norm2"] => renamed("norm2"),
            ["attn", "to_q"] => Some(self.rows.qkv(format!("{b}.self_attn_qkv"), 0)),
            ["attn", "to_k"] => Some(self.rows.qkv(format!("{b}.self_attn_qkv"), 1)),
            ["attn", "to_v"] => Some(self.rows.qkv(format!("{b}.self_attn_qkv"), 2)),
            ["attn", "to_out", "0"] => renamed("self_attn_proj"),
            ["ff", "net", "0", "proj"] => renamed("mlp.fc1"),
            ["ff", "net", "2"] => renamed("mlp.fc2"),
            ["norm_out", "linear"] => renamed("adaLN_modulation.1"),
            _ => None,
        }
    }

    /// A dual-stream block's module `rest` (under `transformer_blocks.N`) in the original's
    /// double block `b`.
    fn double_block(&self, b: &str, rest: &[&str]) -> Option<Stored> {
        let renamed = |name: &str| Some(Stored::Renamed(format!("{b}.{name}")));
        match rest {
            ["norm1", "linear"] => renamed("img_mod.linear"),
            ["norm1_context", "linear"] => renamed("txt_mod.linear"),
            ["attn", "norm_q"] => renamed("img_attn_q_norm"),
            ["attn", "norm_k"] => renamed("img_attn_k_norm"),
            ["attn", "norm_added_q"] => renamed("txt_attn_q_norm"),
            ["attn", "norm_added_k"] => renamed("txt_attn_k_norm"),
            ["attn", "to_out", "0"] => renamed("img_attn_proj"),
            ["attn", "to_add_out"] => renamed("txt_attn_proj"),
            ["ff", "net", "0", "proj"] => renamed("img_mlp.fc1"),
            ["ff", "net", "2"] => renamed("img_mlp.fc2"),
            ["ff_context", "net", "0", "proj"] => renamed("txt_mlp.fc1"),
            ["ff_context", "net", "2"] => renamed("txt_mlp.fc2"),
            _ => self.rows.joint_qkv(
                rest,
                &format!("{b}.img_attn_qkv"),
                &format!("{b}.txt_attn_qkv"),
            ),
        }
    }

    /// A single-stream block's module `rest` (under `single_transformer_blocks.N`) in the
    /// original's single block `b`.
    fn single_block(&self, b: &str, rest: &[&str]) -> Option<Stored> {
        let renamed = |name: &str| Some(Stored::Renamed(format!("{b}.{name}")));
        match rest {
            ["norm", "linear"] => renamed("modulation.linear"),
            ["attn", "norm_q"] => renamed("q_norm"),
            ["attn", "norm_k"] => renamed("k_norm"),
            ["proj_out"] => renamed("linear2"),
            _ => self.rows.single_linear1(rest, &format!("{b}.linear1")),
        }
    }
}

impl TensorMap for OriginalLayout {
    fn locate(&self, path: &[&str]) -> Option<Stored> {
        let renamed = |name: String| Some(Stored::Renamed(name));
        match path {
            ["x_embedder", "proj"] => renamed("img_in.proj".into()),
            ["context_embedder", rest @ ..] => match rest {
                ["proj_in"] => renamed("txt_in.input_embedder".into()),
                ["time_text_embed", "timestep_embedder", layer] => {
                    renamed(format!("txt_in.t_embedder.mlp.{}", mlp_index(layer)?))
                }
                [
                    "time_text_embed",
                    "text_embedder",
                    layer @ ("linear_1" | "linear_2"),
                ] => renamed(format!("txt_in.c_embedder.{layer}")),
                ["token_refiner", "refiner_blocks", i, rest @ ..] => {
                    self.refiner_block(&format!("txt_in.individual_token_refiner.blocks.{i}"), rest)
                }
                _ => None,
            },
            ["time_text_embed", embedder, layer] => match *embedder {
                "timestep_embedder" => renamed(format!("time_in.mlp.{}", mlp_index(layer)?)),
                "guidance_embedder" => renamed(format!("guidance_in.mlp.{}", mlp_index(layer)?)),
                "text_embedder" => match *layer {
                    "linear_1" => renamed("vector_in.in_layer".into()),
                    "linear_2" => renamed("vector_in.out_layer".into()),
                    _ => None,
                },
                _ => None,
            },
            ["transformer_blocks", i, rest @ ..] => {
                self.double_block(&format!("double_blocks.{i}"), rest)
            }
            ["single_transformer_blocks", i, rest @ ..] => {
                self.single_block(&format!("single_blocks.{i}"), rest)
            }
            ["norm_out", "linear"] => Some(Stored::SwappedHalves(
                "final_layer.adaLN_modulation.1".into(),
            )),
            ["proj_out"] => renamed("final_layer.linear".into()),
            _ => None,
        }
    }

    fn layout(&self) -> &'static str {
        "HunyuanVideo's original checkpoint layout"
    }
}

/// The index in the original's `mlp` `Sequential` (`Linear, SiLU, Linear`) of diffusers'
/// `linear_1` / `linear_2`.
fn mlp_index(layer: &str) -> Option<usize> {
    match layer {
        "linear_1" => Some(0),
        "linear_2" => Some(2),
        _ => None,
    }
}
