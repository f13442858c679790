//! Writing decoded videos: animated GIF (built in), MP4 and WebP (through ffmpeg), PNG frames.

use std::{
    fs,
    io::Write,
    path::{Path, PathBuf},
    process::{Command, Stdio},
};

use anyhow::{Context, Result, bail};
use burn::tensor::{Tensor, backend::Backend};
use vae::Rgb8Image;

use super::output::{ImageFile, OutputFile};

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
    file: OutputFile,
}

impl Target {
    /// The video file `path` (`--out`; its format from the extension, its encoder checked) at
    /// `fps` frames per second, and each frame as a PNG into `frames_dir` if given (created when
    /// missing; not a file).
    pub fn new(path: &Path, fps: u32, frames_dir: Option<&Path>) -> Result<Self> {
        let format = Format::of(path)?;
        if fps == 0 {
            bail!("--fps must be at least 1");
        }
        if let Some(dir) = frames_dir {
            check_frames_dir(dir)?;
        }
        format.check_encoder()?;
        let file = OutputFile::new("--out", path)?;
        Ok(Self {
            format,
            fps,
            frames_dir: frames_dir.map(Path::to_path_buf),
            file,
        })
    }

    /// The video file.
    pub fn file(&self) -> &OutputFile {
        &self.file
    }

    /// The video of sample `index` of several ([`OutputFile::numbered`]), its frames in
    /// `<frames-dir>-003`.
    pub fn numbered(&self, index: usize) -> Result<Self> {
        let frames_dir = self.frames_dir.as_ref().map(|dir| {
            let mut name = dir.as_os_str().to_owned();
            name.push(format!("-{index:03}"));
            PathBuf::from(name)
        });
        if let Some(dir) = &frames_dir {
            check_frames_dir(dir)?;
        }
        Ok(Self {
            format: self.format,
            fps: self.fps,
            frames_dir,
            file: self.file.numbered(index)?,
        })
    }

    /// Writes a decoded video `[1, 3, frames, h, w]` (nominally in `[-1, 1]`).
    pub fn save<B: Backend>(&self, video: Tensor<B, 5>) -> Result<()> {
        let frames = frames(video)?;
        if let Some(dir) = &self.frames_dir {
            write_pngs(&frames, dir)?;
        }
        self.file
            .write(|path| write(&frames, self.format, self.fps, path))
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

/// Frame `index`'s PNG in `dir`: `frame_0000.png`, ...
fn frame_path(dir: &Path, index: usize) -> PathBuf {
    dir.join(format!("frame_{index:04}.png"))
}

/// Fails unless the frames can go into `dir`: a folder (or none yet), writable.
fn check_frames_dir(dir: &Path) -> Result<()> {
    OutputFile::new("--frames-dir", &frame_path(dir, 0)).map(drop)
}

/// Writes every frame as `frame_0000.png`, ... into `dir`.
fn write_pngs(frames: &[Rgb8Image], dir: &Path) -> Result<()> {
    for (i, frame) in frames.iter().enumerate() {
        ImageFile::new("--frames-dir", &frame_path(dir, i))?.save_rgb8(frame.clone())?;
    }
    Ok(())
}

/// Writes `frames` at `fps` frames per second to `path` in `format`.
fn write(frames: &[Rgb8Image], format: Format, fps: u32, path: &Path) -> Result<()> {
    if frames.is_empty() {
        bail!("a video needs at least one frame");
    }
    match format {
        Format::Gif => write_gif(frames, fps, path),
        Format::Mp4 => ffmpeg(
            frames,
            fps,
            path,
            ("mp4", &["-c:v", "libx264", "-pix_fmt", "yuv420p"]),
        ),
        Format::Webp => ffmpeg(
            frames,
            fps,
            path,
            ("webp", &["-c:v", "libwebp", "-loop", "0"]),
        ),
    }
}

/// Writes `frames` as a looping animated GIF.
fn write_gif(frames: &[Rgb8Image], fps: u32, path: &Path) -> Result<()> {
    let file =
        fs::File::create(path).with_context(|| format!("cannot write {}", path.display()))?;
    Ok(dicache_serve::media::write_gif(frames, fps, file)?)
}

/// Pipes raw RGB frames into `ffmpeg`, writing container `format` with the encoder arguments
/// `codec`.
fn ffmpeg(
    frames: &[Rgb8Image],
    fps: u32,
    path: &Path,
    (format, codec): (&str, &[&str]),
) -> Result<()> {
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
        // The format by name: the temporary file's name need not tell it.
        .args(["-f", format])
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
