//! FLUX.1 transformer against diffusers (fixtures from `fixtures/gen_flux.py`): RoPE table,
//! embeddings, every block and the whole forward from both checkpoint layouts, DiCache runs (one
//! sample; a batch deciding per sample and, as the reference, per batch),
//! and the errors of damaged or mismatched checkpoints and inputs.

use std::{collections::HashMap, fs, path::Path};

use burn::{
    module::Module,
    tensor::{Tensor, TensorData},
};
use dicache_core::{
    CachePolicy, CacheScope, CacheSession, CacheSettings, CacheableModel, DiCacheConfig, Pass,
    Trace,
};
use dicache_tests::{
    Cpu, Scratch, assert_close, assert_missing_shard_named, assert_reshaped_tensor_named,
    assert_trace_matches, assert_truncated_file_named, assert_truncated_shard_named, fixture,
    load_fixture, quantized_values, tensor,
};
use dit_layers::Weights;
use models_flux::{
    DiffusionTransformer, FluxConfig, FluxInput, FluxTransformer, FromParams, InputError, Layout,
    TransformerConfig,
};

type Fixtures = HashMap<String, TensorData>;

/// fp32 parity tolerance.
const ATOL: f32 = 1e-5;
const RTOL: f32 = 1e-4;

/// The tiny model's rotary split (its head size is 16, so it cannot be inferred).
fn tiny_axes() -> Option<Vec<usize>> {
    Some(vec![4, 6, 6])
}

fn device() -> burn_flex::FlexDevice {
    Default::default()
}

fn dev_diffusers() -> FluxTransformer<Cpu> {
    FluxTransformer::load_diffusers(&fixture("flux/dev"), &device()).expect("load diffusers folder")
}

fn dev_bfl() -> FluxTransformer<Cpu> {
    FluxTransformer::load_original(&fixture("flux/dev-bfl.safetensors"), tiny_axes(), &device())
        .expect("load BFL file")
}

/// The inputs stored under `input.*`, the first `batch` rows of the batched ones.
fn inputs(fx: &Fixtures, guidance: bool, batch: usize) -> FluxInput<Cpu> {
    let d = device();
    let rows3 = |name| tensor::<Cpu, 3>(fx, name, &d).narrow(0, 0, batch);
    let rows2 = |name| tensor::<Cpu, 2>(fx, name, &d).narrow(0, 0, batch);
    let rows1 = |name| tensor::<Cpu, 1>(fx, name, &d).narrow(0, 0, batch);
    FluxInput {
        latents: rows3("input.hidden_states"),
        encoder_hidden_states: rows3("input.encoder_hidden_states"),
        pooled_projections: rows2("input.pooled_projections"),
        timestep: rows1("input.timestep"),
        guidance: guidance.then(|| rows1("input.guidance")),
        img_ids: tensor(fx, "input.img_ids", &d),
        txt_ids: tensor(fx, "input.txt_ids", &d),
    }
}

/// Embeddings, each block's output (run one block at a time) and the output.
fn check_against_reference(model: &FluxTransformer<Cpu>, what: &str) {
    let fx = load_fixture("flux/forward.safetensors");
    let input = model
        .check_input(inputs(&fx, true, 2))
        .expect("valid input");
    let (ctx, mut state) = model.embed(&input);
    assert_close(
        ctx.temb.clone(),
        &fx["embed.temb"],
        ATOL,
        RTOL,
        &format!("{what} temb"),
    );
    assert_close(
        state.image.clone(),
        &fx["embed.img"],
        ATOL,
        RTOL,
        &format!("{what} x_embedder"),
    );
    assert_close(
        state.text.clone(),
        &fx["embed.txt"],
        ATOL,
        RTOL,
        &format!("{what} context_embedder"),
    );
    let doubles = model.config().num_layers;
    for i in 0..model.num_blocks() {
        state = model.run_blocks(&ctx, state, i..i + 1);
        let name = if i < doubles {
            format!("double.{i}")
        } else {
            format!("single.{}", i - doubles)
        };
        assert_close(
            state.image.clone(),
            &fx[&format!("{name}.img")],
            ATOL,
            RTOL,
            &format!("{what} {name} img"),
        );
        assert_close(
            state.text.clone(),
            &fx[&format!("{name}.txt")],
            ATOL,
            RTOL,
            &format!("{what} {name} txt"),
        );
    }
    let out = model.head(&ctx, state.image);
    assert_close(out, &fx["output"], ATOL, RTOL, &format!("{what} head"));
    assert_close(
        model.forward(&input),
        &fx["output"],
        ATOL,
        RTOL,
        &format!("{what} forward"),
    );
}

#[test]
fn rope_table_matches_diffusers() {
    let fx = load_fixture("flux/forward.safetensors");
    let model = dev_diffusers();
    let input = model.check_input(inputs(&fx, true, 2)).unwrap();
    let table = input.prepared().rope.clone();
    assert_close(table.cos, &fx["rope.cos"], 1e-6, 1e-6, "rope cos");
    assert_close(table.sin, &fx["rope.sin"], 1e-6, 1e-6, "rope sin");
}

#[test]
fn diffusers_folder_matches_reference() {
    check_against_reference(&dev_diffusers(), "diffusers");
}

#[test]
fn bfl_file_matches_reference() {
    check_against_reference(&dev_bfl(), "bfl");
}

/// The tolerance against fixtures computed by a later torch run: the pinned environment
/// reproduces this model's f32 `forward.safetensors` output only to 2.6e-5 (same weights and
/// inputs), which is the reference's own noise.
const RERUN_ATOL: f32 = 3e-5;

/// city96-style GGUF files of the BFL checkpoint (Q8_0, Q4_1; `fixtures/gen_gguf.py`) against
/// diffusers running the weights the `gguf` package decodes from them.
#[test]
fn gguf_files_match_diffusers_on_their_decoded_weights() {
    let fx = load_fixture("flux/forward.safetensors");
    let dense = dev_bfl().num_params();
    for kind in ["Q8_0", "Q4_1"] {
        let file = fixture(&format!("gguf/flux-{kind}.gguf"));
        let model = FluxTransformer::<Cpu>::load_original(&file, tiny_axes(), &device())
            .unwrap_or_else(|e| panic!("{kind}: {e}"));
        // Every quantized tensor (fused qkv rows, swapped modulation halves included) stays
        // quantized in memory rather than becoming a parameter tensor.
        assert!(quantized_values(&file) > dense / 2, "{kind}");
        assert_eq!(
            model.num_params() + quantized_values(&file),
            dense,
            "{kind}"
        );
        let input = model.check_input(inputs(&fx, true, 2)).unwrap();
        let want = load_fixture(&format!("gguf/flux-{kind}.safetensors"));
        let what = format!("GGUF {kind} forward");
        assert_close(
            model.forward(&input),
            &want["output"],
            RERUN_ATOL,
            RTOL,
            &what,
        );
    }
}

#[test]
fn bfl_config_is_inferred_from_shapes() {
    let path = fixture("flux/dev-bfl.safetensors");
    let weights = Weights::open(&path)
        .unwrap()
        .strip_prefix("model.diffusion_model.");
    let inferred = FluxConfig::infer_original(&weights, &path, tiny_axes()).unwrap();
    let expected = FluxConfig::from_file(&fixture("flux/dev/config.json")).unwrap();
    assert_eq!(inferred, expected);

    let schnell = fixture("flux/schnell-bfl.safetensors");
    let weights = Weights::open(&schnell).unwrap();
    let inferred = FluxConfig::infer_original(&weights, &schnell, tiny_axes()).unwrap();
    let expected = FluxConfig::from_file(&fixture("flux/schnell/config.json")).unwrap();
    assert_eq!(inferred, expected);
    assert!(!inferred.guidance_embeds);

    let err = FluxConfig::infer_original(&weights, &schnell, None)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("axes_dims_rope") && err.contains("schnell-bfl"),
        "{err}"
    );
}

#[test]
fn schnell_bfl_without_prefix_matches_reference() {
    let fx = load_fixture("flux/schnell-forward.safetensors");
    let model: FluxTransformer<Cpu> = FluxTransformer::load_original(
        &fixture("flux/schnell-bfl.safetensors"),
        tiny_axes(),
        &device(),
    )
    .unwrap();
    let input = model.check_input(inputs(&fx, false, 1)).unwrap();
    assert_close(
        model.forward(&input),
        &fx["output"],
        ATOL,
        RTOL,
        "schnell forward",
    );
}

#[test]
fn presets_have_the_published_sizes() {
    for (config, guidance) in [(FluxConfig::dev(), true), (FluxConfig::schnell(), false)] {
        assert_eq!((config.num_layers, config.num_single_layers), (19, 38));
        assert_eq!(config.hidden_size(), 3072);
        assert_eq!(
            (config.num_attention_heads, config.attention_head_dim),
            (24, 128)
        );
        assert_eq!(config.guidance_embeds, guidance);
        config.validate(Path::new("preset")).unwrap();
    }
}

#[test]
fn random_model_runs_any_block_split() {
    let config = FluxConfig {
        num_layers: 2,
        num_single_layers: 2,
        num_attention_heads: 2,
        attention_head_dim: 16,
        axes_dims_rope: vec![4, 6, 6],
        joint_attention_dim: 24,
        pooled_projection_dim: 20,
        in_channels: 16,
        ..FluxConfig::dev()
    };
    let model = FluxTransformer::<Cpu>::random(&config, &device()).unwrap();
    let fx = load_fixture("flux/forward.safetensors");
    let input = model.check_input(inputs(&fx, true, 2)).unwrap();
    let whole = model.forward(&input);
    assert_eq!(whole.dims(), [2, 12, 16]);
    let (ctx, state) = model.embed(&input);
    // Probe into the first single block, then resume.
    let state = model.run_blocks(&ctx, state, 0..3);
    let state = model.run_blocks(&ctx, state, 3..4);
    let split = model.head(&ctx, state.image);
    assert_close(split, &whole.into_data(), 1e-6, 1e-6, "split vs whole");
}

/// The reference's Euler run (`sigmas`, `threshold` of `run`) with DiCache at the FLUX preset
/// from `noise` on `base`'s conditioning, deciding as `scope` says: the final latents and each
/// sample's trace.
fn dicache_run(
    run: &Fixtures,
    base: FluxInput<Cpu>,
    noise: Tensor<Cpu, 3>,
    scope: CacheScope,
) -> (Tensor<Cpu, 3>, Vec<Trace>) {
    let model = dev_diffusers();
    let d = device();
    let values = |name: &str| -> Vec<f32> { run[name].iter::<f32>().collect() };
    let sigmas = values("sigmas");
    let steps = sigmas.len() - 1;
    let settings = CacheSettings {
        scope,
        ..CachePolicy::DiCache(DiCacheConfig {
            threshold: values("threshold")[0] as f64,
            ..DiCacheConfig::flux()
        })
        .into()
    };
    let mut session = CacheSession::new(settings, steps, model.num_blocks()).unwrap();
    let samples = noise.dims()[0];
    let mut x = noise;
    for (i, pair) in sigmas.windows(2).enumerate() {
        let timestep = TensorData::new(vec![pair[0]; samples], [samples]);
        let input = FluxInput {
            latents: x.clone(),
            timestep: Tensor::from_data(timestep, &d),
            ..base.clone()
        };
        let input = model.check_input(input).unwrap();
        let v = session.forward(&model, &input, i, Pass::Single).unwrap();
        x = x + v.mul_scalar(pair[1] - pair[0]);
    }
    (x, session.into_traces())
}

#[test]
fn dicache_run_matches_reference() {
    let fx = load_fixture("flux/forward.safetensors");
    let run = load_fixture("flux/dicache.safetensors");
    let noise = tensor(&run, "noise", &device());
    let (x, traces) = dicache_run(&run, inputs(&fx, true, 1), noise, CacheScope::Sample);
    assert_trace_matches(&traces[0], &run);
    let computed: Vec<bool> = traces[0].steps.iter().map(|s| s.computed).collect();
    assert!(computed.contains(&false) && computed.contains(&true));
    assert_close(x, &run["latents"], ATOL, RTOL, "dicache latents");
}

/// The entries of `run` under `prefix` (`"batch."`), without it.
fn under(run: &Fixtures, prefix: &str) -> Fixtures {
    run.iter()
        .filter_map(|(k, v)| Some((k.strip_prefix(prefix)?.to_string(), v.clone())))
        .collect()
}

#[test]
fn dicache_on_a_batch_decides_per_sample_or_as_the_reference_per_batch() {
    let fx = load_fixture("flux/forward.safetensors");
    let runs = load_fixture("flux/dicache_batch.safetensors");
    let d = device();
    let batch = under(&runs, "batch.");
    // The second sample's guidance is 1 (gen_flux.py's batch_fixture).
    let base = FluxInput {
        guidance: Some(Tensor::from_floats([3.5, 1.0], &d)),
        ..inputs(&fx, true, 2)
    };
    let noise: Tensor<Cpu, 3> = tensor(&batch, "noise", &d);

    // One decision per call, on the batch tensor: the reference's batch run, for both samples.
    let (x, traces) = dicache_run(&batch, base.clone(), noise.clone(), CacheScope::Batch);
    for trace in &traces {
        assert_trace_matches(trace, &batch);
    }
    assert_close(x, &batch["latents"], ATOL, RTOL, "batch-scope latents");

    // A decision per sample: each sample's own run, though the schedules differ.
    let (x, traces) = dicache_run(&batch, base, noise, CacheScope::Sample);
    for (i, trace) in traces.iter().enumerate() {
        let alone = under(&runs, &format!("alone{i}."));
        assert_trace_matches(trace, &alone);
        let row = x.clone().narrow(0, i, 1);
        assert_close(row, &alone["latents"], ATOL, RTOL, "sample-scope latents");
    }
    let schedule = |t: &Trace| t.steps.iter().map(|s| s.computed).collect::<Vec<_>>();
    assert_ne!(schedule(&traces[0]), schedule(&traces[1]));
}

#[test]
fn missing_shard_is_an_error_naming_it() {
    assert_missing_shard_named("flux/dev", 2, |dir| {
        FluxTransformer::<Cpu>::load_diffusers(dir, &device())
    });
}

#[test]
fn truncated_file_is_an_error_naming_it() {
    assert_truncated_shard_named("flux/dev", 3, |dir| {
        FluxTransformer::<Cpu>::load_diffusers(dir, &device())
    });

    assert_truncated_file_named("flux/dev-bfl.safetensors", |file| {
        FluxTransformer::<Cpu>::load_original(file, tiny_axes(), &device())
    });
}

#[test]
fn wrong_shape_tensor_is_an_error_naming_key_and_file() {
    // 16 values stored as [2, 8] instead of [16].
    let key = "transformer_blocks.1.attn.norm_added_k.weight";
    assert_reshaped_tensor_named("flux/dev", key, vec![2, 8], |dir| {
        FluxTransformer::<Cpu>::load_diffusers(dir, &device())
    });
}

#[test]
fn config_not_matching_weights_is_an_error() {
    let weights = Weights::open(&fixture("flux/dev")).unwrap();
    let config = FluxConfig::from_file(&fixture("flux/dev/config.json")).unwrap();
    let d = device();

    // Fewer blocks than stored: the rest are unused.
    let fewer = FluxConfig {
        num_single_layers: 1,
        ..config.clone()
    };
    let msg = FluxTransformer::<Cpu>::from_weights(fewer, &weights, Layout::Diffusers, &d)
        .unwrap_err()
        .to_string();
    assert!(msg.contains("single_transformer_blocks.1."), "{msg}");

    // No guidance embedding configured, but stored.
    let weights = Weights::open(&fixture("flux/dev")).unwrap();
    let schnell = FluxConfig {
        guidance_embeds: false,
        ..config.clone()
    };
    let msg = FluxTransformer::<Cpu>::from_weights(schnell, &weights, Layout::Diffusers, &d)
        .unwrap_err()
        .to_string();
    assert!(msg.contains("guidance_embedder"), "{msg}");

    // Other head split: the QK-norm scales have another size.
    let weights = Weights::open(&fixture("flux/dev")).unwrap();
    let heads = FluxConfig {
        num_attention_heads: 4,
        attention_head_dim: 8,
        axes_dims_rope: vec![2, 2, 4],
        ..config.clone()
    };
    let err =
        FluxTransformer::<Cpu>::from_weights(heads, &weights, Layout::Diffusers, &d).unwrap_err();
    assert!(err.to_string().contains("norm_q.weight"), "{err}");

    // More blocks than stored.
    let weights = Weights::open(&fixture("flux/dev")).unwrap();
    let more = FluxConfig {
        num_layers: 3,
        ..config.clone()
    };
    let msg = FluxTransformer::<Cpu>::from_weights(more, &weights, Layout::Diffusers, &d)
        .unwrap_err()
        .to_string();
    assert!(msg.contains("transformer_blocks.2."), "{msg}");

    // A diffusers checkpoint read as BFL names nothing the model needs.
    let weights = Weights::open(&fixture("flux/dev")).unwrap();
    let msg = FluxTransformer::<Cpu>::from_weights(config.clone(), &weights, Layout::Original, &d)
        .unwrap_err()
        .to_string();
    assert!(msg.contains("time_in.in_layer.weight"), "{msg}");

    // Rotary split not summing to the head size.
    let bad_rope = FluxConfig {
        axes_dims_rope: vec![4, 4, 4],
        ..config
    };
    let msg = FluxTransformer::<Cpu>::random(&bad_rope, &d)
        .unwrap_err()
        .to_string();
    assert!(msg.contains("axes_dims_rope"), "{msg}");
}

#[test]
fn bad_inputs_are_errors_naming_them() {
    let fx = load_fixture("flux/forward.safetensors");
    let model = dev_diffusers();
    let err = model.check_input(inputs(&fx, false, 2)).unwrap_err();
    assert_eq!(err, InputError::Guidance { model: true });

    let mut input = inputs(&fx, true, 2);
    input.img_ids = input.img_ids.narrow(0, 0, 5);
    let err = model.check_input(input).unwrap_err();
    assert!(
        matches!(
            err,
            InputError::Shape {
                name: "img_ids",
                ..
            }
        ),
        "{err}"
    );

    let mut input = inputs(&fx, true, 2);
    input.pooled_projections = input.pooled_projections.narrow(1, 0, 3);
    let err = model.check_input(input).unwrap_err();
    assert!(err.to_string().contains("pooled_projections"), "{err}");
}

/// f32 to bf16 bits, rounding to nearest even.
fn bf16_bits(x: f32) -> u16 {
    let bits = x.to_bits();
    ((bits + 0x7FFF + ((bits >> 16) & 1)) >> 16) as u16
}

#[test]
fn bf16_checkpoint_loads_into_f32() {
    let scratch = Scratch::new("bf16");
    let bytes = fs::read(fixture("flux/schnell-bfl.safetensors")).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let converted: Vec<(String, Vec<u8>, Vec<usize>)> = st
        .tensors()
        .into_iter()
        .map(|(name, view)| {
            let data = view
                .data()
                .chunks_exact(4)
                .flat_map(|b| bf16_bits(f32::from_le_bytes(b.try_into().unwrap())).to_le_bytes())
                .collect();
            (name, data, view.shape().to_vec())
        })
        .collect();
    let views = converted.iter().map(|(name, data, shape)| {
        let view =
            safetensors::tensor::TensorView::new(safetensors::Dtype::BF16, shape.clone(), data);
        (name.clone(), view.unwrap())
    });
    let path = scratch.path().join("bf16.safetensors");
    fs::write(&path, safetensors::serialize(views, None).unwrap()).unwrap();

    let model: FluxTransformer<Cpu> =
        FluxTransformer::load_original(&path, tiny_axes(), &device()).unwrap();
    let fx = load_fixture("flux/schnell-forward.safetensors");
    let input = model.check_input(inputs(&fx, false, 1)).unwrap();
    let out = model.forward(&input);
    assert_eq!(out.dtype(), burn::tensor::DType::F32);
    // bf16 keeps 8 mantissa bits: weights are off by up to 0.4 %, the output by a few percent.
    assert_close(out, &fx["output"], 0.05, 0.05, "bf16 weights forward");
}
