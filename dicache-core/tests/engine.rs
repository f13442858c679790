//! The cache engine driven by a synthetic model: a stack of fixed, deterministic blocks on
//! small tensors, whose block calls are counted.

use std::{cell::Cell, ops::Range};

use burn::tensor::{Tensor, TensorData};
use burn_flex::Flex;
use dicache_core::{
    CacheError, CachePolicy, CacheScope, CacheSession, CacheSettings, CacheableModel, CallTiming,
    Comparison, DiCacheConfig, FirstBlockConfig, Indicator, Pass, Row, UniformConfig, Warmup,
};

type B = Flex;

/// Blocks `h -> h * scale[k]` (or `h + scale[k] * tanh(h)` when `nonlinear`); identity embed
/// and head.
struct Synthetic {
    scales: Vec<f32>,
    nonlinear: bool,
    block_calls: Cell<usize>,
}

impl Synthetic {
    fn linear(scales: &[f32]) -> Self {
        Self {
            scales: scales.to_vec(),
            nonlinear: false,
            block_calls: Cell::new(0),
        }
    }

    fn nonlinear(scales: &[f32]) -> Self {
        Self {
            nonlinear: true,
            ..Self::linear(scales)
        }
    }

    /// Product of all block scales (the linear model maps `x` to `total * x`).
    fn total(&self) -> f32 {
        self.scales.iter().product()
    }

    fn take_calls(&self) -> usize {
        self.block_calls.replace(0)
    }
}

impl CacheableModel<B> for Synthetic {
    type Input = Tensor<B, 3>;
    type Context = ();
    type State = Tensor<B, 3>;
    type Output = Tensor<B, 3>;

    fn num_blocks(&self) -> usize {
        self.scales.len()
    }

    fn embed(&self, input: &Tensor<B, 3>) -> ((), Tensor<B, 3>) {
        ((), input.clone())
    }

    fn run_blocks(&self, _: &(), mut h: Tensor<B, 3>, blocks: Range<usize>) -> Tensor<B, 3> {
        for k in blocks {
            self.block_calls.set(self.block_calls.get() + 1);
            h = if self.nonlinear {
                h.clone() + h.tanh().mul_scalar(self.scales[k])
            } else {
                h.mul_scalar(self.scales[k])
            };
        }
        h
    }

    fn image_stream(&self, h: &Tensor<B, 3>) -> Tensor<B, 3> {
        h.clone()
    }

    fn head(&self, _: &(), image: Tensor<B, 3>) -> Tensor<B, 3> {
        image
    }
}

/// A fixed non-constant vector `v`, `[1, 4, 3]`.
fn base() -> Vec<f32> {
    (0..12)
        .map(|i| 0.5 + 0.25 * (i as f32) - if i % 3 == 0 { 2.0 } else { 0.0 })
        .collect()
}

fn scaled(c: f64) -> Tensor<B, 3> {
    let v: Vec<f32> = base().iter().map(|b| (*b as f64 * c) as f32).collect();
    Tensor::from_data(TensorData::new(v, [1, 4, 3]), &Default::default())
}

fn values(t: &Tensor<B, 3>) -> Vec<f32> {
    t.to_data().to_vec::<f32>().unwrap()
}

fn assert_close(actual: &Tensor<B, 3>, expected: &[f32], what: &str) {
    for (i, (a, e)) in values(actual).iter().zip(expected).enumerate() {
        assert!(
            (a - e).abs() <= 1e-5 + 1e-5 * e.abs(),
            "{what}[{i}]: {a} vs {e}"
        );
    }
}

/// `1.1^t`: every step changes the input (and so every probe output) by 10 % relative L1.
fn geometric(t: usize) -> f64 {
    1.1f64.powi(t as i32)
}

struct Run {
    computed: Vec<bool>,
    blocks: Vec<usize>,
    outputs: Vec<Tensor<B, 3>>,
    session: CacheSession<B>,
}

fn drive(model: &Synthetic, policy: CachePolicy, coeffs: &[f64]) -> Run {
    let mut session = CacheSession::new(policy, coeffs.len(), model.num_blocks()).unwrap();
    let mut blocks = Vec::new();
    let mut outputs = Vec::new();
    for (i, c) in coeffs.iter().enumerate() {
        outputs.push(
            session
                .forward(model, &scaled(*c), i, Pass::Single)
                .unwrap(),
        );
        blocks.push(model.take_calls());
    }
    let computed = session.traces()[0]
        .steps
        .iter()
        .map(|e| e.computed)
        .collect();
    Run {
        computed,
        blocks,
        outputs,
        session,
    }
}

const SCALES: [f32; 4] = [1.5, 0.8, 1.25, 0.9];

#[test]
fn none_computes_every_block_of_every_step() {
    let model = Synthetic::linear(&SCALES);
    let coeffs: Vec<f64> = (0..5).map(geometric).collect();
    let run = drive(&model, CachePolicy::None, &coeffs);
    assert_eq!(run.computed, vec![true; 5]);
    assert_eq!(run.blocks, vec![4; 5]);
    for (out, c) in run.outputs.iter().zip(&coeffs) {
        let want: Vec<f32> = base()
            .iter()
            .map(|b| (*b as f64 * c) as f32 * model.total())
            .collect();
        assert_close(out, &want, "none output");
    }
    let trace = &run.session.traces()[0];
    assert!(
        trace
            .steps
            .iter()
            .all(|e| e.indicator.is_none() && e.gamma.is_none())
    );
}

#[test]
fn dicache_flux_preset_schedule_residuals_and_gamma() {
    let model = Synthetic::linear(&SCALES);
    let coeffs: Vec<f64> = (0..10).map(geometric).collect();
    let cfg = DiCacheConfig {
        threshold: 0.25,
        ..DiCacheConfig::flux()
    };
    let run = drive(&model, CachePolicy::DiCache(cfg), &coeffs);

    // W = floor(0.2 * 10) = 2 with i <= W: steps 0..=2 warm up; the last step is forced.
    // Then each step adds 0.1: skip (0.1), skip (0.2), compute (0.3 >= 0.25), ...
    let want = [
        true, true, true, false, false, true, false, false, true, true,
    ];
    assert_eq!(run.computed, want);
    // Warm-up and computed calls run all 4 blocks (a computed call resumes from the probe);
    // skipped calls run the 1-block probe only.
    let blocks: Vec<usize> = want.iter().map(|c| if *c { 4 } else { 1 }).collect();
    assert_eq!(run.blocks, blocks);

    let trace = &run.session.traces()[0];
    for e in &trace.steps[..3] {
        assert_eq!((e.indicator, e.accumulated, e.gamma), (None, None, None));
    }
    let acc: Vec<f64> = trace.steps[3..9]
        .iter()
        .map(|e| e.accumulated.unwrap())
        .collect();
    for (a, want) in acc.iter().zip([0.1, 0.2, 0.3, 0.1, 0.2, 0.3]) {
        assert!((a - want).abs() < 1e-5, "accumulated {a} vs {want}");
    }
    for e in &trace.steps[3..9] {
        assert!((e.indicator.unwrap() - 0.1).abs() < 1e-5);
    }
    assert_eq!(
        trace.steps[9].indicator, None,
        "the forced last step does not probe-decide"
    );

    // Skipped step 3: residuals of steps 1 and 2 (r = (S - 1) c v, q = (s0 - 1) c v), so
    // gamma = (c3 - c1) / (c2 - c1) = 2.1, clipped to 1.5.
    let s = model.total() as f64;
    let c = &coeffs;
    assert!((trace.steps[3].gamma.unwrap() - 1.5).abs() < 1e-12);
    let approx = c[3] + (s - 1.0) * (c[1] + 1.5 * (c[2] - c[1]));
    let want: Vec<f32> = base().iter().map(|b| (*b as f64 * approx) as f32).collect();
    assert_close(&run.outputs[3], &want, "skipped step 3");
    // Skipped step 4 still uses the residuals of steps 1 and 2 (skips do not update them).
    let gamma4 = ((c[4] - c[1]) / (c[2] - c[1])).clamp(1.0, 1.5);
    assert!((trace.steps[4].gamma.unwrap() - gamma4).abs() < 1e-5);
}

#[test]
fn dicache_gamma_below_its_clip_extrapolates_the_trajectory() {
    let model = Synthetic::linear(&SCALES);
    // Ten steps: W = 2, so steps 0..=2 warm up and step 3 is the first skip.
    let coeffs: Vec<f64> = (0..10).map(geometric).collect();
    let cfg = DiCacheConfig {
        threshold: 0.25,
        gamma_max: 3.0,
        ..DiCacheConfig::flux()
    };
    let run = drive(&model, CachePolicy::DiCache(cfg), &coeffs);
    let c = &coeffs;
    let gamma = (c[3] - c[1]) / (c[2] - c[1]);
    assert!((gamma - 2.1).abs() < 1e-9);
    let got = run.session.traces()[0].steps[3].gamma.unwrap();
    assert!((got - gamma).abs() < 1e-5, "gamma {got} vs {gamma}");
    let s = model.total() as f64;
    let approx = c[3] + (s - 1.0) * (c[1] + gamma * (c[2] - c[1]));
    let want: Vec<f32> = base().iter().map(|b| (*b as f64 * approx) as f32).collect();
    assert_close(&run.outputs[3], &want, "aligned step 3");
}

#[test]
fn dicache_with_one_residual_reuses_it_unscaled() {
    // No warm-up: step 0 computes (nothing to compare with), step 1 skips with one residual.
    let model = Synthetic::linear(&SCALES);
    let coeffs: Vec<f64> = (0..3).map(geometric).collect();
    let cfg = DiCacheConfig {
        threshold: 0.15,
        warmup_ratio: 0.0,
        warmup: Warmup::Below,
        force_last_step: false,
        ..DiCacheConfig::flux()
    };
    let run = drive(&model, CachePolicy::DiCache(cfg), &coeffs);
    assert_eq!(run.computed, vec![true, false, true]);
    let s = model.total() as f64;
    let approx = coeffs[1] + (s - 1.0) * coeffs[0];
    let want: Vec<f32> = base().iter().map(|b| (*b as f64 * approx) as f32).collect();
    assert_close(&run.outputs[1], &want, "x + r");
    assert_eq!(run.session.traces()[0].steps[1].gamma, None);
}

#[test]
fn dicache_comparison_less_or_equal_skips_at_the_threshold() {
    // Constant input: every indicator is exactly 0, so `acc <= 0` skips and `acc < 0` never does.
    let model = Synthetic::linear(&SCALES);
    let coeffs = [1.0; 4];
    let base_cfg = DiCacheConfig {
        threshold: 0.0,
        warmup_ratio: 0.0,
        ..DiCacheConfig::hunyuan_video()
    };
    let le = drive(&model, CachePolicy::DiCache(base_cfg.clone()), &coeffs);
    assert_eq!(le.computed, vec![true, false, false, false]);
    let lt_cfg = DiCacheConfig {
        comparison: Comparison::Less,
        ..base_cfg
    };
    let lt = drive(&model, CachePolicy::DiCache(lt_cfg), &coeffs);
    assert_eq!(lt.computed, vec![true; 4]);
}

#[test]
fn dicache_delta_minus_cancels_input_change() {
    // A linear probe changes exactly as its input does, so delta_minus stays ~0 and every step
    // after the first is skipped.
    let model = Synthetic::linear(&SCALES);
    let coeffs: Vec<f64> = (0..6).map(geometric).collect();
    let cfg = DiCacheConfig {
        warmup: Warmup::Below,
        force_last_step: false,
        ..DiCacheConfig::flux_delta_minus()
    };
    assert_eq!(cfg.indicator, Indicator::DeltaMinus);
    let run = drive(&model, CachePolicy::DiCache(cfg), &coeffs);
    assert_eq!(run.computed, vec![true, false, false, false, false, false]);
    for e in &run.session.traces()[0].steps[1..] {
        assert!(e.indicator.unwrap() < 1e-5);
    }
}

#[test]
fn dicache_threshold_zero_is_bit_identical_to_none() {
    let model = Synthetic::nonlinear(&[0.7, -0.4, 0.9, 0.3, -0.6]);
    let coeffs: Vec<f64> = (0..8).map(|t| 1.0 + 0.37 * t as f64).collect();
    let reference = drive(&model, CachePolicy::None, &coeffs);
    for policy in [
        CachePolicy::DiCache(DiCacheConfig {
            threshold: 0.0,
            ..DiCacheConfig::flux()
        }),
        CachePolicy::DiCache(DiCacheConfig {
            threshold: 0.0,
            ..DiCacheConfig::wan()
        }),
        CachePolicy::FirstBlock(FirstBlockConfig {
            threshold: 0.0,
            probe_depth: 2,
        }),
        CachePolicy::Uniform(UniformConfig { interval: 1 }),
    ] {
        let run = drive(&model, policy.clone(), &coeffs);
        assert_eq!(run.computed, vec![true; 8], "{policy:?}");
        assert_eq!(run.blocks, vec![5; 8], "{policy:?}");
        for (a, b) in run.outputs.iter().zip(&reference.outputs) {
            assert_eq!(values(a), values(b), "{policy:?} differs from none");
        }
    }
}

#[test]
fn uniform_computes_every_nth_step_and_reuses_the_last_residual() {
    let model = Synthetic::linear(&SCALES);
    let coeffs: Vec<f64> = (0..7).map(geometric).collect();
    let run = drive(
        &model,
        CachePolicy::Uniform(UniformConfig { interval: 3 }),
        &coeffs,
    );
    assert_eq!(
        run.computed,
        vec![true, false, false, true, false, false, true]
    );
    assert_eq!(run.blocks, vec![4, 0, 0, 4, 0, 0, 4]);
    let s = model.total() as f64;
    for (i, last) in [(1, 0), (2, 0), (4, 3), (5, 3)] {
        let approx = coeffs[i] + (s - 1.0) * coeffs[last];
        let want: Vec<f32> = base().iter().map(|b| (*b as f64 * approx) as f32).collect();
        assert_close(&run.outputs[i], &want, "uniform skip");
    }
}

#[test]
fn first_block_cache_compares_with_the_last_computed_residual() {
    let model = Synthetic::linear(&SCALES);
    let coeffs: Vec<f64> = (0..6).map(geometric).collect();
    let policy = CachePolicy::FirstBlock(FirstBlockConfig {
        threshold: 0.15,
        probe_depth: 1,
    });
    let run = drive(&model, policy, &coeffs);
    // Step 1 changed 10 % since step 0 (skip); step 2 21 % since step 0 (compute); ...
    assert_eq!(run.computed, vec![true, false, true, false, true, false]);
    assert_eq!(run.blocks, vec![4, 1, 4, 1, 4, 1]);
    let trace = &run.session.traces()[0];
    assert_eq!(trace.steps[0].indicator, None);
    assert!((trace.steps[2].indicator.unwrap() - 0.21).abs() < 1e-5);
    let s = model.total() as f64;
    let approx = coeffs[3] + (s - 1.0) * coeffs[2];
    let want: Vec<f32> = base().iter().map(|b| (*b as f64 * approx) as f32).collect();
    assert_close(&run.outputs[3], &want, "fbcache skip");
}

#[test]
fn cfg_passes_keep_independent_state() {
    let model = Synthetic::linear(&SCALES);
    let cond: Vec<f64> = (0..10).map(geometric).collect();
    let uncond: Vec<f64> = (0..10).map(|t| 1.0 + 0.02 * t as f64).collect();
    let policy = CachePolicy::DiCache(DiCacheConfig {
        threshold: 0.25,
        ..DiCacheConfig::wan()
    });

    let mut both = CacheSession::new(policy.clone(), 10, 4).unwrap();
    let mut outs = (Vec::new(), Vec::new());
    for i in 0..10 {
        outs.0.push(
            both.forward(&model, &scaled(cond[i]), i, Pass::Cond)
                .unwrap(),
        );
        outs.1.push(
            both.forward(&model, &scaled(uncond[i]), i, Pass::Uncond)
                .unwrap(),
        );
    }
    let alone_cond = drive(&model, policy.clone(), &cond);
    let alone_uncond = drive(&model, policy, &uncond);

    let trace = &both.traces()[0];
    let by_pass = |p: Pass| -> Vec<bool> {
        trace
            .steps
            .iter()
            .filter(|e| e.pass == p)
            .map(|e| e.computed)
            .collect()
    };
    assert_eq!(by_pass(Pass::Cond), alone_cond.computed);
    assert_eq!(by_pass(Pass::Uncond), alone_uncond.computed);
    assert_ne!(
        alone_cond.computed, alone_uncond.computed,
        "the passes should differ here"
    );
    for (a, b) in outs.0.iter().zip(&alone_cond.outputs) {
        assert_eq!(values(a), values(b));
    }
    for (a, b) in outs.1.iter().zip(&alone_uncond.outputs) {
        assert_eq!(values(a), values(b));
    }
}

#[test]
fn bad_settings_are_errors_at_construction() {
    let dicache = |f: fn(&mut DiCacheConfig)| {
        let mut cfg = DiCacheConfig::flux();
        f(&mut cfg);
        CacheSession::<B>::new(CachePolicy::DiCache(cfg), 10, 4).err()
    };
    assert_eq!(
        dicache(|c| c.threshold = -0.1),
        Some(CacheError::Threshold(-0.1))
    );
    assert_eq!(
        dicache(|c| c.threshold = f64::NAN).map(|e| e.to_string().contains("threshold")),
        Some(true)
    );
    assert_eq!(
        dicache(|c| c.warmup_ratio = 1.5),
        Some(CacheError::WarmupRatio(1.5))
    );
    assert_eq!(
        dicache(|c| c.warmup_ratio = -0.1),
        Some(CacheError::WarmupRatio(-0.1))
    );
    assert_eq!(
        dicache(|c| c.probe_depth = 0),
        Some(CacheError::ProbeDepth {
            depth: 0,
            blocks: 4
        })
    );
    assert_eq!(
        dicache(|c| c.probe_depth = 4),
        Some(CacheError::ProbeDepth {
            depth: 4,
            blocks: 4
        })
    );
    assert_eq!(
        dicache(|c| c.gamma_max = 0.5),
        Some(CacheError::GammaMax(0.5))
    );
    let uniform = CachePolicy::Uniform(UniformConfig { interval: 0 });
    assert_eq!(
        CacheSession::<B>::new(uniform, 10, 4).err(),
        Some(CacheError::UniformInterval)
    );
    let fb = CachePolicy::FirstBlock(FirstBlockConfig {
        threshold: -1.0,
        probe_depth: 1,
    });
    assert_eq!(
        CacheSession::<B>::new(fb, 10, 4).err(),
        Some(CacheError::Threshold(-1.0))
    );
    assert_eq!(
        CacheSession::<B>::new(CachePolicy::None, 0, 4).err(),
        Some(CacheError::NoSteps)
    );
    assert_eq!(
        CacheSession::<B>::new(CachePolicy::None, 3, 0).err(),
        Some(CacheError::NoBlocks)
    );
    let msg = CacheError::ProbeDepth {
        depth: 4,
        blocks: 4,
    }
    .to_string();
    assert!(msg.contains("probe depth") && msg.contains('4'), "{msg}");
    assert!(matches!(
        CachePolicy::from_name("teacache", DiCacheConfig::flux()),
        Err(CacheError::UnknownPolicy(_))
    ));
}

#[test]
fn steps_outside_the_generation_are_errors() {
    let model = Synthetic::linear(&SCALES);
    let mut session = CacheSession::<B>::new(CachePolicy::None, 2, 4).unwrap();
    let err = session.forward(&model, &scaled(1.0), 2, Pass::Single).err();
    assert_eq!(
        err,
        Some(CacheError::StepOutOfRange {
            step: 2,
            num_steps: 2
        })
    );
}

#[test]
fn trace_json_has_one_entry_per_call_with_nulls_where_no_value_exists() {
    let model = Synthetic::linear(&SCALES);
    let coeffs: Vec<f64> = (0..10).map(geometric).collect();
    let cfg = DiCacheConfig {
        threshold: 0.25,
        ..DiCacheConfig::flux()
    };
    let run = drive(&model, CachePolicy::DiCache(cfg), &coeffs);
    let json: serde_json::Value = serde_json::from_str(&run.session.traces()[0].to_json()).unwrap();
    let steps = json["steps"].as_array().unwrap();
    assert_eq!(steps.len(), 10);
    assert_eq!(steps[0]["step"], 0);
    assert_eq!(steps[0]["pass"], "single");
    assert_eq!(steps[0]["computed"], true);
    assert!(steps[0]["indicator"].is_null() && steps[0]["gamma"].is_null());
    assert_eq!(steps[3]["computed"], false);
    assert!(steps[3]["indicator"].is_f64() && steps[3]["accumulated"].is_f64());
    assert!(steps[3]["gamma"].is_f64());
    assert!(steps[5]["gamma"].is_null(), "computed calls have no gamma");
    assert!(steps[3]["wall_ms"].as_f64().unwrap() >= 0.0);
    assert_eq!(
        json["timing"], "queued",
        "calls wait for the backend only when asked"
    );
    assert_eq!(json["policy"]["name"], "dicache");
    assert_eq!(json["summary"]["computed"], 6);
    assert_eq!(json["summary"]["skipped"], 4);
    assert_eq!(json["summary"]["blocks_run"], 6 * 4 + 4);
}

#[test]
fn call_timing_is_recorded_and_older_traces_read_as_synced() {
    let settings = CacheSettings {
        timing: CallTiming::Synced,
        ..CachePolicy::None.into()
    };
    let mut session = CacheSession::<B>::new(settings, 2, 4).unwrap();
    let model = Synthetic::linear(&SCALES);
    session
        .forward(&model, &scaled(1.0), 0, Pass::Single)
        .unwrap();
    assert_eq!(session.traces()[0].timing, CallTiming::Synced);
    let mut json: serde_json::Value = serde_json::from_str(&session.traces()[0].to_json()).unwrap();
    assert_eq!(json["timing"], "synced");
    json.as_object_mut().unwrap().remove("timing");
    let older: dicache_core::Trace = serde_json::from_value(json).unwrap();
    assert_eq!(older.timing, CallTiming::Synced);
}

/// The rows of `samples` at step `i`, one sample per row: `[samples, 4, 3]`.
fn batch_at(samples: &[Vec<f64>], i: usize) -> Tensor<B, 3> {
    Tensor::cat(samples.iter().map(|c| scaled(c[i])).collect(), 0)
}

/// Three input trajectories of ten steps that change at different rates.
fn three_samples() -> Vec<Vec<f64>> {
    vec![
        (0..10).map(geometric).collect(),
        (0..10).map(|t| 1.0 + 0.02 * t as f64).collect(),
        (0..10).map(|t| 1.3f64.powi(t)).collect(),
    ]
}

/// Asserts two traces record the same decisions and values (wall times aside).
fn assert_same_decisions(got: &dicache_core::Trace, want: &dicache_core::Trace, what: &str) {
    assert_eq!(got.steps.len(), want.steps.len(), "{what}: calls");
    let close = |a: Option<f64>, b: Option<f64>| match (a, b) {
        (Some(a), Some(b)) => (a - b).abs() <= 1e-6 * (1.0 + b.abs()),
        (a, b) => a == b,
    };
    for (g, w) in got.steps.iter().zip(&want.steps) {
        let at = format!("{what}, step {} {:?}", w.step, w.pass);
        assert_eq!(
            (g.step, g.pass, g.computed, g.blocks_run),
            (w.step, w.pass, w.computed, w.blocks_run),
            "{at}"
        );
        assert!(close(g.indicator, w.indicator), "{at}: indicator");
        assert!(close(g.accumulated, w.accumulated), "{at}: accumulated");
        assert!(close(g.gamma, w.gamma), "{at}: gamma");
    }
}

fn batch_policies() -> Vec<CachePolicy> {
    vec![
        CachePolicy::DiCache(DiCacheConfig {
            threshold: 0.25,
            ..DiCacheConfig::wan()
        }),
        CachePolicy::DiCache(DiCacheConfig {
            threshold: 0.3,
            ..DiCacheConfig::flux_delta_minus()
        }),
        CachePolicy::FirstBlock(FirstBlockConfig {
            threshold: 0.15,
            probe_depth: 1,
        }),
        CachePolicy::Uniform(UniformConfig { interval: 3 }),
    ]
}

#[test]
fn batched_samples_get_the_schedules_and_outputs_they_get_alone() {
    let samples = three_samples();
    for policy in batch_policies() {
        let model = Synthetic::nonlinear(&SCALES);
        let alone: Vec<Run> = samples
            .iter()
            .map(|c| drive(&model, policy.clone(), c))
            .collect();
        let mut session = CacheSession::new(policy.clone(), 10, 4).unwrap();
        for i in 0..10 {
            let out = session
                .forward(&model, &batch_at(&samples, i), i, Pass::Single)
                .unwrap();
            // The probe runs on the whole batch, the rest once for the samples that compute.
            let probe = policy.probe_depth().unwrap_or(0);
            let any = alone.iter().any(|run| run.computed[i]);
            let want_blocks = if any { 4 } else { probe };
            assert_eq!(
                model.take_calls(),
                want_blocks,
                "{policy:?}, step {i}: blocks"
            );
            for (s, run) in alone.iter().enumerate() {
                let what = format!("{} sample {s} step {i}", policy.name());
                assert_close(
                    &out.clone().narrow(0, s, 1),
                    &values(&run.outputs[i]),
                    &what,
                );
            }
        }
        for (s, run) in alone.iter().enumerate() {
            let what = format!("{} sample {s}", policy.name());
            assert_same_decisions(&session.traces()[s], &run.session.traces()[0], &what);
        }
        if !matches!(policy, CachePolicy::Uniform(_)) {
            let schedules: Vec<_> = alone.iter().map(|run| &run.computed).collect();
            assert!(
                schedules[0] != schedules[1] || schedules[1] != schedules[2],
                "{policy:?}: the samples' schedules should differ here"
            );
        }
    }
}

#[test]
fn batch_scope_decides_once_per_pass_on_the_batch_tensor() {
    let policy = batch_policies().remove(0);
    let settings = CacheSettings {
        scope: CacheScope::Batch,
        ..policy.clone().into()
    };
    let model = Synthetic::nonlinear(&SCALES);
    // Two copies of one sample measure what the sample measures alone.
    let twins = vec![three_samples().remove(0); 2];
    let alone = drive(&model, policy.clone(), &twins[0]);
    let mut session = CacheSession::new(settings.clone(), 10, 4).unwrap();
    for i in 0..10 {
        session
            .forward(&model, &batch_at(&twins, i), i, Pass::Single)
            .unwrap();
    }
    for trace in session.traces() {
        assert_same_decisions(trace, &alone.session.traces()[0], "twins");
        assert_eq!(trace.scope, CacheScope::Batch);
    }

    // Different samples share every decision; the indicator is the relative L1 change of the
    // probe output over the whole batch tensor.
    let samples = three_samples();
    let mut session = CacheSession::new(settings, 10, 4).unwrap();
    let probe = |i: usize| model.run_blocks(&(), batch_at(&samples, i), 0..1);
    for i in 0..10 {
        session
            .forward(&model, &batch_at(&samples, i), i, Pass::Single)
            .unwrap();
    }
    let traces = session.traces();
    for s in 1..3 {
        assert_same_decisions(&traces[s], &traces[0], "one decision per batch");
    }
    let first = traces[0]
        .steps
        .iter()
        .find(|e| e.indicator.is_some())
        .unwrap();
    let want = dicache_core::relative_l1(probe(first.step), probe(first.step - 1));
    let got = first.indicator.unwrap();
    assert!((got - want).abs() < 1e-6, "{got} vs {want}");
}

#[test]
fn both_passes_as_rows_of_one_call_equal_a_call_per_pass() {
    let policy = batch_policies().remove(0);
    let model = Synthetic::nonlinear(&SCALES);
    let samples = three_samples();
    let (cond, uncond) = (&samples[..2], &samples[1..]);
    let rows: Vec<Row> = [Pass::Cond, Pass::Uncond]
        .into_iter()
        .flat_map(|pass| Row::samples(pass, 2))
        .collect();
    let mut joint = CacheSession::new(policy.clone(), 10, 4).unwrap();
    let mut apart = CacheSession::new(policy, 10, 4).unwrap();
    for i in 0..10 {
        let both = Tensor::cat(vec![batch_at(cond, i), batch_at(uncond, i)], 0);
        let out = joint.forward_rows(&model, &both, i, &rows).unwrap();
        let c = apart
            .forward(&model, &batch_at(cond, i), i, Pass::Cond)
            .unwrap();
        let u = apart
            .forward(&model, &batch_at(uncond, i), i, Pass::Uncond)
            .unwrap();
        assert_close(&out, &values(&Tensor::cat(vec![c, u], 0)), "joint call");
    }
    for s in 0..2 {
        let mut want = apart.traces()[s].clone();
        want.steps.sort_by_key(|e| (e.step, e.pass != Pass::Cond));
        assert_same_decisions(&joint.traces()[s], &want, "joint call");
    }
}

#[test]
fn rows_must_name_each_batch_row_once() {
    let model = Synthetic::linear(&SCALES);
    let mut session = CacheSession::<B>::new(CachePolicy::None, 2, 4).unwrap();
    let two = Tensor::cat(vec![scaled(1.0), scaled(2.0)], 0);
    let one_row = Row::samples(Pass::Single, 1);
    let twice = [one_row[0], one_row[0]];
    for rows in [&one_row[..], &twice[..]] {
        let err = session.forward_rows(&model, &two, 0, rows).err();
        assert_eq!(
            err,
            Some(CacheError::Rows {
                rows: rows.len(),
                batch: 2
            })
        );
    }
}

#[test]
fn samples_at_different_steps_share_calls_and_each_get_its_run_alone() {
    let samples = three_samples();
    // Sample s joins at tick `start[s]` under key `key[s]`; all run ten steps.
    let (start, key) = ([0, 3, 5], [7, 8, 9]);
    for policy in batch_policies() {
        let model = Synthetic::nonlinear(&SCALES);
        let alone: Vec<Run> = samples
            .iter()
            .map(|c| drive(&model, policy.clone(), c))
            .collect();
        let mut session = CacheSession::new(policy.clone(), 1, 4).unwrap();
        let mut ended = 0;
        for tick in 0..15 {
            for s in 0..3 {
                if start[s] == tick {
                    session.admit(key[s], 10).unwrap();
                }
            }
            let active: Vec<usize> = (0..3)
                .filter(|&s| (start[s]..start[s] + 10).contains(&tick))
                .collect();
            let rows: Vec<Row> = active
                .iter()
                .map(|&s| Row {
                    pass: Pass::Single,
                    sample: key[s],
                })
                .collect();
            let steps: Vec<usize> = active.iter().map(|&s| tick - start[s]).collect();
            let input = Tensor::cat(
                active
                    .iter()
                    .zip(&steps)
                    .map(|(&s, &i)| scaled(samples[s][i]))
                    .collect(),
                0,
            );
            let out = session
                .forward_steps(&model, &input, &rows, &steps)
                .unwrap();
            for (r, (&s, &i)) in active.iter().zip(&steps).enumerate() {
                let what = format!("{} sample {s} step {i}", policy.name());
                let row = out.clone().narrow(0, r, 1);
                assert_close(&row, &values(&alone[s].outputs[i]), &what);
                if i == 9 {
                    let trace = session.release(key[s]).expect("a trace");
                    let want = &alone[s].session.traces()[0];
                    assert_same_decisions(&trace, want, &what);
                    ended += 1;
                }
            }
        }
        assert_eq!(ended, 3);
        assert!(
            session.traces().is_empty(),
            "released samples leave no trace behind"
        );
    }
}

#[test]
fn admitting_a_key_in_use_mixing_steps_in_one_decision_and_overrunning_are_errors() {
    let policy = batch_policies().remove(0);
    let model = Synthetic::nonlinear(&SCALES);
    let mut session = CacheSession::new(policy.clone(), 1, 4).unwrap();
    session.admit(0, 2).unwrap();
    assert_eq!(session.admit(0, 2), Err(CacheError::SampleInUse(0)));
    assert_eq!(session.admit(1, 0), Err(CacheError::NoSteps));
    let one = [Row {
        pass: Pass::Single,
        sample: 0,
    }];
    let err = session
        .forward_steps(&model, &scaled(1.0), &one, &[2])
        .unwrap_err();
    assert_eq!(
        err,
        CacheError::StepOutOfRange {
            step: 2,
            num_steps: 2
        }
    );
    let settings = CacheSettings {
        scope: CacheScope::Batch,
        ..policy.into()
    };
    let mut batch = CacheSession::new(settings, 10, 4).unwrap();
    let rows = Row::samples(Pass::Single, 2);
    let input = Tensor::cat(vec![scaled(1.0), scaled(1.1)], 0);
    let err = batch
        .forward_steps(&model, &input, &rows, &[0, 1])
        .unwrap_err();
    assert_eq!(err, CacheError::MixedSteps { first: 0, other: 1 });
    assert!(err.to_string().contains("cache scope sample"), "{err}");
}
