//! The shipped mini models (mini-models/flux-mini and wan-mini, trained by training/): they load,
//! equal diffusers' pipelines on the same noise, and what they generate has the colours the
//! prompt names where it names them (background, shape) and, for WAN-mini, its motion.

use std::fs;

use burn::tensor::Tensor;
use dicache_bench::mini;
use dicache_core::CachePolicy;
use dicache_tests::{Cpu, assert_close, fixture, load_fixture, tensor};
use dit_pipeline::Prompt;
use models_flux::{
    FluxPipeline, FluxRequest,
    pipeline::{Pipeline, Settings},
};
use models_wan::{WanPipeline, WanRequest};
use vae::{Rgb8Image, to_rgb8, video_to_rgb8};

fn settings(model: &str) -> serde_json::Value {
    let text = fs::read_to_string(fixture("mini_models/run.json")).unwrap();
    let run: serde_json::Value = serde_json::from_str(&text).unwrap();
    run[model].clone()
}

fn num(s: &serde_json::Value, key: &str) -> usize {
    s[key].as_u64().unwrap() as usize
}

/// The training palette's colours (training/scenes.py).
const RED: [u8; 3] = [220, 40, 40];
const BLUE: [u8; 3] = [40, 80, 220];
const YELLOW: [u8; 3] = [240, 210, 40];
const PURPLE: [u8; 3] = [140, 60, 180];

/// Whether `pixel` is within a small RGB distance of `color`.
fn near(pixel: &[u8], color: [u8; 3]) -> bool {
    let d2: i32 = pixel
        .iter()
        .zip(color)
        .map(|(&p, c)| (p as i32 - c as i32).pow(2))
        .sum();
    d2 < 60 * 60
}

/// Share of the image's pixels near `color`.
fn coverage(image: &Rgb8Image, color: [u8; 3]) -> f64 {
    let hits = image.pixels.chunks(3).filter(|p| near(p, color)).count();
    hits as f64 / (image.width * image.height) as f64
}

/// Centre (x, y) of the pixels near `color`, in pixels.
fn centroid(image: &Rgb8Image, color: [u8; 3]) -> (f64, f64) {
    let (mut x, mut y, mut n) = (0.0, 0.0, 0.0);
    for (i, pixel) in image.pixels.chunks(3).enumerate() {
        if near(pixel, color) {
            x += (i % image.width) as f64;
            y += (i / image.width) as f64;
            n += 1.0;
        }
    }
    (x / n, y / n)
}

/// A trained model run for 28-30 steps amplifies the ~1e-6 per-call float differences through
/// every step (FLUX-mini's final latents differ by up to 1.0e-4, most by under 1e-5), more than
/// the tiny random fixtures' short runs do.
const CHAINED_ATOL: f32 = 2e-4;

fn flux_request(noise: Tensor<Cpu, 4>) -> FluxRequest<Cpu> {
    let s = settings("flux");
    FluxRequest {
        prompts: vec![Prompt::new(s["prompt"].as_str().unwrap().to_string())],
        settings: Settings {
            width: num(&s, "width"),
            height: num(&s, "height"),
            frames: 1,
            steps: num(&s, "steps"),
            guidance: s["guidance"].as_f64(),
            max_sequence_length: num(&s, "max_sequence_length"),
        },
        noise,
        extra: Default::default(),
    }
}

#[test]
fn flux_mini_equals_diffusers_and_draws_the_prompt() {
    let reference = load_fixture("mini_models/flux.safetensors");
    let request = flux_request(tensor(&reference, "noise", &Default::default()));
    let pipe = FluxPipeline::<Cpu>::load(&mini::FLUX.dir(), None, &Default::default()).unwrap();
    let out = pipe
        .generate(&request, CachePolicy::None, &mut |_, _| {})
        .unwrap();
    assert_close(
        out.latents,
        &reference["latents"],
        CHAINED_ATOL,
        1e-4,
        "final latents",
    );
    let unit = out
        .decoded
        .clone()
        .mul_scalar(0.5)
        .add_scalar(0.5)
        .clamp(0.0, 1.0);
    assert_close(
        unit,
        &reference["image"],
        CHAINED_ATOL,
        1e-4,
        "decoded image",
    );

    // "a large red circle on a blue background"
    let image = &to_rgb8(out.decoded).unwrap()[0];
    let (blue, red) = (coverage(image, BLUE), coverage(image, RED));
    assert!(
        blue > 0.5,
        "blue background covers {blue:.2} of the picture"
    );
    assert!(red > 0.05, "the red circle covers {red:.2} of the picture");
}

#[test]
fn wan_mini_equals_diffusers_and_follows_the_prompt() {
    let s = settings("wan");
    let reference = load_fixture("mini_models/wan.safetensors");
    let request = WanRequest {
        prompts: vec![Prompt {
            text: s["prompt"].as_str().unwrap().to_string(),
            negative: s["negative_prompt"].as_str().unwrap().to_string(),
        }],
        settings: Settings {
            width: num(&s, "width"),
            height: num(&s, "height"),
            frames: num(&s, "frames"),
            steps: num(&s, "steps"),
            guidance: s["guidance"].as_f64(),
            max_sequence_length: num(&s, "max_sequence_length"),
        },
        noise: tensor(&reference, "noise", &Default::default()),
        extra: Default::default(),
    };
    let pipe = WanPipeline::<Cpu>::load(&mini::WAN.dir(), None, &Default::default()).unwrap();
    let out = pipe
        .generate(&request, CachePolicy::None, &mut |_, _| {})
        .unwrap();
    assert_close(
        out.latents,
        &reference["latents"],
        CHAINED_ATOL,
        1e-4,
        "final latents",
    );
    let unit = out
        .decoded
        .clone()
        .permute([0, 2, 1, 3, 4])
        .mul_scalar(0.5)
        .add_scalar(0.5)
        .clamp(0.0, 1.0);
    assert_close(unit, &reference["video"], CHAINED_ATOL, 1e-4, "video");

    // "a large yellow square moving right on a purple background": every frame shows the purple
    // background and the yellow square, and the square travels right.
    let frames = &video_to_rgb8(out.decoded).unwrap()[0];
    for (i, frame) in frames.iter().enumerate() {
        let (purple, yellow) = (coverage(frame, PURPLE), coverage(frame, YELLOW));
        assert!(
            purple > 0.5,
            "frame {i}: purple background covers {purple:.2}"
        );
        assert!(
            yellow > 0.05,
            "frame {i}: the yellow square covers {yellow:.2}"
        );
    }
    let mean = |frames: &[Rgb8Image]| {
        let centres: Vec<_> = frames.iter().map(|f| centroid(f, YELLOW)).collect();
        let n = centres.len() as f64;
        let sum = centres
            .iter()
            .fold((0.0, 0.0), |a, c| (a.0 + c.0, a.1 + c.1));
        (sum.0 / n, sum.1 / n)
    };
    let (start, end) = (mean(&frames[..3]), mean(&frames[frames.len() - 3..]));
    let (dx, dy) = (end.0 - start.0, end.1 - start.1);
    assert!(
        dx > 6.0 && dx > 2.0 * dy.abs(),
        "the yellow square should travel right; it moved ({dx:.1}, {dy:.1}) pixels"
    );
}
