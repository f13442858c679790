//! One generation's cache: per-pass state, the step logic of each policy, and the trace.

use std::time::Instant;

use burn::tensor::{Tensor, backend::Backend};

use crate::{
    CacheError, CachePolicy, CacheableModel, CallTiming, DiCacheConfig, FirstBlockConfig, Pass,
    Trace, TraceEntry, UniformConfig, mean_abs, relative_l1, window::Window,
};

/// The cache of one generation.
///
/// Create one per generation with [`CacheSession::new`] and send every transformer call of
/// that generation through [`CacheSession::forward`]; each CFG [`Pass`] keeps its own state.
/// Nothing is shared between sessions, so generations may run side by side.
pub struct CacheSession<B: Backend> {
    policy: CachePolicy,
    passes: Vec<(Pass, PassState<B>)>,
    trace: Trace,
}

/// The cache state of one CFG pass.
struct PassState<B: Backend> {
    /// Image stream entering block 0 at the last call (`x_prev`).
    prev_input: Option<Tensor<B, 3>>,
    /// Probe output at the last call (`p_prev`).
    prev_probe: Option<Tensor<B, 3>>,
    /// Accumulated error indicator since the last computed call.
    accumulated: f64,
    /// Full residuals `y - x` of the last two computed calls.
    residuals: Window<B>,
    /// Probe residuals `p - x` of the last two computed calls.
    probe_residuals: Window<B>,
}

impl<B: Backend> PassState<B> {
    fn new() -> Self {
        Self {
            prev_input: None,
            prev_probe: None,
            accumulated: 0.0,
            residuals: Window::new(),
            probe_residuals: Window::new(),
        }
    }
}

/// What the policy made of one call, before the head.
struct Outcome<B: Backend> {
    /// The image stream after the blocks, computed or approximated.
    image: Tensor<B, 3>,
    computed: bool,
    indicator: Option<f64>,
    accumulated: Option<f64>,
    gamma: Option<f64>,
    blocks_run: usize,
}

impl<B: Backend> Outcome<B> {
    fn computed(image: Tensor<B, 3>, blocks_run: usize) -> Self {
        Self {
            image,
            computed: true,
            indicator: None,
            accumulated: None,
            gamma: None,
            blocks_run,
        }
    }

    fn skipped(image: Tensor<B, 3>, blocks_run: usize) -> Self {
        Self {
            computed: false,
            ..Self::computed(image, blocks_run)
        }
    }
}

/// The probe of one call: the state after the first `depth` blocks and its image stream.
struct Probe<S, B: Backend> {
    state: S,
    image: Tensor<B, 3>,
    depth: usize,
}

impl<B: Backend> CacheSession<B> {
    /// A session for a generation of `num_steps` denoising steps on a model of `num_blocks`
    /// blocks. Fails on bad settings.
    pub fn new(
        policy: CachePolicy,
        num_steps: usize,
        num_blocks: usize,
    ) -> Result<Self, CacheError> {
        if num_steps == 0 {
            return Err(CacheError::NoSteps);
        }
        policy.validate(num_blocks)?;
        let trace = Trace {
            policy: policy.clone(),
            num_steps,
            num_blocks,
            timing: CallTiming::default(),
            steps: Vec::new(),
        };
        Ok(Self {
            policy,
            passes: Vec::new(),
            trace,
        })
    }

    /// This session timing its calls as `timing` says (default [`CallTiming::Queued`]: no
    /// wait for the backend beyond what the policy reads).
    pub fn with_timing(mut self, timing: CallTiming) -> Self {
        self.trace.timing = timing;
        self
    }

    /// The policy this session runs.
    pub fn policy(&self) -> &CachePolicy {
        &self.policy
    }

    /// The calls recorded so far.
    pub fn trace(&self) -> &Trace {
        &self.trace
    }

    /// Ends the session, returning its trace.
    pub fn into_trace(self) -> Trace {
        self.trace
    }

    /// One transformer call of denoising step `step` in CFG pass `pass`.
    pub fn forward<M: CacheableModel<B>>(
        &mut self,
        model: &M,
        input: &M::Input,
        step: usize,
        pass: Pass,
    ) -> Result<M::Output, CacheError> {
        let num_steps = self.trace.num_steps;
        if step >= num_steps {
            return Err(CacheError::StepOutOfRange { step, num_steps });
        }
        let start = Instant::now();
        let num_blocks = self.trace.num_blocks;
        let (ctx, state) = model.embed(input);
        let x = model.image_stream(&state);
        let device = x.device();
        let pass_state = match self.passes.iter().position(|(p, _)| *p == pass) {
            Some(i) => &mut self.passes[i].1,
            None => {
                self.passes.push((pass, PassState::new()));
                &mut self.passes.last_mut().expect("just pushed").1
            }
        };
        let run = Runner {
            model,
            ctx: &ctx,
            num_blocks,
        };
        let outcome = match &self.policy {
            CachePolicy::None => {
                let out = run.blocks(state, 0);
                Outcome::computed(model.image_stream(&out), num_blocks)
            }
            CachePolicy::Uniform(cfg) => uniform(cfg, &run, pass_state, state, x, step),
            CachePolicy::FirstBlock(cfg) => first_block(cfg, &run, pass_state, state, x),
            CachePolicy::DiCache(cfg) => dicache(cfg, &run, pass_state, state, x, step, num_steps),
        };
        let output = model.head(&ctx, outcome.image);
        if self.trace.timing == CallTiming::Synced {
            B::sync(&device).map_err(|e| CacheError::Backend(format!("{e:?}")))?;
        }
        self.trace.steps.push(TraceEntry {
            step,
            pass,
            computed: outcome.computed,
            indicator: outcome.indicator,
            accumulated: outcome.accumulated,
            gamma: outcome.gamma,
            blocks_run: outcome.blocks_run,
            wall_ms: start.elapsed().as_secs_f64() * 1e3,
        });
        Ok(output)
    }
}

/// Runs block ranges of one call.
struct Runner<'a, B: Backend, M: CacheableModel<B>> {
    model: &'a M,
    ctx: &'a M::Context,
    num_blocks: usize,
}

impl<B: Backend, M: CacheableModel<B>> Runner<'_, B, M> {
    /// Blocks `from..num_blocks`.
    fn blocks(&self, state: M::State, from: usize) -> M::State {
        self.model
            .run_blocks(self.ctx, state, from..self.num_blocks)
    }

    /// The first `depth` blocks.
    fn probe(&self, state: M::State, depth: usize) -> Probe<M::State, B> {
        let state = self.model.run_blocks(self.ctx, state, 0..depth);
        let image = self.model.image_stream(&state);
        Probe {
            state,
            image,
            depth,
        }
    }

    /// Resumes a probe through the remaining blocks and records the residuals of the call.
    fn resume(
        &self,
        probe: Probe<M::State, B>,
        x: Tensor<B, 3>,
        st: &mut PassState<B>,
    ) -> Tensor<B, 3> {
        let out = self.blocks(probe.state, probe.depth);
        let y = self.model.image_stream(&out);
        st.residuals.push(y.clone() - x.clone());
        st.probe_residuals.push(probe.image.clone() - x.clone());
        st.prev_probe = Some(probe.image);
        st.prev_input = Some(x);
        y
    }
}

fn uniform<B: Backend, M: CacheableModel<B>>(
    cfg: &UniformConfig,
    run: &Runner<'_, B, M>,
    st: &mut PassState<B>,
    state: M::State,
    x: Tensor<B, 3>,
    step: usize,
) -> Outcome<B> {
    match &st.residuals.newer {
        Some(r) if !step.is_multiple_of(cfg.interval) => Outcome::skipped(x + r.clone(), 0),
        _ => {
            let y = run.model.image_stream(&run.blocks(state, 0));
            st.residuals.push(y.clone() - x);
            Outcome::computed(y, run.num_blocks)
        }
    }
}

fn first_block<B: Backend, M: CacheableModel<B>>(
    cfg: &FirstBlockConfig,
    run: &Runner<'_, B, M>,
    st: &mut PassState<B>,
    state: M::State,
    x: Tensor<B, 3>,
) -> Outcome<B> {
    let probe = run.probe(state, cfg.probe_depth);
    let q = probe.image.clone() - x.clone();
    let change = st
        .probe_residuals
        .newer
        .clone()
        .map(|q_prev| relative_l1(q, q_prev));
    let mut outcome = match (&st.residuals.newer, change) {
        (Some(r), Some(c)) if c < cfg.threshold => Outcome::skipped(x + r.clone(), probe.depth),
        _ => Outcome::computed(run.resume(probe, x, st), run.num_blocks),
    };
    outcome.indicator = change;
    outcome
}

fn dicache<B: Backend, M: CacheableModel<B>>(
    cfg: &DiCacheConfig,
    run: &Runner<'_, B, M>,
    st: &mut PassState<B>,
    state: M::State,
    x: Tensor<B, 3>,
    step: usize,
    num_steps: usize,
) -> Outcome<B> {
    let probe = run.probe(state, cfg.probe_depth);
    let previous = st.prev_probe.clone().zip(st.prev_input.clone());
    let (prev_probe, prev_input) = match previous {
        Some(prev) if !cfg.is_warmup(step, num_steps) => prev,
        _ => {
            // Warm-up (or nothing to compare with yet): compute every block.
            st.accumulated = 0.0;
            return Outcome::computed(run.resume(probe, x, st), run.num_blocks);
        }
    };

    let delta_y = relative_l1(probe.image.clone(), prev_probe);
    let indicator = match cfg.indicator {
        crate::Indicator::DeltaY => delta_y,
        crate::Indicator::DeltaMinus => (delta_y - relative_l1(x.clone(), prev_input)).abs(),
    };
    st.accumulated += indicator;
    let accumulated = st.accumulated;

    let mut outcome = if cfg.comparison.allows_skip(accumulated, cfg.threshold) {
        let (image, gamma) = align(cfg, st, &probe.image, x.clone());
        st.prev_probe = Some(probe.image);
        st.prev_input = Some(x);
        let mut skipped = Outcome::skipped(image, probe.depth);
        skipped.gamma = gamma;
        skipped
    } else {
        st.accumulated = 0.0;
        Outcome::computed(run.resume(probe, x, st), run.num_blocks)
    };
    outcome.indicator = Some(indicator);
    outcome.accumulated = Some(accumulated);
    outcome
}

/// Dynamic cache trajectory alignment: approximates the image stream after all blocks from
/// the cached residuals, returning it and the step size gamma (when two residuals exist).
fn align<B: Backend>(
    cfg: &DiCacheConfig,
    st: &PassState<B>,
    probe_image: &Tensor<B, 3>,
    x: Tensor<B, 3>,
) -> (Tensor<B, 3>, Option<f64>) {
    match (st.residuals.pair(), st.probe_residuals.pair()) {
        (Some((r_a, r_b)), Some((q_a, q_b))) => {
            let q_now = probe_image.clone() - x.clone();
            let num = mean_abs(q_now - q_a.clone());
            let den = mean_abs(q_b.clone() - q_a.clone());
            let gamma = clip_gamma(num, den, cfg.gamma_max);
            let image = x + r_a.clone() + (r_b.clone() - r_a.clone()).mul_scalar(gamma);
            (image, Some(gamma))
        }
        _ => {
            let r = st
                .residuals
                .newer
                .clone()
                .expect("a computed call precedes every skip");
            (x + r, None)
        }
    }
}

/// `clip(num / den, 1, gamma_max)`; a zero denominator counts as an infinite ratio
/// (or 1 when the numerator is zero too).
fn clip_gamma(num: f64, den: f64, gamma_max: f64) -> f64 {
    let ratio = if den > 0.0 {
        num / den
    } else if num > 0.0 {
        f64::INFINITY
    } else {
        1.0
    };
    ratio.clamp(1.0, gamma_max)
}

#[cfg(test)]
mod tests {
    use super::clip_gamma;

    #[test]
    fn gamma_is_clipped_to_one_and_max() {
        assert_eq!(clip_gamma(0.5, 1.0, 1.5), 1.0);
        assert_eq!(clip_gamma(1.2, 1.0, 1.5), 1.2);
        assert_eq!(clip_gamma(3.0, 1.0, 1.5), 1.5);
        assert_eq!(clip_gamma(1.0, 0.0, 2.0), 2.0);
        assert_eq!(clip_gamma(0.0, 0.0, 2.0), 1.0);
    }
}
