//! The JSON of the API: what a client asks for, how it is checked (the command line's checks,
//! each error naming its field), and what comes back.

use dicache_core::{CachePolicy, CacheScope, CacheSettings, CallTiming, PolicyKnobs, Trace};
use dit_pipeline::{MAX_BATCH, Pipeline, Prompt, Settings};
use serde::{Deserialize, Serialize};

use crate::Model;

/// The body of `POST /v1/images/generations` and `POST /v1/jobs`: OpenAI's image generation
/// request (`prompt`, `n`, `size`, `response_format`; `model` and `user` accepted and unused)
/// and this server's own settings. Unknown fields are errors.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GenerationRequest {
    /// What to show.
    pub prompt: String,
    /// What not to show (models with classifier-free guidance).
    #[serde(default)]
    pub negative_prompt: String,
    /// Samples, each with the next seed.
    pub n: Option<usize>,
    /// `"WIDTHxHEIGHT"` in pixels.
    pub size: Option<String>,
    /// How the samples come back from `/v1/images/generations`.
    pub response_format: Option<ResponseFormat>,
    /// Denoising steps.
    pub steps: Option<usize>,
    /// Guidance scale.
    pub guidance: Option<f64>,
    /// Seed of the first sample's noise.
    pub seed: Option<u64>,
    /// Frames of a video.
    pub frames: Option<usize>,
    /// Cache policy: `none`, `uniform`, `fbcache`, `dicache`.
    pub cache: Option<String>,
    /// The policy's skip threshold.
    pub threshold: Option<f64>,
    /// OpenAI's model name; the server runs the model it loaded.
    pub model: Option<String>,
    /// OpenAI's end-user id; unused.
    pub user: Option<String>,
}

/// How generated samples come back.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ResponseFormat {
    /// The file's bytes in base64, inline.
    #[default]
    B64Json,
    /// A URL on this server (`/v1/jobs/{id}/result/{i}`) to fetch the file from.
    Url,
}

/// A rejected request: the HTTP status, the field at fault and why.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ApiError {
    /// HTTP status.
    #[serde(skip)]
    pub status: u16,
    /// The request field at fault, when one is.
    pub field: Option<String>,
    /// Why.
    pub message: String,
}

impl ApiError {
    /// A 400 naming `field`.
    pub fn field(field: &str, message: impl Into<String>) -> Self {
        Self {
            status: 400,
            field: Some(field.to_string()),
            message: message.into(),
        }
    }

    /// An error of status `status`, of no field.
    pub fn status(status: u16, message: impl Into<String>) -> Self {
        Self {
            status,
            field: None,
            message: message.into(),
        }
    }
}

/// A checked request: what the worker runs.
#[derive(Debug, Clone)]
pub struct JobSpec {
    /// One prompt per sample.
    pub prompts: Vec<Prompt>,
    /// The seed of each sample's noise.
    pub seeds: Vec<u64>,
    /// Size, steps, guidance.
    pub settings: Settings,
    /// How it caches.
    pub cache: CacheSettings,
    /// How its samples come back.
    pub format: ResponseFormat,
}

/// The longest prompt in bytes a request may send.
pub const MAX_PROMPT_BYTES: usize = 4096;

impl GenerationRequest {
    /// Checks the request against `model` as the command line checks its flags, before
    /// anything is queued.
    pub fn check<B, P, const N: usize>(self, model: &Model<B, P, N>) -> Result<JobSpec, ApiError>
    where
        B: burn::tensor::backend::Backend,
        P: Pipeline<B, N>,
    {
        let defaults = model.defaults;
        for (field, text) in [
            ("prompt", &self.prompt),
            ("negative_prompt", &self.negative_prompt),
        ] {
            if text.len() > MAX_PROMPT_BYTES {
                return Err(ApiError::field(
                    field,
                    format!("{} bytes; at most {MAX_PROMPT_BYTES}", text.len()),
                ));
            }
        }
        if self.prompt.trim().is_empty() {
            return Err(ApiError::field("prompt", "the prompt is empty"));
        }
        let n = self.n.unwrap_or(1);
        let most = model.max_batch.min(MAX_BATCH);
        if !(1..=most).contains(&n) {
            return Err(ApiError::field(
                "n",
                format!("{n} samples: this server runs 1 to {most} per request"),
            ));
        }
        let (width, height) = match &self.size {
            None => (defaults.width, defaults.height),
            Some(size) => parse_size(size).ok_or_else(|| {
                ApiError::field(
                    "size",
                    format!("{size:?} is not WIDTHxHEIGHT in pixels (e.g. \"512x512\")"),
                )
            })?,
        };
        if self.frames.is_some() && !model.video() {
            return Err(ApiError::field("frames", "this model makes images"));
        }
        let settings = Settings {
            width,
            height,
            frames: self.frames.unwrap_or(defaults.frames),
            steps: self.steps.unwrap_or(defaults.steps),
            guidance: self.guidance.or(defaults.guidance),
            max_sequence_length: defaults.max_sequence_length,
        };
        if let Err(e) = dit_pipeline::check_steps(settings.steps) {
            return Err(ApiError::field("steps", e.to_string()));
        }
        if let Some(g) = settings.guidance
            && let Err(e) = dit_pipeline::check_guidance_scale(g)
        {
            return Err(ApiError::field("guidance", e.to_string()));
        }
        if let Err(e) = P::check_settings(&settings, &self.negative_prompt) {
            return Err(ApiError::field("negative_prompt", e.to_string()));
        }
        if let Err(e) = model.pipeline.latent_shape(width, height, settings.frames) {
            let message = e.to_string();
            // The frames when they were given and are at fault (or the size was not given).
            let frames =
                self.frames.is_some() && (self.size.is_none() || message.contains("frames"));
            return Err(ApiError::field(
                if frames { "frames" } else { "size" },
                message,
            ));
        }
        if let Some(available) = model.memory {
            let extra = &model.extra;
            if let Err(e) = model
                .pipeline
                .check_memory(&settings, extra, n, 4, available)
            {
                return Err(ApiError::field("size", e.to_string()));
            }
        }
        let policy = self.policy(model)?;
        let seed = self.seed.unwrap_or(0);
        let seeds = (0..n as u64)
            .map(|i| seed.checked_add(i))
            .collect::<Option<Vec<_>>>()
            .ok_or_else(|| ApiError::field("seed", format!("seed {seed} + {n} overflows")))?;
        let prompt = Prompt {
            text: self.prompt,
            negative: self.negative_prompt,
        };
        Ok(JobSpec {
            prompts: vec![prompt; n],
            seeds,
            settings,
            cache: CacheSettings {
                policy,
                scope: CacheScope::Sample,
                timing: CallTiming::Queued,
            },
            format: self.response_format.unwrap_or_default(),
        })
    }

    /// The cache policy asked for (the model's DiCache preset by default), checked against
    /// the model's blocks.
    fn policy<B, P, const N: usize>(&self, model: &Model<B, P, N>) -> Result<CachePolicy, ApiError>
    where
        B: burn::tensor::backend::Backend,
        P: Pipeline<B, N>,
    {
        let name = self.cache.as_deref().unwrap_or("dicache");
        let knobs = PolicyKnobs {
            threshold: self.threshold,
            ..PolicyKnobs::default()
        };
        let policy = CachePolicy::with_knobs(name, &knobs, model.preset.clone()).map_err(|e| {
            let field = match e {
                dicache_core::CacheError::Knob { .. } => "threshold",
                _ => "cache",
            };
            ApiError::field(field, e.to_string())
        })?;
        // A loop of the model's transformer checks the policy against its blocks.
        model
            .pipeline
            .denoiser(&policy.clone().into())
            .map_err(|e| ApiError::field("threshold", e.to_string()))?;
        Ok(policy)
    }
}

/// `"512x768"` as `(512, 768)`.
fn parse_size(size: &str) -> Option<(usize, usize)> {
    let (w, h) = size.split_once(['x', 'X'])?;
    Some((w.trim().parse().ok()?, h.trim().parse().ok()?))
}

/// Where a job is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum JobState {
    /// Waiting for room in the batch.
    Queued,
    /// In the denoising loop (or decoding).
    Running,
    /// Finished: its results are ready.
    Done,
    /// Failed: `error` says why.
    Failed,
    /// Cancelled by its client.
    Cancelled,
}

impl JobState {
    /// Whether the job has ended.
    pub fn ended(self) -> bool {
        matches!(
            self,
            JobState::Done | JobState::Failed | JobState::Cancelled
        )
    }
}

/// One result file of a job, as the API lists it.
#[derive(Debug, Clone, Serialize)]
pub struct ResultLink {
    /// Where to fetch it.
    pub url: String,
    /// Its media type.
    pub mime: &'static str,
}

/// What `GET /v1/jobs/{id}` and the job's events say.
#[derive(Debug, Clone, Serialize)]
pub struct JobStatus {
    /// The job's id.
    pub id: u64,
    /// Where it is.
    pub state: JobState,
    /// Samples.
    pub samples: usize,
    /// Steps done.
    pub step: usize,
    /// Steps in all.
    pub steps: usize,
    /// Transformer calls of its samples that ran every block, so far.
    pub computed: usize,
    /// Transformer calls of its samples answered from the cache, so far.
    pub skipped: usize,
    /// Samples in the batch it runs in (itself included), at its last step.
    pub batch_samples: usize,
    /// Why it failed.
    pub error: Option<ApiError>,
    /// Its result files, once done.
    pub results: Vec<ResultLink>,
    /// The cache trace of each sample, once done.
    pub traces: Vec<Trace>,
    /// The threshold its cache policy compares with, for drawing the trace.
    pub threshold: Option<f64>,
}

/// The answer of `POST /v1/images/generations`: OpenAI's shape plus the job's id and traces.
#[derive(Debug, Clone, Serialize)]
pub struct GenerationResponse {
    /// Seconds since the Unix epoch.
    pub created: u64,
    /// One entry per sample.
    pub data: Vec<GeneratedSample>,
    /// The job's id.
    pub id: u64,
    /// The cache trace of each sample.
    pub traces: Vec<Trace>,
}

/// One sample of a [`GenerationResponse`].
#[derive(Debug, Clone, Serialize)]
pub struct GeneratedSample {
    /// The file in base64 (`response_format` `b64_json`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub b64_json: Option<String>,
    /// Where to fetch the file (`response_format` `url`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// Its media type.
    pub mime: &'static str,
}

#[cfg(test)]
mod tests {
    use super::parse_size;

    #[test]
    fn sizes_are_width_by_height() {
        assert_eq!(parse_size("512x768"), Some((512, 768)));
        assert_eq!(parse_size("64X32"), Some((64, 32)));
        assert_eq!(parse_size("64"), None);
        assert_eq!(parse_size("ax64"), None);
        assert_eq!(parse_size("-1x64"), None);
    }
}
