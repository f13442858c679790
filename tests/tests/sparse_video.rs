//! Sparse VideoGen against the reference (svg-project/Sparse-VideoGen, fixtures from
//! `fixtures/gen_sparse_video.py`): one self-attention through its profiling, placement and
//! banded attention; the tiny WAN and HunyuanVideo transformers denoised with SVG, alone and
//! with DiCache, head classes call by call; and the band attention's paths against dense
//! attention under the same mask.

use std::{collections::HashMap, sync::Arc};

use burn::tensor::{Bool, Distribution, Int, Tensor, TensorData};
use dicache_core::{
    CachePolicy, CacheSession, CacheableModel, DiCacheConfig, HeadClasses, Pass, Trace,
};
use dicache_tests::{Cpu, assert_close, assert_trace_matches, fixture, load_fixture, tensor};
use dit_layers::{
    BandMask, DenoisingStep, Heads, InputError, RowSampler, SparseVideoError, SparseVideoModel,
    SparseVideoPlan, SparseVideoSettings, SvgVariant, VideoTokens, attention, band_attention,
    band_attention_by_blocks, classify, sample_mse,
};
use models_hunyuan::{DiffusionTransformer as _, HunyuanVideoInput, HunyuanVideoTransformer};
use models_wan::{WanInput, WanTransformer};

type Fixtures = HashMap<String, TensorData>;

/// fp32 parity tolerance.
const ATOL: f32 = 1e-5;
const RTOL: f32 = 1e-4;

fn device() -> burn_flex::FlexDevice {
    Default::default()
}

fn ints(fx: &Fixtures, name: &str) -> Vec<i64> {
    fx[name].iter::<i64>().collect()
}

/// The settings of a fixture: the reference's for `variant` at the fixture's sparsity (stored
/// as f32; `sparsity` is the value the generator used), no dense layers, the fixture's rows.
fn settings(
    fx: &Fixtures,
    variant: SvgVariant,
    sparsity: f64,
    rows: RowSampler,
) -> SparseVideoSettings {
    let stored = fx["sparsity"].iter::<f64>().next().unwrap();
    assert!(
        (stored - sparsity).abs() < 1e-6,
        "fixture sparsity {stored}"
    );
    SparseVideoSettings {
        sparsity,
        dense_layers: 0.0,
        rows,
        ..SparseVideoSettings::reference(variant)
    }
}

/// The rows table `rows [steps, layers, r]` as a sampler of (step, layer).
fn rows_table(fx: &Fixtures) -> RowSampler {
    let shape = fx["rows"].shape.clone();
    let (layers, count) = (shape[1], shape[2]);
    let table = ints(fx, "rows");
    RowSampler::Given(Arc::new(move |step, layer| {
        let at = (step * layers + layer) * count;
        table[at..at + count].iter().map(|&r| r as usize).collect()
    }))
}

fn attention_case(name: &str, variant: SvgVariant, sparsity: f64) {
    let fx = load_fixture(&format!("sparse_video/{name}.safetensors"));
    let d = device();
    let geometry = ints(&fx, "geometry");
    let tokens = VideoTokens {
        frames: geometry[0] as usize,
        frame_size: geometry[1] as usize,
        text: geometry[2] as usize,
    };
    let real = tokens.video() + geometry[3] as usize;
    let rows: Vec<usize> = ints(&fx, "rows").iter().map(|&r| r as usize).collect();
    let h = Heads {
        q: tensor::<Cpu, 4>(&fx, "q", &d),
        k: tensor::<Cpu, 4>(&fx, "k", &d),
        v: tensor::<Cpu, 4>(&fx, "v", &d),
    };
    let heads = h.q.dims()[1];

    let errors = sample_mse(&h.q, &h.k, &h.v, &rows, variant, tokens);
    assert_close(
        errors.clone(),
        &fx["errors"],
        1e-7,
        1e-3,
        "profiling errors",
    );
    let errors: Vec<f32> = errors.into_data().to_vec().unwrap();
    let classes: Vec<i64> = classify(&errors, 1, heads)[0]
        .iter()
        .map(|c| *c as i64)
        .collect();
    assert_eq!(classes, ints(&fx, "classes"), "head classes");

    let fixed = rows.clone();
    let given = RowSampler::Given(Arc::new(move |_, _| fixed.clone()));
    let plan =
        SparseVideoPlan::new(Arc::new(settings(&fx, variant, sparsity, given)), tokens).unwrap();
    let call = plan.call(2, &[], &[real]);
    let out = call.attend(1, h, |_, _| unreachable!("layer 1 of 2 attends sparsely"));
    assert_close(out, &fx["out"], ATOL, RTOL, "sparse attention output");
    let counted = call.head_classes()[0];
    let temporal = classes.iter().filter(|&&c| c == 1).count();
    assert_eq!(
        counted,
        HeadClasses {
            dense: 0,
            spatial: heads - temporal,
            temporal
        }
    );
}

#[test]
fn wan_attention_matches_reference() {
    attention_case("attention_wan", SvgVariant::Wan, 0.3);
}

#[test]
fn hunyuan_attention_matches_reference() {
    attention_case("attention_hunyuan", SvgVariant::HunyuanVideo, 0.6);
}

/// Each trace entry's head classes against the fixture's per-call classes
/// `[calls, layers, heads]` (-1: dense or not run), counting the layers the call ran.
fn assert_classes_match(trace: &Trace, fx: &Fixtures, run: &str) {
    let shape = fx[&format!("{run}.classes")].shape.clone();
    let (layers, heads) = (shape[1], shape[2]);
    let classes = ints(fx, &format!("{run}.classes"));
    assert_eq!(trace.steps.len(), shape[0], "{run}: calls");
    for (call, entry) in trace.steps.iter().enumerate() {
        let ran = &classes[call * layers * heads..(call * layers + entry.blocks_run) * heads];
        let count = |c: i64| ran.iter().filter(|&&x| x == c).count();
        let want = HeadClasses {
            dense: count(-1),
            spatial: count(0),
            temporal: count(1),
        };
        assert_eq!(
            entry.heads,
            Some(want),
            "{run}: head classes of call {call}"
        );
    }
}

/// A denoising run against the fixture's run `run`: the head classes of every call, the cache
/// decisions where the run cached, and the final latents. Ten steps of 1280 video tokens: this
/// port's dense loop on the same inputs is 1.4e-5 (at most; 2.7e-6 on average) from diffusers'
/// dense loop, so the latents are held to 1e-4.
fn assert_run_matches(trace: &Trace, latents: Tensor<Cpu, 5>, fx: &Fixtures, run: &str) {
    assert_classes_match(trace, fx, run);
    if fx.contains_key(&format!("{run}.trace.computed")) {
        let prefix = format!("{run}.");
        let run_trace: Fixtures = fx
            .iter()
            .filter_map(|(k, v)| k.strip_prefix(&prefix).map(|k| (k.to_string(), v.clone())))
            .collect();
        assert_trace_matches(trace, &run_trace);
    }
    assert_close(
        latents,
        &fx[&format!("{run}.latents")],
        1e-4,
        1e-4,
        "latents",
    );
}

/// The place of step `i` of `steps`.
fn at(i: usize, steps: usize) -> Vec<DenoisingStep> {
    vec![DenoisingStep { step: i, of: steps }]
}

fn wan_run(fx: &Fixtures, run: &str, policy: CachePolicy) {
    let d = device();
    let mut model = WanTransformer::<Cpu>::load_diffusers(&fixture("wan/t2v"), &d).unwrap();
    model
        .set_sparse_attention(Some(settings(fx, SvgVariant::Wan, 0.3, rows_table(fx))))
        .unwrap();
    let values = |name: &str| -> Vec<f32> { fx[name].iter::<f32>().collect() };
    let sigmas = values("sigmas");
    let steps = sigmas.len() - 1;
    let guidance = values("guidance")[0];
    let mut session = CacheSession::new(policy, steps, model.num_blocks()).unwrap();
    let cond: Tensor<Cpu, 3> = tensor(fx, "cond", &d);
    let uncond: Tensor<Cpu, 3> = tensor(fx, "uncond", &d);
    let mut x: Tensor<Cpu, 5> = tensor(fx, "noise", &d);
    for (i, pair) in sigmas.windows(2).enumerate() {
        let call = |text: &Tensor<Cpu, 3>| {
            let input = WanInput {
                latents: x.clone(),
                timestep: Tensor::from_data(TensorData::new(vec![pair[0] * 1000.0], [1]), &d),
                encoder_hidden_states: text.clone(),
            };
            model.check_input(input).unwrap().at_steps(at(i, steps))
        };
        let v_c = session
            .forward(&model, &call(&cond), i, Pass::Cond)
            .unwrap();
        let v_u = session
            .forward(&model, &call(&uncond), i, Pass::Uncond)
            .unwrap();
        let v = v_u.clone() + (v_c - v_u).mul_scalar(guidance);
        x = x + v.mul_scalar(pair[1] - pair[0]);
    }
    assert_run_matches(&session.into_traces()[0], x, fx, run);
}

#[test]
fn wan_denoising_with_svg_matches_reference() {
    let fx = load_fixture("sparse_video/wan.safetensors");
    wan_run(&fx, "svg", CachePolicy::None);
}

#[test]
fn wan_denoising_with_svg_and_dicache_matches_reference() {
    let fx = load_fixture("sparse_video/wan.safetensors");
    let threshold = fx["svg_dicache.threshold"].iter::<f64>().next().unwrap();
    let policy = CachePolicy::DiCache(DiCacheConfig {
        threshold,
        ..DiCacheConfig::wan()
    });
    wan_run(&fx, "svg_dicache", policy);
}

fn hunyuan_run(fx: &Fixtures, run: &str, policy: CachePolicy) {
    let d = device();
    let mut model =
        HunyuanVideoTransformer::<Cpu>::load_diffusers(&fixture("hunyuan/tiny"), &d).unwrap();
    model
        .set_sparse_attention(Some(settings(
            fx,
            SvgVariant::HunyuanVideo,
            0.25,
            rows_table(fx),
        )))
        .unwrap();
    let values = |name: &str| -> Vec<f32> { fx[name].iter::<f32>().collect() };
    let sigmas = values("sigmas");
    let steps = sigmas.len() - 1;
    let mut session = CacheSession::new(policy, steps, model.num_blocks()).unwrap();
    let mut x: Tensor<Cpu, 5> = tensor(fx, "noise", &d);
    for (i, pair) in sigmas.windows(2).enumerate() {
        let input = HunyuanVideoInput {
            latents: x.clone(),
            timestep: Tensor::from_data(TensorData::new(vec![pair[0] * 1000.0], [1]), &d),
            encoder_hidden_states: tensor(fx, "input.encoder_hidden_states", &d),
            encoder_attention_mask: Tensor::<Cpu, 2, Int>::from_data(
                fx["input.encoder_attention_mask"].clone(),
                &d,
            ),
            pooled_projections: tensor(fx, "input.pooled_projections", &d),
            guidance: Some(tensor(fx, "input.guidance", &d)),
        };
        let input = model.check_input(input).unwrap().at_steps(at(i, steps));
        let v = session.forward(&model, &input, i, Pass::Single).unwrap();
        x = x + v.mul_scalar(pair[1] - pair[0]);
    }
    assert_run_matches(&session.into_traces()[0], x, fx, run);
}

#[test]
fn hunyuan_denoising_with_svg_matches_reference() {
    let fx = load_fixture("sparse_video/hunyuan.safetensors");
    hunyuan_run(&fx, "svg", CachePolicy::None);
}

#[test]
fn hunyuan_denoising_with_svg_and_dicache_matches_reference() {
    let fx = load_fixture("sparse_video/hunyuan.safetensors");
    let threshold = fx["svg_dicache.threshold"].iter::<f64>().next().unwrap();
    let policy = CachePolicy::DiCache(DiCacheConfig {
        threshold,
        ..DiCacheConfig::hunyuan_video()
    });
    hunyuan_run(&fx, "svg_dicache", policy);
}

/// Dense attention under `mask` materialised element by element.
fn masked_dense(h: &Heads<Cpu>, mask: &BandMask) -> Tensor<Cpu, 4> {
    let [batch, heads, len, _] = h.q.dims();
    let hidden: Vec<bool> = (0..len)
        .flat_map(|q| (0..len).map(move |k| !mask.allowed(q, k)))
        .collect();
    let hidden = Tensor::<Cpu, 2, Bool>::from_data(TensorData::new(hidden, [len, len]), &device())
        .reshape([1, 1, len, len])
        .expand([batch, heads, len, len]);
    attention(h.q.clone(), h.k.clone(), h.v.clone(), Some(hidden))
}

#[test]
fn band_attention_paths_equal_dense_attention_under_the_mask() {
    let d = device();
    let cases = [
        (
            SvgVariant::Wan,
            0.3,
            VideoTokens {
                frames: 5,
                frame_size: 200,
                text: 0,
            },
            1000,
        ),
        (
            SvgVariant::HunyuanVideo,
            0.5,
            VideoTokens {
                frames: 4,
                frame_size: 160,
                text: 40,
            },
            665,
        ),
    ];
    for (variant, sparsity, tokens, real) in cases {
        let settings = SparseVideoSettings {
            sparsity,
            ..SparseVideoSettings::reference(variant)
        };
        let mask = BandMask::new(&settings, tokens, real).unwrap();
        assert!(
            mask.density() < 0.8,
            "{variant:?}: density {}",
            mask.density()
        );
        let random = || {
            Tensor::<Cpu, 4>::random([2, 3, tokens.len(), 16], Distribution::Normal(0.0, 1.0), &d)
        };
        let h = Heads {
            q: random(),
            k: random(),
            v: random(),
        };
        let want = masked_dense(&h, &mask).into_data();
        let kernel = band_attention(h.q.clone(), h.k.clone(), h.v.clone(), &mask);
        assert_close(kernel, &want, 1e-5, 1e-4, "CPU kernel");
        let blocks = band_attention_by_blocks(h.q.clone(), h.k.clone(), h.v.clone(), &mask);
        assert_close(blocks, &want, 1e-5, 1e-4, "blocks");
    }
}

#[test]
fn a_sparsity_that_leaves_no_band_is_an_input_error() {
    let d = device();
    let mut model =
        HunyuanVideoTransformer::<Cpu>::load_diffusers(&fixture("hunyuan/tiny"), &d).unwrap();
    let settings = SparseVideoSettings {
        sparsity: 0.25,
        ..SparseVideoSettings::reference(SvgVariant::HunyuanVideo)
    };
    model.set_sparse_attention(Some(settings)).unwrap();
    // 2 frames of 16 tokens: a band of 0.25 of the map is far narrower than a 128-token block.
    let input = HunyuanVideoInput {
        latents: Tensor::zeros([1, 4, 2, 8, 8], &d),
        timestep: Tensor::zeros([1], &d),
        encoder_hidden_states: Tensor::zeros([1, 6, 32], &d),
        encoder_attention_mask: Tensor::ones([1, 6], &d),
        pooled_projections: Tensor::zeros([1, 16], &d),
        guidance: Some(Tensor::zeros([1], &d)),
    };
    let err = model.check_input(input).unwrap_err();
    assert!(
        matches!(err, InputError::Sparse(SparseVideoError::NoBand { .. })),
        "{err}"
    );
    assert!(
        err.to_string()
            .contains("sparsity 0.25 leaves no attention band on 2 latent frames of 16 tokens with 6 text tokens"),
        "{err}"
    );
}

#[test]
fn settings_out_of_range_or_of_another_model_are_errors() {
    let d = device();
    let mut model = WanTransformer::<Cpu>::load_diffusers(&fixture("wan/t2v"), &d).unwrap();
    let hunyuan = SparseVideoSettings::reference(SvgVariant::HunyuanVideo);
    let err = model.set_sparse_attention(Some(hunyuan)).unwrap_err();
    assert!(err.to_string().contains("variant HunyuanVideo"), "{err}");
    for (sparsity, warmup) in [(0.0, 0.2), (1.5, 0.2), (f64::NAN, 0.2), (0.3, -0.1)] {
        let bad = SparseVideoSettings {
            sparsity,
            warmup_steps: warmup,
            ..SparseVideoSettings::reference(SvgVariant::Wan)
        };
        let err = model.set_sparse_attention(Some(bad)).unwrap_err();
        assert!(err.to_string().contains("expected a number in"), "{err}");
    }
    assert!(
        model.sparse.is_none(),
        "a refused setting leaves the model dense"
    );
}
