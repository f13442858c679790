//! `cargo xtask serve` as a user runs it: the real binary on FLUX-mini (and on the tiny FLUX.1
//! pipeline with a GGUF `--transformer`) answers on the port it prints, refuses bad options
//! before loading anything, and on SIGTERM or SIGINT cancels its running job and exits 0.

use std::{
    io::{BufRead, BufReader},
    process::{Command, Stdio},
    time::Duration,
};

/// Starts `xtask serve --port 0 <extra>`, waits for the address it prints, runs `check` on it,
/// sends `signal`, and returns the exit status and everything it printed.
fn serve_then(extra: &[&str], signal: &str, check: impl FnOnce(&str)) -> (bool, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_xtask"))
        .args(["serve", "--port", "0", "--max-batch", "2"])
        .args(extra)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = BufReader::new(child.stderr.take().unwrap());
    let mut printed = String::new();
    let address = loop {
        let mut line = String::new();
        assert!(
            stderr.read_line(&mut line).unwrap() > 0,
            "exited early:\n{printed}"
        );
        printed.push_str(&line);
        if let Some(rest) = line.split("on http://").nth(1) {
            break rest.split_whitespace().next().unwrap().to_string();
        }
    };
    check(&address);
    let killed = Command::new("kill")
        .args([signal, &child.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let status = child.wait().unwrap();
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut stderr, &mut rest).unwrap();
    printed.push_str(&rest);
    (status.success(), printed)
}

#[test]
fn serve_answers_and_exits_cleanly_on_sigterm_and_sigint() {
    for signal in ["-TERM", "-INT"] {
        let (ok, printed) = serve_then(&[], signal, |address| {
            let health = reqwest::blocking::get(format!("http://{address}/health")).unwrap();
            assert_eq!(health.status().as_u16(), 200);
            // A job still running when the signal comes is cancelled.
            let job: serde_json::Value = reqwest::blocking::Client::new()
                .post(format!("http://{address}/v1/jobs"))
                .json(&serde_json::json!({ "prompt": "a red circle", "steps": 1000 }))
                .send()
                .unwrap()
                .json()
                .unwrap();
            assert_eq!(job["state"], "queued", "{job}");
            std::thread::sleep(Duration::from_millis(300));
        });
        assert!(ok, "{signal}: exit status not 0:\n{printed}");
        assert!(printed.contains("stopped"), "{signal}:\n{printed}");
    }
}

#[test]
fn serve_runs_a_gguf_transformer() {
    let fixtures = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures");
    let model = fixtures.join("flux_pipeline/model");
    let gguf = fixtures.join("gguf/flux-pipeline-Q8_0.gguf");
    let extra = [
        "--model",
        model.to_str().unwrap(),
        "--transformer",
        gguf.to_str().unwrap(),
    ];
    let (ok, printed) = serve_then(&extra, "-TERM", |address| {
        let image: serde_json::Value = reqwest::blocking::Client::new()
            .post(format!("http://{address}/v1/images/generations"))
            .json(&serde_json::json!({
                "prompt": "a red circle", "size": "48x64", "steps": 2
            }))
            .send()
            .unwrap()
            .json()
            .unwrap();
        assert!(image["data"][0]["b64_json"].is_string(), "{image}");
    });
    assert!(ok, "exit status not 0:\n{printed}");
    assert!(
        printed.contains("84 tensors (F32 57, Q8_0 27)"),
        "{printed}"
    );
}

#[test]
fn bad_options_are_refused_before_loading() {
    for (flag, value, says) in [
        ("--max-batch", "0", "--max-batch 0"),
        ("--max-queue", "0", "--max-queue"),
        ("--fps", "0", "--fps"),
        ("--sparse-attention", "svg", "FLUX makes images"),
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_xtask"))
            .args(["serve", flag, value])
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{flag} {value}");
        assert!(stderr.contains(says), "{stderr}");
        assert!(!stderr.contains("loading"), "{stderr}");
    }
}
