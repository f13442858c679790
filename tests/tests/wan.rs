//! WAN 2.1 transformer against diffusers (fixtures from `fixtures/gen_wan.py`): RoPE table,
//! embeddings, every block and the whole forward from both checkpoint layouts, a DiCache run
//! with classifier-free guidance (one cache state per pass), and the errors of damaged or
//! mismatched checkpoints and inputs.

use std::{collections::HashMap, fs, path::Path};

use burn::{
    module::Module,
    tensor::{Tensor, TensorData},
};
use dicache_core::{CachePolicy, CacheSession, CacheableModel, DiCacheConfig, Pass};
use dicache_tests::{
    Cpu, Scratch, assert_close, assert_missing_shard_named, assert_reshaped_tensor_named,
    assert_trace_matches, assert_truncated_file_named, assert_truncated_shard_named, fixture,
    load_fixture, quantized_values, reshape_stored, tensor,
};
use dit_layers::{LoadError, Weights};
use models_wan::{
    DiffusionTransformer, FromParams, InputError, Layout, TransformerConfig, WanConfig, WanInput,
    WanTransformer, original_name,
};

type Fixtures = HashMap<String, TensorData>;

/// fp32 parity tolerance.
const ATOL: f32 = 1e-5;
const RTOL: f32 = 1e-4;

/// The tiny model's head count (its head size is 16, not WAN 2.1's 128, so it cannot be inferred).
const TINY_HEADS: Option<usize> = Some(2);

fn device() -> burn_flex::FlexDevice {
    Default::default()
}

fn t2v_diffusers() -> WanTransformer<Cpu> {
    WanTransformer::load_diffusers(&fixture("wan/t2v"), &device()).expect("load diffusers folder")
}

fn t2v_original() -> WanTransformer<Cpu> {
    WanTransformer::load_original(
        &fixture("wan/t2v-original.safetensors"),
        TINY_HEADS,
        &device(),
    )
    .expect("load original file")
}

/// The inputs stored under `input.*`.
fn inputs(fx: &Fixtures) -> WanInput<Cpu> {
    let d = device();
    WanInput {
        latents: tensor(fx, "input.hidden_states", &d),
        timestep: tensor(fx, "input.timestep", &d),
        encoder_hidden_states: tensor(fx, "input.encoder_hidden_states", &d),
    }
}

/// Embeddings, each block's output (run one block at a time) and the output.
fn check_against_reference(model: &WanTransformer<Cpu>, what: &str) {
    let fx = load_fixture("wan/forward.safetensors");
    let input = model.check_input(inputs(&fx)).expect("valid input");
    let (ctx, mut x) = model.embed(&input);
    let close = |t: Tensor<Cpu, 3>, name: &str, label: &str| {
        assert_close(t, &fx[name], ATOL, RTOL, &format!("{what} {label}"))
    };
    close(x.clone(), "embed.tokens", "patch_embedding");
    assert_close(
        ctx.temb.clone(),
        &fx["embed.temb"],
        ATOL,
        RTOL,
        &format!("{what} temb"),
    );
    close(
        ctx.timestep_proj.clone(),
        "embed.timestep_proj",
        "timestep_proj",
    );
    close(ctx.text.clone(), "embed.text", "text_embedder");
    for i in 0..model.num_blocks() {
        x = model.run_blocks(&ctx, x, i..i + 1);
        close(x.clone(), &format!("block.{i}"), &format!("block {i}"));
    }
    let out = model.head(&ctx, x);
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
    let fx = load_fixture("wan/forward.safetensors");
    let model = t2v_diffusers();
    let input = model.check_input(inputs(&fx)).unwrap();
    assert_eq!(input.prepared().grid, [3, 2, 3]);
    assert_eq!(model.config().rope_axes(), [8, 4, 4]);
    let table = input.prepared().rope.clone();
    assert_close(table.cos, &fx["rope.cos"], 1e-6, 1e-6, "rope cos");
    assert_close(table.sin, &fx["rope.sin"], 1e-6, 1e-6, "rope sin");
}

#[test]
fn diffusers_folder_matches_reference() {
    check_against_reference(&t2v_diffusers(), "diffusers");
}

#[test]
fn original_file_matches_reference() {
    check_against_reference(&t2v_original(), "original");
}

/// city96-style GGUF files of the original checkpoint (Q8_0, Q5_0, `.modulation` kept F32;
/// `fixtures/gen_gguf.py`) against diffusers running the weights the `gguf` package decodes.
#[test]
fn gguf_files_match_diffusers_on_their_decoded_weights() {
    let fx = load_fixture("wan/forward.safetensors");
    let dense = t2v_diffusers().num_params();
    for kind in ["Q8_0", "Q5_0"] {
        let file = fixture(&format!("gguf/wan-{kind}.gguf"));
        let model = WanTransformer::<Cpu>::load_original(&file, TINY_HEADS, &device())
            .unwrap_or_else(|e| panic!("{kind}: {e}"));
        // The quantized tensors stay quantized in memory rather than becoming parameters.
        assert!(quantized_values(&file) > 0, "{kind}");
        assert_eq!(
            model.num_params() + quantized_values(&file),
            dense,
            "{kind}"
        );
        let input = model.check_input(inputs(&fx)).unwrap();
        let want = load_fixture(&format!("gguf/wan-{kind}.safetensors"));
        let what = format!("GGUF {kind} forward");
        assert_close(model.forward(&input), &want["output"], ATOL, RTOL, &what);
    }
}

#[test]
fn a_pipeline_folders_config_gives_what_the_original_file_does_not_store() {
    let file = fixture("wan/t2v-original.safetensors");
    let folder_config = WanConfig::from_file(&fixture("wan/t2v/config.json")).unwrap();
    let model =
        WanTransformer::<Cpu>::load_original_for(&file, Some(&folder_config), &device()).unwrap();
    check_against_reference(&model, "original with the folder's config");
    // The tiny hidden size (32) gives no head count by itself.
    let err = WanTransformer::<Cpu>::load_original_for(&file, None, &device())
        .err()
        .unwrap();
    assert!(matches!(err, LoadError::Config { .. }), "{err}");
}

#[test]
fn original_file_with_comfy_prefix_matches_reference() {
    let scratch = Scratch::copy_of("wan", "prefix");
    let path = scratch.path().join("t2v-original.safetensors");
    let bytes = fs::read(&path).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let prefixed: Vec<(String, safetensors::tensor::TensorView)> = st
        .tensors()
        .into_iter()
        .map(|(name, view)| (format!("model.diffusion_model.{name}"), view))
        .collect();
    let file = scratch.path().join("prefixed.safetensors");
    fs::write(&file, safetensors::serialize(prefixed, None).unwrap()).unwrap();
    let model = WanTransformer::<Cpu>::load_original(&file, TINY_HEADS, &device()).unwrap();
    let fx = load_fixture("wan/forward.safetensors");
    let input = model.check_input(inputs(&fx)).unwrap();
    assert_close(
        model.forward(&input),
        &fx["output"],
        ATOL,
        RTOL,
        "prefixed forward",
    );
}

#[test]
fn original_config_is_inferred_from_shapes() {
    let path = fixture("wan/t2v-original.safetensors");
    let weights = Weights::open(&path).unwrap();
    let inferred = WanConfig::infer_original(&weights, &path, TINY_HEADS).unwrap();
    let expected = WanConfig::from_file(&fixture("wan/t2v/config.json")).unwrap();
    assert_eq!(inferred, expected);

    // Hidden size 32 is no multiple of 128: the head count must be given.
    let err = WanConfig::infer_original(&weights, &path, None)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("number of heads") && err.contains("t2v-original"),
        "{err}"
    );
    // A head count that does not divide the hidden size.
    let err = WanConfig::infer_original(&weights, &path, Some(3))
        .unwrap_err()
        .to_string();
    assert!(err.contains("3 heads"), "{err}");
}

#[test]
fn original_names_follow_wans_model() {
    let name = |p: &str| original_name(&p.split('.').collect::<Vec<_>>());
    assert_eq!(
        name("blocks.7.attn1.to_out.0").as_deref(),
        Some("blocks.7.self_attn.o")
    );
    assert_eq!(
        name("blocks.0.attn2.norm_k").as_deref(),
        Some("blocks.0.cross_attn.norm_k")
    );
    assert_eq!(name("blocks.3.norm2").as_deref(), Some("blocks.3.norm3"));
    assert_eq!(
        name("blocks.3.ffn.net.0.proj").as_deref(),
        Some("blocks.3.ffn.0")
    );
    assert_eq!(
        name("blocks.3.scale_shift_table").as_deref(),
        Some("blocks.3.modulation")
    );
    assert_eq!(
        name("condition_embedder.time_proj").as_deref(),
        Some("time_projection.1")
    );
    assert_eq!(
        name("scale_shift_table").as_deref(),
        Some("head.modulation")
    );
    assert_eq!(name("proj_out").as_deref(), Some("head.head"));
    assert_eq!(name("blocks.3.attn1.add_k_proj"), None);
}

#[test]
fn presets_have_the_published_sizes() {
    let small = WanConfig::t2v_1_3b();
    assert_eq!(
        (
            small.num_layers,
            small.num_attention_heads,
            small.hidden_size()
        ),
        (30, 12, 1536)
    );
    assert_eq!(small.ffn_dim, 8960);
    let large = WanConfig::t2v_14b();
    assert_eq!(
        (
            large.num_layers,
            large.num_attention_heads,
            large.hidden_size()
        ),
        (40, 40, 5120)
    );
    assert_eq!(large.ffn_dim, 13824);
    for config in [small, large] {
        assert_eq!(config.rope_axes(), [44, 42, 42]);
        assert_eq!(
            (config.text_dim, config.freq_dim, config.patch_size),
            (4096, 256, [1, 2, 2])
        );
        config.validate(Path::new("preset")).unwrap();
    }
}

#[test]
fn random_model_runs_any_block_split() {
    let config = WanConfig {
        num_layers: 3,
        num_attention_heads: 2,
        attention_head_dim: 16,
        text_dim: 32,
        freq_dim: 32,
        ffn_dim: 48,
        ..WanConfig::t2v_1_3b()
    };
    let model = WanTransformer::<Cpu>::random(&config, &device()).unwrap();
    let fx = load_fixture("wan/forward.safetensors");
    let input = model.check_input(inputs(&fx)).unwrap();
    let whole = model.forward(&input);
    assert_eq!(whole.dims(), [2, 16, 3, 4, 6]);
    let (ctx, x) = model.embed(&input);
    let x = model.run_blocks(&ctx, x, 0..1);
    let x = model.run_blocks(&ctx, x, 1..3);
    assert_close(
        model.head(&ctx, x),
        &whole.into_data(),
        1e-6,
        1e-6,
        "split vs whole",
    );
}

#[test]
fn dicache_cfg_run_matches_reference() {
    let run = load_fixture("wan/dicache.safetensors");
    let model = t2v_diffusers();
    let d = device();
    let values = |name: &str| -> Vec<f32> { run[name].iter::<f32>().collect() };
    let sigmas = values("sigmas");
    let steps = sigmas.len() - 1;
    let guidance = values("guidance")[0];
    let policy = CachePolicy::DiCache(DiCacheConfig {
        threshold: values("threshold")[0] as f64,
        ..DiCacheConfig::wan()
    });
    let mut session = CacheSession::new(policy, steps, model.num_blocks()).unwrap();
    let cond: Tensor<Cpu, 3> = tensor(&run, "cond", &d);
    let uncond: Tensor<Cpu, 3> = tensor(&run, "uncond", &d);
    let mut x: Tensor<Cpu, 5> = tensor(&run, "noise", &d);
    for (i, pair) in sigmas.windows(2).enumerate() {
        let call = |text: &Tensor<Cpu, 3>| {
            let input = WanInput {
                latents: x.clone(),
                timestep: Tensor::from_data(TensorData::new(vec![pair[0] * 1000.0], [1]), &d),
                encoder_hidden_states: text.clone(),
            };
            model.check_input(input).unwrap()
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
    let trace = session.into_traces().remove(0);
    let steps_got: Vec<f32> = trace.steps.iter().map(|s| s.step as f32).collect();
    assert_eq!(steps_got, values("trace.step"), "step of each call");
    let passes: Vec<Pass> = values("trace.pass")
        .iter()
        .map(|&p| if p == 0.0 { Pass::Cond } else { Pass::Uncond })
        .collect();
    assert_eq!(
        trace.steps.iter().map(|s| s.pass).collect::<Vec<_>>(),
        passes,
        "passes"
    );
    assert_trace_matches(&trace, &run);
    for pass in [Pass::Cond, Pass::Uncond] {
        let flags: Vec<bool> = trace
            .steps
            .iter()
            .filter(|s| s.pass == pass)
            .map(|s| s.computed)
            .collect();
        assert!(
            flags.contains(&true) && flags.contains(&false),
            "{pass:?}: {flags:?}"
        );
    }
    // Eight guided steps of accumulated fp32 differences, amplified by the random tiny model.
    assert_close(x, &run["latents"], 1e-4, 1e-4, "dicache latents");
}

#[test]
fn missing_shard_is_an_error_naming_it() {
    assert_missing_shard_named("wan/t2v", 2, |dir| {
        WanTransformer::<Cpu>::load_diffusers(dir, &device())
    });
}

#[test]
fn truncated_file_is_an_error_naming_it() {
    assert_truncated_shard_named("wan/t2v", 3, |dir| {
        WanTransformer::<Cpu>::load_diffusers(dir, &device())
    });

    assert_truncated_file_named("wan/t2v-original.safetensors", |file| {
        WanTransformer::<Cpu>::load_original(file, TINY_HEADS, &device())
    });
}

#[test]
fn wrong_shape_tensor_is_an_error_naming_key_and_file() {
    // [1, 6, 32] stored as [6, 32].
    assert_reshaped_tensor_named(
        "wan/t2v",
        "blocks.1.scale_shift_table",
        vec![6, 32],
        |dir| WanTransformer::<Cpu>::load_diffusers(dir, &device()),
    );

    // The same in the original layout names the original key.
    let scratch = Scratch::new("wrong-shape-original");
    let original = scratch.path().join("original.safetensors");
    fs::copy(fixture("wan/t2v-original.safetensors"), &original).unwrap();
    reshape_stored(&original, "blocks.0.cross_attn.norm_q.weight", vec![2, 16]);
    let err = WanTransformer::<Cpu>::load_original(&original, TINY_HEADS, &device()).unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, LoadError::Shape { .. }), "{msg}");
    assert!(
        msg.contains("blocks.0.cross_attn.norm_q.weight") && msg.contains("original.safetensors"),
        "{msg}"
    );
}

#[test]
fn config_not_matching_weights_is_an_error() {
    let config = WanConfig::from_file(&fixture("wan/t2v/config.json")).unwrap();
    let d = device();
    let load = |config: WanConfig, layout| {
        let weights = Weights::open(&fixture("wan/t2v")).unwrap();
        WanTransformer::<Cpu>::from_weights(config, &weights, layout, &d)
            .unwrap_err()
            .to_string()
    };

    // Fewer blocks than stored: the rest are unused.
    let msg = load(
        WanConfig {
            num_layers: 1,
            ..config.clone()
        },
        Layout::Diffusers,
    );
    assert!(
        msg.contains("blocks.1.") && msg.contains("not used"),
        "{msg}"
    );
    // More blocks than stored.
    let msg = load(
        WanConfig {
            num_layers: 3,
            ..config.clone()
        },
        Layout::Diffusers,
    );
    assert!(msg.contains("blocks.2."), "{msg}");
    // No cross-attention norm configured, but stored.
    let msg = load(
        WanConfig {
            cross_attn_norm: false,
            ..config.clone()
        },
        Layout::Diffusers,
    );
    assert!(msg.contains("norm2"), "{msg}");
    // Another FFN width.
    let msg = load(
        WanConfig {
            ffn_dim: 64,
            ..config.clone()
        },
        Layout::Diffusers,
    );
    assert!(msg.contains("ffn.net.0.proj.weight"), "{msg}");
    // A diffusers checkpoint read as the original layout names nothing the model needs.
    let msg = load(config.clone(), Layout::Original);
    assert!(
        msg.contains("patch_embedding.weight") || msg.contains("time_embedding.0"),
        "{msg}"
    );

    // Image-to-video settings and unsupported norms are refused, naming the setting.
    let msg = WanTransformer::<Cpu>::random(
        &WanConfig {
            image_dim: Some(1280),
            ..config.clone()
        },
        &d,
    )
    .unwrap_err()
    .to_string();
    assert!(
        msg.contains("image_dim") && msg.contains("image-to-video"),
        "{msg}"
    );
    let msg = WanTransformer::<Cpu>::random(
        &WanConfig {
            qk_norm: None,
            ..config.clone()
        },
        &d,
    )
    .unwrap_err()
    .to_string();
    assert!(msg.contains("qk_norm"), "{msg}");
    // A head too small to split into three rotary parts.
    let tiny_heads = WanConfig {
        num_attention_heads: 8,
        attention_head_dim: 4,
        ..config
    };
    let msg = WanTransformer::<Cpu>::random(&tiny_heads, &d)
        .unwrap_err()
        .to_string();
    assert!(msg.contains("attention_head_dim 4"), "{msg}");
}

#[test]
fn bad_inputs_are_errors_naming_them() {
    let fx = load_fixture("wan/forward.safetensors");
    let model = t2v_diffusers();

    // Height 4 -> 3 rows: not a multiple of the patch's 2.
    let mut input = inputs(&fx);
    input.latents = input.latents.narrow(3, 0, 3);
    let err = model.check_input(input).unwrap_err();
    assert_eq!(
        err,
        InputError::NotDivisible {
            axis: "height",
            size: 3,
            patch: 2,
            patch_size: [1, 2, 2]
        }
    );
    assert!(err.to_string().contains("height = 3"), "{err}");

    let mut input = inputs(&fx);
    input.latents = input.latents.narrow(4, 0, 5);
    let err = model.check_input(input).unwrap_err();
    assert!(
        matches!(
            err,
            InputError::NotDivisible {
                axis: "width",
                size: 5,
                ..
            }
        ),
        "{err}"
    );

    let mut input = inputs(&fx);
    input.latents = input.latents.narrow(1, 0, 8);
    let err = model.check_input(input).unwrap_err();
    assert!(
        matches!(
            err,
            InputError::Shape {
                name: "latents",
                ..
            }
        ),
        "{err}"
    );

    let mut input = inputs(&fx);
    input.encoder_hidden_states = input.encoder_hidden_states.narrow(2, 0, 16);
    let err = model.check_input(input).unwrap_err();
    assert!(err.to_string().contains("encoder_hidden_states"), "{err}");

    let mut input = inputs(&fx);
    input.timestep = input.timestep.narrow(0, 0, 1);
    let err = model.check_input(input).unwrap_err();
    assert!(
        matches!(
            err,
            InputError::Shape {
                name: "timestep",
                ..
            }
        ),
        "{err}"
    );

    // More frames than the rotary table covers.
    let short_rope = WanConfig {
        rope_max_seq_len: 2,
        ..model.config().clone()
    };
    let weights = Weights::open(&fixture("wan/t2v")).unwrap();
    let model =
        WanTransformer::<Cpu>::from_weights(short_rope, &weights, Layout::Diffusers, &device())
            .unwrap();
    let err = model.check_input(inputs(&fx)).unwrap_err();
    assert_eq!(
        err,
        InputError::TooLong {
            axis: "frames",
            patches: 3,
            max: 2
        }
    );
}
