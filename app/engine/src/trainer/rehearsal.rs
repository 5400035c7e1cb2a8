//! DPH-RL's rehearsal (*The Choice of Divergence: A Neglected Key to Mitigating Diversity
//! Collapse in RLVR*): a fixed set of completions of the
//! initial policy π₀ with their log-probs under it, replayed a mini-batch per step so the update
//! can penalise an f-divergence from π₀ (see [`crate::algo::rehearsal_divergence`]).

use candle_core::Tensor;

use super::Trainer;
use crate::batch::TrainBatch;
use crate::error::Result;
use crate::sampling::{generate_parallel, row_rngs, SamplingConfig};

/// DPH-RL rehearsal set: completions of the initial policy with their log-probs under it.
#[derive(serde::Serialize, serde::Deserialize)]
pub(super) struct Rehearsal {
    /// (prompt ids, completion ids, log π₀ per completion token)
    rows: Vec<(Vec<u32>, Vec<u32>, Vec<f32>)>,
    cursor: usize,
}

impl Trainer {
    /// Samples the DPH-RL rehearsal set from the current (initial) policy, on prompts of a
    /// separate train stream so the training data are unchanged.
    pub(super) fn build_rehearsal(&mut self) -> Result<()> {
        let alg = &self.cfg.algorithm;
        let mut split = crate::tasks::TaskSplit::new(
            crate::tasks::build(&self.cfg.task)?,
            self.cfg.seed ^ 0x0dd5_e110,
            0,
        )?;
        let tok = self.policy.tok.clone();
        let prompts = (0..alg.rehearsal_size)
            .map(|_| tok.encode_prompt(&split.next_train().prompt))
            .collect::<Result<Vec<_>>>()?;
        let view = self.policy.frozen_view()?;
        let mut rngs = row_rngs(self.cfg.seed ^ 0x0dd5_e111, prompts.len());
        let params = self.gen_params(SamplingConfig::from(&self.cfg.rollout));
        let outs = generate_parallel(&view, &prompts, &params, &mut rngs, self.workers)?;
        let rows = prompts
            .into_iter()
            .zip(outs)
            .filter(|(_, c)| !c.tokens.is_empty())
            .map(|(p, c)| (p, c.tokens, c.logprobs))
            .collect();
        self.rehearsal = Some(Rehearsal { rows, cursor: 0 });
        Ok(())
    }

    /// The next rehearsal mini-batch: packed rows and log π₀ `[rows, len]`.
    pub(super) fn rehearsal_batch(&mut self) -> Result<Option<(TrainBatch, Tensor)>> {
        let n = self.cfg.algorithm.rehearsal_batch;
        let device = self.policy.device().clone();
        let pad = self.policy.tok.pad;
        let Some(r) = self.rehearsal.as_mut() else {
            return Ok(None);
        };
        if r.rows.is_empty() {
            return Ok(None);
        }
        let picked: Vec<&(Vec<u32>, Vec<u32>, Vec<f32>)> = (0..n)
            .map(|j| &r.rows[(r.cursor + j) % r.rows.len()])
            .collect();
        r.cursor = (r.cursor + n) % r.rows.len();
        let prompts: Vec<&[u32]> = picked.iter().map(|x| x.0.as_slice()).collect();
        let comps: Vec<&[u32]> = picked.iter().map(|x| x.1.as_slice()).collect();
        let batch = TrainBatch::new(&prompts, &comps, pad, &device)?;
        let l = batch.l;
        let lp0: Vec<f32> = picked
            .iter()
            .flat_map(|x| (0..l).map(move |j| x.2.get(j).copied().unwrap_or(0.0)))
            .collect();
        let lp0 = Tensor::from_vec(lp0, (picked.len(), l), &device)?;
        Ok(Some((batch, lp0)))
    }
}
