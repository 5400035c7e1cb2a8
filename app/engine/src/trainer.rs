//! The GRPO trainer: rollout → verification → group advantages → clipped policy-gradient updates,
//! with held-out evaluation, typed events, and a command channel when run on its own thread.

use std::collections::BTreeMap;
use std::time::Instant;

use candle_core::{Device, Tensor};
use crossbeam_channel::{Receiver, Sender, TryRecvError};
use rand::{RngCore as _, SeedableRng as _};
use rand_chacha::ChaCha8Rng;

use crate::algo::{self, Aggregation, LossInputs, LossParams};
use crate::batch::TrainBatch;
use crate::config::RunConfig;
use crate::error::{EngineError, Result};
use crate::events::{
    EngineEvent, EvalMetrics, MeanStd, RunInfo, RunSummary, SampleGroup, SampleRecord, StepMetrics,
};
use crate::model::{Policy, Transformer};
use crate::optim::{self, AdamW, AdamWParams};
use crate::sampling::{generate_parallel, row_rngs, Completion, GenParams, SamplingConfig};
use crate::tasks::{Problem, TaskSplit, Verdict};

/// Commands a running trainer obeys between steps.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Command {
    /// Stop after the current step (the policy so far is still saved).
    Stop,
    /// Wait between steps until `Resume` or `StepOnce`.
    Pause,
    /// Continue after `Pause`.
    Resume,
    /// While paused: run exactly one step, then stay paused.
    StepOnce,
    /// Run a held-out evaluation after the current step.
    Evaluate,
}

/// Rows per generation call during evaluation.
const EVAL_CHUNK: usize = 512;

/// Owns the policy, the optimizer, the data stream and the random state of one run.
pub struct Trainer {
    cfg: RunConfig,
    policy: Policy,
    reference: Option<Transformer>,
    opt: AdamW,
    split: TaskSplit,
    rng: ChaCha8Rng,
    step: usize,
    max_new: usize,
    started: Instant,
    threads: usize,
    workers: usize,
    opt_vars: Vec<candle_core::Var>,
}

/// Models below this size run one candle thread per worker and split the batch across workers;
/// larger ones run a single worker whose ops use all cores.
pub const SMALL_MODEL_PARAMS: usize = 5_000_000;

fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get().min(16))
}

/// Tensor threads per worker (see [`RunConfig::threads`]): 1 for small models (candle's pool
/// spin-waits and ops this small do not split well: the cores go to data-parallel workers
/// instead), `configured` or all cores for larger ones.
pub fn auto_threads(params: usize, configured: usize) -> usize {
    if params < SMALL_MODEL_PARAMS {
        1
    } else if configured > 0 {
        configured
    } else {
        cores()
    }
}

/// Data-parallel workers (rollout and update shards): all cores for small models (each worker
/// single-threaded), 1 for large ones. `threads > 0` in the config sets the worker count for
/// small models.
pub fn auto_workers(params: usize, configured: usize) -> usize {
    if params >= SMALL_MODEL_PARAMS {
        1
    } else if configured > 0 {
        configured
    } else {
        cores()
    }
}

impl Trainer {
    /// Loads the policy and sets up the task split, optimizer and reference model.
    pub fn new(cfg: RunConfig) -> Result<Self> {
        cfg.validate()?;
        let device = Device::Cpu;
        let policy = Policy::load(&cfg.model.path, &device)?;
        let task = cfg.task.build()?;
        let max_new = if cfg.rollout.max_new_tokens > 0 {
            cfg.rollout.max_new_tokens
        } else {
            task.max_answer_chars() + 2
        };
        let split = TaskSplit::new(task, cfg.seed, cfg.eval.heldout_size)?;
        // Every prompt character must be known to the tokenizer, and prompt + completion must fit.
        let unk = policy.tok.encode("\u{1}")?.first().copied();
        let longest = split.task().max_prompt_chars();
        for p in split.heldout.iter().take(32) {
            let ids = policy.tok.encode(&p.prompt)?;
            if unk.is_some() && ids.iter().any(|&i| Some(i) == unk) {
                return Err(EngineError::config(
                    "task.name",
                    cfg.task.name(),
                    format!(
                        "the model's tokenizer ({}) cannot encode this task's prompts, e.g. {:?}",
                        cfg.model.path.display(),
                        p.prompt
                    ),
                ));
            }
        }
        let bos = usize::from(policy.tok.bos.is_some());
        if longest + bos + max_new > policy.cfg.max_position_embeddings {
            return Err(EngineError::config(
                "rollout.max_new_tokens",
                max_new,
                format!(
                    "prompt ({longest} tokens at most) + completion must fit the model's \
                     max_position_embeddings = {}",
                    policy.cfg.max_position_embeddings
                ),
            ));
        }
        let reference = if cfg.algorithm.kl_coef > 0.0 {
            Some(policy.snapshot()?)
        } else {
            None
        };
        let o = &cfg.optim;
        let opt_vars: Vec<candle_core::Var> =
            policy.params().iter().map(|(_, v)| v.clone()).collect();
        let opt = AdamW::new(
            opt_vars.clone(),
            AdamWParams {
                beta1: o.beta1,
                beta2: o.beta2,
                eps: o.eps,
                weight_decay: o.weight_decay,
            },
        )?;
        let threads = auto_threads(policy.num_params(), cfg.threads);
        let workers = auto_workers(policy.num_params(), cfg.threads);
        let mut rng = ChaCha8Rng::seed_from_u64(cfg.seed);
        rng.set_stream(1);
        Ok(Self {
            cfg,
            policy,
            reference,
            opt,
            split,
            rng,
            step: 0,
            max_new,
            started: Instant::now(),
            threads,
            workers,
            opt_vars,
        })
    }

    /// The configuration.
    pub fn config(&self) -> &RunConfig {
        &self.cfg
    }

    /// The policy being trained.
    pub fn policy(&self) -> &Policy {
        &self.policy
    }

    /// Steps done.
    pub fn step(&self) -> usize {
        self.step
    }

    /// Generation settings of this run with the given sampler.
    fn gen_params(&self, sampling: SamplingConfig) -> GenParams {
        GenParams {
            max_new: self.max_new,
            eos: self.policy.tok.eos,
            pad: self.policy.tok.pad,
            sampling,
            use_cache: true,
        }
    }

    /// Static facts for the `Started` event.
    pub fn info(&self) -> RunInfo {
        RunInfo {
            name: self.cfg.name.clone(),
            config_toml: self.cfg.to_toml(),
            params: self.policy.num_params(),
            model_path: self.cfg.model.path.clone(),
            task: self.cfg.task.name().to_string(),
            max_new_tokens: self.max_new,
            steps: self.cfg.steps,
            threads: self.threads,
            workers: self.workers,
        }
    }

    fn elapsed(&self) -> f64 {
        self.started.elapsed().as_secs_f64()
    }

    fn verify(&self, problem: &Problem, completion: &Completion) -> Result<(String, Verdict)> {
        let text = self.policy.tok.decode(&completion.tokens)?;
        let verdict = self.split.task().verify(problem, &text);
        Ok((text, verdict))
    }

    /// One GRPO step: sample, score, compute advantages, update. Returns the metrics and the
    /// sampled groups.
    pub fn train_step(&mut self) -> Result<(StepMetrics, Vec<SampleGroup>)> {
        let t0 = Instant::now();
        let (b, g) = (
            self.cfg.rollout.prompts_per_step,
            self.cfg.rollout.group_size,
        );
        let tok = self.policy.tok.clone();
        let problems: Vec<Problem> = (0..b).map(|_| self.split.next_train()).collect();
        let prompt_ids = problems
            .iter()
            .map(|p| tok.encode_prompt(&p.prompt))
            .collect::<Result<Vec<_>>>()?;
        let rows: Vec<Vec<u32>> = prompt_ids
            .iter()
            .flat_map(|p| std::iter::repeat_n(p.clone(), g))
            .collect();
        let view = self.policy.frozen_view()?;
        let mut rngs = row_rngs(self.rng.next_u64(), rows.len());
        let params = self.gen_params(self.cfg.rollout.sampling());
        let completions = generate_parallel(&view, &rows, &params, &mut rngs, self.workers)?;
        let rollout_s = t0.elapsed().as_secs_f64();

        // Rewards.
        let mut texts = Vec::with_capacity(rows.len());
        let mut verdicts = Vec::with_capacity(rows.len());
        for (i, c) in completions.iter().enumerate() {
            let (text, v) = self.verify(&problems[i / g], c)?;
            texts.push(text);
            verdicts.push(v);
        }
        let rewards: Vec<f32> = verdicts.iter().map(|v| v.score).collect();
        let adv = algo::grpo_advantages(&rewards, g, self.cfg.algorithm.scale_rewards)?;
        let zero_var = rewards
            .chunks_exact(g)
            .filter(|grp| grp.iter().all(|&r| r == grp[0]))
            .count();

        // Update on the rows that carry a gradient (all of them when a KL term is used).
        let t1 = Instant::now();
        let selected: Vec<usize> = (0..rows.len())
            .filter(|&i| !completions[i].tokens.is_empty())
            .filter(|&i| self.reference.is_some() || adv[i] != 0.0)
            .collect();
        let total_tokens: usize = completions.iter().map(|c| c.tokens.len()).sum();
        let normaliser = match self.cfg.algorithm.aggregation {
            Aggregation::SeqMeanTokenMean => rows.len() as f64,
            Aggregation::TokenMean => total_tokens as f64,
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
        if !selected.is_empty() {
            upd = self.update(&rows, &completions, &adv, &selected, normaliser, lr)?;
        }
        let update_s = t1.elapsed().as_secs_f64();
        self.step += 1;

        let lens: Vec<f32> = completions.iter().map(|c| c.tokens.len() as f32).collect();
        let reward_ms = MeanStd::of(&rewards);
        let mut components = BTreeMap::new();
        components.insert(self.cfg.task.name().to_string(), reward_ms);
        let step_time_s = t0.elapsed().as_secs_f64();
        let metrics = StepMetrics {
            step: self.step,
            elapsed_s: self.elapsed(),
            reward_mean: reward_ms.mean,
            reward_std: reward_ms.std,
            reward_components: components,
            accuracy: frac(verdicts.iter().filter(|v| v.passed).count(), verdicts.len()),
            entropy: {
                let all: Vec<f32> = completions
                    .iter()
                    .flat_map(|c| c.entropies.iter().copied())
                    .collect();
                MeanStd::of(&all).mean
            },
            kl: upd.kl,
            clip_low_frac: upd.clip_low,
            clip_high_frac: upd.clip_high,
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
            zero_var_frac: frac(zero_var, b),
            grad_norm: upd.grad_norm,
            lr,
            loss: upd.loss,
            step_time_s,
            rollout_s,
            update_s,
            tokens_per_s: total_tokens as f64 / step_time_s.max(1e-9),
            train_tokens_per_s: upd.train_tokens as f64 / update_s.max(1e-9),
        };
        let groups = problems
            .iter()
            .enumerate()
            .map(|(p, prob)| SampleGroup {
                prompt: prob.prompt.clone(),
                answer: prob.answer.clone(),
                samples: (p * g..(p + 1) * g)
                    .map(|i| SampleRecord {
                        completion: texts[i].clone(),
                        reward: rewards[i],
                        components: vec![(
                            self.cfg.task.name().to_string(),
                            verdicts[i].score,
                            verdicts[i].reason.clone(),
                        )],
                        passed: verdicts[i].passed,
                        advantage: adv[i],
                        length: completions[i].tokens.len(),
                        truncated: !completions[i].finished,
                    })
                    .collect(),
            })
            .collect();
        Ok((metrics, groups))
    }

    /// μ clipped policy-gradient updates on the selected rows, data-parallel over the workers:
    /// each worker computes the loss of its shard of rows (normalised by the whole batch's
    /// divisor, so the shard losses add up to the batch loss) and its gradients; the gradients are
    /// summed before clipping and the AdamW step.
    fn update(
        &mut self,
        rows: &[Vec<u32>],
        completions: &[Completion],
        adv: &[f32],
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
            let adv_host: Vec<f32> = part.iter().map(|&i| adv[i]).collect();
            let advantages = Tensor::from_vec(adv_host.clone(), part.len(), &device)?;
            let ref_logp = match &self.reference {
                Some(r) => Some(batch.logprobs(r)?.1),
                None => None,
            };
            shards.push(Shard {
                batch,
                advantages,
                adv_host,
                ref_logp,
                old_logp: None,
            });
        }
        let a = &self.cfg.algorithm;
        let params = LossParams {
            epsilon_low: a.epsilon_low,
            epsilon_high: a.epsilon_high,
            kl_coef: a.kl_coef,
            aggregation: a.aggregation,
        };
        let mut stats = UpdateStats::default();
        let n_tok: usize = shards.iter().map(|s| s.batch.completion_tokens()).sum();
        let (mut clip_low, mut clip_high, mut gn) = (0usize, 0usize, 0f64);
        for it in 0..a.inner_updates {
            let model = self.policy.train_model()?;
            let outs = crate::parallel::scoped_map(&mut shards, "update", |shard| {
                shard.step(&model, &params, normaliser)
            })?;
            let (mut loss, mut kl_sum, mut kl_n) = (0f64, 0f64, 0usize);
            let mut stores = Vec::with_capacity(outs.len());
            for out in outs {
                loss += out.loss;
                clip_low += out.clip_low;
                clip_high += out.clip_high;
                if let Some((s, n)) = out.kl {
                    kl_sum += s;
                    kl_n += n;
                }
                stores.push(out.grads);
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
                    stats.kl = Some(kl_sum / kl_n.max(1) as f64);
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

    /// Held-out evaluation: greedy accuracy, sampled pass@1 and unbiased pass@k.
    pub fn evaluate(&mut self) -> Result<EvalMetrics> {
        let t0 = Instant::now();
        let view = self.policy.frozen_view()?;
        let tok = &self.policy.tok;
        let heldout = &self.split.heldout;
        let prompts = heldout
            .iter()
            .map(|p| tok.encode_prompt(&p.prompt))
            .collect::<Result<Vec<_>>>()?;
        // Evaluation has its own random stream so it never shifts the training stream.
        let mut rng = ChaCha8Rng::seed_from_u64(self.cfg.seed ^ 0x00e7_a100_0000_0000);
        rng.set_stream(self.step as u64 + 2);
        let greedy = self.gen_params(SamplingConfig::greedy());
        let sampled = self.gen_params(SamplingConfig {
            temperature: self.cfg.eval.temperature,
            ..self.cfg.rollout.sampling()
        });
        let mut greedy_ok = 0usize;
        for (ci, ps) in prompts.chunks(EVAL_CHUNK).enumerate() {
            let mut rngs = row_rngs(0, ps.len());
            let outs = generate_parallel(&view, ps, &greedy, &mut rngs, self.workers)?;
            for (j, c) in outs.iter().enumerate() {
                greedy_ok += usize::from(self.verify(&heldout[ci * EVAL_CHUNK + j], c)?.1.passed);
            }
        }
        let k = self.cfg.eval_samples();
        let rows: Vec<(usize, &Vec<u32>)> = prompts
            .iter()
            .enumerate()
            .flat_map(|(i, p)| std::iter::repeat_n((i, p), k))
            .collect();
        let mut correct = vec![0usize; prompts.len()];
        let mut score_sum = 0f64;
        for part in rows.chunks(EVAL_CHUNK) {
            let ps: Vec<Vec<u32>> = part.iter().map(|(_, p)| (*p).clone()).collect();
            let mut rngs = row_rngs(rng.next_u64(), ps.len());
            let outs = generate_parallel(&view, &ps, &sampled, &mut rngs, self.workers)?;
            for ((i, _), c) in part.iter().zip(&outs) {
                let v = self.verify(&heldout[*i], c)?.1;
                correct[*i] += usize::from(v.passed);
                score_sum += f64::from(v.score);
            }
        }
        let n = prompts.len().max(1) as f64;
        let mut ks: Vec<usize> = std::iter::successors(Some(1usize), |x| Some(x * 2))
            .take_while(|&x| x <= k)
            .collect();
        if ks.last() != Some(&k) {
            ks.push(k);
        }
        let pass_at_k = ks
            .iter()
            .map(|&kk| {
                let s: f64 = correct
                    .iter()
                    .filter_map(|&c| algo::pass_at_k(k, c, kk))
                    .sum();
                (kk, s / n)
            })
            .collect::<BTreeMap<_, _>>();
        Ok(EvalMetrics {
            step: self.step,
            elapsed_s: self.elapsed(),
            greedy_accuracy: greedy_ok as f64 / n,
            pass_at_1: pass_at_k.get(&1).copied().unwrap_or(0.0),
            pass_at_k,
            mean_score: score_sum / (n * k.max(1) as f64),
            problems: prompts.len(),
            samples: k,
            eval_time_s: t0.elapsed().as_secs_f64(),
        })
    }

    /// Runs to the configured number of steps (or until stopped), emitting events to `sink`.
    /// Evaluates at step 0, every `eval.every` steps and at the end; saves the final policy under
    /// `<output>/policy`.
    pub fn run(
        &mut self,
        sink: &mut dyn FnMut(EngineEvent),
        commands: Option<&Receiver<Command>>,
    ) -> Result<RunSummary> {
        self.started = Instant::now();
        sink(EngineEvent::Started(self.info()));
        let initial = self.evaluate()?;
        sink(EngineEvent::Eval(initial.clone()));
        let mut last = Some(initial.clone());
        let mut paused = false;
        let mut step_budget: Option<usize> = None;
        let mut stopped = false;
        let mut step_time = 0f64;
        let start_step = self.step;
        while self.step < self.cfg.steps {
            let mut eval_now = false;
            // Commands: block while paused, poll otherwise.
            if let Some(rx) = commands {
                loop {
                    let cmd = if paused && step_budget.is_none() {
                        // Paused: wait for a command; a vanished controller stops the run.
                        rx.recv().ok()
                    } else {
                        match rx.try_recv() {
                            Ok(c) => Some(c),
                            // Nothing pending, or nobody controls the run: keep training.
                            Err(TryRecvError::Empty | TryRecvError::Disconnected) => break,
                        }
                    };
                    match cmd {
                        None | Some(Command::Stop) => {
                            stopped = true;
                            break;
                        }
                        Some(Command::Pause) => paused = true,
                        Some(Command::Resume) => {
                            paused = false;
                            step_budget = None;
                        }
                        Some(Command::StepOnce) => step_budget = Some(step_budget.unwrap_or(0) + 1),
                        Some(Command::Evaluate) => eval_now = true,
                    }
                }
            }
            if stopped {
                break;
            }
            let (m, groups) = self.train_step()?;
            step_time += m.step_time_s;
            sink(EngineEvent::Samples {
                step: m.step,
                groups,
            });
            sink(EngineEvent::Step(m));
            if let Some(b) = step_budget.as_mut() {
                *b -= 1;
                if *b == 0 {
                    step_budget = None;
                }
            }
            let every = self.cfg.eval.every;
            let is_last = self.step == self.cfg.steps;
            if eval_now || is_last || (every > 0 && self.step.is_multiple_of(every)) {
                let e = self.evaluate()?;
                sink(EngineEvent::Eval(e.clone()));
                last = Some(e);
            }
        }
        if stopped && last.as_ref().is_some_and(|e| e.step != self.step) {
            let e = self.evaluate()?;
            sink(EngineEvent::Eval(e.clone()));
            last = Some(e);
        }
        let policy_dir = self.cfg.output_dir().join("policy");
        self.policy.save(&policy_dir)?;
        sink(EngineEvent::Log {
            message: format!("final policy written to {}", policy_dir.display()),
        });
        let done = self.step - start_step;
        let summary = RunSummary {
            steps: self.step,
            elapsed_s: self.elapsed(),
            initial: Some(initial),
            last,
            mean_step_s: step_time / done.max(1) as f64,
            policy_dir: Some(policy_dir),
            stopped,
        };
        sink(EngineEvent::Done(summary.clone()));
        Ok(summary)
    }
}

/// One worker's share of the update batch.
struct Shard {
    batch: TrainBatch,
    advantages: Tensor,
    adv_host: Vec<f32>,
    ref_logp: Option<Tensor>,
    old_logp: Option<Tensor>,
}

/// What one worker computed for one inner update.
struct ShardOut {
    loss: f64,
    grads: candle_core::backprop::GradStore,
    clip_low: usize,
    clip_high: usize,
    /// (sum of per-token KL, tokens)
    kl: Option<(f64, usize)>,
}

impl Shard {
    /// Loss and gradients of this shard; the first call records the old log-probs.
    fn step(&mut self, model: &Transformer, p: &LossParams, normaliser: f64) -> Result<ShardOut> {
        let (_logits, logp) = self.batch.logprobs(model)?;
        let old = match &self.old_logp {
            Some(o) => o.clone(),
            None => {
                let o = logp.detach();
                self.old_logp = Some(o.clone());
                o
            }
        };
        let out = algo::policy_loss(
            &LossInputs {
                logp: &logp,
                old_logp: &old,
                ref_logp: self.ref_logp.as_ref(),
                advantages: &self.advantages,
                mask: &self.batch.mask,
                normaliser,
            },
            p,
        )?;
        let loss = out.loss.to_scalar::<f32>()? as f64;
        let ratio = out.ratio.flatten_all()?.to_vec1::<f32>()?;
        let (mut clip_low, mut clip_high) = (0, 0);
        for (j, (&r, &m)) in ratio.iter().zip(&self.batch.mask_host).enumerate() {
            if m == 0.0 {
                continue;
            }
            let av = self.adv_host[j / self.batch.l];
            if av < 0.0 && f64::from(r) < 1.0 - p.epsilon_low {
                clip_low += 1;
            } else if av > 0.0 && f64::from(r) > 1.0 + p.epsilon_high {
                clip_high += 1;
            }
        }
        let kl = match &out.kl {
            Some(kl) => {
                let v = kl.flatten_all()?.to_vec1::<f32>()?;
                let s: f64 = v
                    .iter()
                    .zip(&self.batch.mask_host)
                    .map(|(k, m)| f64::from(k * m))
                    .sum();
                Some((s, self.batch.completion_tokens()))
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
}

fn frac(a: usize, b: usize) -> f64 {
    if b == 0 {
        0.0
    } else {
        a as f64 / b as f64
    }
}

/// A trainer running on its own named thread.
pub struct RunHandle {
    /// Send commands (stop, pause, ...).
    pub commands: Sender<Command>,
    /// Receive events; the channel is bounded, so a slow listener slows the trainer rather than
    /// losing events.
    pub events: Receiver<EngineEvent>,
    /// The thread; joins to the run's result.
    pub thread: std::thread::JoinHandle<Result<RunSummary>>,
}

/// Starts a run on a thread named `engine`. Setup errors (bad model folder, ...) arrive as a
/// `Failed` event and as the thread's result.
pub fn spawn(cfg: RunConfig) -> std::io::Result<RunHandle> {
    let (ctx, crx) = crossbeam_channel::bounded(64);
    let (etx, erx) = crossbeam_channel::bounded(1024);
    let thread = std::thread::Builder::new()
        .name("engine".into())
        .spawn(move || {
            let result = Trainer::new(cfg).and_then(|mut t| {
                let mut sink = |e: EngineEvent| {
                    // A dropped receiver means nobody listens any more; keep training.
                    let _ = etx.send(e);
                };
                t.run(&mut sink, Some(&crx))
            });
            if let Err(e) = &result {
                let _ = etx.send(EngineEvent::Failed {
                    error: e.to_string(),
                });
            }
            result
        })?;
    Ok(RunHandle {
        commands: ctx,
        events: erx,
        thread,
    })
}
