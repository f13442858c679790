//! The record of every transformer call of a generation.

use std::{fs, io, path::Path};

use serde::{Deserialize, Serialize};

use crate::{CachePolicy, CacheScope};

/// Which classifier-free-guidance pass a transformer call belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Pass {
    /// The only pass of a step (no CFG, or guidance embedded in the model).
    Single,
    /// The conditional (prompt) pass.
    Cond,
    /// The unconditional (negative prompt) pass.
    Uncond,
}

/// How a session times its calls ([`TraceEntry::wall_ms`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CallTiming {
    /// Each call waits for the backend to finish its work, so its `wall_ms` is its duration.
    /// On a GPU that drains the queue at every call: ask for it when the times are wanted.
    Synced,
    /// No call waits beyond what its policy reads back (DiCache's and First-Block Cache's one
    /// scalar): `wall_ms` is the time to queue the call's work, which on a synchronous backend
    /// (the CPU) is its duration, on a GPU much less.
    #[default]
    Queued,
}

/// One transformer call.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TraceEntry {
    /// Denoising step index (both CFG passes of a step share it).
    pub step: usize,
    /// The CFG pass.
    pub pass: Pass,
    /// Whether the deep blocks ran (false: output from the cache).
    pub computed: bool,
    /// The error indicator of this call; `None` where the policy measured none (warm-up,
    /// no previous probe, policies without a probe).
    pub indicator: Option<f64>,
    /// The accumulated error compared with the threshold (after adding `indicator`).
    pub accumulated: Option<f64>,
    /// The trajectory-alignment step size of a skipped call that had two residuals.
    pub gamma: Option<f64>,
    /// Number of transformer blocks this call ran.
    pub blocks_run: usize,
    /// Wall time of the whole call (embedding, blocks, head), milliseconds, as
    /// [`Trace::timing`] says it was measured; in a call of several batch rows, each row's
    /// entry holds its share (the call's time over its rows), so the entries add up.
    pub wall_ms: f64,
    /// How this row's self-attention heads attended over the call's blocks, where the model
    /// reports it (a video model with sparse attention); `None` otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub heads: Option<HeadClasses>,
}

/// How the self-attention heads of one transformer call attended, counted over its blocks and
/// heads (one count per block and head): densely, or under a sparse mask of one of two classes
/// (Sparse VideoGen's spatial and temporal heads).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HeadClasses {
    /// Heads that attended to every key (warm-up steps and layers).
    pub dense: usize,
    /// Heads that attended within their own and nearby frames.
    pub spatial: usize,
    /// Heads that attended to the same positions across frames.
    pub temporal: usize,
}

impl std::ops::AddAssign for HeadClasses {
    fn add_assign(&mut self, other: Self) {
        self.dense += other.dense;
        self.spatial += other.spatial;
        self.temporal += other.temporal;
    }
}

/// Counts and times over a trace.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TraceSummary {
    /// Transformer calls.
    pub calls: usize,
    /// Calls whose deep blocks ran.
    pub computed: usize,
    /// Calls served from the cache.
    pub skipped: usize,
    /// Blocks run over all calls.
    pub blocks_run: usize,
    /// Blocks that uncached calls would have run.
    pub blocks_uncached: usize,
    /// Mean wall time of a computed call, milliseconds (0 when none).
    pub mean_computed_ms: f64,
    /// Mean wall time of a skipped call, milliseconds (0 when none).
    pub mean_skipped_ms: f64,
    /// Wall time of all calls, milliseconds.
    pub total_ms: f64,
}

/// The trace of one sample of a generation: its settings and one entry per transformer call,
/// in order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Trace {
    /// The policy that produced it.
    pub policy: CachePolicy,
    /// How far its decisions reached in the batch (older traces, without the key: per sample).
    #[serde(default)]
    pub scope: CacheScope,
    /// Denoising steps of the generation.
    pub num_steps: usize,
    /// Blocks of the model.
    pub num_blocks: usize,
    /// How the calls' `wall_ms` were measured (older traces, without the key: synced).
    #[serde(default = "synced")]
    pub timing: CallTiming,
    /// One entry per transformer call.
    pub steps: Vec<TraceEntry>,
}

fn synced() -> CallTiming {
    CallTiming::Synced
}

impl TraceSummary {
    /// Counts and times over the calls of `traces` (the samples of a batch, whose entries'
    /// times are shares of the batched calls and so add up to them).
    pub fn of(traces: &[Trace]) -> Self {
        let entries = || traces.iter().flat_map(|t| &t.steps);
        let computed: Vec<_> = entries().filter(|e| e.computed).collect();
        let skipped: Vec<_> = entries().filter(|e| !e.computed).collect();
        let mean = |v: &[&TraceEntry]| {
            if v.is_empty() {
                0.0
            } else {
                v.iter().map(|e| e.wall_ms).sum::<f64>() / v.len() as f64
            }
        };
        Self {
            calls: entries().count(),
            computed: computed.len(),
            skipped: skipped.len(),
            blocks_run: entries().map(|e| e.blocks_run).sum(),
            blocks_uncached: traces.iter().map(|t| t.steps.len() * t.num_blocks).sum(),
            mean_computed_ms: mean(&computed),
            mean_skipped_ms: mean(&skipped),
            total_ms: entries().map(|e| e.wall_ms).sum(),
        }
    }
}

impl Trace {
    /// Counts and times of the calls.
    pub fn summary(&self) -> TraceSummary {
        TraceSummary::of(std::slice::from_ref(self))
    }

    /// The trace as pretty JSON, with a `summary` object beside `steps`.
    pub fn to_json(&self) -> String {
        let mut value = serde_json::to_value(self).expect("a trace serialises");
        value["summary"] = serde_json::to_value(self.summary()).expect("a summary serialises");
        serde_json::to_string_pretty(&value).expect("a JSON value prints")
    }

    /// Writes [`Trace::to_json`] to `path`.
    pub fn write_json(&self, path: &Path) -> io::Result<()> {
        fs::write(path, self.to_json())
    }
}
