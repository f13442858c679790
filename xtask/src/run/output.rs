//! Files and progress of the run commands: the initial noise, and every file a run writes
//! (image, video, frames, latents, trace), each checked before generating and written through a
//! temporary file beside it that is renamed into place once complete, so a failure never leaves
//! a partial file or damages an existing one.

use std::{
    collections::HashMap,
    fs,
    path::{Path, PathBuf},
};

use anyhow::{Context, Result, bail};
use burn::tensor::{Tensor, backend::Backend};
use dicache_bench::progress::progress_bar;
use dit_layers::Weights;
use image::ImageFormat;
use indicatif::ProgressBar;
use safetensors::{Dtype as StDtype, tensor::TensorView};

/// A file a run will write, named by the flag that gave it (`--out`), checked before anything
/// is generated, without leaving a trace: not a folder, and its folder (or, where that is still
/// missing, the nearest folder above it, where the missing ones will be created) writable.
#[derive(Debug, Clone)]
pub struct OutputFile {
    flag: &'static str,
    path: PathBuf,
}

impl OutputFile {
    /// Checks `path`, given with `flag`.
    pub fn new(flag: &'static str, path: &Path) -> Result<Self> {
        not_a_folder(flag, path)?;
        let file = Self {
            flag,
            path: path.to_path_buf(),
        };
        let dir = file.dir();
        // A relative path none of whose folders exists yet starts in the working directory.
        let existing = dir
            .ancestors()
            .find(|d| d.exists())
            .unwrap_or(Path::new("."));
        if !existing.is_dir() {
            bail!(
                "{flag} {}: {} is a file, not a folder",
                path.display(),
                existing.display()
            );
        }
        tempfile::tempfile_in(existing).with_context(|| {
            format!(
                "{flag} {}: cannot write in {}",
                path.display(),
                existing.display()
            )
        })?;
        Ok(file)
    }

    /// The path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The file of sample `index` of several: `out/flux.png` becomes `out/flux-003.png`,
    /// checked as [`Self::new`] checks.
    pub fn numbered(&self, index: usize) -> Result<Self> {
        let stem = self.stem();
        let name = match self.path.extension() {
            Some(ext) => format!("{stem}-{index:03}.{}", ext.to_string_lossy()),
            None => format!("{stem}-{index:03}"),
        };
        Self::new(self.flag, &self.path.with_file_name(name))
    }

    /// The file beside this one with extension `extension` (a sidecar), under the same flag.
    pub fn with_extension(&self, extension: &str) -> Self {
        Self {
            flag: self.flag,
            path: self.path.with_extension(extension),
        }
    }

    /// Writes the file: `write` fills a temporary file beside it (given its path, which keeps
    /// the extension, for writers that choose the format by it), which then replaces the file
    /// in one rename. On failure the temporary file is removed and the file left as it was.
    pub fn write(&self, write: impl FnOnce(&Path) -> Result<()>) -> Result<()> {
        let dir = self.dir();
        fs::create_dir_all(&dir).with_context(|| {
            format!(
                "{} {}: cannot create {}",
                self.flag,
                self.path.display(),
                dir.display()
            )
        })?;
        let temporary = self.temporary()?;
        write(temporary.path())
            .with_context(|| format!("{} {}: writing failed", self.flag, self.path.display()))?;
        temporary.persist(&self.path).with_context(|| {
            format!(
                "{} {}: cannot move the written file into place",
                self.flag,
                self.path.display()
            )
        })?;
        Ok(())
    }

    /// The folder the file goes in.
    fn dir(&self) -> PathBuf {
        match self.path.parent() {
            Some(dir) if !dir.as_os_str().is_empty() => dir.to_path_buf(),
            _ => PathBuf::from("."),
        }
    }

    /// An empty temporary file beside the file, ending in the same extension.
    fn temporary(&self) -> std::io::Result<tempfile::NamedTempFile> {
        let suffix = self
            .path
            .extension()
            .map(|e| format!(".{}", e.to_string_lossy()))
            .unwrap_or_default();
        let prefix = format!(".{}.", self.stem());
        let mut builder = tempfile::Builder::new();
        builder.prefix(&prefix).suffix(&suffix);
        // Created as a new file would be (0666 less the umask), not tempfile's private 0600.
        #[cfg(unix)]
        builder.permissions(std::os::unix::fs::PermissionsExt::from_mode(0o666));
        builder.tempfile_in(self.dir())
    }

    /// The file name without its extension.
    fn stem(&self) -> String {
        self.path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default()
    }

    /// The absolute path, for telling two outputs apart.
    fn absolute(&self) -> PathBuf {
        std::path::absolute(&self.path).unwrap_or_else(|_| self.path.clone())
    }
}

/// Fails when `path`, given with `flag`, is a folder.
fn not_a_folder(flag: &str, path: &Path) -> Result<()> {
    if path.is_dir() {
        bail!("{flag} {} is a folder; give a file name", path.display());
    }
    Ok(())
}

/// Fails when two of `files` are the same file (one would overwrite the other).
pub fn check_distinct(files: &[&OutputFile]) -> Result<()> {
    for (i, a) in files.iter().enumerate() {
        if let Some(b) = files[i + 1..].iter().find(|b| b.absolute() == a.absolute()) {
            bail!(
                "{} and {} name the same file {}; give each its own",
                a.flag,
                b.flag,
                a.path.display()
            );
        }
    }
    Ok(())
}

/// An image file: `--out` with a format this build writes (PNG, JPEG, WebP, BMP), chosen by the
/// extension.
#[derive(Debug, Clone)]
pub struct ImageFile {
    file: OutputFile,
    format: ImageFormat,
}

/// The image formats written, as their extensions.
const IMAGE_EXTENSIONS: &str = ".png, .jpg (.jpeg), .webp or .bmp";

impl ImageFile {
    /// Checks `path` (given with `flag`) and its format.
    pub fn new(flag: &'static str, path: &Path) -> Result<Self> {
        not_a_folder(flag, path)?;
        let format = ImageFormat::from_path(path)
            .ok()
            .filter(|f| {
                matches!(
                    f,
                    ImageFormat::Png | ImageFormat::Jpeg | ImageFormat::WebP | ImageFormat::Bmp
                ) && f.writing_enabled()
            })
            .with_context(|| {
                format!(
                    "{flag} {}: not an image format this tool writes; end it in \
                     {IMAGE_EXTENSIONS}",
                    path.display()
                )
            })?;
        Ok(Self {
            file: OutputFile::new(flag, path)?,
            format,
        })
    }

    /// The file.
    pub fn file(&self) -> &OutputFile {
        &self.file
    }

    /// The image of sample `index` of several ([`OutputFile::numbered`]).
    pub fn numbered(&self, index: usize) -> Result<Self> {
        Ok(Self {
            file: self.file.numbered(index)?,
            format: self.format,
        })
    }

    /// Writes a decoded image `[1, 3, h, w]` (nominally in `[-1, 1]`), quantised as diffusers
    /// does.
    pub fn save<B: Backend>(&self, image: Tensor<B, 4>) -> Result<()> {
        let mut images = vae::to_rgb8(image)?;
        if images.len() != 1 {
            bail!("expected one image, got {}", images.len());
        }
        self.save_rgb8(images.remove(0))
    }

    /// Writes an 8-bit RGB image.
    pub fn save_rgb8(&self, rgb: vae::Rgb8Image) -> Result<()> {
        let img = image::RgbImage::from_raw(rgb.width as u32, rgb.height as u32, rgb.pixels)
            .context("image buffer size")?;
        self.file
            .write(|path| Ok(img.save_with_format(path, self.format)?))
    }
}

/// The `--init-noise` file, which must be a file, checked before anything loads.
pub fn check_noise_file(file: Option<&Path>) -> Result<()> {
    match file {
        Some(path) if !path.is_file() => bail!(
            "--init-noise {}: {}; give a safetensors file with a tensor \"latents\"",
            path.display(),
            if path.is_dir() {
                "is a folder"
            } else {
                "no such file"
            }
        ),
        _ => Ok(()),
    }
}

/// The initial noise of `samples` samples of latent `shape` (`[1, ...]`) from `file`, if given:
/// its tensor "latents", one row per sample (`[samples, ...]`).
pub fn noise_file<B: Backend, const D: usize>(
    file: Option<&Path>,
    samples: usize,
    shape: [usize; D],
    device: &B::Device,
) -> Result<Option<Tensor<B, D>>> {
    let Some(path) = file else {
        return Ok(None);
    };
    let mut batched = shape;
    batched[0] = samples;
    let context = || format!("--init-noise {} (one row per sample)", path.display());
    let weights = Weights::open(path).with_context(context)?;
    Ok(Some(
        weights
            .tensor("latents", batched, device)
            .with_context(context)?,
    ))
}

/// Writes `latents` as the f32 tensor "latents" of a safetensors file.
pub fn save_latents<B: Backend, const D: usize>(
    latents: Tensor<B, D>,
    file: &OutputFile,
) -> Result<()> {
    let shape = latents.dims().to_vec();
    let bytes: Vec<u8> = latents
        .into_data()
        .iter::<f32>()
        .flat_map(f32::to_le_bytes)
        .collect();
    let view = TensorView::new(StDtype::F32, shape, &bytes)?;
    let serialized = safetensors::serialize(HashMap::from([("latents".to_string(), view)]), None)?;
    file.write(|path| Ok(fs::write(path, &serialized)?))
}

/// A progress bar over `steps` denoising steps.
pub fn step_bar(steps: usize) -> ProgressBar {
    let bar = progress_bar(steps, "steps");
    bar.set_message("denoising");
    bar
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failed_write_leaves_the_existing_file_and_no_temporary() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.png");
        fs::write(&path, b"old picture").unwrap();
        let file = OutputFile::new("--out", &path).unwrap();
        let err = file
            .write(|p| {
                fs::write(p, b"half a pic")?;
                bail!("the encoder failed")
            })
            .unwrap_err();
        assert!(format!("{err:#}").contains("the encoder failed"), "{err:#}");
        assert_eq!(fs::read(&path).unwrap(), b"old picture");
        assert_eq!(
            fs::read_dir(dir.path()).unwrap().count(),
            1,
            "a temporary file was left"
        );
        file.write(|p| Ok(fs::write(p, b"new picture")?)).unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"new picture");
        // The same permissions as a file written directly.
        let direct = dir.path().join("direct");
        fs::write(&direct, b"x").unwrap();
        let mode = |p: &Path| fs::metadata(p).unwrap().permissions();
        assert_eq!(mode(&path), mode(&direct));
        fs::remove_file(direct).unwrap();
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn image_formats_and_paths_are_checked_up_front() {
        let dir = tempfile::tempdir().unwrap();
        for ok in ["a.png", "a.jpg", "a.JPEG", "a.webp", "a.bmp"] {
            assert!(
                ImageFile::new("--out", &dir.path().join(ok)).is_ok(),
                "{ok}"
            );
        }
        for bad in ["a.jpgz", "a.gif", "a", "a.txt"] {
            let msg = ImageFile::new("--out", &dir.path().join(bad))
                .unwrap_err()
                .to_string();
            assert!(msg.contains(bad) && msg.contains(".png"), "{msg}");
        }
        let msg = OutputFile::new("--out", dir.path())
            .unwrap_err()
            .to_string();
        assert!(msg.contains("is a folder"), "{msg}");
        let nested = dir.path().join("new/deeper/a.png");
        let file = ImageFile::new("--out", &nested).unwrap();
        assert!(!dir.path().join("new").exists(), "checking creates nothing");
        file.file().write(|p| Ok(fs::write(p, b"x")?)).unwrap();
        assert_eq!(fs::read(&nested).unwrap(), b"x");
        let under_a_file = dir.path().join("a.png/b.png");
        fs::write(dir.path().join("a.png"), b"x").unwrap();
        let msg = OutputFile::new("--out", &under_a_file)
            .unwrap_err()
            .to_string();
        assert!(msg.contains("is a file"), "{msg}");
    }

    #[test]
    fn jpeg_and_webp_are_written() {
        let dir = tempfile::tempdir().unwrap();
        let rgb = vae::Rgb8Image {
            width: 4,
            height: 2,
            pixels: (0..24).map(|i| (i * 10) as u8).collect(),
        };
        for name in ["a.jpg", "a.webp", "a.bmp", "a.png"] {
            let path = dir.path().join(name);
            ImageFile::new("--out", &path)
                .unwrap()
                .save_rgb8(rgb.clone())
                .unwrap();
            let read = image::open(&path).unwrap();
            assert_eq!((read.width(), read.height()), (4, 2), "{name}");
        }
    }

    #[test]
    fn outputs_must_differ_and_the_noise_must_be_a_file() {
        let dir = tempfile::tempdir().unwrap();
        let out = OutputFile::new("--out", &dir.path().join("a.png")).unwrap();
        let same = OutputFile::new("--save-latents", &dir.path().join("./a.png")).unwrap();
        let other = OutputFile::new("--trace", &dir.path().join("t.json")).unwrap();
        assert!(check_distinct(&[&out, &other]).is_ok());
        let msg = check_distinct(&[&out, &other, &same])
            .unwrap_err()
            .to_string();
        assert!(
            msg.contains("--out") && msg.contains("--save-latents"),
            "{msg}"
        );
        let msg = check_noise_file(Some(dir.path())).unwrap_err().to_string();
        assert!(msg.contains("is a folder"), "{msg}");
        assert!(check_noise_file(None).is_ok());
    }
}
