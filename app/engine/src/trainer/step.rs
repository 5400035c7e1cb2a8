//! One training step, in the order of the data flow: rollout and scoring ([`super::rollout`],
//! [`super::scoring`]), advantages and token weights ([`super::advantages`]), the ProRL
//! reference reset, the sharded update ([`super::update`]), and the step's metrics and sample
//! records ([`super::metrics`]).

use std::time::Instant;

use super::advantages::{token_stats, TokenWeights};
use super::metrics::{sample_groups, step_metrics, StepOutcome, StepTimes};
use super::rollout::Rows;
use super::update::UpdateStats;
use super::Trainer;
use crate::config::Divergence;
use crate::error::Result;
use crate::events::{SampleGroup, StepMetrics};

impl Trainer {
    /// One step: sample, score, compute advantages, update. Returns the metrics and the sampled
    /// groups (the step's plugin errors are added by [`Trainer::run`]).
    pub fn train_step(&mut self) -> Result<(StepMetrics, Vec<SampleGroup>)> {
        let t0 = Instant::now();
        if self.cfg.algorithm.divergence != Divergence::None && self.rehearsal.is_none() {
            self.build_rehearsal()?;
        }
        // Rollout: B prompts × G completions, scored; DAPO dynamic sampling when configured.
        let b = self.cfg.rollout.prompts_per_step;
        let first = self.rollout_groups(b)?;
        let first_zero_var = first.iter().filter(|gr| !gr.informative()).count();
        let groups = self.fill_informative(first, b)?;
        let rows = Rows::new(&groups, self.cfg.rollout.group_size);
        let rollout_s = t0.elapsed().as_secs_f64();

        // Advantages (plugin algorithm, PPO critic or estimator), then token weights.
        let adv = self.advantages(&groups, &rows)?;
        let weights = TokenWeights::new(
            &self.cfg.algorithm,
            &rows.completions,
            adv.plugin_weights.as_ref(),
        );
        let tokens = token_stats(&rows, &adv, &weights);
        self.reset_reference()?;

        // The sharded update of the rows that carry a gradient.
        let t1 = Instant::now();
        let plan = self.update_plan(&rows, &adv, &weights);
        let update = if plan.is_empty(self.rehearsal.is_some()) {
            UpdateStats::default()
        } else {
            self.update(&plan)?
        };
        let update_s = t1.elapsed().as_secs_f64();
        self.step += 1;

        let times = StepTimes {
            elapsed: self.elapsed(),
            step: t0.elapsed().as_secs_f64(),
            rollout: rollout_s,
            update: update_s,
        };
        let metrics = step_metrics(
            StepOutcome {
                step: self.step,
                groups: &groups,
                rows: &rows,
                first_zero_var,
                prompts: b,
                advantages: &adv,
                weights: &weights,
                update,
                lr: plan.lr,
            },
            &times,
        );
        let samples = sample_groups(groups, &adv.per_row, tokens);
        self.progress.end();
        Ok((metrics, samples))
    }

    /// ProRL (*ProRL: Prolonged Reinforcement Learning Expands Reasoning Boundaries in Large
    /// Language Models*): every `reference_reset_every` steps the KL reference becomes the
    /// current policy and the optimizer's moments are reset.
    fn reset_reference(&mut self) -> Result<()> {
        let every = self.cfg.algorithm.reference_reset_every;
        if self.reference.is_some() && every > 0 && self.step > 0 && self.step.is_multiple_of(every)
        {
            self.reference = Some(self.policy.snapshot()?);
            self.opt.reset_moments()?;
        }
        Ok(())
    }
}
