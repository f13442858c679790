//! WAN 2.1 VAE decoder (diffusers' `AutoencoderKLWan`) against diffusers: tiny random models
//! saved with `save_pretrained`, decoded frame by frame with the causal feature cache and
//! compared after `conv_in`, the mid block and every up block of every latent frame, and at
//! the output; WanPipeline's latent unscaling; 8-bit RGB frames; frame counts and causality;
//! loading and input errors; the random decoder's layers.

use std::{
    collections::{BTreeMap, HashMap},
    path::Path,
};

use burn::{
    module::Module,
    tensor::{Distribution, Tensor, TensorData},
};
use dicache_tests::{Cpu, Scratch, assert_close, fixture, load_fixture, tensor};
use dit_layers::{FromParams, LoadError, read_json};
use vae::{DecoderStage, VaeError, WanVae, WanVaeConfig, video_to_rgb8};

/// fp32 parity. The decoder chains ~25 causal 3x3x3 convolutions (sums over up to 16 * 27
/// terms) and RMS norms, and activations grow to ~10, so absolute errors of a few 1e-6 are
/// expected; rtol 1e-4 keeps the bound relative on the large values.
const ATOL: f32 = 1e-5;
const RTOL: f32 = 1e-4;

fn load(name: &str) -> WanVae<Cpu> {
    WanVae::load(&fixture(&format!("wan_vae/{name}")), &Default::default())
        .unwrap_or_else(|e| panic!("{name}: {e}"))
}

fn stage_name(stage: DecoderStage) -> String {
    match stage {
        DecoderStage::ConvIn => "conv_in".to_string(),
        DecoderStage::MidBlock => "mid_block".to_string(),
        DecoderStage::UpBlock(i) => format!("up_blocks.{i}"),
    }
}

/// Unscales and decodes the fixture latents of `name`, checking every stage of every latent
/// frame and the video; returns the decoded video.
fn check_decoder(name: &str, fx: &HashMap<String, TensorData>) -> Tensor<Cpu, 5> {
    let device = Default::default();
    let model = load(name);
    let denoised: Tensor<Cpu, 5> = tensor(fx, "denoised", &device);
    let latents = model.unscale_latents(denoised).unwrap();
    // The same f32 operations in the same order as WanPipeline: bit-exact.
    assert_close(
        latents.clone(),
        &fx["latents"],
        0.0,
        0.0,
        &format!("{name} unscaled latents"),
    );
    let mut seen = Vec::new();
    let video = model
        .decode_inspect(latents, |frame, stage, x| {
            let key = format!("chunk{frame}.{}", stage_name(stage));
            let expected = fx
                .get(&key)
                .unwrap_or_else(|| panic!("{name}: fixture has no {key}"));
            assert_close(x.clone(), expected, ATOL, RTOL, &format!("{name} {key}"));
            seen.push(key);
        })
        .unwrap();
    let expected_stages = fx.keys().filter(|k| k.starts_with("chunk")).count();
    assert_eq!(seen.len(), expected_stages, "{name}: stages seen {seen:?}");
    assert_close(
        video.clone(),
        &fx["video"],
        ATOL,
        RTOL,
        &format!("{name} video"),
    );
    video
}

#[test]
fn wan21_like_decoder_matches_diffusers() {
    let fx = load_fixture("wan_vae/wan21_like.safetensors");
    let video = check_decoder("wan21_like", &fx);
    // 3 latent frames of 2x3 → 4 * 2 + 1 frames of 16x24, clamped as diffusers clamps.
    assert_eq!(video.dims(), [1, 3, 9, 16, 24]);
    let values: Vec<f32> = video.into_data().iter::<f32>().collect();
    assert!(values.iter().all(|v| (-1.0..=1.0).contains(v)));
    assert!(
        values.contains(&1.0) || values.contains(&-1.0),
        "clamp never hit"
    );
    let model = load("wan21_like");
    assert_eq!(model.spatial_scale_factor(), 8);
    assert_eq!(model.temporal_scale_factor(), 4);
    assert_eq!(model.video_frames(21), 81);
}

#[test]
fn mixed_decoder_matches_diffusers() {
    // A 2-D upsampler before a 3-D one (2x time), 3 resnets per block, batch 2, and a full
    // checkpoint whose encoder weights the loader skips.
    let fx = load_fixture("wan_vae/mixed.safetensors");
    let video = check_decoder("mixed", &fx);
    assert_eq!(video.dims(), [2, 3, 5, 12, 8]);
}

#[test]
fn decoding_is_causal() {
    // The first latent frame alone decodes to the video's first frame, the first two to its
    // first 1 + 4 frames: later latents never change earlier frames.
    let fx = load_fixture("wan_vae/wan21_like.safetensors");
    let device = Default::default();
    let model = load("wan21_like");
    let latents: Tensor<Cpu, 5> = tensor(&fx, "latents", &device);
    let expected: Tensor<Cpu, 5> = tensor(&fx, "video", &device);
    for (latent_frames, video_frames) in [(1, 1), (2, 5)] {
        let video = model
            .decode(latents.clone().narrow(2, 0, latent_frames))
            .unwrap();
        assert_eq!(video.dims()[2], model.video_frames(latent_frames));
        let prefix = expected.clone().narrow(2, 0, video_frames).into_data();
        assert_close(
            video,
            &prefix,
            ATOL,
            RTOL,
            &format!("first {latent_frames} latent frames"),
        );
    }
}

#[test]
fn rgb8_frames_match_diffusers_postprocess() {
    let fx = load_fixture("wan_vae/wan21_like.safetensors");
    let video: Tensor<Cpu, 5> = tensor(&fx, "video", &Default::default());
    let clips = video_to_rgb8(video).unwrap();
    assert_eq!(fx["rgb8"].shape.to_vec(), vec![1, 9, 16, 24, 3]);
    assert_eq!(clips.len(), 1);
    assert_eq!(clips[0].len(), 9);
    let actual: Vec<i64> = clips
        .iter()
        .flatten()
        .flat_map(|frame| {
            assert_eq!((frame.width, frame.height), (24, 16));
            frame.pixels.iter().map(|&p| p as i64)
        })
        .collect();
    let expected: Vec<i64> = fx["rgb8"].iter::<i64>().collect();
    assert_eq!(actual, expected);
}

#[test]
fn rgb8_frames_need_three_channels() {
    let x = Tensor::<Cpu, 5>::zeros([1, 4, 2, 2, 2], &Default::default());
    let err = video_to_rgb8(x).unwrap_err();
    assert!(matches!(err, VaeError::VideoShape { .. }), "{err}");
}

#[test]
fn bad_latents_are_errors() {
    let model = load("wan21_like");
    let device = Default::default();
    for shape in [[1, 4, 2, 2, 2], [1, 16, 0, 2, 2], [1, 16, 2, 0, 2]] {
        let z = Tensor::<Cpu, 5>::zeros(shape, &device);
        let err = model.decode(z.clone()).unwrap_err();
        assert!(
            matches!(err, VaeError::VideoLatentShape { channels: 16, .. }),
            "{shape:?}: {err}"
        );
        assert!(err.to_string().contains("16"), "{err}");
        assert!(model.unscale_latents(z).is_err(), "{shape:?}");
    }
}

fn load_err(path: &Path) -> VaeError {
    WanVae::<Cpu>::load(path, &Default::default()).unwrap_err()
}

#[test]
fn weight_file_loads_with_config_beside_it() {
    let file = fixture("wan_vae/wan21_like/diffusion_pytorch_model.safetensors");
    assert!(WanVae::<Cpu>::load(&file, &Default::default()).is_ok());
}

#[test]
fn missing_config_is_named() {
    let dir = Scratch::copy_of("wan_vae/wan21_like", "noconfig");
    std::fs::remove_file(dir.path().join("config.json")).unwrap();
    let err = load_err(dir.path());
    assert!(err.to_string().contains("config.json"), "{err}");
}

#[test]
fn wrong_weight_shape_names_the_key() {
    // A wider decoder than the weights hold.
    let dir = Scratch::copy_of("wan_vae/wan21_like", "shape");
    dir.edit_config("\"base_dim\": 4", "\"base_dim\": 8");
    let err = load_err(dir.path());
    match &err {
        VaeError::Load(LoadError::Shape { key, .. }) => {
            assert_eq!(key, "decoder.conv_in.weight", "{err}")
        }
        other => panic!("expected a shape error, got {other}"),
    }
}

#[test]
fn missing_weight_names_the_key() {
    // Three resnets per up block asked of a checkpoint with two.
    let dir = Scratch::copy_of("wan_vae/wan21_like", "missing");
    dir.edit_config("\"num_res_blocks\": 1", "\"num_res_blocks\": 2");
    let err = load_err(dir.path());
    assert!(
        matches!(&err, VaeError::Load(LoadError::MissingKey { key, .. })
            if key.starts_with("decoder.up_blocks.0.resnets.2.")),
        "{err}"
    );
}

#[test]
fn unused_decoder_weights_are_an_error() {
    // One resnet per up block asked of a checkpoint with two: `resnets.1` is left over.
    let dir = Scratch::copy_of("wan_vae/wan21_like", "unused");
    dir.edit_config("\"num_res_blocks\": 1", "\"num_res_blocks\": 0");
    let err = load_err(dir.path());
    assert!(
        matches!(err, VaeError::Load(LoadError::Unused { .. })),
        "{err}"
    );
    assert!(err.to_string().contains("resnets.1"), "{err}");
}

#[test]
fn unsupported_config_values_are_named() {
    // WAN 2.2's options, and settings the decoder cannot be built from.
    let cases: BTreeMap<&str, (&str, &str)> = BTreeMap::from([
        (
            "is_residual",
            ("\"is_residual\": false", "\"is_residual\": true"),
        ),
        ("patch_size", ("\"patch_size\": null", "\"patch_size\": 2")),
        (
            "_class_name",
            (
                "\"_class_name\": \"AutoencoderKLWan\"",
                "\"_class_name\": \"AutoencoderKL\"",
            ),
        ),
        (
            "temperal_downsample",
            (
                "\"temperal_downsample\": [",
                "\"temperal_downsample\": [true, ",
            ),
        ),
        (
            "latents_mean",
            ("\"latents_mean\": [", "\"latents_mean\": [0.5, "),
        ),
        ("dim_mult", ("\"dim_mult\": [", "\"dim_mult\": [0, ")),
    ]);
    for (key, (from, to)) in cases {
        let dir = Scratch::copy_of("wan_vae/wan21_like", key);
        dir.edit_config(from, to);
        let msg = load_err(dir.path()).to_string();
        assert!(
            msg.contains(key) && msg.contains("config.json"),
            "{key}: {msg}"
        );
    }
}

#[test]
fn random_decoder_has_the_checkpoint_layers_and_shapes() {
    let device = Default::default();
    let path = fixture("wan_vae/wan21_like");
    let config: WanVaeConfig = read_json(&path.join("config.json")).unwrap();
    let random = WanVae::<Cpu>::random(&config, &device).unwrap();
    let loaded = load("wan21_like");
    assert_eq!(random.num_params(), loaded.num_params());
    let z = Tensor::<Cpu, 5>::random([1, 16, 2, 2, 3], Distribution::Default, &device);
    assert_eq!(random.decode(z).unwrap().dims(), [1, 3, 5, 16, 24]);
}
