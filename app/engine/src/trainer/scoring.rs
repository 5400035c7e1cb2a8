//! Reward composition of one group: the verifier's verdicts, injected verifier noise and its
//! correction (*Reinforcement Learning with Verifiable yet Noisy Rewards under Imperfect
//! Verifiers*), the plugin reward components, and DAPO's soft overlong penalty (*DAPO: An
//! Open-Source LLM Reinforcement Learning System at Scale*). Pure given the noise RNG.

use rand_chacha::ChaCha8Rng;

use super::components::{Entries, RewardEntry, Scored};
use crate::config::{NoiseCorrection, Overlong, RewardConfig};
use crate::rewards;
use crate::tasks::Verdict;

/// What turns verdicts into rewards.
pub(super) struct ScoringRules<'a> {
    /// `[rewards]`: noise and correction.
    pub rewards: &'a RewardConfig,
    /// `algorithm.overlong` (only `soft` changes the reward).
    pub overlong: Overlong,
    /// `algorithm.overlong_window`.
    pub overlong_window: usize,
    /// The completion length limit.
    pub max_new: usize,
    /// Name of the verifier's entry (the plugin verifier or the task).
    pub verifier: &'a str,
}

/// The rewards of one group's completions.
pub(super) struct GroupScores {
    /// Pass flags after injected noise.
    pub observed: Vec<bool>,
    /// Reward components per completion.
    pub components: Vec<Entries>,
    /// Total reward per completion.
    pub rewards: Vec<f32>,
}

/// Scores one group: `verdicts`, the plugin verifier's `sub_scores` and the `extra` components
/// of each completion, whose token counts are `lengths`. Draws from `noise_rng` only when noise
/// is injected.
pub(super) fn score_group(
    rules: &ScoringRules<'_>,
    verdicts: &[Verdict],
    sub_scores: &[Entries],
    extra: &[Scored],
    lengths: &[usize],
    noise_rng: &mut ChaCha8Rng,
) -> GroupScores {
    let rw = rules.rewards;
    let (fn_rate, fp_rate) = rw.assumed_rates();
    let passed: Vec<bool> = verdicts.iter().map(|v| v.passed).collect();
    let noisy = rw.flip_false_negative > 0.0 || rw.flip_false_positive > 0.0;
    let observed = if noisy {
        rewards::flip(
            &passed,
            rw.flip_false_negative,
            rw.flip_false_positive,
            noise_rng,
        )
    } else {
        passed.clone()
    };
    let corrected = rewards::correct(&observed, fn_rate, fp_rate, rw.correction);
    let mut components = Vec::with_capacity(verdicts.len());
    let mut totals = Vec::with_capacity(verdicts.len());
    for (i, verdict) in verdicts.iter().enumerate() {
        // Without noise or correction the verifier's score (partial credit) is the reward;
        // otherwise the (corrected) observed pass/fail.
        let task_reward = if noisy || rw.correction != NoiseCorrection::None {
            corrected[i]
        } else {
            verdict.score
        };
        let mut reason = verdict.reason.clone();
        if observed[i] != passed[i] {
            reason = format!("{reason} [flipped by injected verifier noise]");
        }
        let mut comp = vec![RewardEntry::new(rules.verifier, task_reward, reason)];
        comp.extend(sub_scores[i].iter().cloned());
        comp.extend(extra[i].0.iter().cloned());
        let mut total = task_reward + extra[i].1;
        if rules.overlong == Overlong::Soft {
            let pen = rewards::overlong_penalty(lengths[i], rules.max_new, rules.overlong_window);
            comp.push(RewardEntry::new(
                "overlong",
                pen,
                format!("{} tokens", lengths[i]),
            ));
            total += pen;
        }
        components.push(comp);
        totals.push(total);
    }
    GroupScores {
        observed,
        components,
        rewards: totals,
    }
}

#[cfg(test)]
mod tests {
    use rand::SeedableRng as _;

    use super::*;

    fn verdict(passed: bool, score: f32) -> Verdict {
        Verdict {
            score,
            passed,
            reason: "r".into(),
        }
    }

    #[test]
    fn the_verifier_score_extra_components_and_the_soft_overlong_penalty_add_up() {
        let rw = RewardConfig::default();
        let rules = ScoringRules {
            rewards: &rw,
            overlong: Overlong::Soft,
            overlong_window: 4,
            max_new: 10,
            verifier: "task",
        };
        let verdicts = [verdict(true, 1.0), verdict(false, 0.25)];
        let sub = vec![Vec::new(), vec![RewardEntry::new("task/part", 0.5, "p")]];
        let extra = vec![
            (vec![RewardEntry::new("len", 2.0, "2 chars")], 1.0),
            (Vec::new(), 0.0),
        ];
        let mut rng = ChaCha8Rng::seed_from_u64(0);
        let s = score_group(&rules, &verdicts, &sub, &extra, &[3, 10], &mut rng);
        assert_eq!(s.observed, vec![true, false]);
        let pen = rewards::overlong_penalty(10, 10, 4);
        assert!(pen < 0.0);
        assert_eq!(s.rewards, vec![1.0 + 1.0, 0.25 + pen]);
        let names: Vec<Vec<&str>> = s
            .components
            .iter()
            .map(|c| c.iter().map(|e| e.name.as_str()).collect())
            .collect();
        assert_eq!(
            names,
            vec![
                vec!["task", "len", "overlong"],
                vec!["task", "task/part", "overlong"]
            ]
        );
        assert_eq!(s.components[1][2].reason, "10 tokens");
    }

    #[test]
    fn injected_noise_flips_and_is_noted_in_the_reason() {
        let rw = RewardConfig {
            flip_false_negative: 0.999,
            ..RewardConfig::default()
        };
        let rules = ScoringRules {
            rewards: &rw,
            overlong: Overlong::None,
            overlong_window: 4,
            max_new: 10,
            verifier: "task",
        };
        let verdicts = vec![verdict(true, 1.0); 8];
        let none = vec![Vec::new(); 8];
        let extra = vec![(Vec::new(), 0.0); 8];
        let mut rng = ChaCha8Rng::seed_from_u64(0);
        let s = score_group(&rules, &verdicts, &none, &extra, &[1; 8], &mut rng);
        let flipped = s.observed.iter().filter(|o| !**o).count();
        assert!(flipped >= 6, "{:?}", s.observed);
        for (o, c) in s.observed.iter().zip(&s.components) {
            assert_eq!(!o, c[0].reason.contains("flipped"), "{c:?}");
        }
    }
}
