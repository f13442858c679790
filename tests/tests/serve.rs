//! `dicache-serve` over loopback with a real HTTP client, on FLUX-mini: the OpenAI-style
//! endpoint and the jobs API give exactly the images the pipeline makes alone, requests that
//! overlap share the batch and still get their own images, bad requests get a 400 naming the
//! field, a full queue a 429, a client that leaves cancels its job, and a shutdown ends
//! everything cleanly; and a bounded load from concurrent clients is answered in full.

use std::{
    net::{SocketAddr, TcpListener},
    thread::JoinHandle,
    time::{Duration, Instant},
};

use base64::Engine;
use burn::tensor::Tensor;
use dicache_bench::mini;
use dicache_core::{CachePolicy, DiCacheConfig};
use dicache_serve::{Limits, ServeError};
use dicache_tests::Cpu;
use dit_layers::gaussian_noise_rows;
use dit_pipeline::{Pipeline, PipelineFolder, Prompt, Request, Settings};
use models_flux::FluxPipeline;
use reqwest::blocking::Client;
use serde_json::{Value, json};

/// A server on a free loopback port, in its own thread.
struct Server {
    addr: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<JoinHandle<Result<(), ServeError>>>,
}

impl Server {
    /// FLUX-mini served with `max_batch` samples in flight and `limits`.
    fn start(max_batch: usize, limits: Limits) -> Self {
        let model =
            dicache_bench::serve::flux_mini::<Cpu>(None, max_batch, &Default::default()).unwrap();
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::spawn(move || {
            dicache_serve::serve(model, listener, limits, async {
                let _ = stopped.await;
            })
        });
        Self {
            addr,
            stop: Some(stop),
            thread: Some(thread),
        }
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    fn post(&self, path: &str, body: &Value) -> (u16, Value) {
        let r = Client::new()
            .post(self.url(path))
            .json(body)
            .send()
            .unwrap();
        (r.status().as_u16(), r.json().unwrap())
    }

    fn get(&self, path: &str) -> (u16, Value) {
        let r = reqwest::blocking::get(self.url(path)).unwrap();
        (r.status().as_u16(), r.json().unwrap())
    }

    /// Polls job `id` until `until` holds of its status (30 s at most).
    fn wait(&self, id: u64, until: impl Fn(&Value) -> bool) -> Value {
        let start = Instant::now();
        loop {
            let (_, status) = self.get(&format!("/v1/jobs/{id}"));
            if until(&status) {
                return status;
            }
            assert!(
                start.elapsed() < Duration::from_secs(60),
                "job {id}: {status}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Stops the server, which must return without error.
    fn stop(mut self) {
        self.stop.take().unwrap().send(()).unwrap();
        self.thread.take().unwrap().join().unwrap().unwrap();
    }
}

/// The settings of these tests: small and quick.
fn settings(steps: usize) -> Settings {
    Settings {
        width: 64,
        height: 64,
        frames: 1,
        steps,
        guidance: Some(3.5),
        max_sequence_length: 32,
    }
}

/// What the pipeline makes alone of `prompt` from `seed`: the image's RGB bytes.
fn alone(prompt: &str, seed: u64, steps: usize) -> Vec<u8> {
    let folder = mini::FLUX.dir();
    let pipe = FluxPipeline::<Cpu>::load(&folder, None, &Default::default()).unwrap();
    let mut s = PipelineFolder::open(&folder)
        .unwrap()
        .defaults(<FluxPipeline<Cpu> as Pipeline<Cpu, 4>>::DEFAULTS)
        .unwrap();
    (s.width, s.height, s.steps) = (64, 64, steps);
    let shape = pipe.latent_shape(64, 64, 1).unwrap();
    let request = Request {
        prompts: vec![Prompt::new(prompt)],
        settings: s,
        noise: Tensor::from_data(gaussian_noise_rows(&shape, [seed]), &Default::default()),
        extra: (),
    };
    let policy = CachePolicy::DiCache(DiCacheConfig::flux());
    let out = pipe.generate(&request, policy, &mut |_, _| {}).unwrap();
    vae::to_rgb8(out.decoded).unwrap().remove(0).pixels
}

/// The RGB bytes of a PNG.
fn pixels(png: &[u8]) -> Vec<u8> {
    image::load_from_memory(png).unwrap().to_rgb8().into_raw()
}

fn body(prompt: &str, seed: u64, steps: usize) -> Value {
    json!({ "prompt": prompt, "seed": seed, "steps": steps, "size": "64x64" })
}

#[test]
fn generations_give_the_pipelines_image_and_the_jobs_api_its_progress() {
    let server = Server::start(4, Limits::default());
    let (status, health) = server.get("/health");
    assert_eq!((status, health["status"].as_str()), (200, Some("ok")));
    let (_, config) = server.get("/v1/config");
    assert_eq!(config["model"], "FLUX");
    assert_eq!(config["video"], false);

    let (status, answer) = server.post("/v1/images/generations", &body("a red circle", 3, 6));
    assert_eq!(status, 200, "{answer}");
    let b64 = answer["data"][0]["b64_json"].as_str().unwrap();
    let png = base64::engine::general_purpose::STANDARD
        .decode(b64)
        .unwrap();
    let expected = alone("a red circle", 3, 6);
    assert!(
        pixels(&png) == expected,
        "the served image differs from the pipeline's"
    );
    assert_eq!(answer["traces"][0]["steps"].as_array().unwrap().len(), 6);

    // The same through the jobs API, fetched by URL.
    let mut url_body = body("a red circle", 3, 6);
    url_body["response_format"] = json!("url");
    let (status, answer) = server.post("/v1/images/generations", &url_body);
    assert_eq!(status, 200, "{answer}");
    let url = answer["data"][0]["url"].as_str().unwrap();
    let png = reqwest::blocking::get(server.url(url))
        .unwrap()
        .bytes()
        .unwrap();
    assert!(pixels(&png) == expected);

    let (status, job) = server.post("/v1/jobs", &body("a blue square", 1, 6));
    assert_eq!((status, job["state"].as_str()), (202, Some("queued")));
    let id = job["id"].as_u64().unwrap();
    let done = server.wait(id, |s| s["state"] == "done");
    assert_eq!(done["step"], 6);
    let calls = done["computed"].as_u64().unwrap() + done["skipped"].as_u64().unwrap();
    assert_eq!(calls, 6);
    assert_eq!(done["results"][0]["mime"], "image/png");

    let metrics = reqwest::blocking::get(server.url("/metrics"))
        .unwrap()
        .text()
        .unwrap();
    assert!(
        metrics.contains("dicache_requests_total{outcome=\"accepted\"} 3"),
        "{metrics}"
    );
    assert!(metrics.contains("dicache_samples_total 3"), "{metrics}");
    assert!(metrics.contains("dicache_queue_samples 0"), "{metrics}");
    let page = reqwest::blocking::get(server.url("/"))
        .unwrap()
        .text()
        .unwrap();
    assert!(page.contains("<form") && page.contains("/v1/jobs"));
    server.stop();
}

#[test]
fn overlapping_requests_share_the_batch_and_each_get_its_image_alone() {
    let server = Server::start(4, Limits::default());
    // Long enough that the second joins while it runs, however slow the machine.
    let (_, first) = server.post("/v1/jobs", &body("a large red circle", 0, 40));
    let first = first["id"].as_u64().unwrap();
    server.wait(first, |s| s["step"].as_u64().unwrap() >= 3);
    // Joins the running batch at a step boundary, at a different step and step count.
    let (_, second) = server.post("/v1/jobs", &body("a small yellow square", 1, 8));
    let second = second["id"].as_u64().unwrap();
    let joined = server.wait(second, |s| s["state"] != "queued");
    assert_eq!(
        joined["batch_samples"], 2,
        "the second job should join the first: {joined}"
    );
    let a = server.wait(first, |s| s["state"] == "done");
    let b = server.wait(second, |s| s["state"] == "done");
    for (status, prompt, seed, steps) in [
        (a, "a large red circle", 0, 40),
        (b, "a small yellow square", 1, 8),
    ] {
        let url = status["results"][0]["url"].as_str().unwrap();
        let png = reqwest::blocking::get(server.url(url))
            .unwrap()
            .bytes()
            .unwrap();
        assert!(
            pixels(&png) == alone(prompt, seed, steps),
            "{prompt}: differs from alone"
        );
    }
    server.stop();
}

#[test]
fn bad_requests_get_a_400_naming_the_field() {
    let server = Server::start(2, Limits::default());
    let cases = [
        (json!({ "prompt": "" }), "prompt"),
        (json!({ "prompt": "x", "n": 0 }), "n"),
        (json!({ "prompt": "x", "n": 3 }), "n"),
        (json!({ "prompt": "x", "size": "7x7" }), "size"),
        (json!({ "prompt": "x", "size": "big" }), "size"),
        (json!({ "prompt": "x", "size": "99999x99999" }), "size"),
        (json!({ "prompt": "x", "steps": 0 }), "steps"),
        (json!({ "prompt": "x", "steps": "many" }), "steps"),
        (json!({ "prompt": "x", "guidance": -1.0 }), "guidance"),
        (json!({ "prompt": "x", "frames": 5 }), "frames"),
        (
            json!({ "prompt": "x", "negative_prompt": "blur" }),
            "negative_prompt",
        ),
        (json!({ "prompt": "x", "cache": "teacache" }), "cache"),
        (
            json!({ "prompt": "x", "cache": "none", "threshold": 0.1 }),
            "threshold",
        ),
        (json!({ "prompt": "x", "threshold": -0.1 }), "threshold"),
        (json!({ "prompt": "x", "seed": u64::MAX, "n": 2 }), "seed"),
        (
            json!({ "prompt": "x", "response_format": "gif" }),
            "response_format",
        ),
        (json!({ "prompt": "x", "quality": "hd" }), "quality"),
        (json!({ "prompt": "x".repeat(5000) }), "prompt"),
    ];
    for (request, field) in cases {
        let (status, answer) = server.post("/v1/images/generations", &request);
        assert_eq!(status, 400, "{request}: {answer}");
        assert_eq!(answer["error"]["field"], field, "{request}: {answer}");
        assert!(!answer["error"]["message"].as_str().unwrap().is_empty());
    }
    let r = Client::new()
        .post(server.url("/v1/jobs"))
        .body("{not json")
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 400);
    let huge = format!("{{\"prompt\": \"{}\"}}", "x".repeat(100_000));
    let r = Client::new()
        .post(server.url("/v1/jobs"))
        .body(huge)
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 413);
    assert_eq!(server.get("/v1/jobs/12345").0, 404);
    server.stop();
}

#[test]
fn a_full_queue_answers_429_and_cancelled_jobs_end() {
    let limits = Limits {
        max_queue: 1,
        ..Limits::default()
    };
    let server = Server::start(1, limits);
    let (_, running) = server.post("/v1/jobs", &body("a red circle", 0, 400));
    let running = running["id"].as_u64().unwrap();
    server.wait(running, |s| s["state"] == "running");
    let (status, queued) = server.post("/v1/jobs", &body("a blue square", 1, 400));
    assert_eq!(status, 202);
    let (status, full) = server.post("/v1/jobs", &body("a green triangle", 2, 4));
    assert_eq!(status, 429, "{full}");
    let queued = queued["id"].as_u64().unwrap();
    for id in [queued, running] {
        let r = Client::new()
            .delete(server.url(&format!("/v1/jobs/{id}")))
            .send()
            .unwrap();
        let status: Value = r.json().unwrap();
        assert_eq!(status["state"], "cancelled");
    }
    // Room again.
    let (status, answer) = server.post("/v1/images/generations", &body("a green triangle", 2, 2));
    assert_eq!(status, 200, "{answer}");
    server.stop();
}

#[test]
fn a_client_that_leaves_cancels_its_job_and_shutdown_ends_the_rest() {
    let server = Server::start(2, Limits::default());
    let client = Client::builder()
        .timeout(Duration::from_millis(1500))
        .build()
        .unwrap();
    let gone = client
        .post(server.url("/v1/images/generations"))
        .json(&body("a red circle", 0, 1000))
        .send();
    assert!(gone.is_err(), "the request should time out");
    server.wait(0, |s| s["state"] == "cancelled");

    // An event stream left before the end cancels its job too.
    let (_, job) = server.post("/v1/jobs", &body("a blue square", 1, 1000));
    let id = job["id"].as_u64().unwrap();
    let mut events = reqwest::blocking::get(server.url(&format!("/v1/jobs/{id}/events"))).unwrap();
    let mut first = [0u8; 64];
    std::io::Read::read(&mut events, &mut first).unwrap();
    assert!(String::from_utf8_lossy(&first).starts_with("event: "));
    drop(events);
    server.wait(id, |s| s["state"] == "cancelled");

    // A job still running when the server stops is cancelled; the server returns.
    let (_, job) = server.post("/v1/jobs", &body("a green triangle", 2, 1000));
    let id = job["id"].as_u64().unwrap();
    server.wait(id, |s| s["state"] == "running");
    server.stop();
}

#[test]
fn a_bounded_load_from_concurrent_clients_is_all_answered() {
    let args = dicache_bench::serve::ServeArgs {
        requests: 12,
        clients: 4,
        max_batch: 4,
        steps: None,
        out_dir: Default::default(),
        backend: dicache_bench::backend::BackendKind::Cpu,
    };
    let prompts = ["a red circle", "a blue square", "a green triangle"];
    let load = dicache_bench::serve::load::<Cpu>(&args, settings(4), &Default::default(), &|i| {
        prompts[i % prompts.len()]
    })
    .unwrap();
    assert_eq!(load.requests, 12);
    assert!(load.p50 <= load.p95 && load.p95 <= load.seconds, "{load:?}");
    assert!(load.samples_per_second > 0.0);
}
