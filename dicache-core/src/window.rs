//! The last two residuals of a stream.

use burn::tensor::{Tensor, backend::Backend};

/// Keeps the two newest tensors pushed into it (`older`, `newer`).
#[derive(Debug, Clone)]
pub(crate) struct Window<B: Backend> {
    pub older: Option<Tensor<B, 3>>,
    pub newer: Option<Tensor<B, 3>>,
}

impl<B: Backend> Window<B> {
    pub fn new() -> Self {
        Self {
            older: None,
            newer: None,
        }
    }

    pub fn push(&mut self, t: Tensor<B, 3>) {
        self.older = self.newer.replace(t);
    }

    /// Both entries, when two have been pushed.
    pub fn pair(&self) -> Option<(&Tensor<B, 3>, &Tensor<B, 3>)> {
        Some((self.older.as_ref()?, self.newer.as_ref()?))
    }
}
