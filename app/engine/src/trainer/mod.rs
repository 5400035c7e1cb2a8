//! The GRPO trainer: rollout → verification → group advantages → clipped policy-gradient updates,
//! with held-out evaluation, typed events, and a command channel when run on its own thread.
//! The step itself is [`Trainer::train_step`] (`step`), built from one module per job:
//! `rollout` and `scoring` (groups and their rewards), `advantages` (estimator, `critic`,
//! `plugin_algo`; token weights), `rehearsal` (DPH-RL), `update` (the sharded update) and
//! `metrics` (step metrics and sample records).

mod advantages;
mod checkpoint;
mod components;
mod critic;
mod metrics;
mod plugin_algo;
mod rehearsal;
mod rollout;
mod scoring;
mod step;
mod update;

pub use checkpoint::{
    checkpoint_step, config_hash, latest_checkpoint, ResumePoint, ResumeState, CHECKPOINT_SLOTS,
};

use std::collections::BTreeMap;
use std::time::Instant;

use candle_core::Device;
use crossbeam_channel::{Receiver, Sender, TryRecvError};
use rand::{RngCore as _, SeedableRng as _};
use rand_chacha::ChaCha8Rng;

use crate::algo::{self, advantage::AdvantageEstimator};
use crate::config::RunConfig;
use crate::error::{EngineError, Result};
use crate::events::{EngineEvent, EvalMetrics, RunInfo, RunSummary};
use crate::extensions::Extensions;
use crate::model::{Policy, Transformer};
use crate::optim::{AdamW, AdamWParams};
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
    /// Save the policy now as a Hugging Face folder (`checkpoints/step-N`, recorded like the
    /// periodic ones) and hand over a resume checkpoint; while paused it happens at once.
    Checkpoint,
}

/// Each failing plugin component's error count and first message.
type ErrorCounts = BTreeMap<String, (usize, String)>;

/// The run loop's state between steps, changed by commands.
#[derive(Default)]
struct Control {
    /// Waiting for `Resume` or `StepOnce`.
    paused: bool,
    /// Steps still to run while paused (`StepOnce`).
    step_budget: Option<usize>,
    /// `Stop` arrived (or the controller vanished).
    stopped: bool,
    /// `Evaluate` arrived: evaluate after the next step.
    eval_now: bool,
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
    estimator: Box<dyn AdvantageEstimator>,
    noise_rng: ChaCha8Rng,
    rehearsal: Option<rehearsal::Rehearsal>,
    critic: Option<critic::Critic>,
    components: components::RunComponents,
    /// The run's id in the history, stamped into checkpoints (see [`Trainer::set_run_id`]).
    run_id: Option<i64>,
    /// [`config_hash`] of the config, stamped into checkpoints.
    config_hash: String,
    /// What the current step is doing (read by a progress display).
    progress: std::sync::Arc<crate::events::Progress>,
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

/// What a run needs before its first step, each part checked: the model folder, the memory
/// estimate, the task split, and prompts that the tokenizer encodes and the context fits.
struct Setup {
    policy: Policy,
    split: TaskSplit,
    max_new: usize,
}

impl Setup {
    /// In this order: `config.json` (sizes bounded before any arithmetic), the task, the
    /// memory estimate (before the weights are allocated), the model folder, the split, the
    /// prompts.
    fn checked(cfg: &RunConfig) -> Result<Self> {
        let Planned {
            model_cfg,
            task,
            tok,
            max_new,
            shape,
        } = Planned::read(cfg)?;
        crate::memory::check(&model_cfg, &shape)?;
        let device = run_device(cfg)?;
        let mut policy = Policy::load_with(&cfg.model.path, model_cfg, tok, &device)?;
        if let Some(spec) = crate::model::LoraSpec::from_config(&cfg.model.lora)? {
            policy.attach_lora(spec, cfg.seed)?;
        }
        let split = TaskSplit::new(task, cfg.seed, cfg.eval.heldout_size)?;
        check_prompts(cfg, &policy, &split, max_new)?;
        Ok(Self {
            policy,
            split,
            max_new,
        })
    }
}

/// What a run's start reads before loading the weights: `config.json`, the task, the tokenizer
/// (with the chat template when configured), the completion length and the step's shape.
struct Planned {
    model_cfg: crate::model::ModelConfig,
    task: Box<dyn crate::tasks::Task>,
    tok: crate::tokenizer::Tok,
    max_new: usize,
    shape: crate::memory::RunShape,
}

impl Planned {
    fn read(cfg: &RunConfig) -> Result<Self> {
        let model_cfg = Policy::read_config(&cfg.model.path)?;
        let task = crate::tasks::build(&cfg.task)?;
        let max_new = if cfg.rollout.max_new_tokens > 0 {
            cfg.rollout.max_new_tokens
        } else {
            task.max_answer_chars() + 2
        };
        let mut tok = Policy::read_tokenizer(&cfg.model.path, &model_cfg)?;
        use_chat(cfg, &mut tok)?;
        let overhead = tok.prompt_overhead()?;
        let shape = memory_shape(cfg, &model_cfg, task.max_prompt_chars() + overhead, max_new);
        Ok(Self {
            model_cfg,
            task,
            tok,
            max_new,
            shape,
        })
    }
}

/// The memory estimate of a run as its start computes it (before it refuses a run that would
/// not fit), without loading the weights: what the desktop app's form shows.
pub fn memory_estimate(
    cfg: &RunConfig,
) -> Result<(crate::memory::MemoryEstimate, crate::memory::RunShape)> {
    let p = Planned::read(cfg)?;
    Ok((crate::memory::estimate(&p.model_cfg, &p.shape), p.shape))
}

/// The device of `model.device`: `auto` is the first CUDA GPU when this build has CUDA and one
/// is present, else the CPU; `cuda:N` is refused, naming the key, when the build has no CUDA
/// or the GPU cannot be opened.
pub fn run_device(cfg: &RunConfig) -> Result<Device> {
    use crate::config::DeviceChoice;
    match cfg.model.device_choice()? {
        DeviceChoice::Cpu => Ok(Device::Cpu),
        DeviceChoice::Auto if candle_core::utils::cuda_is_available() => {
            Ok(Device::new_cuda(0).unwrap_or(Device::Cpu))
        }
        DeviceChoice::Auto => Ok(Device::Cpu),
        DeviceChoice::Cuda(n) if !candle_core::utils::cuda_is_available() => {
            Err(EngineError::config(
                "model.device",
                format!("\"cuda:{n}\""),
                "\"cpu\" or \"auto\": this build has no CUDA (build with `cargo build --release --features cuda` on a machine with the CUDA toolkit)",
            ))
        }
        DeviceChoice::Cuda(n) => Device::new_cuda(n).map_err(|e| {
            EngineError::config(
                "model.device",
                format!("\"cuda:{n}\""),
                format!("a GPU this machine has: {e}"),
            )
        }),
    }
}

/// `[model] chat_template = true`: prompts go through the folder's chat template (refused,
/// naming the key and the folder, when it has none or the template fails on a plain prompt).
fn use_chat(cfg: &RunConfig, tok: &mut crate::tokenizer::Tok) -> Result<()> {
    let m = &cfg.model;
    if !m.chat_template {
        return Ok(());
    }
    let chat = crate::tokenizer::ChatPrompt {
        system: (!m.system_prompt.is_empty()).then(|| m.system_prompt.clone()),
        enable_thinking: m.enable_thinking,
    };
    tok.use_chat(chat).map_err(|e| {
        EngineError::config(
            "model.chat_template",
            true,
            format!(
                "a model folder with a working chat template: {} ({e})",
                m.path.display()
            ),
        )
    })
}

/// The shape of a step for [`crate::memory::estimate`].
fn memory_shape(
    cfg: &RunConfig,
    model: &crate::model::ModelConfig,
    prompt_chars: usize,
    max_new: usize,
) -> crate::memory::RunShape {
    let alg = &cfg.algorithm;
    let rehearsal = if alg.divergence == crate::config::Divergence::None {
        0
    } else {
        alg.rehearsal_batch
    };
    let rows = cfg
        .rollout
        .prompts_per_step
        .saturating_mul(cfg.rollout.group_size)
        .saturating_add(rehearsal);
    let workers = auto_workers(model.num_params(), cfg.threads);
    let micro_rows = match cfg.optim.micro_batch {
        0 => rows,
        m => m.saturating_mul(workers).min(rows),
    };
    crate::memory::RunShape {
        rows,
        // A token is at least one character with the tokenizers this engine meets; + bos. A
        // row longer than the context is refused by `check_prompts`, naming its cause.
        tokens: prompt_chars
            .saturating_add(max_new)
            .saturating_add(1)
            .min(model.max_position_embeddings),
        reference: alg.kl_coef > 0.0,
        critic: alg.advantage == "ppo",
        checkpoints: cfg.output.checkpoint_every > 0,
        lora: crate::memory::LoraShape::of(&cfg.model.lora),
        micro_rows,
        checkpointing: cfg.model.gradient_checkpointing,
    }
}

/// Every prompt character must be known to the tokenizer, and prompt + completion must fit
/// the model's context. A dataset's problem that does not fit is blamed on its file and line
/// (its prompt, or its answer when the completion length is derived from the answers).
fn check_prompts(
    cfg: &RunConfig,
    policy: &Policy,
    split: &TaskSplit,
    max_new: usize,
) -> Result<()> {
    let unk = policy.tok.encode("\u{1}")?.first().copied();
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
    let task = split.task();
    let longest = task.max_prompt_chars();
    // The BOS, or the chat template's frame around the prompt.
    let bos = policy.tok.prompt_overhead()?;
    let ctx = policy.cfg.max_position_embeddings;
    if longest + bos + max_new <= ctx {
        return Ok(());
    }
    let model = cfg.model.path.join("config.json");
    let dataset = |answer: bool, msg: String| {
        let (path, line) = task.longest_origin(answer)?;
        Some(EngineError::from(crate::tasks::TaskError::Dataset {
            path,
            line,
            msg,
        }))
    };
    let derived = cfg.rollout.max_new_tokens == 0;
    let blame = if longest + bos + 1 > ctx {
        dataset(
            false,
            format!(
                "this prompt ({longest} characters, up to {} tokens with bos or chat template) does not fit the \
                 model's context: max_position_embeddings = {ctx} in {}; shorten or drop it, or \
                 use a model with a longer context",
                longest + bos,
                model.display()
            ),
        )
    } else if derived {
        let answer = task.max_answer_chars();
        dataset(
            true,
            format!(
                "this answer ({answer} characters) makes completions of up to {max_new} tokens, \
                 which with the longest prompt ({longest} characters) exceed the model's context: \
                 max_position_embeddings = {ctx} in {}; shorten the answer, or set \
                 rollout.max_new_tokens to at most {}",
                model.display(),
                ctx.saturating_sub(longest + bos)
            ),
        )
    } else {
        None
    };
    Err(blame.unwrap_or_else(|| {
        EngineError::config(
            "rollout.max_new_tokens",
            max_new,
            format!(
                "prompt ({longest} tokens at most) + completion must fit the model's \
                 max_position_embeddings = {ctx} ({})",
                model.display()
            ),
        )
    }))
}

/// Checks what a run needs before it starts, without starting it: the config (against `ext`),
/// the model folder (loaded and fully checked), the memory estimate, the task and its split,
/// and prompts that fit the model. The launcher calls it before recording a run, so a run that
/// cannot start leaves no record; [`Trainer::with_extensions`] makes the same checks.
pub fn preflight(cfg: &RunConfig, ext: &Extensions) -> Result<()> {
    cfg.validate_with(ext)?;
    Setup::checked(cfg).map(drop)
}

impl Trainer {
    /// Loads the policy and sets up the task split, optimizer and reference model.
    pub fn new(cfg: RunConfig) -> Result<Self> {
        Self::with_extensions(cfg, &Extensions::none())
    }

    /// [`Trainer::new`] with plugin components: the config may name any component `ext` offers
    /// (verifier, reward components, sampler, algorithm).
    pub fn with_extensions(cfg: RunConfig, ext: &Extensions) -> Result<Self> {
        cfg.validate_with(ext)?;
        let components = components::RunComponents::build(&cfg, ext)?;
        let Setup {
            policy,
            split,
            max_new,
        } = Setup::checked(&cfg)?;
        let reference = if cfg.algorithm.kl_coef > 0.0 {
            Some(policy.reference()?)
        } else {
            None
        };
        let o = &cfg.optim;
        let opt_vars: Vec<candle_core::Var> =
            policy.trainable().iter().map(|(_, v)| v.clone()).collect();
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
        let mut noise_rng = ChaCha8Rng::seed_from_u64(cfg.seed);
        noise_rng.set_stream(3);
        // A plugin algorithm falls back to GRPO for a step where it fails.
        let (info, params) = if components.algorithm.is_some() {
            let fallback = crate::config::AlgorithmConfig::default();
            fallback.estimator()?
        } else {
            cfg.algorithm.estimator()?
        };
        let estimator = crate::algo::advantage::build(info, &params)?;
        let critic = match estimator.critic() {
            Some(cp) => Some(critic::Critic::new(&policy, cp)?),
            None => None,
        };
        Ok(Self {
            config_hash: config_hash(&cfg),
            run_id: None,
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
            estimator,
            noise_rng,
            rehearsal: None,
            critic,
            components,
            progress: Default::default(),
        })
    }

    /// What the current step is doing: phase, and work done out of the expected total.
    pub fn progress(&self) -> std::sync::Arc<crate::events::Progress> {
        self.progress.clone()
    }

    /// Reports progress into `progress` (e.g. one made before the trainer, for a handle).
    pub fn set_progress(&mut self, progress: std::sync::Arc<crate::events::Progress>) {
        self.progress = progress;
    }

    /// Sets the run's history id: stamped into every checkpoint, and a checkpoint stamped
    /// with another id is refused by [`Trainer::load_checkpoint`].
    pub fn set_run_id(&mut self, id: Option<i64>) {
        self.run_id = id;
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
            eos: self.policy.tok.stop.clone(),
            pad: self.policy.tok.pad,
            sampling,
            use_cache: true,
            hook: None,
            progress: Some(self.progress.clone()),
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
            seed: self.cfg.seed,
            engine_version: env!("CARGO_PKG_VERSION").to_string(),
            dataset_hash: self
                .split
                .fingerprint(&serde_json::to_string(&self.cfg.task).unwrap_or_default()),
            start_step: self.step,
        }
    }

    fn elapsed(&self) -> f64 {
        self.started.elapsed().as_secs_f64()
    }

    /// Verdicts of the run's verifier for completions of held-out problems (batched); plugin
    /// errors count toward the evaluation.
    fn verify_all(&self, pairs: &[(&Problem, &Completion)]) -> Result<Vec<Verdict>> {
        let texts = pairs
            .iter()
            .map(|(_, c)| self.policy.tok.decode(&c.tokens))
            .collect::<Result<Vec<_>>>()?;
        let items: Vec<(&Problem, &str)> = pairs
            .iter()
            .zip(&texts)
            .map(|((p, _), t)| (*p, t.as_str()))
            .collect();
        Ok(self
            .components
            .verify(self.split.task(), &items, &self.components.eval_errors)
            .into_iter()
            .map(|(v, _)| v)
            .collect())
    }

    /// Held-out evaluation: greedy accuracy, sampled pass@1 and unbiased pass@k, with the
    /// errors of plugin components during it.
    pub fn evaluate(&mut self) -> Result<EvalMetrics> {
        Ok(self.evaluate_with_errors()?.0)
    }

    /// [`Trainer::evaluate`], plus each failing component's error count and first message.
    fn evaluate_with_errors(&mut self) -> Result<(EvalMetrics, ErrorCounts)> {
        let t0 = Instant::now();
        let view = self.policy.frozen_view()?;
        let tok = &self.policy.tok;
        let heldout = &self.split.heldout;
        let prompts = heldout
            .iter()
            .map(|p| tok.encode_prompt(&p.prompt))
            .collect::<Result<Vec<_>>>()?;
        let units = prompts.len() * (1 + self.cfg.eval_samples()) * self.max_new;
        self.progress
            .begin(crate::events::Phase::Eval, self.step, units);
        // Evaluation has its own random stream so it never shifts the training stream.
        let mut rng = ChaCha8Rng::seed_from_u64(self.cfg.seed ^ 0x00e7_a100_0000_0000);
        rng.set_stream(self.step as u64 + 2);
        let greedy = self.gen_params(SamplingConfig::greedy());
        let sampled = self.gen_params(SamplingConfig {
            temperature: self.cfg.eval.temperature,
            ..SamplingConfig::from(&self.cfg.rollout)
        });
        let mut greedy_ok = 0usize;
        for (ci, ps) in prompts.chunks(EVAL_CHUNK).enumerate() {
            let mut rngs = row_rngs(0, ps.len());
            let outs = generate_parallel(&view, ps, &greedy, &mut rngs, self.workers)?;
            let pairs: Vec<(&Problem, &Completion)> = outs
                .iter()
                .enumerate()
                .map(|(j, c)| (&heldout[ci * EVAL_CHUNK + j], c))
                .collect();
            greedy_ok += self.verify_all(&pairs)?.iter().filter(|v| v.passed).count();
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
            let pairs: Vec<(&Problem, &Completion)> = part
                .iter()
                .zip(&outs)
                .map(|((i, _), c)| (&heldout[*i], c))
                .collect();
            for ((i, _), v) in part.iter().zip(self.verify_all(&pairs)?) {
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
        let errors = self.components.eval_errors.drain();
        self.progress.end();
        let metrics = EvalMetrics {
            step: self.step,
            elapsed_s: self.elapsed(),
            greedy_accuracy: greedy_ok as f64 / n,
            pass_at_1: pass_at_k.get(&1).copied().unwrap_or(0.0),
            pass_at_k,
            mean_score: score_sum / (n * k.max(1) as f64),
            problems: prompts.len(),
            samples: k,
            eval_time_s: t0.elapsed().as_secs_f64(),
            plugin_errors: errors.iter().map(|(k, (n, _))| (k.clone(), *n)).collect(),
        };
        Ok((metrics, errors))
    }

    /// Evaluates and reports: a `Log` per failing plugin component, then the `Eval` event.
    fn evaluate_and_report(&mut self, sink: &mut dyn FnMut(EngineEvent)) -> Result<EvalMetrics> {
        let (e, errors) = self.evaluate_with_errors()?;
        for (name, (count, first)) in errors {
            sink(EngineEvent::Log {
                message: format!(
                    "plugin component {name}: {count} error(s) in the evaluation at step {}; \
                     first: {first}",
                    e.step
                ),
            });
        }
        sink(EngineEvent::Eval(e.clone()));
        Ok(e)
    }

    /// One training step, reported: a `Log` per failing plugin component (its count goes into
    /// the metrics' `plugin_errors`), then `Samples` and `Step`. Returns the step's wall time.
    fn step_and_report(&mut self, sink: &mut dyn FnMut(EngineEvent)) -> Result<f64> {
        let (mut m, groups) = self.train_step()?;
        for (name, (count, first)) in self.components.errors.drain() {
            sink(EngineEvent::Log {
                message: format!(
                    "plugin component {name}: {count} error(s) in step {}; first: {first}",
                    m.step
                ),
            });
            m.plugin_errors.insert(name, count);
        }
        let time = m.step_time_s;
        sink(EngineEvent::Samples {
            step: m.step,
            groups,
        });
        sink(EngineEvent::Step(m));
        Ok(time)
    }

    /// Obeys one command (`None`: the controller vanished, which stops the run). A `Pause` is
    /// acknowledged with a `Log` "paused at step N" (N = steps done), also when already paused.
    fn apply_command(
        &mut self,
        cmd: Option<Command>,
        ctl: &mut Control,
        sink: &mut dyn FnMut(EngineEvent),
    ) -> Result<()> {
        match cmd {
            None | Some(Command::Stop) => ctl.stopped = true,
            Some(Command::Pause) => {
                ctl.paused = true;
                sink(EngineEvent::Log {
                    message: format!("paused at step {}", self.step),
                });
            }
            Some(Command::Resume) => {
                ctl.paused = false;
                ctl.step_budget = None;
            }
            Some(Command::StepOnce) => ctl.step_budget = Some(ctl.step_budget.unwrap_or(0) + 1),
            Some(Command::Evaluate) => ctl.eval_now = true,
            Some(Command::Checkpoint) => {
                self.keep_policy(sink)?;
                self.emit_checkpoint(sink)?;
            }
        }
        Ok(())
    }

    /// Reads commands before a step: blocks while paused (without a step budget), otherwise
    /// takes what is pending. Stops reading at `Stop`.
    fn poll_commands(
        &mut self,
        rx: &Receiver<Command>,
        ctl: &mut Control,
        sink: &mut dyn FnMut(EngineEvent),
    ) -> Result<()> {
        while !ctl.stopped {
            let cmd = if ctl.paused && ctl.step_budget.is_none() {
                // Paused: wait for a command; a vanished controller stops the run.
                rx.recv().ok()
            } else {
                match rx.try_recv() {
                    Ok(c) => Some(c),
                    // Nothing pending, or nobody controls the run: keep training.
                    Err(TryRecvError::Empty | TryRecvError::Disconnected) => break,
                }
            };
            self.apply_command(cmd, ctl, sink)?;
        }
        Ok(())
    }

    /// Hands the listener a resume checkpoint of the current state.
    fn emit_checkpoint(&self, sink: &mut dyn FnMut(EngineEvent)) -> Result<()> {
        sink(EngineEvent::Checkpoint(ResumePoint(std::sync::Arc::new(
            self.resume_state()?,
        ))));
        Ok(())
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
        // A resumed run was evaluated before it stopped; a fresh one is evaluated at step 0.
        let initial = if self.step == 0 {
            Some(self.evaluate_and_report(sink)?)
        } else {
            None
        };
        let mut last = initial.clone();
        let mut ctl = Control::default();
        let mut step_time = 0f64;
        let start_step = self.step;
        let mut checkpointed = self.step;
        while self.step < self.cfg.steps {
            if let Some(rx) = commands {
                self.poll_commands(rx, &mut ctl, sink)?;
            }
            if ctl.stopped {
                break;
            }
            step_time += self.step_and_report(sink)?;
            if let Some(b) = ctl.step_budget.as_mut() {
                *b -= 1;
                if *b == 0 {
                    ctl.step_budget = None;
                }
            }
            let every = self.cfg.eval.every;
            let is_last = self.step == self.cfg.steps;
            let eval_now = std::mem::take(&mut ctl.eval_now);
            if eval_now || is_last || (every > 0 && self.step.is_multiple_of(every)) {
                last = Some(self.evaluate_and_report(sink)?);
            }
            let keep = self.cfg.output.keep_every;
            if keep > 0 && self.step.is_multiple_of(keep) {
                self.keep_policy(sink)?;
            }
            let ck = self.cfg.output.checkpoint_every;
            if ck > 0 && (is_last || self.step.is_multiple_of(ck)) {
                self.emit_checkpoint(sink)?;
                checkpointed = self.step;
            }
        }
        if ctl.stopped && last.as_ref().is_some_and(|e| e.step != self.step) {
            last = Some(self.evaluate_and_report(sink)?);
        }
        if checkpointed != self.step {
            self.emit_checkpoint(sink)?;
        }
        let policy_dir = self.cfg.output_dir().join("policy");
        self.policy.save(&policy_dir)?;
        sink(EngineEvent::PolicySaved {
            step: self.step,
            path: policy_dir.clone(),
            kind: "final".into(),
        });
        let done = self.step - start_step;
        let summary = RunSummary {
            steps: self.step,
            elapsed_s: self.elapsed(),
            initial,
            last,
            mean_step_s: step_time / done.max(1) as f64,
            policy_dir: Some(policy_dir),
            stopped: ctl.stopped,
        };
        sink(EngineEvent::Done(summary.clone()));
        Ok(summary)
    }
}

impl Trainer {
    /// Saves the policy as `checkpoints/step-N` (a Hugging Face folder) and reports it.
    fn keep_policy(&self, sink: &mut dyn FnMut(EngineEvent)) -> Result<()> {
        let dir = self
            .cfg
            .output_dir()
            .join("checkpoints")
            .join(format!("step-{:06}", self.step));
        self.policy.save(&dir)?;
        sink(EngineEvent::PolicySaved {
            step: self.step,
            path: dir,
            kind: "checkpoint".into(),
        });
        Ok(())
    }
}

pub(crate) fn frac(a: usize, b: usize) -> f64 {
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
    /// What the current step is doing (see [`crate::events::Progress`]).
    pub progress: std::sync::Arc<crate::events::Progress>,
    /// Receive events; the channel is bounded, so a slow listener slows the trainer rather than
    /// losing events.
    pub events: Receiver<EngineEvent>,
    /// The thread; joins to the run's result.
    pub thread: std::thread::JoinHandle<Result<RunSummary>>,
}

/// Starts a run on a thread named `engine`; with `resume`, the trainer first restores
/// the newest checkpoint of its output folder. Setup errors (bad model folder, ...) arrive as a
/// `Failed` event and as the thread's result.
pub fn spawn(cfg: RunConfig) -> std::io::Result<RunHandle> {
    spawn_with(cfg, false)
}

/// [`spawn`], optionally resuming from the run's checkpoint.
pub fn spawn_with(cfg: RunConfig, resume: bool) -> std::io::Result<RunHandle> {
    spawn_ext(cfg, resume, Extensions::none())
}

/// [`spawn_with`] with plugin components.
pub fn spawn_ext(cfg: RunConfig, resume: bool, ext: Extensions) -> std::io::Result<RunHandle> {
    spawn_run(cfg, resume, ext, None)
}

/// [`spawn_ext`] for the run `run_id` of a history: its checkpoints carry the id, and a
/// resume refuses a checkpoint of another run.
pub fn spawn_run(
    cfg: RunConfig,
    resume: bool,
    ext: Extensions,
    run_id: Option<i64>,
) -> std::io::Result<RunHandle> {
    let (ctx, crx) = crossbeam_channel::bounded(64);
    let (etx, erx) = crossbeam_channel::bounded(1024);
    let progress = std::sync::Arc::new(crate::events::Progress::default());
    let shared = progress.clone();
    let thread = std::thread::Builder::new()
        .name("engine".into())
        .spawn(move || {
            let result = Trainer::with_extensions(cfg, &ext).and_then(|mut t| {
                t.set_run_id(run_id);
                t.set_progress(shared);
                if resume {
                    let dir = t.cfg.output_dir();
                    let (path, _) = latest_checkpoint(&dir)?
                        .ok_or_else(|| EngineError::model(&dir, "no checkpoint to resume from"))?;
                    t.load_checkpoint(&path)?;
                }
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
        progress,
        events: erx,
        thread,
    })
}
