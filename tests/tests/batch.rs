//! Many samples in one generation: in a batch of different prompts, every sample gets the
//! latents (to 1e-5) and the DiCache schedule it gets alone, though the prompts' schedules
//! differ — on FLUX-mini, WAN-mini (both guidance passes joined in one call, and apart) and the
//! HunyuanVideo fixture pipeline (LLaMA prompts of different lengths, masked per sample); and
//! jobs that join one denoising loop at different steps, with different step counts, beside a
//! job cancelled midway, each get the latents and schedule they get alone.

use burn::tensor::Tensor;
use dicache_bench::mini;
use dicache_core::{CachePolicy, DiCacheConfig, Trace};
use dicache_tests::{Cpu, assert_close, fixture};
use dit_layers::gaussian_noise_rows;
use dit_pipeline::{Denoise, GuidanceCalls, Output, Pipeline, Prompt, Request, Settings};
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

/// Prompts FLUX-mini gives different DiCache schedules.
const FLUX_PROMPTS: [&str; 3] = [
    "a large red circle on a blue background",
    "a small yellow square on a purple background",
    "a blue triangle on a red background",
];

/// Prompts WAN-mini gives different DiCache schedules.
const WAN_PROMPTS: [&str; 2] = [
    "a large yellow square moving right on a purple background",
    "a small red circle moving left on a blue background",
];

/// Prompts of different lengths for the HunyuanVideo fixture: each sample's padding is masked
/// out on its own.
const HUNYUAN_PROMPTS: [&str; 3] = [
    "A cat walks on the grass, realistic style.",
    "A red car drives along a road at night.",
    "Waves crash on a rocky shore under a storm.",
];

fn flux_mini() -> (FluxPipeline<Cpu>, Settings) {
    let folder = mini::FLUX.dir();
    let pipe = FluxPipeline::<Cpu>::load(&folder, None, &Default::default()).unwrap();
    (pipe, mini_settings::<FluxPipeline<Cpu>, 4>(&folder))
}

fn wan_mini() -> (WanPipeline<Cpu>, Settings) {
    let folder = mini::WAN.dir();
    let pipe = WanPipeline::<Cpu>::load(&folder, None, &Default::default()).unwrap();
    (pipe, mini_settings::<WanPipeline<Cpu>, 5>(&folder))
}

/// The HunyuanVideo fixture pipeline, small settings, and a DiCache threshold between its
/// prompts' accumulated errors at step 5 (0.38, 0.44, 0.41), so their schedules part.
fn hunyuan_fixture() -> (HunyuanVideoPipeline<Cpu>, Settings, CachePolicy) {
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
    let policy = CachePolicy::DiCache(DiCacheConfig {
        threshold: 0.42,
        ..DiCacheConfig::hunyuan_video()
    });
    (pipe, settings, policy)
}

#[test]
fn flux_mini_batch_gives_each_sample_its_own_run() {
    let (pipe, settings) = flux_mini();
    let policy = CachePolicy::DiCache(DiCacheConfig::flux());
    batch_equals_alone(&pipe, &FLUX_PROMPTS, (settings, ()), policy);
}

#[test]
fn wan_mini_batch_gives_each_sample_its_own_run_with_the_passes_joined_or_apart() {
    let (pipe, settings) = wan_mini();
    let policy = CachePolicy::DiCache(DiCacheConfig::wan());
    let joined = (settings, GuidanceCalls::Joined);
    let alone = batch_equals_alone(&pipe, &WAN_PROMPTS, joined, policy.clone());
    let apart = (settings, GuidanceCalls::Apart);
    let apart = generate(&pipe, &WAN_PROMPTS, apart, &policy, 0);
    assert_each_as_alone(&apart, &alone);
}

#[test]
fn hunyuan_fixture_batch_gives_each_sample_its_own_run() {
    let (pipe, settings, policy) = hunyuan_fixture();
    let run = (settings, TileConfig::default());
    batch_equals_alone(&pipe, &HUNYUAN_PROMPTS, run, policy);
}

/// Runs `prompts` (sample `i` from seed `i`, with `steps[i]` steps) as jobs of one denoising
/// loop, job `i` joining after `joins[i]` steps of the loop, and a decoy job joining after one
/// step and cancelled two steps later; each job must end with the latents and cache schedule
/// of its run alone.
fn staggered_equals_alone<P: Pipeline<Cpu, N>, const N: usize>(
    pipe: &P,
    prompts: &[&str],
    (settings, extra): (Settings, P::Extra),
    policy: CachePolicy,
    (joins, steps): (&[usize], &[usize]),
) {
    let at = |i: usize| Settings {
        steps: steps[i],
        ..settings
    };
    let alone: Vec<_> = (0..prompts.len())
        .map(|i| {
            generate(
                pipe,
                &prompts[i..i + 1],
                (at(i), extra.clone()),
                &policy,
                i as u64,
            )
        })
        .collect();
    let request = |i: usize, text: &str, seed: u64| {
        let s = at(i);
        let shape = pipe.latent_shape(s.width, s.height, s.frames).unwrap();
        let noise = gaussian_noise_rows(&shape, [seed]);
        Request {
            prompts: vec![Prompt::new(text)],
            settings: s,
            noise: Tensor::from_data(noise, &Default::default()),
            extra: extra.clone(),
        }
    };
    let mut denoiser = pipe
        .denoiser(&dicache_core::CacheSettings::from(policy))
        .unwrap();
    let mut ids = vec![None; prompts.len()];
    let mut finished = std::collections::HashMap::new();
    let mut decoy = None;
    let mut widest = 0;
    for step in 0.. {
        for (i, prompt) in prompts.iter().enumerate() {
            if joins[i] == step {
                ids[i] = Some(
                    denoiser
                        .admit(pipe.prepare(&request(i, prompt, i as u64)).unwrap())
                        .unwrap(),
                );
            }
        }
        match step {
            1 => {
                decoy = Some(
                    denoiser
                        .admit(pipe.prepare(&request(0, "a decoy", 99)).unwrap())
                        .unwrap(),
                )
            }
            3 => assert!(denoiser.cancel(decoy.unwrap())),
            _ => {}
        }
        widest = widest.max(denoiser.samples());
        if denoiser.samples() == 0 && ids.iter().all(Option::is_some) {
            break;
        }
        for (id, ended) in denoiser.step().unwrap() {
            finished.insert(id, ended.unwrap());
        }
    }
    assert!(
        widest >= 3,
        "the jobs should overlap: at most {widest} samples at once"
    );
    for (i, one) in alone.iter().enumerate() {
        let what = format!("job {i} (joined after {} steps)", joins[i]);
        let got = &finished[&ids[i].unwrap()];
        assert_close(
            got.latents.clone(),
            &one.latents.to_data(),
            1e-5,
            1e-5,
            &what,
        );
        assert_eq!(
            schedule(&got.traces[0]),
            schedule(&one.traces[0]),
            "{what}: schedule"
        );
    }
}

#[test]
fn flux_mini_jobs_joining_at_different_steps_each_get_their_own_run() {
    let (pipe, settings) = flux_mini();
    let policy = CachePolicy::DiCache(DiCacheConfig::flux());
    let steps = [settings.steps, settings.steps - 4, settings.steps + 2];
    let joins = (&[0, 2, 5][..], &steps[..]);
    staggered_equals_alone(&pipe, &FLUX_PROMPTS, (settings, ()), policy, joins);
}

#[test]
fn wan_mini_jobs_joining_at_different_steps_each_get_their_own_run() {
    let (pipe, settings) = wan_mini();
    let policy = CachePolicy::DiCache(DiCacheConfig::wan());
    let steps = [settings.steps, settings.steps - 2];
    let run = (settings, GuidanceCalls::Joined);
    staggered_equals_alone(&pipe, &WAN_PROMPTS, run, policy, (&[0, 2], &steps));
}

#[test]
fn hunyuan_fixture_jobs_joining_at_different_steps_each_get_their_own_run() {
    let (pipe, settings, policy) = hunyuan_fixture();
    let prompts = [HUNYUAN_PROMPTS[0], HUNYUAN_PROMPTS[2]];
    let run = (settings, TileConfig::default());
    staggered_equals_alone(&pipe, &prompts, run, policy, (&[0, 2], &[10, 8]));
}
