//! Half precision end to end: the shipped mini models and the HunyuanVideo fixture pipeline run
//! with every weight, activation and decoded pixel in the device's default float dtype (set to
//! f16 or bf16 by the test binary, one dtype per process), and their output is compared with
//! diffusers' float32 output of the same noise.
//!
//! The comparison is on the 8-bit pictures a user gets (PSNR and SSIM, as the cache benchmark
//! measures fidelity), since half precision changes every value a little but must not change
//! the picture.

use std::fs;

use burn::tensor::{Tensor, TensorData, backend::Backend};
use dicache_bench::{
    mini,
    quality::{video_psnr, video_ssim},
};
use dicache_core::CachePolicy;
use dit_pipeline::{Output, Pipeline, Prompt, Request, Settings};
use models_flux::FluxPipeline;
use models_hunyuan::HunyuanVideoPipeline;
use models_wan::WanPipeline;
use vae::{Rgb8Image, TileConfig, to_rgb8, video_to_rgb8};

use crate::{fixture, load_fixture, tensor};

/// How close a half-precision run came to the float32 reference.
#[derive(Debug, Clone, Copy)]
pub struct Fidelity {
    /// PSNR in dB over the whole picture or clip.
    pub psnr: f64,
    /// Mean SSIM over the frames.
    pub ssim: f64,
}

impl Fidelity {
    /// Prints the fidelity of `what` and asserts it is at least `psnr` dB and `ssim`.
    pub fn assert_at_least(self, what: &str, psnr: f64, ssim: f64) {
        eprintln!(
            "{what}: PSNR {:.2} dB, SSIM {:.4} against float32",
            self.psnr, self.ssim
        );
        assert!(
            self.psnr >= psnr && self.ssim >= ssim,
            "{what}: PSNR {:.2} dB / SSIM {:.4} against float32, want at least {psnr} / {ssim}",
            self.psnr,
            self.ssim
        );
    }
}

fn run_settings(model: &str) -> serde_json::Value {
    let text = fs::read_to_string(fixture("mini_models/run.json")).unwrap();
    serde_json::from_str::<serde_json::Value>(&text).unwrap()[model].clone()
}

fn settings(s: &serde_json::Value, frames: usize) -> Settings {
    let num = |key: &str| s[key].as_f64().unwrap();
    Settings {
        width: num("width") as usize,
        height: num("height") as usize,
        frames,
        steps: num("steps") as usize,
        guidance: Some(num("guidance")),
        max_sequence_length: num("max_sequence_length") as usize,
    }
}

/// diffusers' `[0, 1]` pictures as 8-bit frames: `[1, 3, h, w]` images, or `[1, f, 3, h, w]`
/// videos.
fn reference_frames(data: &TensorData) -> Vec<Rgb8Image> {
    let signed = |t: Tensor<burn_flex::Flex, 4>| t.mul_scalar(2.0).sub_scalar(1.0);
    let device = Default::default();
    match data.shape.len() {
        4 => to_rgb8(signed(Tensor::from_data(data.clone(), &device))).unwrap(),
        5 => {
            let video = Tensor::<burn_flex::Flex, 5>::from_data(data.clone(), &device)
                .permute([0, 2, 1, 3, 4]);
            video_to_rgb8(video.mul_scalar(2.0).sub_scalar(1.0))
                .unwrap()
                .remove(0)
        }
        n => panic!("a reference picture has 4 or 5 dimensions, not {n}"),
    }
}

fn fidelity(expected: &[Rgb8Image], got: &[Rgb8Image]) -> Fidelity {
    Fidelity {
        psnr: video_psnr(expected, got).unwrap(),
        ssim: video_ssim(expected, got).unwrap(),
    }
}

/// Runs `pipeline` on `request` uncached and checks that it computed in the noise's dtype.
fn generate<B: Backend, P: Pipeline<B, N>, const N: usize>(
    pipeline: &P,
    request: &Request<B, N, P::Extra>,
) -> Output<B, N> {
    let out = pipeline
        .generate(request, CachePolicy::None, &mut |_, _| {})
        .unwrap();
    let dtype = request.noise.dtype();
    assert_eq!(out.latents.dtype(), dtype, "latents' dtype");
    assert_eq!(out.decoded.dtype(), dtype, "decoded picture's dtype");
    out
}

/// FLUX-mini at its reference settings in `B`'s default dtype against diffusers' float32 image.
pub fn flux_mini<B: Backend>(device: &B::Device) -> Fidelity {
    let s = run_settings("flux");
    let reference = load_fixture("mini_models/flux.safetensors");
    let request = Request {
        prompts: vec![Prompt::new(s["prompt"].as_str().unwrap().to_string())],
        settings: settings(&s, 1),
        noise: tensor::<B, 4>(&reference, "noise", device),
        extra: Default::default(),
    };
    let pipe = FluxPipeline::<B>::load(&mini::FLUX.dir(), None, device).unwrap();
    let image = to_rgb8(generate(&pipe, &request).decoded).unwrap();
    fidelity(&reference_frames(&reference["image"]), &image)
}

/// WAN-mini at its reference settings (classifier-free guidance, 9 frames) in `B`'s default
/// dtype against diffusers' float32 clip.
pub fn wan_mini<B: Backend>(device: &B::Device) -> Fidelity {
    let s = run_settings("wan");
    let reference = load_fixture("mini_models/wan.safetensors");
    let request = Request {
        prompts: vec![Prompt {
            text: s["prompt"].as_str().unwrap().to_string(),
            negative: s["negative_prompt"].as_str().unwrap().to_string(),
        }],
        settings: settings(&s, s["frames"].as_u64().unwrap() as usize),
        noise: tensor::<B, 5>(&reference, "noise", device),
        extra: Default::default(),
    };
    let pipe = WanPipeline::<B>::load(&mini::WAN.dir(), None, device).unwrap();
    let clip = video_to_rgb8(generate(&pipe, &request).decoded).unwrap();
    fidelity(&reference_frames(&reference["video"]), &clip[0])
}

/// The tiny random HunyuanVideo fixture pipeline (LLaMA and CLIP, embedded guidance, tiled
/// VAE) in `B`'s default dtype against diffusers' float32 clip.
pub fn hunyuan_fixture<B: Backend>(device: &B::Device) -> Fidelity {
    let text = fs::read_to_string(fixture("hunyuan_pipeline/run.json")).unwrap();
    let s: serde_json::Value = serde_json::from_str(&text).unwrap();
    let noise = load_fixture("hunyuan_pipeline/noise.safetensors");
    let request = Request {
        prompts: vec![Prompt::new(s["prompt"].as_str().unwrap().to_string())],
        settings: settings(&s, s["frames"].as_u64().unwrap() as usize),
        noise: tensor::<B, 5>(&noise, "latents", device),
        extra: TileConfig::default(),
    };
    let pipe =
        HunyuanVideoPipeline::<B>::load(&fixture("hunyuan_pipeline/model"), None, device).unwrap();
    let clip = video_to_rgb8(generate(&pipe, &request).decoded).unwrap();
    let reference = load_fixture("hunyuan_pipeline/none.safetensors");
    fidelity(&reference_frames(&reference["video"]), &clip[0])
}
