//! Several samples in one run: the prompts (`--prompt` repeated, `--prompts FILE`), each
//! `--num-images-per-prompt` times with consecutive seeds; the files each sample writes
//! (numbered when there are several) and the JSON sidecar beside each numbered output.

use std::{fs, path::Path};

use anyhow::{Context, Result, bail};
use dicache_core::Trace;
use dit_pipeline::Settings;

use super::{CommonArgs, OutputTarget, output::OutputFile};

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
    (folder, settings, batch_size): (&Path, &Settings, usize),
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
        "cache_scope": trace.scope,
        "batch_size": batch_size,
        "computed": summary.computed,
        "skipped": summary.skipped,
    });
    let sidecar = out.with_extension("json");
    sidecar.write(|path| Ok(fs::write(path, serde_json::to_string_pretty(&json)?)?))
}

/// The files one sample writes: its output, and its latents, trace and sidecar where asked.
pub struct SampleFiles<T> {
    /// The image or video.
    pub target: T,
    /// `--save-latents`.
    pub latents: Option<OutputFile>,
    /// `--trace`.
    pub trace: Option<OutputFile>,
    /// The JSON sidecar of a numbered output.
    pub sidecar: Option<OutputFile>,
}

impl<T> SampleFiles<T> {
    /// The files of `count` samples: as given for one; numbered (`-000`, `-001`, ...) with a
    /// JSON sidecar beside each output for several.
    pub fn for_samples<const N: usize>(
        target: T,
        [latents, trace]: [Option<OutputFile>; 2],
        count: usize,
    ) -> Result<Vec<Self>>
    where
        T: OutputTarget<N>,
    {
        if count == 1 {
            return Ok(vec![Self {
                target,
                latents,
                trace,
                sidecar: None,
            }]);
        }
        let numbered =
            |file: &Option<OutputFile>, i| file.as_ref().map(|f| f.numbered(i)).transpose();
        (0..count)
            .map(|i| {
                let target = target.numbered(i)?;
                let sidecar = Some(target.file().with_extension("json"));
                Ok(Self {
                    latents: numbered(&latents, i)?,
                    trace: numbered(&trace, i)?,
                    sidecar,
                    target,
                })
            })
            .collect()
    }

    /// Every file of the sample.
    pub fn all<const N: usize>(&self) -> Vec<&OutputFile>
    where
        T: OutputTarget<N>,
    {
        [
            Some(self.target.file()),
            self.latents.as_ref(),
            self.trace.as_ref(),
            self.sidecar.as_ref(),
        ]
        .into_iter()
        .flatten()
        .collect()
    }
}
