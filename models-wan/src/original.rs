//! Wan's original single-file layout (`WanModel`: `blocks.N.self_attn.q`) as a [`TensorMap`]
//! onto the diffusers module paths the model is built from: the same tensors under other names.

use dit_layers::{Stored, TensorMap};

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

/// Wan's original layout: every diffusers parameter renamed by [`original_name`].
#[derive(Debug, Clone, Copy)]
pub struct WanOriginalLayout;

impl TensorMap for WanOriginalLayout {
    fn locate(&self, path: &[&str]) -> Option<Stored> {
        original_name(path).map(Stored::Renamed)
    }

    fn layout(&self) -> &'static str {
        "Wan's original checkpoint layout"
    }
}
