//! Batch rows: which sample and guidance pass each row of a transformer call belongs to, how
//! far a cache decision reaches, and how the engine picks out the rows that compute.

use burn::tensor::{Int, Tensor, TensorData, backend::Backend};
use serde::{Deserialize, Serialize};

use crate::Pass;

/// The sample and guidance pass of one batch row of a transformer call: the key of the cache
/// state the row reads and updates.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Row {
    /// The CFG pass.
    pub pass: Pass,
    /// The sample's index in the generation (0 for a single sample).
    pub sample: usize,
}

impl Row {
    /// Rows `0..samples` of `pass`: a call whose rows are the samples in order.
    pub fn samples(pass: Pass, samples: usize) -> Vec<Row> {
        (0..samples).map(|sample| Row { pass, sample }).collect()
    }
}

/// How far one skip-or-compute decision reaches in a batch.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
pub enum CacheScope {
    /// Each sample decides for itself: its indicator, accumulated error and trajectory
    /// alignment are its own, so it gets the schedule it would get alone.
    #[default]
    Sample,
    /// One decision per pass for the whole batch, on indicators measured over the batch
    /// tensor: what the reference implementation does with a batch.
    Batch,
}

/// A value with a leading batch dimension (or shared by every row) whose rows the engine can
/// pick out: the context and state of the samples that run the deep blocks.
pub trait BatchRows: Sized {
    /// The batch rows `rows` (indices into the batch, ascending), in that order.
    fn rows(&self, rows: &[usize]) -> Self;
}

impl<B: Backend, const D: usize> BatchRows for Tensor<B, D> {
    fn rows(&self, rows: &[usize]) -> Self {
        let indices: Vec<i64> = rows.iter().map(|&r| r as i64).collect();
        let indices =
            Tensor::<B, 1, Int>::from_data(TensorData::new(indices, [rows.len()]), &self.device());
        self.clone().select(0, indices)
    }
}

impl<T: BatchRows> BatchRows for Option<T> {
    fn rows(&self, rows: &[usize]) -> Self {
        self.as_ref().map(|t| t.rows(rows))
    }
}

impl<T: Clone> BatchRows for Vec<T> {
    /// The elements at `rows`: per-row values kept in a vector (lengths, masks).
    fn rows(&self, rows: &[usize]) -> Self {
        rows.iter().map(|&r| self[r].clone()).collect()
    }
}

impl BatchRows for () {
    fn rows(&self, _: &[usize]) -> Self {}
}

/// A value with a leading batch dimension (or shared by every row) that joins with others of
/// its kind into one batch: the inputs of requests that share a transformer call.
pub trait JoinRows: Sized {
    /// `parts` (at least one) as one batch, their rows in order.
    fn join(parts: Vec<Self>) -> Self;
}

impl<B: Backend, const D: usize, K> JoinRows for Tensor<B, D, K>
where
    K: burn::tensor::TensorKind<B> + burn::tensor::BasicOps<B>,
{
    fn join(parts: Vec<Self>) -> Self {
        Tensor::cat(parts, 0)
    }
}

impl<T: JoinRows> JoinRows for Option<T> {
    /// Joined when every part has a value, else `None`.
    fn join(parts: Vec<Self>) -> Self {
        parts.into_iter().collect::<Option<Vec<T>>>().map(T::join)
    }
}

impl<T> JoinRows for Vec<T> {
    /// The elements of every part, in order: per-row values kept in a vector.
    fn join(parts: Vec<Self>) -> Self {
        parts.into_iter().flatten().collect()
    }
}

/// Implements [`JoinRows`] for a struct `$name<B>` whose fields `$row` have a row per batch
/// row (joined) and whose fields `$shared` are the same for every row (taken from the first
/// part).
#[macro_export]
macro_rules! join_rows {
    ($name:ident { rows: [$($row:ident),* $(,)?], shared: [$($shared:ident),* $(,)?] $(,)? }) => {
        impl<B: ::burn::tensor::backend::Backend> $crate::JoinRows for $name<B> {
            fn join(parts: Vec<Self>) -> Self {
                let first = parts[0].clone();
                $(let $row = $crate::JoinRows::join(parts.iter().map(|p| p.$row.clone()).collect());)*
                Self { $($row,)* $($shared: first.$shared,)* }
            }
        }
    };
}
