//! Advantage estimators: from the rewards of groups of completions (consecutive runs of `group`
//! rows, one group per prompt) to one advantage per completion. Each estimator is one struct and
//! one entry in [`ESTIMATORS`]; the config picks it by name and its parameters are checked
//! against its [`ParamSpec`]s.

use super::params::Params;
use crate::error::{EngineError, Result};

/// The rewards of a batch, grouped by prompt.
#[derive(Clone, Copy, Debug)]
pub struct GroupRewards<'a> {
    /// Total reward per completion.
    pub rewards: &'a [f32],
    /// Verifier pass/fail per completion (binary estimators use it).
    pub passed: &'a [bool],
    /// Completions per prompt.
    pub group: usize,
}

impl GroupRewards<'_> {
    fn check(&self) -> Result<()> {
        if self.group == 0 || !self.rewards.len().is_multiple_of(self.group) {
            return Err(EngineError::Internal(format!(
                "{} rewards do not form groups of {}",
                self.rewards.len(),
                self.group
            )));
        }
        if self.passed.len() != self.rewards.len() {
            return Err(EngineError::Internal(
                "rewards and pass flags differ in length".into(),
            ));
        }
        if let Some((i, r)) = self
            .rewards
            .iter()
            .enumerate()
            .find(|(_, r)| !r.is_finite())
        {
            return Err(EngineError::NonFinite(format!(
                "reward of completion {i} is {r}"
            )));
        }
        Ok(())
    }

    fn groups(&self) -> impl Iterator<Item = (&[f32], &[bool])> {
        self.rewards
            .chunks_exact(self.group)
            .zip(self.passed.chunks_exact(self.group))
    }
}

/// From group rewards to per-completion advantages.
pub trait AdvantageEstimator: Send + Sync {
    /// One advantage per completion.
    fn advantages(&self, b: &GroupRewards<'_>) -> Result<Vec<f32>>;

    /// Estimators that need a learned value function (PPO) return its settings; the trainer then
    /// computes per-token advantages with [`gae`] instead of calling `advantages`.
    fn critic(&self) -> Option<CriticParams> {
        None
    }
}

/// Settings of PPO's critic and of GAE.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct CriticParams {
    /// Discount γ.
    pub gamma: f32,
    /// GAE λ.
    pub lambda: f32,
    /// Learning rate of the value head.
    pub value_lr: f64,
}

/// Generalised advantage estimation (*High-Dimensional Continuous Control Using Generalized
/// Advantage Estimation*) for one completion whose only reward arrives with its last token:
/// `δ_t = r_t + γ V_{t+1} − V_t` (V after the last token is 0), `A_t = Σ_l (γλ)^l δ_{t+l}`;
/// returns `(advantages, returns = A + V)`.
pub fn gae(values: &[f32], reward: f32, gamma: f32, lambda: f32) -> (Vec<f32>, Vec<f32>) {
    let n = values.len();
    let mut adv = vec![0f32; n];
    let mut next_adv = 0f32;
    for t in (0..n).rev() {
        let r = if t + 1 == n { reward } else { 0.0 };
        let next_v = values.get(t + 1).copied().unwrap_or(0.0);
        let delta = r + gamma * next_v - values[t];
        next_adv = delta + gamma * lambda * next_adv;
        adv[t] = next_adv;
    }
    let returns = adv.iter().zip(values).map(|(a, v)| a + v).collect();
    (adv, returns)
}

/// PPO: advantages from a learned value function (see [`CriticParams`]).
pub struct Ppo {
    /// Critic settings.
    pub critic: CriticParams,
}

impl AdvantageEstimator for Ppo {
    fn advantages(&self, _b: &GroupRewards<'_>) -> Result<Vec<f32>> {
        Err(EngineError::Internal(
            "PPO advantages need the critic: use gae()".into(),
        ))
    }

    fn critic(&self) -> Option<CriticParams> {
        Some(self.critic)
    }
}

pub use rlvr_core::config::estimators::{find, EstimatorSpec, ESTIMATORS};

/// Builds a built-in estimator ([`ESTIMATORS`]: names, summaries and parameter specs) from its
/// checked parameters.
pub fn build(spec: &EstimatorSpec, p: &Params) -> Result<Box<dyn AdvantageEstimator>> {
    Ok(match spec.name {
        "grpo" => Box::new(Grpo {
            scale: p.b("scale"),
            eps: p.f("eps") as f32,
        }),
        "dr_grpo" => Box::new(Grpo {
            scale: false,
            eps: 0.0,
        }),
        "rloo" => Box::new(Rloo),
        "reinforce_pp" => Box::new(ReinforcePp {
            group_baseline: p.b("group_baseline"),
            eps: p.f("eps") as f32,
        }),
        "passk" => Box::new(PassK { k: p.u("k") }),
        "qae" => Box::new(Quantile {
            k: p.f("quantile"),
            scale: p.b("scale"),
        }),
        "ppo" => Box::new(Ppo {
            critic: CriticParams {
                gamma: p.f("gamma") as f32,
                lambda: p.f("lambda") as f32,
                value_lr: p.f("value_lr"),
            },
        }),
        "w_reinforce" => Box::new(WeightedReinforce {
            pos: p.f("positive_weight") as f32,
            neg: p.f("negative_weight") as f32,
        }),
        other => {
            return Err(EngineError::Internal(format!(
                "the estimator table names {other:?}, which the engine does not implement"
            )))
        }
    })
}

fn mean(g: &[f32]) -> f32 {
    g.iter().sum::<f32>() / g.len().max(1) as f32
}

/// Sample standard deviation (Bessel's correction, as `torch.std`), 0 for one sample.
fn std(g: &[f32], mean: f32) -> f32 {
    if g.len() < 2 {
        return 0.0;
    }
    (g.iter().map(|r| (r - mean).powi(2)).sum::<f32>() / (g.len() - 1) as f32).sqrt()
}

/// GRPO: `(r - mean) / (std + eps)`; Dr.GRPO when `scale` is false. A group whose rewards are all
/// equal gets zero advantages.
pub struct Grpo {
    /// Divide by the std.
    pub scale: bool,
    /// Added to the std.
    pub eps: f32,
}

impl AdvantageEstimator for Grpo {
    fn advantages(&self, b: &GroupRewards<'_>) -> Result<Vec<f32>> {
        b.check()?;
        let mut out = Vec::with_capacity(b.rewards.len());
        for (g, _) in b.groups() {
            let m = mean(g);
            let s = std(g, m);
            for r in g {
                out.push(if s == 0.0 {
                    0.0
                } else if self.scale {
                    (r - m) / (s + self.eps)
                } else {
                    r - m
                });
            }
        }
        Ok(out)
    }
}

/// RLOO: `r_i - mean_{j≠i} r_j` = `G/(G-1) · (r_i - mean)`.
pub struct Rloo;

impl AdvantageEstimator for Rloo {
    fn advantages(&self, b: &GroupRewards<'_>) -> Result<Vec<f32>> {
        b.check()?;
        let mut out = Vec::with_capacity(b.rewards.len());
        for (g, _) in b.groups() {
            let n = g.len();
            let total: f32 = g.iter().sum();
            for r in g {
                out.push(if n < 2 {
                    0.0
                } else {
                    r - (total - r) / (n - 1) as f32
                });
            }
        }
        Ok(out)
    }
}

/// REINFORCE++: rewards (minus the group mean, in the `-baseline` variant) divided by the std of
/// the whole batch.
pub struct ReinforcePp {
    /// Subtract the group mean first.
    pub group_baseline: bool,
    /// Added to the batch std.
    pub eps: f32,
}

impl AdvantageEstimator for ReinforcePp {
    fn advantages(&self, b: &GroupRewards<'_>) -> Result<Vec<f32>> {
        b.check()?;
        let centred: Vec<f32> = if self.group_baseline {
            b.groups()
                .flat_map(|(g, _)| {
                    let m = mean(g);
                    g.iter().map(move |r| r - m)
                })
                .collect()
        } else {
            let m = mean(b.rewards);
            b.rewards.iter().map(|r| r - m).collect()
        };
        let m = mean(&centred);
        let s = std(&centred, m);
        if s == 0.0 {
            return Ok(vec![0.0; centred.len()]);
        }
        Ok(centred.iter().map(|a| (a - m) / (s + self.eps)).collect())
    }
}

/// Binomial coefficient as f64.
fn choose(n: usize, k: usize) -> f64 {
    if k > n {
        return 0.0;
    }
    let k = k.min(n - k);
    (0..k).fold(1.0, |acc, i| acc * (n - i) as f64 / (i + 1) as f64)
}

/// Pass@k training's analytical advantage, for binary rewards (pass/fail). With N samples of
/// which `neg` failed, the group's pass@k reward is `R = 1 - C(neg, k) / C(N, k)`, its std
/// `σ = sqrt(R (1 - R))`, and
/// `A_pos = (1 - R) / σ`, `A_neg = (1 - R - C(neg - 1, k - 1) / C(N - 1, k - 1)) / σ`.
pub struct PassK {
    /// k (clamped to the group size).
    pub k: usize,
}

impl AdvantageEstimator for PassK {
    fn advantages(&self, b: &GroupRewards<'_>) -> Result<Vec<f32>> {
        b.check()?;
        let mut out = Vec::with_capacity(b.rewards.len());
        for (_, passed) in b.groups() {
            let n = passed.len();
            let k = self.k.clamp(1, n);
            let neg = passed.iter().filter(|p| !**p).count();
            let r = 1.0 - choose(neg, k) / choose(n, k);
            let sigma = (r * (1.0 - r)).sqrt();
            for &p in passed {
                out.push(if sigma == 0.0 {
                    0.0
                } else if p {
                    ((1.0 - r) / sigma) as f32
                } else {
                    let miss = if neg == 0 {
                        0.0
                    } else {
                        choose(neg - 1, k - 1) / choose(n - 1, k - 1)
                    };
                    ((1.0 - r - miss) / sigma) as f32
                });
            }
        }
        Ok(out)
    }
}

/// QAE: the baseline is the group's K-quantile reward (the smallest reward whose empirical CDF
/// reaches K). With binary rewards and success rate p, hard prompts (p ≤ 1-K) reinforce only
/// the successes and easy ones (p > 1-K) penalise only the failures.
pub struct Quantile {
    /// K.
    pub k: f64,
    /// Divide by the group std.
    pub scale: bool,
}

impl AdvantageEstimator for Quantile {
    fn advantages(&self, b: &GroupRewards<'_>) -> Result<Vec<f32>> {
        b.check()?;
        let mut out = Vec::with_capacity(b.rewards.len());
        for (g, _) in b.groups() {
            let Some(q) = super::quantile(g, self.k) else {
                continue;
            };
            let s = std(g, mean(g));
            for r in g {
                out.push(if s == 0.0 {
                    0.0
                } else if self.scale {
                    (r - q) / (s + 1e-4)
                } else {
                    r - q
                });
            }
        }
        Ok(out)
    }
}

/// W-REINFORCE: `+w_pos` for passed and `-w_neg` for failed completions, no baseline.
/// `w_neg = 0` is PSR (positive samples only), `w_pos = 0` is NSR.
pub struct WeightedReinforce {
    /// Weight of passed samples.
    pub pos: f32,
    /// Weight of failed samples.
    pub neg: f32,
}

impl AdvantageEstimator for WeightedReinforce {
    fn advantages(&self, b: &GroupRewards<'_>) -> Result<Vec<f32>> {
        b.check()?;
        Ok(b.passed
            .iter()
            .map(|&p| if p { self.pos } else { -self.neg })
            .collect())
    }
}

#[cfg(test)]
mod tests;
