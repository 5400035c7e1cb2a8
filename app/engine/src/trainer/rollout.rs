//! Rollout: `n` prompts × G completions sampled from the frozen policy (with the run's sampler
//! hook), each group scored ([`super::scoring`]); DAPO's dynamic sampling (*DAPO: An Open-Source
//! LLM Reinforcement Learning System at Scale*), which replaces zero-variance groups; and the
//! step's groups flattened to training rows.

use candle_core::Device;
use rand::RngCore as _;

use super::components::Entries;
use super::scoring::{score_group, ScoringRules};
use super::Trainer;
use crate::batch::TrainBatch;
use crate::config::ZeroVariance;
use crate::error::Result;
use crate::sampling::{generate_parallel, row_rngs, Completion, SamplingConfig};
use crate::tasks::{Problem, Verdict};

/// The G completions of one prompt, scored.
pub(super) struct Group {
    pub problem: Problem,
    pub prompt: Vec<u32>,
    pub completions: Vec<Completion>,
    pub texts: Vec<String>,
    pub verdicts: Vec<Verdict>,
    /// Pass flags after injected noise.
    pub observed: Vec<bool>,
    /// Reward components per completion.
    pub components: Vec<Entries>,
    /// Total reward per completion.
    pub rewards: Vec<f32>,
}

impl Group {
    /// Whether the rewards differ (a zero-variance group carries no group-relative signal).
    pub fn informative(&self) -> bool {
        self.rewards.iter().any(|&r| r != self.rewards[0])
    }
}

/// The step's groups as training rows: row `i` is completion `i % G` of group `i / G`.
pub(super) struct Rows<'a> {
    /// Completions per group.
    pub group_size: usize,
    /// Prompt ids of each row.
    pub prompts: Vec<Vec<u32>>,
    /// Completion of each row.
    pub completions: Vec<&'a Completion>,
    /// Total reward of each row.
    pub rewards: Vec<f32>,
    /// Observed (possibly noisy) pass flag of each row.
    pub observed: Vec<bool>,
}

impl<'a> Rows<'a> {
    /// Flattens `groups` of `group_size` completions each.
    pub fn new(groups: &'a [Group], group_size: usize) -> Self {
        Self {
            group_size,
            prompts: groups
                .iter()
                .flat_map(|gr| std::iter::repeat_n(gr.prompt.clone(), group_size))
                .collect(),
            completions: groups.iter().flat_map(|gr| gr.completions.iter()).collect(),
            rewards: groups
                .iter()
                .flat_map(|gr| gr.rewards.iter().copied())
                .collect(),
            observed: groups
                .iter()
                .flat_map(|gr| gr.observed.iter().copied())
                .collect(),
        }
    }

    /// Number of rows.
    pub fn len(&self) -> usize {
        self.prompts.len()
    }

    /// Rows with at least one completion token (the ones a forward pass can score).
    pub fn non_empty(&self) -> Vec<usize> {
        (0..self.len())
            .filter(|&i| !self.completions[i].tokens.is_empty())
            .collect()
    }

    /// Completion tokens of all rows.
    pub fn total_tokens(&self) -> usize {
        self.completions.iter().map(|c| c.tokens.len()).sum()
    }

    /// The rows `idx` (non-empty completions) packed for a forward pass.
    pub fn train_batch(&self, idx: &[usize], pad: u32, device: &Device) -> Result<TrainBatch> {
        TrainBatch::for_rows(&self.prompts, &self.completions, idx, pad, device)
    }
}

impl Trainer {
    /// Samples `n` prompts × G completions and scores them.
    pub(super) fn rollout_groups(&mut self, n: usize) -> Result<Vec<Group>> {
        let g = self.cfg.rollout.group_size;
        let tok = self.policy.tok.clone();
        let problems: Vec<Problem> = (0..n).map(|_| self.split.next_train()).collect();
        let prompts = problems
            .iter()
            .map(|p| tok.encode_prompt(&p.prompt))
            .collect::<Result<Vec<_>>>()?;
        let rows: Vec<Vec<u32>> = prompts
            .iter()
            .flat_map(|p| std::iter::repeat_n(p.clone(), g))
            .collect();
        let view = self.policy.frozen_view()?;
        self.progress.begin(
            crate::events::Phase::Rollout,
            self.step + 1,
            rows.len() * self.max_new,
        );
        let mut rngs = row_rngs(self.rng.next_u64(), rows.len());
        let mut params = self.gen_params(SamplingConfig::from(&self.cfg.rollout));
        params.hook = self.components.sampler.clone();
        let mut completions = generate_parallel(&view, &rows, &params, &mut rngs, self.workers)?;
        let verifier = match &self.components.verifier {
            Some((name, _)) => name.clone(),
            None => self.cfg.task.name().to_string(),
        };
        let alg = &self.cfg.algorithm;
        let rules = ScoringRules {
            rewards: &self.cfg.rewards,
            overlong: alg.overlong,
            overlong_window: alg.overlong_window,
            max_new: self.max_new,
            verifier: &verifier,
        };
        let mut groups = Vec::with_capacity(n);
        // From the last group to the first (the order the noise stream has always been drawn in).
        for (problem, prompt) in problems.into_iter().zip(prompts).rev() {
            let comps: Vec<Completion> = completions.split_off(completions.len() - g);
            let texts = comps
                .iter()
                .map(|c| tok.decode(&c.tokens))
                .collect::<Result<Vec<_>>>()?;
            let items: Vec<(&Problem, &str)> =
                texts.iter().map(|t| (&problem, t.as_str())).collect();
            let (verdicts, sub_scores): (Vec<_>, Vec<_>) = self
                .components
                .verify(self.split.task(), &items, &self.components.errors)
                .into_iter()
                .unzip();
            let extra = self.components.extra(&items);
            let lengths: Vec<usize> = comps.iter().map(|c| c.tokens.len()).collect();
            let scores = score_group(
                &rules,
                &verdicts,
                &sub_scores,
                &extra,
                &lengths,
                &mut self.noise_rng,
            );
            groups.push(Group {
                problem,
                prompt,
                completions: comps,
                texts,
                verdicts,
                observed: scores.observed,
                components: scores.components,
                rewards: scores.rewards,
            });
        }
        groups.reverse();
        Ok(groups)
    }

    /// DAPO dynamic sampling (with `zero_variance = "resample"`): replaces zero-variance groups
    /// with informative ones from up to `resample_rounds` more rollouts, keeping `b` groups
    /// (zero-variance ones fill up when too few informative ones were found). Otherwise returns
    /// `groups` as they are.
    pub(super) fn fill_informative(&mut self, groups: Vec<Group>, b: usize) -> Result<Vec<Group>> {
        if self.cfg.algorithm.zero_variance != ZeroVariance::Resample {
            return Ok(groups);
        }
        let (mut keep, mut spare): (Vec<Group>, Vec<Group>) =
            groups.into_iter().partition(Group::informative);
        for _ in 0..self.cfg.algorithm.resample_rounds {
            if keep.len() >= b {
                break;
            }
            let more = self.rollout_groups(b - keep.len())?;
            for gr in more {
                if gr.informative() {
                    keep.push(gr);
                } else {
                    spare.push(gr);
                }
            }
        }
        keep.truncate(b);
        while keep.len() < b {
            match spare.pop() {
                Some(gr) => keep.push(gr),
                None => break,
            }
        }
        Ok(keep)
    }
}
