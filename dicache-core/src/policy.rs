//! The caching policies and their settings.

use serde::{Deserialize, Serialize};

use crate::CacheError;

/// Which error indicator the DiCache probe accumulates.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Indicator {
    /// `L1rel(p_t, p_prev)`: relative change of the probe output.
    DeltaY,
    /// `|L1rel(p_t, p_prev) - L1rel(x_t, x_prev)|`: probe change minus input change.
    DeltaMinus,
}

/// How the accumulated error is compared with the threshold to decide a skip.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Comparison {
    /// Skip while `accumulated < threshold` (FLUX and WAN references).
    Less,
    /// Skip while `accumulated <= threshold` (HunyuanVideo reference).
    LessOrEqual,
}

impl Comparison {
    /// Whether `accumulated` allows a skip under `threshold`.
    pub fn allows_skip(self, accumulated: f64, threshold: f64) -> bool {
        match self {
            Comparison::Less => accumulated < threshold,
            Comparison::LessOrEqual => accumulated <= threshold,
        }
    }
}

/// Which steps the warm-up covers, with `W = floor(warmup_ratio * num_steps)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Warmup {
    /// Steps `i < W` (HunyuanVideo and WAN references).
    Below,
    /// Steps `i <= W` (FLUX reference).
    UpTo,
}

/// Settings of the DiCache policy.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DiCacheConfig {
    /// Skip while the accumulated indicator stays under this (`delta`).
    pub threshold: f64,
    /// Fraction of the steps always computed at the start (`ret_ratio`).
    pub warmup_ratio: f64,
    /// Whether step `W` itself belongs to the warm-up.
    pub warmup: Warmup,
    /// Number of leading blocks that form the probe (`m`).
    pub probe_depth: usize,
    /// Upper clip of the trajectory-alignment step size (lower clip is 1).
    pub gamma_max: f64,
    /// The error indicator.
    pub indicator: Indicator,
    /// `<` or `<=` against the threshold.
    pub comparison: Comparison,
    /// Always compute the final step.
    pub force_last_step: bool,
}

impl DiCacheConfig {
    /// FLUX.1 reference settings: delta 0.4 (delta_y), ret_ratio 0.2 with `i <= W`, probe 1,
    /// gamma in [1, 1.5], `<`, last step computed.
    pub fn flux() -> Self {
        Self {
            threshold: 0.4,
            warmup_ratio: 0.2,
            warmup: Warmup::UpTo,
            probe_depth: 1,
            gamma_max: 1.5,
            indicator: Indicator::DeltaY,
            comparison: Comparison::Less,
            force_last_step: true,
        }
    }

    /// FLUX.1 reference alternative: delta_minus indicator, delta 0.08, no warm-up ratio.
    pub fn flux_delta_minus() -> Self {
        Self {
            threshold: 0.08,
            warmup_ratio: 0.0,
            indicator: Indicator::DeltaMinus,
            ..Self::flux()
        }
    }

    /// HunyuanVideo reference settings: delta 0.1, ret_ratio 0.2 with `i < W`, probe 1,
    /// gamma in [1, 1.5], `<=`.
    pub fn hunyuan_video() -> Self {
        Self {
            threshold: 0.1,
            warmup_ratio: 0.2,
            warmup: Warmup::Below,
            probe_depth: 1,
            gamma_max: 1.5,
            indicator: Indicator::DeltaY,
            comparison: Comparison::LessOrEqual,
            force_last_step: false,
        }
    }

    /// WAN 2.1 reference settings: delta 0.08, ret_ratio 0.2 with `i < W`, probe 1,
    /// gamma in [1, 2], `<`; one state per CFG pass.
    pub fn wan() -> Self {
        Self {
            threshold: 0.08,
            warmup_ratio: 0.2,
            warmup: Warmup::Below,
            probe_depth: 1,
            gamma_max: 2.0,
            indicator: Indicator::DeltaY,
            comparison: Comparison::Less,
            force_last_step: false,
        }
    }

    /// Whether step `step` of `num_steps` is always computed (warm-up or forced last step).
    pub fn is_warmup(&self, step: usize, num_steps: usize) -> bool {
        let w = (self.warmup_ratio * num_steps as f64).floor() as usize;
        let in_warmup = match self.warmup {
            Warmup::Below => step < w,
            Warmup::UpTo => step <= w,
        };
        in_warmup || (self.force_last_step && step + 1 == num_steps)
    }

    fn validate(&self) -> Result<(), CacheError> {
        check_threshold(self.threshold)?;
        if !(0.0..=1.0).contains(&self.warmup_ratio) {
            return Err(CacheError::WarmupRatio(self.warmup_ratio));
        }
        if !self.gamma_max.is_finite() || self.gamma_max < 1.0 {
            return Err(CacheError::GammaMax(self.gamma_max));
        }
        Ok(())
    }
}

/// Settings of uniform caching: compute every `interval`-th step, reuse the last residual.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UniformConfig {
    /// Steps `i` with `i % interval == 0` are computed.
    pub interval: usize,
}

/// Settings of First-Block Cache: skip the remaining blocks while the residual of the first
/// block(s) changed less than `threshold` (relative L1) since the last computed step.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FirstBlockConfig {
    /// Relative L1 change of the first-block residual under which a step is skipped.
    pub threshold: f64,
    /// Number of leading blocks whose residual is compared (1 in First-Block Cache).
    pub probe_depth: usize,
}

impl Default for FirstBlockConfig {
    /// Threshold 0.08 (ParaAttention's FLUX example), first block only.
    fn default() -> Self {
        Self {
            threshold: 0.08,
            probe_depth: 1,
        }
    }
}

/// The settings a user may give a policy chosen by name ([`CachePolicy::with_knobs`]), each
/// optional: the policy's default (DiCache: the model's preset) where absent.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct PolicyKnobs {
    /// Skip threshold (DiCache's delta, First-Block Cache's relative L1).
    pub threshold: Option<f64>,
    /// Blocks in the probe (DiCache, First-Block Cache).
    pub probe_depth: Option<usize>,
    /// Fraction of the steps always computed first (DiCache).
    pub warmup_ratio: Option<f64>,
    /// Compute every N-th step (uniform).
    pub interval: Option<usize>,
}

/// A caching policy, chosen at run time.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(tag = "name", rename_all = "snake_case")]
pub enum CachePolicy {
    /// Every block of every step is computed.
    #[default]
    None,
    /// Compute every N-th step, reuse the last residual in between.
    Uniform(UniformConfig),
    /// First-Block Cache.
    #[serde(rename = "fbcache")]
    FirstBlock(FirstBlockConfig),
    /// DiCache: online probe profiling and dynamic cache trajectory alignment.
    #[serde(rename = "dicache")]
    DiCache(DiCacheConfig),
}

impl CachePolicy {
    /// The policy's short name as the command line spells it.
    pub fn name(&self) -> &'static str {
        match self {
            CachePolicy::None => "none",
            CachePolicy::Uniform(_) => "uniform",
            CachePolicy::FirstBlock(_) => "fbcache",
            CachePolicy::DiCache(_) => "dicache",
        }
    }

    /// The policy called `name` with default settings, DiCache taking `dicache_preset`.
    pub fn from_name(name: &str, dicache_preset: DiCacheConfig) -> Result<Self, CacheError> {
        match name {
            "none" => Ok(CachePolicy::None),
            "uniform" => Ok(CachePolicy::Uniform(UniformConfig { interval: 2 })),
            "fbcache" => Ok(CachePolicy::FirstBlock(FirstBlockConfig::default())),
            "dicache" => Ok(CachePolicy::DiCache(dicache_preset)),
            other => Err(CacheError::UnknownPolicy(other.to_string())),
        }
    }

    /// The policy called `name` (as [`Self::from_name`]) with the settings `knobs` gives in
    /// place of its defaults; a knob the policy does not take is an error naming it.
    pub fn with_knobs(
        name: &str,
        knobs: &PolicyKnobs,
        dicache_preset: DiCacheConfig,
    ) -> Result<Self, CacheError> {
        let mut policy = Self::from_name(name, dicache_preset)?;
        let PolicyKnobs {
            threshold,
            probe_depth,
            warmup_ratio,
            interval,
        } = *knobs;
        let misplaced = |knob: &'static str| CacheError::Knob {
            knob,
            policy: policy.name(),
        };
        let takes = match &policy {
            CachePolicy::None => [false; 4],
            CachePolicy::Uniform(_) => [false, false, false, true],
            CachePolicy::FirstBlock(_) => [true, true, false, false],
            CachePolicy::DiCache(_) => [true, true, true, false],
        };
        let given = [
            ("threshold", threshold.is_some()),
            ("probe_depth", probe_depth.is_some()),
            ("warmup_ratio", warmup_ratio.is_some()),
            ("interval", interval.is_some()),
        ];
        if let Some(((knob, _), _)) = given.iter().zip(takes).find(|((_, g), t)| *g && !t) {
            return Err(misplaced(knob));
        }
        match &mut policy {
            CachePolicy::None => {}
            CachePolicy::Uniform(c) => c.interval = interval.unwrap_or(c.interval),
            CachePolicy::FirstBlock(c) => {
                c.threshold = threshold.unwrap_or(c.threshold);
                c.probe_depth = probe_depth.unwrap_or(c.probe_depth);
            }
            CachePolicy::DiCache(c) => {
                c.threshold = threshold.unwrap_or(c.threshold);
                c.probe_depth = probe_depth.unwrap_or(c.probe_depth);
                c.warmup_ratio = warmup_ratio.unwrap_or(c.warmup_ratio);
            }
        }
        Ok(policy)
    }

    /// The threshold the policy compares its indicator with, for the policies that have one.
    pub fn threshold(&self) -> Option<f64> {
        match self {
            CachePolicy::FirstBlock(c) => Some(c.threshold),
            CachePolicy::DiCache(c) => Some(c.threshold),
            CachePolicy::None | CachePolicy::Uniform(_) => None,
        }
    }

    /// Number of leading blocks run as a probe, for the policies that probe.
    pub fn probe_depth(&self) -> Option<usize> {
        match self {
            CachePolicy::FirstBlock(c) => Some(c.probe_depth),
            CachePolicy::DiCache(c) => Some(c.probe_depth),
            CachePolicy::None | CachePolicy::Uniform(_) => None,
        }
    }

    /// Checks the settings for a model of `num_blocks` blocks.
    pub fn validate(&self, num_blocks: usize) -> Result<(), CacheError> {
        if num_blocks == 0 {
            return Err(CacheError::NoBlocks);
        }
        match self {
            CachePolicy::None => {}
            CachePolicy::Uniform(c) => {
                if c.interval == 0 {
                    return Err(CacheError::UniformInterval);
                }
            }
            CachePolicy::FirstBlock(c) => check_threshold(c.threshold)?,
            CachePolicy::DiCache(c) => c.validate()?,
        }
        if let Some(depth) = self.probe_depth()
            && (depth == 0 || depth >= num_blocks)
        {
            return Err(CacheError::ProbeDepth {
                depth,
                blocks: num_blocks,
            });
        }
        Ok(())
    }
}

fn check_threshold(t: f64) -> Result<(), CacheError> {
    if t.is_finite() && t >= 0.0 {
        Ok(())
    } else {
        Err(CacheError::Threshold(t))
    }
}
