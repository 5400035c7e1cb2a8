//! The named choices of the run config (the enum-valued keys). Their names are the TOML values;
//! the spec table (`rlvr_core::spec`) lists the same names as the keys' choices, and a test keeps
//! the two equal.

use serde::{Deserialize, Serialize};

/// How per-token losses are reduced to one number (the divisor is computed by the trainer).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Aggregation {
    /// Sequence-mean of token-means, divided by the number of sequences (GRPO).
    #[serde(alias = "seq_mean_token_mean")]
    Grpo,
    /// Token sum divided by the tokens of the sequences being updated.
    Bnpo,
    /// Token sum divided by sequences × max completion length (Dr. GRPO).
    DrGrpo,
    /// Token sum divided by all sampled tokens (DAPO).
    #[serde(alias = "token_mean")]
    Dapo,
}

/// Whether the importance ratio is per token or per sequence.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RatioLevel {
    /// One ratio per token (PPO, GRPO).
    Token,
    /// One ratio per sequence, the geometric mean of its token ratios (GSPO: *Group Sequence
    /// Policy Optimization*).
    Sequence,
}

/// Estimator of the reverse KL to the reference policy (Schulman's *Approximating KL
/// Divergence*); the formulas are written once, in the engine's `algo::kl_per_token`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum KlEstimator {
    /// `log π − log π_ref` (unbiased, can be negative).
    K1,
    /// `(log π_ref − log π)² / 2`.
    K2,
    /// `e^d − d − 1`, d = `log π_ref − log π` (unbiased, non-negative).
    K3,
}

impl KlEstimator {
    /// Every estimator, in the order of their names.
    pub const ALL: [Self; 3] = [Self::K1, Self::K2, Self::K3];

    /// The config name (`k1`, `k2`, `k3`), also the key in `StepMetrics::kl_by_kind`.
    pub fn name(self) -> &'static str {
        match self {
            Self::K1 => "k1",
            Self::K2 => "k2",
            Self::K3 => "k3",
        }
    }
}

/// Learning-rate schedule over the run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Schedule {
    /// Constant after warm-up.
    Constant,
    /// Linear decay to `min_lr_ratio · lr` at the last step.
    Linear,
    /// Cosine decay to `min_lr_ratio · lr` at the last step.
    Cosine,
}

/// DPH-RL divergence toward the initial policy.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Divergence {
    /// No divergence term.
    None,
    /// Forward KL(π₀ ‖ π): generator f(u) = −log u on samples of π₀.
    ForwardKl,
    /// Jensen-Shannon: generator f(u) = ½[u log u − (u + 1) log((u + 1)/2)].
    Js,
}

/// What to do with zero-variance groups.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ZeroVariance {
    /// Keep them (they add nothing to the policy gradient).
    Keep,
    /// Replace them with informative groups (DAPO dynamic sampling).
    Resample,
}

/// Treatment of truncated completions.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Overlong {
    /// Nothing special.
    None,
    /// Exclude them from the loss.
    Mask,
    /// DAPO soft overlong punishment: a length penalty growing linearly to -1 over the last
    /// `overlong_window` tokens before the limit.
    Soft,
}

/// Noisy-reward correction.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NoiseCorrection {
    /// Use the observed reward.
    None,
    /// Unbiased de-biasing of the binary reward: `(r̃ − ρ_fp) / (1 − ρ_fn − ρ_fp)`.
    Backward,
    /// Observed failures are credited with their posterior probability of being a hidden pass,
    /// from the false-negative rate and the group's observed pass rate.
    Forward,
}
