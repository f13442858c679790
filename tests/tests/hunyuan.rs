//! HunyuanVideo transformer against diffusers (fixtures from `fixtures/gen_hunyuan.py`): RoPE
//! table, embeddings and token refiner, every block and the whole forward, a DiCache run, and
//! the errors of damaged or mismatched checkpoints and inputs; the same model loaded from a
//! single file in Tencent's original layout.

use std::{collections::HashMap, fs, path::Path, path::PathBuf};

use burn::tensor::{Int, Tensor, TensorData};
use dicache_core::{CachePolicy, CacheSession, CacheableModel, DiCacheConfig, Pass};
use dicache_tests::{
    Cpu, Scratch, assert_close, assert_missing_shard_named, assert_reshaped_tensor_named,
    assert_trace_matches, assert_truncated_shard_named, fixture, load_fixture, reshape_stored,
    tensor,
};
use dit_layers::Weights;
use models_hunyuan::{
    DiffusionTransformer, FromParams, HunyuanVideoConfig, HunyuanVideoInput,
    HunyuanVideoTransformer, InputError, Layout, MmditState, TransformerConfig,
};

type Fixtures = HashMap<String, TensorData>;

/// fp32 parity tolerance.
const ATOL: f32 = 1e-5;
const RTOL: f32 = 1e-4;

fn device() -> burn_flex::FlexDevice {
    Default::default()
}

fn tiny() -> HunyuanVideoTransformer<Cpu> {
    HunyuanVideoTransformer::load_diffusers(&fixture("hunyuan/tiny"), &device())
        .expect("load diffusers folder")
}

fn tiny_config() -> HunyuanVideoConfig {
    HunyuanVideoConfig::from_file(&fixture("hunyuan/tiny/config.json")).unwrap()
}

/// The inputs stored under `input.*`, the first `batch` rows.
fn inputs(fx: &Fixtures, batch: usize) -> HunyuanVideoInput<Cpu> {
    let d = device();
    HunyuanVideoInput {
        latents: tensor::<Cpu, 5>(fx, "input.hidden_states", &d).narrow(0, 0, batch),
        timestep: tensor::<Cpu, 1>(fx, "input.timestep", &d).narrow(0, 0, batch),
        encoder_hidden_states: tensor::<Cpu, 3>(fx, "input.encoder_hidden_states", &d)
            .narrow(0, 0, batch),
        encoder_attention_mask: Tensor::<Cpu, 2, Int>::from_data(
            fx["input.encoder_attention_mask"].clone(),
            &d,
        )
        .narrow(0, 0, batch),
        pooled_projections: tensor::<Cpu, 2>(fx, "input.pooled_projections", &d)
            .narrow(0, 0, batch),
        guidance: Some(tensor::<Cpu, 1>(fx, "input.guidance", &d).narrow(0, 0, batch)),
    }
}

#[test]
fn rope_table_matches_diffusers() {
    let fx = load_fixture("hunyuan/forward.safetensors");
    let model = tiny();
    let input = model.check_input(inputs(&fx, 2)).unwrap();
    let table = input.prepared().rope.clone();
    assert_close(table.cos, &fx["rope.cos"], 1e-6, 1e-6, "rope cos");
    assert_close(table.sin, &fx["rope.sin"], 1e-6, 1e-6, "rope sin");
}

#[test]
fn embeddings_and_token_refiner_match_diffusers() {
    let fx = load_fixture("hunyuan/forward.safetensors");
    let model = tiny();
    let input = model.check_input(inputs(&fx, 2)).unwrap();
    assert_eq!(input.prepared().mask.lengths(), &[4, 3]);
    let (ctx, state) = model.embed(&input);
    assert_close(
        ctx.trunk.temb,
        &fx["embed.temb"],
        ATOL,
        RTOL,
        "time_text_embed",
    );
    assert_close(state.image, &fx["embed.video"], ATOL, RTOL, "x_embedder");
    assert_close(
        state.text,
        &fx["embed.text"],
        ATOL,
        RTOL,
        "context_embedder (refiner)",
    );
}

/// The reference's `temb` differs from a correctly rounded one by up to 8e-6 here: torch's
/// vectorised `expf` is 1 ulp off for one sinusoid frequency (`w_12`), and at timestep 700 /
/// guidance 1500 that moves the angle by ~4e-5 rad (checked in Python against an f64-rounded
/// projection). Blocks are therefore checked on the reference's own inputs (its `temb` and the
/// previous block's output), and the chained forward with the tolerance doubled.
const CHAINED_ATOL: f32 = 2.0 * ATOL;

#[test]
fn every_block_matches_diffusers_on_its_inputs() {
    let fx = load_fixture("hunyuan/forward.safetensors");
    let model = tiny();
    let d = device();
    let input = model.check_input(inputs(&fx, 2)).unwrap();
    let (mut ctx, _) = model.embed(&input);
    ctx.trunk.temb = tensor(&fx, "embed.temb", &d);
    let duals = model.config().num_layers;
    let name = |i: usize| {
        if i < duals {
            format!("dual.{i}")
        } else {
            format!("single.{}", i - duals)
        }
    };
    for i in 0..model.num_blocks() {
        let before = if i == 0 {
            "embed".to_string()
        } else {
            name(i - 1)
        };
        let state = MmditState {
            image: tensor(&fx, &format!("{before}.video"), &d),
            text: tensor(&fx, &format!("{before}.text"), &d),
        };
        let state = model.run_blocks(&ctx, state, i..i + 1);
        for (stream, t) in [("video", state.image), ("text", state.text)] {
            let key = format!("{}.{stream}", name(i));
            assert_close(t, &fx[&key], ATOL, RTOL, &key);
        }
    }
    let last = tensor(&fx, &format!("{}.video", name(model.num_blocks() - 1)), &d);
    assert_close(model.head(&ctx, last), &fx["output"], ATOL, RTOL, "head");
}

#[test]
fn chained_blocks_and_forward_match_diffusers() {
    let fx = load_fixture("hunyuan/forward.safetensors");
    let model = tiny();
    let input = model.check_input(inputs(&fx, 2)).unwrap();
    let (ctx, mut state) = model.embed(&input);
    let duals = model.config().num_layers;
    for i in 0..model.num_blocks() {
        state = model.run_blocks(&ctx, state, i..i + 1);
        let name = if i < duals {
            format!("dual.{i}")
        } else {
            format!("single.{}", i - duals)
        };
        for (stream, t) in [("video", &state.image), ("text", &state.text)] {
            let key = format!("chained {name}.{stream}");
            let want = &fx[&format!("{name}.{stream}")];
            assert_close(t.clone(), want, CHAINED_ATOL, RTOL, &key);
        }
    }
    let out = model.head(&ctx, state.image);
    assert_close(out, &fx["output"], CHAINED_ATOL, RTOL, "chained head");
    let out = model.forward(&input);
    assert_close(out, &fx["output"], CHAINED_ATOL, RTOL, "forward");
}

#[test]
fn each_row_matches_alone() {
    // Row 1 alone takes the batched path with one key count: same numbers as in the batch.
    let fx = load_fixture("hunyuan/forward.safetensors");
    let model = tiny();
    let mut input = inputs(&fx, 2);
    let row = |t: Tensor<Cpu, 1>| t.narrow(0, 1, 1);
    input.latents = input.latents.narrow(0, 1, 1);
    input.timestep = row(input.timestep);
    input.encoder_hidden_states = input.encoder_hidden_states.narrow(0, 1, 1);
    input.encoder_attention_mask = input.encoder_attention_mask.narrow(0, 1, 1);
    input.pooled_projections = input.pooled_projections.narrow(0, 1, 1);
    input.guidance = input.guidance.map(row);
    let out = model.forward(&model.check_input(input).unwrap());
    let expected = tensor::<Cpu, 5>(&fx, "output", &device()).narrow(0, 1, 1);
    assert_close(out, &expected.into_data(), ATOL, RTOL, "row 1 forward");
}

#[test]
fn preset_has_the_published_sizes() {
    let config = HunyuanVideoConfig::hunyuan_video();
    assert_eq!((config.num_layers, config.num_single_layers), (20, 40));
    assert_eq!(
        (config.num_attention_heads, config.attention_head_dim),
        (24, 128)
    );
    assert_eq!(config.hidden_size(), 3072);
    assert_eq!(config.rope_axes_dim, vec![16, 56, 56]);
    assert_eq!((config.rope_theta, config.num_refiner_layers), (256.0, 2));
    assert_eq!(
        (config.text_embed_dim, config.pooled_projection_dim),
        (4096, 768)
    );
    assert!(config.guidance_embeds);
    config.validate(Path::new("preset")).unwrap();
}

#[test]
fn random_model_runs_any_block_split() {
    let config = tiny_config();
    let model = HunyuanVideoTransformer::<Cpu>::random(&config, &device()).unwrap();
    let fx = load_fixture("hunyuan/forward.safetensors");
    let input = model.check_input(inputs(&fx, 2)).unwrap();
    let whole = model.forward(&input);
    assert_eq!(whole.dims(), [2, 4, 3, 4, 4]);
    let (ctx, state) = model.embed(&input);
    // Probe into the first single block, then resume.
    let state = model.run_blocks(&ctx, state, 0..3);
    let state = model.run_blocks(&ctx, state, 3..4);
    let split = model.head(&ctx, state.image);
    assert_close(split, &whole.into_data(), 1e-6, 1e-6, "split vs whole");
}

#[test]
fn dicache_run_matches_reference() {
    let fx = load_fixture("hunyuan/forward.safetensors");
    let run = load_fixture("hunyuan/dicache.safetensors");
    let model = tiny();
    let d = device();
    let values = |name: &str| -> Vec<f64> { run[name].iter::<f64>().collect() };
    let sigmas = values("sigmas");
    let steps = sigmas.len() - 1;
    let policy = CachePolicy::DiCache(DiCacheConfig {
        threshold: values("threshold")[0],
        ..DiCacheConfig::hunyuan_video()
    });
    let mut session = CacheSession::new(policy, steps, model.num_blocks()).unwrap();
    let base = inputs(&fx, 1);
    let mut x: Tensor<Cpu, 5> = tensor(&run, "noise", &d);
    for (i, pair) in sigmas.windows(2).enumerate() {
        let t = (pair[0] as f32) * 1000.0;
        let input = HunyuanVideoInput {
            latents: x.clone(),
            timestep: Tensor::from_data(TensorData::new(vec![t], [1]), &d),
            ..base.clone()
        };
        let input = model.check_input(input).unwrap();
        let v = session.forward(&model, &input, i, Pass::Single).unwrap();
        x = x + v.mul_scalar(pair[1] - pair[0]);
    }
    let trace = session.into_traces().remove(0);
    assert_trace_matches(&trace, &run);
    let computed: Vec<bool> = trace.steps.iter().map(|s| s.computed).collect();
    assert!(computed.contains(&false) && computed.contains(&true));
    assert_close(x, &run["latents"], ATOL, RTOL, "dicache latents");
}

#[test]
fn missing_shard_is_an_error_naming_it() {
    assert_missing_shard_named("hunyuan/tiny", 3, |dir| {
        HunyuanVideoTransformer::<Cpu>::load_diffusers(dir, &device())
    });
}

#[test]
fn truncated_file_is_an_error_naming_it() {
    assert_truncated_shard_named("hunyuan/tiny", 2, |dir| {
        HunyuanVideoTransformer::<Cpu>::load_diffusers(dir, &device())
    });
}

#[test]
fn wrong_shape_tensor_is_an_error_naming_key_and_file() {
    // 32 values stored as [4, 8] instead of [32].
    let key = "context_embedder.token_refiner.refiner_blocks.1.norm2.weight";
    assert_reshaped_tensor_named("hunyuan/tiny", key, vec![4, 8], |dir| {
        HunyuanVideoTransformer::<Cpu>::load_diffusers(dir, &device())
    });
}

#[test]
fn config_not_matching_weights_is_an_error() {
    let config = tiny_config();
    let d = device();
    let load = |config: HunyuanVideoConfig| {
        let weights = Weights::open(&fixture("hunyuan/tiny")).unwrap();
        HunyuanVideoTransformer::<Cpu>::from_weights(config, &weights, Layout::Diffusers, &d)
            .unwrap_err()
            .to_string()
    };
    let fewer = HunyuanVideoConfig {
        num_single_layers: 1,
        ..config.clone()
    };
    let msg = load(fewer);
    assert!(msg.contains("single_transformer_blocks.1."), "{msg}");

    let fewer_refiner = HunyuanVideoConfig {
        num_refiner_layers: 1,
        ..config.clone()
    };
    let msg = load(fewer_refiner);
    assert!(msg.contains("refiner_blocks.1."), "{msg}");

    let more = HunyuanVideoConfig {
        num_layers: 3,
        ..config.clone()
    };
    let msg = load(more);
    assert!(msg.contains("transformer_blocks.2."), "{msg}");

    let no_guidance = HunyuanVideoConfig {
        guidance_embeds: false,
        ..config.clone()
    };
    let msg = load(no_guidance);
    assert!(msg.contains("guidance_embedder"), "{msg}");

    let heads = HunyuanVideoConfig {
        num_attention_heads: 4,
        attention_head_dim: 8,
        rope_axes_dim: vec![2, 2, 4],
        ..config.clone()
    };
    let msg = load(heads);
    assert!(msg.contains("norm_q.weight"), "{msg}");

    let text_dim = HunyuanVideoConfig {
        text_embed_dim: 24,
        ..config.clone()
    };
    let msg = load(text_dim);
    assert!(msg.contains("context_embedder."), "{msg}");

    for (bad, what) in [
        (
            HunyuanVideoConfig {
                image_condition_type: Some("token_replace".into()),
                ..config.clone()
            },
            "token_replace",
        ),
        (
            HunyuanVideoConfig {
                rope_axes_dim: vec![4, 4, 4],
                ..config.clone()
            },
            "rope_axes_dim",
        ),
        (
            HunyuanVideoConfig {
                qk_norm: "layer_norm".into(),
                ..config.clone()
            },
            "qk_norm",
        ),
    ] {
        let msg = HunyuanVideoTransformer::<Cpu>::random(&bad, &d)
            .unwrap_err()
            .to_string();
        assert!(msg.contains(what), "{msg}");
    }
}

#[test]
fn bad_config_file_is_an_error_naming_it() {
    let scratch = Scratch::copy_of("hunyuan/tiny", "bad-config");
    scratch.edit_config(
        "\"image_condition_type\": null",
        "\"image_condition_type\": \"token_replace\"",
    );
    let msg = HunyuanVideoTransformer::<Cpu>::load_diffusers(scratch.path(), &device())
        .unwrap_err()
        .to_string();
    assert!(
        msg.contains("config.json") && msg.contains("token_replace"),
        "{msg}"
    );
}

#[test]
fn bad_inputs_are_errors_naming_them() {
    let fx = load_fixture("hunyuan/forward.safetensors");
    let model = tiny();
    let d = device();

    let mut input = inputs(&fx, 2);
    input.guidance = None;
    assert_eq!(
        model.check_input(input).unwrap_err(),
        InputError::Guidance { model: true }
    );

    let mut input = inputs(&fx, 2);
    input.latents = input.latents.narrow(4, 0, 3);
    let err = model.check_input(input).unwrap_err();
    assert!(
        matches!(err, InputError::NotDivisible { axis: "width", .. }),
        "{err}"
    );

    let mut input = inputs(&fx, 2);
    input.encoder_attention_mask = input.encoder_attention_mask.narrow(1, 0, 5);
    let err = model.check_input(input).unwrap_err();
    assert!(err.to_string().contains("encoder_attention_mask"), "{err}");

    for (row, values) in [
        (0, [[1, 0, 1, 0, 0, 0], [1, 1, 1, 0, 0, 0]]),
        (1, [[1, 1, 1, 1, 0, 0], [0, 0, 0, 0, 0, 0]]),
        (0, [[1, 1, 2, 0, 0, 0], [1, 1, 1, 0, 0, 0]]),
    ] {
        let mut input = inputs(&fx, 2);
        let flat: Vec<i64> = values.iter().flatten().copied().collect();
        input.encoder_attention_mask = Tensor::from_data(TensorData::new(flat, [2, 6]), &d);
        let err = model.check_input(input).unwrap_err();
        assert!(
            matches!(err, InputError::Mask { row: r, .. } if r == row),
            "{err}"
        );
        assert!(err.to_string().contains("encoder_attention_mask"), "{err}");
    }

    let mut input = inputs(&fx, 2);
    input.pooled_projections = input.pooled_projections.narrow(1, 0, 3);
    let err = model.check_input(input).unwrap_err();
    assert!(err.to_string().contains("pooled_projections"), "{err}");

    let mut input = inputs(&fx, 2);
    input.encoder_hidden_states = input.encoder_hidden_states.narrow(2, 0, 16);
    let err = model.check_input(input).unwrap_err();
    assert!(err.to_string().contains("encoder_hidden_states"), "{err}");
}

/// The tiny model's rotary split, which the original layout does not store (its head size 16 is
/// not HunyuanVideo's 128).
fn tiny_rope() -> Option<Vec<usize>> {
    Some(vec![4, 6, 6])
}

/// The tiny model in Tencent's original layout.
fn original_file() -> PathBuf {
    fixture("hunyuan/original.safetensors")
}

/// A copy of the original-layout fixture in `scratch`, its tensors renamed (or dropped, where
/// `rename` gives `None`).
fn rewritten_original(scratch: &Scratch, rename: impl Fn(&str) -> Option<String>) -> PathBuf {
    let bytes = fs::read(original_file()).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let tensors: Vec<(String, safetensors::tensor::TensorView)> = st
        .tensors()
        .into_iter()
        .filter_map(|(name, view)| rename(&name).map(|name| (name, view)))
        .collect();
    let path = scratch.path().join("original.safetensors");
    fs::write(&path, safetensors::serialize(tensors, None).unwrap()).unwrap();
    path
}

/// Asserts that `model`'s forward on the fixture inputs matches diffusers' output.
fn assert_forward_matches(model: &HunyuanVideoTransformer<Cpu>, what: &str) {
    let fx = load_fixture("hunyuan/forward.safetensors");
    let input = model.check_input(inputs(&fx, 2)).unwrap();
    let out = model.forward(&input);
    assert_close(out, &fx["output"], CHAINED_ATOL, RTOL, what);
}

#[test]
fn original_file_matches_diffusers() {
    let model =
        HunyuanVideoTransformer::<Cpu>::load_original(&original_file(), tiny_rope(), &device())
            .expect("load original file");
    assert_eq!(model.config(), &tiny_config());
    assert_forward_matches(&model, "original forward");
}

/// city96-style GGUF files of the original checkpoint (Q8_0, BF16; `fixtures/gen_gguf.py`)
/// against diffusers running the weights the `gguf` package decodes from them.
#[test]
fn gguf_files_match_diffusers_on_their_decoded_weights() {
    let fx = load_fixture("hunyuan/forward.safetensors");
    for kind in ["Q8_0", "BF16"] {
        let file = fixture(&format!("gguf/hunyuan-{kind}.gguf"));
        let model = HunyuanVideoTransformer::<Cpu>::load_original(&file, tiny_rope(), &device())
            .unwrap_or_else(|e| panic!("{kind}: {e}"));
        let input = model.check_input(inputs(&fx, 2)).unwrap();
        let want = load_fixture(&format!("gguf/hunyuan-{kind}.safetensors"));
        let what = format!("GGUF {kind} forward");
        assert_close(
            model.forward(&input),
            &want["output"],
            CHAINED_ATOL,
            RTOL,
            &what,
        );
    }
}

#[test]
fn original_file_with_module_prefix_matches_diffusers() {
    let scratch = Scratch::new("hunyuan-module-prefix");
    let file = rewritten_original(&scratch, |name| Some(format!("module.{name}")));
    let model = HunyuanVideoTransformer::<Cpu>::load_original(&file, tiny_rope(), &device())
        .expect("load prefixed original file");
    assert_forward_matches(&model, "prefixed original forward");
}

#[test]
fn load_picks_the_layout_from_the_path() {
    // A folder is diffusers.
    let model = HunyuanVideoTransformer::<Cpu>::load(&fixture("hunyuan/tiny"), &device()).unwrap();
    assert_eq!(model.config(), &tiny_config());
    // A file is the original layout, with HunyuanVideo's rotary split, which the tiny head size
    // does not fit.
    let msg = HunyuanVideoTransformer::<Cpu>::load(&original_file(), &device())
        .unwrap_err()
        .to_string();
    assert!(
        msg.contains("rope_axes_dim") && msg.contains("original.safetensors"),
        "{msg}"
    );
}

#[test]
fn original_config_is_inferred_from_shapes() {
    let path = original_file();
    let weights = Weights::open(&path).unwrap();
    let inferred = HunyuanVideoConfig::infer_original(&weights, &path, tiny_rope()).unwrap();
    assert_eq!(inferred, tiny_config());

    // Head size 16, not 128: the rotary split must be given.
    let err = HunyuanVideoConfig::infer_original(&weights, &path, None)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("rope_axes_dim") && err.contains("head size is 16"),
        "{err}"
    );
    // A rotary split that does not fit the head size.
    let err = HunyuanVideoConfig::infer_original(&weights, &path, Some(vec![4, 4, 4]))
        .unwrap_err()
        .to_string();
    assert!(err.contains("rope_axes_dim"), "{err}");

    // Without guidance_in and with one refiner block fewer, both are read off the names.
    let scratch = Scratch::new("hunyuan-infer-fewer");
    let file = rewritten_original(&scratch, |name| {
        let dropped = name.starts_with("guidance_in.")
            || name.starts_with("txt_in.individual_token_refiner.blocks.1.");
        (!dropped).then(|| name.to_string())
    });
    let weights = Weights::open(&file).unwrap();
    let inferred = HunyuanVideoConfig::infer_original(&weights, &file, tiny_rope()).unwrap();
    assert_eq!(
        inferred,
        HunyuanVideoConfig {
            guidance_embeds: false,
            num_refiner_layers: 1,
            ..tiny_config()
        }
    );
}

#[test]
fn original_shapes_that_cannot_be_inferred_are_errors_naming_them() {
    let scratch = Scratch::new("hunyuan-infer-bad");
    // No patch embedding.
    let file = rewritten_original(&scratch, |name| {
        (!name.starts_with("img_in.")).then(|| name.to_string())
    });
    let err = HunyuanVideoTransformer::<Cpu>::load_original(&file, tiny_rope(), &device())
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("cannot infer")
            && err.contains("img_in.proj.weight")
            && err.contains("original.safetensors"),
        "{err}"
    );
    // A QK norm that does not divide the hidden size.
    let file = rewritten_original(&scratch, |name| Some(name.to_string()));
    reshape_stored(&file, "double_blocks.0.img_attn_q_norm.weight", vec![2, 8]);
    let err = HunyuanVideoTransformer::<Cpu>::load_original(&file, tiny_rope(), &device())
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("double_blocks.0.img_attn_q_norm.weight") && err.contains("hidden size 32"),
        "{err}"
    );
}

#[test]
fn original_missing_key_is_an_error_naming_key_and_file() {
    let scratch = Scratch::new("hunyuan-original-missing");
    let key = "single_blocks.1.linear1.bias";
    let file = rewritten_original(&scratch, |name| (name != key).then(|| name.to_string()));
    let err = HunyuanVideoTransformer::<Cpu>::load_original(&file, tiny_rope(), &device())
        .unwrap_err()
        .to_string();
    assert!(
        err.contains(key) && err.contains("original.safetensors"),
        "{err}"
    );
}

#[test]
fn original_wrong_shape_fused_tensor_is_an_error_naming_key_and_file() {
    let scratch = Scratch::new("hunyuan-original-shape");
    let file = rewritten_original(&scratch, |name| Some(name.to_string()));
    // The fused q, k, v rows [96, 32] stored as [32, 96].
    let key = "double_blocks.1.txt_attn_qkv.weight";
    reshape_stored(&file, key, vec![32, 96]);
    let err = HunyuanVideoTransformer::<Cpu>::load_original(&file, tiny_rope(), &device())
        .unwrap_err()
        .to_string();
    assert!(
        err.contains(key) && err.contains("original.safetensors") && err.contains("[96, 32]"),
        "{err}"
    );
}

#[test]
fn original_layout_of_the_other_checkpoint_is_an_error() {
    let d = device();
    // A diffusers checkpoint read as the original layout names the original key it lacks.
    let weights = Weights::open(&fixture("hunyuan/tiny")).unwrap();
    let msg =
        HunyuanVideoTransformer::<Cpu>::from_weights(tiny_config(), &weights, Layout::Original, &d)
            .unwrap_err()
            .to_string();
    assert!(msg.contains("img_in.proj.weight"), "{msg}");
    // The original file with a configuration of fewer single blocks leaves tensors unused.
    let weights = Weights::open(&original_file()).unwrap();
    let fewer = HunyuanVideoConfig {
        num_single_layers: 1,
        ..tiny_config()
    };
    let msg = HunyuanVideoTransformer::<Cpu>::from_weights(fewer, &weights, Layout::Original, &d)
        .unwrap_err()
        .to_string();
    assert!(msg.contains("single_blocks.1."), "{msg}");
}
