//! The whole WAN 2.1 text-to-video pipeline (umT5, transformer with CFG, UniPC, Wan VAE) against
//! diffusers' `WanPipeline` on a tiny random pipeline folder, uncached and with per-pass DiCache.

use std::fs;

use burn::tensor::Tensor;
use dicache_core::{CachePolicy, DiCacheConfig, Pass};
use dicache_tests::{Cpu, assert_close, changed, fixture, load_fixture, tensor};
use dit_pipeline::Prompt;
use models_wan::{
    WanPipeline, WanRequest,
    pipeline::{self, Pipeline},
};

struct Settings {
    run: serde_json::Value,
}

impl Settings {
    fn load() -> Self {
        let text = fs::read_to_string(fixture("wan_pipeline/run.json")).unwrap();
        Self {
            run: serde_json::from_str(&text).unwrap(),
        }
    }

    fn num(&self, key: &str) -> f64 {
        self.run[key].as_f64().unwrap()
    }

    fn request(&self) -> WanRequest<Cpu> {
        let noise = load_fixture("wan_pipeline/noise.safetensors");
        WanRequest {
            prompts: vec![Prompt {
                text: self.run["prompt"].as_str().unwrap().to_string(),
                negative: self.run["negative_prompt"].as_str().unwrap().to_string(),
            }],
            settings: pipeline::Settings {
                width: self.num("width") as usize,
                height: self.num("height") as usize,
                frames: self.num("frames") as usize,
                steps: self.num("steps") as usize,
                guidance: Some(self.num("guidance")),
                max_sequence_length: self.num("max_sequence_length") as usize,
            },
            noise: tensor::<Cpu, 5>(&noise, "latents", &Default::default()),
            extra: Default::default(),
        }
    }
}

fn pipeline() -> WanPipeline<Cpu> {
    WanPipeline::load(&fixture("wan_pipeline/model"), None, &Default::default()).unwrap()
}

/// The video inherits the final latents' ~5e-6 difference through the Wan VAE's chain of ~20 3-D
/// convolutions (the VAE alone agrees to 7e-6 on identical latents, tests/tests/wan_vae.rs).
const VIDEO_ATOL: f32 = 5e-5;

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
    let reference = load_fixture("wan_pipeline/none.safetensors");
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
    let passes: Vec<Pass> = out.traces[0].steps.iter().map(|e| e.pass).collect();
    assert_eq!(&passes[..2], &[Pass::Cond, Pass::Uncond]);
    assert_eq!(passes.len(), 2 * s.num("steps") as usize);
}

#[test]
fn dicache_run_equals_the_python_reference() {
    let s = Settings::load();
    let policy = CachePolicy::DiCache(DiCacheConfig {
        threshold: s.num("threshold"),
        ..DiCacheConfig::wan()
    });
    let out = pipeline()
        .generate(&s.request(), policy, &mut |_, _| {})
        .unwrap();
    let reference = load_fixture("wan_pipeline/dicache.safetensors");
    let column = |k: &str| -> Vec<f64> { reference[k].iter::<f64>().collect() };
    let (computed, passes) = (column("trace.computed"), column("trace.pass"));
    assert_eq!(out.traces[0].steps.len(), computed.len());
    for (i, e) in out.traces[0].steps.iter().enumerate() {
        let pass = if passes[i] == 0.0 {
            Pass::Cond
        } else {
            Pass::Uncond
        };
        assert_eq!((e.pass, e.computed), (pass, computed[i] == 1.0), "call {i}");
    }
    assert!(computed.contains(&0.0), "the fixture must skip some calls");
    for (e, acc) in out.traces[0].steps.iter().zip(column("trace.accumulated")) {
        match e.accumulated {
            Some(a) => assert!(
                (a - acc).abs() <= 1e-4 * acc.abs().max(1.0),
                "accumulated {a} vs {acc}"
            ),
            None => assert!(acc.is_nan()),
        }
    }
    for (e, gamma) in out.traces[0].steps.iter().zip(column("trace.gamma")) {
        match e.gamma {
            Some(g) => assert!((g - gamma).abs() <= 1e-4, "gamma {g} vs {gamma}"),
            None => assert!(gamma.is_nan()),
        }
    }
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
fn impossible_requests_and_missing_components_are_errors() {
    let s = Settings::load();
    let pipe = pipeline();
    let fails = |r: WanRequest<Cpu>| {
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
    let msg = fails(changed(s.request(), |r| {
        r.noise = Tensor::zeros([1, 16, 2, 4, 6], &Default::default())
    }));
    assert!(msg.contains("noise"), "{msg}");

    let tmp = tempfile::tempdir().unwrap();
    fs::write(
        tmp.path().join("model_index.json"),
        r#"{"_class_name": "WanPipeline"}"#,
    )
    .unwrap();
    let msg = WanPipeline::<Cpu>::load(tmp.path(), None, &Default::default())
        .err()
        .unwrap()
        .to_string();
    assert!(msg.contains("scheduler"), "{msg}");
}
