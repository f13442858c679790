//! What every diffusion-transformer port loads the same way: a configuration read from diffusers'
//! `config.json` and checked, and a model built from a [`ModelParams`] source — a diffusers
//! checkpoint, a single file in the original authors' layout (a [`TensorMap`] onto the diffusers
//! names), or random weights.
//!
//! A configuration implements [`TransformerConfig`] (its checks, its original layout and how to
//! infer it from an original file); a model implements [`FromParams`] (build from a
//! configuration and a parameter source, as every component does) and [`DiffusionTransformer`]
//! and gets every loader:
//! [`FromParams::random`], [`DiffusionTransformer::from_weights`],
//! [`DiffusionTransformer::load_diffusers`], [`DiffusionTransformer::load_original`] and
//! [`DiffusionTransformer::load`].

use std::path::Path;

use burn::tensor::backend::Backend;
use serde::de::DeserializeOwned;

use crate::{
    Component, FromParams, LoadError, ModelParams, MultiAxisRope, RopeError, TensorMap, Weights,
    model_folder, read_config,
};

/// How a checkpoint names its tensors.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    /// diffusers' names (`transformer_blocks.N.attn.to_q`), one tensor per diffusers parameter.
    Diffusers,
    /// The original authors' single file (Black Forest Labs' FLUX.1, Wan's `WanModel`,
    /// Tencent's HunyuanVideo), located through the model's [`TensorMap`].
    Original,
}

/// A transformer's configuration as diffusers' `config.json` holds it, and what it says about
/// the original authors' single-file layout of such a model.
pub trait TransformerConfig: Clone + DeserializeOwned {
    /// The type's name, for errors about a configuration given in code (`"FluxConfig"`).
    const NAME: &'static str;
    /// The prefix an original single file may carry on every name (ComfyUI-style exports,
    /// DeepSpeed's `module.`).
    const ORIGINAL_PREFIX: &'static str;
    /// The `general.architecture` a GGUF file of this model declares (city96's conversions:
    /// `flux`, `wan`, `hyvid`).
    const GGUF_ARCHITECTURE: &'static str;
    /// What an original single file does not store and a caller may give (FLUX.1's rotary
    /// split, WAN's head count); `Default` asks for the released models' value.
    type OriginalHint: Default;

    /// Checks that the settings describe a model this port builds; `source` names where they
    /// came from in the error.
    fn validate(&self, source: &Path) -> Result<(), LoadError>;

    /// The configuration of `weights`, an original single file read from `file` (prefix
    /// stripped), inferred from its tensor shapes and `hint`.
    fn infer_original(
        weights: &Weights,
        file: &Path,
        hint: Self::OriginalHint,
    ) -> Result<Self, LoadError>;

    /// Where an original single file of a model of this configuration stores each diffusers
    /// parameter.
    fn original_layout(&self) -> Box<dyn TensorMap>;

    /// What an original single file of a model of this configuration does not store: the hint
    /// with which [`TransformerConfig::infer_original`] rebuilds this configuration.
    fn original_hint(&self) -> Self::OriginalHint;

    /// Reads and checks a diffusers `config.json`.
    fn from_file(path: &Path) -> Result<Self, LoadError> {
        let config: Self = read_config(path)?;
        config.validate(path)?;
        Ok(config)
    }
}

/// A diffusion transformer that loads from every source the same way: built like every
/// component ([`FromParams`], which gives it `random`), from a [`TransformerConfig`].
pub trait DiffusionTransformer<B: Backend>: FromParams<B, Config: TransformerConfig> {
    /// The configuration the model was built for.
    fn config(&self) -> &Self::Config;

    /// Loads `weights`, stored in `layout`, as a model of `config`. Every tensor must have the
    /// shape `config` implies and every tensor of the checkpoint must be used, so a
    /// configuration that does not match the weights is an error.
    fn from_weights(
        config: Self::Config,
        weights: &Weights,
        layout: Layout,
        device: &B::Device,
    ) -> Result<Self, LoadError> {
        let source = format!("{} given for the checkpoint", Self::Config::NAME);
        let original = config.original_layout();
        let params = match layout {
            Layout::Diffusers => ModelParams::checkpoint(weights, device),
            Layout::Original => ModelParams::mapped(weights, original.as_ref(), device),
        };
        let model = Self::from_params(&config, &params, Path::new(&source))?;
        weights.check_all_used()?;
        Ok(model)
    }

    /// Loads a diffusers transformer folder (`config.json` and one or more `*.safetensors`
    /// shards with their index), or a pipeline folder holding one in `transformer/`.
    fn load_diffusers(dir: &Path, device: &B::Device) -> Result<Self, LoadError> {
        Component::open(&model_folder(dir, "transformer"))?.build(device, |_| false)
    }

    /// Loads a single file in the original layout (with or without
    /// [`TransformerConfig::ORIGINAL_PREFIX`]): safetensors, or GGUF (quantized blocks decoded
    /// as they load; a GGUF file of another architecture is an error), inferring the
    /// configuration from its shapes and `hint`.
    fn load_original(
        file: &Path,
        hint: <Self::Config as TransformerConfig>::OriginalHint,
        device: &B::Device,
    ) -> Result<Self, LoadError> {
        let weights = Weights::open(file)?.strip_prefix(Self::Config::ORIGINAL_PREFIX);
        weights.check_architecture(Self::Config::GGUF_ARCHITECTURE)?;
        let config = Self::Config::infer_original(&weights, file, hint)?;
        Self::from_weights(config, &weights, Layout::Original, device)
    }

    /// Loads a single file in the original layout for a pipeline folder whose
    /// `transformer/config.json` (`folder_config`; `None` without one) describes the model: the
    /// file's shapes decide, with what the file does not store (head count, rotary split) taken
    /// from the folder's configuration, or from the released models where that does not fit
    /// the file (a folder of another size of the model).
    fn load_original_for(
        file: &Path,
        folder_config: Option<&Self::Config>,
        device: &B::Device,
    ) -> Result<Self, LoadError> {
        if let Some(config) = folder_config {
            match Self::load_original(file, config.original_hint(), device) {
                Err(LoadError::Config { .. }) => {}
                loaded => return loaded,
            }
        }
        Self::load_original(file, Default::default(), device)
    }

    /// Loads a checkpoint in either layout: a folder as diffusers, a file as the original
    /// layout of the released models.
    fn load(path: &Path, device: &B::Device) -> Result<Self, LoadError> {
        if path.is_dir() {
            Self::load_diffusers(path, device)
        } else {
            Self::load_original(path, Default::default(), device)
        }
    }
}

/// The checks of a configuration read from `source`: each failure is a [`LoadError::Config`]
/// naming the file (or "... given in code") and the setting.
#[derive(Debug, Clone, Copy)]
pub struct ConfigCheck<'a> {
    source: &'a Path,
}

impl<'a> ConfigCheck<'a> {
    /// Checks of the configuration from `source`.
    pub fn new(source: &'a Path) -> Self {
        Self { source }
    }

    /// The error `message` about this configuration.
    pub fn fail(&self, message: impl std::fmt::Display) -> LoadError {
        LoadError::Config {
            path: self.source.to_path_buf(),
            message: message.to_string(),
        }
    }

    /// Fails with `message` unless `ok`.
    pub fn that(&self, ok: bool, message: impl FnOnce() -> String) -> Result<(), LoadError> {
        if ok {
            Ok(())
        } else {
            Err(self.fail(message()))
        }
    }

    /// Checks that each of `settings` (name, value) is positive; the error names the first that
    /// is not.
    pub fn positive(&self, settings: &[(&str, usize)]) -> Result<(), LoadError> {
        match settings.iter().find(|(_, value)| *value == 0) {
            Some((name, _)) => Err(self.fail(format!("{name} must be positive"))),
            None => Ok(()),
        }
    }

    /// Checks the rotary embedding `rope` built from the per-axis split `axes` (the setting
    /// `name`): it must build and cover a head of `head_dim` channels.
    pub fn rope(
        &self,
        name: &str,
        axes: &[usize],
        rope: Result<MultiAxisRope, RopeError>,
        head_dim: usize,
    ) -> Result<(), LoadError> {
        let rope = rope.map_err(|e| self.fail(format!("{name}: {e}")))?;
        self.that(rope.head_dim() == head_dim, || {
            format!(
                "{name} {axes:?} sums to {}, but attention_head_dim is {head_dim}",
                rope.head_dim()
            )
        })
    }
}
