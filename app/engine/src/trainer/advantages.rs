//! The step's advantages and token weights. Advantages come from one source: the run's plugin
//! algorithm (per token, optionally with weights), PPO's critic (per-token GAE, see
//! [`super::critic`]), or the configured estimator (per sequence, [`crate::algo::advantage`]).
//! Token weights: DAPO's overlong mask (*DAPO: An Open-Source LLM Reinforcement Learning System
//! at Scale*), then the high-entropy token selection of *Beyond the 80/20 Rule: High-Entropy
//! Minority Tokens Drive Effective Reinforcement Learning for LLM Reasoning*, times a plugin's
//! weights.

use super::rollout::{Group, Rows};
use super::Trainer;
use crate::algo::advantage::GroupRewards;
use crate::algo::quantile;
use crate::config::{AlgorithmConfig, Overlong};
use crate::error::Result;
use crate::events::TokenStats;
use crate::sampling::Completion;

/// The advantages of the step's rows.
pub(super) struct Advantages {
    /// One per row (the mean of its token advantages when those exist).
    pub per_row: Vec<f32>,
    /// Per token of each row (plugin algorithm, PPO critic); `None` = `per_row` everywhere.
    pub per_token: Option<Vec<Vec<f32>>>,
    /// A plugin algorithm's token weights.
    pub plugin_weights: Option<Vec<Vec<f32>>>,
    /// The critic's loss before its update (PPO).
    pub value_loss: Option<f64>,
}

impl Advantages {
    /// The advantage of token `j` of row `i` (0 past a row's tokens).
    pub fn at(&self, i: usize, j: usize) -> f32 {
        match &self.per_token {
            Some(t) => t[i].get(j).copied().unwrap_or(0.0),
            None => self.per_row[i],
        }
    }
}

/// Mean of each row's token advantages.
fn row_means(tokens: &[Vec<f32>]) -> Vec<f32> {
    tokens
        .iter()
        .map(|a| a.iter().sum::<f32>() / a.len().max(1) as f32)
        .collect()
}

impl Trainer {
    /// Advantages of `rows` from the plugin algorithm (falling back to GRPO when it fails), the
    /// critic, or the estimator.
    pub(super) fn advantages(&mut self, groups: &[Group], rows: &Rows<'_>) -> Result<Advantages> {
        if let Some((tok, plugin_weights)) = self.plugin_advantages(groups, rows)? {
            return Ok(Advantages {
                per_row: row_means(&tok),
                per_token: Some(tok),
                plugin_weights,
                value_loss: None,
            });
        }
        if self.critic.is_some() {
            let (tok, vloss) = self.critic_advantages(rows)?;
            return Ok(Advantages {
                per_row: row_means(&tok),
                per_token: Some(tok),
                plugin_weights: None,
                value_loss: Some(vloss),
            });
        }
        let per_row = self.estimator.advantages(&GroupRewards {
            rewards: &rows.rewards,
            passed: &rows.observed,
            group: rows.group_size,
        })?;
        Ok(Advantages {
            per_row,
            per_token: None,
            plugin_weights: None,
            value_loss: None,
        })
    }
}

/// Per-token weights of the policy-gradient term.
pub(super) struct TokenWeights {
    /// Weight of each token of each row (1 = full gradient, 0 = none).
    pub weights: Vec<Vec<f32>>,
    /// Whether any weight can differ from 1 (otherwise the loss skips them).
    pub weighted: bool,
}

impl TokenWeights {
    /// The overlong mask (truncated completions get 0 with `overlong = "mask"`), then the top
    /// `top_entropy_fraction` of tokens by entropy (the rest get 0), times `plugin` weights.
    pub fn new(
        alg: &AlgorithmConfig,
        completions: &[&Completion],
        plugin: Option<&Vec<Vec<f32>>>,
    ) -> Self {
        let entropy_cut = if alg.top_entropy_fraction < 1.0 {
            let all: Vec<f32> = completions
                .iter()
                .flat_map(|c| c.entropies.iter().copied())
                .collect();
            quantile(&all, 1.0 - alg.top_entropy_fraction)
        } else {
            None
        };
        let weights: Vec<Vec<f32>> = completions
            .iter()
            .map(|c| {
                let masked = alg.overlong == Overlong::Mask && !c.finished;
                c.entropies
                    .iter()
                    .map(|&h| {
                        let selected = entropy_cut.is_none_or(|cut| h >= cut);
                        if masked || !selected {
                            0.0
                        } else {
                            1.0
                        }
                    })
                    .collect()
            })
            .collect();
        let weights = match plugin {
            Some(pw) => weights
                .iter()
                .zip(pw)
                .map(|(w, p)| w.iter().zip(p).map(|(a, b)| a * b).collect())
                .collect(),
            None => weights,
        };
        let weighted = alg.overlong == Overlong::Mask || entropy_cut.is_some() || plugin.is_some();
        Self { weights, weighted }
    }

    /// Whether row `i` has a token with a gradient.
    pub fn any(&self, i: usize) -> bool {
        self.weights[i].iter().any(|&w| w > 0.0)
    }

    /// Tokens of row `i` with a gradient.
    pub fn count(&self, i: usize) -> usize {
        self.weights[i].iter().filter(|&&w| w > 0.0).count()
    }
}

/// The per-token statistics of each row for the sample records: log-prob, entropy, and the
/// weighted advantage the token was trained with.
pub(super) fn token_stats(
    rows: &Rows<'_>,
    adv: &Advantages,
    weights: &TokenWeights,
) -> Vec<TokenStats> {
    rows.completions
        .iter()
        .enumerate()
        .map(|(i, c)| TokenStats {
            logprob: c.logprobs.clone(),
            entropy: c.entropies.clone(),
            advantage: weights.weights[i]
                .iter()
                .enumerate()
                .map(|(j, w)| adv.at(i, j) * w)
                .collect(),
        })
        .collect()
}
