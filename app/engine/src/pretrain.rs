//! Supervised warm start of the embedded default policy.
//!
//! RLVR starts from a base model that already solves some problems; the embedded default does the
//! same at toy scale: a tiny Qwen2-style model trained from scratch by next-token cross-entropy on
//! the reference answers of the built-in tasks (train streams only, never the evaluation
//! partition), stopped after a fixed number of steps so that it is *partly* competent. The run is
//! reproducible: same config, same machine → same weights.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Instant;

use candle_core::Device;
use serde::{Deserialize, Serialize};

use crate::batch::TrainBatch;
use crate::error::{EngineError, Result};
use crate::model::{ModelConfig, Policy};
use crate::optim::{self, AdamW, AdamWParams, Schedule};
use crate::sampling::{generate, row_rngs, GenParams, SamplingConfig};
use crate::tasks::{Problem, TaskConfig, TaskSplit, ALPHABET};
use crate::tokenizer::Tok;

/// Architecture of the tiny model (Qwen2 layout).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TinyArch {
    /// Width. Default 128.
    pub hidden_size: usize,
    /// SwiGLU width. Default 352.
    pub intermediate_size: usize,
    /// Decoder blocks. Default 4.
    pub layers: usize,
    /// Query heads. Default 4.
    pub heads: usize,
    /// Key/value heads. Default 2.
    pub kv_heads: usize,
    /// Longest sequence. Default 64.
    pub max_positions: usize,
}

impl Default for TinyArch {
    fn default() -> Self {
        Self {
            hidden_size: 128,
            intermediate_size: 352,
            layers: 4,
            heads: 4,
            kv_heads: 2,
            max_positions: 64,
        }
    }
}

/// `rlvr-studio pretrain` configuration.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PretrainConfig {
    /// Seed of initialisation and data. Default 0.
    pub seed: u64,
    /// Optimizer steps. Default 400.
    pub steps: usize,
    /// Sequences per step (spread round-robin over the tasks). Default 64.
    pub batch_size: usize,
    /// Peak learning rate (linear warm-up, cosine decay). Default 2e-3.
    pub lr: f64,
    /// Warm-up steps. Default 20.
    pub warmup_steps: usize,
    /// Held-out problems per task for the progress report. Default 100.
    pub heldout_size: usize,
    /// Architecture.
    pub arch: TinyArch,
    /// The task mixture.
    pub tasks: Vec<TaskConfig>,
}

impl Default for PretrainConfig {
    fn default() -> Self {
        Self {
            seed: 0,
            steps: 400,
            batch_size: 64,
            lr: 2e-3,
            warmup_steps: 20,
            heldout_size: 100,
            arch: TinyArch::default(),
            tasks: vec![TaskConfig::default()],
        }
    }
}

/// Progress of a pretraining run.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PretrainProgress {
    /// Steps done.
    pub step: usize,
    /// Steps planned.
    pub steps: usize,
    /// Cross-entropy of the last batch (nats per answer token).
    pub loss: f64,
    /// Greedy held-out accuracy per task, when measured at this step.
    pub accuracy: Option<BTreeMap<String, f64>>,
    /// Seconds since start.
    pub elapsed_s: f64,
}

/// Trains the tiny policy and writes it as a Hugging Face folder to `out`.
pub fn pretrain(
    cfg: &PretrainConfig,
    out: &Path,
    progress: &mut dyn FnMut(&PretrainProgress),
) -> Result<BTreeMap<String, f64>> {
    if cfg.tasks.is_empty() {
        return Err(EngineError::config(
            "tasks",
            "[]",
            "at least one [[tasks]] entry",
        ));
    }
    if cfg.steps == 0 || cfg.batch_size == 0 {
        return Err(EngineError::config(
            "steps",
            cfg.steps,
            "steps and batch_size must be positive",
        ));
    }
    let t0 = Instant::now();
    let device = Device::Cpu;
    let tok = Tok::char_level(ALPHABET)?;
    let mut mcfg = ModelConfig::tiny(tok.vocab_size(), 1, tok.eos, tok.pad);
    let a = &cfg.arch;
    mcfg.hidden_size = a.hidden_size;
    mcfg.intermediate_size = a.intermediate_size;
    mcfg.num_hidden_layers = a.layers;
    mcfg.num_attention_heads = a.heads;
    mcfg.num_key_value_heads = Some(a.kv_heads);
    mcfg.max_position_embeddings = a.max_positions;
    let policy = Policy::init(mcfg, tok.clone(), cfg.seed, &device)?;
    let mut splits = cfg
        .tasks
        .iter()
        .map(|t| {
            TaskSplit::new(crate::tasks::build(t)?, cfg.seed, cfg.heldout_size)
                .map_err(EngineError::from)
        })
        .collect::<Result<Vec<_>>>()?;
    let mut opt = AdamW::new(
        policy.params().iter().map(|(_, v)| v.clone()).collect(),
        AdamWParams::default(),
    )?;
    let report_every = (cfg.steps / 10).max(1);
    let mut last_acc = BTreeMap::new();
    for step in 0..cfg.steps {
        let problems: Vec<Problem> = (0..cfg.batch_size)
            .map(|i| {
                let n = splits.len();
                splits[i % n].next_train()
            })
            .collect();
        let prompts = problems
            .iter()
            .map(|p| tok.encode_prompt(&p.prompt))
            .collect::<Result<Vec<_>>>()?;
        let answers = problems
            .iter()
            .map(|p| {
                let mut ids = tok.encode(&p.answer)?;
                ids.push(tok.eos);
                Ok(ids)
            })
            .collect::<Result<Vec<_>>>()?;
        let pr: Vec<&[u32]> = prompts.iter().map(Vec::as_slice).collect();
        let an: Vec<&[u32]> = answers.iter().map(Vec::as_slice).collect();
        let batch = TrainBatch::new(&pr, &an, tok.pad, &device)?;
        let model = policy.train_model()?;
        let (_, logp) = batch.logprobs(&model)?;
        let n_tok = batch.completion_tokens().max(1) as f64;
        let loss = ((logp * &batch.mask)?.sum_all()? / -n_tok)?;
        let loss_v = loss.to_scalar::<f32>()? as f64;
        if !loss_v.is_finite() {
            return Err(EngineError::NonFinite(format!(
                "pretraining loss {loss_v} at step {step}"
            )));
        }
        let grads = loss.backward()?;
        let norm = opt.grad_norm(&grads)?;
        let lr = optim::learning_rate(
            cfg.lr,
            Schedule::Cosine,
            cfg.warmup_steps,
            0.05,
            step,
            cfg.steps,
        );
        opt.step(&grads, lr, optim::clip_scale(norm, 1.0))?;
        let done = step + 1;
        let accuracy = if done % report_every == 0 || done == cfg.steps {
            last_acc = heldout_accuracy(&policy, &splits)?;
            Some(last_acc.clone())
        } else {
            None
        };
        progress(&PretrainProgress {
            step: done,
            steps: cfg.steps,
            loss: loss_v,
            accuracy,
            elapsed_s: t0.elapsed().as_secs_f64(),
        });
    }
    policy.save(out)?;
    let cfg_text = toml::to_string_pretty(cfg).unwrap_or_default();
    let p = out.join("pretrain.toml");
    std::fs::write(&p, cfg_text).map_err(|e| EngineError::io(&p, e))?;
    splits.clear();
    Ok(last_acc)
}

/// Greedy accuracy of `policy` on each split's held-out set.
pub fn heldout_accuracy(policy: &Policy, splits: &[TaskSplit]) -> Result<BTreeMap<String, f64>> {
    let view = policy.frozen_view()?;
    let tok = &policy.tok;
    let mut out = BTreeMap::new();
    for s in splits {
        let prompts = s
            .heldout
            .iter()
            .map(|p| tok.encode_prompt(&p.prompt))
            .collect::<Result<Vec<_>>>()?;
        let max_new = s.task().max_answer_chars() + 2;
        let params = GenParams {
            max_new,
            eos: tok.stop.clone(),
            pad: tok.pad,
            sampling: SamplingConfig::greedy(),
            use_cache: true,
            hook: None,
            progress: None,
        };
        let mut rngs = row_rngs(0, prompts.len());
        let outs = generate(&view, &prompts, &params, &mut rngs)?;
        let mut ok = 0usize;
        for (p, c) in s.heldout.iter().zip(&outs) {
            ok += usize::from(s.task().verify(p, &tok.decode(&c.tokens)?).passed);
        }
        out.insert(
            s.task().name().to_string(),
            ok as f64 / s.heldout.len().max(1) as f64,
        );
    }
    Ok(out)
}
