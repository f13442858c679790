//! float16 end to end (text encoders, transformer, VAE) on the CPU backend and, with
//! `--features wgpu`, on wgpu: the same pictures as diffusers' float32 runs. The dtype is set
//! once per device and process, so float16 has this test binary to itself. Measured: 53-61 dB
//! PSNR (SSIM 0.999) on the CPU, 52-56 dB on wgpu; a wrong dtype path gives about 5 dB.

use burn::tensor::backend::Backend;
use dicache_bench::backend::{Dtype, compute_in};
use dicache_tests::{Cpu, half};

/// `B`'s default device, computing in float16.
fn f16_device<B: Backend>() -> B::Device {
    let device = B::Device::default();
    compute_in::<B>(&device, Dtype::F16).unwrap();
    device
}

#[test]
fn flux_mini_in_f16_draws_the_f32_picture() {
    half::flux_mini::<Cpu>(&f16_device::<Cpu>()).assert_at_least("FLUX-mini f16 (CPU)", 45.0, 0.99);
}

#[test]
fn wan_mini_in_f16_draws_the_f32_clip() {
    half::wan_mini::<Cpu>(&f16_device::<Cpu>()).assert_at_least("WAN-mini f16 (CPU)", 45.0, 0.99);
}

#[test]
fn hunyuan_video_in_f16_draws_the_f32_clip() {
    half::hunyuan_fixture::<Cpu>(&f16_device::<Cpu>()).assert_at_least(
        "HunyuanVideo fixture f16 (CPU)",
        45.0,
        0.99,
    );
}

/// wgpu (CI: Mesa's software Vulkan, which has float16 but not bfloat16).
#[cfg(feature = "wgpu")]
mod wgpu {
    use burn_wgpu::Wgpu;

    use super::*;

    #[test]
    fn flux_mini_in_f16_on_wgpu_draws_the_f32_picture() {
        half::flux_mini::<Wgpu>(&f16_device::<Wgpu>()).assert_at_least(
            "FLUX-mini f16 (wgpu)",
            45.0,
            0.99,
        );
    }

    #[test]
    fn hunyuan_video_in_f16_on_wgpu_draws_the_f32_clip() {
        half::hunyuan_fixture::<Wgpu>(&f16_device::<Wgpu>()).assert_at_least(
            "HunyuanVideo fixture f16 (wgpu)",
            45.0,
            0.99,
        );
    }

    #[test]
    fn wan_mini_in_f16_on_wgpu_draws_the_f32_clip() {
        half::wan_mini::<Wgpu>(&f16_device::<Wgpu>()).assert_at_least(
            "WAN-mini f16 (wgpu)",
            45.0,
            0.99,
        );
    }
}
