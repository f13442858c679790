//! Picking a compiled-in backend and compute dtype at run time.

use anyhow::{Result, bail};
use burn::tensor::{FloatDType, backend::Backend};
use clap::ValueEnum;

/// The backends a command can run on (each needs its cargo feature).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum BackendKind {
    /// Burn's Flex CPU backend (feature `flex`, on by default), threaded and SIMD.
    Cpu,
    /// wgpu: Vulkan, Metal or DX12 (feature `wgpu`).
    Wgpu,
    /// CUDA, kernels compiled at run time with NVRTC (feature `cuda`).
    Cuda,
}

/// The float dtype weights are loaded into and computed in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Dtype {
    /// 32-bit float.
    F32,
    /// 16-bit float.
    F16,
    /// bfloat16 (not on wgpu).
    Bf16,
}

impl Dtype {
    /// Bytes per value.
    pub fn bytes(self) -> usize {
        match self {
            Dtype::F32 => 4,
            Dtype::F16 | Dtype::Bf16 => 2,
        }
    }
}

impl From<Dtype> for FloatDType {
    fn from(d: Dtype) -> Self {
        match d {
            Dtype::F32 => FloatDType::F32,
            Dtype::F16 => FloatDType::F16,
            Dtype::Bf16 => FloatDType::BF16,
        }
    }
}

/// Work that runs on whichever backend the user picked.
pub trait BackendJob {
    /// What the work returns.
    type Output;
    /// Runs the work on backend `B`, whose `device` already computes in the chosen dtype.
    fn run<B: Backend>(self, device: B::Device) -> Result<Self::Output>;
}

/// Runs `job` on the backend `kind` with float dtype `dtype`.
pub fn dispatch<J: BackendJob>(kind: BackendKind, dtype: Dtype, job: J) -> Result<J::Output> {
    match kind {
        BackendKind::Cpu => {
            #[cfg(feature = "flex")]
            return run_on::<burn_flex::Flex, J>(burn_flex::FlexDevice, dtype, job);
            #[cfg(not(feature = "flex"))]
            bail!("this binary was built without the CPU backend: rebuild with `--features flex`");
        }
        BackendKind::Wgpu => {
            #[cfg(feature = "wgpu")]
            return run_on::<burn_wgpu::Wgpu, J>(burn_wgpu::WgpuDevice::default(), dtype, job);
            #[cfg(not(feature = "wgpu"))]
            bail!("this binary was built without wgpu: rebuild with `--features wgpu`");
        }
        BackendKind::Cuda => {
            #[cfg(feature = "cuda")]
            return run_on::<burn_cuda::Cuda, J>(burn_cuda::CudaDevice::default(), dtype, job);
            #[cfg(not(feature = "cuda"))]
            bail!("this binary was built without CUDA: rebuild with `--features cuda`");
        }
    }
}

#[allow(dead_code)] // unused only when no backend feature is enabled
fn run_on<B: Backend, J: BackendJob>(device: B::Device, dtype: Dtype, job: J) -> Result<J::Output> {
    compute_in::<B>(&device, dtype)?;
    job.run::<B>(device)
}

/// Makes `device` compute in `dtype`: every float tensor created on it without an explicit
/// dtype (loaded weights, noise, activations) takes it. A device's dtypes are set once per
/// process: a later call (a library caller running several commands) finds them set, which is
/// fine when they agree and an error when not.
pub fn compute_in<B: Backend>(device: &B::Device, dtype: Dtype) -> Result<()> {
    let float = FloatDType::from(dtype);
    if burn::tensor::set_default_dtypes::<B>(device, float, int_dtype::<B>()).is_err()
        && burn::tensor::get_device_settings::<B>(device).float_dtype != float
    {
        bail!(
            "{dtype:?} is not supported by the {} backend, or this process set its device up \
             in another dtype",
            B::name(device)
        );
    }
    Ok(())
}

/// The backend's own integer dtype (left as it is).
fn int_dtype<B: Backend>() -> burn::tensor::IntDType {
    use burn::tensor::Element;
    B::IntElem::dtype().into()
}
