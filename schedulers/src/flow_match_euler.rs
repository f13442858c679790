//! diffusers' `FlowMatchEulerDiscreteScheduler`: the Euler solver of rectified-flow models
//! (FLUX.1, HunyuanVideo, SD3), with static or resolution-dependent ("dynamic") time shifting.

use std::path::Path;

use burn::tensor::{FloatDType, Tensor, backend::Backend};
use serde::Deserialize;
use serde_json::Value;

use crate::{
    SchedulerError,
    config_file::{SchedulerSettings, check_positive, config_path, unsupported},
    linspace,
};

/// The class a configuration file must name when it names one.
const CLASS_NAME: &str = "FlowMatchEulerDiscreteScheduler";

/// The keys of diffusers' constructor; any other key (other than `_`-prefixed metadata) is an
/// option this port does not know and is rejected rather than ignored.
const KNOWN_KEYS: [&str; 14] = [
    "num_train_timesteps",
    "shift",
    "use_dynamic_shifting",
    "base_shift",
    "max_shift",
    "base_image_seq_len",
    "max_image_seq_len",
    "invert_sigmas",
    "shift_terminal",
    "use_karras_sigmas",
    "use_exponential_sigmas",
    "use_beta_sigmas",
    "time_shift_type",
    "stochastic_sampling",
];

/// How dynamic shifting maps a sigma `t` given `mu`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TimeShiftType {
    /// `e^mu / (e^mu + (1/t - 1))` (FLUX).
    Exponential,
    /// `mu / (mu + (1/t - 1))`.
    Linear,
}

/// The settings of `scheduler_config.json`, with diffusers' defaults for absent keys.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default)]
pub struct FlowMatchEulerDiscreteConfig {
    /// Training timesteps; a timestep is `sigma * num_train_timesteps`.
    pub num_train_timesteps: usize,
    /// Static shift `s`: `sigma -> s * sigma / (1 + (s - 1) * sigma)` (HunyuanVideo: 7.0).
    pub shift: f64,
    /// Whether sigmas are shifted by `mu` (from the image size) instead of `shift` (FLUX).
    pub use_dynamic_shifting: bool,
    /// `mu` at `base_image_seq_len` tokens.
    pub base_shift: f64,
    /// `mu` at `max_image_seq_len` tokens.
    pub max_shift: f64,
    /// Sequence length of `base_shift`.
    pub base_image_seq_len: usize,
    /// Sequence length of `max_shift`.
    pub max_image_seq_len: usize,
    /// Unsupported when true.
    pub invert_sigmas: bool,
    /// Unsupported when set.
    pub shift_terminal: Option<f64>,
    /// Unsupported when true.
    pub use_karras_sigmas: bool,
    /// Unsupported when true.
    pub use_exponential_sigmas: bool,
    /// Unsupported when true.
    pub use_beta_sigmas: bool,
    /// The dynamic shift's formula.
    pub time_shift_type: TimeShiftType,
    /// Unsupported when true.
    pub stochastic_sampling: bool,
}

impl Default for FlowMatchEulerDiscreteConfig {
    fn default() -> Self {
        Self {
            num_train_timesteps: 1000,
            shift: 1.0,
            use_dynamic_shifting: false,
            base_shift: 0.5,
            max_shift: 1.15,
            base_image_seq_len: 256,
            max_image_seq_len: 4096,
            invert_sigmas: false,
            shift_terminal: None,
            use_karras_sigmas: false,
            use_exponential_sigmas: false,
            use_beta_sigmas: false,
            time_shift_type: TimeShiftType::Exponential,
            stochastic_sampling: false,
        }
    }
}

impl FlowMatchEulerDiscreteConfig {
    /// Reads `scheduler_config.json`: `path` is the file or the folder holding it.
    ///
    /// Keys this port does not know, a `_class_name` other than
    /// `FlowMatchEulerDiscreteScheduler` and an unknown `time_shift_type` are errors naming the
    /// key. A `null` value means the default, as for an absent key.
    pub fn from_file(path: &Path) -> Result<Self, SchedulerError> {
        let settings = SchedulerSettings::read(path, CLASS_NAME, &KNOWN_KEYS)?;
        if let Some(kind) = settings.values.get("time_shift_type")
            && !matches!(kind.as_str(), Some("exponential" | "linear"))
        {
            return Err(settings.unsupported(
                "time_shift_type",
                kind,
                "\"exponential\" or \"linear\"",
            ));
        }
        settings.parse()
    }

    /// Fails on the first option set to something this port does not implement, naming it.
    fn check_supported(&self, origin: &str) -> Result<(), SchedulerError> {
        let flags = [
            ("invert_sigmas", self.invert_sigmas),
            ("use_karras_sigmas", self.use_karras_sigmas),
            ("use_exponential_sigmas", self.use_exponential_sigmas),
            ("use_beta_sigmas", self.use_beta_sigmas),
            ("stochastic_sampling", self.stochastic_sampling),
        ];
        if let Some((key, _)) = flags.iter().find(|(_, on)| *on) {
            return Err(unsupported(origin, key, &Value::Bool(true), "only false"));
        }
        if let Some(terminal) = self.shift_terminal {
            return Err(unsupported(
                origin,
                "shift_terminal",
                &Value::from(terminal),
                "only null",
            ));
        }
        if self.num_train_timesteps == 0 {
            return Err(unsupported(
                origin,
                "num_train_timesteps",
                &Value::from(0),
                "at least 1",
            ));
        }
        check_positive(origin, "shift", self.shift)?;
        // mu is interpolated between the two and enters as exp(mu): beyond +-MAX_MU every sigma
        // collapses to 0 or 1 (and exp overflows at 710).
        for (key, value) in [
            ("base_shift", self.base_shift),
            ("max_shift", self.max_shift),
        ] {
            if !(value.is_finite() && value.abs() <= MAX_MU) {
                return Err(unsupported(
                    origin,
                    key,
                    &Value::from(value),
                    &format!("a number between -{MAX_MU} and {MAX_MU}"),
                ));
            }
        }
        if self.base_image_seq_len == self.max_image_seq_len {
            return Err(unsupported(
                origin,
                "max_image_seq_len",
                &Value::from(self.max_image_seq_len),
                "unlike base_image_seq_len (the shift is interpolated between them)",
            ));
        }
        Ok(())
    }
}

/// The largest dynamic shift `|mu|` a configuration may give at its ends: `exp(10)` already
/// moves every sigma of a schedule to within 1e-4 of 1.
const MAX_MU: f64 = 10.0;

/// FluxPipeline's `calculate_shift`: `mu` grows linearly with the image's token count, from
/// `base_shift` at `base_seq_len` tokens to `max_shift` at `max_seq_len` tokens.
pub fn calculate_shift(
    image_seq_len: usize,
    base_seq_len: usize,
    max_seq_len: usize,
    base_shift: f64,
    max_shift: f64,
) -> f64 {
    let m = (max_shift - base_shift) / (max_seq_len as f64 - base_seq_len as f64);
    let b = base_shift - m * base_seq_len as f64;
    image_seq_len as f64 * m + b
}

/// The float width an expression of the reference is evaluated in: every operation rounds to
/// it (computing in f64 and rounding each result to f32 gives f32 arithmetic exactly, since
/// f64 carries more than twice f32's precision).
#[derive(Debug, Clone, Copy)]
pub(crate) enum Precision {
    F32,
    F64,
}

impl Precision {
    fn round(self, x: f64) -> f64 {
        match self {
            Self::F32 => x as f32 as f64,
            Self::F64 => x,
        }
    }
}

/// The flow-matching Euler scheduler.
///
/// `set_timesteps` builds the schedule: `timesteps()` (one per step, what the model is given)
/// and `sigmas()` (one more, ending in 0). `step` then moves a sample from `sigmas[i]` to
/// `sigmas[i + 1]` along the predicted velocity.
#[derive(Debug, Clone)]
pub struct FlowMatchEulerDiscreteScheduler {
    config: FlowMatchEulerDiscreteConfig,
    /// Largest sigma of the training schedule (after the static shift when dynamic shifting is
    /// off), in f32 as diffusers keeps it.
    sigma_max: f32,
    /// Smallest sigma of the training schedule, likewise.
    sigma_min: f32,
    timesteps: Vec<f32>,
    sigmas: Vec<f32>,
}

impl FlowMatchEulerDiscreteScheduler {
    /// A scheduler with `config`; options this port does not implement are errors naming them.
    pub fn new(config: FlowMatchEulerDiscreteConfig) -> Result<Self, SchedulerError> {
        Self::with_origin(config, "scheduler configuration")
    }

    /// A scheduler configured by `scheduler_config.json` (`path`: the file or its folder).
    pub fn from_file(path: &Path) -> Result<Self, SchedulerError> {
        let config = FlowMatchEulerDiscreteConfig::from_file(path)?;
        Self::with_origin(config, &config_path(path).display().to_string())
    }

    fn with_origin(
        config: FlowMatchEulerDiscreteConfig,
        origin: &str,
    ) -> Result<Self, SchedulerError> {
        config.check_supported(origin)?;
        // The training schedule, in f32: sigmas N/N ... 1/N, statically shifted unless the
        // shift is dynamic. Only its ends are used later.
        let n = config.num_train_timesteps as f64;
        let ends = [1.0, Precision::F32.round(1.0 / n)];
        let [sigma_max, sigma_min] = if config.use_dynamic_shifting {
            ends
        } else {
            ends.map(|s| static_shift(config.shift, s, Precision::F32))
        };
        Ok(Self {
            config,
            sigma_max: sigma_max as f32,
            sigma_min: sigma_min as f32,
            timesteps: Vec::new(),
            sigmas: Vec::new(),
        })
    }

    /// The configuration.
    pub fn config(&self) -> &FlowMatchEulerDiscreteConfig {
        &self.config
    }

    /// [`calculate_shift`] with this configuration's sequence lengths and shifts: the `mu`
    /// FluxPipeline passes for an image of `image_seq_len` latent tokens.
    pub fn mu_for_seq_len(&self, image_seq_len: usize) -> f64 {
        let c = &self.config;
        calculate_shift(
            image_seq_len,
            c.base_image_seq_len,
            c.max_image_seq_len,
            c.base_shift,
            c.max_shift,
        )
    }

    /// Builds the schedule of `num_steps` steps, as diffusers' `set_timesteps` does.
    ///
    /// `sigmas`: custom unshifted sigmas, one per step (FLUX passes
    /// `linspace(1.0, 1.0 / num_steps, num_steps)`, HunyuanVideo
    /// `linspace(1.0, 0.0, num_steps + 1)` without the last); they are rounded to f32 and
    /// shifted in f32. Without them the sigmas are spaced evenly between the training
    /// schedule's ends and shifted in f64. `mu`: the dynamic shift (required when
    /// `use_dynamic_shifting` is set, ignored otherwise, as in diffusers).
    ///
    /// Errors: no steps, a sigma count other than `num_steps`, or a missing `mu`.
    pub fn set_timesteps(
        &mut self,
        num_steps: usize,
        sigmas: Option<Vec<f64>>,
        mu: Option<f64>,
    ) -> Result<(), SchedulerError> {
        if num_steps == 0 {
            return Err(SchedulerError::NoSteps);
        }
        let dynamic_mu = match (self.config.use_dynamic_shifting, mu) {
            (true, None) => return Err(SchedulerError::MissingMu),
            (true, Some(mu)) => Some(mu),
            (false, _) => None,
        };
        let n = self.config.num_train_timesteps as f64;
        let (unshifted, precision) = match sigmas {
            Some(sigmas) if sigmas.len() != num_steps => {
                return Err(SchedulerError::SigmasLength {
                    num_steps,
                    given: sigmas.len(),
                });
            }
            Some(sigmas) => (
                sigmas
                    .into_iter()
                    .map(|s| Precision::F32.round(s))
                    .collect(),
                Precision::F32,
            ),
            None => (
                linspace(
                    self.sigma_max as f64 * n,
                    self.sigma_min as f64 * n,
                    num_steps,
                )
                .into_iter()
                .map(|t| t / n)
                .collect::<Vec<f64>>(),
                Precision::F64,
            ),
        };
        let shifted: Vec<f32> = unshifted
            .into_iter()
            .map(|s| {
                let s = match dynamic_mu {
                    Some(mu) => self.time_shift(mu, s, precision),
                    None => static_shift(self.config.shift, s, precision),
                };
                s as f32
            })
            .collect();
        if let Some(bad) = shifted.iter().find(|s| !(0.0..=1.0).contains(*s)) {
            return Err(SchedulerError::Sigma { sigma: *bad });
        }
        let train_steps = self.config.num_train_timesteps as f32;
        self.timesteps = shifted.iter().map(|s| s * train_steps).collect();
        self.sigmas = shifted;
        self.sigmas.push(0.0);
        Ok(())
    }

    /// The model's timestep at each step (`sigma * num_train_timesteps`), `[num_steps]`.
    /// Empty before [`Self::set_timesteps`].
    pub fn timesteps(&self) -> &[f32] {
        &self.timesteps
    }

    /// The noise level at each step and after the last (0), `[num_steps + 1]`. Empty before
    /// [`Self::set_timesteps`].
    pub fn sigmas(&self) -> &[f32] {
        &self.sigmas
    }

    /// One Euler step from `sigmas[step_index]` to `sigmas[step_index + 1]`:
    /// `sample + (sigma_next - sigma) * model_output`, with the sample in f32 as diffusers
    /// upcasts it; the result has the model output's dtype. Both tensors share a shape, e.g.
    /// `[batch, seq, channels]` packed latents.
    pub fn step<B: Backend, const D: usize>(
        &self,
        model_output: Tensor<B, D>,
        sample: Tensor<B, D>,
        step_index: usize,
    ) -> Result<Tensor<B, D>, SchedulerError> {
        if step_index + 1 >= self.sigmas.len() {
            return Err(SchedulerError::StepIndex {
                index: step_index,
                num_steps: self.timesteps.len(),
            });
        }
        let (out_shape, sample_shape) = (model_output.dims(), sample.dims());
        if out_shape != sample_shape {
            return Err(SchedulerError::ShapeMismatch {
                model_output: out_shape.to_vec(),
                sample: sample_shape.to_vec(),
            });
        }
        let dt = self.sigmas[step_index + 1] - self.sigmas[step_index];
        let dtype = model_output.dtype();
        let prev = sample.cast(FloatDType::F32) + model_output.mul_scalar(dt).cast(FloatDType::F32);
        Ok(prev.cast(dtype))
    }

    /// Dynamic shift of sigma `t` by `mu`, in `precision` (`(1/t - 1)` is raised to the power
    /// 1, which the reference evaluates exactly).
    fn time_shift(&self, mu: f64, t: f64, precision: Precision) -> f64 {
        let r = |x| precision.round(x);
        let a = match self.config.time_shift_type {
            TimeShiftType::Exponential => r(mu.exp()),
            TimeShiftType::Linear => r(mu),
        };
        r(a / r(a + r(r(1.0 / t) - 1.0)))
    }
}

/// Static shift `shift * sigma / (1 + (shift - 1) * sigma)` in `precision`, with `shift` and
/// `shift - 1` rounded to it as scalars are.
pub(crate) fn static_shift(shift: f64, sigma: f64, precision: Precision) -> f64 {
    let r = |x| precision.round(x);
    let (a, b) = (r(shift), r(shift - 1.0));
    r(r(a * sigma) / r(1.0 + r(b * sigma)))
}
