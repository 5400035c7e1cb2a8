//! The sharded policy update: μ clipped policy-gradient steps on the selected rows, data-parallel
//! over the workers (each worker's shard loss is normalised by the whole batch's divisor, so the
//! shard losses add up to the batch loss), the DPH-RL rehearsal term, gradient summation,
//! global-norm clipping and AdamW. The loss itself is [`crate::algo::policy_loss`].

use std::collections::BTreeMap;

use candle_core::{Device, Tensor, D};

use super::advantages::{Advantages, TokenWeights};
use super::rollout::Rows;
use super::Trainer;
use crate::algo::{self, Aggregation, LossInputs, LossParams};
use crate::batch::TrainBatch;
use crate::config::Divergence;
use crate::error::{EngineError, Result};
use crate::model::Transformer;
use crate::optim;

/// Everything one update needs about the step's rows (replaces a ten-argument call).
pub(super) struct UpdatePlan<'a> {
    /// The step's rows.
    pub rows: &'a Rows<'a>,
    /// Their advantages.
    pub advantages: &'a Advantages,
    /// Their token weights.
    pub weights: &'a TokenWeights,
    /// Lp-Reg: sampled tokens with a log-prob at or below this cut (and a negative advantage)
    /// are protected; `None` without Lp-Reg.
    pub low_logp_cut: Option<f32>,
    /// Rows that take part: non-empty, and with a nonzero weighted advantage unless a dense term
    /// (KL, entropy, Lp-Reg) or token advantages make every row count.
    pub selected: Vec<usize>,
    /// The loss divisor standing for the whole batch (see [`Aggregation`]).
    pub normaliser: f64,
    /// Learning rate of this step.
    pub lr: f64,
}

impl UpdatePlan<'_> {
    /// Whether there is anything to update (selected rows or a rehearsal term).
    pub fn is_empty(&self, rehearsal: bool) -> bool {
        self.selected.is_empty() && !rehearsal
    }
}

/// What an update reports for the step metrics.
#[derive(Default)]
pub(super) struct UpdateStats {
    /// Loss of the first inner update.
    pub loss: f64,
    /// KL to the reference by the loss's estimator (first inner update).
    pub kl: Option<f64>,
    /// Fraction of tokens clipped below (negative advantage).
    pub clip_low: f64,
    /// Fraction of tokens clipped above (positive advantage).
    pub clip_high: f64,
    /// Mean gradient norm before clipping.
    pub grad_norm: f64,
    /// Tokens through the forward passes.
    pub train_tokens: usize,
    /// DPH-RL divergence of the rehearsal batch (first inner update).
    pub divergence: Option<f64>,
    /// Every KL estimator's value (first inner update).
    pub kl_by_kind: BTreeMap<String, f64>,
}

/// What one worker computed for one inner update.
struct ShardOut {
    loss: f64,
    grads: candle_core::backprop::GradStore,
    clip_low: usize,
    clip_high: usize,
    /// (sum of per-token KL by estimator, tokens)
    kl: Option<([f64; 3], usize)>,
}

/// One worker's share of the update batch.
struct Shard {
    /// Position among the step's shards (offsets the dropout seed).
    index: u64,
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
    /// `model.gradient_checkpointing`.
    checkpointing: bool,
    /// Seed of this inner update's LoRA dropout masks (each shard adds its index); `None`
    /// without dropout.
    dropout_seed: Option<u64>,
}

impl Shard {
    /// Packs the rows `part` of the plan, with their per-token tensors.
    fn new(
        plan: &UpdatePlan<'_>,
        part: &[usize],
        reference: Option<&Transformer>,
        pad: u32,
        device: &Device,
    ) -> Result<Self> {
        let (adv, completions) = (plan.advantages, &plan.rows.completions);
        let batch = plan.rows.train_batch(part, pad, device)?;
        let l = batch.l;
        let host = |f: &dyn Fn(usize, usize) -> f32| -> Vec<f32> {
            part.iter()
                .flat_map(|&i| (0..l).map(move |j| (i, j)))
                .map(|(i, j)| f(i, j))
                .collect()
        };
        let grid = |f: &dyn Fn(usize, usize) -> f32| -> Result<Tensor> {
            Ok(Tensor::from_vec(host(f), (part.len(), l), device)?)
        };
        let adv_host = host(&|i, j| adv.at(i, j));
        let advantages = Tensor::from_vec(adv_host.clone(), (part.len(), l), device)?;
        let pg_weight = if plan.weights.weighted {
            let w = &plan.weights.weights;
            Some(grid(&|i, j| w[i].get(j).copied().unwrap_or(0.0))?)
        } else {
            None
        };
        let lp_mask = match plan.low_logp_cut {
            Some(cut) => Some(grid(&|i, j| {
                let low = completions[i].logprobs.get(j).is_some_and(|&lp| lp <= cut);
                if low && adv.per_row[i] < 0.0 {
                    1.0
                } else {
                    0.0
                }
            })?),
            None => None,
        };
        let ref_logp = match reference {
            Some(r) => Some(batch.logprobs(r)?.1),
            None => None,
        };
        Ok(Shard {
            index: 0,
            batch,
            advantages,
            adv_host,
            pg_weight,
            lp_mask,
            ref_logp,
            old_logp: None,
        })
    }

    /// Loss and gradients of this shard; the first call records the old log-probs.
    fn step(&mut self, model: &Transformer, p: &ShardParams) -> Result<ShardOut> {
        let seeded;
        let model = match p.dropout_seed {
            Some(seed) => {
                seeded = model
                    .clone()
                    .with_dropout_seed(Some(seed.wrapping_add(self.index)));
                &seeded
            }
            None => model,
        };
        let (logits, logp, recompute) = if p.checkpointing {
            let (logits, logp, r) = self.batch.logprobs_checkpointed(model)?;
            (logits, logp, Some(r))
        } else {
            let (logits, logp) = self.batch.logprobs(model)?;
            (logits, logp, None)
        };
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
                lp_reg = Some(algo::lp_reg_penalty(&probs, &lsm, p.lp_min_p, mask)?);
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
        let (clip_low, clip_high) = self.clipped(&out.ratio, &p.loss)?;
        // All three reverse-KL estimators, whichever one the loss uses (a diagnostic).
        let kl = match &self.ref_logp {
            Some(r) => Some((
                algo::kl_sums(r, &logp, &self.batch.mask_host)?,
                self.batch.completion_tokens(),
            )),
            None => None,
        };
        // Detached: a kept store would pin the forward's activations through the optimizer step.
        let mut grads = crate::parallel::detached(out.loss.backward()?);
        if let Some(r) = recompute {
            grads = r.backward(model, grads)?;
        }
        Ok(ShardOut {
            loss,
            grads,
            clip_low,
            clip_high,
            kl,
        })
    }

    /// Tokens whose ratio left the clip range on the side their advantage pushes it:
    /// (below 1 − ε_low with a negative advantage, above 1 + ε_high with a positive one).
    fn clipped(&self, ratio: &Tensor, p: &LossParams) -> Result<(usize, usize)> {
        let ratio = ratio.flatten_all()?.to_vec1::<f32>()?;
        let (mut low, mut high) = (0, 0);
        for (j, (&r, &m)) in ratio.iter().zip(&self.batch.mask_host).enumerate() {
            if m == 0.0 {
                continue;
            }
            let av = self.adv_host[j];
            if av < 0.0 && f64::from(r) < 1.0 - p.epsilon_low {
                low += 1;
            } else if av > 0.0 && f64::from(r) > 1.0 + p.epsilon_high {
                high += 1;
            }
        }
        Ok((low, high))
    }
}

impl Trainer {
    /// The shards of `n` selected rows: one per worker, each cut into micro-batches of at most
    /// `optim.micro_batch` rows (0: no cut).
    fn shard_ranges(&self, n: usize) -> Vec<std::ops::Range<usize>> {
        let micro = self.cfg.optim.micro_batch;
        let per_worker = crate::parallel::shard_ranges(n, self.workers);
        if micro == 0 {
            return per_worker;
        }
        let shards = per_worker
            .iter()
            .map(|r| r.len().div_ceil(micro))
            .max()
            .unwrap_or(0)
            * self.workers.max(1);
        crate::parallel::shard_ranges(n, shards.max(1))
    }

    /// The update of this step's rows: which rows take part, the loss divisor of the configured
    /// aggregation, the Lp-Reg cut and the learning rate.
    pub(super) fn update_plan<'a>(
        &self,
        rows: &'a Rows<'a>,
        advantages: &'a Advantages,
        weights: &'a TokenWeights,
    ) -> UpdatePlan<'a> {
        let alg = &self.cfg.algorithm;
        let completions = &rows.completions;
        let low_logp_cut = if alg.lp_reg_coef > 0.0 {
            let all: Vec<f32> = completions
                .iter()
                .flat_map(|c| c.logprobs.iter().copied())
                .collect();
            algo::quantile(&all, alg.lp_reg_low_fraction)
        } else {
            None
        };
        let dense_terms =
            self.reference.is_some() || alg.entropy_coef > 0.0 || alg.lp_reg_coef > 0.0;
        let selected: Vec<usize> = rows
            .non_empty()
            .into_iter()
            .filter(|&i| {
                dense_terms
                    || advantages.per_token.is_some()
                    || (advantages.per_row[i] != 0.0 && weights.any(i))
            })
            .collect();
        let total_tokens = rows.total_tokens();
        let selected_tokens: usize = selected.iter().map(|&i| completions[i].tokens.len()).sum();
        let normaliser = match alg.aggregation {
            Aggregation::Grpo => rows.len() as f64,
            Aggregation::Dapo => total_tokens as f64,
            Aggregation::Bnpo => selected_tokens as f64,
            Aggregation::DrGrpo => (rows.len() * self.max_new) as f64,
        };
        let o = &self.cfg.optim;
        let lr = optim::learning_rate(
            o.lr,
            o.schedule,
            o.warmup_steps,
            o.min_lr_ratio,
            self.step,
            self.cfg.steps,
        );
        UpdatePlan {
            rows,
            advantages,
            weights,
            low_logp_cut,
            selected,
            normaliser,
            lr,
        }
    }

    /// The loss settings of this run's update.
    fn shard_params(&self, normaliser: f64) -> ShardParams {
        let a = &self.cfg.algorithm;
        ShardParams {
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
            checkpointing: self.cfg.model.gradient_checkpointing,
            dropout_seed: None,
        }
    }

    /// The seed of the LoRA dropout masks of inner update `it` of this step (a function of
    /// the run's seed, the step and `it`, so a resumed run draws the same masks); `None`
    /// without dropout.
    fn dropout_seed(&self, it: usize) -> Option<u64> {
        let ad = self.policy.adapters()?;
        (ad.spec.dropout > 0.0).then(|| {
            let mut r =
                <rand_chacha::ChaCha8Rng as rand::SeedableRng>::seed_from_u64(self.cfg.seed);
            r.set_stream(11);
            r.set_word_pos(2 * ((self.step as u128) << 16 | it as u128));
            rand::RngCore::next_u64(&mut r)
        })
    }

    /// μ clipped policy-gradient updates on the plan's rows, data-parallel over the workers:
    /// each worker computes the loss of its shard of rows (normalised by the whole batch's
    /// divisor, so the shard losses add up to the batch loss) and its gradients; the gradients are
    /// summed (with the rehearsal term's) before clipping and the AdamW step.
    pub(super) fn update(&mut self, plan: &UpdatePlan<'_>) -> Result<UpdateStats> {
        let device = self.policy.device().clone();
        let pad = self.policy.tok.pad;
        let mut shards = Vec::new();
        for range in self.shard_ranges(plan.selected.len()) {
            let part = &plan.selected[range];
            let mut shard = Shard::new(plan, part, self.reference.as_ref(), pad, &device)?;
            shard.index = shards.len() as u64;
            shards.push(shard);
        }
        let mut params = self.shard_params(plan.normaliser);
        self.progress.begin(
            crate::events::Phase::Update,
            self.step + 1,
            shards.len() * self.cfg.algorithm.inner_updates,
        );
        let rehearsal = self.rehearsal_batch()?;
        let a = &self.cfg.algorithm;
        let js = a.divergence == Divergence::Js;
        let mut stats = UpdateStats::default();
        let n_tok: usize = shards.iter().map(|s| s.batch.completion_tokens()).sum();
        let (mut clip_low, mut clip_high, mut gn) = (0usize, 0usize, 0f64);
        for it in 0..a.inner_updates {
            let model = self.policy.train_model()?;
            params.dropout_seed = self.dropout_seed(it);
            // Micro-batches: `workers` shards at a time, so at most that many hold activations.
            let mut outs = Vec::with_capacity(shards.len());
            for wave in shards.chunks_mut(self.workers.max(1)) {
                outs.extend(crate::parallel::scoped_map(wave, "update", |shard| {
                    shard.step(&model, &params)
                })?);
                self.progress.add(wave.len());
            }
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
                stores.push(crate::parallel::detached(
                    (div * a.divergence_coef)?.backward()?,
                ));
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
                    let by_kind: BTreeMap<String, f64> = algo::KlEstimator::ALL
                        .iter()
                        .zip(kl_sum)
                        .map(|(k, s)| (k.name().to_string(), s / n))
                        .collect();
                    stats.kl = by_kind.get(a.kl.name()).copied();
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
                plan.lr,
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
