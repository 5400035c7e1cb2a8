//! `rlvr-studio train` and `rlvr-studio pretrain`.

use std::io::{LineWriter, Write};
use std::path::PathBuf;
use std::time::Instant;

use anyhow::Context as _;
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use rlvr_engine::events::{EngineEvent, EvalMetrics, RunSummary};
use rlvr_engine::output::{event_json, RunDirWriter};
use rlvr_engine::pretrain::PretrainConfig;
use rlvr_engine::trainer::latest_checkpoint;
use rlvr_engine::RunConfig;
use rlvr_store::{NewRun, Recorder, RunStatus, Store};

/// Arguments of `train`.
#[derive(Args, Debug)]
pub struct TrainArgs {
    /// Run configuration (TOML). Presets live in app/presets/. With `--resume`, omit it.
    #[arg(required_unless_present = "resume")]
    pub config: Option<PathBuf>,
    /// Resume a stored run (id or name, see `rlvr-studio runs list`) from its checkpoint; its
    /// stored configuration is used.
    #[arg(long, conflicts_with = "config")]
    pub resume: Option<String>,
    /// Tag the run (repeatable).
    #[arg(long = "tag")]
    pub tags: Vec<String>,
    /// Notes kept with the run.
    #[arg(long, default_value = "")]
    pub notes: String,
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
    /// A folder of plugin libraries (repeatable); stored in the run's config (`plugins.dirs`)
    /// so that a resume finds them again.
    #[arg(long = "plugins", value_name = "DIR")]
    pub plugins: Vec<PathBuf>,
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

/// Where `train` prints: the real stdout, taken for itself at the start
/// ([`rlvr_plugin_host::private_stdout`]), so that whatever in-process plugin code prints goes
/// to stderr and `--json` stays one event per line. The first write error is kept and
/// reported when the run ends (the run itself goes on and is stored).
struct Out {
    w: LineWriter<Box<dyn Write + Send>>,
    err: Option<std::io::Error>,
}

impl Out {
    fn take() -> Self {
        let w = rlvr_plugin_host::private_stdout().unwrap_or_else(|e| {
            // E.g. stderr is closed: keep going on the shared stdout rather than refuse to train.
            eprintln!("warning: stdout stays shared with plugin code ({e})");
            Box::new(std::io::stdout())
        });
        Self {
            w: LineWriter::new(w),
            err: None,
        }
    }

    fn line(&mut self, text: impl std::fmt::Display) {
        if self.err.is_none() {
            if let Err(e) = writeln!(self.w, "{text}") {
                self.err = Some(e);
            }
        }
    }

    /// Above the progress bar, or plainly when the bar is hidden (not a terminal).
    fn say(&mut self, bar: &ProgressBar, line: impl AsRef<str>) {
        if bar.is_hidden() {
            self.line(line.as_ref());
        } else {
            bar.println(line);
        }
    }

    fn finish(mut self) -> anyhow::Result<()> {
        if let Some(e) = self.err.take() {
            anyhow::bail!("writing to stdout: {e}");
        }
        self.w.flush().context("writing to stdout")
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

/// How a `train` invocation starts: a new run, or a stored one resumed after its checkpoint.
struct Start {
    cfg: RunConfig,
    run_id: i64,
    resume_step: Option<usize>,
    host: rlvr_plugin_host::PluginHost,
}

fn apply_overrides(cfg: &mut RunConfig, args: &TrainArgs) {
    if let Some(s) = args.steps {
        cfg.steps = s;
    }
    if let Some(s) = args.seed {
        cfg.seed = s;
    }
    if let Some(o) = &args.out {
        cfg.output.dir = o.clone();
    }
    if let Some(t) = args.threads {
        cfg.threads = t;
    }
    if let Some(m) = &args.model {
        cfg.model.path = m.clone();
    }
    for d in &args.plugins {
        let d = absolute(d);
        if !cfg.plugins.dirs.contains(&d) {
            cfg.plugins.dirs.push(d);
        }
    }
}

fn absolute(p: &std::path::Path) -> PathBuf {
    std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf())
}

/// Finds the run to resume, rolls its history back to its checkpoint and marks it running.
fn start_resumed(store: &Store, reference: &str, args: &TrainArgs) -> anyhow::Result<Start> {
    let id = store.resolve(reference)?;
    let run = store.run(id)?;
    if run.status == RunStatus::Running {
        anyhow::bail!(
            "run {id} ({:?}) is still running in another process",
            run.name
        );
    }
    let mut cfg = RunConfig::from_toml(&run.config)
        .with_context(|| format!("stored configuration of run {id}"))?;
    cfg.output.dir = PathBuf::from(&run.out_dir);
    apply_overrides(&mut cfg, args);
    cfg.output.dir = PathBuf::from(&run.out_dir);
    let host = crate::plugins::host_for(&cfg, &[])?;
    crate::plugins::validate(&cfg, &host)?;
    let step = match latest_checkpoint(&cfg.output.dir)? {
        Some((_, step)) => Some(step),
        // Stopped before its first checkpoint: the start state is fully determined by the
        // config, so the run restarts from the beginning, exactly.
        None if !store.checkpoints(id)?.iter().any(|(k, _, _)| k == "resume") => None,
        None => anyhow::bail!(
            "run {id}: no checkpoint to resume from in {} (its checkpoint files were removed)",
            cfg.output.dir.display()
        ),
    };
    store.rollback_for_resume(id, step, cfg.steps)?;
    Ok(Start {
        cfg,
        run_id: id,
        resume_step: step,
        host,
    })
}

/// `rlvr-studio train CONFIG` / `rlvr-studio train --resume RUN`. Stdout carries only the
/// run's own output (events with `--json`); anything else printed to stdout in this process
/// from here on, by in-process plugins in particular, goes to stderr.
pub fn train(args: TrainArgs, db: Option<&std::path::Path>) -> anyhow::Result<()> {
    let mut out = Out::take();
    let store = crate::runs::open_store(db)?;
    let start = match (&args.resume, &args.config) {
        (Some(r), _) => start_resumed(&store, r, &args)?,
        (None, Some(path)) => {
            let mut cfg = RunConfig::from_file(path)?;
            apply_overrides(&mut cfg, &args);
            cfg.output.dir = absolute(&cfg.output_dir());
            let host = crate::plugins::host_for(&cfg, &[])?;
            crate::plugins::validate(&cfg, &host)?;
            let run_id = store.create_run(&NewRun {
                name: cfg.name.clone(),
                config: cfg.to_toml(),
                seed: cfg.seed,
                model_path: cfg.model.path.to_string_lossy().into_owned(),
                steps_planned: cfg.steps,
                out_dir: cfg.output.dir.to_string_lossy().into_owned(),
                tags: args.tags.clone(),
                notes: args.notes.clone(),
            })?;
            Start {
                cfg,
                run_id,
                resume_step: None,
                host,
            }
        }
        (None, None) => anyhow::bail!("give a config file or --resume RUN"),
    };
    let Start {
        cfg,
        run_id,
        resume_step,
        host,
    } = start;
    for p in host.used_by(&cfg) {
        store.add_plugin(
            run_id,
            &p.path,
            &format!("{} {}", p.manifest.name, p.manifest.version),
            &p.sha256,
        )?;
    }
    crate::tune_process(crate::threads_for_model(&cfg.model.path, cfg.threads));
    let out_dir = cfg.output_dir();
    let writer = match resume_step {
        Some(step) => RunDirWriter::reopen(&out_dir, step),
        None => RunDirWriter::create(&out_dir, &cfg.to_toml()),
    };
    let writer = match writer {
        Ok(w) => w,
        Err(e) => {
            store.mark_failed(run_id, &e.to_string())?;
            return Err(e.into());
        }
    };
    let keep_groups = cfg.output.keep_groups;
    let recorder = Recorder::spawn(store, run_id, keep_groups, writer)
        .context("cannot start the store writer thread")?;
    let handle =
        rlvr_engine::trainer::spawn_ext(cfg.clone(), resume_step.is_some(), host.extensions())
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
        if let Some(s) = resume_step {
            b.set_position(s as u64);
        }
        b
    };
    let mut failure = None;
    let mut recorder_gone = false;
    for ev in handle.events.iter() {
        let elapsed = started.elapsed().as_secs_f64();
        if args.json {
            if let Some(mut v) = event_json(&ev, elapsed) {
                if let Some(o) = v.as_object_mut() {
                    o.insert("run_id".into(), run_id.into());
                }
                out.line(v);
            }
        }
        match &ev {
            EngineEvent::Started(info) if !args.json => {
                out.say(
                    &bar,
                    format!(
                        "run {run_id} {:?}: task {}, {} parameters, {} steps{}, {} thread(s), model {}",
                        info.name,
                        info.task,
                        info.params,
                        info.steps,
                        resume_step.map_or(String::new(), |s| format!(" (resumed after step {s})")),
                        info.threads,
                        info.model_path.display()
                    ),
                );
            }
            EngineEvent::Step(m) => {
                bar.set_position(m.step as u64);
                bar.set_message(format!("reward {:.3} acc {:.3}", m.reward_mean, m.accuracy));
                if !args.json && args.log_every > 0 && m.step % args.log_every == 0 {
                    out.say(&bar, format!(
                        "step {:>4} | {:>6.1}s | reward {:.3} ± {:.3} | acc {:.3} | entropy {:.3} | len {:.1} | zero-var {:.2} | grad {:.3} | {:.2} s/step, {:.0} tok/s",
                        m.step, m.elapsed_s, m.reward_mean, m.reward_std, m.accuracy, m.entropy,
                        m.response_len_mean, m.zero_var_frac, m.grad_norm, m.step_time_s, m.tokens_per_s
                    ));
                }
            }
            EngineEvent::Eval(e) if !args.json => out.say(&bar, fmt_eval(e)),
            EngineEvent::Log { message } if !args.json => out.say(&bar, message),
            EngineEvent::Failed { error } => failure = Some(error.clone()),
            _ => {}
        }
        if !recorder.send(ev) {
            // The writer stopped on an error: stop training rather than lose history.
            recorder_gone = true;
            let _ = handle.commands.send(rlvr_engine::Command::Stop);
            break;
        }
    }
    bar.finish_and_clear();
    let stored = recorder.finish();
    let result = handle
        .thread
        .join()
        .map_err(|_| anyhow::anyhow!("the engine thread panicked"))?;
    let stored = match stored {
        Ok(s) => s,
        Err(e) => anyhow::bail!("the run history could not be stored: {e}"),
    };
    if recorder_gone {
        anyhow::bail!("the run history writer stopped");
    }
    if let Some(e) = failure {
        anyhow::bail!("{e}");
    }
    let summary = result?;
    let per_step = |s: f64| 1e3 * s / stored.steps.max(1) as f64;
    if args.json {
        out.line(serde_json::json!({
            "type": "store",
            "run_id": run_id,
            "elapsed_s": started.elapsed().as_secs_f64(),
            "steps": stored.steps,
            "events": stored.events,
            "db_ms_per_step": per_step(stored.db_s),
            "max_step_db_ms": 1e3 * stored.max_step_db_s,
            "checkpoint_ms_per_step": per_step(stored.checkpoint_s),
            "jsonl_ms_per_step": per_step(stored.jsonl_s),
            "mean_step_ms": 1e3 * summary.mean_step_s,
        }));
    } else {
        out.line(summary_table(&summary, &out_dir).trim_end_matches('\n'));
        out.line(format!(
            "  history: run {run_id} (rlvr-studio runs show {run_id}); store writer per step: \
             {:.2} ms database, {:.2} ms checkpoint, off the training thread",
            per_step(stored.db_s),
            per_step(stored.checkpoint_s)
        ));
    }
    out.finish()
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
