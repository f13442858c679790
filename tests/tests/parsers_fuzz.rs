//! Property tests over what a user's files feed the parsers: damaged safetensors headers, config
//! files with any key set to any JSON value, damaged tokenizer files. Loading a pipeline folder
//! (or building a tokenizer and encoding with it) must answer `Ok` or an error, never panic.
//! The case counts bound the run time (seconds).

use std::{
    fs,
    path::{Path, PathBuf},
};

use dicache_tests::{Cpu, copy_tree, fixture};
use dit_pipeline::Pipeline;
use models_flux::FluxPipeline;
use models_hunyuan::HunyuanVideoPipeline;
use models_wan::WanPipeline;
use proptest::{
    prelude::*,
    test_runner::{Config, RngSeed},
};
use text_encoders::PromptTokenizer;

/// Cases per property: each loads a whole (tiny) pipeline, some 5-30 ms.
const CASES: u32 = 256;

/// `CASES` cases from a fixed seed, so every run (CI's included) checks the same inputs;
/// `PROPTEST_RNG_SEED=<n>` explores others.
fn config() -> Config {
    let default = Config::default();
    Config {
        cases: CASES,
        failure_persistence: None,
        rng_seed: match default.rng_seed {
            RngSeed::Random => RngSeed::Fixed(2026),
            chosen => chosen,
        },
        ..default
    }
}

/// Every file under `dir` whose name satisfies `keep`, sorted.
fn files(dir: &Path, keep: &dyn Fn(&str) -> bool) -> Vec<PathBuf> {
    let mut found = Vec::new();
    for entry in fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            found.extend(files(&path, keep));
        } else if keep(path.file_name().unwrap().to_str().unwrap()) {
            found.push(path);
        }
    }
    found.sort();
    found
}

/// Loads the pipeline folder `dir` as `P`; any outcome but a panic passes.
fn load<P: Pipeline<Cpu, N>, const N: usize>(dir: &Path) {
    let _ = P::load(dir, None, &Default::default());
}

/// The three fixture pipelines, by index, loaded from a damaged copy.
fn load_pipeline(which: usize, dir: &Path) {
    match which {
        0 => load::<FluxPipeline<Cpu>, 4>(dir),
        1 => load::<WanPipeline<Cpu>, 5>(dir),
        _ => load::<HunyuanVideoPipeline<Cpu>, 5>(dir),
    }
}

const PIPELINES: [&str; 3] = [
    "flux_pipeline/model",
    "wan_pipeline/model",
    "hunyuan_pipeline/model",
];

/// A scratch copy of fixture pipeline `which`.
fn copy_of(which: usize) -> (tempfile::TempDir, PathBuf) {
    let scratch = tempfile::tempdir().unwrap();
    let dir = scratch.path().join("model");
    copy_tree(&fixture(PIPELINES[which]), &dir);
    (scratch, dir)
}

/// JSON values a config key may be set to: the extremes of every type.
fn json_value() -> impl Strategy<Value = serde_json::Value> {
    use serde_json::{Value, json};
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        prop_oneof![
            Just(0i64),
            Just(-1),
            Just(1),
            Just(i64::MAX),
            Just(i64::MIN),
            Just(1 << 40),
            any::<i64>()
        ]
        .prop_map(|v| json!(v)),
        prop_oneof![
            Just(0.0f64),
            Just(-0.5),
            Just(1e300),
            Just(-1e-300),
            any::<f64>()
        ]
        .prop_filter("JSON numbers are finite", |v| v.is_finite())
        .prop_map(|v| json!(v)),
        "[a-z_]{0,12}".prop_map(Value::String),
        prop::collection::vec(-3i64..100_000, 0..5).prop_map(|v| json!(v)),
        Just(json!({"nested": {"x": 1}})),
    ]
}

proptest! {
    #![proptest_config(config())]

    /// Any key of any `*config*.json` of a fixture pipeline set to any value.
    #[test]
    fn configs_never_panic(
        which in 0usize..3,
        file_pick in any::<prop::sample::Index>(),
        key_pick in any::<prop::sample::Index>(),
        value in json_value(),
    ) {
        let (_scratch, dir) = copy_of(which);
        let configs = files(&dir, &|name| name.ends_with(".json") && name.contains("config"));
        let path = file_pick.get(&configs);
        let mut json: serde_json::Value =
            serde_json::from_str(&fs::read_to_string(path).unwrap()).unwrap();
        let keys: Vec<String> = json.as_object().unwrap().keys().cloned().collect();
        let key = key_pick.get(&keys).clone();
        json[key.as_str()] = value;
        fs::write(path, json.to_string()).unwrap();
        load_pipeline(which, &dir);
    }

    /// Bytes of a safetensors file's size prefix and header overwritten, or the file cut short.
    #[test]
    fn safetensors_headers_never_panic(
        which in 0usize..3,
        file_pick in any::<prop::sample::Index>(),
        edits in prop::collection::vec((0usize..512, any::<u8>()), 1..6),
        cut in prop::option::of(0usize..600),
    ) {
        let (_scratch, dir) = copy_of(which);
        let weights = files(&dir, &|name| name.ends_with(".safetensors"));
        let path = file_pick.get(&weights);
        let mut bytes = fs::read(path).unwrap();
        for (at, byte) in edits {
            if at < bytes.len() {
                bytes[at] = byte;
            }
        }
        if let Some(len) = cut {
            bytes.truncate(len);
        }
        fs::write(path, bytes).unwrap();
        load_pipeline(which, &dir);
    }

    /// A tokenizer file with bytes overwritten, cut short, or a JSON key set to any value;
    /// building the tokenizer and encoding a prompt with it must not panic.
    #[test]
    fn tokenizers_never_panic(
        folder in prop::sample::select(vec![
            "flux_pipeline/model/tokenizer",
            "flux_pipeline/model/tokenizer_2",
            "wan_pipeline/model/tokenizer",
            "hunyuan_pipeline/model/tokenizer",
            "hunyuan_pipeline/model/tokenizer_2",
        ]),
        key_pick in any::<prop::sample::Index>(),
        value in prop::option::of(json_value()),
        edits in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..4),
        max_length in 0usize..80,
    ) {
        let scratch = tempfile::tempdir().unwrap();
        copy_tree(&fixture(folder), scratch.path());
        let path = scratch.path().join("tokenizer.json");
        if path.exists() {
            let text = fs::read_to_string(&path).unwrap();
            let mut bytes = match value {
                Some(value) => {
                    let mut json: serde_json::Value = serde_json::from_str(&text).unwrap();
                    let keys: Vec<String> = json.as_object().unwrap().keys().cloned().collect();
                    json[key_pick.get(&keys).as_str()] = value;
                    json.to_string().into_bytes()
                }
                None => text.into_bytes(),
            };
            let len = bytes.len();
            for (at, byte) in edits {
                bytes[at.index(len)] = byte;
            }
            fs::write(&path, bytes).unwrap();
        }
        for build in [PromptTokenizer::t5, PromptTokenizer::clip] {
            if let Ok(tokenizer) = build(scratch.path(), max_length) {
                let _ = tokenizer.encode(&["a cat walks on the grass, ünïcödé ✓"]);
            }
        }
    }
}
