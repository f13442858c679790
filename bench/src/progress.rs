//! The progress bar of the run commands and the benchmarks.

use indicatif::{ProgressBar, ProgressStyle};

/// A progress bar over `len` things called `unit`, with elapsed time and estimate.
pub fn progress_bar(len: usize, unit: &str) -> ProgressBar {
    let bar = ProgressBar::new(len as u64);
    bar.set_style(
        ProgressStyle::with_template(&format!(
            "{{msg}} [{{bar:30}}] {{pos}}/{{len}} {unit}, {{elapsed}} (eta {{eta}})"
        ))
        .expect("a valid template")
        .progress_chars("=> "),
    );
    bar
}
