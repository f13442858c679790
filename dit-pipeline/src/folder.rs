//! A diffusers-layout pipeline folder and its components.

use std::path::{Path, PathBuf};

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
}
