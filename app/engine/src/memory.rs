//! The memory a run needs, estimated before anything is allocated, so that a config whose
//! sizes are each in range but together exceed the machine is refused with the keys to lower
//! instead of ending in an allocation failure (SIGABRT) minutes later.
//!
//! The estimate ([`estimate`], pure) adds, in f32:
//! - the policy's weights, their gradients and the AdamW moments (1 + 1 + 2 copies);
//! - the frozen KL reference when `algorithm.kl_coef > 0` (1 copy), and the resume snapshot the
//!   trainer hands to the writer after every step (a copy of the weights plus the encoded
//!   document: weights, moments and reference) when checkpoints are written;
//! - the PPO critic (a linear head, with gradient and moments);
//! - the activations of the training forward and backward over every row of a step
//!   (`prompts_per_step × group_size`, plus the DPH-RL rehearsal rows) × (prompt + completion)
//!   tokens: per token and layer [`ACT_FLOATS_PER_WIDTH`] × (hidden + intermediate) floats plus
//!   the attention scores (3 × heads × tokens), and per token 4 × vocab floats of logits;
//! - a fixed [`BASE_BYTES`] for the program, tokenizer and task.
//!
//! The per-width factor is calibrated against the peak RSS of one-step runs of the default
//! policy (see `ACT_FLOATS_PER_WIDTH`). [`check`] compares the estimate with `MemAvailable`
//! from `/proc/meminfo` (other systems: no check).

use crate::error::{EngineError, Result};
use crate::model::ModelConfig;

/// Floats kept per token, per layer and per unit of (hidden + intermediate) width by the
/// training forward + backward (each op allocates its output; the backward keeps the forward's
/// tensors), with the rollout's and evaluation's share and the allocator's slack folded in.
/// Calibrated with `/usr/bin/time -v` on one-step runs of `app/presets/default.toml` (default
/// policy: hidden 128, intermediate 352, 4 layers, vocab 50; countdown: ≤ 10 prompt
/// characters + 11 new tokens; G = 8): peak RSS 0.168 GB at 16 prompts per step, 0.534 GB at
/// 64, 1.131 GB at 128 and 2.277 GB at 256 (the reliability report measured 0.51 and 2.27 GB).
/// That is ≈ 1.12 MB per row of ≈ 22 tokens, ≈ 12,700 floats per token: about 6 per layer and
/// width unit once the logits and attention-score terms are taken off.
pub const ACT_FLOATS_PER_WIDTH: f64 = 6.0;

/// Program, tokenizer, task and allocator slack, independent of the shapes (the intercept of
/// the calibration above, rounded up).
pub const BASE_BYTES: f64 = 50e6;

/// What a step holds at its peak, as the estimate needs it.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RunShape {
    /// Rows trained per step: prompts per step × group size (+ rehearsal rows).
    pub rows: usize,
    /// Tokens per row: the longest prompt (with `bos`) + the most new tokens.
    pub tokens: usize,
    /// Whether a frozen KL reference copy is kept (`algorithm.kl_coef > 0`).
    pub reference: bool,
    /// Whether the PPO critic is trained.
    pub critic: bool,
    /// Whether resume checkpoints are taken (`output.checkpoint_every > 0`).
    pub checkpoints: bool,
    /// LoRA adapters (`model.lora.rank > 0`): the base is frozen and held once.
    pub lora: Option<LoraShape>,
    /// Rows whose activations are held at once (`optim.micro_batch` × workers; `rows` when
    /// the update takes every row at once).
    pub micro_rows: usize,
    /// `model.gradient_checkpointing`: only each layer's input is kept, and one layer's
    /// activations at a time are recomputed.
    pub checkpointing: bool,
}

/// The adapters of a LoRA run, as the estimate needs them.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct LoraShape {
    /// Rank.
    pub rank: usize,
    /// Which of the block's linear layers (`rlvr_core::config::LORA_MODULES` order) have one.
    pub modules: [bool; 7],
}

impl LoraShape {
    /// Adapters of rank `rank` on every linear layer (PEFT's `all-linear`).
    pub fn all_linear(rank: usize) -> Self {
        Self {
            rank,
            modules: [true; 7],
        }
    }

    /// The adapters of `[model.lora]`; `None` when `rank = 0`.
    pub fn of(l: &rlvr_core::config::LoraSection) -> Option<Self> {
        let modules = l.modules().ok()?;
        l.enabled().then(|| Self {
            rank: l.rank,
            modules: rlvr_core::config::LORA_MODULES.map(|m| modules.contains(&m)),
        })
    }
}

/// The estimate, in bytes, by part.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct MemoryEstimate {
    /// Weights, gradients and AdamW moments.
    pub training_state: f64,
    /// The KL reference copy.
    pub reference: f64,
    /// The per-step resume snapshot and its encoded document.
    pub checkpoint: f64,
    /// The PPO critic with its gradient and moments.
    pub critic: f64,
    /// Activations of the training forward + backward.
    pub activations: f64,
    /// [`BASE_BYTES`].
    pub base: f64,
}

impl MemoryEstimate {
    /// One line: the total, the state and the activations of `run`, and `MemAvailable`.
    pub fn summary(&self, run: &RunShape) -> String {
        let avail = available().map_or(String::new(), |a| format!("; {} available", gb(a)));
        format!(
            "about {}: {} weights and optimizer state{}, {} activations of {} rows × {} tokens at once{avail}",
            gb(self.total()),
            gb(self.training_state + self.reference + self.checkpoint + self.critic),
            if run.lora.is_some() { " (LoRA)" } else { "" },
            gb(self.activations),
            run.micro_rows.clamp(1, run.rows.max(1)),
            run.tokens,
        )
    }

    /// The sum of the parts.
    pub fn total(&self) -> f64 {
        self.training_state
            + self.reference
            + self.checkpoint
            + self.critic
            + self.activations
            + self.base
    }
}

/// The estimate for a model of shape `model` (validated: sizes within bounds) running `run`.
/// Computed in f64, so no product of sizes can overflow.
pub fn estimate(model: &ModelConfig, run: &RunShape) -> MemoryEstimate {
    const F32: f64 = 4.0;
    let params = model.num_params() as f64;
    let weights = params * F32;
    let reference = if run.reference { weights } else { 0.0 };
    let checkpoint = if run.checkpoints {
        // The snapshot's weight copy, and the document: weights, m, v (+ reference).
        weights + 3.0 * weights + reference
    } else {
        0.0
    };
    let critic = if run.critic {
        4.0 * (model.hidden_size as f64 + 1.0) * F32
    } else {
        0.0
    };
    let (layers, width) = (
        model.num_hidden_layers as f64,
        (model.hidden_size + model.intermediate_size) as f64,
    );
    let tokens = run.tokens as f64;
    let attention = 3.0 * model.num_attention_heads as f64 * tokens;
    let per_layer = ACT_FLOATS_PER_WIDTH * width + attention;
    // Checkpointing keeps each layer's input (hidden floats) and one layer's activations.
    let kept_layers = if run.checkpointing {
        layers * model.hidden_size as f64 + per_layer
    } else {
        layers * per_layer
    };
    let per_token = kept_layers + 4.0 * model.vocab_size as f64;
    let rows = run.micro_rows.clamp(1, run.rows.max(1)) as f64;
    let activations = rows * tokens * per_token * F32;
    if let Some(l) = run.lora {
        return estimate_lora(model, run, &l, activations);
    }
    MemoryEstimate {
        training_state: 4.0 * weights,
        reference,
        checkpoint,
        critic,
        activations,
        base: BASE_BYTES,
    }
}

/// Parameters of LoRA adapters `lora`: `rank × (in + out)` for each targeted linear layer of
/// each block. Qwen2.5-0.5B at rank 16 on every linear layer (`all-linear`): 8.8 M.
pub fn lora_params(model: &ModelConfig, lora: &LoraShape) -> usize {
    let (d, i, hd) = (model.hidden_size, model.intermediate_size, model.head_dim());
    let (q, kv) = (model.num_attention_heads * hd, model.kv_heads() * hd);
    // q, k, v, o, gate, up, down: in + out.
    let sizes = [d + q, d + kv, d + kv, q + d, d + i, d + i, i + d];
    let per_layer: usize = sizes
        .iter()
        .zip(lora.modules)
        .filter(|(_, on)| *on)
        .map(|(s, _)| s)
        .sum();
    model.num_hidden_layers * per_layer * lora.rank
}

/// The estimate of a LoRA run ([`lora_params`]): the base weights held once, frozen (no
/// gradient, no moments; the KL reference is the base with the adapters off, so no copy), the
/// adapters trained (weights, gradients and the two AdamW moments), a resume snapshot of the
/// adapters only, and `activations` as for full training (the backward still runs through every
/// layer to reach the adapters).
fn estimate_lora(
    model: &ModelConfig,
    run: &RunShape,
    lora: &LoraShape,
    activations: f64,
) -> MemoryEstimate {
    const F32: f64 = 4.0;
    let base = model.num_params() as f64 * F32;
    let adapters = lora_params(model, lora) as f64 * F32;
    MemoryEstimate {
        training_state: base + 4.0 * adapters,
        reference: 0.0,
        checkpoint: if run.checkpoints { 4.0 * adapters } else { 0.0 },
        critic: if run.critic {
            4.0 * (model.hidden_size as f64 + 1.0) * F32
        } else {
            0.0
        },
        activations,
        base: BASE_BYTES,
    }
}

/// `MemAvailable` from `/proc/meminfo`, in bytes; `None` where there is no such file.
pub fn available() -> Option<f64> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    parse_meminfo(&text)
}

fn parse_meminfo(text: &str) -> Option<f64> {
    let kb: f64 = text
        .lines()
        .find_map(|l| l.strip_prefix("MemAvailable:"))?
        .trim()
        .strip_suffix("kB")?
        .trim()
        .parse()
        .ok()?;
    Some(kb * 1024.0)
}

fn gb(bytes: f64) -> String {
    format!("{:.2} GB", bytes / 1e9)
}

/// Refuses a run whose estimate exceeds `available` bytes, with the estimate, the available
/// memory and the keys that lower it; `available = None` (unknown) passes.
pub fn check_against(
    model: &ModelConfig,
    run: &RunShape,
    available: Option<f64>,
) -> Result<MemoryEstimate> {
    let est = estimate(model, run);
    let Some(avail) = available else {
        return Ok(est);
    };
    if est.total() > avail {
        return Err(EngineError::Memory(format!(
            "this run needs about {} of memory but {} is available (MemAvailable in \
             /proc/meminfo): {} for the model's weights, gradients and optimizer state{}, {} \
             for the activations of {} rows × {} tokens at once; lower \
             rollout.prompts_per_step, rollout.group_size or rollout.max_new_tokens, set \
             optim.micro_batch or model.gradient_checkpointing = true{} (or use a smaller \
             model)",
            gb(est.total()),
            gb(avail),
            gb(est.training_state + est.reference + est.checkpoint + est.critic),
            if run.reference {
                " (with the KL reference copy)"
            } else {
                ""
            },
            gb(est.activations),
            run.micro_rows.clamp(1, run.rows.max(1)),
            run.tokens,
            if run.lora.is_none() {
                ", train LoRA adapters (model.lora.rank)"
            } else {
                ""
            }
        )));
    }
    Ok(est)
}

/// [`check_against`] the memory available now.
pub fn check(model: &ModelConfig, run: &RunShape) -> Result<MemoryEstimate> {
    check_against(model, run, available())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn run(rows: usize, tokens: usize) -> RunShape {
        RunShape {
            rows,
            tokens,
            reference: false,
            critic: false,
            checkpoints: true,
            lora: None,
            micro_rows: rows,
            checkpointing: false,
        }
    }

    fn default_policy() -> ModelConfig {
        ModelConfig::tiny(50, 1, 2, 0)
    }

    /// Qwen2.5-0.5B (hidden 896, 14/2 heads of 64, intermediate 4864, 24 layers, vocab
    /// 151,936, tied): 494.0 M parameters, 8.8 M LoRA parameters at rank 16 (PEFT's count for
    /// all-linear targets), and a LoRA run holds far less state than full training.
    #[test]
    fn lora_of_qwen25_half_b() {
        let mut m = ModelConfig::tiny(151_936, 1, 2, 0);
        (m.hidden_size, m.intermediate_size, m.num_hidden_layers) = (896, 4864, 24);
        (m.num_attention_heads, m.num_key_value_heads) = (14, Some(2));
        m.tie_word_embeddings = true;
        assert_eq!(lora_params(&m, &LoraShape::all_linear(16)), 8_798_208);
        let mut qv = LoraShape::all_linear(16);
        qv.modules = [true, false, true, false, false, false, false];
        // q: 896 + 896, v: 896 + 128, per layer, × 24 layers × 16.
        assert_eq!(lora_params(&m, &qv), 24 * 16 * (1792 + 1024));
        let r = RunShape {
            reference: true,
            ..run(64, 512)
        };
        let l = RunShape {
            lora: Some(LoraShape::all_linear(16)),
            ..r
        };
        let (full, lora) = (estimate(&m, &r), estimate(&m, &l));
        assert_eq!(lora.reference, 0.0);
        assert_eq!(lora.activations, full.activations);
        assert!(lora.training_state < full.training_state / 3.5);
        assert!(lora.total() < full.total());
    }

    #[test]
    fn default_policy_matches_the_measured_peaks() {
        // One step of default.toml (countdown: 10 prompt characters + bos + 11 new tokens) at
        // G = 8: the estimate is above each measured peak RSS, by at most 1.35×.
        let m = default_policy();
        for (prompts, measured_gb) in [(16usize, 0.168), (64, 0.534), (128, 1.131), (256, 2.277)] {
            let est = estimate(&m, &run(prompts * 8, 22)).total() / 1e9;
            assert!(
                est > measured_gb && est < measured_gb * 1.35,
                "{prompts} prompts: estimated {est:.3} GB, measured {measured_gb} GB"
            );
        }
    }

    #[test]
    fn parts_scale_with_the_shapes() {
        let m = default_policy();
        let p = m.num_params() as f64 * 4.0;
        let a = estimate(&m, &run(8, 16));
        assert_eq!(a.training_state, 4.0 * p);
        assert_eq!(a.checkpoint, 4.0 * p);
        assert_eq!(a.reference, 0.0);
        let b = estimate(
            &m,
            &RunShape {
                reference: true,
                ..run(16, 16)
            },
        );
        assert_eq!(b.reference, p);
        assert_eq!(b.checkpoint, 5.0 * p);
        assert!(
            (b.activations / a.activations - 2.0).abs() < 1e-9,
            "linear in rows"
        );
        // A 7B-like Qwen2 shape: weights + grads + moments alone are ~120 GB.
        let mut big = default_policy();
        (big.vocab_size, big.hidden_size, big.intermediate_size) = (152_064, 3584, 18_944);
        (big.num_hidden_layers, big.num_attention_heads) = (28, 28);
        big.num_key_value_heads = Some(4);
        let e = estimate(&big, &run(64, 512));
        assert!(
            e.training_state > 100e9 && e.training_state < 140e9,
            "{e:?}"
        );
    }

    #[test]
    fn micro_batches_and_checkpointing_lower_the_activations() {
        let m = default_policy();
        let all = estimate(&m, &run(64, 32));
        let micro = estimate(
            &m,
            &RunShape {
                micro_rows: 16,
                ..run(64, 32)
            },
        );
        assert!((all.activations / micro.activations - 4.0).abs() < 1e-9);
        let ckpt = estimate(
            &m,
            &RunShape {
                checkpointing: true,
                ..run(64, 32)
            },
        );
        assert!(ckpt.activations < all.activations);
        assert_eq!(ckpt.training_state, all.training_state);
    }

    #[test]
    fn too_much_is_refused_with_the_keys_to_lower() {
        let m = default_policy();
        // prompts_per_step = 1024 × group_size = 256: ~290 GB by the report's figures.
        let err = check_against(&m, &run(1024 * 256, 22), Some(8e9))
            .unwrap_err()
            .to_string();
        for want in [
            "8.00 GB is available",
            "rollout.prompts_per_step",
            "rollout.group_size",
            "rollout.max_new_tokens",
            "262144 rows × 22 tokens",
        ] {
            assert!(err.contains(want), "{want}: {err}");
        }
        assert!(check_against(&m, &run(64 * 8, 22), Some(8e9)).is_ok());
        assert!(
            check_against(&m, &run(1024 * 256, 22), None).is_ok(),
            "unknown: no check"
        );
    }

    #[test]
    fn meminfo_is_parsed() {
        let text = "MemTotal:       16000000 kB\nMemFree:  100 kB\nMemAvailable:    8000000 kB\n";
        assert_eq!(parse_meminfo(text), Some(8_000_000.0 * 1024.0));
        assert_eq!(parse_meminfo("MemTotal: 1 kB\n"), None);
    }
}
