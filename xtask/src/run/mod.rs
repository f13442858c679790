//! `cargo xtask run flux|wan|hunyuan`: prompt to image or video, one generic run for every
//! pipeline ([`RunModel`] says what differs: the pipeline, its DiCache preset, its mini model,
//! how its output is written).

pub(crate) mod flux;
pub(crate) mod hunyuan;
pub(crate) mod output;
mod samples;
mod video;
pub(crate) mod wan;

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
    time::Instant,
};

use anyhow::{Context, Result, bail};
use burn::tensor::{Tensor, backend::Backend};
use clap::{Args, Subcommand, ValueEnum};
use dicache_bench::{
    backend::{BackendJob, BackendKind, Dtype, dispatch},
    mini::MiniModel,
};
use dicache_core::{
    CacheError, CachePolicy, CacheScope, CacheSettings, CallTiming, DiCacheConfig, HeadClasses,
    PolicyKnobs, Trace, TraceSummary,
};
use dit_layers::{RowSampler, SparseVideoSettings, SvgVariant, Weights, gaussian_noise_rows};
use dit_pipeline::{
    EncoderResidency, LoadOptions, MAX_BATCH, Pipeline, PipelineError, PipelineFolder, Prompt,
    Request, Settings, available_memory, check_weights,
};
use output::{ImageFile, OutputFile, check_distinct};
use samples::SampleFiles;

/// Which model to run.
#[derive(Debug, Subcommand)]
pub enum RunCommand {
    /// FLUX.1 text-to-image from a diffusers-layout folder.
    Flux(flux::FluxArgs),
    /// WAN 2.1 text-to-video from a diffusers-layout folder.
    Wan(wan::WanArgs),
    /// HunyuanVideo text-to-video from a diffusers-layout folder.
    Hunyuan(hunyuan::HunyuanArgs),
}

/// Runs the chosen model.
pub fn run(command: RunCommand) -> Result<()> {
    match command {
        RunCommand::Flux(args) => flux::run(args),
        RunCommand::Wan(args) => wan::run(args),
        RunCommand::Hunyuan(args) => hunyuan::run(args),
    }
}

/// The cache policy names of the command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum CacheKind {
    /// Every block of every step.
    None,
    /// Compute every `--interval`-th step, reuse the last residual in between.
    Uniform,
    /// First-Block Cache.
    Fbcache,
    /// DiCache with the model's preset.
    Dicache,
}

/// How the video models' self-attention runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum SparseKind {
    /// Every query attends to every key.
    None,
    /// Sparse VideoGen: each head profiled online as spatial or temporal and attending a band.
    Svg,
}

/// The sparse attention of the video models (WAN 2.1, HunyuanVideo), for `run` and `serve`.
#[derive(Debug, Args)]
pub struct SparseArgs {
    /// Attention of the video models: dense, or Sparse VideoGen (svg; with any --cache).
    #[arg(long, value_enum, default_value_t = SparseKind::None)]
    pub sparse_attention: SparseKind,
    /// Fraction of the attention map svg computes, which sets its band's width [default: WAN
    /// 0.3, HunyuanVideo 0.25].
    #[arg(long)]
    pub sparsity: Option<f64>,
    /// Fraction of the steps svg computes densely first [default: WAN 0.2, HunyuanVideo 0.1].
    #[arg(long)]
    pub sparse_warmup: Option<f64>,
    /// Fraction of the blocks svg always computes densely, the first ones [default: 0.03].
    #[arg(long)]
    pub sparse_dense_layers: Option<f64>,
}

impl SparseArgs {
    /// The settings the options ask for, with the reference's defaults for `variant` (the
    /// pipeline's; `None` for one without sparse attention, `name`); rows are drawn from `seed`.
    pub(crate) fn settings(
        &self,
        variant: Option<SvgVariant>,
        name: &str,
        seed: u64,
    ) -> Result<Option<SparseVideoSettings>> {
        let knobs = [
            ("--sparsity", self.sparsity),
            ("--sparse-warmup", self.sparse_warmup),
            ("--sparse-dense-layers", self.sparse_dense_layers),
        ];
        if self.sparse_attention == SparseKind::None {
            if let Some((flag, _)) = knobs.iter().find(|(_, v)| v.is_some()) {
                bail!("{flag} applies to --sparse-attention svg");
            }
            return Ok(None);
        }
        let Some(variant) = variant else {
            bail!(
                "--sparse-attention svg: {name} makes images; Sparse VideoGen is for WAN and HunyuanVideo"
            );
        };
        let defaults = SparseVideoSettings::reference(variant);
        let settings = SparseVideoSettings {
            sparsity: self.sparsity.unwrap_or(defaults.sparsity),
            warmup_steps: self.sparse_warmup.unwrap_or(defaults.warmup_steps),
            dense_layers: self.sparse_dense_layers.unwrap_or(defaults.dense_layers),
            rows: RowSampler::Seeded(seed),
            ..defaults
        };
        settings
            .validate()
            .map_err(|e| anyhow::anyhow!("--sparse-attention svg: {e}"))?;
        Ok(Some(settings))
    }
}

/// How `run` and `serve` load a pipeline folder: single files replacing its components, and
/// when its text encoders are in memory.
#[derive(Debug, Args)]
pub struct LoadArgs {
    /// Use this single-file transformer in the original authors' layout (Black Forest Labs',
    /// Wan's, Tencent's), as safetensors or GGUF (city96's conversions, kept quantized in
    /// memory), instead of transformer/.
    #[arg(long)]
    pub transformer: Option<PathBuf>,
    /// Use these weights for the T5 text encoder (FLUX.1's T5-XXL in text_encoder_2/, WAN's
    /// umT5 in text_encoder/), with the folder's configuration: transformers' safetensors or a
    /// llama.cpp t5encoder GGUF (city96's t5-v1_1-xxl / umt5-xxl encoder conversions).
    #[arg(long)]
    pub t5: Option<PathBuf>,
    /// When the text encoders are in memory: kept from loading to the end (resident), or
    /// loaded to encode each batch's (each request's) prompts and dropped before its denoising
    /// loop (on-demand: their memory is free while the transformer runs; they are read again
    /// for every batch).
    #[arg(long, value_enum, default_value_t = EncoderResidency::Resident)]
    pub text_encoders: EncoderResidency,
}

impl LoadArgs {
    /// The options as the pipelines take them.
    pub(crate) fn options(&self) -> LoadOptions<'_> {
        LoadOptions {
            transformer: self.transformer.as_deref(),
            t5: self.t5.as_deref(),
            text_encoders: self.text_encoders,
        }
    }
}

/// Options every run command shares.
#[derive(Debug, Args)]
pub struct CommonArgs {
    /// The prompt; repeat the flag for several samples (the outputs numbered:
    /// out/flux-000.png, ... with a JSON sidecar each).
    #[arg(long, required_unless_present = "prompts")]
    pub prompt: Vec<String>,
    /// A file of prompts, one per line (blank lines skipped), after any --prompt.
    #[arg(long)]
    pub prompts: Option<PathBuf>,
    /// Samples of each prompt, each with the next seed.
    #[arg(long, default_value_t = 1)]
    pub num_images_per_prompt: usize,
    /// Samples per transformer call: the samples run in batches of this many, each sample
    /// still getting the output and cache schedule it gets alone.
    #[arg(long, default_value_t = 1)]
    pub batch_size: usize,
    /// How far a cache decision reaches in a batch: each sample its own (sample), or one for
    /// the whole batch on indicators over the batch tensor, as the reference does (batch).
    #[arg(long, value_enum, default_value_t = CacheScope::Sample)]
    pub cache_scope: CacheScope,
    /// A pipeline folder in diffusers layout (model_index.json, scheduler/, the text encoders
    /// and tokenizers, transformer/, vae/). Without it: the model's mini model under
    /// mini-models/, whose own settings then become the defaults.
    #[arg(long)]
    pub model: Option<PathBuf>,
    #[command(flatten)]
    pub load: LoadArgs,
    #[command(flatten)]
    pub sparse: SparseArgs,
    /// Width in pixels, a multiple of 16 [default: the pipeline's; mini model: its own].
    #[arg(long)]
    pub width: Option<usize>,
    /// Height in pixels, a multiple of 16 [default: the pipeline's; mini model: its own].
    #[arg(long)]
    pub height: Option<usize>,
    /// Denoising steps [default: the pipeline's; mini model: its own].
    #[arg(long)]
    pub steps: Option<usize>,
    /// Guidance scale: embedded (FLUX.1-dev, HunyuanVideo) or classifier-free (WAN, two
    /// transformer passes a step when above 1) [default: the pipeline's; FLUX.1-schnell takes
    /// none].
    #[arg(long)]
    pub guidance: Option<f64>,
    /// The text encoder's prompt length in tokens [default: the pipeline's; mini model: its
    /// own].
    #[arg(long)]
    pub max_sequence_length: Option<usize>,
    /// What the output should not show: the unconditional pass's prompt (WAN's
    /// classifier-free guidance; the other models take none).
    #[arg(long, default_value = "")]
    pub negative_prompt: String,
    /// Seed of the first sample's initial noise; sample i gets seed + i (ignored with
    /// --init-noise).
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Backend to run on (each needs its cargo feature).
    #[arg(long, value_enum, default_value_t = BackendKind::Cpu)]
    pub backend: BackendKind,
    /// Float dtype of weights and compute.
    #[arg(long, value_enum, default_value_t = Dtype::F32)]
    pub dtype: Dtype,
    /// Cache policy.
    #[arg(long, value_enum, default_value_t = CacheKind::Dicache)]
    pub cache: CacheKind,
    /// Skip threshold of dicache (delta) or fbcache (relative L1).
    #[arg(long)]
    pub threshold: Option<f64>,
    /// Blocks in the probe of dicache / fbcache.
    #[arg(long)]
    pub probe_depth: Option<usize>,
    /// Fraction of steps always computed first (dicache).
    #[arg(long)]
    pub warmup_ratio: Option<f64>,
    /// Compute every N-th step (uniform).
    #[arg(long)]
    pub interval: Option<usize>,
    /// Initial noise: a safetensors file with one f32 tensor "latents" in the unpacked latent
    /// layout, its first dimension one row per sample.
    #[arg(long)]
    pub init_noise: Option<PathBuf>,
    /// Write the sampler's final latents (tensor "latents", unpacked layout, before the VAE's
    /// scaling/shift is undone) to this safetensors file.
    #[arg(long)]
    pub save_latents: Option<PathBuf>,
    /// Write the cache trace (JSON) to this file.
    #[arg(long)]
    pub trace: Option<PathBuf>,
}

impl CommonArgs {
    /// The cache policy the options ask for, starting from the model's DiCache `preset`.
    pub fn policy(&self, preset: DiCacheConfig) -> Result<CachePolicy> {
        let name = self.cache.to_possible_value().expect("no skipped variants");
        let knobs = PolicyKnobs {
            threshold: self.threshold,
            probe_depth: self.probe_depth,
            warmup_ratio: self.warmup_ratio,
            interval: self.interval,
        };
        CachePolicy::with_knobs(name.get_name(), &knobs, preset).map_err(|e| match e {
            CacheError::Knob { knob, policy } => anyhow::anyhow!(
                "--{} does not apply to --cache {policy}",
                knob.replace('_', "-")
            ),
            e => e.into(),
        })
    }

    /// The pipeline folder to load: `--model`, else the `mini` model, which must be there.
    fn folder(&self, mini: &MiniModel) -> Result<PathBuf> {
        mini.folder_or(self.model.as_deref())
    }

    /// The settings of the run: the flags given, else the `defaults` (the pipeline's, with
    /// those its folder carries put in); `frames` is the video flag (`None` for images).
    fn settings(&self, defaults: Settings, frames: Option<usize>) -> Settings {
        Settings {
            width: self.width.unwrap_or(defaults.width),
            height: self.height.unwrap_or(defaults.height),
            frames: frames.unwrap_or(defaults.frames),
            steps: self.steps.unwrap_or(defaults.steps),
            guidance: self.guidance.or(defaults.guidance),
            max_sequence_length: self
                .max_sequence_length
                .unwrap_or(defaults.max_sequence_length),
        }
    }

    /// `--batch-size`, checked (1 to [`MAX_BATCH`]), for a run of `samples` samples.
    fn batch_size(&self, samples: usize) -> Result<usize> {
        if !(1..=MAX_BATCH).contains(&self.batch_size) {
            bail!(
                "--batch-size {} must be between 1 and {MAX_BATCH}",
                self.batch_size
            );
        }
        Ok(self.batch_size.min(samples))
    }

    /// The optional files the options ask for, checked: `--save-latents` and `--trace`.
    fn extra_outputs(&self) -> Result<[Option<OutputFile>; 2]> {
        let file = |flag, path: &Option<PathBuf>| {
            path.as_deref()
                .map(|p| OutputFile::new(flag, p))
                .transpose()
        };
        Ok([
            file("--save-latents", &self.save_latents)?,
            file("--trace", &self.trace)?,
        ])
    }
}

/// Where a run command's decoded output goes: an image or a video file.
pub trait OutputTarget<const N: usize> {
    /// The main output file.
    fn file(&self) -> &OutputFile;

    /// Writes the decoded output `[1, 3, (frames,) height, width]`.
    fn save<B: Backend>(&self, decoded: Tensor<B, N>) -> Result<()>;

    /// The target of sample `index` of several, checked.
    fn numbered(&self, index: usize) -> Result<Self>
    where
        Self: Sized;
}

impl OutputTarget<4> for ImageFile {
    fn file(&self) -> &OutputFile {
        ImageFile::file(self)
    }

    fn numbered(&self, index: usize) -> Result<Self> {
        ImageFile::numbered(self, index)
    }

    fn save<B: Backend>(&self, decoded: Tensor<B, 4>) -> Result<()> {
        ImageFile::save(self, decoded)
    }
}

impl OutputTarget<5> for video::Target {
    fn file(&self) -> &OutputFile {
        video::Target::file(self)
    }

    fn numbered(&self, index: usize) -> Result<Self> {
        video::Target::numbered(self, index)
    }

    fn save<B: Backend>(&self, decoded: Tensor<B, 5>) -> Result<()> {
        video::Target::save(self, decoded)
    }
}

/// What a run command's model brings to the generic run.
pub trait RunModel<const N: usize> {
    /// The pipeline, on any backend.
    type Pipeline<B: Backend>: Pipeline<B, N, Extra = Self::Extra>;
    /// Its model-specific request settings.
    type Extra: Clone;
    /// Where and how its output is written, checked before anything loads.
    type Target: OutputTarget<N>;
    /// Its mini model, loaded without `--model`.
    const MINI: MiniModel;

    /// Its DiCache preset.
    fn preset() -> DiCacheConfig;
}

/// One generation of a run command: the shared options, the model's video frames flag, its
/// extra settings and its checked output target.
pub struct Generate<'a, M: RunModel<N>, const N: usize> {
    /// The shared options.
    pub common: &'a CommonArgs,
    /// `--frames` of a video model (`None`: the default).
    pub frames: Option<usize>,
    /// The model's extra settings.
    pub extra: M::Extra,
    /// Where the output goes.
    pub target: M::Target,
}

impl<M: RunModel<N>, const N: usize> Generate<'_, M, N> {
    /// Runs on the backend and dtype the options ask for.
    pub fn run(self) -> Result<()> {
        dispatch(self.common.backend, self.common.dtype, self)
    }
}

/// The diffusers pipeline class model `M` runs (`"FluxPipeline"`).
fn class_of<B: Backend, M: RunModel<N>, const N: usize>() -> &'static str {
    <M::Pipeline<B> as Pipeline<B, N>>::CLASS_NAME
}

/// The run subcommand whose pipeline class is `class` (`"WanPipeline"` -> `"wan"`).
pub(crate) fn subcommand_of<B: Backend>(class: &str) -> Option<&'static str> {
    [
        (class_of::<B, flux::Flux, 4>(), "flux"),
        (class_of::<B, wan::Wan, 5>(), "wan"),
        (class_of::<B, hunyuan::HunyuanVideo, 5>(), "hunyuan"),
    ]
    .into_iter()
    .find(|(name, _)| *name == class)
    .map(|(_, subcommand)| subcommand)
}

/// Opens the pipeline folder `folder`, which must hold a `P` pipeline: another one is an error
/// naming the subcommand that runs it.
fn open_folder<B: Backend, P: Pipeline<B, N>, const N: usize>(
    folder: &Path,
) -> Result<PipelineFolder> {
    PipelineFolder::open_as(folder, P::CLASS_NAME).map_err(|e| match &e {
        PipelineError::WrongPipeline { found, .. } => {
            let hint = match subcommand_of::<B>(found) {
                Some(subcommand) => format!("run it with `cargo xtask run {subcommand}`"),
                None => "this tool runs FluxPipeline, WanPipeline and HunyuanVideoPipeline \
                         folders"
                    .to_string(),
            };
            anyhow::anyhow!("{e}: {hint}")
        }
        _ => {
            anyhow::Error::new(e).context(format!("{} is not a pipeline folder", folder.display()))
        }
    })
}

/// What `run` and `serve` do before loading the pipeline `P` from `opened` with the single
/// files `options` name: name what each stores (a T5 file for a pipeline without a T5 encoder is an
/// error), and on the CPU check that the weights fit this machine's free memory in `dtype` (a
/// GPU's memory is its own).
pub(crate) fn before_loading<B: Backend, P: Pipeline<B, N>, const N: usize>(
    opened: &PipelineFolder,
    options: LoadOptions<'_>,
    backend: BackendKind,
    dtype: Dtype,
) -> Result<()> {
    let mut replaced = Vec::new();
    if let Some(path) = options.transformer {
        let weights =
            Weights::open(path).with_context(|| format!("--transformer {}", path.display()))?;
        eprintln!("transformer {}", stored_types(path, &weights)?);
        replaced.push(("transformer", weights));
    }
    if let Some(path) = options.t5 {
        let Some(component) = P::T5_COMPONENT else {
            bail!(
                "--t5 {}: {} has no T5 text encoder",
                path.display(),
                P::NAME
            );
        };
        let weights = Weights::open(path).with_context(|| format!("--t5 {}", path.display()))?;
        eprintln!("t5 {}", stored_types(path, &weights)?);
        replaced.push((component, weights));
    }
    if backend == BackendKind::Cpu
        && let Some(available) = available_memory()
    {
        let replaced: Vec<(&str, &Weights)> = replaced.iter().map(|(c, w)| (*c, w)).collect();
        let need = opened.weight_bytes(&replaced, dtype.bytes())?;
        let name = opened.root().display().to_string();
        check_weights(need, dtype.bytes(), available, &name)?;
    }
    Ok(())
}

/// What the single file `file` (a `--transformer`, a `--t5`), opened as `weights`, stores,
/// read from its header: `<file>: 84 tensors (F32 57, Q8_0 27)`.
fn stored_types(file: &Path, weights: &Weights) -> Result<String> {
    let mut counts = BTreeMap::<String, usize>::new();
    for key in weights.keys() {
        *counts.entry(weights.stored_type(key)?).or_default() += 1;
    }
    let types: Vec<String> = counts.iter().map(|(t, n)| format!("{t} {n}")).collect();
    Ok(format!(
        "{}: {} tensors ({})",
        file.display(),
        weights.keys().len(),
        types.join(", ")
    ))
}

impl<M: RunModel<N>, const N: usize> BackendJob for Generate<'_, M, N> {
    type Output = ();

    fn run<B: Backend>(self, device: B::Device) -> Result<()> {
        let common = self.common;
        let name = <M::Pipeline<B> as Pipeline<B, N>>::NAME;
        let policy = common.policy(M::preset())?;
        let sparse = common.sparse.settings(
            <M::Pipeline<B> as Pipeline<B, N>>::SPARSE_VIDEO,
            name,
            common.seed,
        )?;
        let samples = common.samples()?;
        let folder = common.folder(&M::MINI)?;
        let opened = open_folder::<B, M::Pipeline<B>, N>(&folder)?;
        let defaults = opened.defaults(<M::Pipeline<B> as Pipeline<B, N>>::DEFAULTS)?;
        let settings = common.settings(defaults, self.frames);
        M::Pipeline::<B>::check_settings(&settings, &common.negative_prompt)?;
        let batch_size = common.batch_size(samples.len())?;
        let files = SampleFiles::for_samples(self.target, common.extra_outputs()?, samples.len())?;
        check_distinct(&files.iter().flat_map(SampleFiles::all).collect::<Vec<_>>())?;
        output::check_noise_file(common.init_noise.as_deref())?;
        let options = common.load.options();
        before_loading::<B, M::Pipeline<B>, N>(&opened, options, common.backend, common.dtype)?;
        eprintln!("loading {}", folder.display());
        let mut pipe = M::Pipeline::<B>::load_with(&folder, options, &device)
            .with_context(|| format!("loading the {name} pipeline from {}", folder.display()))?;
        pipe.set_sparse_attention(sparse)?;
        let shape = pipe.latent_shape(settings.width, settings.height, settings.frames)?;
        // On the CPU the working memory is this machine's; a GPU's is its own.
        if common.backend == BackendKind::Cpu
            && let Some(available) = available_memory()
        {
            let bytes = common.dtype.bytes();
            pipe.check_memory(&settings, &self.extra, batch_size, bytes, available)?;
        }
        let noise_file =
            output::noise_file(common.init_noise.as_deref(), samples.len(), shape, &device)?;
        // Each call's own time is measured where it is free (the CPU computes synchronously) or
        // asked for (a trace); on a GPU it would drain the queue at every call.
        let timed = common.trace.is_some() || common.backend == BackendKind::Cpu;
        let cache = CacheSettings {
            policy,
            scope: common.cache_scope,
            timing: if timed {
                CallTiming::Synced
            } else {
                CallTiming::Queued
            },
        };
        let batches = samples.chunks(batch_size).zip(files.chunks(batch_size));
        for (batch, files) in batches {
            let start = Instant::now();
            if samples.len() > 1 {
                let last = batch.last().expect("a batch has samples").index;
                let prompt = &batch[0].prompt;
                match batch.len() {
                    1 => eprintln!("sample {} of {}: {prompt}", last + 1, samples.len()),
                    n => eprintln!(
                        "samples {}-{} of {} ({n} per call)",
                        batch[0].index + 1,
                        last + 1,
                        samples.len()
                    ),
                }
            }
            let noise = match &noise_file {
                Some(all) => all.clone().narrow(0, batch[0].index, batch.len()),
                None => {
                    let seeds = batch.iter().map(|s| s.seed);
                    Tensor::from_data(gaussian_noise_rows(&shape, seeds), &device)
                }
            };
            let request = Request {
                prompts: batch
                    .iter()
                    .map(|s| Prompt {
                        text: s.prompt.clone(),
                        negative: common.negative_prompt.clone(),
                    })
                    .collect(),
                settings,
                noise,
                extra: self.extra.clone(),
            };
            let bar = output::step_bar(settings.steps);
            let mut on_step = |done: usize, _| bar.set_position(done as u64);
            let result = pipe.generate(&request, cache.clone(), &mut on_step);
            bar.finish_and_clear();
            let result = result?;
            for (i, (sample, files)) in batch.iter().zip(files).enumerate() {
                let trace = &result.traces[i];
                if let Some(file) = &files.latents {
                    output::save_latents(result.latents.clone().narrow(0, i, 1), file)?;
                }
                if let Some(file) = &files.trace {
                    let json = trace.to_json();
                    file.write(|path| Ok(std::fs::write(path, &json)?))?;
                }
                files.target.save(result.decoded.clone().narrow(0, i, 1))?;
                if let Some(file) = &files.sidecar {
                    let run = (folder.as_path(), &settings, batch.len());
                    samples::write_sidecar(file, sample, common, run, trace)?;
                }
            }
            print_summary(&result.traces, result.denoise_time.as_secs_f64(), start);
            for files in files {
                eprintln!("wrote {}", files.target.file().path().display());
            }
        }
        Ok(())
    }
}

/// The head classes of every call of `traces`, summed; `None` when no call reported any
/// (dense attention).
fn head_classes(traces: &[Trace]) -> Option<HeadClasses> {
    let mut calls = traces
        .iter()
        .flat_map(|t| &t.steps)
        .filter_map(|e| e.heads)
        .peekable();
    calls.peek()?;
    Some(calls.fold(HeadClasses::default(), |mut sum, h| {
        sum += h;
        sum
    }))
}

/// Prints the one-screen summary of a generation (of one sample or a batch, with a trace per
/// sample) that began at `start` and whose denoising loop took `denoise_seconds`.
fn print_summary(traces: &[Trace], denoise_seconds: f64, start: Instant) {
    let total_seconds = start.elapsed().as_secs_f64();
    let s = TraceSummary::of(traces);
    let trace = &traces[0];
    eprintln!("cache      {}", trace.policy.name());
    let of_samples = match traces.len() {
        1 => String::new(),
        n => format!(" ({n} samples, a row each)"),
    };
    eprintln!(
        "steps      {} computed, {} skipped of {} transformer calls{of_samples}",
        s.computed, s.skipped, s.calls
    );
    eprintln!("blocks     {} of {} run", s.blocks_run, s.blocks_uncached);
    if let Some(heads) = head_classes(traces) {
        let all = (heads.dense + heads.spatial + heads.temporal).max(1) as f64;
        let share = |n: usize| 100.0 * n as f64 / all;
        eprintln!(
            "attention  svg: {:.0}% of the heads run spatial, {:.0}% temporal, {:.0}% dense",
            share(heads.spatial),
            share(heads.temporal),
            share(heads.dense)
        );
    }
    if trace.timing != CallTiming::Synced {
        eprintln!("time       {denoise_seconds:.2} s denoising, {total_seconds:.2} s in all");
        return;
    }
    let loop_seconds = s.total_ms / 1e3;
    let per_computed = s.mean_computed_ms / 1e3;
    // What the loop would have taken with every call computed, at the measured cost of a
    // computed call.
    let uncached = s.calls as f64 * per_computed;
    eprintln!(
        "per step   {per_computed:.3} s computed, {:.3} s skipped",
        s.mean_skipped_ms / 1e3
    );
    eprintln!(
        "time       {loop_seconds:.2} s in the transformer, {denoise_seconds:.2} s denoising, \
         {total_seconds:.2} s in all"
    );
    if loop_seconds > 0.0 && s.computed > 0 {
        eprintln!(
            "speedup    {:.2}x over computing every step (estimated {uncached:.2} s)",
            uncached / loop_seconds
        );
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;
    use dicache_bench::mini;

    /// The run options alone, parsed as the command line gives them.
    #[derive(Debug, Parser)]
    struct Cli {
        #[command(flatten)]
        common: CommonArgs,
    }

    fn parse(args: &[&str]) -> CommonArgs {
        Cli::parse_from(["run", "--prompt", "p"].iter().chain(args)).common
    }

    #[test]
    fn given_flags_win_over_the_defaults() {
        use burn_flex::Flex;
        let defaults = <models_flux::FluxPipeline<Flex> as Pipeline<Flex, 4>>::DEFAULTS;
        let common = parse(&["--model", "/x", "--height", "64", "--guidance", "2"]);
        assert_eq!(common.folder(&mini::FLUX).unwrap(), PathBuf::from("/x"));
        let expected = Settings {
            height: 64,
            guidance: Some(2.0),
            ..defaults
        };
        assert_eq!(common.settings(defaults, None), expected);
        let expected = Settings {
            steps: 3,
            frames: 5,
            ..defaults
        };
        assert_eq!(
            parse(&["--steps", "3"]).settings(defaults, Some(5)),
            expected
        );
    }

    #[test]
    fn without_a_model_the_mini_model_is_loaded() {
        for mini in [mini::FLUX, mini::WAN, mini::HUNYUAN] {
            assert_eq!(parse(&[]).folder(&mini).unwrap(), mini.dir());
        }
    }

    #[test]
    fn a_folder_of_another_pipeline_names_its_subcommand() {
        use burn_flex::Flex;
        let msg = open_folder::<Flex, models_flux::FluxPipeline<Flex>, 4>(&mini::WAN.dir())
            .unwrap_err()
            .to_string();
        assert!(
            msg.contains("WanPipeline") && msg.contains("cargo xtask run wan"),
            "{msg}"
        );
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("model_index.json"), b"\x00\x01junk").unwrap();
        let msg = format!(
            "{:#}",
            open_folder::<Flex, models_flux::FluxPipeline<Flex>, 4>(dir.path()).unwrap_err()
        );
        assert!(msg.contains("not a diffusers pipeline index"), "{msg}");
    }

    #[test]
    fn prompts_repeat_with_consecutive_seeds() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("prompts.txt");
        std::fs::write(&file, "a red circle\n\n  a blue square  \n").unwrap();
        let cli = Cli::parse_from([
            "run",
            "--prompt",
            "first",
            "--prompts",
            file.to_str().unwrap(),
            "--num-images-per-prompt",
            "2",
            "--seed",
            "7",
        ]);
        let samples = cli.common.samples().unwrap();
        let got: Vec<(usize, &str, u64)> = samples
            .iter()
            .map(|s| (s.index, s.prompt.as_str(), s.seed))
            .collect();
        assert_eq!(
            got,
            vec![
                (0, "first", 7),
                (1, "first", 8),
                (2, "a red circle", 9),
                (3, "a red circle", 10),
                (4, "a blue square", 11),
                (5, "a blue square", 12),
            ]
        );
        let none = Cli::parse_from([
            "run",
            "--prompts",
            file.to_str().unwrap(),
            "--num-images-per-prompt",
            "0",
        ]);
        assert!(
            none.common
                .samples()
                .unwrap_err()
                .to_string()
                .contains("at least 1")
        );
        let missing = Cli::parse_from(["run", "--prompts", "/no/such/prompts.txt"]);
        assert!(
            missing
                .common
                .samples()
                .unwrap_err()
                .to_string()
                .contains("--prompts")
        );
    }
}
