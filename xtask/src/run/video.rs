//! Writing decoded videos: animated GIF (built in), MP4 and WebP (through ffmpeg), PNG frames.

use std::{
    fs,
    io::Write,
    path::{Path, PathBuf},
    process::{Command, Stdio},
};

use anyhow::{Context, Result, bail};
use burn::tensor::{Tensor, backend::Backend};
use image::{Delay, Frame, RgbImage, RgbaImage, buffer::ConvertBuffer, codecs::gif::GifEncoder};
use vae::Rgb8Image;

/// A video container, chosen by the output file's extension.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// Animated GIF, written by the `image` crate.
    Gif,
    /// H.264 in MP4, written by ffmpeg.
    Mp4,
    /// Animated WebP, written by ffmpeg.
    Webp,
}

impl Format {
    /// The format of `path`'s extension.
    fn of(path: &Path) -> Result<Self> {
        match path
            .extension()
            .and_then(|e| e.to_str())
            .map(str::to_ascii_lowercase)
            .as_deref()
        {
            Some("gif") => Ok(Format::Gif),
            Some("mp4") => Ok(Format::Mp4),
            Some("webp") => Ok(Format::Webp),
            _ => bail!(
                "--out {}: the video must end in .gif, .mp4 or .webp",
                path.display()
            ),
        }
    }
}

impl Format {
    /// Fails now, before a long generation, when the format's encoder is missing.
    fn check_encoder(self) -> Result<()> {
        match self {
            Format::Gif => Ok(()),
            Format::Mp4 | Format::Webp => match Command::new("ffmpeg").arg("-version").output() {
                Ok(out) if out.status.success() => Ok(()),
                _ => bail!(
                    "writing {self:?} video needs ffmpeg on PATH; write a .gif instead, or add \
                     --frames-dir to get PNG frames"
                ),
            },
        }
    }
}

/// Where and how a run command writes its video: checked before the pipeline loads.
#[derive(Debug, Clone)]
pub struct Target {
    format: Format,
    fps: u32,
    frames_dir: Option<PathBuf>,
    path: PathBuf,
}

impl Target {
    /// The video file `path` (its format from the extension, its encoder checked) at `fps`
    /// frames per second, and each frame as a PNG into `frames_dir` if given.
    pub fn new(path: &Path, fps: u32, frames_dir: Option<&Path>) -> Result<Self> {
        let format = Format::of(path)?;
        format.check_encoder()?;
        Ok(Self {
            format,
            fps,
            frames_dir: frames_dir.map(Path::to_path_buf),
            path: path.to_path_buf(),
        })
    }

    /// Writes a decoded video `[1, 3, frames, h, w]` (nominally in `[-1, 1]`).
    pub fn save<B: Backend>(&self, video: Tensor<B, 5>) -> Result<()> {
        let frames = frames(video)?;
        if let Some(dir) = &self.frames_dir {
            write_pngs(&frames, dir)?;
        }
        write(&frames, self.format, self.fps, &self.path)
    }
}

/// The frames of a decoded video `[1, 3, frames, h, w]` (nominally in `[-1, 1]`) as 8-bit RGB.
fn frames<B: Backend>(video: Tensor<B, 5>) -> Result<Vec<Rgb8Image>> {
    let mut videos = vae::video_to_rgb8(video)?;
    if videos.len() != 1 {
        bail!("expected one video, got {}", videos.len());
    }
    Ok(videos.remove(0))
}

/// Writes every frame as `frame_0000.png`, ... into `dir` (created if needed).
fn write_pngs(frames: &[Rgb8Image], dir: &Path) -> Result<()> {
    fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    for (i, frame) in frames.iter().enumerate() {
        let path = dir.join(format!("frame_{i:04}.png"));
        rgb(frame)?
            .save(&path)
            .with_context(|| format!("cannot write {}", path.display()))?;
    }
    Ok(())
}

/// Writes `frames` at `fps` frames per second to `path` in `format`.
fn write(frames: &[Rgb8Image], format: Format, fps: u32, path: &Path) -> Result<()> {
    if frames.is_empty() || fps == 0 {
        bail!("a video needs at least one frame and a positive frame rate");
    }
    match format {
        Format::Gif => write_gif(frames, fps, path),
        Format::Mp4 => ffmpeg(
            frames,
            fps,
            path,
            &["-c:v", "libx264", "-pix_fmt", "yuv420p"],
        ),
        Format::Webp => ffmpeg(frames, fps, path, &["-c:v", "libwebp", "-loop", "0"]),
    }
}

fn rgb(frame: &Rgb8Image) -> Result<RgbImage> {
    RgbImage::from_raw(
        frame.width as u32,
        frame.height as u32,
        frame.pixels.clone(),
    )
    .context("frame buffer size")
}

fn write_gif(frames: &[Rgb8Image], fps: u32, path: &Path) -> Result<()> {
    let file =
        fs::File::create(path).with_context(|| format!("cannot write {}", path.display()))?;
    let mut encoder = GifEncoder::new_with_speed(file, 10);
    encoder.set_repeat(image::codecs::gif::Repeat::Infinite)?;
    let delay = Delay::from_numer_denom_ms(1000, fps);
    for frame in frames {
        let rgba: RgbaImage = rgb(frame)?.convert();
        encoder.encode_frame(Frame::from_parts(rgba, 0, 0, delay))?;
    }
    Ok(())
}

/// Pipes raw RGB frames into `ffmpeg` with the given encoder arguments.
fn ffmpeg(frames: &[Rgb8Image], fps: u32, path: &Path, codec: &[&str]) -> Result<()> {
    let size = format!("{}x{}", frames[0].width, frames[0].height);
    let mut child = Command::new("ffmpeg")
        .args([
            "-y",
            "-loglevel",
            "error",
            "-f",
            "rawvideo",
            "-pix_fmt",
            "rgb24",
            "-s",
            &size,
        ])
        .args(["-r", &fps.to_string(), "-i", "-"])
        .args(codec)
        .arg(path)
        .stdin(Stdio::piped())
        .spawn()
        .map_err(|e| {
            anyhow::anyhow!(
                "writing {} needs ffmpeg on PATH ({e}); write a .gif instead, or add \
                 --frames-dir to get PNG frames",
                path.display()
            )
        })?;
    let mut stdin = child.stdin.take().expect("stdin was piped");
    for frame in frames {
        stdin
            .write_all(&frame.pixels)
            .context("ffmpeg stopped reading frames")?;
    }
    drop(stdin);
    let status = child.wait()?;
    if !status.success() {
        bail!("ffmpeg failed ({status}) writing {}", path.display());
    }
    Ok(())
}
