//! Backend parity: the same computations on wgpu (CI: Mesa's software Vulkan) and on the CPU
//! backend agree. Built only with `--features wgpu`.
#![cfg(feature = "wgpu")]

use std::{path::Path, sync::Arc};

use burn::{
    module::Param,
    tensor::{Bool, Tensor, TensorData, backend::Backend},
};
use burn_wgpu::{Wgpu, WgpuDevice};
use dicache_core::{CachePolicy, DiCacheConfig};
use dicache_tests::{Cpu, fixture, load_fixture};
use dit_layers::{
    Heads, LayerNorm, RmsNorm, RowSampler, SparseVideoPlan, SparseVideoSettings, SvgVariant,
    VideoTokens, attention,
};
use dit_pipeline::Prompt;
use models_flux::{
    FluxPipeline, FluxRequest,
    pipeline::{Pipeline, Settings},
};

/// Deterministic values in [-1, 1).
fn data(shape: &[usize], seed: u32) -> TensorData {
    let n: usize = shape.iter().product();
    let v: Vec<f32> = (0..n as u32)
        .map(|i| {
            let h = (i.wrapping_mul(2654435761) ^ seed.wrapping_mul(40503)) % 2000;
            h as f32 / 1000.0 - 1.0
        })
        .collect();
    TensorData::new(v, shape.to_vec())
}

/// Norms and masked attention on backend `B`, flattened.
fn layers<B: Backend>(device: &B::Device) -> Vec<Vec<f32>> {
    let x = Tensor::<B, 3>::from_data(data(&[2, 5, 8], 1), device);
    let ln = LayerNorm::<B> {
        weight: Some(Param::from_tensor(Tensor::from_data(data(&[8], 2), device))),
        bias: Some(Param::from_tensor(Tensor::from_data(data(&[8], 3), device))),
        eps: 1e-6,
    };
    let rms = RmsNorm::<B> {
        weight: Param::from_tensor(Tensor::from_data(data(&[8], 4), device)),
        eps: 1e-6,
    };
    let q = Tensor::<B, 4>::from_data(data(&[1, 2, 6, 4], 5), device);
    let k = Tensor::<B, 4>::from_data(data(&[1, 2, 7, 4], 6), device);
    let v = Tensor::<B, 4>::from_data(data(&[1, 2, 7, 4], 7), device);
    let mask_values: Vec<bool> = (0..2 * 6 * 7).map(|i| i % 7 == 6).collect();
    let mask = Tensor::<B, 4, Bool>::from_data(TensorData::new(mask_values, [1, 2, 6, 7]), device);
    [
        ln.forward(x.clone()).into_data(),
        rms.forward(x).into_data(),
        attention(q.clone(), k.clone(), v.clone(), None).into_data(),
        attention(q, k, v, Some(mask)).into_data(),
    ]
    .into_iter()
    .map(|d| d.to_vec::<f32>().unwrap())
    .collect()
}

fn assert_all_close(a: &[Vec<f32>], b: &[Vec<f32>], tol: f32) {
    for (i, (x, y)) in a.iter().zip(b).enumerate() {
        assert_eq!(x.len(), y.len());
        for (j, (p, q)) in x.iter().zip(y).enumerate() {
            assert!(
                (p - q).abs() <= tol * (1.0 + q.abs()),
                "output {i}[{j}]: wgpu {p} vs cpu {q}"
            );
        }
    }
}

#[test]
fn layers_agree_on_wgpu_and_cpu() {
    let cpu = layers::<Cpu>(&Default::default());
    let gpu = layers::<Wgpu>(&WgpuDevice::default());
    assert_all_close(&gpu, &cpu, 1e-5);
}

/// The tiny FLUX pipeline fixture with DiCache on backend `B` (its transformer replaced by
/// `transformer` when given): final latents, decoded image and the computed/skipped schedule.
fn flux_pipeline<B: Backend>(
    device: &B::Device,
    transformer: Option<&Path>,
) -> (Vec<Vec<f32>>, Vec<bool>) {
    let run: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(fixture("flux_pipeline/run.json")).unwrap())
            .unwrap();
    let num = |k: &str| run[k].as_f64().unwrap();
    let noise = load_fixture("flux_pipeline/noise.safetensors")["latents"].clone();
    let pipe =
        FluxPipeline::<B>::load(&fixture("flux_pipeline/model"), transformer, device).unwrap();
    let request = FluxRequest {
        prompts: vec![Prompt::new(run["prompt"].as_str().unwrap().to_string())],
        settings: Settings {
            width: num("width") as usize,
            height: num("height") as usize,
            frames: 1,
            steps: num("steps") as usize,
            guidance: Some(num("guidance")),
            max_sequence_length: num("max_sequence_length") as usize,
        },
        noise: Tensor::from_data(noise, device),
        extra: (),
    };
    let policy = CachePolicy::DiCache(DiCacheConfig {
        threshold: num("threshold"),
        ..DiCacheConfig::flux()
    });
    let out = pipe.generate(&request, policy, &mut |_, _| {}).unwrap();
    let computed = out.traces[0].steps.iter().map(|e| e.computed).collect();
    let tensors = [out.latents.into_data(), out.decoded.into_data()]
        .into_iter()
        .map(|d| d.to_vec::<f32>().unwrap())
        .collect();
    (tensors, computed)
}

#[test]
fn flux_pipeline_with_dicache_agrees_on_wgpu_and_cpu() {
    let (cpu, cpu_schedule) = flux_pipeline::<Cpu>(&Default::default(), None);
    let (gpu, gpu_schedule) = flux_pipeline::<Wgpu>(&WgpuDevice::default(), None);
    assert_eq!(gpu_schedule, cpu_schedule, "DiCache schedule");
    assert!(cpu_schedule.contains(&false));
    assert_all_close(&gpu, &cpu, 1e-4);
}

/// A GGUF transformer's matrices stay quantized on the host and are decoded and uploaded to
/// the device at each forward: the same pipeline on both backends.
#[test]
fn flux_pipeline_with_a_gguf_transformer_agrees_on_wgpu_and_cpu() {
    let gguf = fixture("gguf/flux-pipeline-Q8_0.gguf");
    let (cpu, cpu_schedule) = flux_pipeline::<Cpu>(&Default::default(), Some(&gguf));
    let (gpu, gpu_schedule) = flux_pipeline::<Wgpu>(&WgpuDevice::default(), Some(&gguf));
    assert_eq!(gpu_schedule, cpu_schedule, "DiCache schedule");
    assert_all_close(&gpu, &cpu, 1e-4);
}

/// Sparse VideoGen's attention on backend `B` (the generic path off the CPU): the reference's
/// HunyuanVideo attention fixture (video and text tokens, padded text) through a sparse layer,
/// with the fixture's sampled rows.
fn sparse_attention<B: Backend>(device: &B::Device) -> Vec<f32> {
    let fx = load_fixture("sparse_video/attention_hunyuan.safetensors");
    let geometry: Vec<i64> = fx["geometry"].iter::<i64>().collect();
    let tokens = VideoTokens {
        frames: geometry[0] as usize,
        frame_size: geometry[1] as usize,
        text: geometry[2] as usize,
    };
    let rows: Vec<usize> = fx["rows"].iter::<i64>().map(|r| r as usize).collect();
    let settings = SparseVideoSettings {
        sparsity: 0.6,
        rows: RowSampler::Given(Arc::new(move |_, _| rows.clone())),
        ..SparseVideoSettings::reference(SvgVariant::HunyuanVideo)
    };
    let plan = SparseVideoPlan::new(Arc::new(settings), tokens).unwrap();
    let real = tokens.video() + geometry[3] as usize;
    let call = plan.call(2, &[], &[real]);
    let h = Heads {
        q: Tensor::<B, 4>::from_data(fx["q"].clone(), device),
        k: Tensor::<B, 4>::from_data(fx["k"].clone(), device),
        v: Tensor::<B, 4>::from_data(fx["v"].clone(), device),
    };
    let out = call.attend(1, h, |_, _| unreachable!("layer 1 of 2 attends sparsely"));
    out.into_data().to_vec::<f32>().unwrap()
}

#[test]
fn sparse_video_attention_agrees_on_wgpu_and_cpu() {
    let cpu = sparse_attention::<Cpu>(&Default::default());
    let gpu = sparse_attention::<Wgpu>(&WgpuDevice::default());
    assert_all_close(&[cpu], &[gpu], 1e-4);
}
