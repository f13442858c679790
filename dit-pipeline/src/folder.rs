//! A diffusers-layout pipeline folder and its components.

use std::path::{Path, PathBuf};

use burn::tensor::backend::Backend;
use dit_layers::{DiffusionTransformer, LoadError, TransformerConfig, Weights, read_json};
use serde::Deserialize;
use text_encoders::T5EncoderModel;

use crate::{EncoderResidency, PipelineError, Settings};

/// How to load a pipeline folder: single files that replace some of its components (what
/// `--transformer` and `--t5` name), and when its text encoders are in memory.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LoadOptions<'a> {
    /// The transformer in the original authors' layout (safetensors or GGUF), instead of
    /// `transformer/`.
    pub transformer: Option<&'a Path>,
    /// The T5-family text encoder (FLUX.1's T5-XXL, WAN's umT5): transformers' safetensors or a
    /// llama.cpp `t5encoder` GGUF file, instead of the weights of the folder's T5 component
    /// ([`crate::Pipeline::T5_COMPONENT`]), whose configuration it keeps.
    pub t5: Option<&'a Path>,
    /// Whether the text encoders stay loaded between requests or are read for each.
    pub text_encoders: EncoderResidency,
}

/// The file of a pipeline folder holding the settings it is meant to run at (a mini model's
/// size, steps, guidance and prompt length), read by [`PipelineFolder::defaults`]. Not a
/// diffusers file; diffusers ignores it.
pub const DEFAULTS_FILE: &str = "dicache_defaults.json";

/// A pipeline folder as `save_pretrained` writes it (`model_index.json` and one sub-folder per
/// component); every lookup names what is missing.
#[derive(Debug, Clone)]
pub struct PipelineFolder {
    root: PathBuf,
    class_name: String,
}

/// What this crate reads of `model_index.json`: the pipeline class.
#[derive(Deserialize)]
struct ModelIndex {
    #[serde(rename = "_class_name")]
    class_name: String,
}

/// The settings a folder's [`DEFAULTS_FILE`] may carry; each one given replaces the
/// pipeline's own default.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FolderDefaults {
    width: Option<usize>,
    height: Option<usize>,
    frames: Option<usize>,
    steps: Option<usize>,
    guidance: Option<f64>,
    max_sequence_length: Option<usize>,
}

impl PipelineFolder {
    /// The folder at `root`, which must hold a `model_index.json` naming its pipeline class.
    pub fn open(root: &Path) -> Result<Self, PipelineError> {
        let mut folder = Self {
            root: root.to_path_buf(),
            class_name: String::new(),
        };
        let index = folder.component("model_index.json", "the pipeline index")?;
        let parsed: ModelIndex = read_json(&index).map_err(|e| {
            let message = match e {
                LoadError::Config { message, .. } => message,
                other => other.to_string(),
            };
            LoadError::Config {
                path: index.clone(),
                message: format!("not a diffusers pipeline index ({message})"),
            }
        })?;
        folder.class_name = parsed.class_name;
        Ok(folder)
    }

    /// The folder at `root`, which must be a pipeline of class `class_name` (`"FluxPipeline"`)
    /// by its `model_index.json`.
    pub fn open_as(root: &Path, class_name: &str) -> Result<Self, PipelineError> {
        let folder = Self::open(root)?;
        if folder.class_name != class_name {
            return Err(PipelineError::WrongPipeline {
                folder: root.to_path_buf(),
                found: folder.class_name,
                expected: class_name.to_string(),
            });
        }
        Ok(folder)
    }

    /// The pipeline class `model_index.json` names (`"WanPipeline"`).
    pub fn class_name(&self) -> &str {
        &self.class_name
    }

    /// The settings to run at unless told otherwise: `base` (the pipeline's defaults) with
    /// those the folder's [`DEFAULTS_FILE`] carries put in, if it has one.
    pub fn defaults(&self, base: Settings) -> Result<Settings, PipelineError> {
        let path = self.root.join(DEFAULTS_FILE);
        if !path.exists() {
            return Ok(base);
        }
        let given: FolderDefaults = read_json(&path)?;
        Ok(Settings {
            width: given.width.unwrap_or(base.width),
            height: given.height.unwrap_or(base.height),
            frames: given.frames.unwrap_or(base.frames),
            steps: given.steps.unwrap_or(base.steps),
            guidance: given.guidance.or(base.guidance),
            max_sequence_length: given
                .max_sequence_length
                .unwrap_or(base.max_sequence_length),
        })
    }

    /// The folder's path.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The path of the component `name` (`"vae"`, `"scheduler/scheduler_config.json"`), which
    /// must exist; `what` says what it holds, for the error.
    pub fn component(&self, name: &str, what: &str) -> Result<PathBuf, PipelineError> {
        let path = self.root.join(name);
        if path.exists() {
            Ok(path)
        } else {
            Err(PipelineError::MissingComponent {
                folder: self.root.clone(),
                component: name.to_string(),
                what: what.to_string(),
            })
        }
    }

    /// The scheduler's configuration file, `scheduler/scheduler_config.json`.
    pub fn scheduler_config(&self) -> Result<PathBuf, PipelineError> {
        self.component(
            "scheduler/scheduler_config.json",
            "the scheduler configuration",
        )
    }

    /// The T5-family text encoder of the component `name` (`text_encoder_2`, `text_encoder`):
    /// its configuration with the weights of the single file `file` when one is given
    /// (safetensors or a llama.cpp `t5encoder` GGUF), else the component as it is.
    pub fn load_t5<B: Backend>(
        &self,
        name: &str,
        file: Option<&Path>,
        device: &B::Device,
    ) -> Result<T5EncoderModel<B>, PipelineError> {
        let dir = self.component(name, "the T5 text encoder")?;
        Ok(match file {
            Some(file) => T5EncoderModel::load_file(&dir, file, device)?,
            None => T5EncoderModel::load(&dir, device)?,
        })
    }

    /// The transformer `T`: the original-layout single file `file` (safetensors or GGUF) when
    /// one is given — what it does not store taken from the folder's `transformer/config.json`
    /// where that fits the file, else from the released models — else the `transformer/`
    /// component in diffusers layout (`what` names it, for the error).
    pub fn load_transformer<B: Backend, T: DiffusionTransformer<B>>(
        &self,
        file: Option<&Path>,
        what: &str,
        device: &B::Device,
    ) -> Result<T, PipelineError> {
        self.transformer(
            file,
            what,
            |file| T::load_original_for(file, self.transformer_config()?.as_ref(), device),
            |dir| T::load_diffusers(dir, device),
        )
    }

    /// The bytes the pipeline's weights take loaded with floats of `dtype_bytes` bytes (see
    /// [`Weights::loaded_bytes`]: GGUF matrices stay quantized): every tensor of the components
    /// in safetensors (sub-folders [`Weights::open`] finds weights in), with each of `replaced`
    /// (a component's folder name and the single file, already opened, that replaces it)
    /// counted instead of that component. Read from the files' headers, before anything is
    /// loaded.
    pub fn weight_bytes(
        &self,
        replaced: &[(&str, &Weights)],
        dtype_bytes: usize,
    ) -> Result<u64, PipelineError> {
        let io = |source| LoadError::Io {
            path: self.root.clone(),
            source,
        };
        let mut total: u64 = replaced
            .iter()
            .map(|(_, weights)| weights.loaded_bytes(dtype_bytes))
            .sum();
        for entry in std::fs::read_dir(&self.root).map_err(io)? {
            let dir = entry.map_err(io)?.path();
            let is_replaced = replaced
                .iter()
                .any(|(name, _)| dir.file_name() == Some(name.as_ref()));
            if !dir.is_dir() || is_replaced {
                continue;
            }
            match Weights::open(&dir) {
                Ok(weights) => total += weights.loaded_bytes(dtype_bytes),
                Err(LoadError::NoWeights(_)) => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(total)
    }

    /// The folder's `transformer/config.json`, checked, if it has one.
    fn transformer_config<C: TransformerConfig>(&self) -> Result<Option<C>, LoadError> {
        let path = self.root.join("transformer").join("config.json");
        if path.is_file() {
            C::from_file(&path).map(Some)
        } else {
            Ok(None)
        }
    }

    /// The transformer: the single-file checkpoint `file` read with `load_file` when one is
    /// given, else the `transformer/` component (`what` names it, for the error) read with
    /// `load_folder`.
    pub fn transformer<T>(
        &self,
        file: Option<&Path>,
        what: &str,
        load_file: impl FnOnce(&Path) -> Result<T, LoadError>,
        load_folder: impl FnOnce(&Path) -> Result<T, LoadError>,
    ) -> Result<T, PipelineError> {
        Ok(match file {
            Some(file) => load_file(file)?,
            None => load_folder(&self.component("transformer", what)?)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const INDEX: &str = r#"{"_class_name": "FluxPipeline", "vae": ["diffusers", "AutoencoderKL"]}"#;

    #[test]
    fn the_index_must_name_the_pipeline_class() {
        let dir = tempfile::tempdir().unwrap();
        let index = dir.path().join("model_index.json");
        for bad in ["\u{1}\u{2}garbage", "{}", r#"{"_class_name": 3}"#] {
            std::fs::write(&index, bad).unwrap();
            let msg = PipelineFolder::open(dir.path()).unwrap_err().to_string();
            assert!(
                msg.contains("model_index.json") && msg.contains("not a diffusers pipeline index"),
                "{msg}"
            );
        }
        std::fs::write(&index, INDEX).unwrap();
        assert_eq!(
            PipelineFolder::open(dir.path()).unwrap().class_name(),
            "FluxPipeline"
        );
        assert!(PipelineFolder::open_as(dir.path(), "FluxPipeline").is_ok());
        let msg = PipelineFolder::open_as(dir.path(), "WanPipeline")
            .unwrap_err()
            .to_string();
        assert!(
            msg.contains("FluxPipeline") && msg.contains("WanPipeline"),
            "{msg}"
        );
    }

    #[test]
    fn a_folder_may_carry_its_own_defaults() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("model_index.json"), INDEX).unwrap();
        let folder = PipelineFolder::open(dir.path()).unwrap();
        let base = Settings {
            width: 1024,
            height: 1024,
            frames: 1,
            steps: 28,
            guidance: None,
            max_sequence_length: 512,
        };
        assert_eq!(folder.defaults(base).unwrap(), base);
        let file = dir.path().join(DEFAULTS_FILE);
        std::fs::write(&file, r#"{"width": 128, "guidance": 3.5}"#).unwrap();
        let expected = Settings {
            width: 128,
            guidance: Some(3.5),
            ..base
        };
        assert_eq!(folder.defaults(base).unwrap(), expected);
        std::fs::write(&file, r#"{"widht": 128}"#).unwrap();
        let msg = folder.defaults(base).unwrap_err().to_string();
        assert!(
            msg.contains(DEFAULTS_FILE) && msg.contains("widht"),
            "{msg}"
        );
    }

    #[test]
    fn missing_index_and_components_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let err = PipelineFolder::open(dir.path()).unwrap_err().to_string();
        assert!(
            err.contains("model_index.json") && err.contains("pipeline index"),
            "{err}"
        );
        std::fs::write(dir.path().join("model_index.json"), INDEX).unwrap();
        std::fs::create_dir(dir.path().join("vae")).unwrap();
        let folder = PipelineFolder::open(dir.path()).unwrap();
        assert_eq!(
            folder.component("vae", "the VAE").unwrap(),
            dir.path().join("vae")
        );
        let err = folder
            .component("text_encoder", "the text encoder")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("text_encoder") && err.contains("the text encoder"),
            "{err}"
        );
    }

    #[test]
    fn the_transformer_comes_from_the_file_when_given_else_from_its_folder() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("model_index.json"), INDEX).unwrap();
        let folder = PipelineFolder::open(dir.path()).unwrap();
        let from_file = folder
            .transformer(
                Some(Path::new("t.safetensors")),
                "the transformer",
                |file| Ok(file.to_path_buf()),
                |_| unreachable!("the file was given"),
            )
            .unwrap();
        assert_eq!(from_file, Path::new("t.safetensors"));
        let err = folder
            .transformer(
                None,
                "the FLUX transformer",
                |file| Ok(file.to_path_buf()),
                |dir| Ok(dir.to_path_buf()),
            )
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("transformer") && err.contains("the FLUX transformer"),
            "{err}"
        );
        let err = folder.scheduler_config().unwrap_err().to_string();
        assert!(err.contains("scheduler/scheduler_config.json"), "{err}");
    }
}
