//! Many samples in one generation: in a batch of different prompts, every sample gets the
//! latents (to 1e-5) and the DiCache schedule it gets alone, though the prompts' schedules
//! differ — on FLUX-mini, WAN-mini (both guidance passes joined in one call, and apart) and the
//! HunyuanVideo fixture pipeline (LLaMA prompts of different lengths, masked per sample).

use burn::tensor::Tensor;
use dicache_bench::mini;
use dicache_core::{CachePolicy, DiCacheConfig, Trace};
use dicache_tests::{Cpu, assert_close, fixture};
use dit_layers::gaussian_noise_rows;
use dit_pipeline::{GuidanceCalls, Output, Pipeline, Prompt, Request, Settings};
use models_flux::FluxPipeline;
use models_hunyuan::HunyuanVideoPipeline;
use models_wan::WanPipeline;
use vae::TileConfig;

/// A generation of `prompts` (sample `i` from seed `i`) in one batch with `policy`.
fn generate<P: Pipeline<Cpu, N>, const N: usize>(
    pipe: &P,
    prompts: &[&str],
    (settings, extra): (Settings, P::Extra),
    policy: &CachePolicy,
    first_seed: u64,
) -> Output<Cpu, N> {
    let shape = pipe
        .latent_shape(settings.width, settings.height, settings.frames)
        .unwrap();
    let seeds = (0..prompts.len() as u64).map(|i| first_seed + i);
    let request = Request {
        prompts: prompts.iter().map(|p| Prompt::new(*p)).collect(),
        settings,
        noise: Tensor::from_data(gaussian_noise_rows(&shape, seeds), &Default::default()),
        extra,
    };
    pipe.generate(&request, policy.clone(), &mut |_, _| {})
        .unwrap()
}

/// Whether each call computed, pass by pass.
fn schedule(trace: &Trace) -> Vec<(dicache_core::Pass, bool)> {
    trace.steps.iter().map(|e| (e.pass, e.computed)).collect()
}

/// Asserts that each sample of `batch` has the latents and cache schedule (and indicators, to
/// 1e-4 relative) of its run `alone`.
fn assert_each_as_alone<const N: usize>(batch: &Output<Cpu, N>, alone: &[Output<Cpu, N>]) {
    for (i, one) in alone.iter().enumerate() {
        let what = format!("sample {i}");
        let row = batch.latents.clone().narrow(0, i, 1);
        assert_close(row, &one.latents.to_data(), 1e-5, 1e-5, &what);
        let (got, want) = (&batch.traces[i], &one.traces[0]);
        assert_eq!(schedule(got), schedule(want), "{what}: schedule");
        for (g, w) in got.steps.iter().zip(&want.steps) {
            let close = match (g.accumulated, w.accumulated) {
                (Some(g), Some(w)) => (g - w).abs() <= 1e-4 * w.abs(),
                (g, w) => g == w,
            };
            assert!(close, "{what}, step {}: accumulated {g:?} vs {w:?}", w.step);
        }
    }
}

/// Runs `prompts` alone (sample `i` from seed `i`) and in one batch; every sample must equal
/// its run alone, and the schedules of the runs alone must not all be the same.
fn batch_equals_alone<P: Pipeline<Cpu, N>, const N: usize>(
    pipe: &P,
    prompts: &[&str],
    run: (Settings, P::Extra),
    policy: CachePolicy,
) -> Vec<Output<Cpu, N>> {
    let alone: Vec<_> = (0..prompts.len())
        .map(|i| generate(pipe, &prompts[i..i + 1], run.clone(), &policy, i as u64))
        .collect();
    let schedules: Vec<_> = alone.iter().map(|o| schedule(&o.traces[0])).collect();
    assert!(
        schedules.iter().any(|s| *s != schedules[0]),
        "the prompts should get different schedules here: {schedules:?}"
    );
    let batch = generate(pipe, prompts, run, &policy, 0);
    assert_eq!(batch.latents.dims()[0], prompts.len());
    assert_each_as_alone(&batch, &alone);
    alone
}

/// A mini model's settings: the defaults its folder carries.
fn mini_settings<P: Pipeline<Cpu, N>, const N: usize>(folder: &std::path::Path) -> Settings {
    dit_pipeline::PipelineFolder::open(folder)
        .unwrap()
        .defaults(P::DEFAULTS)
        .unwrap()
}

#[test]
fn flux_mini_batch_gives_each_sample_its_own_run() {
    let folder = mini::FLUX.dir();
    let pipe = FluxPipeline::<Cpu>::load(&folder, None, &Default::default()).unwrap();
    let settings = mini_settings::<FluxPipeline<Cpu>, 4>(&folder);
    let prompts = [
        "a large red circle on a blue background",
        "a small yellow square on a purple background",
        "a blue triangle on a red background",
    ];
    let policy = CachePolicy::DiCache(DiCacheConfig::flux());
    batch_equals_alone(&pipe, &prompts, (settings, ()), policy);
}

#[test]
fn wan_mini_batch_gives_each_sample_its_own_run_with_the_passes_joined_or_apart() {
    let folder = mini::WAN.dir();
    let pipe = WanPipeline::<Cpu>::load(&folder, None, &Default::default()).unwrap();
    let settings = mini_settings::<WanPipeline<Cpu>, 5>(&folder);
    let prompts = [
        "a large yellow square moving right on a purple background",
        "a small red circle moving left on a blue background",
    ];
    let policy = CachePolicy::DiCache(DiCacheConfig::wan());
    let joined = (settings, GuidanceCalls::Joined);
    let alone = batch_equals_alone(&pipe, &prompts, joined, policy.clone());
    let apart = generate(
        &pipe,
        &prompts,
        (settings, GuidanceCalls::Apart),
        &policy,
        0,
    );
    assert_each_as_alone(&apart, &alone);
}

#[test]
fn hunyuan_fixture_batch_gives_each_sample_its_own_run() {
    let folder = fixture("hunyuan_pipeline/model");
    let pipe = HunyuanVideoPipeline::<Cpu>::load(&folder, None, &Default::default()).unwrap();
    let settings = Settings {
        width: 48,
        height: 32,
        frames: 9,
        steps: 10,
        guidance: Some(1.5),
        max_sequence_length: 16,
    };
    // Prompts of different lengths: each sample's padding is masked out on its own.
    let prompts = [
        "A cat walks on the grass, realistic style.",
        "A red car drives along a road at night.",
        "Waves crash on a rocky shore under a storm.",
    ];
    // Between the prompts' accumulated errors at step 5 (0.38, 0.44, 0.41), so they part.
    let policy = CachePolicy::DiCache(DiCacheConfig {
        threshold: 0.42,
        ..DiCacheConfig::hunyuan_video()
    });
    batch_equals_alone(&pipe, &prompts, (settings, TileConfig::default()), policy);
}
