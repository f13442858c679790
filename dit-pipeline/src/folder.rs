//! A diffusers-layout pipeline folder and its components.

use std::path::{Path, PathBuf};

use burn::tensor::backend::Backend;
use dit_layers::{DiffusionTransformer, LoadError};

use crate::PipelineError;

/// A pipeline folder as `save_pretrained` writes it (`model_index.json` and one sub-folder per
/// component); every lookup names what is missing.
#[derive(Debug, Clone)]
pub struct PipelineFolder {
    root: PathBuf,
}

impl PipelineFolder {
    /// The folder at `root`, which must hold `model_index.json`.
    pub fn open(root: &Path) -> Result<Self, PipelineError> {
        let folder = Self {
            root: root.to_path_buf(),
        };
        folder.component("model_index.json", "the pipeline index")?;
        Ok(folder)
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

    /// The transformer `T`: the original-layout single file `file` when one is given, else the
    /// `transformer/` component in diffusers layout (`what` names it, for the error).
    pub fn load_transformer<B: Backend, T: DiffusionTransformer<B>>(
        &self,
        file: Option<&Path>,
        what: &str,
        device: &B::Device,
    ) -> Result<T, PipelineError> {
        self.transformer(
            file,
            what,
            |file| T::load(file, device),
            |dir| T::load_diffusers(dir, device),
        )
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

    #[test]
    fn missing_index_and_components_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let err = PipelineFolder::open(dir.path()).unwrap_err().to_string();
        assert!(
            err.contains("model_index.json") && err.contains("pipeline index"),
            "{err}"
        );
        std::fs::write(dir.path().join("model_index.json"), "{}").unwrap();
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
        std::fs::write(dir.path().join("model_index.json"), "{}").unwrap();
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
