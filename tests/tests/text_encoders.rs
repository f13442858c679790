//! The text encoders and tokenizers against transformers (fixtures from
//! `fixtures/gen_text_encoders.py`): token ids, every layer's hidden states, final and pooled
//! outputs, errors naming the file or key on bad input, and the random models' layers.

use std::{
    collections::HashMap,
    fs,
    path::{Path, PathBuf},
};

use burn::{
    module::Module,
    tensor::{Int, Tensor, TensorData},
};
use dicache_tests::{Cpu, assert_close, fixture, load_fixture, quantized_values};
use dit_layers::{FromParams, LoadError, read_json};
use safetensors::{SafeTensors, tensor::TensorView};
use text_encoders::{
    ClipTextConfig, ClipTextModel, EosRule, InputError, PromptTokenizer, T5Config, T5EncoderModel,
    TokenizerError, relative_position_bucket,
};

const ATOL: f32 = 1e-5;
/// The T5 fixtures reach |h| ≈ 10 (gated products of random weights): there transformers' own
/// f32 result is 2.4e-5 from the f64 one (measured on these fixtures), so f32 noise is that large.
const T5_ATOL: f32 = 5e-5;
const RTOL: f32 = 1e-4;
const CLIP_MAX_LENGTH: usize = 77;
const T5_MAX_LENGTH: usize = 140;

fn expected() -> HashMap<String, TensorData> {
    load_fixture("text_encoders/expected.safetensors")
}

fn dir(name: &str) -> PathBuf {
    fixture(&format!("text_encoders/{name}"))
}

fn prompts(which: &str) -> Vec<String> {
    let path = dir("prompts.json");
    let json: serde_json::Value =
        serde_json::from_str(&fs::read_to_string(&path).expect("prompts.json")).unwrap();
    json[which]
        .as_array()
        .unwrap_or_else(|| panic!("{}: no {which:?} prompts", path.display()))
        .iter()
        .map(|p| p.as_str().unwrap().to_string())
        .collect()
}

fn ids_of(rows: &[Vec<u32>]) -> Vec<i64> {
    rows.iter().flatten().map(|&id| i64::from(id)).collect()
}

fn int_tensor(e: &HashMap<String, TensorData>, name: &str) -> Tensor<Cpu, 2, Int> {
    Tensor::from_data(e[name].clone(), &Default::default())
}

fn fixture_ints(e: &HashMap<String, TensorData>, name: &str) -> Vec<i64> {
    e[name].iter::<i64>().collect()
}

fn encode(folder: &Path, clip: bool, which: &str, max_length: usize) -> text_encoders::Tokens {
    let tokenizer = if clip {
        PromptTokenizer::clip(folder, max_length)
    } else {
        PromptTokenizer::t5(folder, max_length)
    }
    .unwrap_or_else(|e| panic!("{e}"));
    let prompts = prompts(which);
    let prompts: Vec<&str> = prompts.iter().map(String::as_str).collect();
    tokenizer.encode(&prompts).unwrap()
}

/// A scratch folder, emptied, unique to this process and `name`.
fn scratch(name: &str) -> PathBuf {
    let path = std::env::temp_dir().join(format!(
        "dicache-text-encoders-{}-{name}",
        std::process::id()
    ));
    let _ = fs::remove_dir_all(&path);
    fs::create_dir_all(&path).unwrap();
    path
}

/// A copy of the model folder `name` whose `model.safetensors` is `edit`ed: `edit` gets the
/// stored tensors as (name, shape, f32 values) and returns what to write.
fn edited_model(name: &str, edit: impl FnOnce(&mut Vec<(String, Vec<usize>, Vec<u8>)>)) -> PathBuf {
    let out = scratch(name);
    let src = dir(name);
    fs::copy(src.join("config.json"), out.join("config.json")).unwrap();
    let bytes = fs::read(src.join("model.safetensors")).unwrap();
    let st = SafeTensors::deserialize(&bytes).unwrap();
    let mut tensors: Vec<(String, Vec<usize>, Vec<u8>)> = st
        .tensors()
        .into_iter()
        .map(|(k, v)| (k, v.shape().to_vec(), v.data().to_vec()))
        .collect();
    edit(&mut tensors);
    let views: Vec<(String, TensorView<'_>)> = tensors
        .iter()
        .map(|(k, shape, data)| {
            let view = TensorView::new(safetensors::Dtype::F32, shape.clone(), data).unwrap();
            (k.clone(), view)
        })
        .collect();
    safetensors::serialize_to_file(views, None, &out.join("model.safetensors")).unwrap();
    out
}

#[test]
fn clip_tokenizer_from_vocab_and_merges_matches_transformers() {
    let e = expected();
    let tokens = encode(&dir("tokenizer"), true, "clip", CLIP_MAX_LENGTH);
    assert!(tokens.ids.iter().all(|row| row.len() == CLIP_MAX_LENGTH));
    assert_eq!(ids_of(&tokens.ids), fixture_ints(&e, "clip.input_ids"));
}

#[test]
fn clip_tokenizer_json_matches_transformers() {
    let e = expected();
    let tokens = encode(&dir("clip_tokenizer_json"), true, "clip", CLIP_MAX_LENGTH);
    assert_eq!(ids_of(&tokens.ids), fixture_ints(&e, "clip.input_ids"));
}

#[test]
fn t5_tokenizer_matches_transformers() {
    let e = expected();
    let tokens = encode(&dir("tokenizer_2"), false, "t5", T5_MAX_LENGTH);
    assert!(tokens.ids.iter().all(|row| row.len() == T5_MAX_LENGTH));
    assert_eq!(ids_of(&tokens.ids), fixture_ints(&e, "t5.input_ids"));
    assert_eq!(ids_of(&tokens.mask), fixture_ints(&e, "t5.attention_mask"));
}

fn check_clip(name: &str) {
    let e = expected();
    let device = Default::default();
    let model = ClipTextModel::<Cpu>::load(&dir(name), &device).unwrap_or_else(|e| panic!("{e}"));
    let ids = int_tensor(&e, "clip.input_ids");
    let out = model.forward(ids).unwrap();
    assert_eq!(out.hidden_states.len(), model.layers.len() + 1);
    for (i, h) in out.hidden_states.into_iter().enumerate() {
        let key = match i {
            0 => format!("{name}.embeddings"),
            _ => format!("{name}.layers.{}", i - 1),
        };
        assert_close(h, &e[&key], ATOL, RTOL, &key);
    }
    let key = format!("{name}.last_hidden_state");
    assert_close(out.last_hidden_state, &e[&key], ATOL, RTOL, &key);
    let key = format!("{name}.pooled");
    assert_close(out.pooled, &e[&key], ATOL, RTOL, &key);
}

#[test]
fn clip_quick_gelu_legacy_eos_matches_transformers() {
    check_clip("text_encoder");
}

#[test]
fn clip_gelu_first_eos_matches_transformers() {
    check_clip("clip_gelu");
}

#[test]
fn eos_rules_pick_transformers_positions() {
    let ids = [5, 9, 3, 9, 7];
    assert_eq!(EosRule::LargestId.position(&ids), 1);
    assert_eq!(EosRule::FirstOf(7).position(&ids), 4);
    assert_eq!(EosRule::FirstOf(9).position(&ids), 1);
    assert_eq!(EosRule::FirstOf(4).position(&ids), 0);
}

fn check_t5(name: &str, masked: bool) {
    let e = expected();
    let device = Default::default();
    let model = T5EncoderModel::<Cpu>::load(&dir(name), &device).unwrap_or_else(|e| panic!("{e}"));
    let ids = int_tensor(&e, "t5.input_ids");
    let mask = masked.then(|| int_tensor(&e, "t5.attention_mask"));
    let out = model
        .forward_hidden_states(ids.clone(), mask.clone())
        .unwrap();
    assert_eq!(out.hidden_states.len(), model.block.len() + 1);
    for (i, h) in out.hidden_states.into_iter().enumerate() {
        let key = match i {
            0 => format!("{name}.embeddings"),
            _ => format!("{name}.layers.{}", i - 1),
        };
        assert_close(h, &e[&key], T5_ATOL, RTOL, &key);
    }
    let key = format!("{name}.last_hidden_state");
    assert_close(out.last_hidden_state, &e[&key], T5_ATOL, RTOL, &key);
    let plain = model.forward(ids, mask).unwrap();
    assert_close(plain, &e[&key], T5_ATOL, RTOL, &format!("{key} (forward)"));
}

#[test]
fn t5_gated_gelu_unmasked_matches_transformers() {
    check_t5("text_encoder_2", false);
}

#[test]
fn t5_relu_masked_embed_tokens_matches_transformers() {
    check_t5("t5_relu", true);
}

#[test]
fn umt5_masked_matches_transformers() {
    check_t5("umt5", true);
}

#[test]
fn relative_position_buckets_match_transformers() {
    let e = expected();
    let relative = fixture_ints(&e, "t5.relative_position");
    for (buckets, max_distance, key) in [
        (32, 128, "t5.buckets_32_128"),
        (64, 256, "t5.buckets_64_256"),
    ] {
        let ours: Vec<i64> = relative
            .iter()
            .map(|&r| relative_position_bucket(r, buckets, max_distance) as i64)
            .collect();
        assert_eq!(ours, fixture_ints(&e, key), "{key}");
    }
}

#[test]
fn missing_tokenizer_file_is_named() {
    // A model folder holds no tokenizer files.
    let folder = dir("text_encoder");
    let err = PromptTokenizer::t5(&folder, T5_MAX_LENGTH).unwrap_err();
    assert!(matches!(err, TokenizerError::Load { .. }), "{err:?}");
    assert!(err.to_string().contains("tokenizer.json"), "{err}");
    let err = PromptTokenizer::clip(&folder, CLIP_MAX_LENGTH).unwrap_err();
    assert!(err.to_string().contains("vocab.json"), "{err}");
}

#[test]
fn unknown_pad_token_is_named() {
    let folder = scratch("bad_pad");
    fs::copy(
        dir("tokenizer_2").join("tokenizer.json"),
        folder.join("tokenizer.json"),
    )
    .unwrap();
    fs::write(
        folder.join("tokenizer_config.json"),
        r#"{"pad_token": "<nope>"}"#,
    )
    .unwrap();
    let err = PromptTokenizer::t5(&folder, T5_MAX_LENGTH).unwrap_err();
    assert!(
        matches!(&err, TokenizerError::MissingToken { token, .. } if token == "<nope>"),
        "{err:?}"
    );
}

#[test]
fn missing_weight_is_named() {
    let key = "text_model.encoder.layers.1.mlp.fc2.weight";
    let folder = edited_model("text_encoder", |t| t.retain(|(k, _, _)| k != key));
    let err = ClipTextModel::<Cpu>::load(&folder, &Default::default()).unwrap_err();
    assert!(
        matches!(&err, LoadError::MissingKey { key: k, .. } if k == "encoder.layers.1.mlp.fc2.weight"),
        "{err:?}"
    );
}

#[test]
fn wrong_shape_weight_is_named() {
    let key = "encoder.block.1.layer.0.SelfAttention.relative_attention_bias.weight";
    let folder = edited_model("umt5", |t| {
        let entry = t.iter_mut().find(|(k, _, _)| k == key).unwrap();
        let [buckets, heads] = [entry.1[0], entry.1[1]];
        entry.1 = vec![buckets / 2, heads];
        entry.2.truncate(buckets / 2 * heads * 4);
    });
    let err = T5EncoderModel::<Cpu>::load(&folder, &Default::default()).unwrap_err();
    assert!(
        matches!(&err, LoadError::Shape { key: k, path, .. }
            if k == key && path.ends_with("model.safetensors")),
        "{err:?}"
    );
}

#[test]
fn unused_weights_are_an_error() {
    // A T5 checkpoint whose block 1 also holds a bias table: the configuration (T5, bias in
    // block 0 only) does not describe it.
    let extra = "encoder.block.1.layer.0.SelfAttention.relative_attention_bias.weight";
    let folder = edited_model("text_encoder_2", |t| {
        let table = t
            .iter()
            .find(|(k, _, _)| {
                k.starts_with("encoder.block.0.") && k.ends_with("relative_attention_bias.weight")
            })
            .unwrap()
            .clone();
        t.push((extra.to_string(), table.1, table.2));
    });
    let err = T5EncoderModel::<Cpu>::load(&folder, &Default::default()).unwrap_err();
    assert!(
        matches!(&err, LoadError::Unused { examples, .. } if examples == &[extra.to_string()]),
        "{err:?}"
    );
}

#[test]
fn unsupported_settings_name_the_config() {
    let folder = scratch("bad_config");
    let config = fs::read_to_string(dir("text_encoder").join("config.json")).unwrap();
    fs::write(
        folder.join("config.json"),
        config.replace("\"quick_gelu\"", "\"tanh\""),
    )
    .unwrap();
    fs::copy(
        dir("text_encoder").join("model.safetensors"),
        folder.join("model.safetensors"),
    )
    .unwrap();
    let err = ClipTextModel::<Cpu>::load(&folder, &Default::default()).unwrap_err();
    assert!(
        matches!(&err, LoadError::Config { path, message }
            if path.ends_with("config.json") && message.contains("tanh")),
        "{err:?}"
    );

    let config = fs::read_to_string(dir("umt5").join("config.json")).unwrap();
    fs::write(
        folder.join("config.json"),
        config.replace("\"gated-gelu\"", "\"gated-gelu-x\""),
    )
    .unwrap();
    let err = T5EncoderModel::<Cpu>::load(&folder, &Default::default()).unwrap_err();
    assert!(
        matches!(&err, LoadError::Config { message, .. } if message.contains("gated-gelu-x")),
        "{err:?}"
    );
}

#[test]
fn bad_token_ids_are_errors() {
    let device = Default::default();
    let clip = ClipTextModel::<Cpu>::load(&dir("text_encoder"), &device).unwrap();
    let vocab = clip.embeddings.token_embedding.dims()[0];
    let ids = Tensor::<Cpu, 2, Int>::from_data(
        TensorData::new(vec![0i64, vocab as i64], [1, 2]),
        &device,
    );
    assert_eq!(
        clip.forward(ids).unwrap_err(),
        InputError::TokenOutOfRange {
            id: vocab as i64,
            vocab_size: vocab
        }
    );
    let long = Tensor::<Cpu, 2, Int>::zeros([1, CLIP_MAX_LENGTH + 1], &device);
    assert_eq!(
        clip.forward(long).unwrap_err(),
        InputError::TooLong {
            len: CLIP_MAX_LENGTH + 1,
            max: CLIP_MAX_LENGTH
        }
    );

    let t5 = T5EncoderModel::<Cpu>::load(&dir("umt5"), &device).unwrap();
    let ids = Tensor::<Cpu, 2, Int>::zeros([2, 5], &device);
    let mask = Tensor::<Cpu, 2, Int>::ones([2, 4], &device);
    assert_eq!(
        t5.forward(ids, Some(mask)).unwrap_err(),
        InputError::MaskShape {
            mask: [2, 4],
            ids: [2, 5]
        }
    );
}

#[test]
fn random_models_have_the_checkpoint_layers_and_shapes() {
    let device = Default::default();
    let ids = Tensor::<Cpu, 2, Int>::from_data(
        TensorData::new(vec![3i64, 1, 4, 1, 5, 9, 2, 6], [2, 4]),
        &device,
    );
    let name = "text_encoder";
    let config: ClipTextConfig = read_json(&dir(name).join("config.json")).unwrap();
    let clip = ClipTextModel::<Cpu>::random(&config, &device).unwrap();
    let loaded = ClipTextModel::<Cpu>::load(&dir(name), &device).unwrap();
    assert_eq!(clip.num_params(), loaded.num_params(), "{name}");
    let out = clip.forward(ids.clone()).unwrap();
    assert_eq!(out.last_hidden_state.dims(), [2, 4, config.hidden_size]);
    assert_eq!(out.pooled.dims(), [2, config.hidden_size]);
    assert_eq!(out.hidden_states.len(), config.num_hidden_layers + 1);

    for name in ["text_encoder_2", "umt5"] {
        let config: T5Config = read_json(&dir(name).join("config.json")).unwrap();
        let t5 = T5EncoderModel::<Cpu>::random(&config, &device).unwrap();
        let loaded = T5EncoderModel::<Cpu>::load(&dir(name), &device).unwrap();
        assert_eq!(t5.num_params(), loaded.num_params(), "{name}");
        let out = t5.forward(ids.clone(), None).unwrap();
        assert_eq!(out.dims(), [2, 4, config.d_model], "{name}");
    }
}

/// llama.cpp `t5encoder` GGUF files (city96's layout; `fixtures/gen_gguf_t5.py`) with the
/// configuration of a transformers folder: T5 and umT5 equal transformers running the weights
/// the `gguf` package decodes, with the matrices kept quantized.
#[test]
fn t5_encoders_from_llama_cpp_gguf_files_match_transformers() {
    let device = Default::default();
    for name in ["t5", "umt5"] {
        let config = fixture(&format!("gguf/{name}"));
        let file = fixture(&format!("gguf/{name}-Q8_0.gguf"));
        let model = T5EncoderModel::<Cpu>::load_file(&config, &file, &device)
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        let c: T5Config = dit_layers::read_config(&config.join("config.json")).unwrap();
        let dense = T5EncoderModel::<Cpu>::random(&c, &device)
            .unwrap()
            .num_params();
        // The matrices stay quantized; the token embedding (a lookup table, Q8_0 in the file)
        // is decoded as it loads.
        assert!(quantized_values(&file) > dense / 2, "{name}");
        assert_eq!(
            model.num_params() + quantized_values(&file),
            dense + c.vocab_size * c.d_model,
            "{name}"
        );
        let e = load_fixture(&format!("gguf/{name}-Q8_0.safetensors"));
        let out = model
            .forward(
                int_tensor(&e, "input_ids"),
                Some(int_tensor(&e, "attention_mask")),
            )
            .unwrap();
        let what = format!("{name} GGUF last_hidden_state");
        assert_close(out, &e["last_hidden_state"], T5_ATOL, RTOL, &what);
    }
    // A transformer's GGUF file is not a T5 encoder.
    let err = T5EncoderModel::<Cpu>::load_file(
        &fixture("gguf/t5"),
        &fixture("gguf/flux-Q8_0.gguf"),
        &device,
    )
    .err()
    .unwrap();
    let msg = err.to_string();
    assert!(matches!(err, LoadError::Architecture { .. }), "{msg}");
    assert!(msg.contains("t5encoder") && msg.contains("flux"), "{msg}");
}
