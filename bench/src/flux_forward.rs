//! `bench flux-forward`: one forward of a medium FLUX.1-dev transformer with random weights:
//! 4 double-stream + 8 single-stream blocks, 6 heads x 128 (hidden 768; FLUX's head size, so
//! attention and RoPE run at their real shapes), 1024 image tokens (a 512² image) and 128 text
//! tokens. The PyTorch side (`fixtures/bench_flux_forward.py`) builds the same configuration in
//! diffusers' `FluxTransformer2DModel`.

use anyhow::{Context, Result};
use burn::tensor::{Distribution, Tensor, TensorData, backend::Backend};
use models_flux::{FluxConfig, FluxInput, FluxTransformer, FromParams};
use serde::{Deserialize, Serialize};

use super::{Case, Samples, Size, timing::Timer};

/// One case: the model's configuration (diffusers' constructor arguments) and the token grid.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Params {
    config: FluxConfig,
    /// Latent tokens per side (the image has `grid²` tokens).
    grid: usize,
    /// Text tokens.
    txt_tokens: usize,
}

/// The medium configuration at 1024 image + 128 text tokens, or FLUX.1-dev itself (19 + 38
/// blocks, 24 heads x 128) at 1024x1024 (4096 image tokens) with 512 T5 tokens.
pub fn cases(size: Size) -> Vec<Case> {
    let (params, name) = match size {
        Size::Medium => (
            Params {
                config: FluxConfig {
                    num_layers: 4,
                    num_single_layers: 8,
                    num_attention_heads: 6,
                    ..FluxConfig::dev()
                },
                grid: 32,
                txt_tokens: 128,
            },
            "4+8 blocks, 6x128, 1024+128 tokens",
        ),
        Size::Real => (
            Params {
                config: FluxConfig::dev(),
                grid: 64,
                txt_tokens: 512,
            },
            "FLUX.1-dev 19+38 blocks, 24x128, 4096+512 tokens (1024x1024)",
        ),
    };
    let c = &params.config;
    let flops = mmdit_flops(
        c.num_layers + c.num_single_layers,
        c.num_attention_heads * c.attention_head_dim,
        params.grid * params.grid + params.txt_tokens,
    );
    vec![Case {
        name: name.to_string(),
        params: serde_json::to_value(params).expect("a plain struct serialises"),
        flops: Some(flops),
    }]
}

/// Floating-point operations of `blocks` MM-DiT blocks (FLUX.1's and HunyuanVideo's double- and
/// single-stream blocks cost the same per token) of width `hidden` with a 4x feed-forward over
/// `tokens` tokens: per token and block 12 hidden² multiply-adds (q, k, v and out projections,
/// the feed-forward's two layers), plus attention's 2 tokens² hidden; two operations each.
pub fn mmdit_flops(blocks: usize, hidden: usize, tokens: usize) -> f64 {
    let (h, n) = (hidden as f64, tokens as f64);
    2.0 * blocks as f64 * (n * 12.0 * h * h + 2.0 * n * n * h)
}

/// Times one forward on backend `B` (random weights and inputs; guidance 3.5, timestep 0.5).
/// With `profile`, first prints the time of each phase ([`crate::profile`]).
pub fn time<B: Backend>(case: &Case, timer: &Timer<B>, profile: bool) -> Result<Samples> {
    let p: Params =
        serde_json::from_value(case.params.clone()).context("flux-forward case parameters")?;
    let device = timer.device();
    B::seed(device, 0);
    let model = FluxTransformer::<B>::random(&p.config, device)
        .context("building the random FLUX model")?;
    let input = random_input(&p.config, p.grid, p.txt_tokens, device);
    let input = model.check_input(input).context("flux-forward inputs")?;
    crate::profile::forward(&model, &input, timer, profile)
}

/// Random inputs of one FLUX forward: a `grid x grid` latent token grid and `txt_tokens` text
/// tokens (standard normal), timestep 0.5, guidance 3.5 when the model embeds it.
pub(crate) fn random_input<B: Backend>(
    c: &FluxConfig,
    grid: usize,
    txt_tokens: usize,
    device: &B::Device,
) -> FluxInput<B> {
    let img_tokens = grid * grid;
    let normal = Distribution::Normal(0.0, 1.0);
    let ids: Vec<f32> = (0..img_tokens)
        .flat_map(|i| [0.0, (i / grid) as f32, (i % grid) as f32])
        .collect();
    FluxInput {
        latents: Tensor::random([1, img_tokens, c.in_channels], normal, device),
        encoder_hidden_states: Tensor::random(
            [1, txt_tokens, c.joint_attention_dim],
            normal,
            device,
        ),
        pooled_projections: Tensor::random([1, c.pooled_projection_dim], normal, device),
        timestep: Tensor::from_floats([0.5], device),
        guidance: c
            .guidance_embeds
            .then(|| Tensor::from_floats([3.5], device)),
        img_ids: Tensor::from_data(TensorData::new(ids, [img_tokens, 3]), device),
        txt_ids: Tensor::zeros([txt_tokens, 3], device),
    }
}
