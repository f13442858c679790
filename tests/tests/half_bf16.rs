//! bfloat16 end to end (text encoders, transformer, VAE) on the CPU backend: the same pictures
//! as diffusers' float32 runs. The dtype is set once per device and process, so bfloat16 has
//! this test binary to itself. (Mesa's software Vulkan has no bfloat16, so wgpu is not tested
//! here.)
//!
//! bfloat16 keeps 8 significant bits to float16's 11, so it lands 10-30 dB below float16
//! (`half_f16`): measured 33.7 dB on FLUX-mini, 48.9 dB on WAN-mini and 26.4 dB (SSIM 0.964)
//! on the HunyuanVideo fixture, whose random weights amplify rounding more than trained ones.
//! A wrong dtype path gives about 5 dB (a NaN or garbage picture).

use burn::tensor::backend::Backend;
use dicache_bench::backend::{Dtype, compute_in};
use dicache_tests::{Cpu, half};

/// `B`'s default device, computing in bfloat16.
fn bf16_device<B: Backend>() -> B::Device {
    let device = B::Device::default();
    compute_in::<B>(&device, Dtype::Bf16).unwrap();
    device
}

#[test]
fn flux_mini_in_bf16_draws_the_f32_picture() {
    half::flux_mini::<Cpu>(&bf16_device::<Cpu>()).assert_at_least(
        "FLUX-mini bf16 (CPU)",
        30.0,
        0.98,
    );
}

#[test]
fn wan_mini_in_bf16_draws_the_f32_clip() {
    half::wan_mini::<Cpu>(&bf16_device::<Cpu>()).assert_at_least("WAN-mini bf16 (CPU)", 40.0, 0.99);
}

#[test]
fn hunyuan_video_in_bf16_draws_the_f32_clip() {
    half::hunyuan_fixture::<Cpu>(&bf16_device::<Cpu>()).assert_at_least(
        "HunyuanVideo fixture bf16 (CPU)",
        24.0,
        0.95,
    );
}
