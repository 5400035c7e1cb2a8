//! `rlvr-studio runs …`: browse, compare, export and clean up the run history.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use clap::{Args, Subcommand, ValueEnum};
use rlvr_store::export::{self, ExportFormat};
use rlvr_store::{RunFilter, RunRow, RunStatus, Store};

/// `runs` subcommands.
#[derive(Subcommand, Debug)]
pub enum RunsCmd {
    /// List runs, newest first.
    List(ListArgs),
    /// Show one run: identity, hashes, config, final metrics, evaluations, checkpoints, log.
    Show(ShowArgs),
    /// Compare two runs: configuration differences and final metrics side by side.
    Diff(DiffArgs),
    /// Print the sampled groups of a step with their rewards and reasons.
    Samples(SamplesArgs),
    /// Export a run's metrics (and samples) as CSV or JSON lines.
    Export(ExportArgs),
    /// Delete a run's history (and with --files its output folder).
    Delete(DeleteArgs),
    /// Check the database's integrity and look for missing or orphan run files.
    Check(JsonArg),
    /// Add (or remove) tags of a run.
    Tag(TagArgs),
    /// Replace the notes of a run.
    Note(NoteArgs),
}

/// `--json`.
#[derive(Args, Debug)]
pub struct JsonArg {
    /// One JSON object per line instead of text.
    #[arg(long)]
    pub json: bool,
}

/// `runs list`.
#[derive(Args, Debug)]
pub struct ListArgs {
    /// Only runs with this status (running, interrupted, finished, failed).
    #[arg(long)]
    pub status: Option<String>,
    /// Only runs with this tag.
    #[arg(long)]
    pub tag: Option<String>,
    /// Only runs whose name, notes, task or config contain this text.
    #[arg(long)]
    pub text: Option<String>,
    /// At most this many runs.
    #[arg(long)]
    pub limit: Option<usize>,
    #[command(flatten)]
    pub out: JsonArg,
}

/// `runs show`.
#[derive(Args, Debug)]
pub struct ShowArgs {
    /// Run id or name.
    pub run: String,
    #[command(flatten)]
    pub out: JsonArg,
}

/// `runs diff`.
#[derive(Args, Debug)]
pub struct DiffArgs {
    /// First run (id or name).
    pub a: String,
    /// Second run (id or name).
    pub b: String,
    #[command(flatten)]
    pub out: JsonArg,
}

/// `runs samples`.
#[derive(Args, Debug)]
pub struct SamplesArgs {
    /// Run id or name.
    pub run: String,
    /// Step (1-based, as in the metrics).
    #[arg(long)]
    pub step: u64,
    /// Only completions with at least this reward.
    #[arg(long, value_parser = reward_threshold)]
    pub min_reward: Option<f64>,
    /// Also print per-token log-prob / entropy / advantage.
    #[arg(long)]
    pub tokens: bool,
    #[command(flatten)]
    pub out: JsonArg,
}

/// Export formats.
#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum Format {
    /// Comma-separated values: one row per step, one column per metric (samples: one row per
    /// completion).
    Csv,
    /// One JSON object per line: `{"type":"step",...}` per step, `{"type":"group",...}` per
    /// sampled group.
    Jsonl,
}

/// `runs export`.
#[derive(Args, Debug)]
pub struct ExportArgs {
    /// Run id or name.
    pub run: String,
    /// Output format.
    #[arg(long, value_enum)]
    pub format: Format,
    /// Write here instead of standard output (CSV of samples goes to `<out>.samples.csv`).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Leave the sampled groups out.
    #[arg(long)]
    pub no_samples: bool,
}

/// `runs delete`.
#[derive(Args, Debug)]
pub struct DeleteArgs {
    /// Run id or name.
    pub run: String,
    /// Also delete the run's output folder (checkpoints, final policy, metrics.jsonl).
    #[arg(long)]
    pub files: bool,
    #[command(flatten)]
    pub out: JsonArg,
}

/// `runs tag`.
#[derive(Args, Debug)]
pub struct TagArgs {
    /// Run id or name.
    pub run: String,
    /// Tags.
    #[arg(required = true)]
    pub tags: Vec<String>,
    /// Remove the tags instead.
    #[arg(long)]
    pub remove: bool,
}

/// `runs note`.
#[derive(Args, Debug)]
pub struct NoteArgs {
    /// Run id or name.
    pub run: String,
    /// The notes.
    pub text: String,
}

/// `--min-reward`: a number; NaN would silently match no completion.
fn reward_threshold(s: &str) -> Result<f64, String> {
    let v: f64 = s
        .trim()
        .parse()
        .map_err(|e| format!("expected a number such as 0.5 ({e})"))?;
    if v.is_nan() {
        return Err("expected a number, not NaN (NaN matches no reward)".into());
    }
    Ok(v)
}

/// The database path: `--db`, else `$RLVR_STUDIO_DB`, else the platform's data directory.
fn db_path(db: Option<&Path>) -> anyhow::Result<PathBuf> {
    match db {
        Some(p) => Ok(p.to_path_buf()),
        None => rlvr_store::default_db_path().context(
            "no data directory on this system for the run history; give one with --db PATH",
        ),
    }
}

/// Opens the database for reading and writing: `--db`, else `$RLVR_STUDIO_DB`, else the
/// platform's data directory.
pub fn open_store(db: Option<&Path>) -> anyhow::Result<Store> {
    Ok(Store::open(&db_path(db)?)?)
}

/// Opens the database for a command that only reads: read-only where it cannot be written
/// (a read-only mount), so such a history can still be browsed.
pub fn open_store_for_reading(db: Option<&Path>) -> anyhow::Result<Store> {
    Ok(Store::open_for_reading(&db_path(db)?)?)
}

fn line(v: &impl serde::Serialize) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    serde_json::to_writer(&mut out, v).context("standard output")?;
    writeln!(out).context("standard output")?;
    Ok(())
}

/// A writer whose errors name what it writes to (a file, standard output), so that a full disk
/// reads `PATH: No space left on device`.
struct Named<W> {
    inner: W,
    name: String,
}

impl<W: std::io::Write> Named<W> {
    fn new(inner: W, name: String) -> Self {
        Self { inner, name }
    }

    fn wrap(&self, e: std::io::Error) -> std::io::Error {
        std::io::Error::new(e.kind(), format!("{}: {e}", self.name))
    }
}

impl<W: std::io::Write> std::io::Write for Named<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.inner.write(buf).map_err(|e| self.wrap(e))
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush().map_err(|e| self.wrap(e))
    }
}

/// Runs a `runs` subcommand.
pub fn runs(cmd: RunsCmd, db: Option<&Path>) -> anyhow::Result<()> {
    let writes = matches!(cmd, RunsCmd::Delete(_) | RunsCmd::Tag(_) | RunsCmd::Note(_));
    let store = if writes {
        open_store(db)?
    } else {
        open_store_for_reading(db)?
    };
    match cmd {
        RunsCmd::List(a) => list(&store, a),
        RunsCmd::Show(a) => show(&store, a),
        RunsCmd::Diff(a) => diff(&store, a),
        RunsCmd::Samples(a) => samples(&store, a),
        RunsCmd::Export(a) => export(&store, a),
        RunsCmd::Delete(a) => delete(&store, a),
        RunsCmd::Check(a) => check(&store, a),
        RunsCmd::Tag(a) => {
            let id = store.resolve(&a.run)?;
            store.set_tags(id, &a.tags, a.remove)?;
            Ok(())
        }
        RunsCmd::Note(a) => {
            let id = store.resolve(&a.run)?;
            store.set_notes(id, &a.text)?;
            Ok(())
        }
    }
}

fn list(store: &Store, a: ListArgs) -> anyhow::Result<()> {
    let status = match &a.status {
        Some(s) => Some(RunStatus::parse(s).with_context(|| {
            format!("--status {s}: expected running, interrupted, finished or failed")
        })?),
        None => None,
    };
    let filter = RunFilter {
        status,
        tag: a.tag,
        text: a.text,
        limit: a.limit,
    };
    let mut runs = store.list_runs(&filter)?;
    if report_crashes(store, &runs) {
        runs = store.list_runs(&filter)?;
    }
    if a.out.json {
        for r in &runs {
            line(r)?;
        }
        return Ok(());
    }
    if runs.is_empty() {
        println!("no runs in {}", store.path().display());
        return Ok(());
    }
    println!(
        "{:>5}  {:<24} {:<11} {:<20} {:<10} {:>11}  tags",
        "id", "name", "status", "created", "task", "steps"
    );
    for r in &runs {
        println!(
            "{:>5}  {:<24} {:<11} {:<20} {:<10} {:>5}/{:<5}  {}",
            r.id,
            truncate(&r.name, 24),
            r.status.as_str(),
            r.created.get(..19).unwrap_or(&r.created).replace('T', " "),
            truncate(&r.task, 10),
            r.last_step,
            r.steps_planned,
            r.tags.join(",")
        );
    }
    Ok(())
}

fn truncate(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        s.to_string()
    } else {
        let mut t: String = s.chars().take(n - 1).collect();
        t.push('…');
        t
    }
}

/// The last value of every metric of a run (train metrics at the last step, `eval/…` at the
/// last evaluation).
fn final_metrics(store: &Store, id: i64) -> anyhow::Result<BTreeMap<String, f64>> {
    let mut last = BTreeMap::new();
    for (_, m) in store.metrics_by_step(id)? {
        last.extend(m);
    }
    Ok(last)
}

/// Records the plugin crashes that killed interrupted runs (see
/// [`rlvr_launch::report_plugin_crash`]), warning about each; returns whether there was one.
/// Best effort: a history this process cannot write is only read.
fn report_crashes(store: &Store, runs: &[RunRow]) -> bool {
    let mut any = false;
    for r in runs.iter().filter(|r| r.status == RunStatus::Interrupted) {
        if let Ok(Some(msg)) = rlvr_launch::report_plugin_crash(store, r) {
            eprintln!("warning: {msg}");
            any = true;
        }
    }
    any
}

fn show(store: &Store, a: ShowArgs) -> anyhow::Result<()> {
    let id = store.resolve(&a.run)?;
    let mut run = store.run(id)?;
    if report_crashes(store, std::slice::from_ref(&run)) {
        run = store.run(id)?;
    }
    let metrics = final_metrics(store, id)?;
    let evals = store.series(id, "eval/greedy_accuracy")?;
    let checkpoints = store.checkpoints(id)?;
    let logs = store.logs(id)?;
    if a.out.json {
        let mut v = serde_json::to_value(&run)?;
        if let Some(o) = v.as_object_mut() {
            o.insert("final_metrics".into(), serde_json::to_value(&metrics)?);
            o.insert(
                "checkpoints".into(),
                serde_json::to_value(
                    checkpoints
                        .iter()
                        .map(|(k, s, p)| serde_json::json!({"kind": k, "step": s, "path": p}))
                        .collect::<Vec<_>>(),
                )?,
            );
            o.insert(
                "logs".into(),
                serde_json::to_value(
                    logs.iter()
                        .map(|(s, l, m)| serde_json::json!({"step": s, "level": l, "message": m}))
                        .collect::<Vec<_>>(),
                )?,
            );
        }
        return line(&v);
    }
    println!("run {} {:?}: {}", run.id, run.name, run.status.as_str());
    println!("  created     {}", run.created);
    if let Some(f) = &run.finished {
        println!("  finished    {f}");
    }
    println!("  steps       {}/{}", run.last_step, run.steps_planned);
    println!("  task        {}   seed {}", run.task, run.seed);
    println!("  model       {}", run.model_path);
    println!(
        "  model hash  {}",
        run.model_hash.as_deref().unwrap_or("(not computed)")
    );
    println!(
        "  data hash   {}",
        run.dataset_hash.as_deref().unwrap_or("(not computed)")
    );
    println!("  engine      {}", run.engine_version);
    println!("  output      {}", run.out_dir);
    if !run.tags.is_empty() {
        println!("  tags        {}", run.tags.join(", "));
    }
    if !run.notes.is_empty() {
        println!("  notes       {}", run.notes);
    }
    for (name, path, sha) in &run.plugins {
        println!("  plugin      {name} {path} sha256:{sha}");
    }
    if let Some(e) = &run.error {
        println!("  error       {e}");
    }
    if !evals.is_empty() {
        println!("\n  held-out evaluations:");
        println!("  {:>6} {:>8} {:>9}  pass@k", "step", "greedy", "pass@1");
        let all = store.metrics_by_step(id)?;
        for (step, greedy) in &evals {
            let m = all.get(step).cloned().unwrap_or_default();
            let mut ks: Vec<(u64, f64)> = m
                .iter()
                .filter_map(|(k, v)| Some((k.strip_prefix("eval/pass_at_k/")?.parse().ok()?, *v)))
                .collect();
            ks.sort_by_key(|x| x.0);
            let ks: Vec<String> = ks.iter().map(|(k, v)| format!("@{k} {v:.3}")).collect();
            println!(
                "  {:>6} {:>8.3} {:>9.3}  {}",
                step,
                greedy,
                m.get("eval/pass_at_1").copied().unwrap_or(f64::NAN),
                ks.join(" ")
            );
        }
    }
    if !metrics.is_empty() {
        println!("\n  last training metrics:");
        for k in [
            "reward_mean",
            "accuracy",
            "entropy",
            "kl",
            "response_len_mean",
            "zero_var_frac",
            "grad_norm",
            "step_time_s",
        ] {
            if let Some(v) = metrics.get(k) {
                println!("    {k:<20} {v:.4}");
            }
        }
    }
    if !checkpoints.is_empty() {
        println!("\n  checkpoints:");
        for (kind, step, path) in &checkpoints {
            println!("    {kind:<10} step {step:>6}  {path}");
        }
    }
    if !logs.is_empty() {
        println!("\n  log:");
        for (step, level, msg) in &logs {
            println!("    [{level}] step {step}: {msg}");
        }
    }
    println!("\n  config:");
    for l in run.config.lines() {
        println!("    {l}");
    }
    Ok(())
}

fn diff(store: &Store, a: DiffArgs) -> anyhow::Result<()> {
    let (ia, ib) = (store.resolve(&a.a)?, store.resolve(&a.b)?);
    let (ra, rb) = (store.run(ia)?, store.run(ib)?);
    let config: Vec<(String, Option<String>, Option<String>)> =
        export::config_diff(&[&ra.config, &rb.config], &[])
            .into_iter()
            .map(|d| {
                let mut v = d.values.into_iter();
                (d.key, v.next().flatten(), v.next().flatten())
            })
            .collect();
    let (ma, mb) = (final_metrics(store, ia)?, final_metrics(store, ib)?);
    let names: std::collections::BTreeSet<&String> = ma.keys().chain(mb.keys()).collect();
    if a.out.json {
        return line(&serde_json::json!({
            "a": {"id": ra.id, "name": ra.name, "status": ra.status},
            "b": {"id": rb.id, "name": rb.name, "status": rb.status},
            "config": config.iter().map(|(k, x, y)| serde_json::json!({"key": k, "a": x, "b": y})).collect::<Vec<_>>(),
            "metrics": names.iter().map(|k| serde_json::json!({"name": k, "a": ma.get(*k), "b": mb.get(*k)})).collect::<Vec<_>>(),
        }));
    }
    println!(
        "A = run {} {:?} ({}), B = run {} {:?} ({})",
        ra.id,
        ra.name,
        ra.status.as_str(),
        rb.id,
        rb.name,
        rb.status.as_str()
    );
    println!("\nconfiguration differences:");
    if config.is_empty() {
        println!("  (none)");
    }
    for (k, x, y) in &config {
        println!(
            "  {k:<36} {:>22}  {:>22}",
            x.as_deref().unwrap_or("—"),
            y.as_deref().unwrap_or("—")
        );
    }
    println!("\nfinal metrics:{:>27} {:>12} {:>12}", "A", "B", "B − A");
    for k in names {
        let (x, y) = (ma.get(k), mb.get(k));
        let fmt = |v: Option<&f64>| v.map_or("—".to_string(), |v| format!("{v:.4}"));
        let d = match (x, y) {
            (Some(x), Some(y)) => format!("{:+.4}", y - x),
            _ => String::new(),
        };
        println!("  {k:<36} {:>12} {:>12} {:>12}", fmt(x), fmt(y), d);
    }
    Ok(())
}

fn samples(store: &Store, a: SamplesArgs) -> anyhow::Result<()> {
    let id = store.resolve(&a.run)?;
    let groups = store.samples(id, Some(a.step), a.min_reward)?;
    if groups.is_empty() {
        let steps = store.sample_steps(id)?;
        let range = match (steps.first(), steps.last()) {
            (Some(f), Some(l)) => format!("samples are stored for steps {f}..={l}"),
            _ => "the run has no stored samples".to_string(),
        };
        if !a.out.json {
            println!("no samples at step {} of run {id} ({range})", a.step);
        }
        return Ok(());
    }
    if a.out.json {
        for g in &groups {
            line(g)?;
        }
        return Ok(());
    }
    for g in &groups {
        println!(
            "step {} group {}: {:?} (answer {:?})",
            g.step, g.index, g.prompt, g.answer
        );
        for s in &g.samples {
            let comps: Vec<String> = s
                .components
                .iter()
                .map(|(n, v, why)| format!("{n}={v:.2} ({why})"))
                .collect();
            println!(
                "  {} reward {:>6.3}  adv {:>+6.3}  len {:>3}{}  {:?}  [{}]",
                if s.passed { "✓" } else { "✗" },
                s.reward,
                s.advantage,
                s.length,
                if s.truncated { " cut" } else { "" },
                s.completion,
                comps.join("; ")
            );
            if a.tokens {
                let t = &s.tokens;
                let cells: Vec<String> = (0..t.logprob.len())
                    .map(|i| {
                        format!(
                            "{:.2}/{:.2}/{:+.2}",
                            t.logprob[i],
                            t.entropy.get(i).copied().unwrap_or(f32::NAN),
                            t.advantage.get(i).copied().unwrap_or(f32::NAN)
                        )
                    })
                    .collect();
                println!("      logp/entropy/adv per token: {}", cells.join(" "));
            }
        }
    }
    Ok(())
}

fn export(store: &Store, a: ExportArgs) -> anyhow::Result<()> {
    let id = store.resolve(&a.run)?;
    let by_step = store.metrics_by_step(id)?;
    let groups = if a.no_samples {
        Vec::new()
    } else {
        store.samples(id, None, None)?
    };
    let open = |p: &Path| -> anyhow::Result<Box<dyn std::io::Write>> {
        let f = std::fs::File::create(p).with_context(|| format!("{}", p.display()))?;
        Ok(Box::new(std::io::BufWriter::new(Named::new(
            f,
            p.display().to_string(),
        ))))
    };
    let stdout = || -> Box<dyn std::io::Write> {
        Box::new(std::io::BufWriter::new(Named::new(
            std::io::stdout().lock(),
            "standard output".to_string(),
        )))
    };
    let mut out: Box<dyn std::io::Write> = match &a.out {
        Some(p) => open(p)?,
        None => stdout(),
    };
    let fmt = match a.format {
        Format::Csv => ExportFormat::Csv,
        Format::Jsonl => ExportFormat::Jsonl,
    };
    export::write_metrics(&mut out, fmt, id, &by_step)?;
    match fmt {
        ExportFormat::Jsonl => export::write_samples(&mut out, fmt, id, &groups)?,
        ExportFormat::Csv if !groups.is_empty() => {
            // CSV of samples has other columns: a file of its own, or a second table on
            // standard output after an empty line.
            let mut sout: Box<dyn std::io::Write> = match &a.out {
                Some(p) => {
                    let mut sp = p.clone().into_os_string();
                    sp.push(".samples.csv");
                    open(Path::new(&sp))?
                }
                None => {
                    writeln!(out)?;
                    stdout()
                }
            };
            out.flush()?;
            export::write_samples(&mut sout, fmt, id, &groups)?;
            sout.flush()?;
        }
        ExportFormat::Csv => {}
    }
    out.flush()?;
    Ok(())
}

fn delete(store: &Store, a: DeleteArgs) -> anyhow::Result<()> {
    let id = store.resolve(&a.run)?;
    let run: RunRow = store.run(id)?;
    if run.status == RunStatus::Running {
        anyhow::bail!("run {id} is still running; stop it before deleting its history");
    }
    let files = if a.files {
        Some(store.delete_run_with_files(id)?)
    } else {
        store.delete_run(id)?;
        None
    };
    if a.out.json {
        return line(&serde_json::json!({"deleted": id, "name": run.name, "files": files}));
    }
    println!("deleted run {id} {:?}", run.name);
    let Some(f) = files else {
        return Ok(());
    };
    let shown = |ids: &[i64]| {
        ids.iter()
            .map(i64::to_string)
            .collect::<Vec<_>>()
            .join(", ")
    };
    if !f.shared_with.is_empty() {
        println!(
            "kept the files in {}: run {} uses the same folder",
            run.out_dir,
            shown(&f.shared_with)
        );
    } else if f.folder_removed {
        println!(
            "removed {} ({} files and folders)",
            run.out_dir,
            f.removed.len()
        );
    } else {
        println!(
            "removed {} files and folders the run wrote in {}; kept the folder, which holds \
             other files:",
            f.removed.len(),
            run.out_dir
        );
        for k in &f.kept {
            println!("  {}", k.display());
        }
    }
    Ok(())
}

fn check(store: &Store, a: JsonArg) -> anyhow::Result<()> {
    let rep = store.check()?;
    if a.json {
        line(&rep)?;
    } else {
        println!("{}: {} runs", store.path().display(), rep.runs);
        if rep.integrity.is_empty() {
            println!("  integrity: ok");
        }
        for l in &rep.schema {
            println!("  schema: {l}");
        }
        for l in &rep.integrity {
            println!("  integrity: {l}");
        }
        if rep.foreign_key_violations > 0 {
            println!(
                "  {} rows point at missing rows",
                rep.foreign_key_violations
            );
        }
        for (id, p) in &rep.missing_files {
            println!("  run {id}: missing {p}");
        }
        for d in &rep.orphan_dirs {
            println!("  orphan run folder (no run in the history owns it): {d}");
        }
    }
    if rep.ok() {
        Ok(())
    } else {
        anyhow::bail!("the check found problems (listed above)")
    }
}
