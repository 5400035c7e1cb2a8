//! A plugin algorithm ([`TokenAlgorithm`](crate::extensions::TokenAlgorithm)) in the step: the
//! batch table it sees, reference log-probs for it, and its output checked and split back into
//! rows. A failing call is counted and the step falls back to GRPO advantages.

use super::rollout::{Group, Rows};
use super::Trainer;
use crate::error::Result;
use crate::extensions::{AlgoBatch, AlgoOutput};
use crate::model::Transformer;

/// Per-token advantages and optional weights of each row.
pub(super) type SplitOutput = (Vec<Vec<f32>>, Option<Vec<Vec<f32>>>);

impl Trainer {
    /// The run's plugin algorithm on this step's rows: `None` without one, or when it failed
    /// (the error is recorded against the step).
    pub(super) fn plugin_advantages(
        &self,
        groups: &[Group],
        rows: &Rows<'_>,
    ) -> Result<Option<SplitOutput>> {
        let Some((name, alg)) = &self.components.algorithm else {
            return Ok(None);
        };
        let mut batch = algo_batch(groups, rows);
        if let Some(r) = &self.reference {
            batch.ref_logprobs = self.reference_logprobs(r, rows)?;
        }
        let out = alg.compute(&batch).and_then(|o| split_output(o, &batch));
        if let Err(e) = &out {
            self.components
                .errors
                .record(name, &format!("{e} (this step used GRPO advantages)"));
        }
        Ok(out.ok())
    }

    /// Log-probs of every completion token under the reference policy, rows concatenated (the
    /// `ref_logprobs` of a plugin algorithm's batch).
    fn reference_logprobs(&self, reference: &Transformer, rows: &Rows<'_>) -> Result<Vec<f32>> {
        let idx = rows.non_empty();
        if idx.is_empty() {
            return Ok(Vec::new());
        }
        let batch = rows.train_batch(&idx, self.policy.tok.pad, self.policy.device())?;
        let lp = batch.logprobs(reference)?.1.to_vec2::<f32>()?;
        let mut out = Vec::new();
        for (row, &i) in lp.iter().zip(&idx) {
            out.extend_from_slice(&row[..rows.completions[i].tokens.len()]);
        }
        Ok(out)
    }
}

/// The batch table a plugin algorithm sees.
fn algo_batch(groups: &[Group], batch: &Rows<'_>) -> AlgoBatch {
    let g = batch.group_size;
    let completions = &batch.completions;
    let mut names: Vec<String> = Vec::new();
    for gr in groups {
        for comp in gr.components.iter().flatten() {
            if !names.contains(&comp.name) {
                names.push(comp.name.clone());
            }
        }
    }
    let rows = completions.len();
    let mut values = vec![0f64; names.len() * rows];
    let mut r = 0;
    for gr in groups {
        for comps in &gr.components {
            for e in comps {
                if let Some(c) = names.iter().position(|n| *n == e.name) {
                    values[c * rows + r] = f64::from(e.score);
                }
            }
            r += 1;
        }
    }
    let mut offsets = Vec::with_capacity(rows + 1);
    offsets.push(0u32);
    let mut total = 0u32;
    for c in completions {
        total += c.tokens.len() as u32;
        offsets.push(total);
    }
    AlgoBatch {
        group_size: g,
        group_ids: (0..rows).map(|i| (i / g.max(1)) as u32).collect(),
        rewards: batch.rewards.iter().map(|&x| f64::from(x)).collect(),
        passed: batch.observed.clone(),
        component_names: names,
        component_values: values,
        token_offsets: offsets,
        old_logprobs: completions
            .iter()
            .flat_map(|c| c.logprobs.iter().copied())
            .collect(),
        ref_logprobs: Vec::new(),
        entropies: completions
            .iter()
            .flat_map(|c| c.entropies.iter().copied())
            .collect(),
        mask: vec![1; total as usize],
    }
}

/// Per-token advantages (and weights) split back into rows, after checking the lengths and
/// that every number is finite.
fn split_output(out: AlgoOutput, batch: &AlgoBatch) -> std::result::Result<SplitOutput, String> {
    let n = batch.old_logprobs.len();
    if out.advantages.len() != n {
        return Err(format!(
            "returned {} advantages for {n} tokens",
            out.advantages.len()
        ));
    }
    if !out.weights.is_empty() && out.weights.len() != n {
        return Err(format!(
            "returned {} weights for {n} tokens",
            out.weights.len()
        ));
    }
    if let Some(x) = out
        .advantages
        .iter()
        .chain(&out.weights)
        .find(|x| !x.is_finite())
    {
        return Err(format!("returned a non-finite value ({x})"));
    }
    let rows = |v: &[f32]| -> Vec<Vec<f32>> {
        batch
            .token_offsets
            .windows(2)
            .map(|w| v[w[0] as usize..w[1] as usize].to_vec())
            .collect()
    };
    let weights = (!out.weights.is_empty()).then(|| rows(&out.weights));
    Ok((rows(&out.advantages), weights))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn batch(lengths: &[u32]) -> AlgoBatch {
        let mut offsets = vec![0u32];
        for l in lengths {
            offsets.push(offsets[offsets.len() - 1] + l);
        }
        let n = offsets[offsets.len() - 1] as usize;
        AlgoBatch {
            group_size: lengths.len(),
            group_ids: vec![0; lengths.len()],
            rewards: vec![0.0; lengths.len()],
            passed: vec![false; lengths.len()],
            component_names: Vec::new(),
            component_values: Vec::new(),
            token_offsets: offsets,
            old_logprobs: vec![0.0; n],
            ref_logprobs: Vec::new(),
            entropies: vec![0.0; n],
            mask: vec![1; n],
        }
    }

    #[test]
    fn plugin_output_is_split_into_rows_and_checked() {
        let b = batch(&[2, 0, 1]);
        let (adv, w) = split_output(
            AlgoOutput {
                advantages: vec![1.0, 2.0, 3.0],
                weights: vec![],
            },
            &b,
        )
        .unwrap();
        assert_eq!(adv, vec![vec![1.0, 2.0], vec![], vec![3.0]]);
        assert!(w.is_none());
        let (_, w) = split_output(
            AlgoOutput {
                advantages: vec![0.0; 3],
                weights: vec![0.5, 1.0, 0.0],
            },
            &b,
        )
        .unwrap();
        assert_eq!(w.unwrap(), vec![vec![0.5, 1.0], vec![], vec![0.0]]);
        let bad = |advantages: Vec<f32>, weights: Vec<f32>| {
            split_output(
                AlgoOutput {
                    advantages,
                    weights,
                },
                &b,
            )
            .unwrap_err()
        };
        assert_eq!(
            bad(vec![0.0; 2], vec![]),
            "returned 2 advantages for 3 tokens"
        );
        assert_eq!(
            bad(vec![0.0; 3], vec![1.0]),
            "returned 1 weights for 3 tokens"
        );
        assert!(bad(vec![0.0, f32::NAN, 0.0], vec![]).contains("non-finite"));
        assert!(bad(vec![0.0; 3], vec![1.0, f32::INFINITY, 1.0]).contains("non-finite"));
    }
}
