//! AutoencoderKL decoder against diffusers: tiny random models saved with `save_pretrained`,
//! compared after `conv_in`, the mid block, every up block and at the output; FLUX's latent
//! unscaling; 8-bit RGB post-processing; loading errors; and the random decoder's layers.

use std::collections::HashMap;

use burn::{
    module::Module,
    tensor::{Distribution, Tensor, TensorData},
};
use dicache_tests::{Cpu, Scratch, assert_close, fixture, load_fixture, tensor};
use dit_layers::{FromParams, LoadError, read_json};
use vae::{AutoencoderKl, AutoencoderKlConfig, DecoderStage, VaeError, to_rgb8};

/// fp32 parity. The decoder chains ~15 convolutions and group norms whose sums run over up to
/// 16 * 9 terms per output, and activations grow to ~20, so absolute errors of a few 1e-6 are
/// expected; rtol 1e-4 keeps the bound relative on the large values.
const ATOL: f32 = 1e-5;
const RTOL: f32 = 1e-4;

fn load(name: &str) -> AutoencoderKl<Cpu> {
    AutoencoderKl::load(&fixture(&format!("vae/{name}")), &Default::default())
        .unwrap_or_else(|e| panic!("{name}: {e}"))
}

fn stage_name(stage: DecoderStage) -> String {
    match stage {
        DecoderStage::ConvIn => "conv_in".to_string(),
        DecoderStage::MidBlock => "mid_block".to_string(),
        DecoderStage::UpBlock(i) => format!("up_blocks.{i}"),
    }
}

/// Decodes the fixture latents of `name`, checking every stage and the image.
fn check_decoder(name: &str, model: &AutoencoderKl<Cpu>, fx: &HashMap<String, TensorData>) {
    let device = Default::default();
    let latents: Tensor<Cpu, 4> = tensor(fx, "latents", &device);
    let mut seen = Vec::new();
    let image = model
        .decode_inspect(latents, |stage, x| {
            let key = stage_name(stage);
            let expected = fx
                .get(&key)
                .unwrap_or_else(|| panic!("{name}: fixture has no {key}"));
            assert_close(x.clone(), expected, ATOL, RTOL, &format!("{name} {key}"));
            seen.push(key);
        })
        .unwrap();
    let up_blocks = fx.keys().filter(|k| k.starts_with("up_blocks.")).count();
    assert_eq!(seen.len(), 2 + up_blocks, "{name}: stages seen {seen:?}");
    assert_close(image, &fx["image"], ATOL, RTOL, &format!("{name} image"));
}

#[test]
fn flux_like_decoder_matches_diffusers() {
    let fx = load_fixture("vae/flux_like.safetensors");
    let model = load("flux_like");
    check_decoder("flux_like", &model, &fx);
    // Whole path: pipeline latents → unscale → decode, 4 up blocks = 8x.
    let device = Default::default();
    let packed: Tensor<Cpu, 4> = tensor(&fx, "packed", &device);
    let unscaled = model.unscale_latents(packed);
    assert_close(
        unscaled.clone(),
        &fx["unscaled"],
        0.0,
        0.0,
        "unscaled latents",
    );
    let image = model.decode(unscaled).unwrap();
    assert_eq!(image.dims(), [2, 3, 32, 48]);
}

#[test]
fn sd_like_decoder_matches_diffusers() {
    // post_quant_conv, 2 resnets + upsampler per block, no mid-block attention.
    let fx = load_fixture("vae/sd_like.safetensors");
    check_decoder("sd_like", &load("sd_like"), &fx);
}

#[test]
fn rgb8_matches_diffusers_postprocess() {
    let fx = load_fixture("vae/flux_like.safetensors");
    let image: Tensor<Cpu, 4> = tensor(&fx, "image", &Default::default());
    let rgb = to_rgb8(image).unwrap();
    let expected: Vec<i64> = fx["rgb8"].iter::<i64>().collect();
    assert_eq!(fx["rgb8"].shape.to_vec(), vec![2, 32, 48, 3]);
    assert_eq!(rgb.len(), 2);
    let actual: Vec<i64> = rgb
        .iter()
        .flat_map(|img| {
            assert_eq!((img.width, img.height), (48, 32));
            img.pixels.iter().map(|&p| p as i64)
        })
        .collect();
    assert_eq!(actual, expected);
    // The fixture exercises both clamps.
    assert!(expected.contains(&0) && expected.contains(&255));
}

#[test]
fn rgb8_needs_three_channels() {
    let x = Tensor::<Cpu, 4>::zeros([1, 4, 2, 2], &Default::default());
    assert!(matches!(to_rgb8(x), Err(VaeError::ImageShape { .. })));
}

#[test]
fn wrong_latent_channels_is_an_error() {
    let model = load("flux_like");
    let z = Tensor::<Cpu, 4>::zeros([1, 4, 2, 2], &Default::default());
    let err = model.decode(z).unwrap_err();
    assert!(err.to_string().contains("16"), "{err}");
}

fn load_err(path: &std::path::Path) -> VaeError {
    AutoencoderKl::<Cpu>::load(path, &Default::default()).unwrap_err()
}

#[test]
fn missing_config_is_named() {
    let dir = Scratch::copy_of("vae/flux_like", "noconfig");
    std::fs::remove_file(dir.path().join("config.json")).unwrap();
    let err = load_err(dir.path());
    assert!(err.to_string().contains("config.json"), "{err}");
}

#[test]
fn weight_file_loads_with_config_beside_it() {
    let file = fixture("vae/sd_like/diffusion_pytorch_model.safetensors");
    assert!(AutoencoderKl::<Cpu>::load(&file, &Default::default()).is_ok());
}

#[test]
fn wrong_weight_shape_names_the_key() {
    // A config with more latent channels than the weights hold.
    let dir = Scratch::copy_of("vae/flux_like", "shape");
    dir.edit_config("\"latent_channels\": 16", "\"latent_channels\": 8");
    let err = load_err(dir.path());
    match &err {
        VaeError::Load(LoadError::Shape { key, .. }) => {
            assert_eq!(key, "decoder.conv_in.weight", "{err}")
        }
        other => panic!("expected a shape error, got {other}"),
    }
}

#[test]
fn unused_decoder_weights_are_an_error() {
    // Weights with mid-block attention, config without: the attention weights are left over.
    let dir = Scratch::copy_of("vae/flux_like", "unused");
    dir.edit_config(
        "\"mid_block_add_attention\": true",
        "\"mid_block_add_attention\": false",
    );
    let err = load_err(dir.path());
    assert!(
        matches!(err, VaeError::Load(LoadError::Unused { .. })),
        "{err}"
    );
    assert!(err.to_string().contains("mid_block.attentions"), "{err}");
}

#[test]
fn unsupported_config_values_are_named() {
    for (from, to, key) in [
        ("\"act_fn\": \"silu\"", "\"act_fn\": \"gelu\"", "act_fn"),
        (
            "\"norm_num_groups\": 4",
            "\"norm_num_groups\": 3",
            "norm_num_groups",
        ),
        (
            "\"_class_name\": \"AutoencoderKL\"",
            "\"_class_name\": \"AutoencoderKLWan\"",
            "_class_name",
        ),
    ] {
        let dir = Scratch::copy_of("vae/flux_like", key);
        dir.edit_config(from, to);
        let err = load_err(dir.path());
        let msg = err.to_string();
        assert!(
            msg.contains(key) && msg.contains("config.json"),
            "{key}: {msg}"
        );
    }
}

#[test]
fn random_decoder_has_the_checkpoint_layers_and_shapes() {
    let device = Default::default();
    let path = fixture("vae/flux_like");
    let config: AutoencoderKlConfig = read_json(&path.join("config.json")).unwrap();
    let random = AutoencoderKl::<Cpu>::random(&config, &device).unwrap();
    let loaded = load("flux_like");
    assert_eq!(random.num_params(), loaded.num_params());
    let z = Tensor::<Cpu, 4>::random([2, 16, 3, 5], Distribution::Default, &device);
    assert_eq!(random.decode(z).unwrap().dims(), [2, 3, 24, 40]);
}
