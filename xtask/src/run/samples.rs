//! Several samples in one run: the prompts (`--prompt` repeated, `--prompts FILE`), each
//! `--num-images-per-prompt` times with consecutive seeds, and the JSON sidecar written beside
//! each numbered output.

use std::{fs, path::Path};

use anyhow::{Context, Result, bail};
use dicache_core::Trace;
use dit_pipeline::Settings;

use super::{CommonArgs, output::OutputFile};

/// The most samples one run takes.
const MAX_SAMPLES: usize = 10_000;

/// One sample of a run.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    /// Its position in the run, from 0 (the number of its outputs).
    pub index: usize,
    /// Its prompt.
    pub prompt: String,
    /// The seed of its noise: the run's `--seed` plus `index`.
    pub seed: u64,
}

impl CommonArgs {
    /// The samples the options ask for: every `--prompt`, then every non-blank line of
    /// `--prompts`, each `--num-images-per-prompt` times, seeds counting up from `--seed`.
    pub fn samples(&self) -> Result<Vec<Sample>> {
        let mut prompts = self.prompt.clone();
        if let Some(file) = &self.prompts {
            let text = fs::read_to_string(file)
                .with_context(|| format!("--prompts {}: cannot read it", file.display()))?;
            prompts.extend(
                text.lines()
                    .map(str::trim)
                    .filter(|l| !l.is_empty())
                    .map(String::from),
            );
        }
        if prompts.is_empty() {
            bail!("no prompt: give --prompt, or --prompts with a file of one prompt per line");
        }
        let per_prompt = self.num_images_per_prompt;
        if per_prompt == 0 {
            bail!("--num-images-per-prompt must be at least 1");
        }
        let count = prompts.len().saturating_mul(per_prompt);
        if count > MAX_SAMPLES {
            bail!("{count} samples asked for; one run makes at most {MAX_SAMPLES}");
        }
        Ok(prompts
            .iter()
            .flat_map(|p| std::iter::repeat_n(p, per_prompt))
            .enumerate()
            .map(|(index, prompt)| Sample {
                index,
                prompt: prompt.clone(),
                seed: self.seed.wrapping_add(index as u64),
            })
            .collect())
    }
}

/// Writes the sidecar of `sample`'s output `out` (`out/flux-003.json` beside
/// `out/flux-003.png`): prompt, seed, settings, cache policy and what it computed.
pub fn write_sidecar(
    out: &OutputFile,
    sample: &Sample,
    common: &CommonArgs,
    (folder, settings): (&Path, &Settings),
    trace: &Trace,
) -> Result<()> {
    let summary = trace.summary();
    let json = serde_json::json!({
        "output": out.path(),
        "prompt": sample.prompt,
        "negative_prompt": common.negative_prompt,
        "seed": sample.seed,
        "init_noise": common.init_noise,
        "model": folder,
        "width": settings.width,
        "height": settings.height,
        "frames": settings.frames,
        "steps": settings.steps,
        "guidance": settings.guidance,
        "max_sequence_length": settings.max_sequence_length,
        "dtype": format!("{:?}", common.dtype).to_lowercase(),
        "cache": trace.policy.name(),
        "computed": summary.computed,
        "skipped": summary.skipped,
    });
    let sidecar = out.with_extension("json");
    sidecar.write(|path| Ok(fs::write(path, serde_json::to_string_pretty(&json)?)?))
}
