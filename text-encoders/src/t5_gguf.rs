//! T5 encoders as llama.cpp's `t5encoder` GGUF files name their tensors: the layout of
//! city96's `t5-v1_1-xxl-encoder-gguf` (FLUX.1's T5-XXL) and `umt5-xxl-encoder-gguf` (WAN's
//! umT5-XXL), which ComfyUI and stable-diffusion.cpp users have.

use dit_layers::{Stored, TensorMap};

/// `general.architecture` of llama.cpp's T5 encoder files.
pub const T5_GGUF_ARCHITECTURE: &str = "t5encoder";

/// llama.cpp's T5 encoder layout: `token_embd`, `enc.blk.N.attn_q` ... `enc.blk.N.ffn_down`,
/// `enc.output_norm` for transformers' `shared`, `encoder.block.N.layer.0.SelfAttention.q` ...
/// `encoder.block.N.layer.1.DenseReluDense.wo`, `encoder.final_layer_norm`. Every tensor keeps
/// its shape.
#[derive(Debug, Clone, Copy)]
pub struct LlamaCppT5Layout;

impl TensorMap for LlamaCppT5Layout {
    fn locate(&self, path: &[&str]) -> Option<Stored> {
        // A parameter's own name (`weight`) follows its module's.
        let (module, param) = match path {
            [module @ .., last @ ("weight" | "bias")] => (module, Some(*last)),
            module => (module, None),
        };
        let name = match module {
            ["shared"] | ["encoder", "embed_tokens"] => "token_embd".to_string(),
            ["encoder", "final_layer_norm"] => "enc.output_norm".to_string(),
            ["encoder", "block", i, "layer", layer, rest @ ..] => {
                let stored = match (*layer, rest) {
                    ("0", ["layer_norm"]) => "attn_norm",
                    ("0", ["SelfAttention", "q"]) => "attn_q",
                    ("0", ["SelfAttention", "k"]) => "attn_k",
                    ("0", ["SelfAttention", "v"]) => "attn_v",
                    ("0", ["SelfAttention", "o"]) => "attn_o",
                    ("0", ["SelfAttention", "relative_attention_bias"]) => "attn_rel_b",
                    ("1", ["layer_norm"]) => "ffn_norm",
                    ("1", ["DenseReluDense", "wi_0"]) => "ffn_gate",
                    ("1", ["DenseReluDense", "wi_1" | "wi"]) => "ffn_up",
                    ("1", ["DenseReluDense", "wo"]) => "ffn_down",
                    _ => return None,
                };
                format!("enc.blk.{i}.{stored}")
            }
            _ => return None,
        };
        Some(Stored::Renamed(match param {
            Some(param) => format!("{name}.{param}"),
            None => name,
        }))
    }

    fn layout(&self) -> &'static str {
        "llama.cpp's T5 encoder layout (t5encoder GGUF)"
    }
}
