//! Timing of a Burn workload: warm-up runs, then timed runs, each ending with a backend sync so
//! asynchronous backends (wgpu, CUDA) are timed to completion. Records wall-clock time and the
//! CPU time of all the process's threads: on a machine shared with other work, the CPU time
//! still measures the work done (the PyTorch side records the same).

use std::{marker::PhantomData, time::Instant};

use anyhow::{Result, anyhow};
use burn::tensor::backend::Backend;
use serde::{Deserialize, Serialize};

/// Milliseconds of the timed runs of one case.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Samples {
    /// Wall-clock time per run.
    pub wall_ms: Vec<f64>,
    /// CPU time of all threads per run (empty where the platform does not report it).
    pub cpu_ms: Vec<f64>,
}

impl Samples {
    /// Median wall-clock time.
    pub fn wall(&self) -> f64 {
        median(&self.wall_ms)
    }

    /// Appends the runs of `other` (another round of the same case).
    pub fn extend(&mut self, other: Samples) {
        self.wall_ms.extend(other.wall_ms);
        if self.cpu_ms.is_empty() || other.cpu_ms.is_empty() {
            self.cpu_ms.clear();
        } else {
            self.cpu_ms.extend(other.cpu_ms);
        }
    }

    /// Median CPU time, if measured.
    pub fn cpu(&self) -> Option<f64> {
        (!self.cpu_ms.is_empty()).then(|| median(&self.cpu_ms))
    }
}

/// The median (mean of the middle two for an even count); NaN when empty.
pub(crate) fn median(values: &[f64]) -> f64 {
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    match v.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}

/// Nanoseconds all threads of this process have run (Linux: `/proc/self/task/*/schedstat`).
fn process_cpu_ns() -> Option<u64> {
    let mut total = 0;
    for task in std::fs::read_dir("/proc/self/task").ok()? {
        let stat = std::fs::read_to_string(task.ok()?.path().join("schedstat")).ok()?;
        total += stat.split_whitespace().next()?.parse::<u64>().ok()?;
    }
    Some(total)
}

/// Runs a closure `warmup` times untimed and `repeat` times timed on backend `B`.
pub struct Timer<'a, B: Backend> {
    device: &'a B::Device,
    warmup: usize,
    repeat: usize,
    backend: PhantomData<B>,
}

impl<'a, B: Backend> Timer<'a, B> {
    /// A timer for work on `device`.
    pub fn new(device: &'a B::Device, warmup: usize, repeat: usize) -> Self {
        Self {
            device,
            warmup,
            repeat,
            backend: PhantomData,
        }
    }

    /// The device the work runs on.
    pub fn device(&self) -> &B::Device {
        self.device
    }

    /// Times `work`; what it returns is dropped after the sync, outside the timed region's end.
    pub fn time<T>(&self, mut work: impl FnMut() -> Result<T>) -> Result<Samples> {
        for _ in 0..self.warmup {
            let out = work()?;
            self.sync()?;
            drop(out);
        }
        let mut wall_ms = Vec::with_capacity(self.repeat);
        let mut cpu_ms = Vec::with_capacity(self.repeat);
        for _ in 0..self.repeat {
            let cpu_start = process_cpu_ns();
            let start = Instant::now();
            let out = work()?;
            self.sync()?;
            wall_ms.push(start.elapsed().as_secs_f64() * 1e3);
            if let (Some(a), Some(b)) = (cpu_start, process_cpu_ns()) {
                cpu_ms.push(b.saturating_sub(a) as f64 / 1e6);
            }
            drop(out);
        }
        if cpu_ms.len() != wall_ms.len() {
            cpu_ms.clear();
        }
        Ok(Samples { wall_ms, cpu_ms })
    }

    fn sync(&self) -> Result<()> {
        B::sync(self.device).map_err(|e| anyhow!("backend sync failed: {e:?}"))
    }
}
