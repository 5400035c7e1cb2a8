//! What a step reports: its [`StepMetrics`] (rewards, accuracy, entropies, clipping, KL, lengths,
//! timings) and the [`SampleGroup`] records of its completions.

use std::collections::{BTreeMap, HashSet};

use super::advantages::{Advantages, TokenWeights};
use super::frac;
use super::rollout::{Group, Rows};
use super::update::UpdateStats;
use crate::algo::quantile;
use crate::events::{MeanStd, SampleGroup, SampleRecord, StepMetrics, TokenStats};

/// Wall-clock parts of a step, in seconds.
pub(super) struct StepTimes {
    /// Since the run started.
    pub elapsed: f64,
    /// The whole step.
    pub step: f64,
    /// Rollout and scoring.
    pub rollout: f64,
    /// The update.
    pub update: f64,
}

/// What the metrics are computed from.
pub(super) struct StepOutcome<'a> {
    /// Steps done, this one included.
    pub step: usize,
    /// The step's groups.
    pub groups: &'a [Group],
    /// The same as rows.
    pub rows: &'a Rows<'a>,
    /// Zero-variance groups of the first rollout (before dynamic sampling).
    pub first_zero_var: usize,
    /// Groups asked for (`prompts_per_step`).
    pub prompts: usize,
    /// The rows' advantages.
    pub advantages: &'a Advantages,
    /// The rows' token weights.
    pub weights: &'a TokenWeights,
    /// What the update reported.
    pub update: UpdateStats,
    /// Learning rate used.
    pub lr: f64,
}

/// The step's metrics (`plugin_errors` are filled by the caller).
pub(super) fn step_metrics(o: StepOutcome<'_>, t: &StepTimes) -> StepMetrics {
    let (rows, groups, upd) = (o.rows, o.groups, o.update);
    let completions = &rows.completions;
    let n = rows.len();
    let lens: Vec<f32> = completions.iter().map(|c| c.tokens.len() as f32).collect();
    let mut by_component: BTreeMap<String, Vec<f32>> = BTreeMap::new();
    for e in groups.iter().flat_map(|gr| gr.components.iter().flatten()) {
        by_component
            .entry(e.name.clone())
            .or_default()
            .push(e.score);
    }
    let reward_ms = MeanStd::of(&rows.rewards);
    let passed_true = groups
        .iter()
        .flat_map(|gr| gr.verdicts.iter())
        .filter(|v| v.passed)
        .count();
    let nonzero_tokens: usize = (0..n)
        .map(|i| {
            if o.advantages.per_row[i] != 0.0 {
                o.weights.count(i)
            } else {
                0
            }
        })
        .sum();
    let all_entropies: Vec<f32> = completions
        .iter()
        .flat_map(|c| c.entropies.iter().copied())
        .collect();
    let top_cut = quantile(&all_entropies, 0.8);
    let (hi, lo): (Vec<f32>, Vec<f32>) = all_entropies
        .iter()
        .copied()
        .partition(|&h| top_cut.is_some_and(|c| h >= c));
    let top1: Vec<f32> = completions
        .iter()
        .flat_map(|c| c.top_probs.iter().copied())
        .collect();
    let distinct = groups
        .iter()
        .map(|gr| {
            gr.texts
                .iter()
                .map(|t| t.trim())
                .collect::<HashSet<_>>()
                .len() as f64
        })
        .sum::<f64>()
        / groups.len().max(1) as f64;
    let total_tokens = rows.total_tokens();
    StepMetrics {
        step: o.step,
        elapsed_s: t.elapsed,
        reward_mean: reward_ms.mean,
        reward_std: reward_ms.std,
        reward_components: by_component
            .iter()
            .map(|(k, v)| (k.clone(), MeanStd::of(v)))
            .collect(),
        plugin_errors: BTreeMap::new(),
        accuracy: frac(passed_true, n),
        observed_accuracy: frac(rows.observed.iter().filter(|p| **p).count(), n),
        entropy: MeanStd::of(&all_entropies).mean,
        entropy_top20: MeanStd::of(&hi).mean,
        entropy_rest: MeanStd::of(&lo).mean,
        top1_prob: MeanStd::of(&top1).mean,
        kl: upd.kl,
        kl_by_kind: upd.kl_by_kind,
        divergence: upd.divergence,
        value_loss: o.advantages.value_loss,
        clip_low_frac: upd.clip_low,
        clip_high_frac: upd.clip_high,
        nonzero_adv_frac: frac(nonzero_tokens, total_tokens),
        distinct_answers: distinct,
        response_len_mean: MeanStd::of(&lens).mean,
        response_len_max: completions
            .iter()
            .map(|c| c.tokens.len())
            .max()
            .unwrap_or(0),
        truncated_frac: frac(completions.iter().filter(|c| !c.finished).count(), n),
        zero_var_frac: frac(o.first_zero_var, o.prompts),
        grad_norm: upd.grad_norm,
        lr: o.lr,
        loss: upd.loss,
        step_time_s: t.step,
        rollout_s: t.rollout,
        update_s: t.update,
        tokens_per_s: total_tokens as f64 / t.step.max(1e-9),
        train_tokens_per_s: upd.train_tokens as f64 / t.update.max(1e-9),
    }
}

/// The sample records of the step: per group, each completion with its reward breakdown,
/// advantage and token statistics (`tokens`, one per row, are moved in).
pub(super) fn sample_groups(
    groups: Vec<Group>,
    per_row: &[f32],
    tokens: Vec<TokenStats>,
) -> Vec<SampleGroup> {
    let mut rows = per_row.iter().zip(tokens);
    groups
        .into_iter()
        .map(|gr| SampleGroup {
            prompt: gr.problem.prompt,
            answer: gr.problem.answer,
            samples: gr
                .texts
                .into_iter()
                .zip(gr.completions)
                .zip(gr.components)
                .zip(gr.rewards.iter().zip(&gr.verdicts))
                .map(|(((completion, c), components), (&reward, verdict))| {
                    let (&advantage, tokens) = rows.next().unwrap_or((&0.0, TokenStats::default()));
                    SampleRecord {
                        completion,
                        reward,
                        components: components.into_iter().map(|e| e.into_tuple()).collect(),
                        passed: verdict.passed,
                        advantage,
                        length: c.tokens.len(),
                        truncated: !c.finished,
                        tokens,
                    }
                })
                .collect(),
        })
        .collect()
}
