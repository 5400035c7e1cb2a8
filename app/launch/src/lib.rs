//! The run launcher shared by the CLI (`rlvr-studio train`) and the desktop app: everything
//! between "here is a validated config" and "the run ended".
//!
//! 1. [`prepare_new`] or [`Resumable::open`] + [`Resumable::prepare`]: pick or check the run
//!    folder (see [`folder`]: two runs never share one), create the history row or roll the
//!    stored run back to its checkpoint, record the plugin libraries it uses, write the
//!    folder's `run.json` marker and open the run-folder writer (create, or reopen after the
//!    checkpoint step). Failures after the row exists mark the run failed.
//! 2. [`Prepared::start`]: the `store-writer` thread ([`Recorder`]) and the `engine` thread.
//! 3. [`Running::forward`] (on the caller's thread): every engine event goes to a listener (the
//!    CLI's printer, the GUI's channel) and then to the writer; if the writer stops on an
//!    error, the run is stopped rather than losing history. Returns the run's summaries or
//!    the one message that says why it failed.
//!
//! The caller keeps what differs: building the plugin host and validating the config (the
//! CLI lists plugin load errors), process tuning between prepare and start, and how events
//! are shown.

pub mod folder;

use std::path::{Path, PathBuf};

use crossbeam_channel::Sender;
use rlvr_core::checkpoint::{checkpoint_step, CHECKPOINT_SLOTS};
use rlvr_core::events::{EngineEvent, RunSummary};
use rlvr_core::extensions::Extensions;
use rlvr_core::output::RunDirWriter;
use rlvr_core::RunConfig;
use rlvr_engine::trainer::Command;
use rlvr_engine::{EngineError, RunHandle};
use rlvr_plugin_host::PluginHost;
use rlvr_store::{NewRun, Recorder, RecorderSummary, RunRow, RunStatus, Store, StoreError};

pub use folder::{RunMarker, MARKER_FILE};

/// Why a run could not be started, resumed or finished. Messages are whole sentences for the
/// user, naming the run, folder or file.
#[derive(Debug, thiserror::Error)]
pub enum LaunchError {
    /// The run history database.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The configuration or the run folder.
    #[error(transparent)]
    Engine(#[from] EngineError),
    /// A stored run's configuration no longer parses.
    #[error("stored configuration of run {run_id}: {err}")]
    StoredConfig {
        /// The run.
        run_id: i64,
        /// The parser's error.
        err: rlvr_core::CoreError,
    },
    /// A thread could not be started.
    #[error("cannot start the {what} thread: {err}")]
    Thread {
        /// Which thread (`store writer`, `engine`).
        what: &'static str,
        /// The error.
        err: std::io::Error,
    },
    /// The output folder belongs to another run.
    #[error("{0}")]
    FolderTaken(String),
    /// A run folder's `run.json` cannot be read.
    #[error("{}: {msg}", path.display())]
    Marker {
        /// The marker file.
        path: PathBuf,
        /// What is wrong.
        msg: String,
    },
    /// The run cannot be resumed as asked (still running, no checkpoint, an override that
    /// would change its trajectory).
    #[error("{0}")]
    Resume(String),
    /// The run ended on an error (engine failure, history writer failure).
    #[error("{0}")]
    Run(String),
}

impl From<rlvr_core::CoreError> for LaunchError {
    fn from(e: rlvr_core::CoreError) -> Self {
        Self::Engine(e.into())
    }
}

/// Settings given on the command line over a config (`--steps`, `--seed`, `--out`,
/// `--threads`, `--model`, `--plugins`).
#[derive(Clone, Debug, Default)]
pub struct Overrides {
    /// `steps`.
    pub steps: Option<usize>,
    /// `seed`.
    pub seed: Option<u64>,
    /// `output.dir`.
    pub out: Option<PathBuf>,
    /// `threads`.
    pub threads: Option<usize>,
    /// `model.path`.
    pub model: Option<PathBuf>,
    /// Plugin folders added to `plugins.dirs` (made absolute).
    pub plugin_dirs: Vec<PathBuf>,
}

fn absolute(p: &Path) -> PathBuf {
    std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf())
}

impl Overrides {
    /// The flags given, as typed (`--steps 5 --seed 1`); empty when none.
    pub fn flags(&self) -> String {
        let mut out = Vec::new();
        if let Some(s) = self.steps {
            out.push(format!("--steps {s}"));
        }
        if let Some(s) = self.seed {
            out.push(format!("--seed {s}"));
        }
        if let Some(o) = &self.out {
            out.push(format!("--out {}", o.display()));
        }
        if let Some(t) = self.threads {
            out.push(format!("--threads {t}"));
        }
        if let Some(m) = &self.model {
            out.push(format!("--model {}", m.display()));
        }
        for d in &self.plugin_dirs {
            out.push(format!("--plugins {}", d.display()));
        }
        out.join(" ")
    }

    /// Applies them to the config of a new run.
    pub fn apply(&self, cfg: &mut RunConfig) {
        if let Some(s) = self.steps {
            cfg.steps = s;
        }
        if let Some(s) = self.seed {
            cfg.seed = s;
        }
        if let Some(o) = &self.out {
            cfg.output.dir = o.clone();
        }
        if let Some(t) = self.threads {
            cfg.threads = t;
        }
        if let Some(m) = &self.model {
            cfg.model.path = m.clone();
        }
        self.add_plugin_dirs(cfg);
    }

    fn add_plugin_dirs(&self, cfg: &mut RunConfig) {
        for d in &self.plugin_dirs {
            let d = absolute(d);
            if !cfg.plugins.dirs.contains(&d) {
                cfg.plugins.dirs.push(d);
            }
        }
    }

    /// Applies them to a stored run's config: only what cannot change the steps already
    /// trained is taken (more steps, plugin folders); a seed, model, thread count or output
    /// folder other than the run's is refused, naming the key and both values.
    fn apply_on_resume(&self, run: &RunRow, cfg: &mut RunConfig) -> Result<(), LaunchError> {
        let refuse = |key: &str, flag: &str, given: String, stored: String| {
            Err(LaunchError::Resume(format!(
                "cannot resume run {} {:?} with {flag} {given}: it was trained with {key} = \
                 {stored}, and a resumed run keeps its seed, model, thread count and output \
                 folder so that its remaining steps are the ones it would have trained; drop \
                 {flag}, or start a new run with it",
                run.id, run.name
            )))
        };
        if let Some(s) = self.seed.filter(|s| *s != cfg.seed) {
            return refuse("seed", "--seed", s.to_string(), cfg.seed.to_string());
        }
        if let Some(m) = self
            .model
            .as_ref()
            .filter(|m| absolute(m) != absolute(&cfg.model.path))
        {
            return refuse(
                "model.path",
                "--model",
                m.display().to_string(),
                cfg.model.path.display().to_string(),
            );
        }
        if let Some(t) = self.threads.filter(|t| *t != cfg.threads) {
            return refuse(
                "threads",
                "--threads",
                t.to_string(),
                cfg.threads.to_string(),
            );
        }
        if let Some(o) = self
            .out
            .as_ref()
            .filter(|o| absolute(o) != absolute(&cfg.output.dir))
        {
            return refuse(
                "output.dir",
                "--out",
                o.display().to_string(),
                cfg.output.dir.display().to_string(),
            );
        }
        if let Some(s) = self.steps {
            cfg.steps = s;
        }
        self.add_plugin_dirs(cfg);
        Ok(())
    }
}

/// A new run to prepare.
#[derive(Clone, Debug)]
pub struct NewRunRequest {
    /// The validated config; an empty `output.dir` means `default_dir`.
    pub cfg: RunConfig,
    /// The folder of a run whose config names none (CLI: `runs/<name>`; GUI:
    /// `<runs root>/<name>-<unix time>`). If another run owns it, the first free of
    /// `<default_dir>-2`, `-3`, ... is used instead; an explicit `output.dir` that belongs to
    /// another run is refused.
    pub default_dir: PathBuf,
    /// Tags.
    pub tags: Vec<String>,
    /// Notes.
    pub notes: String,
}

/// A run ready to start: its row is in the history (status running), its folder claimed and
/// its run-folder writer open.
pub struct Prepared {
    store: Store,
    /// Id in the run history.
    pub run_id: i64,
    /// The config it runs (`output.dir` absolute).
    pub cfg: RunConfig,
    /// The step it resumes after (`None`: from the start).
    pub resume_step: Option<usize>,
    /// What a resume had to work around (a damaged checkpoint slot skipped...), for the user.
    pub notes: Vec<String>,
    writer: RunDirWriter,
    ext: Extensions,
}

impl std::fmt::Debug for Prepared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Prepared")
            .field("run_id", &self.run_id)
            .field("resume_step", &self.resume_step)
            .field("dir", &self.cfg.output.dir)
            .finish()
    }
}

/// Records every plugin library the run uses, with its hash, in the run history.
fn record_plugins(
    store: &Store,
    run_id: i64,
    cfg: &RunConfig,
    host: &PluginHost,
) -> Result<(), StoreError> {
    for p in host.used_by(cfg) {
        store.add_plugin(
            run_id,
            &p.path,
            &format!("{} {}", p.manifest.name, p.manifest.version),
            &p.sha256,
        )?;
    }
    Ok(())
}

/// A run whose process died of an in-process plugin crash left the handler's line in its
/// folder's crash log: records it in the history (an error log line, the run failed with it)
/// and removes the file; returns the message for the user. Runs still running, or without a
/// crash log, give `None`.
pub fn report_plugin_crash(store: &Store, run: &RunRow) -> Result<Option<String>, LaunchError> {
    if run.status == RunStatus::Running || run.out_dir.is_empty() {
        return Ok(None);
    }
    let path = Path::new(&run.out_dir).join(rlvr_plugin_host::CRASH_LOG);
    let text = match std::fs::read(&path) {
        Ok(t) => String::from_utf8_lossy(&t).into_owned(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(EngineError::io(&path, e).into()),
    };
    let lines: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    let Some(last) = lines.last() else {
        let _ = std::fs::remove_file(&path);
        return Ok(None);
    };
    let msg = format!(
        "the process of run {} {:?} died after step {}: {last}",
        run.id, run.name, run.last_step
    );
    store.record_crash(run.id, &msg)?;
    std::fs::remove_file(&path).map_err(|e| EngineError::io(&path, e))?;
    Ok(Some(msg))
}

/// Marks the run failed with the error's message, then returns the error.
fn failed<T>(store: &Store, run_id: i64, e: impl Into<LaunchError>) -> Result<T, LaunchError> {
    let e = e.into();
    store.mark_failed(run_id, &e.to_string())?;
    Err(e)
}

/// Creates the run in the history and claims and opens its folder (see [`NewRunRequest`]).
/// `ext` are the plugin components the config was validated with, `host` the plugins whose
/// libraries the run uses.
pub fn prepare_new(
    store: Store,
    req: NewRunRequest,
    ext: Extensions,
    host: &PluginHost,
) -> Result<Prepared, LaunchError> {
    let NewRunRequest {
        mut cfg,
        default_dir,
        tags,
        notes,
    } = req;
    let dir = {
        let folders = folder::Folders::new(&store)?;
        if cfg.output.dir.as_os_str().is_empty() {
            folders.free_default(&absolute(&default_dir))?
        } else {
            let dir = absolute(&cfg.output.dir);
            if let Some(owner) = folders.owner_for_new(&dir)? {
                return Err(folder::taken_for_new(&dir, &owner));
            }
            dir
        }
    };
    cfg.output.dir = dir.clone();
    // The model folder, the memory estimate and the task are checked before the run is
    // recorded: a run that cannot start leaves no failed record behind.
    rlvr_engine::trainer::preflight(&cfg, &ext)?;
    let run_id = store.create_run(&NewRun {
        name: cfg.name.clone(),
        config: cfg.to_toml(),
        seed: cfg.seed,
        model_path: cfg.model.path.to_string_lossy().into_owned(),
        steps_planned: cfg.steps,
        out_dir: dir.to_string_lossy().into_owned(),
        tags,
        notes,
    })?;
    record_plugins(&store, run_id, &cfg, host)?;
    if let Err(e) = std::fs::create_dir_all(&dir) {
        return failed(&store, run_id, EngineError::io(&dir, e));
    }
    let run = store.run(run_id)?;
    let marker = RunMarker::of(&run, &store);
    // A marker left there belongs to a run that owns nothing (checked above): replace it.
    let replace = dir.join(MARKER_FILE).exists();
    if let Err(e) = marker.write(&dir, replace) {
        let err = if e.kind() == std::io::ErrorKind::AlreadyExists {
            let by = RunMarker::read(&dir)
                .ok()
                .flatten()
                .map_or("another run".to_string(), |m| {
                    format!("run {} {:?}", m.run_id, m.name)
                });
            folder::taken_for_new(&dir, &folder::Owner(format!("{by}, started meanwhile")))
        } else {
            EngineError::io(dir.join(MARKER_FILE), e).into()
        };
        return failed(&store, run_id, err);
    }
    let writer = match RunDirWriter::create(&dir, &cfg.to_toml()) {
        Ok(w) => w,
        Err(e) => return failed(&store, run_id, e),
    };
    Ok(Prepared {
        store,
        run_id,
        cfg,
        resume_step: None,
        notes: Vec::new(),
        writer,
        ext,
    })
}

/// A stored run about to be resumed, with its stored config (and the allowed overrides)
/// applied; [`Resumable::cfg`] is what the caller validates and builds the plugin host from.
pub struct Resumable {
    store: Store,
    run: RunRow,
    cfg: RunConfig,
    stored_steps: usize,
    notes: Vec<String>,
}

impl Resumable {
    /// Reads the stored run `run_id` for a resume. Refuses a run that is still running, and
    /// overrides that would change its trajectory (see [`Overrides`]).
    pub fn open(store: Store, run_id: i64, overrides: &Overrides) -> Result<Self, LaunchError> {
        let mut notes = Vec::new();
        if let Some(msg) = report_plugin_crash(&store, &store.run(run_id)?)? {
            notes.push(msg);
        }
        let run = store.run(run_id)?;
        if run.status == RunStatus::Running {
            return Err(LaunchError::Resume(format!(
                "run {run_id} ({:?}) is still running in another process",
                run.name
            )));
        }
        let mut cfg = RunConfig::from_toml(&run.config)
            .map_err(|err| LaunchError::StoredConfig { run_id, err })?;
        cfg.output.dir = PathBuf::from(&run.out_dir);
        let stored_steps = cfg.steps;
        overrides.apply_on_resume(&run, &mut cfg)?;
        Ok(Self {
            store,
            run,
            cfg,
            stored_steps,
            notes,
        })
    }

    /// The config the run resumes with.
    pub fn cfg(&self) -> &RunConfig {
        &self.cfg
    }

    /// The stored run.
    pub fn run(&self) -> &RunRow {
        &self.run
    }

    /// Checks that the run folder is still this run's and finds its newest checkpoint (none:
    /// a run stopped before its first one restarts from step 0, exactly), refuses a `steps`
    /// below it, rolls the history back to it, records a changed step count (config, planned
    /// steps and a log line), and reopens the run folder.
    pub fn prepare(self, ext: Extensions, host: &PluginHost) -> Result<Prepared, LaunchError> {
        let Self {
            store,
            run,
            mut cfg,
            stored_steps,
            notes: crash_notes,
        } = self;
        let id = run.id;
        let dir = cfg.output.dir.clone();
        folder::Folders::new(&store)?.check_resume(&run, &dir)?;
        check_checkpoint_stamps(&run, &cfg, &dir)?;
        // The newest slot that verifies; a slot a full disk or a crash cut short is skipped
        // with a note, and a first checkpoint that never completed restarts the run from step 0.
        let from = store.resume_from(id, &dir, &CHECKPOINT_SLOTS, |p| {
            checkpoint_step(p).map_err(|e| e.to_string())
        })?;
        let step = from.step;
        let mut notes = crash_notes;
        notes.extend(from.notes);
        let after = step.unwrap_or(0);
        if cfg.steps < after {
            return Err(LaunchError::Resume(format!(
                "cannot resume run {id} {:?} with --steps {}: its checkpoint is after step \
                 {after}, and a resumed run can keep or extend its steps but not undo them; give \
                 --steps {after} or more",
                run.name, cfg.steps
            )));
        }
        store.rollback_for_resume(id, step, cfg.steps)?;
        if cfg.steps != stored_steps {
            let text = cfg.to_toml();
            store.amend_config(
                id,
                &text,
                cfg.steps,
                after,
                &format!(
                    "resumed after step {after} with steps = {} (was {stored_steps})",
                    cfg.steps
                ),
            )?;
            // The folder's config.toml says what the run now runs, like the history.
            let path = dir.join("config.toml");
            let tmp = dir.join("config.toml.tmp");
            if let Err(e) = std::fs::write(&tmp, text).and_then(|()| std::fs::rename(&tmp, &path)) {
                return failed(&store, id, EngineError::io(&path, e));
            }
        }
        record_plugins(&store, id, &cfg, host)?;
        if !dir.join(MARKER_FILE).exists() {
            // A folder written before markers existed: it is this run's (checked above).
            if let Err(e) = RunMarker::of(&run, &store).write(&dir, false) {
                return failed(&store, id, EngineError::io(dir.join(MARKER_FILE), e));
            }
        }
        let writer = match step {
            Some(s) => RunDirWriter::reopen(&dir, s),
            None => RunDirWriter::create(&dir, &cfg.to_toml()),
        };
        let writer = match writer {
            Ok(w) => w,
            Err(e) => return failed(&store, id, e),
        };
        cfg.output.dir = dir;
        Ok(Prepared {
            store,
            run_id: id,
            cfg,
            resume_step: step,
            notes,
            writer,
            ext,
        })
    }
}

/// Refuses to resume `run` from a folder holding a checkpoint slot stamped with another run's
/// id or another config (files copied in from another run's folder), naming the file and both
/// runs, before the history is rolled back. Slots that do not verify are left to
/// `Store::resume_from` (skipped with a note); unstamped ones (older builds) pass.
fn check_checkpoint_stamps(run: &RunRow, cfg: &RunConfig, dir: &Path) -> Result<(), LaunchError> {
    let hash = rlvr_engine::trainer::config_hash(cfg);
    for slot in CHECKPOINT_SLOTS {
        let path = dir.join(slot);
        if !path.exists() {
            continue;
        }
        let Ok(state) = rlvr_core::checkpoint::checkpoint_state(&path) else {
            continue;
        };
        if let Err(e) = rlvr_core::checkpoint::check_stamp(&path, &state, Some(run.id), &hash) {
            return Err(LaunchError::Resume(format!(
                "cannot resume run {} {:?}: {e}",
                run.id, run.name
            )));
        }
    }
    Ok(())
}

impl Prepared {
    /// The history (e.g. to read the curves before a resume).
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Starts the `store-writer` thread and the `engine` thread (which first restores the
    /// checkpoint when resuming).
    pub fn start(self) -> Result<Running, LaunchError> {
        let Self {
            store,
            run_id,
            cfg,
            resume_step,
            writer,
            ext,
            ..
        } = self;
        let recorder =
            Recorder::spawn(store, run_id, cfg.output.keep_groups, writer).map_err(|err| {
                LaunchError::Thread {
                    what: "store writer",
                    err,
                }
            })?;
        // An in-process plugin that kills the process leaves its trace in the run folder.
        let crash_log = cfg.output.dir.join(rlvr_plugin_host::CRASH_LOG);
        rlvr_plugin_host::set_crash_log(Some(crash_log.as_path()));
        let handle = rlvr_engine::trainer::spawn_run(cfg, resume_step.is_some(), ext, Some(run_id))
            .map_err(|err| LaunchError::Thread {
                what: "engine",
                err,
            })?;
        Ok(Running {
            run_id,
            handle,
            recorder,
        })
    }
}

/// A run whose engine and writer threads are running.
pub struct Running {
    /// Id in the run history.
    pub run_id: i64,
    handle: RunHandle,
    recorder: Recorder,
}

/// What a run that ended without error leaves.
#[derive(Debug)]
pub struct Finished {
    /// The engine's summary.
    pub summary: RunSummary,
    /// What the history writer did.
    pub stored: RecorderSummary,
}

impl Running {
    /// What the engine's current step is doing (phase, work done of the expected total).
    pub fn progress(&self) -> std::sync::Arc<rlvr_engine::events::Progress> {
        self.handle.progress.clone()
    }

    /// The engine's command channel (stop, pause, step once, ...).
    pub fn commands(&self) -> Sender<Command> {
        self.handle.commands.clone()
    }

    /// Hands every engine event to `listener`, then to the history writer, until the engine
    /// ends; then waits for the writer. If the writer stops on an error the run is stopped
    /// (the listener still sees the events until the engine ends). Errors, in this order: the
    /// history could not be stored, the engine thread panicked, the writer stopped, the
    /// engine's failure.
    pub fn forward(self, mut listener: impl FnMut(&EngineEvent)) -> Result<Finished, LaunchError> {
        let Self {
            handle, recorder, ..
        } = self;
        let mut recorder_gone = false;
        let mut failure = None;
        for ev in handle.events.iter() {
            listener(&ev);
            if let EngineEvent::Failed { error } = &ev {
                failure = Some(error.clone());
            }
            if !recorder_gone && !recorder.send(ev) {
                // The writer stopped on an error: stop training rather than lose history.
                recorder_gone = true;
                let _ = handle.commands.send(Command::Stop);
            }
        }
        let stored = recorder.finish();
        let joined = handle.thread.join();
        rlvr_plugin_host::set_crash_log(None);
        let stored = match stored {
            Ok(s) => s,
            Err(e) => {
                return Err(LaunchError::Run(format!(
                    "the run history could not be stored: {e}"
                )))
            }
        };
        let Ok(result) = joined else {
            return Err(LaunchError::Run("the engine thread panicked".into()));
        };
        if recorder_gone {
            return Err(LaunchError::Run("the run history writer stopped".into()));
        }
        match (result, failure) {
            (_, Some(e)) => Err(LaunchError::Run(e)),
            (Err(e), None) => Err(LaunchError::Run(e.to_string())),
            (Ok(summary), None) => Ok(Finished { summary, stored }),
        }
    }
}

#[cfg(test)]
mod tests;
