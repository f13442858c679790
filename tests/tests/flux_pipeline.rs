//! The whole FLUX pipeline (tokenizers, CLIP, T5, transformer, scheduler, VAE) against diffusers'
//! `FluxPipeline` on a tiny random pipeline folder, uncached and with DiCache.

use std::{fs, path::Path};

use burn::tensor::Tensor;
use dicache_core::{CachePolicy, DiCacheConfig};
use dicache_tests::{Cpu, assert_close, changed, fixture, load_fixture, quantized_values, tensor};
use dit_layers::Weights;
use dit_pipeline::{EncoderResidency, LoadOptions, PipelineFolder, Prompt, check_weights};
use models_flux::{
    FluxPipeline, FluxRequest,
    pipeline::{self, Pipeline, PipelineError},
};

struct Settings {
    prompt: String,
    width: usize,
    height: usize,
    steps: usize,
    guidance: f64,
    max_sequence_length: usize,
    threshold: f64,
}

fn settings() -> Settings {
    let run: serde_json::Value =
        serde_json::from_str(&fs::read_to_string(fixture("flux_pipeline/run.json")).unwrap())
            .unwrap();
    let num = |k: &str| run[k].as_f64().unwrap();
    Settings {
        prompt: run["prompt"].as_str().unwrap().to_string(),
        width: num("width") as usize,
        height: num("height") as usize,
        steps: num("steps") as usize,
        guidance: num("guidance"),
        max_sequence_length: num("max_sequence_length") as usize,
        threshold: num("threshold"),
    }
}

fn request(s: &Settings) -> FluxRequest<Cpu> {
    let noise = load_fixture("flux_pipeline/noise.safetensors");
    FluxRequest {
        prompts: vec![Prompt::new(s.prompt.clone())],
        settings: pipeline::Settings {
            width: s.width,
            height: s.height,
            frames: 1,
            steps: s.steps,
            guidance: Some(s.guidance),
            max_sequence_length: s.max_sequence_length,
        },
        noise: tensor::<Cpu, 4>(&noise, "latents", &Default::default()),
        extra: (),
    }
}

/// diffusers' `output_type="pt"` post-processing: `(x / 2 + 0.5).clamp(0, 1)`.
fn unit(image: Tensor<Cpu, 4>) -> Tensor<Cpu, 4> {
    image.mul_scalar(0.5).add_scalar(0.5).clamp(0.0, 1.0)
}

fn pipeline() -> FluxPipeline<Cpu> {
    FluxPipeline::load(&fixture("flux_pipeline/model"), None, &Default::default()).unwrap()
}

#[test]
fn uncached_run_equals_diffusers() {
    let s = settings();
    let out = pipeline()
        .generate(&request(&s), CachePolicy::None, &mut |_, _| {})
        .unwrap();
    let reference = load_fixture("flux_pipeline/none.safetensors");
    assert_close(
        out.latents,
        &reference["latents"],
        1e-5,
        1e-4,
        "final latents",
    );
    assert_close(
        unit(out.decoded),
        &reference["image"],
        1e-5,
        1e-4,
        "decoded image",
    );
    assert!(out.traces[0].steps.iter().all(|e| e.computed));
}

/// The pipeline with `--transformer` a GGUF file (its transformer as Q8_0; the tiny head size
/// cannot give the rotary split, so the folder's transformer/config.json does) against diffusers'
/// `FluxPipeline` running the weights the `gguf` package decodes from it (`fixtures/gen_gguf.py`).
#[test]
fn gguf_transformer_run_equals_diffusers_on_its_decoded_weights() {
    let s = settings();
    let file = fixture("gguf/flux-pipeline-Q8_0.gguf");
    let pipe = FluxPipeline::<Cpu>::load(
        &fixture("flux_pipeline/model"),
        Some(&file),
        &Default::default(),
    )
    .unwrap();
    let out = pipe
        .generate(&request(&s), CachePolicy::None, &mut |_, _| {})
        .unwrap();
    let reference = load_fixture("gguf/flux-pipeline-Q8_0.safetensors");
    // A later torch run: the pinned environment reproduces this pipeline's f32
    // `none.safetensors` only to 3.4e-5 (latents) and 4.5e-5 (image), the reference's own noise.
    let (atol, rtol) = (5e-5, 1e-4);
    assert_close(
        out.latents,
        &reference["latents"],
        atol,
        rtol,
        "GGUF latents",
    );
    assert_close(
        unit(out.decoded),
        &reference["image"],
        atol,
        rtol,
        "GGUF image",
    );
}

/// The tiny pipeline with its T5 encoder replaced by a llama.cpp `t5encoder` GGUF file of it
/// (F32, F16 and Q8_0 tensors; `fixtures/gen_gguf_t5.py`), as `--t5` loads it, against
/// diffusers' `FluxPipeline` running the weights the `gguf` package decodes from it.
#[test]
fn gguf_t5_run_equals_diffusers_on_its_decoded_weights() {
    let s = settings();
    let t5 = fixture("gguf/flux-pipeline-t5-Q8_0.gguf");
    let options = LoadOptions {
        t5: Some(&t5),
        ..LoadOptions::default()
    };
    let pipe = FluxPipeline::<Cpu>::load_with(
        &fixture("flux_pipeline/model"),
        options,
        &Default::default(),
    )
    .unwrap();
    let out = pipe
        .generate(&request(&s), CachePolicy::None, &mut |_, _| {})
        .unwrap();
    let reference = load_fixture("gguf/flux-pipeline-t5-Q8_0.safetensors");
    // As for the GGUF transformer above: the reference's own noise.
    let (atol, rtol) = (5e-5, 1e-4);
    assert_close(out.latents, &reference["latents"], atol, rtol, "latents");
    assert_close(unit(out.decoded), &reference["image"], atol, rtol, "image");
}

/// Text encoders loaded for each request and dropped before its denoising loop give the same
/// generation, request after request, as encoders kept loaded.
#[test]
fn on_demand_text_encoders_give_the_same_generation() {
    let s = settings();
    let options = LoadOptions {
        text_encoders: EncoderResidency::OnDemand,
        ..LoadOptions::default()
    };
    let lean = FluxPipeline::<Cpu>::load_with(
        &fixture("flux_pipeline/model"),
        options,
        &Default::default(),
    )
    .unwrap();
    let kept = pipeline()
        .generate(&request(&s), CachePolicy::None, &mut |_, _| {})
        .unwrap();
    for _ in 0..2 {
        let out = lean
            .generate(&request(&s), CachePolicy::None, &mut |_, _| {})
            .unwrap();
        assert_eq!(out.decoded.to_data(), kept.decoded.to_data());
    }
}

/// `run` and `serve` refuse a pipeline whose weights cannot fit before loading it: the bytes
/// come from the files' headers, a GGUF transformer's matrices counting at their quantized size.
#[test]
fn the_weights_are_counted_from_the_headers_before_loading() {
    let folder = PipelineFolder::open(&fixture("flux_pipeline/model")).unwrap();
    let path = fixture("gguf/flux-pipeline-Q8_0.gguf");
    let gguf = Weights::open(&path).unwrap();
    let all = folder.weight_bytes(&[], 4).unwrap();
    let transformer = Weights::open(&fixture("flux_pipeline/model/transformer")).unwrap();
    assert_eq!(transformer.values(), gguf.values());
    assert_eq!(transformer.loaded_bytes(4), 4 * transformer.values());
    assert_eq!(folder.weight_bytes(&[], 2).unwrap() * 2, all);
    // Q8_0 keeps 34 bytes per 32 values of its matrices.
    let quantized = quantized_values(&path) as u64;
    assert!(quantized > 0);
    assert_eq!(
        gguf.loaded_bytes(4),
        4 * (gguf.values() - quantized) + quantized / 32 * 34
    );
    assert_eq!(
        folder.weight_bytes(&[("transformer", &gguf)], 4).unwrap(),
        all - transformer.loaded_bytes(4) + gguf.loaded_bytes(4)
    );
    assert!(check_weights(all, 4, all, "tiny").is_ok());
    let msg = check_weights(all, 4, all - 1, "tiny")
        .unwrap_err()
        .to_string();
    assert!(msg.contains("tiny") && msg.contains("4-byte"), "{msg}");
}

#[test]
fn dicache_run_equals_the_python_reference() {
    let s = settings();
    let policy = CachePolicy::DiCache(DiCacheConfig {
        threshold: s.threshold,
        ..DiCacheConfig::flux()
    });
    let mut steps_seen = Vec::new();
    let out = pipeline()
        .generate(&request(&s), policy, &mut |done, total| {
            steps_seen.push((done, total))
        })
        .unwrap();
    assert_eq!(steps_seen.last(), Some(&(s.steps, s.steps)));
    let reference = load_fixture("flux_pipeline/dicache.safetensors");
    let computed: Vec<bool> = reference["trace.computed"]
        .iter::<f64>()
        .map(|c| c == 1.0)
        .collect();
    let ours: Vec<bool> = out.traces[0].steps.iter().map(|e| e.computed).collect();
    assert_eq!(ours, computed, "computed/skipped schedule");
    assert!(
        computed.contains(&false),
        "the fixture must skip some steps"
    );
    let column = |k: &str| -> Vec<f64> { reference[k].iter::<f64>().collect() };
    for (e, (acc, gamma)) in out.traces[0].steps.iter().zip(
        column("trace.accumulated")
            .into_iter()
            .zip(column("trace.gamma")),
    ) {
        match e.accumulated {
            Some(a) => assert!(
                (a - acc).abs() <= 1e-4 * acc.abs().max(1.0),
                "step {}: accumulated {a} vs {acc}",
                e.step
            ),
            None => assert!(acc.is_nan(), "step {}: reference accumulated {acc}", e.step),
        }
        match e.gamma {
            Some(g) => assert!(
                (g - gamma).abs() <= 1e-4,
                "step {}: gamma {g} vs {gamma}",
                e.step
            ),
            None => assert!(gamma.is_nan(), "step {}: reference gamma {gamma}", e.step),
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
        unit(out.decoded),
        &reference["image"],
        1e-5,
        1e-4,
        "decoded image (dicache)",
    );
}

/// A copy of the fixture pipeline folder to damage.
fn copy_pipeline(dst: &Path) {
    fn copy(src: &Path, dst: &Path) {
        fs::create_dir_all(dst).unwrap();
        for entry in fs::read_dir(src).unwrap() {
            let entry = entry.unwrap();
            let to = dst.join(entry.file_name());
            if entry.path().is_dir() {
                copy(&entry.path(), &to)
            } else {
                fs::copy(entry.path(), to).map(|_| ()).unwrap()
            }
        }
    }
    copy(&fixture("flux_pipeline/model"), dst);
}

fn load_error(dir: &Path) -> String {
    match FluxPipeline::<Cpu>::load(dir, None, &Default::default()) {
        Ok(_) => panic!("loading {} should fail", dir.display()),
        Err(e) => e.to_string(),
    }
}

#[test]
fn missing_or_broken_components_are_named() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("model");
    copy_pipeline(&dir);
    fs::remove_dir_all(dir.join("text_encoder_2")).unwrap();
    let msg = load_error(&dir);
    assert!(msg.contains("text_encoder_2"), "{msg}");

    let dir = tmp.path().join("model2");
    copy_pipeline(&dir);
    fs::write(dir.join("tokenizer/tokenizer.json"), "{ not a tokenizer").unwrap();
    let msg = load_error(&dir);
    assert!(msg.contains("tokenizer.json"), "{msg}");

    let dir = tmp.path().join("model3");
    copy_pipeline(&dir);
    let vae = dir.join("vae/diffusion_pytorch_model.safetensors");
    let bytes = fs::read(&vae).unwrap();
    fs::write(&vae, &bytes[..bytes.len() / 2]).unwrap();
    let msg = load_error(&dir);
    assert!(msg.contains("diffusion_pytorch_model.safetensors"), "{msg}");
}

#[test]
fn impossible_requests_are_errors() {
    let s = settings();
    let pipe = pipeline();
    let generate = |r: &FluxRequest<Cpu>| {
        pipe.generate(r, CachePolicy::None, &mut |_, _| {})
            .err()
            .map(|e| e.to_string())
    };

    let odd = changed(request(&s), |r| r.settings.width = s.width + 8);
    let msg = generate(&odd).unwrap();
    assert!(msg.contains("multiples of 16"), "{msg}");
    let no_steps = changed(request(&s), |r| r.settings.steps = 0);
    assert!(generate(&no_steps).unwrap().contains("steps"));
    let wrong_noise = changed(request(&s), |r| {
        r.noise = Tensor::zeros([1, 16, 2, 2], &Default::default())
    });
    let msg = generate(&wrong_noise).unwrap();
    assert!(
        msg.contains("noise") && msg.contains("[1, 16, 8, 6]"),
        "{msg}"
    );
    let bad_cache = pipe.generate(
        &request(&s),
        CachePolicy::DiCache(DiCacheConfig {
            threshold: -1.0,
            ..DiCacheConfig::flux()
        }),
        &mut |_, _| {},
    );
    assert!(matches!(bad_cache, Err(PipelineError::Cache(_))));
}
