//! `rlvr-studio train` and `rlvr-studio pretrain`.

use std::io::{LineWriter, Write};
use std::path::PathBuf;
use std::time::Instant;

use anyhow::Context as _;
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use rlvr_core::events::{EngineEvent, EvalMetrics, RunSummary};
use rlvr_core::output::event_json;
use rlvr_core::RunConfig;
use rlvr_engine::pretrain::PretrainConfig;
use rlvr_launch::{Finished, NewRunRequest, Overrides, Resumable};

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

impl TrainArgs {
    fn overrides(&self) -> Overrides {
        Overrides {
            steps: self.steps,
            seed: self.seed,
            out: self.out.clone(),
            threads: self.threads,
            model: self.model.clone(),
            plugin_dirs: self.plugins.clone(),
        }
    }
}

/// `rlvr-studio train CONFIG` / `rlvr-studio train --resume RUN`: prepares the run with the
/// launcher (`rlvr_launch`), then prints its events while the launcher forwards them to the
/// history writer.
/// Stdout carries only the run's own output (events with `--json`); anything else printed to
/// stdout in this process from here on, by in-process plugins in particular, goes to stderr.
pub fn train(args: TrainArgs, db: Option<&std::path::Path>) -> anyhow::Result<()> {
    for t in &args.tags {
        rlvr_store::check_tag(t).context("--tag")?;
    }
    crate::plugins::check_dirs(&args.plugins, "--plugins")?;
    let mut out = Out::take();
    let store = crate::runs::open_store(db)?;
    let (prepared, host) = match (&args.resume, &args.config) {
        (Some(r), _) => {
            let id = store.resolve(r)?;
            let resumable = Resumable::open(store, id, &args.overrides())?;
            let host = crate::plugins::host_for(resumable.cfg(), &[])?;
            crate::plugins::validate(resumable.cfg(), &host)?;
            let c = resumable.cfg();
            crate::tune_process(crate::threads_for_model(&c.model.path, c.threads));
            let p = resumable.prepare(host.extensions(), &host)?;
            (p, host)
        }
        (None, Some(path)) => {
            let mut cfg = RunConfig::from_file(path)?;
            let overrides = args.overrides();
            overrides.apply(&mut cfg);
            // Checks that need the overrides or the plugins name the file (and the flags).
            let flags = overrides.flags();
            let in_file = |e: anyhow::Error| {
                let with = if flags.is_empty() {
                    String::new()
                } else {
                    format!(" (with {flags})")
                };
                anyhow::anyhow!("{}{with}: {e}", path.display())
            };
            let default_dir = cfg.output_dir();
            let host = crate::plugins::host_for(&cfg, &[]).map_err(in_file)?;
            crate::plugins::validate(&cfg, &host).map_err(in_file)?;
            // Before the launcher's checks load the model: tuning must precede any tensor.
            crate::tune_process(crate::threads_for_model(&cfg.model.path, cfg.threads));
            let req = NewRunRequest {
                cfg,
                default_dir,
                tags: args.tags.clone(),
                notes: args.notes.clone(),
            };
            // The launcher's checks (held-out split, prompt lengths, memory) name keys of the
            // file too.
            let p = rlvr_launch::prepare_new(store, req, host.extensions(), &host).map_err(
                |e| match e {
                    rlvr_launch::LaunchError::Engine(rlvr_engine::EngineError::Core(
                        c @ (rlvr_core::CoreError::Config { .. } | rlvr_core::CoreError::Task(_)),
                    )) => in_file(c.into()),
                    other => other.into(),
                },
            )?;
            (p, host)
        }
        (None, None) => anyhow::bail!("give a config file or --resume RUN"),
    };
    let (run_id, resume_step) = (prepared.run_id, prepared.resume_step);
    for n in &prepared.notes {
        eprintln!("warning: {n}");
    }
    let cfg = prepared.cfg.clone();
    let out_dir = cfg.output_dir();
    let running = prepared.start()?;
    // The plugin libraries stay loaded for the run (the host owns them).
    let _host = host;
    let started = Instant::now();
    let bar = if args.json {
        ProgressBar::hidden()
    } else {
        let b = ProgressBar::new(cfg.steps as u64);
        b.set_style(
            ProgressStyle::with_template(
                "{spinner} [{elapsed_precise}] {bar:30.cyan/blue} {pos}/{len} steps | {prefix} | {msg} | ETA {eta}",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        if let Some(s) = resume_step {
            b.set_position(s as u64);
        }
        b
    };
    // The step's own progress (rollout tokens, update micro-batches) in the bar's prefix, so a
    // minute-long step does not look frozen.
    let ticking = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(!args.json));
    let ticker = {
        let (bar, ticking, progress) = (bar.clone(), ticking.clone(), running.progress());
        std::thread::Builder::new()
            .name("progress-ticker".into())
            .spawn(move || {
                while ticking.load(std::sync::atomic::Ordering::Relaxed) {
                    bar.set_prefix(progress.now().describe().unwrap_or_default());
                    bar.tick();
                    std::thread::sleep(std::time::Duration::from_millis(250));
                }
            })?
    };
    let finished = running.forward(|ev| {
        let elapsed = started.elapsed().as_secs_f64();
        if args.json {
            if let Some(mut v) = event_json(ev, elapsed) {
                if let Some(o) = v.as_object_mut() {
                    o.insert("run_id".into(), run_id.into());
                }
                out.line(v);
            }
        }
        match ev {
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
            _ => {}
        }
    });
    ticking.store(false, std::sync::atomic::Ordering::Relaxed);
    let _ = ticker.join();
    bar.finish_and_clear();
    let Finished { summary, stored } = finished?;
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
                let line = rlvr_core::config::toml_error_line(&text, &e);
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
