//! One training step: rollout of groups, rewards (verifier, noise, corrections, overlong),
//! advantages, token weights, and the data-parallel policy update.

use std::collections::{BTreeMap, HashSet};
use std::time::Instant;

use candle_core::{Tensor, D};
use rand::RngCore as _;

use super::{frac, Trainer};
use crate::algo::advantage::{gae, CriticParams, GroupRewards};
use crate::algo::{self, Aggregation, LossInputs, LossParams};
use crate::batch::TrainBatch;
use crate::config::{Divergence, NoiseCorrection, Overlong, ZeroVariance};
use crate::error::{EngineError, Result};
use crate::events::{MeanStd, SampleGroup, SampleRecord, StepMetrics, TokenStats};
use crate::extensions::{AlgoBatch, AlgoOutput};
use crate::model::Transformer;
use crate::optim;
use crate::rewards;
use crate::sampling::{generate_parallel, row_rngs, Completion};
use crate::tasks::{Problem, Verdict};

/// The G completions of one prompt, scored.
struct Group {
    problem: Problem,
    prompt: Vec<u32>,
    completions: Vec<Completion>,
    texts: Vec<String>,
    verdicts: Vec<Verdict>,
    /// Pass flags after injected noise.
    observed: Vec<bool>,
    /// Reward components per completion: (name, value, reason).
    components: Vec<Vec<(String, f32, String)>>,
    /// Total reward per completion.
    rewards: Vec<f32>,
}

impl Group {
    fn informative(&self) -> bool {
        self.rewards.iter().any(|&r| r != self.rewards[0])
    }
}

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

/// DPH-RL rehearsal set: completions of the initial policy with their log-probs under it.
#[derive(serde::Serialize, serde::Deserialize)]
pub(super) struct Rehearsal {
    /// (prompt ids, completion ids, log π₀ per completion token)
    rows: Vec<(Vec<u32>, Vec<u32>, Vec<f32>)>,
    cursor: usize,
}

/// What one worker computed for one inner update.
struct ShardOut {
    loss: f64,
    grads: candle_core::backprop::GradStore,
    clip_low: usize,
    clip_high: usize,
    /// (sum of per-token KL, tokens)
    kl: Option<([f64; 3], usize)>,
}

/// One worker's share of the update batch.
struct Shard {
    batch: TrainBatch,
    advantages: Tensor,
    adv_host: Vec<f32>,
    pg_weight: Option<Tensor>,
    lp_mask: Option<Tensor>,
    ref_logp: Option<Tensor>,
    old_logp: Option<Tensor>,
}

/// Per-step knobs the shards need.
struct ShardParams {
    loss: LossParams,
    normaliser: f64,
    lp_min_p: f64,
    need_logits: bool,
}

impl Shard {
    /// Loss and gradients of this shard; the first call records the old log-probs.
    fn step(&mut self, model: &Transformer, p: &ShardParams) -> Result<ShardOut> {
        let (logits, logp) = self.batch.logprobs(model)?;
        let old = match &self.old_logp {
            Some(o) => o.clone(),
            None => {
                let o = logp.detach();
                self.old_logp = Some(o.clone());
                o
            }
        };
        let (rows, l) = (self.batch.rows, self.batch.l);
        let (mut entropy, mut lp_reg) = (None, None);
        if p.need_logits {
            let lsm = candle_nn::ops::log_softmax(&logits, D::Minus1)?;
            let probs = lsm.exp()?;
            if p.loss.entropy_coef != 0.0 {
                entropy = Some((&probs * &lsm)?.sum(1)?.neg()?.reshape((rows, l))?);
            }
            if let (Some(mask), true) = (&self.lp_mask, p.loss.lp_reg_coef != 0.0) {
                // Proxy: the current policy without presumed-noise tokens, renormalised.
                let q = probs.detach();
                let top = q.max_keepdim(1)?;
                let keep = q
                    .broadcast_ge(&(top * p.lp_min_p)?)?
                    .to_dtype(candle_core::DType::F32)?;
                let q = (q * keep)?;
                let q = q.broadcast_div(&q.sum_keepdim(1)?)?;
                let q_log_q = (&q * (&q + 1e-30)?.log()?)?;
                let kl = (q_log_q - (&q * &lsm)?)?.sum(1)?.reshape((rows, l))?;
                lp_reg = Some((kl * mask)?);
            }
        }
        let out = algo::policy_loss(
            &LossInputs {
                logp: &logp,
                old_logp: &old,
                ref_logp: self.ref_logp.as_ref(),
                advantages: &self.advantages,
                mask: &self.batch.mask,
                pg_weight: self.pg_weight.as_ref(),
                entropy: entropy.as_ref(),
                lp_reg: lp_reg.as_ref(),
                normaliser: p.normaliser,
            },
            &p.loss,
        )?;
        let loss = f64::from(out.loss.to_scalar::<f32>()?);
        let ratio = out.ratio.flatten_all()?.to_vec1::<f32>()?;
        let (mut clip_low, mut clip_high) = (0, 0);
        for (j, (&r, &m)) in ratio.iter().zip(&self.batch.mask_host).enumerate() {
            if m == 0.0 {
                continue;
            }
            let av = self.adv_host[j];
            if av < 0.0 && f64::from(r) < 1.0 - p.loss.epsilon_low {
                clip_low += 1;
            } else if av > 0.0 && f64::from(r) > 1.0 + p.loss.epsilon_high {
                clip_high += 1;
            }
        }
        // All three reverse-KL estimators, whichever one the loss uses (a diagnostic).
        let kl = match &self.ref_logp {
            Some(r) => {
                let d = (r - logp.detach())?.flatten_all()?.to_vec1::<f32>()?;
                let mut sums = [0f64; 3];
                for (&d, &m) in d.iter().zip(&self.batch.mask_host) {
                    if m > 0.0 {
                        let d = f64::from(d);
                        sums[0] -= d;
                        sums[1] += d * d / 2.0;
                        sums[2] += d.exp() - d - 1.0;
                    }
                }
                Some((sums, self.batch.completion_tokens()))
            }
            None => None,
        };
        let grads = out.loss.backward()?;
        Ok(ShardOut {
            loss,
            grads,
            clip_low,
            clip_high,
            kl,
        })
    }
}

#[derive(Default)]
struct UpdateStats {
    loss: f64,
    kl: Option<f64>,
    clip_low: f64,
    clip_high: f64,
    grad_norm: f64,
    train_tokens: usize,
    divergence: Option<f64>,
    kl_by_kind: BTreeMap<String, f64>,
}

/// Value at fraction `q` of the sorted values (nearest rank), `None` when empty.
fn quantile(values: &[f32], q: f64) -> Option<f32> {
    if values.is_empty() {
        return None;
    }
    let mut v = values.to_vec();
    v.sort_by(f32::total_cmp);
    let idx = ((q * v.len() as f64).ceil() as usize).clamp(1, v.len()) - 1;
    Some(v[idx])
}

impl Trainer {
    /// PPO: values of every completion position from the critic, per-token GAE advantages
    /// (whitened over the batch's tokens), and one critic update toward the returns. Returns the
    /// token advantages per row and the critic's loss before its update.
    fn critic_advantages(
        &mut self,
        rows: &[Vec<u32>],
        completions: &[&Completion],
        rewards: &[f32],
    ) -> Result<(Vec<Vec<f32>>, f64)> {
        let device = self.policy.device().clone();
        let idx: Vec<usize> = (0..rows.len())
            .filter(|&i| !completions[i].tokens.is_empty())
            .collect();
        let mut token_adv: Vec<Vec<f32>> = vec![Vec::new(); rows.len()];
        if idx.is_empty() {
            return Ok((token_adv, 0.0));
        }
        let prompts: Vec<&[u32]> = idx.iter().map(|&i| rows[i].as_slice()).collect();
        let comps: Vec<&[u32]> = idx
            .iter()
            .map(|&i| completions[i].tokens.as_slice())
            .collect();
        let batch = TrainBatch::new(&prompts, &comps, self.policy.tok.pad, &device)?;
        let l = batch.l;
        let hidden = batch.completion_hidden(&self.policy.frozen_view()?)?;
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
            let (a, r) = gae(&values[k * l..k * l + n], rewards[i], gamma, lambda);
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
        let mask = batch.mask.flatten_all()?;
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

    /// Log-probs of every completion token under the reference policy, rows concatenated (the
    /// `ref_logprobs` of a plugin algorithm's batch).
    fn reference_logprobs(
        &self,
        reference: &Transformer,
        rows: &[Vec<u32>],
        completions: &[&Completion],
    ) -> Result<Vec<f32>> {
        let idx: Vec<usize> = (0..rows.len())
            .filter(|&i| !completions[i].tokens.is_empty())
            .collect();
        if idx.is_empty() {
            return Ok(Vec::new());
        }
        let prompts: Vec<&[u32]> = idx.iter().map(|&i| rows[i].as_slice()).collect();
        let comps: Vec<&[u32]> = idx
            .iter()
            .map(|&i| completions[i].tokens.as_slice())
            .collect();
        let batch = TrainBatch::new(&prompts, &comps, self.policy.tok.pad, self.policy.device())?;
        let lp = batch.logprobs(reference)?.1.to_vec2::<f32>()?;
        let mut out = Vec::new();
        for (row, &i) in lp.iter().zip(&idx) {
            out.extend_from_slice(&row[..completions[i].tokens.len()]);
        }
        Ok(out)
    }

    /// Samples `n` prompts × G completions and scores them.
    fn rollout_groups(&mut self, n: usize) -> Result<Vec<Group>> {
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
        let mut rngs = row_rngs(self.rng.next_u64(), rows.len());
        let mut params = self.gen_params(self.cfg.rollout.sampling());
        params.hook = self.components.sampler.clone();
        let mut completions = generate_parallel(&view, &rows, &params, &mut rngs, self.workers)?;
        let rw = self.cfg.rewards.clone();
        let (fn_rate, fp_rate) = rw.assumed_rates();
        let verifier_name = match &self.components.verifier {
            Some((name, _)) => name.clone(),
            None => self.cfg.task.name().to_string(),
        };
        let alg = &self.cfg.algorithm;
        let mut groups = Vec::with_capacity(n);
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
                .verify(self.split.task(), &items)
                .into_iter()
                .unzip();
            let extra = self.components.extra(&items);
            let passed: Vec<bool> = verdicts.iter().map(|v| v.passed).collect();
            let noisy = rw.flip_false_negative > 0.0 || rw.flip_false_positive > 0.0;
            let observed = if noisy {
                rewards::flip(
                    &passed,
                    rw.flip_false_negative,
                    rw.flip_false_positive,
                    &mut self.noise_rng,
                )
            } else {
                passed.clone()
            };
            let corrected = rewards::correct(&observed, fn_rate, fp_rate, rw.correction);
            let mut components = Vec::with_capacity(g);
            let mut totals = Vec::with_capacity(g);
            for i in 0..g {
                // Without noise or correction the verifier's score (partial credit) is the reward;
                // otherwise the (corrected) observed pass/fail.
                let task_reward = if noisy || rw.correction != NoiseCorrection::None {
                    corrected[i]
                } else {
                    verdicts[i].score
                };
                let mut reason = verdicts[i].reason.clone();
                if observed[i] != passed[i] {
                    reason = format!("{reason} [flipped by injected verifier noise]");
                }
                let mut comp = vec![(verifier_name.clone(), task_reward, reason)];
                comp.extend(sub_scores[i].iter().cloned());
                comp.extend(extra[i].0.iter().cloned());
                let mut total = task_reward + extra[i].1;
                if alg.overlong == Overlong::Soft {
                    let pen = rewards::overlong_penalty(
                        comps[i].tokens.len(),
                        self.max_new,
                        alg.overlong_window,
                    );
                    comp.push((
                        "overlong".into(),
                        pen,
                        format!("{} tokens", comps[i].tokens.len()),
                    ));
                    total += pen;
                }
                components.push(comp);
                totals.push(total);
            }
            groups.push(Group {
                problem,
                prompt,
                completions: comps,
                texts,
                verdicts,
                observed,
                components,
                rewards: totals,
            });
        }
        groups.reverse();
        Ok(groups)
    }

    /// Samples the DPH-RL rehearsal set from the current (initial) policy, on prompts of a
    /// separate train stream so the training data are unchanged.
    fn build_rehearsal(&mut self) -> Result<()> {
        let alg = &self.cfg.algorithm;
        let mut split =
            crate::tasks::TaskSplit::new(self.cfg.task.build()?, self.cfg.seed ^ 0x0dd5_e110, 0)?;
        let tok = self.policy.tok.clone();
        let prompts = (0..alg.rehearsal_size)
            .map(|_| tok.encode_prompt(&split.next_train().prompt))
            .collect::<Result<Vec<_>>>()?;
        let view = self.policy.frozen_view()?;
        let mut rngs = row_rngs(self.cfg.seed ^ 0x0dd5_e111, prompts.len());
        let params = self.gen_params(self.cfg.rollout.sampling());
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
    fn rehearsal_batch(&mut self) -> Result<Option<(TrainBatch, Tensor)>> {
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

    /// One step: sample, score, compute advantages, update. Returns the metrics and the sampled
    /// groups.
    pub fn train_step(&mut self) -> Result<(StepMetrics, Vec<SampleGroup>)> {
        let t0 = Instant::now();
        if self.cfg.algorithm.divergence != Divergence::None && self.rehearsal.is_none() {
            self.build_rehearsal()?;
        }
        let (b, g) = (
            self.cfg.rollout.prompts_per_step,
            self.cfg.rollout.group_size,
        );
        let mut groups = self.rollout_groups(b)?;
        let first_zero_var = groups.iter().filter(|gr| !gr.informative()).count();
        if self.cfg.algorithm.zero_variance == ZeroVariance::Resample {
            // DAPO dynamic sampling: replace zero-variance groups with informative ones.
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
            groups = keep;
        }
        let rollout_s = t0.elapsed().as_secs_f64();

        let rewards: Vec<f32> = groups
            .iter()
            .flat_map(|gr| gr.rewards.iter().copied())
            .collect();
        let observed: Vec<bool> = groups
            .iter()
            .flat_map(|gr| gr.observed.iter().copied())
            .collect();
        let rows: Vec<Vec<u32>> = groups
            .iter()
            .flat_map(|gr| std::iter::repeat_n(gr.prompt.clone(), g))
            .collect();
        let completions: Vec<&Completion> =
            groups.iter().flat_map(|gr| gr.completions.iter()).collect();
        let mut plugin_weights: Option<Vec<Vec<f32>>> = None;
        let plugin_out = match &self.components.algorithm {
            Some((name, alg)) => {
                let mut batch = algo_batch(&groups, &completions, &rewards, &observed, g);
                if let Some(r) = &self.reference {
                    batch.ref_logprobs = self.reference_logprobs(r, &rows, &completions)?;
                }
                let out = alg.compute(&batch).and_then(|o| split_output(o, &batch));
                if let Err(e) = &out {
                    self.components
                        .errors
                        .record(name, &format!("{e} (this step used GRPO advantages)"));
                }
                out.ok()
            }
            None => None,
        };
        let (adv, token_adv, value_loss) = if let Some((tok, w)) = plugin_out {
            let per_row = tok
                .iter()
                .map(|a| a.iter().sum::<f32>() / a.len().max(1) as f32)
                .collect();
            plugin_weights = w;
            (per_row, Some(tok), None)
        } else if self.critic.is_some() {
            let (tok, vloss) = self.critic_advantages(&rows, &completions, &rewards)?;
            let per_row = tok
                .iter()
                .map(|a| a.iter().sum::<f32>() / a.len().max(1) as f32)
                .collect();
            (per_row, Some(tok), Some(vloss))
        } else {
            let adv = self.estimator.advantages(&GroupRewards {
                rewards: &rewards,
                passed: &observed,
                group: g,
            })?;
            (adv, None, None)
        };

        // Token weights: overlong mask, then the top-entropy selection (80/20).
        let alg = self.cfg.algorithm.clone();
        let all_entropies: Vec<f32> = completions
            .iter()
            .flat_map(|c| c.entropies.iter().copied())
            .collect();
        let entropy_cut = if alg.top_entropy_fraction < 1.0 {
            quantile(&all_entropies, 1.0 - alg.top_entropy_fraction)
        } else {
            None
        };
        let weights: Vec<Vec<f32>> = completions
            .iter()
            .map(|c| {
                c.entropies
                    .iter()
                    .map(|&h| {
                        let masked = alg.overlong == Overlong::Mask && !c.finished;
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
        let weights: Vec<Vec<f32>> = match &plugin_weights {
            Some(pw) => weights
                .iter()
                .zip(pw)
                .map(|(w, p)| w.iter().zip(p).map(|(a, b)| a * b).collect())
                .collect(),
            None => weights,
        };
        let weighted =
            alg.overlong == Overlong::Mask || entropy_cut.is_some() || plugin_weights.is_some();
        let mut token_stats: Vec<TokenStats> = completions
            .iter()
            .enumerate()
            .map(|(i, c)| TokenStats {
                logprob: c.logprobs.clone(),
                entropy: c.entropies.clone(),
                advantage: weights[i]
                    .iter()
                    .enumerate()
                    .map(|(j, w)| {
                        let a = match &token_adv {
                            Some(t) => t[i].get(j).copied().unwrap_or(0.0),
                            None => adv[i],
                        };
                        a * w
                    })
                    .collect(),
            })
            .collect();
        let low_logp_cut = if alg.lp_reg_coef > 0.0 {
            let all: Vec<f32> = completions
                .iter()
                .flat_map(|c| c.logprobs.iter().copied())
                .collect();
            quantile(&all, alg.lp_reg_low_fraction)
        } else {
            None
        };

        // Reference reset (ProRL).
        if self.reference.is_some()
            && alg.reference_reset_every > 0
            && self.step > 0
            && self.step.is_multiple_of(alg.reference_reset_every)
        {
            self.reference = Some(self.policy.snapshot()?);
            self.opt.reset_moments()?;
        }

        let t1 = Instant::now();
        let dense_terms =
            self.reference.is_some() || alg.entropy_coef > 0.0 || alg.lp_reg_coef > 0.0;
        let selected: Vec<usize> = (0..rows.len())
            .filter(|&i| !completions[i].tokens.is_empty())
            .filter(|&i| {
                dense_terms
                    || token_adv.is_some()
                    || (adv[i] != 0.0 && weights[i].iter().any(|&w| w > 0.0))
            })
            .collect();
        let total_tokens: usize = completions.iter().map(|c| c.tokens.len()).sum();
        let selected_tokens: usize = selected.iter().map(|&i| completions[i].tokens.len()).sum();
        let normaliser = match alg.aggregation {
            Aggregation::Grpo => rows.len() as f64,
            Aggregation::Dapo => total_tokens as f64,
            Aggregation::Bnpo => selected_tokens as f64,
            Aggregation::DrGrpo => (rows.len() * self.max_new) as f64,
        };
        let lr = optim::learning_rate(
            self.cfg.optim.lr,
            self.cfg.optim.schedule,
            self.cfg.optim.warmup_steps,
            self.cfg.optim.min_lr_ratio,
            self.step,
            self.cfg.steps,
        );
        let mut upd = UpdateStats::default();
        if !selected.is_empty() || self.rehearsal.is_some() {
            upd = self.update(
                &rows,
                &completions,
                &adv,
                token_adv.as_deref(),
                &weights,
                weighted,
                low_logp_cut,
                &selected,
                normaliser,
                lr,
            )?;
        }
        let update_s = t1.elapsed().as_secs_f64();
        self.step += 1;

        // Metrics.
        let lens: Vec<f32> = completions.iter().map(|c| c.tokens.len() as f32).collect();
        let mut by_component: BTreeMap<String, Vec<f32>> = BTreeMap::new();
        for gr in &groups {
            for comp in &gr.components {
                for (name, v, _) in comp {
                    by_component.entry(name.clone()).or_default().push(*v);
                }
            }
        }
        let reward_ms = MeanStd::of(&rewards);
        let passed_true = groups
            .iter()
            .flat_map(|gr| gr.verdicts.iter())
            .filter(|v| v.passed)
            .count();
        let nonzero_tokens: usize = (0..rows.len())
            .map(|i| {
                if adv[i] != 0.0 {
                    weights[i].iter().filter(|&&w| w > 0.0).count()
                } else {
                    0
                }
            })
            .sum();
        let top_cut = quantile(&all_entropies, 0.8);
        let (mut hi, mut lo) = (Vec::new(), Vec::new());
        for &h in &all_entropies {
            if top_cut.is_some_and(|c| h >= c) {
                hi.push(h);
            } else {
                lo.push(h);
            }
        }
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
        let step_time_s = t0.elapsed().as_secs_f64();
        let metrics = StepMetrics {
            step: self.step,
            elapsed_s: self.elapsed(),
            reward_mean: reward_ms.mean,
            reward_std: reward_ms.std,
            reward_components: by_component
                .iter()
                .map(|(k, v)| (k.clone(), MeanStd::of(v)))
                .collect(),
            plugin_errors: BTreeMap::new(),
            accuracy: frac(passed_true, rows.len()),
            observed_accuracy: frac(observed.iter().filter(|p| **p).count(), rows.len()),
            entropy: MeanStd::of(&all_entropies).mean,
            entropy_top20: MeanStd::of(&hi).mean,
            entropy_rest: MeanStd::of(&lo).mean,
            top1_prob: MeanStd::of(&top1).mean,
            kl: upd.kl,
            kl_by_kind: upd.kl_by_kind,
            divergence: upd.divergence,
            value_loss,
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
            truncated_frac: frac(
                completions.iter().filter(|c| !c.finished).count(),
                rows.len(),
            ),
            zero_var_frac: frac(first_zero_var, b),
            grad_norm: upd.grad_norm,
            lr,
            loss: upd.loss,
            step_time_s,
            rollout_s,
            update_s,
            tokens_per_s: total_tokens as f64 / step_time_s.max(1e-9),
            train_tokens_per_s: upd.train_tokens as f64 / update_s.max(1e-9),
        };
        let mut k = 0;
        let samples = groups
            .into_iter()
            .map(|gr| SampleGroup {
                prompt: gr.problem.prompt.clone(),
                answer: gr.problem.answer.clone(),
                samples: (0..g)
                    .map(|i| {
                        let rec = SampleRecord {
                            completion: gr.texts[i].clone(),
                            reward: gr.rewards[i],
                            components: gr.components[i].clone(),
                            passed: gr.verdicts[i].passed,
                            advantage: adv[k],
                            length: gr.completions[i].tokens.len(),
                            truncated: !gr.completions[i].finished,
                            tokens: std::mem::take(&mut token_stats[k]),
                        };
                        k += 1;
                        rec
                    })
                    .collect(),
            })
            .collect();
        Ok((metrics, samples))
    }

    /// μ clipped policy-gradient updates on the selected rows, data-parallel over the workers:
    /// each worker computes the loss of its shard of rows (normalised by the whole batch's
    /// divisor, so the shard losses add up to the batch loss) and its gradients; the gradients are
    /// summed before clipping and the AdamW step.
    #[allow(clippy::too_many_arguments)]
    fn update(
        &mut self,
        rows: &[Vec<u32>],
        completions: &[&Completion],
        adv: &[f32],
        token_adv: Option<&[Vec<f32>]>,
        weights: &[Vec<f32>],
        weighted: bool,
        low_logp_cut: Option<f32>,
        selected: &[usize],
        normaliser: f64,
        lr: f64,
    ) -> Result<UpdateStats> {
        let device = self.policy.device().clone();
        let pad = self.policy.tok.pad;
        let mut shards = Vec::new();
        for range in crate::parallel::shard_ranges(selected.len(), self.workers) {
            let part = &selected[range];
            let prompts: Vec<&[u32]> = part.iter().map(|&i| rows[i].as_slice()).collect();
            let comps: Vec<&[u32]> = part
                .iter()
                .map(|&i| completions[i].tokens.as_slice())
                .collect();
            let batch = TrainBatch::new(&prompts, &comps, pad, &device)?;
            let l = batch.l;
            let grid = |f: &dyn Fn(usize, usize) -> f32| -> Result<Tensor> {
                let v: Vec<f32> = part
                    .iter()
                    .flat_map(|&i| (0..l).map(move |j| (i, j)))
                    .map(|(i, j)| f(i, j))
                    .collect();
                Ok(Tensor::from_vec(v, (part.len(), l), &device)?)
            };
            let tok_adv = |i: usize, j: usize| match token_adv {
                Some(t) => t[i].get(j).copied().unwrap_or(0.0),
                None => adv[i],
            };
            let advantages = grid(&tok_adv)?;
            let adv_host: Vec<f32> = part
                .iter()
                .flat_map(|&i| (0..l).map(move |j| (i, j)))
                .map(|(i, j)| tok_adv(i, j))
                .collect();
            let pg_weight = if weighted {
                Some(grid(&|i, j| weights[i].get(j).copied().unwrap_or(0.0))?)
            } else {
                None
            };
            let lp_mask = match low_logp_cut {
                Some(cut) => Some(grid(&|i, j| {
                    let low = completions[i].logprobs.get(j).is_some_and(|&lp| lp <= cut);
                    if low && adv[i] < 0.0 {
                        1.0
                    } else {
                        0.0
                    }
                })?),
                None => None,
            };
            let ref_logp = match &self.reference {
                Some(r) => Some(batch.logprobs(r)?.1),
                None => None,
            };
            shards.push(Shard {
                batch,
                advantages,
                adv_host,
                pg_weight,
                lp_mask,
                ref_logp,
                old_logp: None,
            });
        }
        let a = &self.cfg.algorithm;
        let params = ShardParams {
            loss: LossParams {
                epsilon_low: a.epsilon_low,
                epsilon_high: a.epsilon_high,
                dual_clip: a.dual_clip,
                ratio: a.ratio,
                kl: self.reference.as_ref().map(|_| a.kl),
                kl_coef: a.kl_coef,
                entropy_coef: a.entropy_coef,
                lp_reg_coef: a.lp_reg_coef,
                aggregation: a.aggregation,
            },
            normaliser,
            lp_min_p: a.lp_reg_min_p,
            need_logits: a.entropy_coef > 0.0 || a.lp_reg_coef > 0.0,
        };
        let rehearsal = self.rehearsal_batch()?;
        let js = self.cfg.algorithm.divergence == Divergence::Js;
        let div_coef = self.cfg.algorithm.divergence_coef;
        let a = &self.cfg.algorithm;
        let mut stats = UpdateStats::default();
        let n_tok: usize = shards.iter().map(|s| s.batch.completion_tokens()).sum();
        let (mut clip_low, mut clip_high, mut gn) = (0usize, 0usize, 0f64);
        for it in 0..a.inner_updates {
            let model = self.policy.train_model()?;
            let outs = crate::parallel::scoped_map(&mut shards, "update", |shard| {
                shard.step(&model, &params)
            })?;
            let (mut loss, mut kl_sum, mut kl_n) = (0f64, [0f64; 3], 0usize);
            let mut stores = Vec::with_capacity(outs.len());
            for out in outs {
                loss += out.loss;
                clip_low += out.clip_low;
                clip_high += out.clip_high;
                if let Some((s, n)) = out.kl {
                    for (acc, v) in kl_sum.iter_mut().zip(s) {
                        *acc += v;
                    }
                    kl_n += n;
                }
                stores.push(out.grads);
            }
            if let Some((batch, lp0)) = &rehearsal {
                let (_, logp) = batch.logprobs(&model)?;
                let div = algo::rehearsal_divergence(&logp, lp0, &batch.mask, js)?;
                if it == 0 {
                    stats.divergence = Some(f64::from(div.to_scalar::<f32>()?));
                }
                stores.push((div * div_coef)?.backward()?);
            }
            let grads = crate::parallel::sum_grads(&self.opt_vars, stores)?;
            if !loss.is_finite() {
                return Err(EngineError::NonFinite(format!(
                    "loss is {loss} at step {}",
                    self.step + 1
                )));
            }
            if it == 0 {
                stats.loss = loss;
                if self.reference.is_some() {
                    let n = kl_n.max(1) as f64;
                    let by_kind: BTreeMap<String, f64> = ["k1", "k2", "k3"]
                        .iter()
                        .zip(kl_sum)
                        .map(|(k, s)| ((*k).to_string(), s / n))
                        .collect();
                    let used = match self.cfg.algorithm.kl {
                        algo::KlEstimator::K1 => "k1",
                        algo::KlEstimator::K2 => "k2",
                        algo::KlEstimator::K3 => "k3",
                    };
                    stats.kl = by_kind.get(used).copied();
                    stats.kl_by_kind = by_kind;
                }
            }
            let Some(grads) = grads else {
                break;
            };
            let norm = self.opt.grad_norm(&grads)?;
            gn += norm;
            self.opt.step(
                &grads,
                lr,
                optim::clip_scale(norm, self.cfg.optim.grad_clip),
            )?;
        }
        let mu = a.inner_updates as f64;
        let denom = (n_tok.max(1) as f64) * mu;
        stats.grad_norm = gn / mu;
        stats.clip_low = clip_low as f64 / denom;
        stats.clip_high = clip_high as f64 / denom;
        stats.train_tokens = shards
            .iter()
            .map(|s| s.batch.rows * (s.batch.tp + s.batch.l - 1))
            .sum::<usize>()
            * a.inner_updates;
        Ok(stats)
    }
}

/// The batch table a plugin algorithm sees.
fn algo_batch(
    groups: &[Group],
    completions: &[&Completion],
    rewards: &[f32],
    observed: &[bool],
    g: usize,
) -> AlgoBatch {
    let mut names: Vec<String> = Vec::new();
    for gr in groups {
        for comp in gr.components.iter().flatten() {
            if !names.contains(&comp.0) {
                names.push(comp.0.clone());
            }
        }
    }
    let rows = completions.len();
    let mut values = vec![0f64; names.len() * rows];
    let mut r = 0;
    for gr in groups {
        for comps in &gr.components {
            for (name, v, _) in comps {
                if let Some(c) = names.iter().position(|n| n == name) {
                    values[c * rows + r] = f64::from(*v);
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
        rewards: rewards.iter().map(|&x| f64::from(x)).collect(),
        passed: observed.to_vec(),
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
type SplitOutput = (Vec<Vec<f32>>, Option<Vec<Vec<f32>>>);

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
