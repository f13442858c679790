//! diffusers' `UniPCMultistepScheduler` with flow sigmas: the multistep predictor-corrector
//! sampler of WAN 2.1 (UniPC, Zhao et al. 2023), on the data predictions of a flow-prediction
//! model.

use std::{collections::VecDeque, path::Path};

use burn::tensor::{Tensor, backend::Backend};

use crate::{
    FinalSigmasType, SchedulerError, UniPcMultistepConfig,
    config_file::config_path,
    flow_match_euler::{Precision, static_shift},
    linspace,
    unipc_coefficients::BhCoefficients,
};

/// How far below 1 the first sigma is moved when the shift leaves it at 1 (its `alpha` would
/// be 0 and its log-SNR infinite).
const FIRST_SIGMA_MARGIN: f64 = 1e-6;

/// What one generation has accumulated between steps.
#[derive(Debug, Clone)]
struct History<B: Backend, const D: usize> {
    /// Index of the next step.
    step_index: usize,
    /// Data predictions of the last `solver_order` steps, oldest first.
    x0_preds: VecDeque<Tensor<B, D>>,
    /// The sample the last predictor started from and that predictor's order: the corrector
    /// of the next step refines the predictor's result with them.
    last: Option<(Tensor<B, D>, usize)>,
}

impl<B: Backend, const D: usize> History<B, D> {
    fn new() -> Self {
        Self {
            step_index: 0,
            x0_preds: VecDeque::new(),
            last: None,
        }
    }
}

/// The UniPC multistep scheduler with flow sigmas.
///
/// `set_timesteps` builds the schedule: `timesteps()` (one per step, what the model is given)
/// and `sigmas()` (one more). Each `step` then takes the model's output at the current step
/// and the sample, corrects the sample with the new output (UniC, from the second step on),
/// and predicts the sample at the next sigma (UniP) from the last `solver_order` outputs.
///
/// The scheduler is stateful: it keeps the last model outputs (as data predictions) and the
/// sample of the last step as Burn tensors of rank `D` (WAN's latents:
/// `[batch, channels, frames, height, width]`), and counts steps itself. One scheduler serves
/// one generation, whose steps are taken in order; [`Self::reset`] (or `set_timesteps`)
/// starts the next one.
#[derive(Debug, Clone)]
pub struct UniPcMultistepScheduler<B: Backend, const D: usize> {
    config: UniPcMultistepConfig,
    timesteps: Vec<i64>,
    sigmas: Vec<f32>,
    history: History<B, D>,
}

impl<B: Backend, const D: usize> UniPcMultistepScheduler<B, D> {
    /// A scheduler with `config`; settings this port does not implement are errors naming them.
    pub fn new(config: UniPcMultistepConfig) -> Result<Self, SchedulerError> {
        Self::with_origin(config, "scheduler configuration")
    }

    /// A scheduler configured by `scheduler_config.json` (`path`: the file or its folder).
    pub fn from_file(path: &Path) -> Result<Self, SchedulerError> {
        let config = UniPcMultistepConfig::from_file(path)?;
        Self::with_origin(config, &config_path(path).display().to_string())
    }

    fn with_origin(config: UniPcMultistepConfig, origin: &str) -> Result<Self, SchedulerError> {
        config.check_supported(origin)?;
        Ok(Self {
            config,
            timesteps: Vec::new(),
            sigmas: Vec::new(),
            history: History::new(),
        })
    }

    /// The configuration.
    pub fn config(&self) -> &UniPcMultistepConfig {
        &self.config
    }

    /// Builds the schedule of `num_steps` steps, as diffusers' `set_timesteps` does with flow
    /// sigmas (whatever `timestep_spacing` says), and starts a new generation.
    ///
    /// In f64: sigmas `linspace(1, 1 / num_train_timesteps, num_steps + 1)` without the last,
    /// shifted by `flow_shift`, the first moved below 1 by 1e-6 when it is 1; timesteps
    /// `sigma * num_train_timesteps` truncated to integers; then the final sigma, and all
    /// sigmas rounded to f32.
    ///
    /// Errors: no steps.
    pub fn set_timesteps(&mut self, num_steps: usize) -> Result<(), SchedulerError> {
        if num_steps == 0 {
            return Err(SchedulerError::NoSteps);
        }
        let n = self.config.num_train_timesteps as f64;
        let mut sigmas: Vec<f64> = linspace(1.0, 1.0 / n, num_steps + 1)
            .into_iter()
            .take(num_steps)
            .map(|s| static_shift(self.config.flow_shift, s, Precision::F64))
            .collect();
        if (sigmas[0] - 1.0).abs() < FIRST_SIGMA_MARGIN {
            sigmas[0] -= FIRST_SIGMA_MARGIN;
        }
        // Truncation, as the reference's cast to int64.
        self.timesteps = sigmas.iter().map(|s| (s * n) as i64).collect();
        let last = match self.config.final_sigmas_type {
            FinalSigmasType::Zero => 0.0,
            FinalSigmasType::SigmaMin => sigmas[num_steps - 1],
        };
        sigmas.push(last);
        self.sigmas = sigmas.into_iter().map(|s| s as f32).collect();
        self.reset();
        Ok(())
    }

    /// The model's timestep at each step, integers as diffusers keeps them, `[num_steps]`.
    /// Empty before [`Self::set_timesteps`].
    pub fn timesteps(&self) -> &[i64] {
        &self.timesteps
    }

    /// The noise level at each step and after the last, `[num_steps + 1]`. Empty before
    /// [`Self::set_timesteps`].
    pub fn sigmas(&self) -> &[f32] {
        &self.sigmas
    }

    /// The index of the next step: how many steps this generation has taken.
    pub fn step_index(&self) -> usize {
        self.history.step_index
    }

    /// Forgets the generation in progress (its model outputs and samples): the next `step` is
    /// the first of the schedule again.
    pub fn reset(&mut self) {
        self.history = History::new();
    }

    /// One step of the generation: from the model's output at the current step
    /// ([`Self::step_index`]) and the sample there, the sample at the next sigma.
    ///
    /// The output is first turned into a data prediction `sample - sigma * model_output`;
    /// from the second step on (unless the previous step is listed in `disable_corrector`)
    /// the corrector then refines `sample`, which was predicted by the last step, with it.
    /// The predictor's order is `solver_order`, lower while too few outputs are known and, with
    /// `lower_order_final`, on the last steps. The model output is cast to the sample's dtype;
    /// the result has the sample's dtype (f32 in the pipelines, as in diffusers).
    ///
    /// Errors: no step left (or no schedule), tensors of different shapes, or a sample whose
    /// shape differs from the earlier steps'.
    pub fn step(
        &mut self,
        model_output: Tensor<B, D>,
        sample: Tensor<B, D>,
    ) -> Result<Tensor<B, D>, SchedulerError> {
        let index = self.history.step_index;
        let num_steps = self.timesteps.len();
        if index >= num_steps {
            return Err(SchedulerError::StepIndex { index, num_steps });
        }
        let shape = sample.dims();
        let output_shape = model_output.dims();
        if output_shape != shape {
            return Err(SchedulerError::ShapeMismatch {
                model_output: output_shape.to_vec(),
                sample: shape.to_vec(),
            });
        }
        if let Some(earlier) = self.history.x0_preds.back().map(Tensor::dims)
            && earlier != shape
        {
            return Err(SchedulerError::HistoryShape {
                history: earlier.to_vec(),
                sample: shape.to_vec(),
            });
        }
        let model_output = model_output.cast(sample.dtype());
        let x0_pred = sample.clone() - model_output.mul_scalar(self.sigmas[index]);

        let corrects = index > 0 && !self.config.disable_corrector.contains(&(index - 1));
        let sample = match self.history.last.take() {
            Some((last_sample, order)) if corrects => self.correct(&x0_pred, last_sample, order),
            _ => sample,
        };

        let x0_preds = &mut self.history.x0_preds;
        x0_preds.push_back(x0_pred);
        if x0_preds.len() > self.config.solver_order {
            x0_preds.pop_front();
        }
        let order = if self.config.lower_order_final {
            self.config.solver_order.min(num_steps - index)
        } else {
            self.config.solver_order
        }
        .min(x0_preds.len());

        let prev_sample = self.predict(sample.clone(), order);
        self.history.last = Some((sample, order));
        self.history.step_index += 1;
        Ok(prev_sample)
    }

    /// UniP-`order`: the sample at `sigmas[i + 1]` from `sample` at `sigmas[i]` and the last
    /// `order` data predictions (the newest at `sigmas[i]`).
    fn predict(&self, sample: Tensor<B, D>, order: usize) -> Tensor<B, D> {
        let i = self.history.step_index;
        let sigmas: Vec<f32> = (0..order).map(|k| self.sigmas[i - k]).collect();
        let coefficients =
            BhCoefficients::new(self.config.solver_type, self.sigmas[i + 1], &sigmas);
        let rhos = coefficients.predictor_rhos();
        self.update(&coefficients, sample, rhos, None)
    }

    /// UniC-`order`: refines `this_sample` at `sigmas[i]`, which the last predictor computed
    /// from `last_sample` at `sigmas[i - 1]`, with the data prediction `this_x0` at `sigmas[i]`
    /// (the stored predictions end at `sigmas[i - 1]`).
    fn correct(
        &self,
        this_x0: &Tensor<B, D>,
        last_sample: Tensor<B, D>,
        order: usize,
    ) -> Tensor<B, D> {
        let i = self.history.step_index;
        let sigmas: Vec<f32> = (0..order).map(|k| self.sigmas[i - 1 - k]).collect();
        let coefficients = BhCoefficients::new(self.config.solver_type, self.sigmas[i], &sigmas);
        let rhos = coefficients.corrector_rhos();
        self.update(&coefficients, last_sample, rhos, Some(this_x0))
    }

    /// `sample_scale * x - x0_scale * m0 - res_scale * sum_k rho_k * D_k` with `m0` the newest
    /// stored data prediction, `D_k = (m_k - m0) / r_k` for the earlier ones (newest first),
    /// and, for the corrector, a last `D = new_x0 - m0`. The terms are summed in order, as the
    /// reference's `einsum` and `+` do.
    fn update(
        &self,
        coefficients: &BhCoefficients,
        x: Tensor<B, D>,
        rhos: Vec<f32>,
        new_x0: Option<&Tensor<B, D>>,
    ) -> Tensor<B, D> {
        let mut preds = self.history.x0_preds.iter().rev();
        let m0 = preds
            .next()
            .expect("a data prediction is stored before any update");
        let differences = preds
            .zip(&coefficients.rks)
            .map(|(m, &rk)| (m.clone() - m0.clone()).div_scalar(rk))
            .chain(new_x0.map(|x0| x0.clone() - m0.clone()));
        let x_t =
            x.mul_scalar(coefficients.sample_scale) - m0.clone().mul_scalar(coefficients.x0_scale);
        let residual = rhos
            .into_iter()
            .zip(differences)
            .map(|(rho, d)| d.mul_scalar(rho))
            .reduce(|sum, term| sum + term);
        match residual {
            Some(residual) => x_t - residual.mul_scalar(coefficients.res_scale),
            None => x_t,
        }
    }
}
