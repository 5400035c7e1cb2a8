//! Advantage estimation, the clipped policy-gradient loss and the pass@k estimator.
//!
//! GRPO as introduced in *DeepSeekMath: Pushing the Limits of Mathematical Reasoning in Open
//! Language Models* (Shao et al., 2024): for a group of G completions of one prompt with rewards
//! r₁..r_G, every token of completion i gets the advantage
//!
//! ```text
//! Âᵢ = (rᵢ − mean(r)) / (std(r) + ε)          (std with Bessel's correction, as TRL does)
//! ```
//!
//! and the policy minimises the PPO-clip token loss (*Proximal Policy Optimization Algorithms*,
//! Schulman et al., 2017) with separate lower and upper clip ranges (DAPO's "clip-higher", *DAPO:
//! An Open-Source LLM Reinforcement Learning System at Scale*):
//!
//! ```text
//! ρ = exp(log π(o_t) − log π_old(o_t))
//! ℓ_t = −min(ρ Â, clip(ρ, 1 − ε_low, 1 + ε_high) Â) + β · KL_t
//! KL_t = exp(log π_ref − log π) − (log π_ref − log π) − 1        (Schulman's k3 estimator)
//! ```

pub mod advantage;
pub mod params;

use candle_core::Tensor;
use serde::{Deserialize, Serialize};

use crate::error::{EngineError, Result};

/// Group-normalised (GRPO) advantages for `rewards` laid out as consecutive groups of `group`.
/// With `scale` false the advantage is only mean-centred. A group whose rewards are all equal gets
/// zero advantages. NaN or infinite rewards are an error.
pub fn grpo_advantages(rewards: &[f32], group: usize, scale: bool) -> Result<Vec<f32>> {
    if group == 0 || !rewards.len().is_multiple_of(group) {
        return Err(EngineError::NonFinite(format!(
            "{} rewards do not form groups of {group}",
            rewards.len()
        )));
    }
    if let Some(bad) = rewards.iter().find(|r| !r.is_finite()) {
        return Err(EngineError::NonFinite(format!(
            "reward {bad} is not finite"
        )));
    }
    let mut out = Vec::with_capacity(rewards.len());
    for g in rewards.chunks_exact(group) {
        let n = g.len() as f32;
        let mean = g.iter().sum::<f32>() / n;
        let var = if g.len() > 1 {
            g.iter().map(|r| (r - mean).powi(2)).sum::<f32>() / (n - 1.0)
        } else {
            0.0
        };
        let std = var.sqrt();
        for r in g {
            let centred = r - mean;
            out.push(if std == 0.0 {
                0.0
            } else if scale {
                centred / (std + 1e-4)
            } else {
                centred
            });
        }
    }
    Ok(out)
}

/// How per-token losses are reduced to one number.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Aggregation {
    /// GRPO: mean over each sequence's tokens, then mean over sequences.
    SeqMeanTokenMean,
    /// DAPO: mean over all tokens of the batch (long completions weigh more).
    TokenMean,
}

/// Inputs of the policy loss, all `[rows, len]` except `advantages: [rows]`.
pub struct LossInputs<'a> {
    /// Current log-probs (differentiable).
    pub logp: &'a Tensor,
    /// Log-probs under the policy that sampled the data (constant).
    pub old_logp: &'a Tensor,
    /// Log-probs under the frozen reference policy, when a KL penalty is used.
    pub ref_logp: Option<&'a Tensor>,
    /// Per-sequence advantages.
    pub advantages: &'a Tensor,
    /// 1 for completion tokens that count, 0 for padding.
    pub mask: &'a Tensor,
    /// Divisor standing for the whole batch: the number of sequences (`SeqMeanTokenMean`) or of
    /// tokens (`TokenMean`). Rows with zero advantage and no KL term contribute exactly zero and
    /// may be left out of `rows`, as long as this divisor still counts them.
    pub normaliser: f64,
}

/// Clip ranges and penalty weights.
#[derive(Clone, Copy, Debug)]
pub struct LossParams {
    /// Lower clip range ε_low.
    pub epsilon_low: f64,
    /// Upper clip range ε_high.
    pub epsilon_high: f64,
    /// KL coefficient β.
    pub kl_coef: f64,
    /// Token reduction.
    pub aggregation: Aggregation,
}

/// The loss and the per-token quantities for metrics.
pub struct LossOutput {
    /// Scalar loss to differentiate.
    pub loss: Tensor,
    /// Per-token k3 KL (no gradient), when a reference was given.
    pub kl: Option<Tensor>,
    /// Per-token ratio ρ (no gradient).
    pub ratio: Tensor,
}

/// The clipped policy-gradient loss with optional k3 KL penalty.
pub fn policy_loss(x: &LossInputs<'_>, p: &LossParams) -> Result<LossOutput> {
    let ratio = (x.logp - x.old_logp)?.exp()?;
    let adv = x.advantages.unsqueeze(1)?;
    let unclipped = ratio.broadcast_mul(&adv)?;
    let clipped = ratio
        .clamp(1.0 - p.epsilon_low, 1.0 + p.epsilon_high)?
        .broadcast_mul(&adv)?;
    let mut per_token = unclipped.minimum(&clipped)?.neg()?;
    let mut kl_out = None;
    if let Some(r) = x.ref_logp {
        let d = (r - x.logp)?;
        let kl = ((d.exp()? - &d)? - 1.0)?;
        if p.kl_coef != 0.0 {
            per_token = (per_token + (&kl * p.kl_coef)?)?;
        }
        kl_out = Some(kl.detach());
    }
    let masked = (per_token * x.mask)?;
    let loss = match p.aggregation {
        Aggregation::SeqMeanTokenMean => {
            let lens = x.mask.sum(1)?.clamp(1.0, f64::INFINITY)?;
            (masked.sum(1)? / lens)?.sum_all()?
        }
        Aggregation::TokenMean => masked.sum_all()?,
    };
    let loss = (loss / x.normaliser.max(1.0))?;
    Ok(LossOutput {
        loss,
        kl: kl_out,
        ratio: ratio.detach(),
    })
}

/// Unbiased pass@k estimator of *Evaluating Large Language Models Trained on Code* (Chen et al.,
/// 2021): with n samples of which c are correct, `1 − C(n−c, k) / C(n, k)`, computed as a stable
/// product. Returns `None` when `k > n` or `k == 0`.
pub fn pass_at_k(n: usize, c: usize, k: usize) -> Option<f64> {
    if k == 0 || k > n || c > n {
        return None;
    }
    if n - c < k {
        return Some(1.0);
    }
    let mut prod = 1.0f64;
    for i in (n - c + 1)..=n {
        prod *= 1.0 - k as f64 / i as f64;
    }
    Some(1.0 - prod)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use candle_core::{Device, Var};

    fn t2(v: &[&[f32]]) -> Tensor {
        Tensor::new(
            v.iter().map(|r| r.to_vec()).collect::<Vec<_>>(),
            &Device::Cpu,
        )
        .unwrap()
    }

    #[test]
    fn grpo_advantages_by_hand() {
        // group 1: rewards 1,0,0,1 -> mean .5, sample std sqrt(1/3)=0.57735
        let a = grpo_advantages(&[1.0, 0.0, 0.0, 1.0, 0.3, 0.3, 0.3, 0.3], 4, true).unwrap();
        let s = 0.5 / (0.577_350_3 + 1e-4);
        for (x, y) in a.iter().zip([s, -s, -s, s, 0.0, 0.0, 0.0, 0.0]) {
            assert!((x - y).abs() < 1e-5, "{x} vs {y}");
        }
        let c = grpo_advantages(&[1.0, 0.0], 2, false).unwrap();
        assert_eq!(c, vec![0.5, -0.5]);
        // a single sample per group carries no signal
        assert_eq!(
            grpo_advantages(&[1.0, 0.0], 1, true).unwrap(),
            vec![0.0, 0.0]
        );
        assert!(grpo_advantages(&[1.0, f32::NAN], 2, true).is_err());
        assert!(grpo_advantages(&[1.0, 0.0, 1.0], 2, true).is_err());
    }

    #[test]
    fn clipping_by_hand() {
        // Two one-token sequences. old logp = 0; new logp = ln 1.5 (ratio 1.5) and ln 0.5.
        let logp = Var::from_tensor(&t2(&[&[1.5f32.ln()], &[0.5f32.ln()]])).unwrap();
        let old = t2(&[&[0.0], &[0.0]]);
        let mask = t2(&[&[1.0], &[1.0]]);
        let params = LossParams {
            epsilon_low: 0.2,
            epsilon_high: 0.28,
            kl_coef: 0.0,
            aggregation: Aggregation::SeqMeanTokenMean,
        };
        // A = +1 for both: row 1 clipped at 1.28 (no gradient), row 2 unclipped (0.5)
        let adv = Tensor::new(&[1.0f32, 1.0], &Device::Cpu).unwrap();
        let x = LossInputs {
            logp: logp.as_tensor(),
            old_logp: &old,
            ref_logp: None,
            advantages: &adv,
            mask: &mask,
            normaliser: 2.0,
        };
        let out = policy_loss(&x, &params).unwrap();
        let l = out.loss.to_scalar::<f32>().unwrap();
        assert!((l - (-(1.28 + 0.5) / 2.0)).abs() < 1e-6, "{l}");
        let g = out.loss.backward().unwrap();
        let g = g.get(logp.as_tensor()).unwrap().to_vec2::<f32>().unwrap();
        // d/dlogp of -ratio*A/2 = -ratio/2 where unclipped; 0 where clipped
        assert_eq!(g[0][0], 0.0);
        assert!((g[1][0] + 0.25).abs() < 1e-6);
        // A = -1: row 1 (ratio 1.5 > 1) keeps its gradient, row 2 (0.5 < 0.8) is clipped
        let adv = Tensor::new(&[-1.0f32, -1.0], &Device::Cpu).unwrap();
        let x = LossInputs {
            advantages: &adv,
            ..x
        };
        let out = policy_loss(&x, &params).unwrap();
        let l = out.loss.to_scalar::<f32>().unwrap();
        assert!((l - (1.5 + 0.8) / 2.0).abs() < 1e-6, "{l}");
        let g = out.loss.backward().unwrap();
        let g = g.get(logp.as_tensor()).unwrap().to_vec2::<f32>().unwrap();
        assert!((g[0][0] - 0.75).abs() < 1e-6 && g[1][0] == 0.0);
    }

    #[test]
    fn k3_kl_and_aggregations_by_hand() {
        // logp = [-1, -2 | -1, pad], ref = [-1.5, -1 | -1, 0]
        let logp = t2(&[&[-1.0, -2.0], &[-1.0, 0.0]]);
        let reff = t2(&[&[-1.5, -1.0], &[-1.0, 0.0]]);
        let mask = t2(&[&[1.0, 1.0], &[1.0, 0.0]]);
        let adv = Tensor::new(&[0.0f32, 0.0], &Device::Cpu).unwrap();
        let k3 = |d: f32| d.exp() - d - 1.0;
        let (a, b) = (k3(-0.5), k3(1.0));
        for (agg, norm, expect) in [
            (Aggregation::SeqMeanTokenMean, 2.0, ((a + b) / 2.0) / 2.0),
            (Aggregation::TokenMean, 3.0, (a + b) / 3.0),
        ] {
            let x = LossInputs {
                logp: &logp,
                old_logp: &logp,
                ref_logp: Some(&reff),
                advantages: &adv,
                mask: &mask,
                normaliser: norm,
            };
            let p = LossParams {
                epsilon_low: 0.2,
                epsilon_high: 0.2,
                kl_coef: 1.0,
                aggregation: agg,
            };
            let out = policy_loss(&x, &p).unwrap();
            let l = out.loss.to_scalar::<f32>().unwrap();
            assert!((l - expect).abs() < 1e-6, "{agg:?}: {l} vs {expect}");
            let kl = out.kl.unwrap().to_vec2::<f32>().unwrap();
            assert!((kl[0][0] - a).abs() < 1e-6 && kl[1][0] == 0.0);
        }
    }

    #[test]
    fn pass_at_k_by_hand() {
        assert_eq!(pass_at_k(4, 0, 1), Some(0.0));
        assert_eq!(pass_at_k(4, 4, 2), Some(1.0));
        assert!((pass_at_k(4, 1, 1).unwrap() - 0.25).abs() < 1e-12);
        // 1 - C(3,2)/C(4,2) = 1 - 3/6
        assert!((pass_at_k(4, 1, 2).unwrap() - 0.5).abs() < 1e-12);
        // 1 - C(6,3)/C(8,3) = 1 - 20/56
        assert!((pass_at_k(8, 2, 3).unwrap() - (1.0 - 20.0 / 56.0)).abs() < 1e-12);
        assert_eq!(pass_at_k(4, 3, 2), Some(1.0));
        assert_eq!(pass_at_k(4, 1, 5), None);
    }
}
