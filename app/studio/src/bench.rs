//! `rlvr-studio bench`: rollout and training throughput of a policy on this machine.
//!
//! Prints sampled tokens/s (batched generation with the KV cache), training tokens/s (forward +
//! backward + AdamW of a GRPO-shaped batch), the achieved GFLOP/s of the training step and of a
//! large matmul (the CPU's practical peak with candle's gemm), so figures can be compared with
//! other trainers on the same model and machine.

use std::path::PathBuf;
use std::time::Instant;

use candle_core::{Device, Tensor};
use clap::Args;
use rand::{Rng as _, SeedableRng as _};
use rand_chacha::ChaCha8Rng;
use rlvr_engine::batch::TrainBatch;
use rlvr_engine::model::Policy;
use rlvr_engine::optim::{AdamW, AdamWParams};
use rlvr_engine::parallel::{scoped_map, shard_ranges, sum_grads};
use rlvr_engine::sampling::{generate, generate_parallel, row_rngs, GenParams, SamplingConfig};
use serde::Serialize;

/// Arguments of `bench`.
#[derive(Args, Debug)]
pub struct BenchArgs {
    /// Model folder (default: the embedded default policy).
    #[arg(long)]
    pub model: Option<PathBuf>,
    /// Sequences per batch (prompts × group size).
    #[arg(long, default_value_t = 128)]
    pub rows: usize,
    /// Prompt length in tokens.
    #[arg(long, default_value_t = 8)]
    pub prompt_len: usize,
    /// Completion length in tokens.
    #[arg(long, default_value_t = 8)]
    pub completion_len: usize,
    /// Timed repetitions (after one warm-up).
    #[arg(long, default_value_t = 5)]
    pub iters: usize,
    /// Tensor threads (0 = automatic).
    #[arg(long, default_value_t = 0)]
    pub threads: usize,
    /// Print the figures as one JSON object.
    #[arg(long)]
    pub json: bool,
    /// Train LoRA adapters of this rank on every linear layer instead of every weight.
    #[arg(long, value_name = "RANK")]
    pub lora: Option<usize>,
    /// Gradient checkpointing in the training step.
    #[arg(long)]
    pub checkpointing: bool,
}

/// The process's peak resident memory (`VmHWM` of `/proc/self/status`), in bytes; 0 where
/// unknown.
fn peak_rss() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .and_then(|v| v.trim().strip_suffix("kB"))
                .and_then(|v| v.trim().parse::<f64>().ok())
        })
        .map_or(0.0, |kb| kb * 1024.0)
}

/// The embedded default policy folder.
pub fn default_model() -> PathBuf {
    PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../assets/default-policy"
    ))
}

#[derive(Serialize)]
struct Figures {
    model: String,
    params: usize,
    threads: String,
    rows: usize,
    prompt_len: usize,
    completion_len: usize,
    rollout_tokens_per_s: f64,
    rollout_s: f64,
    train_step_s: f64,
    train_tokens_per_s: f64,
    train_gflops: f64,
    forward_gflops: f64,
    matmul_peak_gflops: f64,
    trained: String,
    trainable_params: usize,
    rollout_peak_rss_mb: f64,
    peak_rss_mb: f64,
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(0.0)
}

pub fn bench(args: BenchArgs) -> anyhow::Result<()> {
    let dir = args.model.clone().unwrap_or_else(default_model);
    let device = Device::Cpu;
    let mut policy = Policy::load(&dir, &device)?;
    if let Some(rank) = args.lora.filter(|&r| r > 0) {
        let spec = rlvr_engine::model::LoraSpec {
            rank,
            alpha: 2.0 * rank as f64,
            dropout: 0.0,
            target_modules: vec!["all-linear".into()],
            rslora: false,
        };
        policy.attach_lora(spec, 0)?;
    }
    let cfg = policy.cfg.clone();
    let tok = policy.tok.clone();
    let iters = args.iters.max(1);
    let mut rng = ChaCha8Rng::seed_from_u64(0);
    let vocab = tok.vocab_size() as u32;
    let first_real = 4u32.min(vocab.saturating_sub(1));
    let rand_ids = |rng: &mut ChaCha8Rng, n: usize| -> Vec<u32> {
        (0..n)
            .map(|_| rng.random_range(first_real..vocab))
            .collect()
    };

    // Rollout: rows random prompts, sampling until the length limit (EOS is never forced).
    let prompts: Vec<Vec<u32>> = (0..args.rows)
        .map(|_| rand_ids(&mut rng, args.prompt_len))
        .collect();
    let view = policy.frozen_view()?;
    let workers = rlvr_engine::trainer::auto_workers(policy.num_params(), args.threads);
    let params = GenParams {
        max_new: args.completion_len,
        eos: Vec::new(),
        pad: tok.pad,
        sampling: SamplingConfig::default(),
        use_cache: true,
        hook: None,
        progress: None,
    };
    let mut roll = Vec::new();
    let mut roll_tokens = Vec::new();
    for i in 0..=iters {
        let t = Instant::now();
        let mut rngs = row_rngs(i as u64, prompts.len());
        let out = generate_parallel(&view, &prompts, &params, &mut rngs, workers)?;
        if i > 0 {
            roll.push(t.elapsed().as_secs_f64());
            roll_tokens.push(out.iter().map(|c| c.tokens.len()).sum::<usize>() as f64);
        }
    }
    let rollout_s = median(roll);
    let rollout_peak = peak_rss();
    let rollout_tokens = median(roll_tokens);

    // Training: forward + backward + AdamW over prompt + completion, rows split across the
    // workers as the trainer does.
    let comps: Vec<Vec<u32>> = (0..args.rows)
        .map(|_| rand_ids(&mut rng, args.completion_len))
        .collect();
    let mut shards = Vec::new();
    for r in shard_ranges(args.rows, workers) {
        let pr: Vec<&[u32]> = prompts[r.clone()].iter().map(Vec::as_slice).collect();
        let co: Vec<&[u32]> = comps[r].iter().map(Vec::as_slice).collect();
        shards.push(TrainBatch::new(&pr, &co, tok.pad, &device)?);
    }
    let vars: Vec<_> = policy.trainable().iter().map(|(_, v)| v.clone()).collect();
    let mut opt = AdamW::new(vars.clone(), AdamWParams::default())?;
    let mut train = Vec::new();
    let mut fwd = Vec::new();
    for i in 0..=iters {
        let t = Instant::now();
        let frozen = policy.frozen_view()?;
        scoped_map(&mut shards, "bench-fwd", |b| {
            Ok(b.logprobs(&frozen)?.1.sum_all()?.to_scalar::<f32>()?)
        })?;
        let f = t.elapsed().as_secs_f64();
        let t = Instant::now();
        let model = policy.train_model()?;
        let stores = scoped_map(&mut shards, "bench-train", |b| {
            let (logp, recompute) = if args.checkpointing {
                let (_, logp, r) = b.logprobs_checkpointed(&model)?;
                (logp, Some(r))
            } else {
                (b.logprobs(&model)?.1, None)
            };
            let grads = rlvr_engine::parallel::detached(
                (logp * &b.mask)?
                    .sum_all()?
                    .affine(-1e-6, 0.0)?
                    .backward()?,
            );
            Ok(match recompute {
                Some(r) => r.backward(&model, grads)?,
                None => grads,
            })
        })?;
        if let Some(grads) = sum_grads(&vars, stores)? {
            opt.step(&grads, 1e-7, 1.0)?;
        }
        if i > 0 {
            train.push(t.elapsed().as_secs_f64());
            fwd.push(f);
        }
    }
    let train_s = median(train);
    let fwd_s = median(fwd);
    let seq = args.prompt_len + args.completion_len - 1;
    let tokens = (args.rows * seq) as f64;
    // FLOPs of one forward: 2 · (non-embedding matmul weights) per token, attention scores and
    // mixing (2 · 2 · seq · head_dim · heads per token and layer, halved by causality is not
    // exploited here), the output head on completion positions. Training = 3 × forward.
    let d = cfg.hidden_size as f64;
    let per_layer = 2.0
        * (d * (cfg.num_attention_heads * cfg.head_dim()) as f64 * 2.0
            + d * (cfg.kv_heads() * cfg.head_dim()) as f64 * 2.0
            + 3.0 * d * cfg.intermediate_size as f64);
    let attn = 4.0 * seq as f64 * (cfg.num_attention_heads * cfg.head_dim()) as f64;
    let head = 2.0 * d * cfg.vocab_size as f64 * (args.rows * args.completion_len) as f64;
    let fwd_flops = tokens * cfg.num_hidden_layers as f64 * (per_layer + attn) + head;
    let train_flops = 3.0 * fwd_flops;

    // Matmul peak with candle's gemm at the same thread setting.
    let a = Tensor::randn(0f32, 1.0, (1024, 1024), &device)?;
    let b = Tensor::randn(0f32, 1.0, (1024, 1024), &device)?;
    let mut mm = Vec::new();
    for _ in 0..=iters {
        let t = Instant::now();
        a.matmul(&b)?.sum_all()?.to_scalar::<f32>()?;
        mm.push(t.elapsed().as_secs_f64());
    }
    let mm_s = median(mm);

    let fig = Figures {
        model: dir.display().to_string(),
        params: policy.num_params(),
        threads: format!(
            "{workers} worker(s) x {} tensor thread(s)",
            std::env::var("RAYON_NUM_THREADS").unwrap_or_else(|_| "all".into())
        ),
        rows: args.rows,
        prompt_len: args.prompt_len,
        completion_len: args.completion_len,
        rollout_tokens_per_s: rollout_tokens / rollout_s.max(1e-12),
        rollout_s,
        train_step_s: train_s,
        train_tokens_per_s: tokens / train_s.max(1e-12),
        train_gflops: train_flops / train_s.max(1e-12) / 1e9,
        forward_gflops: fwd_flops / fwd_s.max(1e-12) / 1e9,
        matmul_peak_gflops: 2.0 * 1024f64.powi(3) / mm_s.max(1e-12) / 1e9,
        trained: match (args.lora.filter(|&r| r > 0), args.checkpointing) {
            (Some(r), c) => format!(
                "LoRA r={r} all-linear{}",
                if c { ", checkpointing" } else { "" }
            ),
            (None, c) => format!("every weight{}", if c { ", checkpointing" } else { "" }),
        },
        trainable_params: policy.num_trainable(),
        rollout_peak_rss_mb: rollout_peak / 1e6,
        peak_rss_mb: peak_rss() / 1e6,
    };
    if args.json {
        println!("{}", serde_json::to_string(&fig)?);
    } else {
        println!(
            "model                {} ({} parameters, {})",
            fig.model, fig.params, fig.threads
        );
        println!(
            "batch                {} rows x ({} prompt + {} completion) tokens",
            fig.rows, fig.prompt_len, fig.completion_len
        );
        println!(
            "rollout              {:>10.0} tokens/s  ({:.3} s per batch, KV cache)",
            fig.rollout_tokens_per_s, fig.rollout_s
        );
        println!(
            "training step        {:>10.0} tokens/s  ({:.3} s fwd+bwd+AdamW)",
            fig.train_tokens_per_s, fig.train_step_s
        );
        println!("training step        {:>10.2} GFLOP/s", fig.train_gflops);
        println!("forward only         {:>10.2} GFLOP/s", fig.forward_gflops);
        println!(
            "matmul 1024^3 peak   {:>10.2} GFLOP/s",
            fig.matmul_peak_gflops
        );
        println!(
            "trained              {} ({} parameters)",
            fig.trained, fig.trainable_params
        );
        println!(
            "peak RSS             {:>10.0} MB ({:.0} MB after the rollout)",
            fig.peak_rss_mb, fig.rollout_peak_rss_mb
        );
    }
    Ok(())
}

/// Arguments of `generate`.
#[derive(Args, Debug)]
pub struct GenerateArgs {
    /// Model folder (default: the embedded default policy).
    #[arg(long)]
    pub model: Option<PathBuf>,
    /// Prompt text (repeatable).
    #[arg(long = "prompt", required = true)]
    pub prompts: Vec<String>,
    /// Longest completion in tokens.
    #[arg(long, default_value_t = 16)]
    pub max_new_tokens: usize,
    /// Sampling temperature (0 = greedy).
    #[arg(long, default_value_t = 0.0)]
    pub temperature: f32,
    /// Seed of the sampler.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Render each prompt through the folder's chat template (as `[model] chat_template = true`).
    #[arg(long)]
    pub chat: bool,
    /// System message of the chat template (with --chat; default: the template's own).
    #[arg(long, requires = "chat")]
    pub system: Option<String>,
    /// Qwen3's enable_thinking = false (with --chat).
    #[arg(long, requires = "chat")]
    pub no_thinking: bool,
}

#[derive(Serialize)]
struct Generated<'a> {
    prompt: &'a str,
    /// The text the model was given (the rendered template with --chat).
    model_input: String,
    completion: String,
    tokens: Vec<u32>,
    logprobs: Vec<f32>,
    finished: bool,
}

/// `rlvr-studio generate`: one JSON line per prompt.
pub fn generate_cmd(args: GenerateArgs) -> anyhow::Result<()> {
    let dir = args.model.clone().unwrap_or_else(default_model);
    let mut policy = Policy::load(&dir, &Device::Cpu)?;
    if args.chat {
        policy
            .tok
            .use_chat(rlvr_engine::tokenizer::ChatPrompt {
                system: args.system.clone(),
                enable_thinking: !args.no_thinking,
            })
            .map_err(|e| anyhow::anyhow!("--chat: {}: {e}", dir.display()))?;
    }
    let tok = &policy.tok;
    let sampling = SamplingConfig {
        temperature: args.temperature,
        ..SamplingConfig::default()
    };
    if let Some(spec) = rlvr_core::spec::find("rollout.temperature") {
        rlvr_core::spec::check(spec, &toml::Value::Float(f64::from(args.temperature)))
            .map_err(|e| anyhow::anyhow!("--temperature: {e}"))?;
    }
    let prompts = args
        .prompts
        .iter()
        .map(|p| tok.encode_prompt(p))
        .collect::<Result<Vec<_>, _>>()?;
    let view = policy.frozen_view()?;
    let params = GenParams {
        max_new: args.max_new_tokens,
        eos: tok.stop.clone(),
        pad: tok.pad,
        sampling,
        use_cache: true,
        hook: None,
        progress: None,
    };
    let outs = generate(
        &view,
        &prompts,
        &params,
        &mut row_rngs(args.seed, prompts.len()),
    )?;
    for (p, c) in args.prompts.iter().zip(outs) {
        let line = Generated {
            prompt: p,
            model_input: tok.prompt_text(p)?,
            completion: tok.decode(&c.tokens)?,
            tokens: c.tokens,
            logprobs: c.logprobs,
            finished: c.finished,
        };
        println!("{}", serde_json::to_string(&line)?);
    }
    Ok(())
}
