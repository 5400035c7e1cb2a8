//! `rlvr-studio train` and `rlvr-studio pretrain`.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::Context as _;
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use rlvr_engine::events::{EngineEvent, EvalMetrics, RunSummary};
use rlvr_engine::output::{event_json, RunDirWriter};
use rlvr_engine::pretrain::PretrainConfig;
use rlvr_engine::RunConfig;

/// Arguments of `train`.
#[derive(Args, Debug)]
pub struct TrainArgs {
    /// Run configuration (TOML). Presets live in app/presets/. With `--resume`, omit it.
    #[arg(required_unless_present = "resume")]
    pub config: Option<PathBuf>,
    /// Resume the run in this output folder from its checkpoint (its config.toml is used).
    #[arg(long, conflicts_with = "config")]
    pub resume: Option<PathBuf>,
    /// Override `steps`.
    #[arg(long)]
    pub steps: Option<usize>,
    /// Override `seed`.
    #[arg(long)]
    pub seed: Option<u64>,
    /// Override the output folder (`output.dir`).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Override `threads` (0 = automatic).
    #[arg(long)]
    pub threads: Option<usize>,
    /// Override `model.path` (a Hugging Face model folder).
    #[arg(long)]
    pub model: Option<PathBuf>,
    /// Print one JSON object per line (types: started, step, eval, log, done) instead of the
    /// progress bar.
    #[arg(long)]
    pub json: bool,
    /// Print a step line every N steps (0 = only evaluations).
    #[arg(long, default_value_t = 10)]
    pub log_every: usize,
}

/// Arguments of `pretrain`.
#[derive(Args, Debug)]
pub struct PretrainArgs {
    /// Pretraining configuration (TOML); default: app/presets/pretrain.toml settings built in.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Output model folder.
    #[arg(long, default_value = "app/assets/default-policy")]
    pub out: PathBuf,
    /// Override `steps`.
    #[arg(long)]
    pub steps: Option<usize>,
}

/// Prints above the progress bar, or plainly when the bar is hidden (not a terminal).
fn say(bar: &ProgressBar, line: impl AsRef<str>) {
    if bar.is_hidden() {
        println!("{}", line.as_ref());
    } else {
        bar.println(line);
    }
}

fn fmt_eval(e: &EvalMetrics) -> String {
    let ks: Vec<String> = e
        .pass_at_k
        .iter()
        .map(|(k, v)| format!("pass@{k} {v:.3}"))
        .collect();
    format!(
        "eval step {:>4} | {:>6.1}s | greedy acc {:.3} | {}",
        e.step,
        e.elapsed_s,
        e.greedy_accuracy,
        ks.join(" ")
    )
}

fn summary_table(s: &RunSummary, out: &std::path::Path) -> String {
    let mut t = String::new();
    let row = |name: &str, a: String, b: String| format!("  {name:<22} {a:>10} {b:>10}\n");
    t.push_str(&format!(
        "\nrun finished: {} steps in {:.1} s ({:.2} s/step){}\n",
        s.steps,
        s.elapsed_s,
        s.mean_step_s,
        if s.stopped { ", stopped early" } else { "" }
    ));
    t.push_str(&row("held-out metric", "start".into(), "end".into()));
    if let (Some(a), Some(b)) = (&s.initial, &s.last) {
        t.push_str(&row(
            "greedy accuracy",
            format!("{:.3}", a.greedy_accuracy),
            format!("{:.3}", b.greedy_accuracy),
        ));
        for (k, v) in &a.pass_at_k {
            let end = b.pass_at_k.get(k).copied().unwrap_or(f64::NAN);
            t.push_str(&row(
                &format!("pass@{k} (sampled)"),
                format!("{v:.3}"),
                format!("{end:.3}"),
            ));
        }
        t.push_str(&row(
            "mean score",
            format!("{:.3}", a.mean_score),
            format!("{:.3}", b.mean_score),
        ));
    }
    t.push_str(&format!("  output: {}\n", out.display()));
    t
}

/// `rlvr-studio train CONFIG`.
pub fn train(args: TrainArgs) -> anyhow::Result<()> {
    let (mut cfg, resume) = match (&args.resume, &args.config) {
        (Some(dir), _) => {
            let mut cfg = RunConfig::from_file(&dir.join("config.toml"))?;
            cfg.output.dir = dir.clone();
            if !dir.join("checkpoint/state.json").is_file() {
                anyhow::bail!(
                    "{}: no checkpoint to resume from (expected checkpoint/state.json)",
                    dir.display()
                );
            }
            (cfg, true)
        }
        (None, Some(path)) => (RunConfig::from_file(path)?, false),
        (None, None) => anyhow::bail!("give a config file or --resume DIR"),
    };
    if let Some(s) = args.steps {
        cfg.steps = s;
    }
    if let Some(s) = args.seed {
        cfg.seed = s;
    }
    if let Some(o) = args.out {
        cfg.output.dir = o;
    }
    if let Some(t) = args.threads {
        cfg.threads = t;
    }
    if let Some(m) = args.model {
        cfg.model.path = m;
    }
    cfg.validate()?;
    crate::tune_process(crate::threads_for_model(&cfg.model.path, cfg.threads));
    let out_dir = cfg.output_dir();
    let mut writer = if resume {
        RunDirWriter::reopen(&out_dir)?
    } else {
        RunDirWriter::create(&out_dir, &cfg)?
    };
    let handle = rlvr_engine::trainer::spawn_with(cfg.clone(), resume)
        .context("cannot start the engine thread")?;
    let started = Instant::now();
    let bar = if args.json {
        ProgressBar::hidden()
    } else {
        let b = ProgressBar::new(cfg.steps as u64);
        b.set_style(
            ProgressStyle::with_template(
                "{spinner} [{elapsed_precise}] {bar:30.cyan/blue} {pos}/{len} steps | {msg} | ETA {eta}",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        b
    };
    let mut summary = None;
    for ev in handle.events.iter() {
        writer.write(&ev)?;
        let elapsed = started.elapsed().as_secs_f64();
        if args.json {
            if let Some(v) = event_json(&ev, elapsed) {
                println!("{v}");
            }
        }
        match &ev {
            EngineEvent::Started(info) if !args.json => {
                say(
                    &bar,
                    format!(
                        "run {:?}: task {}, {} parameters, {} steps, {} thread(s), model {}",
                        info.name,
                        info.task,
                        info.params,
                        info.steps,
                        info.threads,
                        info.model_path.display()
                    ),
                );
            }
            EngineEvent::Step(m) => {
                bar.set_position(m.step as u64);
                bar.set_message(format!("reward {:.3} acc {:.3}", m.reward_mean, m.accuracy));
                if !args.json && args.log_every > 0 && m.step % args.log_every == 0 {
                    say(&bar, format!(
                        "step {:>4} | {:>6.1}s | reward {:.3} ± {:.3} | acc {:.3} | entropy {:.3} | len {:.1} | zero-var {:.2} | grad {:.3} | {:.2} s/step, {:.0} tok/s",
                        m.step, m.elapsed_s, m.reward_mean, m.reward_std, m.accuracy, m.entropy,
                        m.response_len_mean, m.zero_var_frac, m.grad_norm, m.step_time_s, m.tokens_per_s
                    ));
                }
            }
            EngineEvent::Eval(e) if !args.json => say(&bar, fmt_eval(e)),
            EngineEvent::Log { message } if !args.json => say(&bar, message),
            EngineEvent::Done(s) => summary = Some(s.clone()),
            EngineEvent::Failed { error } => {
                bar.abandon();
                anyhow::bail!("{error}");
            }
            _ => {}
        }
    }
    bar.finish_and_clear();
    let result = handle
        .thread
        .join()
        .map_err(|_| anyhow::anyhow!("the engine thread panicked"))?;
    let summary = match (result, summary) {
        (Ok(s), _) => s,
        (Err(e), _) => return Err(e.into()),
    };
    if !args.json {
        print!("{}", summary_table(&summary, &out_dir));
    }
    Ok(())
}

/// `rlvr-studio pretrain`.
pub fn pretrain(args: PretrainArgs) -> anyhow::Result<()> {
    let mut cfg = match &args.config {
        Some(p) => {
            let text = std::fs::read_to_string(p).with_context(|| format!("{}", p.display()))?;
            toml::from_str::<PretrainConfig>(&text).map_err(|e| {
                let line = rlvr_engine::config::toml_error_line(&text, &e);
                anyhow::anyhow!("{}: {line}", p.display())
            })?
        }
        None => PretrainConfig::default(),
    };
    if let Some(s) = args.steps {
        cfg.steps = s;
    }
    let bar = ProgressBar::new(cfg.steps as u64);
    bar.set_style(
        ProgressStyle::with_template(
            "[{elapsed_precise}] {bar:30} {pos}/{len} | {msg} | ETA {eta}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let acc = rlvr_engine::pretrain::pretrain(&cfg, &args.out, &mut |p| {
        bar.set_position(p.step as u64);
        bar.set_message(format!("loss {:.3}", p.loss));
        if let Some(a) = &p.accuracy {
            let parts: Vec<String> = a.iter().map(|(k, v)| format!("{k} {v:.3}")).collect();
            say(
                &bar,
                format!(
                    "step {:>4} | {:>6.1}s | loss {:.3} | greedy held-out accuracy: {}",
                    p.step,
                    p.elapsed_s,
                    p.loss,
                    parts.join(", ")
                ),
            );
        }
    })?;
    bar.finish_and_clear();
    println!(
        "policy written to {} (held-out accuracy {acc:?})",
        args.out.display()
    );
    Ok(())
}
