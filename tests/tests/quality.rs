//! PSNR and SSIM (dicache_bench::quality) against scikit-image on small image pairs and a clip
//! pair: noisy, shifted, blurred, darker, unrelated and identical (`fixtures/gen_quality.py`).

use std::{collections::HashMap, fs};

use burn::tensor::TensorData;
use dicache_bench::quality::{psnr, ssim, video_psnr, video_ssim};
use dicache_tests::{fixture, load_fixture};
use vae::Rgb8Image;

/// The frames of the uint8 fixture tensor `name` (`[h, w, 3]` or `[frames, h, w, 3]`).
fn frames(pairs: &HashMap<String, TensorData>, name: &str) -> Vec<Rgb8Image> {
    let data = &pairs[name];
    let shape = &data.shape;
    let (height, width) = (shape[shape.len() - 3], shape[shape.len() - 2]);
    data.to_vec::<u8>()
        .unwrap()
        .chunks_exact(height * width * 3)
        .map(|pixels| Rgb8Image {
            width,
            height,
            pixels: pixels.to_vec(),
        })
        .collect()
}

#[test]
fn psnr_and_ssim_equal_scikit_image() {
    let cases: serde_json::Value =
        serde_json::from_str(&fs::read_to_string(fixture("quality/cases.json")).unwrap()).unwrap();
    let pairs = load_fixture("quality/pairs.safetensors");
    let cases = cases.as_array().unwrap();
    assert_eq!(cases.len(), 8);
    for case in cases {
        let name = case["name"].as_str().unwrap();
        let a = frames(&pairs, &format!("{name}.a"));
        let b = frames(&pairs, &format!("{name}.b"));
        let (p, s) = match case["kind"].as_str().unwrap() {
            "image" => (psnr(&a[0], &b[0]).unwrap(), ssim(&a[0], &b[0]).unwrap()),
            "video" => (video_psnr(&a, &b).unwrap(), video_ssim(&a, &b).unwrap()),
            other => panic!("unknown kind {other}"),
        };
        // skimage's null PSNR is an identical pair: infinite.
        let expected_psnr = case["psnr"].as_f64().unwrap_or(f64::INFINITY);
        let expected_ssim = case["ssim"].as_f64().unwrap();
        assert!(
            p == expected_psnr || (p - expected_psnr).abs() < 1e-9,
            "{name}: PSNR {p} vs scikit-image {expected_psnr}"
        );
        assert!(
            (s - expected_ssim).abs() < 1e-9,
            "{name}: SSIM {s} vs scikit-image {expected_ssim}"
        );
    }
}
