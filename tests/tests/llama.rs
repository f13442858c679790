//! The LLaMA text encoder and HunyuanVideo's prompt encoding against transformers and
//! diffusers (fixtures from `fixtures/gen_llama.py`): token ids of the templated prompts, the
//! crop, every layer's hidden states in both checkpoint layouts, the prompt embeddings and
//! masks, errors on bad input, and the random model's layers.

use std::{
    collections::HashMap,
    fs,
    path::{Path, PathBuf},
};

use burn::{
    module::Module,
    tensor::{Int, Tensor, TensorData},
};
use dicache_tests::{Cpu, assert_close, fixture, load_fixture};
use dit_layers::{FromParams, LoadError, read_json};
use safetensors::{SafeTensors, tensor::TensorView};
use serde_json::Value;
use text_encoders::{
    InputError, LlamaConfig, LlamaModel, LlamaPromptEncoder, LlamaPromptError, PromptTemplate,
    PromptTokenizer, TokenizerError,
};

const ATOL: f32 = 1e-5;
const RTOL: f32 = 1e-4;

fn expected() -> HashMap<String, TensorData> {
    load_fixture("llama/expected.safetensors")
}

fn dir(name: &str) -> PathBuf {
    fixture(&format!("llama/{name}"))
}

fn settings() -> Value {
    let path = dir("prompts.json");
    serde_json::from_str(&fs::read_to_string(&path).expect("prompts.json")).unwrap()
}

fn prompts() -> Vec<String> {
    settings()["prompts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p.as_str().unwrap().to_string())
        .collect()
}

/// The fixture's prompt encoding `name` (`"default"` or `"computed"`): the encoder built
/// as the pipeline would be, and its `max_sequence_length`.
fn case(name: &str) -> (LlamaPromptEncoder, usize) {
    let settings = settings();
    let case = settings["cases"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == name)
        .unwrap_or_else(|| panic!("prompts.json: no case {name:?}"))
        .clone();
    let max_len = case["max_sequence_length"].as_u64().unwrap() as usize;
    let skip = case["skip"].as_u64().unwrap() as usize;
    let encoder = if name == "default" {
        assert_eq!(skip, 2, "the default case is the pipeline's default");
        LlamaPromptEncoder::hunyuan_video(&dir("tokenizer"), max_len)
    } else {
        let crop_start = case["crop_start"].as_u64().map(|c| c as usize);
        let template = PromptTemplate::new(case["template"].as_str().unwrap(), crop_start).unwrap();
        LlamaPromptEncoder::new(&dir("tokenizer"), template, max_len, skip)
    }
    .unwrap_or_else(|e| panic!("{e}"));
    (encoder, max_len)
}

fn ints(e: &HashMap<String, TensorData>, name: &str) -> Vec<i64> {
    e[name].iter::<i64>().collect()
}

fn rows(rows: &[Vec<u32>]) -> Vec<i64> {
    rows.iter().flatten().map(|&id| i64::from(id)).collect()
}

fn int_tensor(e: &HashMap<String, TensorData>, name: &str) -> Tensor<Cpu, 2, Int> {
    Tensor::from_data(e[name].clone(), &Default::default())
}

fn load(name: &str) -> LlamaModel<Cpu> {
    LlamaModel::load(&dir(name), &Default::default()).unwrap_or_else(|e| panic!("{e}"))
}

fn prompt_refs(prompts: &[String]) -> Vec<&str> {
    prompts.iter().map(String::as_str).collect()
}

/// A scratch folder, emptied, unique to this process and `name`.
fn scratch(name: &str) -> PathBuf {
    let path = std::env::temp_dir().join(format!("dicache-llama-{}-{name}", std::process::id()));
    let _ = fs::remove_dir_all(&path);
    fs::create_dir_all(&path).unwrap();
    path
}

/// A copy of the folder `name` with `edit` applied to its `config.json` text and to its
/// tensors (name, shape, f32 bytes).
fn edited(
    name: &str,
    config: impl FnOnce(String) -> String,
    tensors: impl FnOnce(&mut Vec<(String, Vec<usize>, Vec<u8>)>),
) -> PathBuf {
    let out = scratch(name);
    let src = dir(name);
    let text = fs::read_to_string(src.join("config.json")).unwrap();
    fs::write(out.join("config.json"), config(text)).unwrap();
    let bytes = fs::read(src.join("model.safetensors")).unwrap();
    let st = SafeTensors::deserialize(&bytes).unwrap();
    let mut stored: Vec<(String, Vec<usize>, Vec<u8>)> = st
        .tensors()
        .into_iter()
        .map(|(k, v)| (k, v.shape().to_vec(), v.data().to_vec()))
        .collect();
    tensors(&mut stored);
    let views: Vec<(String, TensorView<'_>)> = stored
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
fn templated_prompts_tokenize_as_transformers() {
    let e = expected();
    let prompts = prompts();
    for name in ["default", "computed"] {
        let (encoder, max_len) = case(name);
        let crop = ints(&e, &format!("{name}.crop_start"))[0] as usize;
        assert_eq!(encoder.crop_start(), crop, "{name}: crop_start");
        let tokens = encoder.tokenize(&prompt_refs(&prompts)).unwrap();
        assert!(
            tokens.ids.iter().all(|r| r.len() == crop + max_len),
            "{name}"
        );
        assert_eq!(
            rows(&tokens.ids),
            ints(&e, &format!("{name}.input_ids")),
            "{name}: ids"
        );
        assert_eq!(
            rows(&tokens.mask),
            ints(&e, &format!("{name}.attention_mask")),
            "{name}: mask"
        );
    }
    // The default template keeps diffusers' crop_start; the other one is computed (as the
    // pipeline does) from its own tokens.
    assert_eq!(case("default").0.crop_start(), 95);
}

#[test]
fn rope_frequencies_match_transformers_llama3_scaling() {
    let e = expected();
    let model = load("text_encoder");
    let ours = model.rope.inv_freq().to_vec();
    let reference: Vec<f32> = e["rope.inv_freq"].iter::<f32>().collect();
    assert_eq!(ours.len(), reference.len());
    for (j, (a, b)) in ours.iter().zip(&reference).enumerate() {
        assert!((a - b).abs() <= 1e-6 * b.abs(), "inv_freq[{j}]: {a} vs {b}");
    }
}

fn check_hidden_states(name: &str) {
    let e = expected();
    let model = load(name);
    let ids = int_tensor(&e, "default.input_ids");
    let mask = int_tensor(&e, "default.attention_mask");
    let out = model.forward(ids.clone(), mask.clone()).unwrap();
    assert_eq!(out.hidden_states.len(), model.layers.len() + 1);
    for (i, h) in out.hidden_states.into_iter().enumerate() {
        let key = format!("hidden_states.{i}");
        assert_close(h, &e[&key], ATOL, RTOL, &format!("{name} {key}"));
    }
    let key = format!("hidden_states.{}", model.layers.len());
    assert_close(
        out.last_hidden_state,
        &e[&key],
        ATOL,
        RTOL,
        "last_hidden_state",
    );
    // A single hidden state, running only the layers it needs.
    for i in 0..=model.layers.len() {
        let h = model.hidden_state(ids.clone(), mask.clone(), i).unwrap();
        let key = format!("hidden_states.{i}");
        assert_close(
            h,
            &e[&key],
            ATOL,
            RTOL,
            &format!("{name} hidden_state({i})"),
        );
    }
}

#[test]
fn hidden_states_match_transformers() {
    check_hidden_states("text_encoder");
}

#[test]
fn transformers4_config_and_model_prefix_load_the_same_model() {
    check_hidden_states("text_encoder_v4");
}

#[test]
fn prompt_embeds_match_the_hunyuan_video_pipeline() {
    let e = expected();
    let model = load("text_encoder");
    let prompts = prompts();
    for name in ["default", "computed"] {
        let (encoder, max_len) = case(name);
        let out = encoder
            .encode(&model, &prompt_refs(&prompts), &Default::default())
            .unwrap();
        assert_eq!(out.embeds.dims()[1], max_len);
        let key = format!("{name}.prompt_embeds");
        assert_close(out.embeds, &e[&key], ATOL, RTOL, &key);
        let mask: Vec<i64> = out.mask.into_data().iter::<i64>().collect();
        assert_eq!(
            mask,
            ints(&e, &format!("{name}.prompt_attention_mask")),
            "{name}"
        );
    }
    // The truncated prompt fills the mask; the short one is padded.
    let mask = ints(&e, "default.prompt_attention_mask");
    let half = mask.len() / 2;
    assert!(mask[..half].contains(&0) && !mask[half..].contains(&0));
}

#[test]
fn bad_token_ids_and_masks_are_errors() {
    let device = Default::default();
    let model = load("text_encoder");
    let vocab = model.embed_tokens.dims()[0];
    let ids = Tensor::<Cpu, 2, Int>::from_data(
        TensorData::new(vec![0i64, vocab as i64], [1, 2]),
        &device,
    );
    let mask = Tensor::<Cpu, 2, Int>::ones([1, 2], &device);
    assert_eq!(
        model.forward(ids, mask).unwrap_err(),
        InputError::TokenOutOfRange {
            id: vocab as i64,
            vocab_size: vocab
        }
    );
    let ids = Tensor::<Cpu, 2, Int>::zeros([2, 5], &device);
    let mask = Tensor::<Cpu, 2, Int>::ones([2, 4], &device);
    assert_eq!(
        model.forward(ids, mask).unwrap_err(),
        InputError::MaskShape {
            mask: [2, 4],
            ids: [2, 5]
        }
    );
    let (encoder, _) = case("default");
    let err = encoder.encode(&model, &[], &device).unwrap_err();
    assert!(
        matches!(err, LlamaPromptError::Input(InputError::Empty)),
        "{err:?}"
    );
}

#[test]
fn bad_prompt_settings_are_errors() {
    for bad in ["no placeholder", "{} and {}", "{} with {braces}"] {
        let err = PromptTemplate::new(bad, None).unwrap_err();
        assert!(
            matches!(err, LlamaPromptError::Template { .. }),
            "{bad}: {err:?}"
        );
    }
    let err = LlamaPromptEncoder::hunyuan_video(&dir("tokenizer"), 0).unwrap_err();
    assert!(matches!(err, LlamaPromptError::NoTokens), "{err:?}");

    let model = load("text_encoder");
    let layers = model.layers.len();
    let template = PromptTemplate::hunyuan_video();
    let encoder = LlamaPromptEncoder::new(&dir("tokenizer"), template, 8, layers + 1).unwrap();
    let err = encoder
        .encode(&model, &["a cat"], &Default::default())
        .unwrap_err();
    assert!(
        matches!(err, LlamaPromptError::Skip { skip, layers: l } if skip == layers + 1 && l == layers),
        "{err:?}"
    );
}

#[test]
fn tokenizer_folder_errors_are_named() {
    // A model folder has no tokenizer.json.
    let err = LlamaPromptEncoder::hunyuan_video(&dir("text_encoder"), 8).unwrap_err();
    assert!(
        matches!(&err, LlamaPromptError::Tokenizer(TokenizerError::Load { path, .. })
            if path.ends_with("tokenizer.json")),
        "{err:?}"
    );
    let folder = scratch("left_padding");
    fs::copy(
        dir("tokenizer").join("tokenizer.json"),
        folder.join("tokenizer.json"),
    )
    .unwrap();
    fs::write(
        folder.join("tokenizer_config.json"),
        r#"{"padding_side": "left"}"#,
    )
    .unwrap();
    let err = PromptTokenizer::llama(&folder, 8).unwrap_err();
    assert!(
        matches!(&err, TokenizerError::Load { path, message }
            if path.ends_with("tokenizer_config.json") && message.contains("left")),
        "{err:?}"
    );
    fs::write(
        folder.join("tokenizer_config.json"),
        r#"{"pad_token": "<nope>"}"#,
    )
    .unwrap();
    let err = PromptTokenizer::llama(&folder, 8).unwrap_err();
    assert!(
        matches!(&err, TokenizerError::MissingToken { token, .. } if token == "<nope>"),
        "{err:?}"
    );
}

fn load_err(folder: &Path) -> LoadError {
    LlamaModel::<Cpu>::load(folder, &Default::default()).unwrap_err()
}

#[test]
fn damaged_checkpoints_are_named() {
    let key = "layers.1.self_attn.k_proj.weight";
    let folder = edited("text_encoder", |c| c, |t| t.retain(|(k, _, _)| k != key));
    let err = load_err(&folder);
    assert!(
        matches!(&err, LoadError::MissingKey { key: k, .. } if k == key),
        "{err:?}"
    );

    // A LlamaForCausalLM-style extra tensor the encoder does not use.
    let folder = edited(
        "text_encoder",
        |c| c,
        |t| {
            let embed = t
                .iter()
                .find(|(k, _, _)| k == "embed_tokens.weight")
                .unwrap()
                .clone();
            t.push(("lm_head.weight".to_string(), embed.1, embed.2));
        },
    );
    let err = load_err(&folder);
    assert!(
        matches!(&err, LoadError::Unused { examples, .. } if examples == &["lm_head.weight".to_string()]),
        "{err:?}"
    );

    // Four key/value heads where the checkpoint has two.
    let folder = edited(
        "text_encoder",
        |c| c.replace("\"num_key_value_heads\": 2", "\"num_key_value_heads\": 4"),
        |_| {},
    );
    let err = load_err(&folder);
    assert!(
        matches!(&err, LoadError::Shape { key, .. } if key == "layers.0.self_attn.k_proj.weight"),
        "{err:?}"
    );
}

#[test]
fn unsupported_settings_name_the_config() {
    for (from, to, what) in [
        ("\"llama3\"", "\"yarn\"", "yarn"),
        (
            "\"num_key_value_heads\": 2",
            "\"num_key_value_heads\": 3",
            "num_key_value_heads",
        ),
        ("\"silu\"", "\"tanh\"", "tanh"),
        ("\"low_freq_factor\": 1.0,", "", "low_freq_factor"),
    ] {
        let folder = edited("text_encoder", |c| c.replace(from, to), |_| {});
        let err = load_err(&folder);
        assert!(
            matches!(&err, LoadError::Config { path, message }
                if path.ends_with("config.json") && message.contains(what)),
            "{what}: {err:?}"
        );
    }
}

#[test]
fn random_model_has_the_checkpoint_layers_and_shapes() {
    let device = Default::default();
    let config: LlamaConfig = read_json(&dir("text_encoder").join("config.json")).unwrap();
    let model = LlamaModel::<Cpu>::random(&config, &device).unwrap();
    assert_eq!(model.num_params(), load("text_encoder").num_params());
    let ids = Tensor::<Cpu, 2, Int>::from_data(
        TensorData::new(vec![3i64, 1, 4, 1, 5, 9, 2, 6], [2, 4]),
        &device,
    );
    let mask = Tensor::<Cpu, 2, Int>::ones([2, 4], &device);
    let out = model.forward(ids, mask).unwrap();
    assert_eq!(out.last_hidden_state.dims(), [2, 4, config.hidden_size]);
    assert_eq!(out.hidden_states.len(), config.num_hidden_layers + 1);
}
