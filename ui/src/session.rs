//! A run trained from the GUI: the engine on its own thread, the store writer (Recorder) on
//! another, and a small forwarder thread between them that hands every event to the writer and a
//! copy to the UI, then asks for a repaint. The UI only ever `try_recv`s, so it never blocks.
//!
//! Starting and resuming follow the CLI (`app/studio/src/train.rs`: `train`/`start_resumed`):
//! create or roll back the run row, open the run folder writer, spawn the Recorder and the
//! engine. The few lines are duplicated here on purpose (that file is the CLI's); a later
//! refactor can move both into `rlvr_store`.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender};
use rlvr_engine::events::{EngineEvent, EvalMetrics, RunInfo, SampleGroup, StepMetrics};
use rlvr_engine::extensions::Extensions;
use rlvr_engine::output::RunDirWriter;
use rlvr_engine::trainer::{latest_checkpoint, Command};
use rlvr_engine::RunConfig;
use rlvr_store::{NewRun, Recorder, RunStatus, Store};

/// Why a run could not start (shown in the UI as is).
#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    /// The run history database.
    #[error("run history: {0}")]
    Store(#[from] rlvr_store::StoreError),
    /// The configuration or run folder.
    #[error("{0}")]
    Engine(#[from] rlvr_engine::EngineError),
    /// A thread could not be started.
    #[error("cannot start a thread: {0}")]
    Thread(#[from] std::io::Error),
    /// Anything else, already worded for the user.
    #[error("{0}")]
    Other(String),
}

/// What the forwarder tells the UI.
#[derive(Debug)]
pub enum SessionEvent {
    /// An engine event (`Checkpoint` is replaced by [`SessionEvent::Checkpointed`]).
    Engine(Box<EngineEvent>),
    /// The resume state after this step was handed to the writer.
    Checkpointed(usize),
    /// Engine and writer are done; `Some(error)` if either failed.
    Ended(Option<String>),
}

/// Where a live run stands.
#[derive(Clone, Debug, PartialEq)]
pub enum Phase {
    /// Loading the model / evaluating step 0 (before the first `Started`).
    Starting,
    /// Training.
    Running,
    /// Paused between steps.
    Paused,
    /// Stop requested; finishing the current step.
    Stopping,
    /// Ran all its steps.
    Finished,
    /// Stopped early (interrupted in the history; can be resumed).
    Stopped,
    /// Failed with this message.
    Failed(String),
}

impl Phase {
    /// Whether the engine thread is still alive.
    pub fn is_active(&self) -> bool {
        matches!(
            self,
            Phase::Starting | Phase::Running | Phase::Paused | Phase::Stopping
        )
    }

    /// Short label for the status chip.
    pub fn label(&self) -> &'static str {
        match self {
            Phase::Starting => "starting",
            Phase::Running => "running",
            Phase::Paused => "paused",
            Phase::Stopping => "stopping",
            Phase::Finished => "finished",
            Phase::Stopped => "interrupted",
            Phase::Failed(_) => "failed",
        }
    }
}

/// Longest wait between an engine event and the frame showing it.
pub const REPAINT_EVERY: Duration = Duration::from_millis(150);

/// Steps whose sampled groups stay in memory (older ones are read back from the store).
pub const KEEP_SAMPLE_STEPS: usize = 64;

/// A run started from the GUI.
pub struct LiveRun {
    /// Id in the run history.
    pub run_id: i64,
    /// The configuration it runs.
    pub cfg: RunConfig,
    /// Facts the engine sent at start.
    pub info: Option<RunInfo>,
    /// Every metric so far, by name (including the steps before a resume, from the store).
    pub table: crate::history::MetricTable,
    /// Step metrics received in this session.
    pub steps: Vec<StepMetrics>,
    /// Evaluations received in this session.
    pub evals: Vec<EvalMetrics>,
    /// Sampled groups of the last [`KEEP_SAMPLE_STEPS`] steps.
    pub samples: std::collections::BTreeMap<usize, Vec<SampleGroup>>,
    /// Log lines (engine notes, saved policies).
    pub logs: Vec<String>,
    /// Where it stands.
    pub phase: Phase,
    /// Step it started from (non-zero when resumed).
    pub start_step: usize,
    /// Last step whose resume state was written.
    pub last_checkpoint: Option<usize>,
    /// Steps planned.
    pub total_steps: usize,
    /// Steps completed (from the events).
    pub done_steps: usize,
    /// Commands pending a reply: pauses requested while a step is running show as "pausing".
    pause_requested: bool,
    started_at: Instant,
    first_step_at: Option<Instant>,
    commands: Sender<Command>,
    events: Receiver<SessionEvent>,
    forwarder: Option<std::thread::JoinHandle<()>>,
}

fn absolute(p: &Path) -> PathBuf {
    std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf())
}

/// Seconds since the Unix epoch (names default run folders).
fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Records every plugin library the run uses, with its hash, in the run history.
fn record_plugins(
    store: &Store,
    run_id: i64,
    cfg: &RunConfig,
    plugins: &rlvr_plugin_host::PluginHost,
) -> Result<(), SessionError> {
    for p in plugins.used_by(cfg) {
        store.add_plugin(
            run_id,
            &p.path,
            &format!("{} {}", p.manifest.name, p.manifest.version),
            &p.sha256,
        )?;
    }
    Ok(())
}

impl LiveRun {
    /// Creates a run in the history at `db` and starts training it. A config without an output
    /// folder gets `runs_root/<name>-<unix time>`.
    pub fn start(
        mut cfg: RunConfig,
        db: &Path,
        runs_root: &Path,
        tags: Vec<String>,
        plugins: &rlvr_plugin_host::PluginHost,
        repaint: Option<egui::Context>,
    ) -> Result<Self, SessionError> {
        if cfg.output.dir.as_os_str().is_empty() {
            cfg.output.dir = runs_root.join(format!("{}-{}", sanitize(&cfg.name), now_secs()));
        }
        cfg.output.dir = absolute(&cfg.output.dir);
        let ext = plugins.extensions();
        cfg.validate_with(&ext)?;
        let store = Store::open(db)?;
        let run_id = store.create_run(&NewRun {
            name: cfg.name.clone(),
            config: cfg.to_toml(),
            seed: cfg.seed,
            model_path: cfg.model.path.to_string_lossy().into_owned(),
            steps_planned: cfg.steps,
            out_dir: cfg.output.dir.to_string_lossy().into_owned(),
            tags,
            notes: String::new(),
        })?;
        record_plugins(&store, run_id, &cfg, plugins)?;
        let writer = match RunDirWriter::create(&cfg.output.dir, &cfg.to_toml()) {
            Ok(w) => w,
            Err(e) => {
                store.mark_failed(run_id, &e.to_string())?;
                return Err(e.into());
            }
        };
        Self::launch(
            store,
            run_id,
            (cfg, ext),
            None,
            writer,
            Default::default(),
            repaint,
        )
    }

    /// Resumes an interrupted run from its latest checkpoint (or from the start when it stopped
    /// before its first one), like `rlvr-studio train --resume RUN`.
    pub fn resume(
        run_id: i64,
        db: &Path,
        plugins: &rlvr_plugin_host::PluginHost,
        repaint: Option<egui::Context>,
    ) -> Result<Self, SessionError> {
        let store = Store::open(db)?;
        let run = store.run(run_id)?;
        if run.status == RunStatus::Running {
            return Err(SessionError::Other(format!(
                "run {run_id} ({:?}) is still running in another process",
                run.name
            )));
        }
        let mut cfg = RunConfig::from_toml(&run.config)?;
        cfg.output.dir = PathBuf::from(&run.out_dir);
        let ext = plugins.extensions();
        cfg.validate_with(&ext)?;
        let step = match latest_checkpoint(&cfg.output.dir)? {
            Some((_, step)) => Some(step),
            None if !store
                .checkpoints(run_id)?
                .iter()
                .any(|(k, _, _)| k == "resume") =>
            {
                None
            }
            None => {
                return Err(SessionError::Other(format!(
                    "run {run_id}: no checkpoint to resume from in {} (its checkpoint files \
                     were removed)",
                    cfg.output.dir.display()
                )))
            }
        };
        store.rollback_for_resume(run_id, step, cfg.steps)?;
        record_plugins(&store, run_id, &cfg, plugins)?;
        let writer = match step {
            Some(s) => RunDirWriter::reopen(&cfg.output.dir, s),
            None => RunDirWriter::create(&cfg.output.dir, &cfg.to_toml()),
        };
        let writer = match writer {
            Ok(w) => w,
            Err(e) => {
                store.mark_failed(run_id, &e.to_string())?;
                return Err(e.into());
            }
        };
        // The curves so far come from the history.
        let mut history = crate::history::MetricTable::load(&store, run_id).unwrap_or_default();
        history.truncate(step.unwrap_or(0) as u64);
        Self::launch(store, run_id, (cfg, ext), step, writer, history, repaint)
    }

    fn launch(
        store: Store,
        run_id: i64,
        (cfg, ext): (RunConfig, Extensions),
        resume_step: Option<usize>,
        writer: RunDirWriter,
        history: crate::history::MetricTable,
        repaint: Option<egui::Context>,
    ) -> Result<Self, SessionError> {
        let recorder = Recorder::spawn(store, run_id, cfg.output.keep_groups, writer)?;
        let handle = rlvr_engine::trainer::spawn_ext(cfg.clone(), resume_step.is_some(), ext)?;
        let commands = handle.commands.clone();
        let (tx, rx) = crossbeam_channel::unbounded();
        let stop = handle.commands.clone();
        let forwarder = std::thread::Builder::new()
            .name("ui-forwarder".into())
            .spawn(move || forward(handle, recorder, stop, tx, repaint))?;
        let start = resume_step.unwrap_or(0);
        Ok(Self {
            run_id,
            total_steps: cfg.steps,
            cfg,
            info: None,
            table: history,
            steps: Vec::new(),
            evals: Vec::new(),
            samples: Default::default(),
            logs: Vec::new(),
            phase: Phase::Starting,
            start_step: start,
            last_checkpoint: resume_step,
            done_steps: start,
            pause_requested: false,
            started_at: Instant::now(),
            first_step_at: None,
            commands,
            events: rx,
            forwarder: Some(forwarder),
        })
    }

    /// Drains pending events (at most `budget`); returns how many arrived.
    pub fn poll(&mut self, budget: usize) -> usize {
        let mut n = 0;
        while n < budget {
            let Ok(ev) = self.events.try_recv() else {
                break;
            };
            n += 1;
            self.apply(ev);
        }
        n
    }

    fn apply(&mut self, ev: SessionEvent) {
        match ev {
            SessionEvent::Engine(e) => match *e {
                EngineEvent::Started(info) => {
                    self.total_steps = info.steps;
                    self.info = Some(info);
                    if self.phase == Phase::Starting {
                        self.phase = if self.pause_requested {
                            Phase::Paused
                        } else {
                            Phase::Running
                        };
                    }
                }
                EngineEvent::Step(m) => {
                    self.done_steps = m.step;
                    self.first_step_at.get_or_insert_with(Instant::now);
                    self.table.push_step(&m);
                    self.steps.push(m);
                }
                EngineEvent::Eval(e) => {
                    self.table.push_eval(&e);
                    self.evals.push(e);
                }
                EngineEvent::Samples { step, groups } => {
                    self.samples.insert(step, groups);
                    while self.samples.len() > KEEP_SAMPLE_STEPS {
                        self.samples.pop_first();
                    }
                }
                EngineEvent::PolicySaved { step, path, kind } => self.logs.push(format!(
                    "step {step}: saved {kind} policy to {}",
                    path.display()
                )),
                EngineEvent::Log { message } => self.logs.push(message),
                EngineEvent::Done(s) => {
                    self.phase = if s.stopped {
                        Phase::Stopped
                    } else {
                        Phase::Finished
                    };
                }
                EngineEvent::Failed { error } => self.phase = Phase::Failed(error),
                EngineEvent::Checkpoint(_) => {}
            },
            SessionEvent::Checkpointed(step) => self.last_checkpoint = Some(step),
            SessionEvent::Ended(err) => {
                if let Some(e) = err {
                    self.phase = Phase::Failed(e);
                } else if self.phase.is_active() {
                    self.phase = if self.done_steps >= self.total_steps {
                        Phase::Finished
                    } else {
                        Phase::Stopped
                    };
                }
                if let Some(f) = self.forwarder.take() {
                    let _ = f.join();
                }
            }
        }
    }

    fn send(&self, c: Command) {
        // A closed channel means the run already ended; the phase says so.
        let _ = self.commands.send(c);
    }

    /// Pause between steps.
    pub fn pause(&mut self) {
        if self.phase.is_active() && self.phase != Phase::Stopping {
            self.send(Command::Pause);
            self.pause_requested = true;
            if self.phase == Phase::Running {
                self.phase = Phase::Paused;
            }
        }
    }

    /// Continue after a pause.
    pub fn resume_training(&mut self) {
        if matches!(self.phase, Phase::Paused | Phase::Starting) {
            self.send(Command::Resume);
            self.pause_requested = false;
            if self.phase == Phase::Paused {
                self.phase = Phase::Running;
            }
        }
    }

    /// While paused (or pausing before the first step): run exactly one step.
    pub fn step_once(&mut self) {
        if self.phase == Phase::Paused || (self.phase == Phase::Starting && self.pause_requested) {
            self.send(Command::StepOnce);
        }
    }

    /// Held-out evaluation after the current step.
    pub fn evaluate(&mut self) {
        if self.phase.is_active() {
            self.send(Command::Evaluate);
        }
    }

    /// Save the policy now (a `checkpoints/step-N` folder) with a resume checkpoint.
    pub fn checkpoint(&mut self) {
        if self.phase.is_active() {
            self.send(Command::Checkpoint);
        }
    }

    /// Stop after the current step (the history marks the run interrupted; it can be resumed).
    pub fn stop(&mut self) {
        if self.phase.is_active() {
            self.send(Command::Stop);
            self.phase = Phase::Stopping;
        }
    }

    /// Whether the engine and the history writer have both finished (everything is stored).
    pub fn ended(&self) -> bool {
        self.forwarder.is_none()
    }

    /// Whether the run is paused (or a pause is pending).
    pub fn is_paused(&self) -> bool {
        self.phase == Phase::Paused
    }

    /// Stops the run and waits (up to `timeout`) until the engine and the writer finished, so
    /// the history marks it interrupted. Used when the window closes. Returns whether it ended.
    pub fn shutdown(&mut self, timeout: Duration) -> bool {
        self.stop();
        let until = Instant::now() + timeout;
        while self.forwarder.is_some() && Instant::now() < until {
            match self.events.recv_timeout(Duration::from_millis(50)) {
                Ok(ev) => self.apply(ev),
                Err(crossbeam_channel::RecvTimeoutError::Timeout) => {}
                Err(crossbeam_channel::RecvTimeoutError::Disconnected) => {
                    if let Some(f) = self.forwarder.take() {
                        let _ = f.join();
                    }
                }
            }
        }
        self.forwarder.is_none()
    }

    /// Fraction of the planned steps done.
    pub fn progress(&self) -> f32 {
        if self.total_steps == 0 {
            0.0
        } else {
            (self.done_steps as f32 / self.total_steps as f32).clamp(0.0, 1.0)
        }
    }

    /// Estimated time left, from the mean step time of this session.
    pub fn eta(&self) -> Option<Duration> {
        let done_here = self.done_steps.saturating_sub(self.start_step);
        if done_here == 0 || !self.phase.is_active() {
            return None;
        }
        let recent: Vec<f64> = self
            .steps
            .iter()
            .rev()
            .take(20)
            .map(|m| m.step_time_s)
            .collect();
        let per_step = recent.iter().sum::<f64>() / recent.len().max(1) as f64;
        let left = self.total_steps.saturating_sub(self.done_steps) as f64 * per_step;
        Some(Duration::from_secs_f64(left.max(0.0)))
    }

    /// Seconds since the session started (for the "first minute" display).
    pub fn wall_s(&self) -> f64 {
        self.started_at.elapsed().as_secs_f64()
    }

    /// Seconds from start to the first step's metrics, once known.
    pub fn first_step_s(&self) -> Option<f64> {
        self.first_step_at
            .map(|t| t.duration_since(self.started_at).as_secs_f64())
    }
}

impl Drop for LiveRun {
    fn drop(&mut self) {
        if self.forwarder.is_some() {
            self.shutdown(Duration::from_secs(60));
        }
    }
}

fn sanitize(name: &str) -> String {
    let s: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    if s.is_empty() {
        "run".into()
    } else {
        s
    }
}

fn forward(
    handle: rlvr_engine::RunHandle,
    recorder: Recorder,
    stop: Sender<Command>,
    tx: Sender<SessionEvent>,
    repaint: Option<egui::Context>,
) {
    let mut recorder_gone = false;
    let mut failure = None;
    let mut last_step = 0;
    for ev in handle.events.iter() {
        let for_ui = match &ev {
            EngineEvent::Checkpoint(_) => SessionEvent::Checkpointed(last_step),
            EngineEvent::Step(m) => {
                last_step = m.step;
                SessionEvent::Engine(Box::new(ev.clone()))
            }
            EngineEvent::Failed { error } => {
                failure = Some(error.clone());
                SessionEvent::Engine(Box::new(ev.clone()))
            }
            _ => SessionEvent::Engine(Box::new(ev.clone())),
        };
        if !recorder_gone && !recorder.send(ev) {
            // The writer stopped on an error: stop training rather than lose history.
            recorder_gone = true;
            let _ = stop.send(Command::Stop);
        }
        let _ = tx.send(for_ui);
        if let Some(ctx) = &repaint {
            // Coalesced: a step brings several events, and every frame drawn by a software
            // renderer takes CPU from the trainer.
            ctx.request_repaint_after(REPAINT_EVERY);
        }
    }
    let stored = recorder.finish();
    let joined = handle.thread.join();
    let error = match (stored, joined) {
        (Err(e), _) => Some(format!("the run history could not be stored: {e}")),
        (_, Err(_)) => Some("the engine thread panicked".to_string()),
        _ if recorder_gone => Some("the run history writer stopped".to_string()),
        (_, Ok(Err(e))) => Some(failure.unwrap_or_else(|| e.to_string())),
        _ => None,
    };
    let _ = tx.send(SessionEvent::Ended(error));
    if let Some(ctx) = &repaint {
        ctx.request_repaint();
    }
}
