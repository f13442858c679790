//! The mini models: a small FLUX, WAN and HunyuanVideo trained from scratch by
//! `training/train_{flux,wan,hunyuan}_mini.py` on captioned scenes of coloured shapes, written
//! to `mini-models/`. They are what `cargo xtask run flux|wan|hunyuan` use without `--model`,
//! and what `cargo xtask bench cache` measures, each at the settings it was trained for.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};

use crate::workspace_root;

/// Generation settings: a model's defaults on the command line.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Preset {
    /// Width in pixels.
    pub width: usize,
    /// Height in pixels.
    pub height: usize,
    /// Frames of a video model; `None` for an image model.
    pub frames: Option<usize>,
    /// Denoising steps.
    pub steps: usize,
    /// Guidance scale (embedded for FLUX and HunyuanVideo, CFG for WAN); `None` leaves it to the pipeline.
    pub guidance: Option<f64>,
    /// Text encoder prompt length in tokens.
    pub max_sequence_length: usize,
}

/// Settings given on the command line: each one given wins over the preset's.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Given {
    /// `--width`.
    pub width: Option<usize>,
    /// `--height`.
    pub height: Option<usize>,
    /// `--frames`.
    pub frames: Option<usize>,
    /// `--steps`.
    pub steps: Option<usize>,
    /// `--guidance`.
    pub guidance: Option<f64>,
    /// `--max-sequence-length`.
    pub max_sequence_length: Option<usize>,
}

impl Preset {
    /// The pipelines' generation settings of this preset (1 frame for an image).
    pub fn settings(&self) -> dit_pipeline::Settings {
        dit_pipeline::Settings {
            width: self.width,
            height: self.height,
            frames: self.frames.unwrap_or(1),
            steps: self.steps,
            guidance: self.guidance,
            max_sequence_length: self.max_sequence_length,
        }
    }

    /// The settings the pipeline folder `folder` carries in its
    /// [`dit_pipeline::DEFAULTS_FILE`] (every mini model has one).
    pub fn of_folder(folder: &Path) -> Result<Self> {
        let path = folder.join(dit_pipeline::DEFAULTS_FILE);
        let text = std::fs::read_to_string(&path).with_context(|| {
            format!(
                "cannot read {}: a benchmarked model folder carries the settings it runs at",
                path.display()
            )
        })?;
        serde_json::from_str(&text).with_context(|| format!("{}", path.display()))
    }

    /// The settings to benchmark the folder `folder` at: its own (its
    /// [`dit_pipeline::DEFAULTS_FILE`]) when it carries them, else those of the mini model
    /// `mini` of the same pipeline.
    pub fn for_folder(folder: &Path, mini: &MiniModel) -> Result<Self> {
        if folder.join(dit_pipeline::DEFAULTS_FILE).exists() {
            Self::of_folder(folder)
        } else {
            Self::of_folder(&mini.dir())
        }
    }

    /// This preset with the settings `given` put in.
    pub fn with(self, given: Given) -> Self {
        Self {
            width: given.width.unwrap_or(self.width),
            height: given.height.unwrap_or(self.height),
            frames: given.frames.or(self.frames),
            steps: given.steps.unwrap_or(self.steps),
            guidance: given.guidance.or(self.guidance),
            max_sequence_length: given
                .max_sequence_length
                .unwrap_or(self.max_sequence_length),
        }
    }
}

/// A mini model: its folder under `mini-models/`, which carries the settings it was trained for
/// ([`Preset::of_folder`]).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MiniModel {
    /// Folder name under `mini-models/`.
    pub folder: &'static str,
    /// The script that trains it and writes the folder.
    pub trainer: &'static str,
}

/// FLUX-mini: a diffusers `FluxPipeline` folder with a guidance-embedding transformer, 128x128
/// images.
pub const FLUX: MiniModel = MiniModel {
    folder: "flux-mini",
    trainer: "training/train_flux_mini.py",
};

/// WAN-mini: a diffusers `WanPipeline` folder, 64x64 clips of 9 frames, classifier-free
/// guidance.
pub const WAN: MiniModel = MiniModel {
    folder: "wan-mini",
    trainer: "training/train_wan_mini.py",
};

/// HunyuanVideo-mini: a diffusers `HunyuanVideoPipeline` folder (LLaMA behind the prompt
/// template, CLIP pooled, causal 3D VAE), 64x64 clips of 9 frames, embedded guidance.
pub const HUNYUAN: MiniModel = MiniModel {
    folder: "hunyuan-mini",
    trainer: "training/train_hunyuan_mini.py",
};

impl MiniModel {
    /// `<workspace>/mini-models/<folder>`, whether or not it exists.
    pub fn dir(&self) -> PathBuf {
        workspace_root().join("mini-models").join(self.folder)
    }

    /// The folder to load: `model` when given, else this mini model's folder, which must exist.
    pub fn folder_or(&self, model: Option<&Path>) -> Result<PathBuf> {
        if let Some(model) = model {
            return Ok(model.to_path_buf());
        }
        let dir = self.dir();
        if !dir.join("model_index.json").is_file() {
            bail!(
                "no mini model at {}: run {} (it writes mini-models/{}), or pass --model with a \
                 pipeline folder",
                dir.display(),
                self.trainer,
                self.folder
            );
        }
        Ok(dir)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_mini_model_says_how_to_get_one() {
        let missing = MiniModel {
            folder: "no-such-mini",
            ..WAN
        };
        let msg = missing.folder_or(None).unwrap_err().to_string();
        assert!(
            msg.contains("training/") && msg.contains("--model"),
            "{msg}"
        );
    }
}
