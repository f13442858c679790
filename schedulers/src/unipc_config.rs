//! The settings of diffusers' `UniPCMultistepScheduler` that this port honours: flow sigmas
//! with a static shift and data (x0) prediction from a flow-prediction model, as WAN 2.1
//! configures it.

use std::path::Path;

use serde::Deserialize;
use serde_json::Value;

use crate::{
    SchedulerError,
    config_file::{SchedulerSettings, check_positive, unsupported},
};

/// The class a configuration file must name when it names one.
const CLASS_NAME: &str = "UniPCMultistepScheduler";

/// The keys of diffusers' constructor; any other key (other than `_`-prefixed metadata) is
/// rejected rather than ignored.
const KNOWN_KEYS: [&str; 29] = [
    "num_train_timesteps",
    "beta_start",
    "beta_end",
    "beta_schedule",
    "trained_betas",
    "solver_order",
    "prediction_type",
    "thresholding",
    "dynamic_thresholding_ratio",
    "sample_max_value",
    "predict_x0",
    "solver_type",
    "lower_order_final",
    "disable_corrector",
    "solver_p",
    "use_karras_sigmas",
    "use_exponential_sigmas",
    "use_beta_sigmas",
    "use_flow_sigmas",
    "flow_shift",
    "timestep_spacing",
    "steps_offset",
    "final_sigmas_type",
    "rescale_betas_zero_snr",
    "use_dynamic_shifting",
    "time_shift_type",
    "sigma_min",
    "sigma_max",
    "shift_terminal",
];

/// Switches this port needs at one value: (key, diffusers' default, the value required).
/// The beta schedule (`beta_*`, `trained_betas`, `rescale_betas_zero_snr`), the thresholding
/// parameters, `steps_offset`, `time_shift_type`, `sigma_min` and `sigma_max` have no effect
/// with flow sigmas and are accepted as they are.
const SWITCHES: [(&str, bool, bool); 7] = [
    ("use_flow_sigmas", false, true),
    ("predict_x0", true, true),
    ("thresholding", false, false),
    ("use_karras_sigmas", false, false),
    ("use_exponential_sigmas", false, false),
    ("use_beta_sigmas", false, false),
    ("use_dynamic_shifting", false, false),
];

/// Settings named by a string: (key, diffusers' default, the values accepted). Diffusers
/// rejects the other values of `beta_schedule` and `timestep_spacing` too, although neither
/// changes a flow-sigma schedule.
const CHOICES: [(&str, &str, &[&str]); 5] = [
    ("prediction_type", "epsilon", &["flow_prediction"]),
    (
        "solver_type",
        "bh2",
        &["bh1", "bh2", "midpoint", "heun", "logrho"],
    ),
    ("final_sigmas_type", "zero", &["zero", "sigma_min"]),
    (
        "beta_schedule",
        "linear",
        &["linear", "scaled_linear", "squaredcos_cap_v2"],
    ),
    (
        "timestep_spacing",
        "linspace",
        &["linspace", "leading", "trailing"],
    ),
];

/// Options this port supports only when absent (or `null`).
const ABSENT: [&str; 2] = ["solver_p", "shift_terminal"];

/// The highest `solver_order` supported.
const MAX_SOLVER_ORDER: usize = 3;

/// The `B(h)` of the UniPC updates (`h`: the step in log-SNR).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SolverType {
    /// `B(h) = h`.
    Bh1,
    /// `B(h) = e^h - 1`; diffusers maps `midpoint`, `heun` and `logrho` (DPM-Solver's names)
    /// to it.
    #[serde(alias = "midpoint", alias = "heun", alias = "logrho")]
    Bh2,
}

/// The sigma after the last step.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FinalSigmasType {
    /// 0: the last step lands on the clean sample.
    Zero,
    /// The last step's own sigma: the last step leaves the sample as it is.
    SigmaMin,
}

/// The settings of `scheduler_config.json` that shape the schedule and the updates, with
/// diffusers' defaults for absent keys. The settings this port fixes (flow sigmas, flow
/// prediction, data prediction, no thresholding) are checked by [`Self::from_file`].
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default)]
pub struct UniPcMultistepConfig {
    /// Training timesteps; a timestep is `sigma * num_train_timesteps`, truncated.
    pub num_train_timesteps: usize,
    /// How many earlier model outputs the multistep updates use (1 to 3; WAN: 2).
    pub solver_order: usize,
    /// The `B(h)` of the predictor and corrector.
    pub solver_type: SolverType,
    /// Whether the last steps lower the order (required from `solver_order` 2 on).
    pub lower_order_final: bool,
    /// Steps whose following step skips the corrector (step `i` listed: step `i + 1` is not
    /// corrected).
    pub disable_corrector: Vec<usize>,
    /// Static shift `s`: `sigma -> s * sigma / (1 + (s - 1) * sigma)` (WAN: 3.0 at 480p, 5.0
    /// at 720p).
    pub flow_shift: f64,
    /// The sigma after the last step.
    pub final_sigmas_type: FinalSigmasType,
}

impl Default for UniPcMultistepConfig {
    fn default() -> Self {
        Self {
            num_train_timesteps: 1000,
            solver_order: 2,
            solver_type: SolverType::Bh2,
            lower_order_final: true,
            disable_corrector: Vec::new(),
            flow_shift: 1.0,
            final_sigmas_type: FinalSigmasType::Zero,
        }
    }
}

impl UniPcMultistepConfig {
    /// WAN 2.1's settings (the `scheduler_config.json` of the Wan-AI diffusers checkpoints)
    /// with `flow_shift`: 3.0 for 480p, 5.0 for 720p.
    pub fn wan(flow_shift: f64) -> Self {
        Self {
            flow_shift,
            ..Self::default()
        }
    }

    /// Reads `scheduler_config.json`: `path` is the file or the folder holding it.
    ///
    /// Errors name the key: an unknown key, a `_class_name` other than
    /// `UniPCMultistepScheduler`, a switch or choice this port does not implement (absent
    /// keys take diffusers' defaults, so a file must set `use_flow_sigmas` and
    /// `prediction_type`), or a `solver_p` or `shift_terminal`. A `null` value means the
    /// default, as for an absent key.
    pub fn from_file(path: &Path) -> Result<Self, SchedulerError> {
        let settings = SchedulerSettings::read(path, CLASS_NAME, &KNOWN_KEYS)?;
        let values = &settings.values;
        for (key, default, required) in SWITCHES {
            let value = values.get(key).cloned().unwrap_or(Value::Bool(default));
            if value.as_bool() != Some(required) {
                return Err(settings.unsupported(key, &value, &format!("only {required}")));
            }
        }
        for (key, default, accepted) in CHOICES {
            let value = values.get(key).cloned().unwrap_or(Value::from(default));
            if !value.as_str().is_some_and(|v| accepted.contains(&v)) {
                return Err(settings.unsupported(key, &value, &format!("one of {accepted:?}")));
            }
        }
        if let Some(key) = ABSENT.iter().find(|key| values.contains_key(**key)) {
            return Err(settings.unsupported(key, &values[*key], "only null"));
        }
        settings.parse()
    }

    /// Fails on the first setting, or combination, this port does not implement, naming it.
    pub(crate) fn check_supported(&self, origin: &str) -> Result<(), SchedulerError> {
        if self.num_train_timesteps == 0 {
            return Err(unsupported(
                origin,
                "num_train_timesteps",
                &Value::from(0),
                "at least 1",
            ));
        }
        if !(1..=MAX_SOLVER_ORDER).contains(&self.solver_order) {
            return Err(unsupported(
                origin,
                "solver_order",
                &Value::from(self.solver_order),
                &format!("1 to {MAX_SOLVER_ORDER}"),
            ));
        }
        check_positive(origin, "flow_shift", self.flow_shift)?;
        // With a final sigma of 0 the last step's log-SNR step `h` is infinite: B(h) = h turns
        // the update into infinity times zero (NaN in diffusers).
        if self.solver_type == SolverType::Bh1 && self.final_sigmas_type == FinalSigmasType::Zero {
            return Err(unsupported(
                origin,
                "solver_type",
                &Value::from("bh1"),
                "bh2 with final_sigmas_type \"zero\" (bh1 gives NaN on the last step)",
            ));
        }
        // A last step of order 2 or more divides by an infinite or zero `h` (diffusers gives
        // inf or NaN, or at best leaves the sample unchanged).
        if !self.lower_order_final && self.solver_order > 1 {
            return Err(unsupported(
                origin,
                "lower_order_final",
                &Value::Bool(false),
                "only true when solver_order is 2 or more",
            ));
        }
        Ok(())
    }
}
