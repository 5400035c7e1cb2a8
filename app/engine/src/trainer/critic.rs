//! PPO's critic (*Proximal Policy Optimization Algorithms*, Schulman et al., 2017): a linear value
//! head on the policy's detached final hidden states, per-token GAE advantages (*High-Dimensional
//! Continuous Control Using Generalized Advantage Estimation*) and the critic's own update.

use candle_core::Tensor;

use super::rollout::Rows;
use super::Trainer;
use crate::algo::advantage::{gae, CriticParams};
use crate::error::Result;
use crate::events::MeanStd;
use crate::optim;

/// PPO's critic: a linear value head `V(h) = h·w + b` on the policy's final hidden states,
/// detached, so the critic shares the policy's features without moving them; trained by MSE to
/// the GAE returns with its own AdamW.
pub(super) struct Critic {
    pub(super) w: candle_core::Var,
    pub(super) b: candle_core::Var,
    pub(super) opt: optim::AdamW,
    params: CriticParams,
}

impl Critic {
    pub(super) fn new(policy: &crate::model::Policy, params: CriticParams) -> Result<Self> {
        let d = policy.cfg.hidden_size;
        let w = candle_core::Var::zeros(d, candle_core::DType::F32, policy.device())?;
        let b = candle_core::Var::zeros(1, candle_core::DType::F32, policy.device())?;
        let opt = optim::AdamW::new(vec![w.clone(), b.clone()], optim::AdamWParams::default())?;
        Ok(Self { w, b, opt, params })
    }

    fn values(&self, h: &Tensor) -> Result<Tensor> {
        Ok(h.matmul(&self.w.as_tensor().unsqueeze(1)?)?
            .squeeze(1)?
            .broadcast_add(self.b.as_tensor())?)
    }
}

impl Trainer {
    /// PPO: values of every completion position from the critic, per-token GAE advantages
    /// (whitened over the batch's tokens), and one critic update toward the returns. Returns the
    /// token advantages per row and the critic's loss before its update.
    pub(super) fn critic_advantages(&mut self, batch: &Rows<'_>) -> Result<(Vec<Vec<f32>>, f64)> {
        let completions = &batch.completions;
        let idx = batch.non_empty();
        let mut token_adv: Vec<Vec<f32>> = vec![Vec::new(); batch.len()];
        if idx.is_empty() {
            return Ok((token_adv, 0.0));
        }
        let device = self.policy.device().clone();
        let train = batch.train_batch(&idx, self.policy.tok.pad, &device)?;
        let l = train.l;
        let hidden = train.completion_hidden(&self.policy.frozen_view()?)?;
        let Some(critic) = self.critic.as_mut() else {
            return Ok((token_adv, 0.0));
        };
        let values = critic.values(&hidden)?.to_vec1::<f32>()?;
        let CriticParams {
            gamma,
            lambda,
            value_lr,
        } = critic.params;
        let mut returns = vec![0f32; idx.len() * l];
        for (k, &i) in idx.iter().enumerate() {
            let n = completions[i].tokens.len();
            let (a, r) = gae(&values[k * l..k * l + n], batch.rewards[i], gamma, lambda);
            returns[k * l..k * l + n].copy_from_slice(&r);
            token_adv[i] = a;
        }
        // Whiten over all tokens of the batch.
        let all: Vec<f32> = token_adv.iter().flatten().copied().collect();
        let ms = MeanStd::of(&all);
        let std = ms.std.max(1e-6) as f32;
        for a in token_adv.iter_mut().flatten() {
            *a = (*a - ms.mean as f32) / std;
        }
        // Critic update: MSE to the returns on real tokens.
        let target = Tensor::from_vec(returns, idx.len() * l, &device)?;
        let mask = train.mask.flatten_all()?;
        let err = (critic.values(&hidden)? - target)?;
        let n = f64::from(mask.sum_all()?.to_scalar::<f32>()?.max(1.0));
        let loss = ((err.sqr()? * &mask)?.sum_all()? / n)?;
        let loss_v = f64::from(loss.to_scalar::<f32>()?);
        let grads = loss.backward()?;
        let norm = critic.opt.grad_norm(&grads)?;
        critic
            .opt
            .step(&grads, value_lr, optim::clip_scale(norm, 1.0))?;
        Ok((token_adv, loss_v))
    }
}
