//! HunyuanVideo VAE decoder (diffusers' `AutoencoderKLHunyuanVideo`) against diffusers: tiny
//! random models saved with `save_pretrained`, decoded in one pass and compared after
//! `conv_in`, the mid block (with its causal attention), every up block and at the output;
//! HunyuanVideoPipeline's latent unscaling; tiled decoding with tiny tiles (spatial tiles, and
//! temporal tiles each tiled spatially) against diffusers' `enable_tiling`; frame counts;
//! loading, tiling and input errors; the random decoder's layers.

use std::{
    collections::{BTreeMap, HashMap},
    path::{Path, PathBuf},
};

use burn::{
    module::Module,
    tensor::{Distribution, Tensor, TensorData},
};
use dicache_tests::{Cpu, assert_close, fixture, load_fixture, tensor};
use dit_layers::{FromParams, LoadError, read_json};
use vae::{
    DecoderStage, HunyuanVideoVae, HunyuanVideoVaeConfig, SpatialTiles, TemporalTiles, TileConfig,
    VaeError,
};

/// fp32 parity. The decoder chains ~30 replicate-padded 3x3x3 convolutions (sums over up to
/// 8 * 27 terms) and group norms, so absolute errors of a few 1e-6 are expected; rtol 1e-4
/// keeps the bound relative on the larger values.
const ATOL: f32 = 1e-5;
const RTOL: f32 = 1e-4;

fn load(name: &str) -> HunyuanVideoVae<Cpu> {
    HunyuanVideoVae::load(
        &fixture(&format!("hunyuan_vae/{name}")),
        &Default::default(),
    )
    .unwrap_or_else(|e| panic!("{name}: {e}"))
}

fn stage_name(stage: DecoderStage) -> String {
    match stage {
        DecoderStage::ConvIn => "conv_in".to_string(),
        DecoderStage::MidBlock => "mid_block".to_string(),
        DecoderStage::UpBlock(i) => format!("up_blocks.{i}"),
    }
}

/// Unscales and decodes the fixture latents of `name`, checking every stage and the video;
/// returns the decoded video.
fn check_decoder(name: &str, fx: &HashMap<String, TensorData>) -> Tensor<Cpu, 5> {
    let device = Default::default();
    let model = load(name);
    let denoised: Tensor<Cpu, 5> = tensor(fx, "denoised", &device);
    let latents = model.unscale_latents(denoised).unwrap();
    // One f32 division, as HunyuanVideoPipeline does it: bit-exact.
    assert_close(
        latents.clone(),
        &fx["latents"],
        0.0,
        0.0,
        &format!("{name} unscaled latents"),
    );
    let mut seen = Vec::new();
    let video = model
        .decode_inspect(latents, |stage, x| {
            let key = stage_name(stage);
            let expected = fx
                .get(&key)
                .unwrap_or_else(|| panic!("{name}: fixture has no {key}"));
            assert_close(x.clone(), expected, ATOL, RTOL, &format!("{name} {key}"));
            seen.push(key);
        })
        .unwrap();
    let expected_stages = fx
        .keys()
        .filter(|k| k.starts_with("up_blocks.") || *k == "conv_in" || *k == "mid_block")
        .count();
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
fn hunyuan_like_decoder_matches_diffusers() {
    let fx = load_fixture("hunyuan_vae/hunyuan_like.safetensors");
    let video = check_decoder("hunyuan_like", &fx);
    // 3 latent frames of 2x3 → 4 * 2 + 1 frames of 16x24.
    assert_eq!(video.dims(), [1, 3, 9, 16, 24]);
    let model = load("hunyuan_like");
    assert_eq!(model.spatial_scale_factor(), 8);
    assert_eq!(model.temporal_scale_factor(), 4);
    assert_eq!(model.video_frames(33), 129);
    assert_eq!(model.video_frames(1), 1);
}

#[test]
fn three_block_decoder_without_attention_matches_diffusers() {
    // The last up block upsamples space (three blocks for 8x), three resnets per block, no
    // mid-block attention, batch 2.
    let fx = load_fixture("hunyuan_vae/three_blocks.safetensors");
    let video = check_decoder("three_blocks", &fx);
    assert_eq!(video.dims(), [2, 3, 5, 16, 24]);
}

/// The fixture's tiny tiles, as the generator passes them to `enable_tiling`.
fn tiny_tiles() -> TileConfig {
    TileConfig {
        spatial: Some(SpatialTiles {
            min_height: 24,
            min_width: 24,
            stride_height: 16,
            stride_width: 16,
        }),
        temporal: Some(TemporalTiles {
            min_frames: 8,
            stride_frames: 4,
        }),
    }
}

#[test]
fn spatially_tiled_decode_matches_diffusers() {
    // 2 latent frames of 4x5 in 2 x 3 tiles of at most 3x3 latents, 8 pixels cross-faded.
    let fx = load_fixture("hunyuan_vae/tiled.safetensors");
    let model = load("hunyuan_like");
    let latents: Tensor<Cpu, 5> = tensor(&fx, "spatial_latents", &Default::default());
    let video = model.decode_tiled(latents, &tiny_tiles()).unwrap();
    assert_eq!(video.dims(), [1, 3, 5, 32, 40]);
    assert_close(video, &fx["spatial_video"], ATOL, RTOL, "spatial tiles");
}

#[test]
fn temporally_tiled_decode_matches_diffusers() {
    // 4 latent frames in temporal tiles of 3, 3, 2 and 1 latent frames (the last adds no
    // frame), 4 frames cross-faded, each tile cut into spatial tiles.
    let fx = load_fixture("hunyuan_vae/tiled.safetensors");
    let model = load("hunyuan_like");
    let latents: Tensor<Cpu, 5> = tensor(&fx, "temporal_latents", &Default::default());
    let video = model.decode_tiled(latents, &tiny_tiles()).unwrap();
    assert_eq!(video.dims(), [1, 3, model.video_frames(4), 32, 40]);
    assert_close(video, &fx["temporal_video"], ATOL, RTOL, "temporal tiles");
}

#[test]
fn tiled_decoding_keeps_the_frame_count() {
    // Temporal tiles of 3 latent frames every 1: short last tiles (2 and 1 latent frames) and
    // clips of a single tile, down to one frame; spatial tiles one latent cell wide at the edge.
    let model = load("hunyuan_like");
    let device = Default::default();
    for frames in 1..=6 {
        let latents = Tensor::<Cpu, 5>::random(
            [1, 16, frames, 1, 5],
            Distribution::Normal(0.0, 1.0),
            &device,
        );
        let video = model.decode_tiled(latents, &tiny_tiles()).unwrap();
        assert_eq!(
            video.dims(),
            [1, 3, model.video_frames(frames), 8, 40],
            "{frames} latent frames"
        );
    }
}

#[test]
fn tiling_changes_the_result_and_small_clips_are_not_tiled() {
    // The blends must be what makes the tiled video match: one pass differs from it.
    let fx = load_fixture("hunyuan_vae/tiled.safetensors");
    let model = load("hunyuan_like");
    let device = Default::default();
    let latents: Tensor<Cpu, 5> = tensor(&fx, "spatial_latents", &device);
    let whole = model.decode(latents.clone()).unwrap();
    let tiled: Tensor<Cpu, 5> = tensor(&fx, "spatial_video", &device);
    let diff = (whole.clone() - tiled).abs().max().into_scalar();
    assert!(diff > 1e-2, "tiling changed nothing: {diff}");
    // diffusers' default tiles exceed this clip: decoded in one pass.
    let default_tiled = model.decode_tiled(latents, &TileConfig::default()).unwrap();
    assert_close(default_tiled, &whole.into_data(), 0.0, 0.0, "default tiles");
}

#[test]
fn default_tiles_are_diffusers() {
    let tiles = TileConfig::default();
    assert_eq!(
        tiles.spatial,
        Some(SpatialTiles {
            min_height: 256,
            min_width: 256,
            stride_height: 192,
            stride_width: 192,
        })
    );
    assert_eq!(
        tiles.temporal,
        Some(TemporalTiles {
            min_frames: 16,
            stride_frames: 12,
        })
    );
}

#[test]
fn bad_tiles_are_errors() {
    let model = load("hunyuan_like");
    let latents = Tensor::<Cpu, 5>::zeros([1, 16, 2, 4, 5], &Default::default());
    let mut under_a_cell = tiny_tiles();
    under_a_cell.spatial.as_mut().unwrap().stride_width = 4;
    let mut gaps = tiny_tiles();
    gaps.temporal.as_mut().unwrap().stride_frames = 12;
    for (tiles, axis) in [(under_a_cell, "width"), (gaps, "frames")] {
        let err = model.decode_tiled(latents.clone(), &tiles).unwrap_err();
        assert!(matches!(err, VaeError::Tiles(_)), "{err}");
        assert!(err.to_string().contains(axis), "{err}");
    }
}

#[test]
fn bad_latents_are_errors() {
    let model = load("hunyuan_like");
    let device = Default::default();
    for shape in [[1, 4, 2, 2, 2], [1, 16, 0, 2, 2], [1, 16, 2, 0, 2]] {
        let z = Tensor::<Cpu, 5>::zeros(shape, &device);
        let err = model.decode(z.clone()).unwrap_err();
        assert!(
            matches!(err, VaeError::VideoLatentShape { channels: 16, .. }),
            "{shape:?}: {err}"
        );
        assert!(err.to_string().contains("16"), "{err}");
        assert!(model.unscale_latents(z.clone()).is_err(), "{shape:?}");
        assert!(
            model.decode_tiled(z, &TileConfig::default()).is_err(),
            "{shape:?}"
        );
    }
}

/// A scratch copy of fixture model `name` in a fresh folder.
fn scratch(name: &str, tag: &str) -> PathBuf {
    let dir =
        std::env::temp_dir().join(format!("dicache-hunyuan-vae-{tag}-{}", std::process::id()));
    if dir.exists() {
        std::fs::remove_dir_all(&dir).unwrap();
    }
    std::fs::create_dir_all(&dir).unwrap();
    for file in ["config.json", "diffusion_pytorch_model.safetensors"] {
        std::fs::copy(
            fixture(&format!("hunyuan_vae/{name}/{file}")),
            dir.join(file),
        )
        .unwrap();
    }
    dir
}

/// Rewrites `config.json` in `dir`, replacing `from` (which must occur) with `to`.
fn edit_config(dir: &Path, from: &str, to: &str) {
    let path = dir.join("config.json");
    let config = std::fs::read_to_string(&path).unwrap();
    assert!(config.contains(from), "config has no {from}");
    std::fs::write(path, config.replace(from, to)).unwrap();
}

fn load_err(path: &Path) -> VaeError {
    HunyuanVideoVae::<Cpu>::load(path, &Default::default()).unwrap_err()
}

#[test]
fn weight_file_loads_with_config_beside_it() {
    let file = fixture("hunyuan_vae/hunyuan_like/diffusion_pytorch_model.safetensors");
    assert!(HunyuanVideoVae::<Cpu>::load(&file, &Default::default()).is_ok());
}

#[test]
fn missing_config_is_named() {
    let dir = scratch("hunyuan_like", "noconfig");
    std::fs::remove_file(dir.join("config.json")).unwrap();
    let err = load_err(&dir);
    assert!(err.to_string().contains("config.json"), "{err}");
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn wrong_weight_shape_names_the_key() {
    // 32 latent channels asked of weights made for 16.
    let dir = scratch("hunyuan_like", "shape");
    edit_config(&dir, "\"latent_channels\": 16", "\"latent_channels\": 32");
    let err = load_err(&dir);
    match &err {
        VaeError::Load(LoadError::Shape { key, .. }) => {
            assert_eq!(key, "post_quant_conv.weight", "{err}")
        }
        other => panic!("expected a shape error, got {other}"),
    }
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn missing_weight_names_the_key() {
    // Three resnets per up block asked of a checkpoint with two.
    let dir = scratch("hunyuan_like", "missing");
    edit_config(&dir, "\"layers_per_block\": 1", "\"layers_per_block\": 2");
    let err = load_err(&dir);
    assert!(
        matches!(&err, VaeError::Load(LoadError::MissingKey { key, .. })
            if key.starts_with("decoder.up_blocks.0.resnets.2.")),
        "{err}"
    );
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn unused_decoder_weights_are_an_error() {
    // No mid-block attention asked of a checkpoint that holds one.
    let dir = scratch("hunyuan_like", "unused");
    edit_config(
        &dir,
        "\"mid_block_add_attention\": true",
        "\"mid_block_add_attention\": false",
    );
    let err = load_err(&dir);
    assert!(
        matches!(err, VaeError::Load(LoadError::Unused { .. })),
        "{err}"
    );
    assert!(err.to_string().contains("attentions.0"), "{err}");
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn unsupported_config_values_are_named() {
    let cases: BTreeMap<&str, (&str, &str)> = BTreeMap::from([
        (
            "_class_name",
            (
                "\"_class_name\": \"AutoencoderKLHunyuanVideo\"",
                "\"_class_name\": \"AutoencoderKLWan\"",
            ),
        ),
        (
            "temporal_compression_ratio",
            (
                "\"temporal_compression_ratio\": 4",
                "\"temporal_compression_ratio\": 8",
            ),
        ),
        (
            "spatial_compression_ratio",
            (
                "\"spatial_compression_ratio\": 8",
                "\"spatial_compression_ratio\": 6",
            ),
        ),
        (
            "norm_num_groups",
            ("\"norm_num_groups\": 2", "\"norm_num_groups\": 3"),
        ),
        (
            "up_block_types",
            (
                "\"up_block_types\": [",
                "\"up_block_types\": [\"UpDecoderBlock2D\", ",
            ),
        ),
        ("act_fn", ("\"act_fn\": \"silu\"", "\"act_fn\": \"relu\"")),
    ]);
    for (key, (from, to)) in cases {
        let dir = scratch("hunyuan_like", key);
        edit_config(&dir, from, to);
        let msg = load_err(&dir).to_string();
        assert!(
            msg.contains(key) && msg.contains("config.json"),
            "{key}: {msg}"
        );
        std::fs::remove_dir_all(dir).unwrap();
    }
}

#[test]
fn random_decoder_has_the_checkpoint_layers_and_shapes() {
    let device = Default::default();
    let path = fixture("hunyuan_vae/hunyuan_like");
    let config: HunyuanVideoVaeConfig = read_json(&path.join("config.json")).unwrap();
    let random = HunyuanVideoVae::<Cpu>::random(&config, &device).unwrap();
    let loaded = load("hunyuan_like");
    assert_eq!(random.num_params(), loaded.num_params());
    let z = Tensor::<Cpu, 5>::random([1, 16, 2, 2, 3], Distribution::Default, &device);
    assert_eq!(random.decode(z).unwrap().dims(), [1, 3, 5, 16, 24]);
}
