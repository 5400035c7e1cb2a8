//! The algorithm family: advantage estimators ([`advantage`]) and the policy loss (here), both
//! chosen by name in the run config.
//!
//! The loss is the PPO-clip token loss (*Proximal Policy Optimization Algorithms*, Schulman et
//! al., 2017) as GRPO uses it (*DeepSeekMath: Pushing the Limits of Mathematical Reasoning in Open
//! Language Models*), with the variants of the RLVR literature as options:
//!
//! ```text
//! ρ_t = exp(log π(o_t) − log π_old(o_t))                       ratio = "token"
//! ρ_t = exp(mean_t [log π(o_t) − log π_old(o_t)])              ratio = "sequence" (GSPO)
//! obj_t = min(ρ_t Â_t, clip(ρ_t, 1 − ε_low, 1 + ε_high) Â_t)      ε_high > ε_low: DAPO clip-higher
//! obj_t = max(obj_t, c · Â_t)  where Â_t < 0                    dual_clip = c (Dual-clip PPO)
//! ℓ_t = −w_t · obj_t + β · KL_t − α · H_t + γ · LpReg_t
//! KL_t: k1 = −d, k2 = d²/2, k3 = e^d − d − 1 with d = log π_ref − log π   (Schulman's estimators)
//! ```
//!
//! where `w_t` are token weights (the 80/20 high-entropy token selection of *Beyond the 80/20
//! Rule*, the overlong mask of DAPO), `H_t` the policy's entropy at the position (entropy bonus)
//! and `LpReg_t` the Lp-Reg term (KL from a filtered, renormalised proxy of the policy,
//! *Low-probability Tokens Sustain Exploration in RLVR*). Reductions ([`Aggregation`]):
//! `grpo` = mean over each sequence's tokens then over sequences; `bnpo` = mean over the tokens of
//! the sequences being updated; `dr_grpo` = token sum / (sequences · max completion length)
//! (*Understanding R1-Zero-Like Training*); `dapo` = mean over all sampled tokens.

pub mod advantage;
pub mod params;

use candle_core::{DType, Tensor};

use crate::error::Result;

/// The loss's named choices are part of the run config.
pub use rlvr_core::config::{Aggregation, KlEstimator, RatioLevel};

/// The per-token estimate of the reverse KL from `d = log π_ref − log π` (Schulman's
/// *Approximating KL Divergence*), elementwise in `d`'s dtype and differentiable through it.
/// The one place the three formulas are written.
pub fn kl_per_token(est: KlEstimator, d: &Tensor) -> Result<Tensor> {
    Ok(match est {
        KlEstimator::K1 => d.neg()?,
        KlEstimator::K2 => (d.sqr()? * 0.5)?,
        KlEstimator::K3 => ((d.exp()? - d)? - 1.0)?,
    })
}

/// Sums of every estimator ([`KlEstimator::ALL`] order) over the tokens where `mask` is positive,
/// from `ref_logp` and `logp` (`[rows, len]`, no gradient), evaluated and summed in f64: the
/// `kl_by_kind` diagnostic, whichever estimator the loss uses.
pub fn kl_sums(ref_logp: &Tensor, logp: &Tensor, mask: &[f32]) -> Result<[f64; 3]> {
    let d = (ref_logp - logp.detach())?
        .flatten_all()?
        .to_dtype(DType::F64)?;
    let mut sums = [0f64; 3];
    for (sum, est) in sums.iter_mut().zip(KlEstimator::ALL) {
        let per_token = kl_per_token(est, &d)?.to_vec1::<f64>()?;
        for (&v, &m) in per_token.iter().zip(mask) {
            if m > 0.0 {
                *sum += v;
            }
        }
    }
    Ok(sums)
}

/// Lp-Reg's per-token penalty (*Low-probability Tokens Sustain Exploration in RLVR*): `KL(q ‖ π)` at each position of `probs` / `log_probs`
/// (`[rows * len, vocab]`, the policy's softmax and log-softmax), where the proxy `q` is the
/// current policy without presumed-noise tokens (probability below `min_p` × the top one),
/// renormalised and held constant. Reshaped to `mask`'s `[rows, len]` and multiplied by it (the
/// tokens the penalty protects).
pub fn lp_reg_penalty(
    probs: &Tensor,
    log_probs: &Tensor,
    min_p: f64,
    mask: &Tensor,
) -> Result<Tensor> {
    let q = probs.detach();
    let top = q.max_keepdim(1)?;
    let keep = q.broadcast_ge(&(top * min_p)?)?.to_dtype(DType::F32)?;
    let q = (q * keep)?;
    let q = q.broadcast_div(&q.sum_keepdim(1)?)?;
    let q_log_q = (&q * (&q + 1e-30)?.log()?)?;
    let kl = (q_log_q - (&q * log_probs)?)?
        .sum(1)?
        .reshape(mask.shape())?;
    Ok((kl * mask)?)
}

/// Inputs of the policy loss, all `[rows, len]`.
pub struct LossInputs<'a> {
    /// Current log-probs (differentiable).
    pub logp: &'a Tensor,
    /// Log-probs under the policy that sampled the data (constant).
    pub old_logp: &'a Tensor,
    /// Log-probs under the frozen reference policy, when a KL penalty is used.
    pub ref_logp: Option<&'a Tensor>,
    /// Per-token advantages.
    pub advantages: &'a Tensor,
    /// 1 for completion tokens that count, 0 for padding.
    pub mask: &'a Tensor,
    /// Extra weight of each token's policy-gradient term (token selection); `None` = 1.
    pub pg_weight: Option<&'a Tensor>,
    /// Differentiable per-token entropy, when an entropy bonus is used.
    pub entropy: Option<&'a Tensor>,
    /// Differentiable per-token Lp-Reg penalty (already restricted to the tokens it protects).
    pub lp_reg: Option<&'a Tensor>,
    /// Divisor standing for the whole batch (see [`Aggregation`]). Rows with zero advantage and
    /// no other term contribute exactly zero and may be left out, as long as this still counts
    /// them.
    pub normaliser: f64,
}

/// Clip ranges and penalty weights.
#[derive(Clone, Copy, Debug)]
pub struct LossParams {
    /// Lower clip range ε_low.
    pub epsilon_low: f64,
    /// Upper clip range ε_high.
    pub epsilon_high: f64,
    /// Dual-clip constant c (> 1), 0 = off.
    pub dual_clip: f64,
    /// Token or sequence ratio.
    pub ratio: RatioLevel,
    /// KL estimator (with `kl_coef`); `None` = no KL term.
    pub kl: Option<KlEstimator>,
    /// KL coefficient β.
    pub kl_coef: f64,
    /// Entropy bonus α.
    pub entropy_coef: f64,
    /// Lp-Reg coefficient.
    pub lp_reg_coef: f64,
    /// Token reduction.
    pub aggregation: Aggregation,
}

impl Default for LossParams {
    fn default() -> Self {
        Self {
            epsilon_low: 0.2,
            epsilon_high: 0.2,
            dual_clip: 0.0,
            ratio: RatioLevel::Token,
            kl: None,
            kl_coef: 0.0,
            entropy_coef: 0.0,
            lp_reg_coef: 0.0,
            aggregation: Aggregation::Grpo,
        }
    }
}

/// The loss and the per-token quantities for metrics.
pub struct LossOutput {
    /// Scalar loss to differentiate.
    pub loss: Tensor,
    /// Per-token KL (no gradient), when a reference was given.
    pub kl: Option<Tensor>,
    /// Per-token ratio ρ (no gradient).
    pub ratio: Tensor,
}

/// The clipped policy-gradient loss with its optional terms.
pub fn policy_loss(x: &LossInputs<'_>, p: &LossParams) -> Result<LossOutput> {
    let log_ratio = (x.logp - x.old_logp)?;
    let ratio = match p.ratio {
        RatioLevel::Token => log_ratio.exp()?,
        RatioLevel::Sequence => {
            let lens = x.mask.sum_keepdim(1)?.clamp(1.0, f64::INFINITY)?;
            let seq = (log_ratio * x.mask)?.sum_keepdim(1)?.div(&lens)?.exp()?;
            seq.broadcast_as(x.logp.shape())?.contiguous()?
        }
    };
    let adv = x.advantages;
    let unclipped = (&ratio * adv)?;
    let clipped = (ratio.clamp(1.0 - p.epsilon_low, 1.0 + p.epsilon_high)? * adv)?;
    let mut obj = unclipped.minimum(&clipped)?;
    if p.dual_clip > 0.0 {
        let floor = (adv * p.dual_clip)?;
        let negative = adv.lt(0.0)?;
        obj = negative.where_cond(&obj.maximum(&floor)?, &obj)?;
    }
    let mut per_token = obj.neg()?;
    if let Some(w) = x.pg_weight {
        per_token = (per_token * w)?;
    }
    let mut kl_out = None;
    if let (Some(r), Some(est)) = (x.ref_logp, p.kl) {
        let kl = kl_per_token(est, &(r - x.logp)?)?;
        if p.kl_coef != 0.0 {
            per_token = (per_token + (&kl * p.kl_coef)?)?;
        }
        kl_out = Some(kl.detach());
    }
    if let (Some(h), true) = (x.entropy, p.entropy_coef != 0.0) {
        per_token = (per_token - (h * p.entropy_coef)?)?;
    }
    if let (Some(lp), true) = (x.lp_reg, p.lp_reg_coef != 0.0) {
        per_token = (per_token + (lp * p.lp_reg_coef)?)?;
    }
    let masked = (per_token * x.mask)?;
    let loss = match p.aggregation {
        Aggregation::Grpo => {
            let lens = x.mask.sum(1)?.clamp(1.0, f64::INFINITY)?;
            (masked.sum(1)? / lens)?.sum_all()?
        }
        Aggregation::Bnpo | Aggregation::DrGrpo | Aggregation::Dapo => masked.sum_all()?,
    };
    let loss = (loss / x.normaliser.max(1.0))?;
    Ok(LossOutput {
        loss,
        kl: kl_out,
        ratio: ratio.detach(),
    })
}

/// DPH-RL's f-divergence penalty on rehearsal samples of the initial policy π₀: per token,
/// `f(u)` with `u = π(o_t) / π₀(o_t)`; forward KL uses `f(u) = −log u`, Jensen-Shannon
/// `f(u) = ½[u log u − (u + 1) log((u + 1)/2)]`. Returns the mean over `mask`ed tokens.
pub fn rehearsal_divergence(
    logp: &Tensor,
    logp0: &Tensor,
    mask: &Tensor,
    js: bool,
) -> Result<Tensor> {
    let log_u = (logp - logp0)?;
    let per_token = if js {
        let u = log_u.exp()?;
        let u1 = (&u + 1.0)?;
        let a = (&u * &log_u)?;
        let b = (&u1 * (&u1 * 0.5)?.log()?)?;
        ((a - b)? * 0.5)?
    } else {
        log_u.neg()?
    };
    let n = mask.sum_all()?.to_scalar::<f32>()?.max(1.0);
    Ok(((per_token * mask)?.sum_all()? / f64::from(n))?)
}

/// `[rows]` sequence advantages broadcast to `[rows, len]`.
pub fn broadcast_advantages(adv: &Tensor, len: usize) -> Result<Tensor> {
    let rows = adv.dim(0)?;
    Ok(adv
        .to_dtype(DType::F32)?
        .reshape((rows, 1))?
        .broadcast_as((rows, len))?
        .contiguous()?)
}

/// The value at fraction `q` of `values` by the nearest-rank rule (the `⌈q·n⌉`-th smallest,
/// at least the first), `None` when empty. Used for QAE's baseline, the 80/20 entropy cut and
/// Lp-Reg's low-probability cut.
pub fn quantile(values: &[f32], q: f64) -> Option<f32> {
    if values.is_empty() {
        return None;
    }
    let mut v = values.to_vec();
    v.sort_by(f32::total_cmp);
    let idx = ((q * v.len() as f64).ceil() as usize).clamp(1, v.len()) - 1;
    Some(v[idx])
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
mod tests;
