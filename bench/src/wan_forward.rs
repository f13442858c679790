//! `bench wan-forward`: one forward of the real WAN 2.1 T2V-1.3B transformer configuration (30
//! blocks, 12 heads x 128, FFN 8960; random weights) on a small clip: 5 frames at 416x240 (latent
//! [16, 2, 30, 52], 780 video tokens) with 512 umT5 text tokens. The PyTorch side
//! (`fixtures/bench_wan_forward.py`) builds the same configuration in diffusers'
//! `WanTransformer3DModel`.

use anyhow::{Context, Result};
use burn::tensor::{Distribution, Tensor, backend::Backend};
use models_wan::{FromParams, WanConfig, WanInput, WanTransformer};
use serde::{Deserialize, Serialize};

use super::{Case, Samples, Size, timing::Timer};

/// One case: the model's configuration (diffusers' constructor arguments) and the inputs' sizes.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Params {
    config: WanConfig,
    /// Latent video `[frames, height, width]`.
    latent: [usize; 3],
    /// Text tokens.
    txt_tokens: usize,
}

/// T2V-1.3B on 5 frames at 416x240, or at its real size: 81 frames at 832x480 (latent
/// 21 x 60 x 104: 32 760 video tokens).
pub fn cases(size: Size) -> Vec<Case> {
    let (latent, name) = match size {
        Size::Medium => ([2, 30, 52], "T2V-1.3B, 780 video + 512 text tokens"),
        Size::Real => (
            [21, 60, 104],
            "T2V-1.3B, 32760 video + 512 text tokens (832x480x81)",
        ),
    };
    let params = Params {
        config: WanConfig::t2v_1_3b(),
        latent,
        txt_tokens: 512,
    };
    let flops = flops(&params);
    vec![Case {
        name: name.to_string(),
        params: serde_json::to_value(params).expect("a plain struct serialises"),
        flops: Some(flops),
    }]
}

/// Floating-point operations of one forward (two per multiply-add): per block, the
/// self-attention's four projections and the cross-attention's query and output over the video
/// tokens, its key and value over the text, the feed-forward, and both attentions' products.
fn flops(p: &Params) -> f64 {
    let c = &p.config;
    let [f, h, w] = p.latent;
    let [pt, ph, pw] = c.patch_size;
    let n = (f / pt * (h / ph) * (w / pw)) as f64;
    let t = p.txt_tokens as f64;
    let d = (c.num_attention_heads * c.attention_head_dim) as f64;
    let per_block = n * 6.0 * d * d
        + t * 2.0 * d * d
        + n * 2.0 * d * c.ffn_dim as f64
        + 2.0 * n * n * d
        + 2.0 * n * t * d;
    2.0 * c.num_layers as f64 * per_block
}

/// Times one forward on backend `B` (random weights and inputs; timestep 500).
/// With `profile`, first prints the time of each phase ([`crate::profile`]).
pub fn time<B: Backend>(case: &Case, timer: &Timer<B>, profile: bool) -> Result<Samples> {
    let p: Params =
        serde_json::from_value(case.params.clone()).context("wan-forward case parameters")?;
    let device = timer.device();
    B::seed(device, 0);
    let model =
        WanTransformer::<B>::random(&p.config, device).context("building the random WAN model")?;
    let input = random_input(&p.config, p.latent, p.txt_tokens, device);
    let input = model.check_input(input).context("wan-forward inputs")?;
    crate::profile::forward(&model, &input, timer, profile)
}

/// Random inputs of one WAN forward: latents `[frames, height, width]` and `txt_tokens` text
/// tokens (standard normal), timestep 500.
pub(crate) fn random_input<B: Backend>(
    c: &WanConfig,
    [f, h, w]: [usize; 3],
    txt_tokens: usize,
    device: &B::Device,
) -> WanInput<B> {
    let normal = Distribution::Normal(0.0, 1.0);
    WanInput {
        latents: Tensor::random([1, c.in_channels, f, h, w], normal, device),
        timestep: Tensor::from_floats([500.0], device),
        encoder_hidden_states: Tensor::random([1, txt_tokens, c.text_dim], normal, device),
    }
}
