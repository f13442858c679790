//! `cargo xtask bench sparse`: Sparse VideoGen against dense attention at the token counts of
//! real videos, random inputs and weights.
//!
//! - Attention: one self-attention at the real models' head size (128) over WAN 2.1's
//!   832x480x81 (32 760 video tokens) and HunyuanVideo's 544x960x129 (67 320 video tokens, 256
//!   text tokens of which 64 are the prompt's), `--heads` heads (the time scales with the
//!   heads): dense, SVG as a sparse layer runs it (profiling, placement, band), and the band
//!   alone; the mask's density (the fraction of the `N x N` map it computes) and the goal
//!   speedup `0.8 / density`.
//! - Block: one transformer block at the real width (WAN 2.1 T2V-1.3B at 832x480x81;
//!   HunyuanVideo's dual-stream block at 544x960x33, 18 360 video tokens, to bound the run)
//!   dense and with SVG, as one step after the warm-up runs it.
//!
//! Writes `<out-dir>/sparse.json` and `<out-dir>/SPARSE.md`.

use std::{fmt::Write as _, path::PathBuf, sync::Arc};

use anyhow::Result;
use burn::tensor::{Distribution, Int, Tensor, TensorData, backend::Backend};
use dit_layers::{
    BandMask, DenoisingStep, Heads, RowSampler, SparseVideoModel, SparseVideoPlan,
    SparseVideoSettings, SvgVariant, VideoTokens, attention, band_attention,
};
use models_hunyuan::{
    FromParams as _, HunyuanVideoConfig, HunyuanVideoInput, HunyuanVideoTransformer,
};
use models_wan::{WanConfig, WanTransformer};
use serde::{Deserialize, Serialize};

use dicache_core::CacheableModel;

use crate::{
    backend::{BackendJob, BackendKind, Dtype, dispatch},
    timing::Timer,
    wan_forward::random_input,
};

/// Arguments of `cargo xtask bench sparse`.
#[derive(clap::Args, Debug)]
pub struct SparseArgs {
    /// Heads of each attention case (the real models have 12 and 24; the time scales with them).
    #[arg(long, default_value_t = 2)]
    pub heads: usize,
    /// Timed runs of each measurement.
    #[arg(long, default_value_t = 1)]
    pub repeat: usize,
    /// Untimed runs first.
    #[arg(long, default_value_t = 0)]
    pub warmup: usize,
    /// Skip the transformer blocks (attention only).
    #[arg(long)]
    pub attention_only: bool,
    /// Folder of the results (relative to the workspace root).
    #[arg(long, default_value = "bench/sparse")]
    pub out_dir: PathBuf,
    /// Backend to run on (each needs its cargo feature).
    #[arg(long, value_enum, default_value = "cpu")]
    pub backend: BackendKind,
    /// Float dtype of compute.
    #[arg(long, value_enum, default_value = "f32")]
    pub dtype: Dtype,
}

/// One attention case's results.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AttentionResult {
    /// What it measures.
    pub name: String,
    /// Tokens of the sequence (video, then text).
    pub tokens: usize,
    /// Heads measured.
    pub heads: usize,
    /// The sparsity asked for.
    pub sparsity: f64,
    /// The band's width in tokens.
    pub band: usize,
    /// The fraction of the map the mask computes.
    pub density: f64,
    /// Dense attention, median milliseconds.
    pub dense_ms: f64,
    /// SVG as a sparse layer runs it (profiling, placement, band), median milliseconds.
    pub svg_ms: f64,
    /// The band attention alone, median milliseconds.
    pub band_ms: f64,
}

/// One block case's results.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BlockResult {
    /// What it measures.
    pub name: String,
    /// Video tokens.
    pub video_tokens: usize,
    /// Dense, median milliseconds.
    pub dense_ms: f64,
    /// With SVG, median milliseconds.
    pub svg_ms: f64,
}

/// Everything one run measured.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SparseResults {
    /// The backend and dtype.
    pub setup: String,
    /// The attention cases.
    pub attention: Vec<AttentionResult>,
    /// The block cases.
    pub blocks: Vec<BlockResult>,
}

/// Runs the benchmark and writes its files.
pub fn run(args: &SparseArgs) -> Result<()> {
    anyhow::ensure!(
        args.heads > 0 && args.repeat > 0,
        "--heads and --repeat must be at least 1"
    );
    let results = dispatch(args.backend, args.dtype, args)?;
    crate::report::write_results(&args.out_dir, "sparse", &results, &markdown(&results))
}

impl BackendJob for &SparseArgs {
    type Output = SparseResults;

    fn run<B: Backend>(self, device: B::Device) -> Result<SparseResults> {
        let timer = Timer::<B>::new(&device, self.warmup, self.repeat);
        let wan = VideoTokens {
            frames: 21,
            frame_size: 30 * 52,
            text: 0,
        };
        let hunyuan = VideoTokens {
            frames: 33,
            frame_size: 34 * 60,
            text: 256,
        };
        let attention = vec![
            attention_case(
                &timer,
                "WAN 2.1 832x480x81",
                SvgVariant::Wan,
                wan,
                0,
                self.heads,
            )?,
            attention_case(
                &timer,
                "HunyuanVideo 544x960x129",
                SvgVariant::HunyuanVideo,
                hunyuan,
                64,
                self.heads,
            )?,
        ];
        let blocks = if self.attention_only {
            Vec::new()
        } else {
            vec![wan_block(&timer)?, hunyuan_block(&timer)?]
        };
        Ok(SparseResults {
            setup: format!("{:?} {:?}", self.backend, self.dtype),
            attention,
            blocks,
        })
    }
}

/// The settings of a sparse layer in the middle of a generation: the reference's for
/// `variant`, rows drawn from seed 0.
fn settings(variant: SvgVariant) -> SparseVideoSettings {
    SparseVideoSettings {
        rows: RowSampler::Seeded(0),
        ..SparseVideoSettings::reference(variant)
    }
}

/// Step 25 of 50: past every warm-up.
fn mid_generation() -> Vec<DenoisingStep> {
    vec![DenoisingStep { step: 25, of: 50 }]
}

fn attention_case<B: Backend>(
    timer: &Timer<B>,
    name: &str,
    variant: SvgVariant,
    tokens: VideoTokens,
    prompt: usize,
    heads: usize,
) -> Result<AttentionResult> {
    let device = timer.device();
    let len = tokens.len();
    let real = tokens.video() + prompt.min(tokens.text);
    eprintln!("{name}: {len} tokens, {heads} heads");
    let normal = Distribution::Normal(0.0, 1.0);
    let random = || Tensor::<B, 4>::random([1, heads, len, 128], normal, device);
    let h = Heads {
        q: random(),
        k: random(),
        v: random(),
    };
    let settings = Arc::new(settings(variant));
    let plan = SparseVideoPlan::new(settings.clone(), tokens)?;
    let mask = BandMask::new(&settings, tokens, real)?;
    let dense = timer.time(|| {
        let (k, v) = (
            h.k.clone().narrow(2, 0, real),
            h.v.clone().narrow(2, 0, real),
        );
        Ok(attention(h.q.clone(), k, v, None))
    })?;
    eprintln!("  dense {:.0} ms", dense.wall());
    let svg = timer.time(|| {
        let call = plan.call(60, &mid_generation(), &[real]);
        Ok(call.attend(30, h.clone(), |_, _| unreachable!("a sparse layer")))
    })?;
    eprintln!("  svg {:.0} ms", svg.wall());
    let band = timer.time(|| Ok(band_attention(h.q.clone(), h.k.clone(), h.v.clone(), &mask)))?;
    eprintln!("  band {:.0} ms", band.wall());
    Ok(AttentionResult {
        name: name.to_string(),
        tokens: len,
        heads,
        sparsity: settings.sparsity,
        band: plan.band(),
        density: mask.density(),
        dense_ms: dense.wall(),
        svg_ms: svg.wall(),
        band_ms: band.wall(),
    })
}

/// One WAN 2.1 T2V-1.3B block at 832x480x81 (latent 21 x 60 x 104) with 512 text tokens.
fn wan_block<B: Backend>(timer: &Timer<B>) -> Result<BlockResult> {
    let device = timer.device();
    let config = WanConfig {
        num_layers: 1,
        ..WanConfig::t2v_1_3b()
    };
    B::seed(device, 0);
    let mut model = WanTransformer::<B>::random(&config, device)?;
    let raw = random_input(&config, [21, 60, 104], 512, device);
    dense_then_svg(
        timer,
        &mut model,
        ("WAN 2.1 T2V-1.3B block, 832x480x81", 32_760),
        |model| {
            let input = model.check_input(raw.clone())?.at_steps(mid_generation());
            Ok(model.forward(&input))
        },
    )
}

/// One HunyuanVideo dual-stream block at 544x960x33 (latent 9 x 68 x 120) with 256 text
/// tokens of which 64 are the prompt's.
fn hunyuan_block<B: Backend>(timer: &Timer<B>) -> Result<BlockResult> {
    let device = timer.device();
    let config = HunyuanVideoConfig {
        num_layers: 1,
        num_single_layers: 0,
        ..HunyuanVideoConfig::hunyuan_video()
    };
    B::seed(device, 0);
    let mut model = HunyuanVideoTransformer::<B>::random(&config, device)?;
    let normal = Distribution::Normal(0.0, 1.0);
    let (text, valid) = (256, 64);
    let mask: Vec<i64> = (0..text).map(|i| i64::from(i < valid)).collect();
    let raw = HunyuanVideoInput {
        latents: Tensor::random([1, config.in_channels, 9, 68, 120], normal, device),
        timestep: Tensor::from_floats([500.0], device),
        encoder_hidden_states: Tensor::random([1, text, config.text_embed_dim], normal, device),
        encoder_attention_mask: Tensor::<B, 2, Int>::from_data(
            TensorData::new(mask, [1, text]),
            device,
        ),
        pooled_projections: Tensor::random([1, config.pooled_projection_dim], normal, device),
        guidance: Some(Tensor::from_floats([6000.0], device)),
    };
    dense_then_svg(
        timer,
        &mut model,
        ("HunyuanVideo dual-stream block, 544x960x33", 18_360),
        |model| {
            let input = model.check_input(raw.clone())?.at_steps(mid_generation());
            Ok(model.forward(&input))
        },
    )
}

/// Times `forward` (one checked forward of `model`) with dense attention, then with SVG at the
/// reference settings of the model's variant: the block case `name` over `video_tokens`.
fn dense_then_svg<B: Backend, M: SparseVideoModel, T>(
    timer: &Timer<B>,
    model: &mut M,
    (name, video_tokens): (&str, usize),
    forward: impl Fn(&M) -> Result<T>,
) -> Result<BlockResult> {
    eprintln!("{name}, {video_tokens} video tokens");
    let dense = timer.time(|| forward(model))?;
    model.set_sparse_attention(Some(settings(M::SVG_VARIANT)))?;
    let svg = timer.time(|| forward(model))?;
    eprintln!("  dense {:.0} ms, svg {:.0} ms", dense.wall(), svg.wall());
    Ok(BlockResult {
        name: name.into(),
        video_tokens,
        dense_ms: dense.wall(),
        svg_ms: svg.wall(),
    })
}

/// The results as the README's tables.
pub fn markdown(r: &SparseResults) -> String {
    let mut md = String::new();
    let _ = writeln!(
        md,
        "# Sparse VideoGen against dense attention ({})\n",
        r.setup
    );
    let _ = writeln!(
        md,
        "Written by `cargo xtask bench sparse`; random inputs and weights, median wall times.\n"
    );
    let _ = writeln!(
        md,
        "| attention | tokens | heads | sparsity | band | density | dense | SVG | band only | speedup (SVG) | goal 0.8/density |"
    );
    let _ = writeln!(md, "|---|---|---|---|---|---|---|---|---|---|---|");
    for a in &r.attention {
        let _ = writeln!(
            md,
            "| {} | {} | {} | {} | {} | {:.3} | {:.0} ms | {:.0} ms | {:.0} ms | {:.2}x | {:.2}x |",
            a.name,
            a.tokens,
            a.heads,
            a.sparsity,
            a.band,
            a.density,
            a.dense_ms,
            a.svg_ms,
            a.band_ms,
            a.dense_ms / a.svg_ms,
            0.8 / a.density
        );
    }
    if !r.blocks.is_empty() {
        let _ = writeln!(md, "\n| block | video tokens | dense | SVG | speedup |");
        let _ = writeln!(md, "|---|---|---|---|---|");
        for b in &r.blocks {
            let _ = writeln!(
                md,
                "| {} | {} | {:.0} ms | {:.0} ms | {:.2}x |",
                b.name,
                b.video_tokens,
                b.dense_ms,
                b.svg_ms,
                b.dense_ms / b.svg_ms
            );
        }
    }
    md
}
