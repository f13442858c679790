//! The measuring loop of one model: every sample without cache, then under every setting on
//! the same noise.

use anyhow::Result;
use burn::tensor::backend::Backend;
use dicache_core::CachePolicy;
use dit_layers::gaussian_noise;

use super::{
    CacheArgs, Model,
    generate::Generator,
    results::{ModelResult, SampleResult, SettingResult, Setup},
    settings::{self, Knob},
    sheet::{SHEET_SAMPLES, Shown},
};
use crate::{
    backend::BackendJob,
    mini::{Given, Preset},
    progress::progress_bar,
};

/// The benchmark of one model, on the backend the user picked.
pub struct Job<'a> {
    /// The model.
    pub model: Model,
    /// The command line.
    pub args: &'a CacheArgs,
}

impl BackendJob for Job<'_> {
    /// The results, and the outputs the sample sheet shows.
    type Output = (ModelResult, Vec<Shown>);

    fn run<B: Backend>(self, device: B::Device) -> Result<Self::Output> {
        let (model, args) = (self.model, self.args);
        let mini = model.mini();
        let folder = mini.folder_or(args.model_dir.as_deref())?;
        let preset = Preset::for_folder(&folder, &mini)?.with(Given {
            steps: args.steps,
            ..Given::default()
        });
        let rows = settings::select(&model.settings(), &args.only)?;
        let dicache = model.dicache_preset();
        eprintln!("bench: {} from {}", model.title(), folder.display());
        let generator = Generator::<B>::load(model, (&folder, None), preset, &device)?;
        let shape = generator.noise_shape()?;
        let prompts = model.prompts();
        let sample = |i: usize| (prompts[i % prompts.len()], gaussian_noise(&shape, i as u64));

        // One untimed generation first: a backend's first run pays one-off costs (allocations,
        // kernel compilation on GPUs) that would otherwise fall on the first uncached sample.
        let (prompt, noise) = sample(0);
        generator.generate(prompt, &noise, CachePolicy::None)?;

        let bar = progress_bar(args.samples * rows.len(), "generations");
        let mut per_row: Vec<Vec<SampleResult>> = vec![Vec::new(); rows.len()];
        let mut shown = Vec::new();
        let mut reference = Vec::new();
        for i in 0..args.samples {
            let (prompt, noise) = sample(i);
            for (row, results) in rows.iter().zip(&mut per_row) {
                bar.set_message(format!("{} sample {i} {}", model.name(), row.knob.label()));
                let generation = generator.generate(prompt, &noise, row.knob.policy(&dicache))?;
                if row.knob == Knob::None {
                    reference = generation.frames.clone();
                }
                results.push(SampleResult::new(i, prompt, &generation, &reference)?);
                if i < SHEET_SAMPLES && row.in_sheet {
                    shown.push(Shown {
                        sample: i,
                        prompt: prompt.to_string(),
                        label: row.knob.label(),
                        frames: generation.frames,
                    });
                }
                bar.inc(1);
            }
        }
        bar.finish_and_clear();

        let none = per_row[0].clone();
        let settings = rows
            .iter()
            .zip(per_row)
            .map(|(row, samples)| {
                let policy = row.knob.policy(&dicache);
                SettingResult::new(row.knob, row.in_sheet, policy, samples, &none)
            })
            .collect();
        let dtype = format!("{:?}", args.dtype).to_lowercase();
        let setup = Setup::new(model, &folder, (B::name(&device), dtype), preset)?;
        let result = ModelResult::new(setup, settings)?;
        Ok((result, shown))
    }
}
