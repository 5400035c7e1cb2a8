//! Typed events the engine emits; the CLI, the store and the GUI are listeners on this stream.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::checkpoint::ResumePoint;

/// Mean and standard deviation of a quantity over a batch.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct MeanStd {
    /// Mean.
    pub mean: f64,
    /// Population standard deviation.
    pub std: f64,
}

impl MeanStd {
    /// Of a slice (zeros when empty).
    pub fn of(v: &[f32]) -> Self {
        if v.is_empty() {
            return Self::default();
        }
        let n = v.len() as f64;
        let mean = v.iter().map(|&x| x as f64).sum::<f64>() / n;
        let var = v.iter().map(|&x| (x as f64 - mean).powi(2)).sum::<f64>() / n;
        Self {
            mean,
            std: var.sqrt(),
        }
    }
}

/// What one policy-update step measured.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct StepMetrics {
    /// Updates done so far (1 after the first step).
    pub step: usize,
    /// Seconds since the run started.
    pub elapsed_s: f64,
    /// Mean total reward of the sampled completions.
    pub reward_mean: f64,
    /// Standard deviation of the total reward.
    pub reward_std: f64,
    /// Mean/std per reward component (by component name).
    pub reward_components: BTreeMap<String, MeanStd>,
    /// Errors of plugin components during the step (by component name): a panic, an error
    /// value, a non-finite result or a missed deadline. Absent when none occurred.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub plugin_errors: BTreeMap<String, usize>,
    /// Fraction of sampled completions the verifier passed.
    pub accuracy: f64,
    /// Fraction of completions the (possibly noisy) reward reported as passed.
    pub observed_accuracy: f64,
    /// Mean per-token entropy (nats) of the policy over completion tokens.
    pub entropy: f64,
    /// Mean entropy of the 20% highest-entropy tokens ("forking" tokens).
    pub entropy_top20: f64,
    /// Mean entropy of the other 80% of tokens.
    pub entropy_rest: f64,
    /// Mean probability of the most likely token at each sampled position (concentration).
    pub top1_prob: f64,
    /// Fraction of sampled tokens that received a non-zero advantage (and weight).
    pub nonzero_adv_frac: f64,
    /// Mean number of distinct completions per group (answer diversity).
    pub distinct_answers: f64,
    /// Mean per-token k3 KL to the reference policy (when a reference is used).
    pub kl: Option<f64>,
    /// Mean per-token reverse KL to the reference by estimator (k1, k2, k3), when a reference is
    /// used.
    pub kl_by_kind: BTreeMap<String, f64>,
    /// PPO value-head loss (mean squared error to the GAE returns), when a critic is used.
    pub value_loss: Option<f64>,
    /// DPH-RL divergence to the initial policy on the rehearsal batch (when used).
    pub divergence: Option<f64>,
    /// Fraction of tokens whose ratio was clipped at 1 − ε_low (negative advantage).
    pub clip_low_frac: f64,
    /// Fraction of tokens whose ratio was clipped at 1 + ε_high (positive advantage).
    pub clip_high_frac: f64,
    /// Mean completion length in tokens.
    pub response_len_mean: f64,
    /// Longest completion in tokens.
    pub response_len_max: usize,
    /// Fraction of completions cut at the length limit (no end-of-sequence).
    pub truncated_frac: f64,
    /// Fraction of groups whose rewards were all equal (no learning signal).
    pub zero_var_frac: f64,
    /// Global gradient norm before clipping (mean over inner updates).
    pub grad_norm: f64,
    /// Learning rate used.
    pub lr: f64,
    /// Loss of the first inner update.
    pub loss: f64,
    /// Wall time of the step.
    pub step_time_s: f64,
    /// Of which sampling.
    pub rollout_s: f64,
    /// Of which the policy update(s).
    pub update_s: f64,
    /// Completion tokens sampled per second of step time.
    pub tokens_per_s: f64,
    /// Training tokens (prompt + completion, forward + backward) per second of update time.
    pub train_tokens_per_s: f64,
}

/// Held-out evaluation results.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct EvalMetrics {
    /// Updates done when evaluated (0 = before training).
    pub step: usize,
    /// Seconds since the run started.
    pub elapsed_s: f64,
    /// Greedy-decoding accuracy (pass@1, greedy).
    pub greedy_accuracy: f64,
    /// Sampled pass@1 (mean fraction correct over the samples).
    pub pass_at_1: f64,
    /// Unbiased pass@k for k = 1, 2, 4, ... and the number of samples.
    pub pass_at_k: BTreeMap<usize, f64>,
    /// Mean verifier score of the sampled completions (partial credit).
    pub mean_score: f64,
    /// Held-out problems.
    pub problems: usize,
    /// Samples per problem.
    pub samples: usize,
    /// Wall time of the evaluation.
    pub eval_time_s: f64,
    /// Errors of plugin components during the evaluation (by component name). Absent when none
    /// occurred.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub plugin_errors: BTreeMap<String, usize>,
}

/// One sampled completion with its reward breakdown.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SampleRecord {
    /// Completion text (decoded, without end-of-sequence).
    pub completion: String,
    /// Total reward.
    pub reward: f32,
    /// Per-component rewards: (name, score, reason).
    pub components: Vec<(String, f32, String)>,
    /// Whether the verifier passed it.
    pub passed: bool,
    /// Advantage given to its tokens.
    pub advantage: f32,
    /// Length in tokens.
    pub length: usize,
    /// Cut at the length limit.
    pub truncated: bool,
    /// Per-token statistics of the completion.
    pub tokens: TokenStats,
}

/// Per-token statistics of one completion (one entry per generated token).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct TokenStats {
    /// Log-probability of the token under the sampling policy (temperature 1).
    pub logprob: Vec<f32>,
    /// Entropy (nats) of the policy's next-token distribution at the position.
    pub entropy: Vec<f32>,
    /// Advantage the token was trained with (0 where a token selection or mask dropped it).
    pub advantage: Vec<f32>,
}

/// The G completions of one prompt.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SampleGroup {
    /// Prompt text.
    pub prompt: String,
    /// Reference answer.
    pub answer: String,
    /// The completions.
    pub samples: Vec<SampleRecord>,
}

/// Static facts about a run, sent once at the start.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RunInfo {
    /// Run name.
    pub name: String,
    /// The fully resolved configuration as TOML.
    pub config_toml: String,
    /// Policy parameters.
    pub params: usize,
    /// Model folder.
    pub model_path: PathBuf,
    /// Task name.
    pub task: String,
    /// Longest completion in tokens.
    pub max_new_tokens: usize,
    /// Steps planned.
    pub steps: usize,
    /// Tensor threads per worker.
    pub threads: usize,
    /// Data-parallel workers (threads splitting each batch).
    pub workers: usize,
    /// Random seed.
    pub seed: u64,
    /// Version of the engine that ran it.
    pub engine_version: String,
    /// SHA-256 of the task definition and its held-out set (identifies the data a run saw).
    pub dataset_hash: String,
    /// Step the run starts from (0, or the checkpoint's step when resumed).
    pub start_step: usize,
}

/// End-of-run summary.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RunSummary {
    /// Steps completed.
    pub steps: usize,
    /// Total wall time.
    pub elapsed_s: f64,
    /// Evaluation before training.
    pub initial: Option<EvalMetrics>,
    /// Last evaluation.
    pub last: Option<EvalMetrics>,
    /// Mean step time.
    pub mean_step_s: f64,
    /// Where the final policy was written, if it was.
    pub policy_dir: Option<PathBuf>,
    /// Whether the run was stopped before its last step.
    pub stopped: bool,
}

/// Everything the engine tells its listeners.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum EngineEvent {
    /// The run is set up.
    Started(RunInfo),
    /// One update step finished.
    Step(StepMetrics),
    /// A held-out evaluation finished.
    Eval(EvalMetrics),
    /// The sampled groups of a step.
    Samples {
        /// Step the samples were drawn for (1-based, like [`StepMetrics::step`]).
        step: usize,
        /// The groups.
        groups: Vec<SampleGroup>,
    },
    /// The resume state after a step. The listener that stores the run's history writes it
    /// (see [`ResumePoint::write_slot`]) after storing the step, so the checkpoint on disk never
    /// runs ahead of the history. An opaque handle (it encodes itself when written); not
    /// serialized.
    #[serde(skip)]
    Checkpoint(ResumePoint),
    /// A policy was saved as a Hugging Face folder (kept checkpoints and the final policy).
    PolicySaved {
        /// Updates done when it was saved.
        step: usize,
        /// The folder.
        path: PathBuf,
        /// `checkpoint` (kept every `output.keep_every` steps) or `final`.
        kind: String,
    },
    /// A human-readable note.
    Log {
        /// The text.
        message: String,
    },
    /// The run ended normally or was stopped.
    Done(RunSummary),
    /// The run failed.
    Failed {
        /// The error, with its causes.
        error: String,
    },
}

/// What a step is doing now, shared between the engine thread (which writes it) and a listener
/// that shows it (the desktop app polls it every frame): the phase, the step, and the units of
/// work done out of the expected total (rollout: generated tokens, a finished row counting its
/// unused budget, out of rows × `max_new_tokens`; update: rows through forward and backward).
/// Plain atomics, so reading never blocks the engine; not part of the run history.
#[derive(Debug, Default)]
pub struct Progress {
    phase: std::sync::atomic::AtomicU8,
    step: std::sync::atomic::AtomicUsize,
    done: std::sync::atomic::AtomicUsize,
    total: std::sync::atomic::AtomicUsize,
}

/// A phase of a step, as [`Progress`] reports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Phase {
    /// Between steps, or not started.
    Idle = 0,
    /// Sampling completions.
    Rollout = 1,
    /// Forward and backward passes of the update.
    Update = 2,
    /// Held-out evaluation.
    Eval = 3,
}

/// A reading of [`Progress`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ProgressNow {
    /// The phase.
    pub phase: Phase,
    /// The step it belongs to (1-based; 0 for the step-0 evaluation).
    pub step: usize,
    /// Units done.
    pub done: usize,
    /// Units expected.
    pub total: usize,
}

impl ProgressNow {
    /// "rollout 1234/2048 tokens", "update 3/8 micro-batches"; `None` between steps.
    pub fn describe(&self) -> Option<String> {
        let (what, unit) = match self.phase {
            Phase::Idle => return None,
            Phase::Rollout => ("rollout", "tokens"),
            Phase::Update => ("update", "micro-batches"),
            Phase::Eval => ("evaluation", "tokens"),
        };
        Some(format!("{what} {}/{} {unit}", self.done, self.total))
    }
}

impl Progress {
    /// Starts `phase` of `step` with `total` units expected.
    pub fn begin(&self, phase: Phase, step: usize, total: usize) {
        use std::sync::atomic::Ordering::Relaxed;
        self.done.store(0, Relaxed);
        self.total.store(total, Relaxed);
        self.step.store(step, Relaxed);
        self.phase.store(phase as u8, Relaxed);
    }

    /// Adds `n` units done.
    pub fn add(&self, n: usize) {
        self.done.fetch_add(n, std::sync::atomic::Ordering::Relaxed);
    }

    /// Back to idle.
    pub fn end(&self) {
        self.phase
            .store(Phase::Idle as u8, std::sync::atomic::Ordering::Relaxed);
    }

    /// The current reading.
    pub fn now(&self) -> ProgressNow {
        use std::sync::atomic::Ordering::Relaxed;
        let phase = match self.phase.load(Relaxed) {
            1 => Phase::Rollout,
            2 => Phase::Update,
            3 => Phase::Eval,
            _ => Phase::Idle,
        };
        ProgressNow {
            phase,
            step: self.step.load(Relaxed),
            done: self.done.load(Relaxed).min(self.total.load(Relaxed)),
            total: self.total.load(Relaxed),
        }
    }
}
