//! The fused projections of MM-DiT original checkpoints (Black Forest Labs' FLUX.1 and Tencent's
//! HunyuanVideo store them alike): an attention's q, k, v as consecutive row blocks of one
//! `qkv` weight, and a single-stream block's q, k, v and MLP input as the row blocks of one
//! `linear1` weight.

use std::ops::Range;

use crate::Stored;

/// The sizes of the fused row blocks of a model: `hidden` rows for each of q, k, v, `mlp_dim`
/// rows for a single-stream block's MLP input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FusedRows {
    /// Hidden size: the rows of each of q, k, v.
    pub hidden: usize,
    /// Inner width of the blocks' MLPs.
    pub mlp_dim: usize,
}

impl FusedRows {
    /// Projection `index` (0 q, 1 k, 2 v) of the fused `q; k; v` layer `key`.
    pub fn qkv(&self, key: String, index: usize) -> Stored {
        let h = self.hidden;
        Stored::Rows {
            key,
            rows: index * h..(index + 1) * h,
            total: 3 * h,
        }
    }

    /// A dual-stream block's attention projection `rest` (`["attn", "to_q"]` ...
    /// `["attn", "add_v_proj"]`, diffusers' names), stored in the fused image-stream layer
    /// `img_qkv` or text-stream layer `txt_qkv`; `None` for any other module.
    pub fn joint_qkv(&self, rest: &[&str], img_qkv: &str, txt_qkv: &str) -> Option<Stored> {
        let (key, index) = match rest {
            ["attn", "to_q"] => (img_qkv, 0),
            ["attn", "to_k"] => (img_qkv, 1),
            ["attn", "to_v"] => (img_qkv, 2),
            ["attn", "add_q_proj"] => (txt_qkv, 0),
            ["attn", "add_k_proj"] => (txt_qkv, 1),
            ["attn", "add_v_proj"] => (txt_qkv, 2),
            _ => return None,
        };
        Some(self.qkv(key.to_string(), index))
    }

    /// A single-stream block's projection `rest` (`["attn", "to_q"]`, `["attn", "to_k"]`,
    /// `["attn", "to_v"]`, `["proj_mlp"]`) in its fused `q; k; v; mlp` layer `linear1`; `None`
    /// for any other module.
    pub fn single_linear1(&self, rest: &[&str], linear1: &str) -> Option<Stored> {
        let h = self.hidden;
        let rows: Range<usize> = match rest {
            ["attn", "to_q"] => 0..h,
            ["attn", "to_k"] => h..2 * h,
            ["attn", "to_v"] => 2 * h..3 * h,
            ["proj_mlp"] => 3 * h..3 * h + self.mlp_dim,
            _ => return None,
        };
        Some(Stored::Rows {
            key: linear1.to_string(),
            rows,
            total: 3 * h + self.mlp_dim,
        })
    }
}
