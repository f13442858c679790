//! `cargo xtask bench cache` on the tiny random FLUX, WAN and HunyuanVideo fixture pipelines:
//! two samples, no cache and two settings, four steps; checks the JSON, CACHE.md and the PNGs
//! it writes.

use std::fs;

use dicache_bench::{
    backend::{BackendKind, Dtype},
    cache::{self, CacheArgs, Which, results::ModelResult},
};
use dicache_tests::{Scratch, fixture};

fn bench(model: Which, pipeline: &str, only: &[&str], out: &Scratch) -> ModelResult {
    let args = CacheArgs {
        model,
        samples: 2,
        steps: Some(4),
        model_dir: Some(fixture(pipeline)),
        only: only.iter().map(|s| s.to_string()).collect(),
        out_dir: out.path().to_path_buf(),
        backend: BackendKind::Cpu,
        dtype: Dtype::F32,
    };
    cache::run(&args).unwrap();
    let [model] = model.models()[..] else {
        panic!("one model at a time")
    };
    let json = fs::read_to_string(out.path().join(format!("{}.json", model.name()))).unwrap();
    serde_json::from_str(&json).unwrap()
}

/// The settings run, no cache first, with sane numbers; uniform-2 computes half the calls.
fn check(result: &ModelResult, labels: &[&str]) {
    let run: Vec<_> = result.settings.iter().map(|s| s.label.as_str()).collect();
    assert_eq!(run, labels);
    assert_eq!(result.samples, 2);
    let none = &result.settings[0].summary;
    assert_eq!(none.psnr, f64::INFINITY);
    assert_eq!(none.ssim, 1.0);
    assert_eq!(none.computed_fraction, 1.0);
    assert_eq!((none.loop_speedup, none.run_speedup), (1.0, 1.0));
    for s in &result.settings {
        assert_eq!(s.samples.len(), 2, "{}", s.label);
        let m = &s.summary;
        assert!(
            m.loop_speedup > 0.0 && m.loop_speedup.is_finite(),
            "{}",
            s.label
        );
        assert!(
            m.run_speedup > 0.0 && m.run_speedup.is_finite(),
            "{}",
            s.label
        );
        assert!(m.psnr > 0.0, "{}: PSNR {}", s.label, m.psnr);
        assert!(
            (-1.0..=1.0).contains(&m.ssim),
            "{}: SSIM {}",
            s.label,
            m.ssim
        );
        for sample in &s.samples {
            assert!(sample.loop_ms > 0.0 && sample.total_ms > sample.loop_ms);
        }
    }
    let uniform = &result.settings[1];
    assert_eq!(uniform.label, "uniform-2");
    assert!((uniform.summary.computed_fraction - 0.5).abs() < 1e-12);
    let overhead = result.probe_overhead.as_ref().expect("DiCache ran");
    assert!(overhead.computed_call_ms > 0.0 && overhead.uncached_call_ms > 0.0);
}

#[test]
fn cache_benchmark_writes_results_tables_plots_and_sheets() {
    let out = Scratch::new("cache-bench");
    let flux = bench(
        Which::Flux,
        "flux_pipeline/model",
        &["uniform-2", "dicache-0.4"],
        &out,
    );
    check(&flux, &["none", "uniform-2", "dicache-0.4"]);
    let wan = bench(
        Which::Wan,
        "wan_pipeline/model",
        &["uniform-2", "dicache-0.08"],
        &out,
    );
    check(&wan, &["none", "uniform-2", "dicache-0.08"]);
    // WAN: two passes a step (CFG).
    assert_eq!(wan.settings[0].samples[0].calls, 8);
    let hunyuan = bench(
        Which::Hunyuan,
        "hunyuan_pipeline/model",
        &["uniform-2", "dicache-0.1"],
        &out,
    );
    check(&hunyuan, &["none", "uniform-2", "dicache-0.1"]);
    // HunyuanVideo: one pass a step (embedded guidance).
    assert_eq!(hunyuan.settings[0].samples[0].calls, 4);

    let md = fs::read_to_string(out.path().join("CACHE.md")).unwrap();
    for expected in [
        "## FLUX-mini (128x128, 4 steps, guidance 3.5), 2 samples",
        "## WAN-mini (64x64, 9 frames, 4 steps, guidance 5), 2 samples",
        "## HunyuanVideo-mini (64x64, 9 frames, 4 steps, guidance 6), 2 samples",
        "| dicache-0.1 |",
        "| Method | Speedup (loop) | Speedup (run) | Computed | PSNR | SSIM |",
        "| none | 1.00x | 1.00x | 100.0% | inf | 1.0000 |",
        "| uniform-2 |",
        "| dicache-0.08 |",
        "Probe overhead: a computed DiCache call takes",
        "Machine: ",
    ] {
        assert!(md.contains(expected), "CACHE.md lacks {expected:?}:\n{md}");
    }

    let size = |file: &str| image::image_dimensions(out.path().join(file)).unwrap();
    assert_eq!(size("flux-frontier.png"), (1400, 600));
    assert_eq!(size("wan-frontier.png"), (1400, 600));
    assert_eq!(size("hunyuan-frontier.png"), (1400, 600));
    // FLUX: a row per sample, columns none and dicache-0.4 (uniform-2 is not on the sheet),
    // 128x128 images shown at 256x256 after a 180-pixel label column (the prompt, wrapped) and
    // a 28-pixel header.
    assert_eq!(size("flux-samples.png"), (180 + 2 * 260, 28 + 2 * 260));
    // Videos: rows none and DiCache per sample, 9 frames of 64x64 shown at 128x128.
    assert_eq!(size("wan-samples.png"), (180 + 9 * 132, 28 + 4 * 132));
    assert_eq!(size("hunyuan-samples.png"), (180 + 9 * 132, 28 + 4 * 132));
}
