//! One generation's cache: the state of every batch row, the decisions of each policy per
//! sample (or per batch), and one trace per sample.

use std::{collections::HashMap, time::Instant};

use burn::tensor::{Tensor, backend::Backend};

use crate::{
    BatchRows, CacheError, CachePolicy, CacheScope, CacheableModel, CallTiming, DiCacheConfig,
    FirstBlockConfig, Indicator, Pass, Row, Trace, TraceEntry, UniformConfig,
    metrics::{ratio, row_mean_abs},
    window::Window,
};

/// The cache of one generation of one or more samples.
///
/// Create one per generation with [`CacheSession::new`] and send every transformer call of
/// that generation through [`CacheSession::forward`] (the call's rows are the samples in
/// order) or [`CacheSession::forward_rows`] (rows named one by one, e.g. both CFG passes in one
/// call). Each sample and CFG [`Pass`] keeps its own state; with [`CacheScope::Sample`] each
/// sample also decides for itself, so a sample gets the schedule it would get alone. The probe
/// runs on the whole batch, the deep blocks on the rows that compute. Nothing is shared
/// between sessions, so generations may run side by side.
///
/// Samples may also come and go: [`CacheSession::admit`] gives a sample its own step count,
/// [`CacheSession::forward_steps`] runs a call whose rows are at different steps, and
/// [`CacheSession::release`] ends a sample, returning its trace (what a server batching
/// requests step by step does).
pub struct CacheSession<B: Backend> {
    policy: CachePolicy,
    scope: CacheScope,
    /// The step count of a sample not admitted with its own.
    num_steps: usize,
    /// The step counts of the samples admitted with their own.
    sample_steps: HashMap<usize, usize>,
    num_blocks: usize,
    timing: CallTiming,
    rows: HashMap<Row, RowState<B>>,
    /// Accumulated error of each decision group since its last computed call.
    accumulated: HashMap<GroupKey, f64>,
    /// One trace per sample, in order of the sample's first call.
    traces: Vec<Trace>,
    /// Each sample's place in `traces`.
    trace_index: HashMap<usize, usize>,
}

/// What one decision covers: a pass and a sample, or a pass of the whole batch.
type GroupKey = (Pass, Option<usize>);

/// The cache tensors of one batch row (`[1, tokens, hidden]` each).
struct RowState<B: Backend> {
    /// Image stream entering block 0 at the last call (`x_prev`).
    prev_input: Option<Tensor<B, 3>>,
    /// Probe output at the last call (`p_prev`).
    prev_probe: Option<Tensor<B, 3>>,
    /// Full residuals `y - x` of the last two computed calls.
    residuals: Window<B>,
    /// Probe residuals `p - x` of the last two computed calls.
    probe_residuals: Window<B>,
}

impl<B: Backend> RowState<B> {
    fn new() -> Self {
        Self {
            prev_input: None,
            prev_probe: None,
            residuals: Window::new(),
            probe_residuals: Window::new(),
        }
    }

    /// Records a computed call: output `y`, input `x` and probe output `p` of this row.
    fn record(&mut self, x: Tensor<B, 3>, y: Tensor<B, 3>, p: Tensor<B, 3>) {
        self.residuals.push(y - x.clone());
        self.probe_residuals.push(p.clone() - x.clone());
        self.prev_probe = Some(p);
        self.prev_input = Some(x);
    }
}

/// The rows of one call that one decision covers, all at one step.
struct Group {
    key: GroupKey,
    /// The denoising step of its rows.
    step: usize,
    /// Row indices in the call.
    members: Vec<usize>,
}

/// What the policy made of one group.
#[derive(Debug, Clone, Copy)]
struct Decision {
    computed: bool,
    indicator: Option<f64>,
    accumulated: Option<f64>,
    gamma: Option<f64>,
    blocks_run: usize,
}

impl Decision {
    fn computed(blocks_run: usize) -> Self {
        Self {
            computed: true,
            indicator: None,
            accumulated: None,
            gamma: None,
            blocks_run,
        }
    }

    fn skipped(blocks_run: usize) -> Self {
        Self {
            computed: false,
            ..Self::computed(blocks_run)
        }
    }
}

/// How a generation caches: the policy, how far its decisions reach in a batch, and how its
/// calls are timed. A [`CachePolicy`] alone converts into settings deciding per sample with
/// queued timing.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct CacheSettings {
    /// The policy.
    pub policy: CachePolicy,
    /// One decision per sample (default) or per batch.
    pub scope: CacheScope,
    /// Whether each call waits for the backend, so the trace holds its duration.
    pub timing: CallTiming,
}

impl From<CachePolicy> for CacheSettings {
    fn from(policy: CachePolicy) -> Self {
        Self {
            policy,
            ..Self::default()
        }
    }
}

impl<B: Backend> CacheSession<B> {
    /// A session for a generation of `num_steps` denoising steps on a model of `num_blocks`
    /// blocks, caching as `settings` say (a [`CachePolicy`] alone: per sample, queued
    /// timing). Fails on bad settings.
    pub fn new(
        settings: impl Into<CacheSettings>,
        num_steps: usize,
        num_blocks: usize,
    ) -> Result<Self, CacheError> {
        let CacheSettings {
            policy,
            scope,
            timing,
        } = settings.into();
        if num_steps == 0 {
            return Err(CacheError::NoSteps);
        }
        policy.validate(num_blocks)?;
        Ok(Self {
            policy,
            scope,
            num_steps,
            sample_steps: HashMap::new(),
            num_blocks,
            timing,
            rows: HashMap::new(),
            accumulated: HashMap::new(),
            traces: Vec::new(),
            trace_index: HashMap::new(),
        })
    }

    /// Gives `sample` (a key no call has used yet) a generation of its own `num_steps` steps
    /// instead of the session's.
    pub fn admit(&mut self, sample: usize, num_steps: usize) -> Result<(), CacheError> {
        if num_steps == 0 {
            return Err(CacheError::NoSteps);
        }
        if self.sample_steps.contains_key(&sample) || self.trace_index.contains_key(&sample) {
            return Err(CacheError::SampleInUse(sample));
        }
        self.sample_steps.insert(sample, num_steps);
        Ok(())
    }

    /// Ends `sample`: drops its cache state and returns its trace (`None` when no call ran
    /// it). Its key may then be admitted again.
    pub fn release(&mut self, sample: usize) -> Option<Trace> {
        self.rows.retain(|row, _| row.sample != sample);
        self.accumulated.retain(|(_, s), _| *s != Some(sample));
        self.sample_steps.remove(&sample);
        let i = self.trace_index.remove(&sample)?;
        for place in self.trace_index.values_mut() {
            if *place > i {
                *place -= 1;
            }
        }
        Some(self.traces.remove(i))
    }

    /// The step count of `sample`.
    fn steps_of(&self, sample: usize) -> usize {
        self.sample_steps
            .get(&sample)
            .copied()
            .unwrap_or(self.num_steps)
    }

    /// The policy this session runs.
    pub fn policy(&self) -> &CachePolicy {
        &self.policy
    }

    /// How far its decisions reach.
    pub fn scope(&self) -> CacheScope {
        self.scope
    }

    /// The calls recorded so far, one trace per sample in order of each sample's first call
    /// (samples `0, 1, ...` when a call's rows are the samples in order).
    pub fn traces(&self) -> &[Trace] {
        &self.traces
    }

    /// The calls of `sample` recorded so far.
    pub fn trace(&self, sample: usize) -> Option<&Trace> {
        self.trace_index.get(&sample).map(|&i| &self.traces[i])
    }

    /// Ends the session, returning [`Self::traces`].
    pub fn into_traces(self) -> Vec<Trace> {
        self.traces
    }

    /// One transformer call of denoising step `step` in CFG pass `pass`, whose batch rows
    /// are the samples `0, 1, ...` in order.
    pub fn forward<M: CacheableModel<B>>(
        &mut self,
        model: &M,
        input: &M::Input,
        step: usize,
        pass: Pass,
    ) -> Result<M::Output, CacheError> {
        self.call(model, input, |batch| {
            Ok((Row::samples(pass, batch), vec![step; batch]))
        })
    }

    /// One transformer call of denoising step `step` whose batch row `i` is `rows[i]`.
    /// Fails when the rows do not match the batch or name one row twice.
    pub fn forward_rows<M: CacheableModel<B>>(
        &mut self,
        model: &M,
        input: &M::Input,
        step: usize,
        rows: &[Row],
    ) -> Result<M::Output, CacheError> {
        self.forward_steps(model, input, rows, &vec![step; rows.len()])
    }

    /// One transformer call whose batch row `i` is `rows[i]` at denoising step `steps[i]`:
    /// samples at different steps of their generations sharing a call. Fails when the rows
    /// do not match the batch, name one row twice, or (with [`CacheScope::Batch`]) put rows
    /// of one decision at different steps.
    pub fn forward_steps<M: CacheableModel<B>>(
        &mut self,
        model: &M,
        input: &M::Input,
        rows: &[Row],
        steps: &[usize],
    ) -> Result<M::Output, CacheError> {
        self.call(model, input, |batch| {
            let distinct = rows.iter().enumerate().all(|(i, r)| !rows[..i].contains(r));
            if rows.len() != batch || steps.len() != batch || !distinct {
                return Err(CacheError::Rows {
                    rows: rows.len().min(steps.len()),
                    batch,
                });
            }
            Ok((rows.to_vec(), steps.to_vec()))
        })
    }

    fn call<M: CacheableModel<B>>(
        &mut self,
        model: &M,
        input: &M::Input,
        rows_of: impl FnOnce(usize) -> Result<(Vec<Row>, Vec<usize>), CacheError>,
    ) -> Result<M::Output, CacheError> {
        let start = Instant::now();
        let (ctx, state) = model.embed(input);
        let x = model.image_stream(&state);
        let device = x.device();
        let (rows, steps) = rows_of(x.dims()[0])?;
        for (row, &step) in rows.iter().zip(&steps) {
            let num_steps = self.steps_of(row.sample);
            if step >= num_steps {
                return Err(CacheError::StepOutOfRange { step, num_steps });
            }
        }
        let groups = self.groups(&rows, &steps)?;
        let mut call = Call {
            model,
            ctx: &ctx,
            num_blocks: self.num_blocks,
            states: rows
                .iter()
                .map(|r| self.rows.remove(r).unwrap_or_else(RowState::new))
                .collect(),
            x,
        };
        let (image, decisions) = match &self.policy {
            CachePolicy::None => {
                let image = call.deep(state, 0, &(0..rows.len()).collect::<Vec<_>>());
                let all = Decision::computed(self.num_blocks);
                (image.expect("a batch has rows"), vec![all; groups.len()])
            }
            CachePolicy::Uniform(cfg) => call.uniform(cfg, state, &groups),
            CachePolicy::FirstBlock(cfg) => call.first_block(cfg, state, &groups),
            CachePolicy::DiCache(cfg) => {
                let mut accumulated: Vec<f64> = groups
                    .iter()
                    .map(|g| self.accumulated.get(&g.key).copied().unwrap_or(0.0))
                    .collect();
                let num_steps: Vec<usize> = groups
                    .iter()
                    .map(|g| self.steps_of(rows[g.members[0]].sample))
                    .collect();
                let out = call.dicache(cfg, state, &num_steps, &groups, &mut accumulated);
                for (g, acc) in groups.iter().zip(accumulated) {
                    self.accumulated.insert(g.key, acc);
                }
                out
            }
        };
        let output = model.head(&ctx, image);
        let heads = model.head_classes(&ctx);
        if self.timing == CallTiming::Synced {
            B::sync(&device).map_err(|e| CacheError::Backend(format!("{e:?}")))?;
        }
        // Each row's share of the call, so a batch's entries add up to its calls.
        let wall_ms = start.elapsed().as_secs_f64() * 1e3 / rows.len() as f64;
        self.rows.extend(rows.iter().copied().zip(call.states));
        for (group, d) in groups.iter().zip(decisions) {
            for &r in &group.members {
                let row = rows[r];
                self.trace_of(row.sample).steps.push(TraceEntry {
                    step: group.step,
                    pass: row.pass,
                    computed: d.computed,
                    indicator: d.indicator,
                    accumulated: d.accumulated,
                    gamma: d.gamma,
                    blocks_run: d.blocks_run,
                    wall_ms,
                    heads: heads.get(r).copied(),
                });
            }
        }
        Ok(output)
    }

    /// The call's rows (at `steps`) grouped by decision, in order of first appearance; an
    /// error when one decision would cover rows at different steps.
    fn groups(&self, rows: &[Row], steps: &[usize]) -> Result<Vec<Group>, CacheError> {
        let mut groups: Vec<Group> = Vec::new();
        for (i, (row, &step)) in rows.iter().zip(steps).enumerate() {
            let key = match self.scope {
                CacheScope::Sample => (row.pass, Some(row.sample)),
                CacheScope::Batch => (row.pass, None),
            };
            match groups.iter_mut().find(|g| g.key == key) {
                Some(g) if g.step != step => {
                    return Err(CacheError::MixedSteps {
                        first: g.step,
                        other: step,
                    });
                }
                Some(g) => g.members.push(i),
                None => groups.push(Group {
                    key,
                    step,
                    members: vec![i],
                }),
            }
        }
        Ok(groups)
    }

    /// Sample `sample`'s trace, created on first use.
    fn trace_of(&mut self, sample: usize) -> &mut Trace {
        let i = match self.trace_index.get(&sample) {
            Some(&i) => i,
            None => {
                self.traces.push(Trace {
                    policy: self.policy.clone(),
                    scope: self.scope,
                    num_steps: self.steps_of(sample),
                    num_blocks: self.num_blocks,
                    timing: self.timing,
                    steps: Vec::new(),
                });
                self.trace_index.insert(sample, self.traces.len() - 1);
                self.traces.len() - 1
            }
        };
        &mut self.traces[i]
    }
}

/// One transformer call in progress: the model, the call's context, the image stream entering
/// the blocks `x` `[rows, tokens, hidden]` and the cache state of each row.
struct Call<'a, B: Backend, M: CacheableModel<B>> {
    model: &'a M,
    ctx: &'a M::Context,
    num_blocks: usize,
    states: Vec<RowState<B>>,
    x: Tensor<B, 3>,
}

impl<B: Backend, M: CacheableModel<B>> Call<'_, B, M> {
    /// Blocks `from..num_blocks` on the rows `which` of `state` (gathered unless all rows
    /// compute), returning their image stream; `None` when no row computes.
    fn deep(&self, state: M::State, from: usize, which: &[usize]) -> Option<Tensor<B, 3>> {
        let blocks = from..self.num_blocks;
        let out = if which.is_empty() {
            return None;
        } else if which.len() == self.states.len() {
            self.model.run_blocks(self.ctx, state, blocks)
        } else {
            let ctx = self.ctx.rows(which);
            self.model.run_blocks(&ctx, state.rows(which), blocks)
        };
        Some(self.model.image_stream(&out))
    }

    /// The first `depth` blocks on every row: the state after them and its image stream.
    fn probe(&self, state: M::State, depth: usize) -> (M::State, Tensor<B, 3>) {
        let state = self.model.run_blocks(self.ctx, state, 0..depth);
        let image = self.model.image_stream(&state);
        (state, image)
    }

    /// Runs the deep blocks of the computing groups' rows, from block `from` (0, or the depth of
    /// the probe whose output is `probe`), records each such row's residual (and with a probe,
    /// its probe residual, probe output and input), and returns the image stream of the call:
    /// computed rows and the skipped groups' `approximations` (`row -> image`), in row order.
    fn finish(
        &mut self,
        state: M::State,
        (from, probe): (usize, Option<&Tensor<B, 3>>),
        groups: &[Group],
        decisions: &[Decision],
        mut approximations: HashMap<usize, Tensor<B, 3>>,
    ) -> Tensor<B, 3> {
        let mut computing: Vec<usize> = groups
            .iter()
            .zip(decisions)
            .filter(|(_, d)| d.computed)
            .flat_map(|(g, _)| g.members.iter().copied())
            .collect();
        computing.sort_unstable();
        let Some(y) = self.deep(state, from, &computing) else {
            return cat_rows((0..self.states.len()).map(|r| approximations.remove(&r)));
        };
        for (k, &r) in computing.iter().enumerate() {
            let (x_r, y_r) = (row(&self.x, r), row(&y, k));
            let st = &mut self.states[r];
            match probe {
                Some(p) => st.record(x_r, y_r, row(p, r)),
                None => st.residuals.push(y_r - x_r),
            }
        }
        if computing.len() == self.states.len() {
            return y;
        }
        let mut computed = computing.iter().enumerate();
        cat_rows((0..self.states.len()).map(|r| {
            approximations.remove(&r).or_else(|| {
                let (k, _) = computed.next().expect("a computed row");
                Some(row(&y, k))
            })
        }))
    }

    /// Whether every row of `g` has a residual to reuse.
    fn has_residuals(&self, g: &Group) -> bool {
        g.members
            .iter()
            .all(|&r| self.states[r].residuals.newer.is_some())
    }

    /// Row `r`'s input plus the residual of its last computed call.
    fn reuse_last(&self, r: usize) -> Tensor<B, 3> {
        let residual = self.states[r].residuals.newer.clone();
        row(&self.x, r) + residual.expect("a computed call precedes every skip")
    }

    /// Sums over each group's rows of `mean|num|` and `mean|den|`, for the groups where
    /// `pair(group index, row, row state)` gives both tensors of every member, read back at once (no read-back when none
    /// does).
    fn group_sums<'g>(
        &self,
        groups: impl IntoIterator<Item = &'g Group>,
        pair: impl Fn(usize, usize, &RowState<B>) -> Option<(Tensor<B, 3>, Tensor<B, 3>)>,
    ) -> Vec<Option<(f64, f64)>> {
        let pairs: Vec<Option<Vec<_>>> = groups
            .into_iter()
            .enumerate()
            .map(|(i, g)| {
                g.members
                    .iter()
                    .map(|&r| pair(i, r, &self.states[r]))
                    .collect()
            })
            .collect();
        let (nums, dens): (Vec<_>, Vec<_>) = pairs.iter().flatten().flatten().cloned().unzip();
        if nums.is_empty() {
            return vec![None; pairs.len()];
        }
        let means = row_mean_abs(vec![Tensor::cat(nums, 0), Tensor::cat(dens, 0)]);
        let mut measured = means[0].iter().zip(&means[1]);
        pairs
            .iter()
            .map(|p| {
                p.as_ref().map(|members| {
                    measured
                        .by_ref()
                        .take(members.len())
                        .fold((0.0, 0.0), |(n, d), (a, b)| (n + a, d + b))
                })
            })
            .collect()
    }

    /// Uniform caching: every `interval`-th step computed, the others reuse the last residual.
    fn uniform(
        &mut self,
        cfg: &UniformConfig,
        state: M::State,
        groups: &[Group],
    ) -> (Tensor<B, 3>, Vec<Decision>) {
        let mut approximations = HashMap::new();
        let decisions: Vec<Decision> = groups
            .iter()
            .map(|g| {
                if !g.step.is_multiple_of(cfg.interval) && self.has_residuals(g) {
                    for &r in &g.members {
                        approximations.insert(r, self.reuse_last(r));
                    }
                    Decision::skipped(0)
                } else {
                    Decision::computed(self.num_blocks)
                }
            })
            .collect();
        let image = self.finish(state, (0, None), groups, &decisions, approximations);
        (image, decisions)
    }

    /// First-Block Cache: skip while the probe residual changed less than the threshold since
    /// the last computed call, reusing that call's residual.
    fn first_block(
        &mut self,
        cfg: &FirstBlockConfig,
        state: M::State,
        groups: &[Group],
    ) -> (Tensor<B, 3>, Vec<Decision>) {
        let depth = cfg.probe_depth;
        let (state, p) = self.probe(state, depth);
        let q = p.clone() - self.x.clone();
        let changes = self.group_sums(groups, |_, r, st| {
            let q_prev = st.probe_residuals.newer.clone()?;
            Some((row(&q, r) - q_prev.clone(), q_prev))
        });
        let mut approximations = HashMap::new();
        let decisions: Vec<Decision> = groups
            .iter()
            .zip(changes)
            .map(|(g, sums)| {
                let change = sums.map(|(n, d)| ratio(n, d));
                let mut decision = match change {
                    Some(c) if c < cfg.threshold && self.has_residuals(g) => {
                        for &r in &g.members {
                            approximations.insert(r, self.reuse_last(r));
                        }
                        Decision::skipped(depth)
                    }
                    _ => Decision::computed(self.num_blocks),
                };
                decision.indicator = change;
                decision
            })
            .collect();
        let image = self.finish(state, (depth, Some(&p)), groups, &decisions, approximations);
        (image, decisions)
    }

    /// DiCache: online probe profiling decides, dynamic cache trajectory alignment
    /// approximates; `num_steps` holds each group's step count, `accumulated` its accumulated
    /// error.
    fn dicache(
        &mut self,
        cfg: &DiCacheConfig,
        state: M::State,
        num_steps: &[usize],
        groups: &[Group],
        accumulated: &mut [f64],
    ) -> (Tensor<B, 3>, Vec<Decision>) {
        let depth = cfg.probe_depth;
        let (state, p) = self.probe(state, depth);
        // Warm-up (or nothing to compare with yet) computes every block.
        let warmup: Vec<bool> = groups
            .iter()
            .zip(num_steps)
            .map(|(g, &n)| cfg.is_warmup(g.step, n))
            .collect();
        let measured = |i: usize| !warmup[i];
        let delta_y = self.group_sums(groups, |g, r, st| {
            let prev = st.prev_probe.clone().filter(|_| measured(g))?;
            Some((row(&p, r) - prev.clone(), prev))
        });
        let delta_x = match cfg.indicator {
            Indicator::DeltaY => vec![None; groups.len()],
            Indicator::DeltaMinus => self.group_sums(groups, |g, r, st| {
                let prev = st.prev_input.clone().filter(|_| measured(g))?;
                Some((row(&self.x, r) - prev.clone(), prev))
            }),
        };
        let mut decisions: Vec<Decision> = Vec::with_capacity(groups.len());
        for ((acc, dy), dx) in accumulated.iter_mut().zip(delta_y).zip(delta_x) {
            let Some(dy) = dy.map(|(n, d)| ratio(n, d)) else {
                *acc = 0.0;
                decisions.push(Decision::computed(self.num_blocks));
                continue;
            };
            let indicator = match dx {
                Some((n, d)) => (dy - ratio(n, d)).abs(),
                None => dy,
            };
            *acc += indicator;
            let mut decision = if cfg.comparison.allows_skip(*acc, cfg.threshold) {
                Decision::skipped(depth)
            } else {
                Decision::computed(self.num_blocks)
            };
            decision.indicator = Some(indicator);
            decision.accumulated = Some(*acc);
            if decision.computed {
                *acc = 0.0;
            }
            decisions.push(decision);
        }
        let approximations = self.align(cfg, groups, &mut decisions, &p);
        let image = self.finish(state, (depth, Some(&p)), groups, &decisions, approximations);
        (image, decisions)
    }

    /// Dynamic cache trajectory alignment of the skipped groups: each row's image stream after
    /// all blocks extrapolated from its cached residuals, with the group's step size gamma
    /// (recorded in its decision) when two residuals exist. Updates the skipped rows' previous
    /// input and probe. Only the skipped groups are measured (no read-back when none skips).
    fn align(
        &mut self,
        cfg: &DiCacheConfig,
        groups: &[Group],
        decisions: &mut [Decision],
        p: &Tensor<B, 3>,
    ) -> HashMap<usize, Tensor<B, 3>> {
        let mut approximations = HashMap::new();
        let skipped: Vec<usize> = (0..groups.len())
            .filter(|&i| !decisions[i].computed)
            .collect();
        if skipped.is_empty() {
            return approximations;
        }
        let q = p.clone() - self.x.clone();
        let steps = self.group_sums(skipped.iter().map(|&i| &groups[i]), |_, r, st| {
            let (q_a, q_b) = st.probe_residuals.pair()?;
            st.residuals.pair()?;
            Some((row(&q, r) - q_a.clone(), q_b.clone() - q_a.clone()))
        });
        for (&i, sums) in skipped.iter().zip(steps) {
            let gamma = sums.map(|(n, den)| clip_gamma(n, den, cfg.gamma_max));
            decisions[i].gamma = gamma;
            for &r in &groups[i].members {
                let x_r = row(&self.x, r);
                let image = match (gamma, self.states[r].residuals.pair()) {
                    (Some(gamma), Some((r_a, r_b))) => {
                        x_r.clone() + r_a.clone() + (r_b.clone() - r_a.clone()).mul_scalar(gamma)
                    }
                    _ => self.reuse_last(r),
                };
                approximations.insert(r, image);
                let st = &mut self.states[r];
                st.prev_probe = Some(row(p, r));
                st.prev_input = Some(x_r);
            }
        }
        approximations
    }
}

/// Row `r` of `t`, `[1, ...]`.
fn row<B: Backend>(t: &Tensor<B, 3>, r: usize) -> Tensor<B, 3> {
    t.clone().narrow(0, r, 1)
}

/// The rows, in order, as one batch.
fn cat_rows<B: Backend>(rows: impl Iterator<Item = Option<Tensor<B, 3>>>) -> Tensor<B, 3> {
    let rows: Vec<_> = rows
        .map(|r| r.expect("every row computed or approximated"))
        .collect();
    if rows.len() == 1 {
        rows.into_iter().next().expect("one row")
    } else {
        Tensor::cat(rows, 0)
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
