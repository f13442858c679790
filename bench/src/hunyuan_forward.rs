//! `bench hunyuan-forward`: one forward of a medium HunyuanVideo transformer with random
//! weights: 4 dual-stream + 8 single-stream blocks and the 2-layer token refiner, 6 heads x 128
//! (hidden 768; HunyuanVideo's head size and RoPE split (16, 56, 56), so attention and RoPE run
//! at their real shapes), a latent clip of 3 x 32 x 32 (768 video tokens) and 256 LLaMA text
//! tokens of which 200 are real (the rest padding, masked). The PyTorch side
//! (`fixtures/bench_hunyuan_forward.py`) builds the same configuration in diffusers'
//! `HunyuanVideoTransformer3DModel`.

use anyhow::{Context, Result};
use burn::tensor::{Distribution, Int, Tensor, TensorData, backend::Backend};
use models_hunyuan::{FromParams, HunyuanVideoConfig, HunyuanVideoInput, HunyuanVideoTransformer};
use serde::{Deserialize, Serialize};

use super::{Case, Samples, Size, flux_forward::mmdit_flops, timing::Timer};

/// One case: the model's configuration (diffusers' constructor arguments) and the inputs' sizes.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Params {
    config: HunyuanVideoConfig,
    /// Latent video `[frames, height, width]`.
    latent: [usize; 3],
    /// Text tokens, and how many of them are real.
    txt_tokens: usize,
    valid_tokens: usize,
}

/// The medium configuration, or HunyuanVideo itself (20 + 40 blocks, 24 heads x 128) on a
/// 544x960 clip of 61 frames (latent 16 x 68 x 120: 32 640 video tokens).
pub fn cases(size: Size) -> Vec<Case> {
    let (params, name) = match size {
        Size::Medium => (
            Params {
                config: HunyuanVideoConfig {
                    num_layers: 4,
                    num_single_layers: 8,
                    num_attention_heads: 6,
                    ..HunyuanVideoConfig::hunyuan_video()
                },
                latent: [3, 32, 32],
                txt_tokens: 256,
                valid_tokens: 200,
            },
            "4+8 blocks, 6x128, 768 video + 256 text tokens",
        ),
        Size::Real => (
            Params {
                config: HunyuanVideoConfig::hunyuan_video(),
                latent: [16, 68, 120],
                txt_tokens: 256,
                valid_tokens: 200,
            },
            "HunyuanVideo 20+40 blocks, 24x128, 32640 video + 256 text tokens (544x960x61)",
        ),
    };
    let c = &params.config;
    let [f, h, w] = params.latent;
    let video_tokens = f / c.patch_size_t * (h / c.patch_size) * (w / c.patch_size);
    let flops = mmdit_flops(
        c.num_layers + c.num_single_layers,
        c.num_attention_heads * c.attention_head_dim,
        video_tokens + params.txt_tokens,
    );
    vec![Case {
        name: name.to_string(),
        params: serde_json::to_value(params).expect("a plain struct serialises"),
        flops: Some(flops),
    }]
}

/// Times one forward on backend `B` (random weights and inputs; timestep 500, guidance 6).
/// With `profile`, first prints the time of each phase ([`crate::profile`]).
pub fn time<B: Backend>(case: &Case, timer: &Timer<B>, profile: bool) -> Result<Samples> {
    let p: Params =
        serde_json::from_value(case.params.clone()).context("hunyuan-forward case parameters")?;
    let device = timer.device();
    B::seed(device, 0);
    let model = HunyuanVideoTransformer::<B>::random(&p.config, device)
        .context("building the random HunyuanVideo model")?;
    let c = &p.config;
    let [f, h, w] = p.latent;
    let normal = Distribution::Normal(0.0, 1.0);
    let mask: Vec<i64> = (0..p.txt_tokens)
        .map(|i| i64::from(i < p.valid_tokens))
        .collect();
    let input = HunyuanVideoInput {
        latents: Tensor::random([1, c.in_channels, f, h, w], normal, device),
        timestep: Tensor::from_floats([500.0], device),
        encoder_hidden_states: Tensor::random([1, p.txt_tokens, c.text_embed_dim], normal, device),
        encoder_attention_mask: Tensor::<B, 2, Int>::from_data(
            TensorData::new(mask, [1, p.txt_tokens]),
            device,
        ),
        pooled_projections: Tensor::random([1, c.pooled_projection_dim], normal, device),
        guidance: c
            .guidance_embeds
            .then(|| Tensor::from_floats([6000.0], device)),
    };
    let input = model.check_input(input).context("hunyuan-forward inputs")?;
    crate::profile::forward(&model, &input, timer, profile)
}
