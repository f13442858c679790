//! Files and progress of the run commands: initial noise, saved latents, images, the bar.

use std::{collections::HashMap, path::Path};

use anyhow::{Context, Result, bail};
use burn::tensor::{Tensor, backend::Backend};
use dicache_bench::progress::progress_bar;
use dit_layers::{Weights, gaussian_noise};
use indicatif::ProgressBar;
use safetensors::{Dtype as StDtype, tensor::TensorView};

/// The initial noise of `shape`: read from `file` (tensor "latents", checked against `shape`)
/// or drawn from `seed`.
pub fn initial_noise<B: Backend, const D: usize>(
    file: Option<&Path>,
    seed: u64,
    shape: [usize; D],
    device: &B::Device,
) -> Result<Tensor<B, D>> {
    match file {
        Some(path) => {
            let weights =
                Weights::open(path).with_context(|| format!("--init-noise {}", path.display()))?;
            Ok(weights
                .tensor("latents", shape, device)
                .with_context(|| format!("--init-noise {}", path.display()))?)
        }
        None => Ok(Tensor::from_data(gaussian_noise(&shape, seed), device)),
    }
}

/// Writes `latents` as f32 tensor "latents" to the safetensors file `path`.
pub fn save_latents<B: Backend, const D: usize>(latents: Tensor<B, D>, path: &Path) -> Result<()> {
    let shape = latents.dims().to_vec();
    let values: Vec<f32> = latents.into_data().iter::<f32>().collect();
    let bytes: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
    let view = TensorView::new(StDtype::F32, shape, &bytes)?;
    safetensors::serialize_to_file(HashMap::from([("latents".to_string(), view)]), None, path)
        .with_context(|| format!("cannot write {}", path.display()))?;
    Ok(())
}

/// Writes a decoded image `[1, 3, h, w]` (nominally in `[-1, 1]`) as an 8-bit RGB file
/// (format from the extension, e.g. `.png`), quantised as diffusers does.
pub fn save_image<B: Backend>(image: Tensor<B, 4>, path: &Path) -> Result<()> {
    let mut images = vae::to_rgb8(image)?;
    if images.len() != 1 {
        bail!("expected one image, got {}", images.len());
    }
    let rgb = images.remove(0);
    let img = image::RgbImage::from_raw(rgb.width as u32, rgb.height as u32, rgb.pixels)
        .context("image buffer size")?;
    img.save(path)
        .with_context(|| format!("cannot write {}", path.display()))?;
    Ok(())
}

/// Creates the folder `path` will be written into, if it has one and it is missing.
pub fn create_parent(path: &Path) -> Result<()> {
    match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => {
            std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))
        }
        _ => Ok(()),
    }
}

/// A progress bar over `steps` denoising steps.
pub fn step_bar(steps: usize) -> ProgressBar {
    let bar = progress_bar(steps, "steps");
    bar.set_message("denoising");
    bar
}
