//! The whole HunyuanVideo text-to-video pipeline (LLaMA and CLIP prompt encoding, transformer
//! with embedded guidance, flow-match Euler, HunyuanVideo VAE) against diffusers'
//! `HunyuanVideoPipeline` on a tiny random pipeline folder, uncached and with DiCache.

use std::{fs, path::Path};

use burn::tensor::Tensor;
use dicache_core::{CachePolicy, DiCacheConfig, Pass};
use dicache_tests::{
    Cpu, Scratch, assert_close, assert_trace_matches, changed, fixture, load_fixture, tensor,
};
use dit_pipeline::Prompt;
use models_hunyuan::{
    HunyuanVideoPipeline, HunyuanVideoRequest,
    pipeline::{self, Pipeline},
};
use vae::{SpatialTiles, TileConfig};

struct Settings {
    run: serde_json::Value,
}

impl Settings {
    fn load() -> Self {
        let text = fs::read_to_string(fixture("hunyuan_pipeline/run.json")).unwrap();
        Self {
            run: serde_json::from_str(&text).unwrap(),
        }
    }

    fn num(&self, key: &str) -> f64 {
        self.run[key].as_f64().unwrap()
    }

    fn request(&self) -> HunyuanVideoRequest<Cpu> {
        let noise = load_fixture("hunyuan_pipeline/noise.safetensors");
        HunyuanVideoRequest {
            prompts: vec![Prompt::new(
                self.run["prompt"].as_str().unwrap().to_string(),
            )],
            settings: pipeline::Settings {
                width: self.num("width") as usize,
                height: self.num("height") as usize,
                frames: self.num("frames") as usize,
                steps: self.num("steps") as usize,
                guidance: Some(self.num("guidance")),
                max_sequence_length: self.num("max_sequence_length") as usize,
            },
            noise: tensor::<Cpu, 5>(&noise, "latents", &Default::default()),
            extra: TileConfig::default(),
        }
    }
}

fn pipeline() -> HunyuanVideoPipeline<Cpu> {
    HunyuanVideoPipeline::load(
        &fixture("hunyuan_pipeline/model"),
        None,
        &Default::default(),
    )
    .unwrap()
}

/// The video needs no looser tolerance than the latents: it differs from diffusers' by at most
/// 3.5e-6 (measured, both runs), the final latents' 1.1e-5 (at values up to ~3) shrunk by
/// `1 / scaling_factor` and the tiny VAE's 1/sqrt(fan-in) convolutions, then halved into
/// `[0, 1]`.
const VIDEO_ATOL: f32 = 1e-5;

/// diffusers' `output_type="pt"` video: `[1, frames, 3, h, w]` in `[0, 1]`.
fn as_diffusers_video(video: Tensor<Cpu, 5>) -> Tensor<Cpu, 5> {
    video
        .permute([0, 2, 1, 3, 4])
        .mul_scalar(0.5)
        .add_scalar(0.5)
        .clamp(0.0, 1.0)
}

#[test]
fn uncached_run_equals_diffusers() {
    let s = Settings::load();
    let out = pipeline()
        .generate(&s.request(), CachePolicy::None, &mut |_, _| {})
        .unwrap();
    let reference = load_fixture("hunyuan_pipeline/none.safetensors");
    assert_close(
        out.latents,
        &reference["latents"],
        1e-5,
        1e-4,
        "final latents",
    );
    assert_close(
        as_diffusers_video(out.decoded),
        &reference["video"],
        VIDEO_ATOL,
        1e-4,
        "video",
    );
    assert_eq!(out.traces[0].steps.len(), s.num("steps") as usize);
    assert!(out.traces[0].steps.iter().all(|e| e.pass == Pass::Single));
}

#[test]
fn dicache_run_equals_the_python_reference() {
    let s = Settings::load();
    let policy = CachePolicy::DiCache(DiCacheConfig {
        threshold: s.num("threshold"),
        ..DiCacheConfig::hunyuan_video()
    });
    let out = pipeline()
        .generate(&s.request(), policy, &mut |_, _| {})
        .unwrap();
    let reference = load_fixture("hunyuan_pipeline/dicache.safetensors");
    assert_trace_matches(&out.traces[0], &reference);
    assert!(
        out.traces[0].steps.iter().any(|e| !e.computed),
        "the fixture must skip some steps"
    );
    assert_close(
        out.latents,
        &reference["latents"],
        1e-5,
        1e-4,
        "final latents (dicache)",
    );
    assert_close(
        as_diffusers_video(out.decoded),
        &reference["video"],
        VIDEO_ATOL,
        1e-4,
        "video (dicache)",
    );
}

#[test]
fn vae_tiles_are_honoured() {
    let s = Settings::load();
    let pipe = pipeline();
    let whole = pipe
        .generate(&s.request(), CachePolicy::None, &mut |_, _| {})
        .unwrap();
    // 24x24-pixel tiles every 16 pixels: 2x3 overlapping tiles over the 32x48 frames.
    let tiles = TileConfig {
        spatial: Some(SpatialTiles {
            min_height: 24,
            min_width: 24,
            stride_height: 16,
            stride_width: 16,
        }),
        temporal: None,
    };
    let tiled = pipe
        .generate(
            &changed(s.request(), |r| r.extra = tiles),
            CachePolicy::None,
            &mut |_, _| {},
        )
        .unwrap();
    assert_eq!(tiled.decoded.dims(), whole.decoded.dims());
    let latents = (tiled.latents - whole.latents).abs().max().into_scalar();
    assert_eq!(latents, 0.0, "tiling must only change the decoding");
    let video = (tiled.decoded - whole.decoded).abs().max().into_scalar();
    assert!(
        video > 1e-3,
        "tiles blended, the video must change ({video})"
    );
}

#[test]
fn impossible_requests_are_errors_naming_the_setting() {
    let s = Settings::load();
    let pipe = pipeline();
    let fails = |r: HunyuanVideoRequest<Cpu>| {
        pipe.generate(&r, CachePolicy::None, &mut |_, _| {})
            .err()
            .map(|e| e.to_string())
            .unwrap()
    };
    let msg = fails(changed(s.request(), |r| r.settings.frames = 8));
    assert!(msg.contains("4k+1"), "{msg}");
    let msg = fails(changed(s.request(), |r| r.settings.width = 40));
    assert!(msg.contains("multiples of 16"), "{msg}");
    let msg = fails(changed(s.request(), |r| r.settings.steps = 0));
    assert!(msg.contains("steps"), "{msg}");
    let msg = fails(changed(s.request(), |r| r.settings.max_sequence_length = 0));
    assert!(msg.contains("max sequence length"), "{msg}");
    let msg = fails(changed(s.request(), |r| {
        r.noise = Tensor::zeros([1, 16, 2, 4, 6], &Default::default())
    }));
    assert!(msg.contains("noise"), "{msg}");
}

#[test]
fn missing_components_are_named() {
    let load = |dir: &Path| {
        HunyuanVideoPipeline::<Cpu>::load(dir, None, &Default::default())
            .err()
            .unwrap()
            .to_string()
    };
    let tmp = tempfile::tempdir().unwrap();
    let msg = load(tmp.path());
    assert!(msg.contains("model_index.json"), "{msg}");
    for (component, what) in [
        ("scheduler", "scheduler configuration"),
        ("text_encoder", "LLaMA text encoder"),
        ("tokenizer_2", "CLIP tokenizer"),
        ("vae", "HunyuanVideo VAE"),
    ] {
        let scratch = Scratch::copy_of("hunyuan_pipeline/model", "hunyuan_pipeline_missing");
        copy_components(scratch.path(), component);
        let msg = load(scratch.path());
        assert!(msg.contains(component) && msg.contains(what), "{msg}");
    }
}

/// Copies every component folder of the fixture pipeline but `missing` into `dir`.
fn copy_components(dir: &Path, missing: &str) {
    let model = fixture("hunyuan_pipeline/model");
    for entry in fs::read_dir(&model).unwrap() {
        let component = entry.unwrap().path();
        if component.is_dir() && component.file_name().unwrap() != missing {
            let to = dir.join(component.file_name().unwrap());
            fs::create_dir(&to).unwrap();
            for file in fs::read_dir(&component).unwrap() {
                let file = file.unwrap().path();
                fs::copy(&file, to.join(file.file_name().unwrap())).unwrap();
            }
        }
    }
}
