//! `cargo xtask run` given damaged or extreme inputs, one table per pipeline: every row must
//! exit with an error that names the culprit, never panic, and leave the output folder as it
//! was (the existing output file unchanged, nothing new beside it). A few rows check that what
//! users expect to work does: JPEG and WebP outputs, half precision, and a copied mini model
//! running at its own settings.

use std::{
    fs,
    path::{Path, PathBuf},
    process::Command,
};

use dicache_tests::copy_tree;
use safetensors::{Dtype, SafeTensors, tensor::TensorView};

/// What an existing output holds before each row; a row must leave it so.
const KEPT: &[u8] = b"an earlier output the failed run must not touch";

/// A scratch folder for one row: a copy of a pipeline folder to damage, and an output folder
/// holding one earlier output.
struct Row {
    dir: tempfile::TempDir,
}

impl Row {
    /// A copy of the pipeline folder `source` (`mini-models/flux-mini`, a fixture), and an
    /// output folder with `out/existing.<extension>`.
    fn new(source: &Path, extension: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        copy_tree(source, &dir.path().join("model"));
        fs::create_dir(dir.path().join("out")).unwrap();
        fs::write(dir.path().join(format!("out/existing.{extension}")), KEPT).unwrap();
        Self { dir }
    }

    fn model(&self) -> PathBuf {
        self.dir.path().join("model")
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    /// Runs `cargo xtask run <args>`, where `$M` stands for the model copy and `$D` for the
    /// scratch folder, and returns (success, stderr).
    fn run(&self, args: &[&str]) -> (bool, String) {
        let args: Vec<String> = args
            .iter()
            .map(|a| {
                a.replace("$M", self.model().to_str().unwrap())
                    .replace("$D", self.dir.path().to_str().unwrap())
            })
            .collect();
        let out = Command::new(env!("CARGO_BIN_EXE_xtask"))
            .arg("run")
            .args(&args)
            .env("RUST_BACKTRACE", "0")
            .output()
            .unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    /// Asserts that `args` fail with an error holding every one of `named` and leave the
    /// output folder as it was.
    fn fails(&self, label: &str, args: &[&str], named: &[&str]) {
        let (ok, stderr) = self.run(args);
        assert!(!ok, "{label}: exited 0\n{stderr}");
        assert!(!stderr.contains("panicked"), "{label}: panicked\n{stderr}");
        for name in named {
            assert!(
                stderr.contains(name),
                "{label}: the error does not name {name:?}\n{stderr}"
            );
        }
        let files: Vec<_> = fs::read_dir(self.path("out"))
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        assert_eq!(
            files.len(),
            1,
            "{label}: the output folder now holds {files:?}"
        );
        let existing = self.path("out").join(&files[0]);
        assert_eq!(
            fs::read(existing).unwrap(),
            KEPT,
            "{label}: the earlier output changed"
        );
    }
}

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// Rewrites the JSON file `path` with `key` set to `value` (raw JSON).
fn set_json(path: &Path, key: &str, value: &str) {
    let mut json: serde_json::Value =
        serde_json::from_str(&fs::read_to_string(path).unwrap()).unwrap();
    json[key] = serde_json::from_str(value).unwrap();
    fs::write(path, json.to_string()).unwrap();
}

/// Rewrites the safetensors file `path` with the first value of the f32 tensor `key` set to
/// `value`.
fn set_first_value(path: &Path, key: &str, value: f32) {
    let bytes = fs::read(path).unwrap();
    let st = SafeTensors::deserialize(&bytes).unwrap();
    let mut data: Vec<(String, Dtype, Vec<usize>, Vec<u8>)> = st
        .tensors()
        .into_iter()
        .map(|(name, v)| (name, v.dtype(), v.shape().to_vec(), v.data().to_vec()))
        .collect();
    let (_, dtype, _, values) = data.iter_mut().find(|(n, ..)| n == key).unwrap();
    assert_eq!(*dtype, Dtype::F32, "{key}");
    values[..4].copy_from_slice(&value.to_le_bytes());
    write_tensors(path, &data);
}

fn write_tensors(path: &Path, tensors: &[(String, Dtype, Vec<usize>, Vec<u8>)]) {
    let views: Vec<(String, TensorView)> = tensors
        .iter()
        .map(|(n, d, s, b)| (n.clone(), TensorView::new(*d, s.clone(), b).unwrap()))
        .collect();
    safetensors::serialize_to_file(views, None, path).unwrap();
}

/// A noise file holding one tensor "latents" of `shape`, `dtype` and raw `bytes`.
fn noise_file(path: &Path, dtype: Dtype, shape: Vec<usize>, bytes: Vec<u8>) {
    write_tensors(path, &[("latents".into(), dtype, shape, bytes)]);
}

/// FLUX-mini at 64x64, two steps, writing `$D/out/existing.png`.
const FLUX: &[&str] = &[
    "flux",
    "--prompt",
    "a red circle on a blue background",
    "--model",
    "$M",
    "--width",
    "64",
    "--height",
    "64",
    "--steps",
    "2",
    "--out",
    "$D/out/existing.png",
];

fn flux(extra: &[&'static str]) -> Vec<&'static str> {
    with(FLUX, extra)
}

/// The command `base` (a subcommand, then flag-value pairs) with the flags of `extra` added,
/// replacing those of `base` they name (clap takes each flag once).
fn with<'a>(base: &[&'a str], extra: &[&'a str]) -> Vec<&'a str> {
    let flag = |arg: &str| arg.split('=').next().unwrap().to_string();
    let given: Vec<String> = extra
        .iter()
        .filter(|a| a.starts_with("--"))
        .map(|a| flag(a))
        .collect();
    let mut args = vec![base[0]];
    for pair in base[1..].chunks(2) {
        if !given.contains(&flag(pair[0])) {
            args.extend_from_slice(pair);
        }
    }
    args.extend_from_slice(extra);
    args
}

#[test]
fn flux_bad_inputs_are_named_errors_that_touch_no_output() {
    let mini = workspace().join("mini-models/flux-mini");
    let row = || Row::new(&mini, "png");
    let cases: &[(&str, Vec<&str>, &[&str])] = &[
        (
            "huge size",
            flux(&["--width", "100000", "--height", "100000"]),
            &["100000x100000", "tokens"],
        ),
        (
            "4096 square",
            flux(&["--width", "4096", "--height", "4096"]),
            &["4096x4096", "at most"],
        ),
        (
            "a long side",
            flux(&["--width", "128", "--height", "100000"]),
            &["128x100000"],
        ),
        (
            "width not a multiple",
            flux(&["--width", "100"]),
            &["multiples of 16"],
        ),
        (
            "a billion steps",
            flux(&["--steps", "1000000000"]),
            &["steps", "1000"],
        ),
        ("zero steps", flux(&["--steps", "0"]), &["steps"]),
        (
            "a new output folder is not made for a failing run",
            flux(&[
                "--steps",
                "0",
                "--out",
                "$D/out/new/x.png",
                "--trace",
                "$D/out/t/t.json",
            ]),
            &["steps"],
        ),
        (
            "long prompt length",
            flux(&["--max-sequence-length", "100000"]),
            &["max sequence length", "512"],
        ),
        ("guidance NaN", flux(&["--guidance", "NaN"]), &["guidance"]),
        ("guidance inf", flux(&["--guidance", "inf"]), &["guidance"]),
        ("guidance -inf", flux(&["--guidance=-inf"]), &["guidance"]),
        (
            "guidance 1e300",
            flux(&["--guidance", "1e300"]),
            &["guidance"],
        ),
        (
            "negative prompt",
            flux(&["--negative-prompt", "blur"]),
            &["negative prompt"],
        ),
        (
            "sparse attention for images",
            flux(&["--sparse-attention", "svg"]),
            &["FLUX makes images", "Sparse VideoGen"],
        ),
        (
            "jpgz",
            flux(&["--out", "$D/out/x.jpgz"]),
            &["x.jpgz", ".png"],
        ),
        ("gif image", flux(&["--out", "$D/out/x.gif"]), &["x.gif"]),
        (
            "out is a folder",
            flux(&["--out", "$D/out"]),
            &["is a folder"],
        ),
        (
            "latents over out",
            flux(&["--save-latents", "$D/out/existing.png"]),
            &["--save-latents", "--out", "same file"],
        ),
        (
            "trace over latents",
            flux(&["--save-latents", "$D/t.json", "--trace", "$D/t.json"]),
            &["--trace", "same file"],
        ),
        (
            "noise is a folder",
            flux(&["--init-noise", "$D/out"]),
            &["--init-noise", "is a folder"],
        ),
        (
            "noise missing",
            flux(&["--init-noise", "$D/none.safetensors"]),
            &["--init-noise", "no such file"],
        ),
        (
            "missing model",
            vec![
                "flux",
                "--prompt",
                "p",
                "--model",
                "$D/nowhere",
                "--out",
                "$D/out/existing.png",
            ],
            &["nowhere", "model_index.json"],
        ),
        (
            "missing transformer file",
            flux(&["--transformer", "$D/flux1-dev.safetensors"]),
            &["flux1-dev.safetensors"],
        ),
        (
            "bad policy flag",
            flux(&["--cache", "none", "--threshold", "0.1"]),
            &["--threshold"],
        ),
        (
            "zero batch size",
            flux(&["--batch-size", "0"]),
            &["--batch-size"],
        ),
        (
            "batch size past the bound",
            flux(&["--batch-size", "1000"]),
            &["--batch-size", "64"],
        ),
    ];
    for (label, args, named) in cases {
        row().fails(label, args, named);
    }

    // Damaged folders.
    let r = row();
    set_first_value(
        &r.model()
            .join("transformer/diffusion_pytorch_model.safetensors"),
        "proj_out.weight",
        1e38,
    );
    r.fails(
        "overflowing transformer",
        FLUX,
        &["step 1 of 2", "NaN or infinite"],
    );
    let r = row();
    set_json(&r.model().join("vae/config.json"), "scaling_factor", "0");
    r.fails("VAE scaling_factor 0", FLUX, &["scaling_factor"]);
    for (key, value) in [
        ("shift", "0"),
        ("shift", "-1"),
        ("base_shift", "1e6"),
        ("max_shift", "-500"),
    ] {
        let r = row();
        set_json(
            &r.model().join("scheduler/scheduler_config.json"),
            key,
            value,
        );
        r.fails(
            &format!("scheduler {key} {value}"),
            FLUX,
            &[key, "scheduler_config.json"],
        );
    }
    let r = row();
    set_json(
        &r.model().join("transformer/config.json"),
        "num_attention_heads",
        "0",
    );
    r.fails("bad transformer config", FLUX, &["num_attention_heads"]);
    let r = row();
    fs::write(
        r.model().join("vae/diffusion_pytorch_model.safetensors"),
        b"\x05\x00\x00\x00\x00\x00\x00\x00{{{{{",
    )
    .unwrap();
    r.fails("corrupt VAE", FLUX, &["vae", "corrupt"]);
    let r = row();
    fs::write(
        r.model().join("model_index.json"),
        [0x9fu8, 0x00, 0xff, 0x13],
    )
    .unwrap();
    r.fails(
        "random model_index.json",
        FLUX,
        &["model_index.json", "not a diffusers pipeline index"],
    );
    let r = row();
    set_json(
        &r.model().join("model_index.json"),
        "_class_name",
        "\"WanPipeline\"",
    );
    r.fails("a WAN index", FLUX, &["WanPipeline", "cargo xtask run wan"]);
    damaged_weights_and_files(&mini, "png", FLUX, "text_encoder_2", "tokenizer_2");

    // Initial noise files.
    let shape = vec![1, 16, 8, 8];
    let n = 16 * 8 * 8;
    let r = row();
    let mut values = vec![0.5f32; n];
    values[7] = f32::NAN;
    noise_file(
        &r.path("noise.safetensors"),
        Dtype::F32,
        shape.clone(),
        values.iter().flat_map(|v| v.to_le_bytes()).collect(),
    );
    r.fails(
        "NaN noise",
        &flux(&["--init-noise", "$D/noise.safetensors"]),
        &["--init-noise", "latents", "NaN"],
    );
    let r = row();
    noise_file(
        &r.path("noise.safetensors"),
        Dtype::F16,
        shape.clone(),
        (0..n)
            .flat_map(|i| (0x7bffu16 - i as u16 % 7).to_le_bytes())
            .collect(),
    );
    r.fails(
        "garbage half noise",
        &flux(&["--init-noise", "$D/noise.safetensors"]),
        &["initial noise", "values up to"],
    );
    let r = row();
    noise_file(
        &r.path("noise.safetensors"),
        Dtype::F32,
        vec![1, 16, 4, 4],
        vec![0; 16 * 16 * 4],
    );
    r.fails(
        "wrong noise shape",
        &flux(&["--init-noise", "$D/noise.safetensors"]),
        &["latents", "[1, 16, 8, 8]"],
    );
}

#[test]
fn flux_writes_jpeg_webp_and_half_precision_in_place() {
    let mini = workspace().join("mini-models/flux-mini");
    let row = Row::new(&mini, "png");
    for (name, dtype) in [("a.jpg", "f32"), ("a.webp", "f16"), ("a.bmp", "bf16")] {
        let out = format!("$D/out/{name}");
        let (ok, stderr) = row.run(&with(FLUX, &["--out", &out, "--dtype", dtype]));
        assert!(ok, "{name} in {dtype}: {stderr}");
        let image = image::open(row.path("out").join(name)).unwrap();
        assert_eq!((image.width(), image.height()), (64, 64), "{name}");
    }
    // The earlier output is overwritten in place when asked, and nothing else is left.
    let (ok, stderr) = row.run(FLUX);
    assert!(ok, "{stderr}");
    assert!(image::open(row.path("out/existing.png")).is_ok());
    assert_eq!(fs::read_dir(row.path("out")).unwrap().count(), 4);
}

#[test]
fn flux_runs_gguf_transformer_and_t5_files_and_refuses_those_of_another_model() {
    let fixtures = workspace().join("tests/fixtures");
    let row = Row::new(&fixtures.join("flux_pipeline/model"), "png");
    fn tiny<'a>(extra: &[&'a str]) -> Vec<&'a str> {
        let mut args = vec![
            "--width",
            "48",
            "--height",
            "64",
            "--max-sequence-length",
            "24",
        ];
        args.extend_from_slice(extra);
        with(FLUX, &args)
    }
    let q8 = fixtures.join("gguf/flux-pipeline-Q8_0.gguf");
    let q8 = q8.to_str().unwrap();
    let (ok, stderr) = row.run(&tiny(&["--transformer", q8, "--out", "$D/out/q8.png"]));
    assert!(ok, "{stderr}");
    assert!(stderr.contains("84 tensors (F32 57, Q8_0 27)"), "{stderr}");
    let image = image::open(row.path("out/q8.png")).unwrap();
    assert_eq!((image.width(), image.height()), (48, 64));
    // WAN's transformer as FLUX.1's: refused by name, nothing written.
    let wan = fixtures.join("gguf/wan-Q8_0.gguf");
    let wan = wan.to_str().unwrap();
    let (ok, stderr) = row.run(&tiny(&["--transformer", wan, "--out", "$D/out/wan.png"]));
    assert!(!ok, "{stderr}");
    assert!(
        stderr.contains("wan-Q8_0.gguf")
            && stderr.contains("\"wan\"")
            && stderr.contains("\"flux\""),
        "{stderr}"
    );
    assert!(!row.path("out/wan.png").exists());
    // A llama.cpp T5 encoder file for text_encoder_2/'s weights, the encoders on demand.
    let t5 = fixtures.join("gguf/flux-pipeline-t5-Q8_0.gguf");
    let t5 = t5.to_str().unwrap();
    let (ok, stderr) = row.run(&tiny(&[
        "--t5",
        t5,
        "--text-encoders",
        "on-demand",
        "--out",
        "$D/out/t5.png",
    ]));
    assert!(ok, "{stderr}");
    assert!(
        stderr.contains("21 tensors (F16 2, F32 14, Q8_0 5)"),
        "{stderr}"
    );
    assert!(image::open(row.path("out/t5.png")).is_ok());
    // A transformer's file as the T5 encoder: refused by name, nothing written.
    let (ok, stderr) = row.run(&tiny(&["--t5", wan, "--out", "$D/out/t5-wan.png"]));
    assert!(!ok, "{stderr}");
    assert!(
        stderr.contains("\"wan\"") && stderr.contains("\"t5encoder\""),
        "{stderr}"
    );
    assert!(!row.path("out/t5-wan.png").exists());
}

/// WAN-mini at 64x64, 5 frames, two steps, writing `$D/out/existing.gif`.
const WAN: &[&str] = &[
    "wan",
    "--prompt",
    "a yellow square moving right",
    "--model",
    "$M",
    "--width",
    "64",
    "--height",
    "64",
    "--frames",
    "5",
    "--steps",
    "2",
    "--out",
    "$D/out/existing.gif",
];

fn wan(extra: &[&'static str]) -> Vec<&'static str> {
    with(WAN, extra)
}

#[test]
fn wan_bad_inputs_are_named_errors_that_touch_no_output() {
    let mini = workspace().join("mini-models/wan-mini");
    let row = || Row::new(&mini, "gif");
    let cases: &[(&str, Vec<&str>, &[&str])] = &[
        (
            "huge size",
            wan(&["--width", "100000", "--height", "100000"]),
            &["100000x100000", "tokens"],
        ),
        ("frames not 4k+1", wan(&["--frames", "8"]), &["4k+1"]),
        ("guidance NaN", wan(&["--guidance", "NaN"]), &["guidance"]),
        (
            "guidance 1e300",
            wan(&["--guidance", "1e300"]),
            &["guidance"],
        ),
        (
            "a billion steps",
            wan(&["--steps", "1000000000"]),
            &["steps"],
        ),
        (
            "long prompt length",
            wan(&["--max-sequence-length", "100000"]),
            &["max sequence length"],
        ),
        ("fps 0", wan(&["--fps", "0"]), &["--fps"]),
        (
            "sparsity without sparse attention",
            wan(&["--sparsity", "0.3"]),
            &["--sparsity", "--sparse-attention svg"],
        ),
        (
            "sparsity 2",
            wan(&["--sparse-attention", "svg", "--sparsity", "2"]),
            &["sparsity 2", "(0, 1]"],
        ),
        (
            "warm-up NaN",
            wan(&["--sparse-attention", "svg", "--sparse-warmup", "NaN"]),
            &["warm-up steps NaN"],
        ),
        (
            "frames dir is a file",
            wan(&["--frames-dir", "$D/out/existing.gif"]),
            &["--frames-dir", "is a file"],
        ),
        (
            "jpgz video",
            wan(&["--out", "$D/out/x.jpgz"]),
            &["x.jpgz", ".gif"],
        ),
        (
            "trace over out",
            wan(&["--trace", "$D/out/existing.gif"]),
            &["--trace", "same file"],
        ),
    ];
    for (label, args, named) in cases {
        row().fails(label, args, named);
    }
    let r = row();
    set_json(
        &r.model().join("model_index.json"),
        "_class_name",
        "\"FluxPipeline\"",
    );
    r.fails(
        "a FLUX index",
        WAN,
        &["FluxPipeline", "cargo xtask run flux"],
    );
    let r = row();
    let std: Vec<f64> = vec![0.0; 16];
    set_json(
        &r.model().join("vae/config.json"),
        "latents_std",
        &serde_json::to_string(&std).unwrap(),
    );
    r.fails("zero latents_std", WAN, &["latents_std"]);
    let r = row();
    set_json(
        &r.model().join("scheduler/scheduler_config.json"),
        "flow_shift",
        "-2",
    );
    r.fails("negative flow_shift", WAN, &["flow_shift"]);
    damaged_weights_and_files(&mini, "gif", WAN, "text_encoder", "tokenizer");
}

#[test]
fn the_video_mini_models_run_at_their_own_settings() {
    // Without --width/--height/--frames a copy of a video mini model must not fall back to the
    // real pipeline's size (WAN 2.1's 832x480x81, HunyuanVideo's 1280x720x129) but run at the
    // 64x64x9 its folder carries; without --model the command runs the mini model itself.
    for model in ["wan", "hunyuan"] {
        let mini = workspace().join(format!("mini-models/{model}-mini"));
        let row = Row::new(&mini, "gif");
        for (copy, out) in [(true, "copy"), (false, "default")] {
            let frames = format!("$D/frames-{out}");
            let file = format!("$D/out/{out}.gif");
            let mut args = vec![model, "--prompt", "a yellow square", "--steps", "1"];
            args.extend(["--out", &file, "--frames-dir", &frames]);
            if copy {
                args.extend(["--model", "$M"]);
            }
            let (ok, stderr) = row.run(&args);
            assert!(ok, "{model} ({out}): {stderr}");
            let frames = row.path(&format!("frames-{out}"));
            assert_eq!(fs::read_dir(&frames).unwrap().count(), 9, "{model} ({out})");
            let frame = image::open(frames.join("frame_0000.png")).unwrap();
            assert_eq!((frame.width(), frame.height()), (64, 64), "{model} ({out})");
            assert!(row.path(&format!("out/{out}.gif")).is_file());
        }
    }
}

#[test]
fn wan_mini_runs_sparse_video_attention_with_dicache() {
    let mini = workspace().join("mini-models/wan-mini");
    let row = Row::new(&mini, "gif");
    let (ok, stderr) = row.run(&[
        "wan",
        "--prompt",
        "a large red circle moving right on a blue background",
        "--model",
        "$M",
        "--steps",
        "10",
        "--sparse-attention",
        "svg",
        "--out",
        "$D/out/svg.gif",
        "--trace",
        "$D/out/svg.json",
    ]);
    assert!(ok, "{stderr}");
    assert!(stderr.contains("attention  svg:"), "{stderr}");
    assert!(row.path("out/svg.gif").is_file());
    let trace: serde_json::Value =
        serde_json::from_str(&fs::read_to_string(row.path("out/svg.json")).unwrap()).unwrap();
    let calls = trace["steps"].as_array().unwrap();
    assert_eq!(calls.len(), 20, "10 steps of two guidance passes");
    for call in calls {
        let heads = &call["heads"];
        let count = |class: &str| heads[class].as_u64().unwrap();
        // Two heads in each block the call ran; the first 20 % of the steps dense.
        let run = 2 * call["blocks_run"].as_u64().unwrap();
        assert_eq!(
            count("dense") + count("spatial") + count("temporal"),
            run,
            "{call}"
        );
        let warmup = call["step"].as_u64().unwrap() < 2;
        assert_eq!(count("dense") == run, warmup, "{call}");
    }
}

#[test]
fn hunyuan_video_runs_sparse_video_attention() {
    // 256x256x17: 5 latent frames of 256 tokens and 16 text tokens leave a 128-token band.
    let fixture = workspace().join("tests/fixtures/hunyuan_pipeline/model");
    let row = Row::new(&fixture, "gif");
    let (ok, stderr) = row.run(&[
        "hunyuan",
        "--prompt",
        "a cat",
        "--model",
        "$M",
        "--width",
        "256",
        "--height",
        "256",
        "--frames",
        "17",
        "--steps",
        "3",
        "--max-sequence-length",
        "16",
        "--sparse-attention",
        "svg",
        "--cache",
        "none",
        "--out",
        "$D/out/svg.gif",
    ]);
    assert!(ok, "{stderr}");
    assert!(stderr.contains("attention  svg:"), "{stderr}");
    assert!(row.path("out/svg.gif").is_file());
}

#[test]
fn hunyuan_video_bad_inputs_are_named_errors() {
    let fixture = workspace().join("tests/fixtures/hunyuan_pipeline/model");
    let row = || Row::new(&fixture, "gif");
    let base: &[&str] = &[
        "hunyuan",
        "--prompt",
        "a cat",
        "--model",
        "$M",
        "--width",
        "32",
        "--height",
        "32",
        "--frames",
        "5",
        "--steps",
        "2",
        "--max-sequence-length",
        "16",
        "--out",
        "$D/out/existing.gif",
    ];
    let with = |extra: &[&'static str]| with(base, extra);
    let cases: &[(&str, Vec<&str>, &[&str])] = &[
        ("guidance NaN", with(&["--guidance", "NaN"]), &["guidance"]),
        (
            "a billion steps",
            with(&["--steps", "1000000000"]),
            &["steps"],
        ),
        (
            "long prompt length",
            with(&["--max-sequence-length", "100000"]),
            &["max sequence length"],
        ),
        (
            "huge size",
            with(&["--width", "100000", "--height", "100000"]),
            &["tokens"],
        ),
        ("fps 0", with(&["--fps", "0"]), &["--fps"]),
        (
            "negative prompt",
            with(&["--negative-prompt", "x"]),
            &["negative prompt"],
        ),
        (
            "a T5 file",
            with(&["--t5", "$D/t5.gguf"]),
            &["--t5", "HunyuanVideo has no T5"],
        ),
        (
            "sparse attention without a band",
            with(&["--sparse-attention", "svg"]),
            &["sparsity 0.25 leaves no attention band on 2 latent frames of 4 tokens"],
        ),
    ];
    for (label, args, named) in cases {
        row().fails(label, args, named);
    }
    let r = row();
    set_json(
        &r.model().join("model_index.json"),
        "_class_name",
        "\"FluxPipeline\"",
    );
    r.fails(
        "a FLUX index",
        base,
        &["FluxPipeline", "cargo xtask run flux"],
    );
    damaged_weights_and_files(&fixture, "gif", base, "text_encoder", "tokenizer");
    let r = row();
    set_json(&r.model().join("vae/config.json"), "scaling_factor", "0");
    r.fails("VAE scaling_factor 0", base, &["scaling_factor"]);
}

/// The damaged checkpoint folders every pipeline must name, on a copy of the pipeline folder
/// `source` run with `args` (output `$D/out/existing.<extension>`): a NaN transformer weight, an
/// infinite VAE weight, a truncated transformer, a stray file shadowing a transformer tensor, a
/// broken `tokenizer` and a missing `text_encoder` (the folders named).
fn damaged_weights_and_files(
    source: &Path,
    extension: &str,
    args: &[&str],
    text_encoder: &str,
    tokenizer: &str,
) {
    let row = || Row::new(source, extension);
    let transformer = "transformer/diffusion_pytorch_model.safetensors";
    let r = row();
    set_first_value(&r.model().join(transformer), "proj_out.weight", f32::NAN);
    r.fails("NaN transformer weight", args, &["proj_out.weight", "NaN"]);
    let r = row();
    let vae = r.model().join("vae/diffusion_pytorch_model.safetensors");
    let vae_bytes = fs::read(&vae).unwrap();
    // `decoder.conv_out.weight`, or the causal VAEs' `decoder.conv_out.conv.weight`.
    let key = SafeTensors::deserialize(&vae_bytes)
        .unwrap()
        .names()
        .into_iter()
        .find(|n| n.starts_with("decoder.conv_out") && n.ends_with("weight"))
        .unwrap()
        .to_string();
    set_first_value(&vae, &key, f32::INFINITY);
    r.fails("infinite VAE weight", args, &[&key]);
    let r = row();
    let bytes = fs::read(r.model().join(transformer)).unwrap();
    fs::write(r.model().join(transformer), &bytes[..bytes.len() / 2]).unwrap();
    r.fails(
        "truncated transformer",
        args,
        &["diffusion_pytorch_model.safetensors", "truncated"],
    );
    let r = row();
    let shape = SafeTensors::deserialize(&bytes)
        .unwrap()
        .tensor("proj_out.bias")
        .unwrap()
        .shape()
        .to_vec();
    let len = shape.iter().product::<usize>() * 4;
    write_tensors(
        &r.model().join("transformer/zz_old.safetensors"),
        &[("proj_out.bias".into(), Dtype::F32, shape, vec![0; len])],
    );
    r.fails(
        "stray shard",
        args,
        &["proj_out.bias", "zz_old.safetensors"],
    );
    let r = row();
    fs::write(
        r.model().join(tokenizer).join("tokenizer.json"),
        b"{\"model\": ",
    )
    .unwrap();
    r.fails("broken tokenizer", args, &[tokenizer]);
    let r = row();
    fs::remove_dir_all(r.model().join(text_encoder)).unwrap();
    r.fails("missing text encoder", args, &[text_encoder]);
}

#[test]
fn several_prompts_in_batches_write_numbered_outputs_each_as_if_alone() {
    let mini = workspace().join("mini-models/flux-mini");
    let row = Row::new(&mini, "png");
    let (ok, stderr) = row.run(&with(
        FLUX,
        &[
            "--prompt",
            "a red circle on a blue background",
            "--prompt",
            "a yellow square on a black background",
            "--num-images-per-prompt",
            "2",
            "--seed",
            "5",
            "--batch-size",
            "3",
            "--out",
            "$D/out/x.png",
            "--trace",
            "$D/out/t.json",
        ],
    ));
    assert!(ok, "{stderr}");
    for i in 0..4 {
        assert!(
            row.path(&format!("out/x-{i:03}.png")).is_file(),
            "x-{i:03}.png"
        );
        assert!(
            row.path(&format!("out/t-{i:03}.json")).is_file(),
            "t-{i:03}.json"
        );
        let sidecar: serde_json::Value = serde_json::from_str(
            &fs::read_to_string(row.path(&format!("out/x-{i:03}.json"))).unwrap(),
        )
        .unwrap();
        assert_eq!(sidecar["seed"], 5 + i as u64);
        let prompt = if i < 2 {
            "a red circle"
        } else {
            "a yellow square"
        };
        assert!(sidecar["prompt"].as_str().unwrap().starts_with(prompt));
        assert_eq!(sidecar["width"], 64);
        // Batches of three: samples 0-2, then 3 alone.
        assert_eq!(sidecar["batch_size"], if i < 3 { 3 } else { 1 });
    }
    // Sample 1 (the second of "a red circle", seed 6, in the middle of a batch) equals that
    // prompt and seed alone, to the byte.
    let (ok, stderr) = row.run(&with(
        FLUX,
        &[
            "--prompt",
            "a red circle on a blue background",
            "--seed",
            "6",
            "--out",
            "$D/alone.png",
            "--trace",
            "$D/alone.json",
        ],
    ));
    assert!(ok, "{stderr}");
    let pixels = |rel: &str| image::open(row.path(rel)).unwrap().to_rgb8().into_raw();
    assert_eq!(pixels("out/x-001.png"), pixels("alone.png"));
    let computed = |rel: &str| -> Vec<bool> {
        let trace: serde_json::Value =
            serde_json::from_str(&fs::read_to_string(row.path(rel)).unwrap()).unwrap();
        let steps = trace["steps"].as_array().unwrap();
        steps
            .iter()
            .map(|s| s["computed"].as_bool().unwrap())
            .collect()
    };
    assert_eq!(computed("out/t-001.json"), computed("alone.json"));

    let r = Row::new(&mini, "png");
    r.fails(
        "no images per prompt",
        &flux(&["--num-images-per-prompt", "0"]),
        &["--num-images-per-prompt"],
    );
    r.fails(
        "missing prompts file",
        &flux(&["--prompts", "$D/none.txt"]),
        &["--prompts", "none.txt"],
    );
    let shape = vec![1, 16, 8, 8];
    noise_file(
        &r.path("noise.safetensors"),
        Dtype::F32,
        shape,
        vec![0; 16 * 64 * 4],
    );
    r.fails(
        "one noise row for two samples",
        &flux(&[
            "--prompt",
            "a",
            "--prompt",
            "b",
            "--init-noise",
            "$D/noise.safetensors",
        ]),
        &["--init-noise", "one row per sample", "[2, 16, 8, 8]"],
    );
}
