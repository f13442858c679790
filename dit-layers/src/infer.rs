//! Reading a configuration off a checkpoint's tensor shapes, for single-file layouts that store
//! no configuration.

use std::path::Path;

use crate::{LoadError, Weights};

/// A checkpoint's tensor shapes, read to infer its configuration; every failure is a
/// [`LoadError::Config`] naming the file and what was being inferred.
pub struct ShapeProbe<'a> {
    weights: &'a Weights,
    path: &'a Path,
    what: &'static str,
}

impl<'a> ShapeProbe<'a> {
    /// Reads `weights`, loaded from `path`, to infer `what` (`"the FLUX configuration from a
    /// BFL checkpoint"`).
    pub fn new(weights: &'a Weights, path: &'a Path, what: &'static str) -> Self {
        Self {
            weights,
            path,
            what,
        }
    }

    /// The error `cannot infer <what>: <message>`.
    pub fn fail(&self, message: String) -> LoadError {
        LoadError::Config {
            path: self.path.to_path_buf(),
            message: format!("cannot infer {}: {message}", self.what),
        }
    }

    /// The shape of the tensor `key`, which must exist.
    pub fn shape(&self, key: &str) -> Result<Vec<usize>, LoadError> {
        if self.weights.contains(key) {
            self.weights.shape(key)
        } else {
            Err(self.fail(format!("tensor {key:?} is missing")))
        }
    }

    /// `(rows, cols)` of the 2-D tensor `key`.
    pub fn matrix(&self, key: &str) -> Result<(usize, usize), LoadError> {
        match self.shape(key)?.as_slice() {
            &[rows, cols] => Ok((rows, cols)),
            other => Err(self.fail(format!("tensor {key:?} has shape {other:?}, expected 2-D"))),
        }
    }

    /// The number of numbered modules `<prefix>N.…`: one more than the highest `N`, 0 when
    /// there is none.
    pub fn count(&self, prefix: &str) -> usize {
        self.weights
            .keys()
            .iter()
            .filter_map(|k| {
                k.strip_prefix(prefix)?
                    .split('.')
                    .next()?
                    .parse::<usize>()
                    .ok()
            })
            .map(|i| i + 1)
            .max()
            .unwrap_or(0)
    }
}
