//! `bench flux-forward`: one forward of a medium FLUX.1-dev transformer with random weights:
//! 4 double-stream + 8 single-stream blocks, 6 heads x 128 (hidden 768; FLUX's head size, so
//! attention and RoPE run at their real shapes), 1024 image tokens (a 512² image) and 128 text
//! tokens. The PyTorch side (`fixtures/bench_flux_forward.py`) builds the same configuration in
//! diffusers' `FluxTransformer2DModel`.

use anyhow::{Context, Result};
use burn::tensor::{Distribution, Tensor, TensorData, backend::Backend};
use dicache_core::CacheableModel;
use models_flux::{FluxConfig, FluxInput, FluxTransformer, FromParams};
use serde::{Deserialize, Serialize};

use super::{Case, Samples, timing::Timer};

/// One case: the model's configuration (diffusers' constructor arguments) and the token grid.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Params {
    config: FluxConfig,
    /// Latent tokens per side (the image has `grid²` tokens).
    grid: usize,
    /// Text tokens.
    txt_tokens: usize,
}

/// The medium configuration at 1024 image + 128 text tokens.
pub fn cases() -> Vec<Case> {
    let config = FluxConfig {
        num_layers: 4,
        num_single_layers: 8,
        num_attention_heads: 6,
        ..FluxConfig::dev()
    };
    let params = Params {
        config,
        grid: 32,
        txt_tokens: 128,
    };
    vec![Case {
        name: "4+8 blocks, 6x128, 1024+128 tokens".to_string(),
        params: serde_json::to_value(params).expect("a plain struct serialises"),
    }]
}

/// Times one forward on backend `B` (random weights and inputs; guidance 3.5, timestep 0.5).
pub fn time<B: Backend>(case: &Case, timer: &Timer<B>) -> Result<Samples> {
    let p: Params =
        serde_json::from_value(case.params.clone()).context("flux-forward case parameters")?;
    let device = timer.device();
    B::seed(device, 0);
    let model = FluxTransformer::<B>::random(&p.config, device)
        .context("building the random FLUX model")?;
    let c = &p.config;
    let img_tokens = p.grid * p.grid;
    let normal = Distribution::Normal(0.0, 1.0);
    let ids: Vec<f32> = (0..img_tokens)
        .flat_map(|i| [0.0, (i / p.grid) as f32, (i % p.grid) as f32])
        .collect();
    let input = FluxInput {
        latents: Tensor::random([1, img_tokens, c.in_channels], normal, device),
        encoder_hidden_states: Tensor::random(
            [1, p.txt_tokens, c.joint_attention_dim],
            normal,
            device,
        ),
        pooled_projections: Tensor::random([1, c.pooled_projection_dim], normal, device),
        timestep: Tensor::from_floats([0.5], device),
        guidance: c
            .guidance_embeds
            .then(|| Tensor::from_floats([3.5], device)),
        img_ids: Tensor::from_data(TensorData::new(ids, [img_tokens, 3]), device),
        txt_ids: Tensor::zeros([p.txt_tokens, 3], device),
    };
    let input = model.check_input(input).context("flux-forward inputs")?;
    timer.time(|| Ok(model.forward(&input)))
}
