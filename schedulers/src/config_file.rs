//! Reading diffusers' `scheduler_config.json`: the class check, metadata and `null` handling
//! and the rejection of unknown keys that every scheduler of this crate shares.

use std::path::{Path, PathBuf};

use dit_layers::{LoadError, read_json};
use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

use crate::SchedulerError;

/// Name of the configuration file in a diffusers `scheduler/` folder.
const CONFIG_FILE: &str = "scheduler_config.json";

/// `path` itself, or `scheduler_config.json` inside it when it is a folder.
pub(crate) fn config_path(path: &Path) -> PathBuf {
    if path.is_dir() {
        path.join(CONFIG_FILE)
    } else {
        path.to_path_buf()
    }
}

/// The error for `key = value` in the settings from `origin`, which this port does not honour.
pub(crate) fn unsupported(origin: &str, key: &str, value: &Value, reason: &str) -> SchedulerError {
    SchedulerError::Unsupported {
        origin: origin.to_string(),
        key: key.to_string(),
        value: value.to_string(),
        reason: reason.to_string(),
    }
}

/// Fails, naming `key` of `origin`, unless `value` is a positive finite number (a shift).
pub(crate) fn check_positive(origin: &str, key: &str, value: f64) -> Result<(), SchedulerError> {
    if value.is_finite() && value > 0.0 {
        Ok(())
    } else {
        Err(unsupported(
            origin,
            key,
            &Value::from(value),
            "a positive number",
        ))
    }
}

/// The settings of one `scheduler_config.json`, checked against the scheduler's keys.
pub(crate) struct SchedulerSettings {
    /// The file read.
    path: PathBuf,
    /// The settings without `_`-prefixed metadata and without `null` values (which mean the
    /// default, as an absent key does).
    pub values: Map<String, Value>,
}

impl SchedulerSettings {
    /// Reads `path` (the file or the folder holding it). A `_class_name` other than
    /// `class_name` and a key outside `known_keys` (diffusers' constructor arguments) are
    /// errors naming the key.
    pub fn read(
        path: &Path,
        class_name: &str,
        known_keys: &[&str],
    ) -> Result<Self, SchedulerError> {
        let path = config_path(path);
        let origin = path.display().to_string();
        let mut values: Map<String, Value> = read_json(&path)?;
        if let Some(class) = values.get("_class_name")
            && class.as_str() != Some(class_name)
        {
            return Err(unsupported(
                &origin,
                "_class_name",
                class,
                &format!("expected {class_name:?}"),
            ));
        }
        values.retain(|key, value| !key.starts_with('_') && !value.is_null());
        if let Some(key) = values.keys().find(|k| !known_keys.contains(&k.as_str())) {
            return Err(unsupported(
                &origin,
                key,
                &values[key],
                "not an option of this scheduler",
            ));
        }
        Ok(Self { path, values })
    }

    /// The file's path, as errors name it.
    pub fn origin(&self) -> String {
        self.path.display().to_string()
    }

    /// The error for the setting `key`, naming this file.
    pub fn unsupported(&self, key: &str, value: &Value, reason: &str) -> SchedulerError {
        unsupported(&self.origin(), key, value, reason)
    }

    /// The settings as the scheduler's configuration struct (absent keys take its defaults); a
    /// value of the wrong type is an error naming the file.
    pub fn parse<T: DeserializeOwned>(self) -> Result<T, SchedulerError> {
        serde_json::from_value(Value::Object(self.values)).map_err(|e| {
            SchedulerError::Load(LoadError::Config {
                path: self.path,
                message: e.to_string(),
            })
        })
    }
}
