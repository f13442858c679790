//! Activation functions named as in transformers' `ACT2FN` (config keys `hidden_act`,
//! `dense_act_fn`).

use burn::tensor::{Tensor, activation, backend::Backend};

/// An activation selected by its transformers name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Activation {
    /// `"relu"`: `max(x, 0)`.
    Relu,
    /// `"gelu"`: exact GELU, `x · Φ(x)`.
    Gelu,
    /// `"gelu_new"`, `"gelu_pytorch_tanh"`: GELU, tanh approximation.
    GeluTanh,
    /// `"quick_gelu"`: `x · sigmoid(1.702 x)` (OpenAI CLIP).
    QuickGelu,
    /// `"silu"`, `"swish"`: `x · sigmoid(x)`.
    Silu,
}

impl Activation {
    /// The names accepted by [`Activation::from_name`].
    pub const NAMES: &'static [&'static str] = &[
        "relu",
        "gelu",
        "gelu_new",
        "gelu_pytorch_tanh",
        "quick_gelu",
        "silu",
        "swish",
    ];

    /// The activation transformers calls `name`; `None` for names not supported here.
    pub fn from_name(name: &str) -> Option<Self> {
        Some(match name {
            "relu" => Self::Relu,
            "gelu" => Self::Gelu,
            "gelu_new" | "gelu_pytorch_tanh" => Self::GeluTanh,
            "quick_gelu" => Self::QuickGelu,
            "silu" | "swish" => Self::Silu,
            _ => return None,
        })
    }

    /// Applies the activation elementwise.
    pub fn forward<B: Backend, const D: usize>(self, x: Tensor<B, D>) -> Tensor<B, D> {
        match self {
            Self::Relu => activation::relu(x),
            Self::Gelu => activation::gelu(x),
            Self::GeluTanh => activation::gelu_approximate(x),
            Self::QuickGelu => x.clone() * activation::sigmoid(x * 1.702),
            Self::Silu => activation::silu(x),
        }
    }
}
