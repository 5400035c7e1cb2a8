//! A run trained from the GUI: the engine on its own thread, the store writer (Recorder) on
//! another, and a small forwarder thread between them that hands every event to the writer and a
//! copy to the UI, then asks for a repaint. The UI only ever `try_recv`s, so it never blocks.
//!
//! Starting, resuming and forwarding are the CLI's too: the run launcher (`rlvr_launch`)
//! creates or rolls back the run row, claims the run folder, opens its writer, spawns the
//! Recorder and the engine, and forwards each event to the Recorder and to the listener given
//! here (the UI channel).

use std::path::Path;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender};
use rlvr_core::events::{EngineEvent, EvalMetrics, RunInfo, SampleGroup, StepMetrics};

use rlvr_core::RunConfig;
use rlvr_engine::trainer::Command;
use rlvr_launch::{LaunchError, NewRunRequest, Overrides, Prepared, Resumable, Running};
use rlvr_store::Store;

/// Why a run could not start (shown in the UI as is).
#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    /// The run history database.
    #[error("run history: {0}")]
    Store(#[from] rlvr_store::StoreError),
    /// The configuration or run folder.
    #[error("{0}")]
    Engine(#[from] rlvr_engine::EngineError),
    /// The configuration.
    #[error("{0}")]
    Config(#[from] rlvr_core::CoreError),
    /// A thread could not be started.
    #[error("cannot start a thread: {0}")]
    Thread(#[from] std::io::Error),
    /// Anything else, already worded for the user.
    #[error("{0}")]
    Other(String),
}

impl From<LaunchError> for SessionError {
    fn from(e: LaunchError) -> Self {
        match e {
            LaunchError::Store(e) => Self::Store(e),
            LaunchError::Engine(e) => Self::Engine(e),
            LaunchError::Thread { err, .. } => Self::Thread(err),
            other => Self::Other(other.to_string()),
        }
    }
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
    /// What the engine's current step is doing.
    activity: std::sync::Arc<rlvr_engine::events::Progress>,
    started_at: Instant,
    first_step_at: Option<Instant>,
    commands: Sender<Command>,
    events: Receiver<SessionEvent>,
    forwarder: Option<std::thread::JoinHandle<()>>,
}

/// Seconds since the Unix epoch (names default run folders).
fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

impl LiveRun {
    /// What the current step is doing, for the status line ("rollout 1234/2048 tokens");
    /// `None` between steps.
    pub fn activity(&self) -> Option<String> {
        self.activity.now().describe()
    }

    /// Creates a run in the history at `db` and starts training it. A config without an output
    /// folder gets `runs_root/<name>-<unix time>` (suffixed `-2`, `-3`... if another run has
    /// it); an output folder that belongs to another run is refused.
    pub fn start(
        cfg: RunConfig,
        db: &Path,
        runs_root: &Path,
        tags: Vec<String>,
        plugins: &rlvr_plugin_host::PluginHost,
        repaint: Option<egui::Context>,
    ) -> Result<Self, SessionError> {
        let default_dir = runs_root.join(format!("{}-{}", sanitize(&cfg.name), now_secs()));
        let ext = plugins.extensions();
        cfg.validate_with(&ext)?;
        let store = Store::open(db)?;
        let req = NewRunRequest {
            cfg,
            default_dir,
            tags,
            notes: String::new(),
        };
        let prepared = rlvr_launch::prepare_new(store, req, ext, plugins)?;
        Self::launch(prepared, Default::default(), repaint)
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
        let resumable = Resumable::open(store, run_id, &Overrides::default())?;
        let ext = plugins.extensions();
        resumable.cfg().validate_with(&ext)?;
        let prepared = resumable.prepare(ext, plugins)?;
        // The curves so far come from the history.
        let mut history =
            crate::history::MetricTable::load(prepared.store(), run_id).unwrap_or_default();
        history.truncate(prepared.resume_step.unwrap_or(0) as u64);
        Self::launch(prepared, history, repaint)
    }

    fn launch(
        prepared: Prepared,
        history: crate::history::MetricTable,
        repaint: Option<egui::Context>,
    ) -> Result<Self, SessionError> {
        let (run_id, resume_step, cfg) =
            (prepared.run_id, prepared.resume_step, prepared.cfg.clone());
        let running = prepared.start()?;
        let commands = running.commands();
        let activity = running.progress();
        let (tx, rx) = crossbeam_channel::unbounded();
        let forwarder = std::thread::Builder::new()
            .name("ui-forwarder".into())
            .spawn(move || forward(running, tx, repaint))?;
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
            activity,
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

/// The `ui-forwarder` thread: the launcher hands each event to the Recorder and to this
/// listener, which sends a copy to the UI and asks for a (coalesced) repaint.
fn forward(running: Running, tx: Sender<SessionEvent>, repaint: Option<egui::Context>) {
    let mut last_step = 0;
    let ended = running.forward(|ev| {
        let for_ui = match ev {
            EngineEvent::Checkpoint(_) => SessionEvent::Checkpointed(last_step),
            EngineEvent::Step(m) => {
                last_step = m.step;
                SessionEvent::Engine(Box::new(ev.clone()))
            }
            _ => SessionEvent::Engine(Box::new(ev.clone())),
        };
        let _ = tx.send(for_ui);
        if let Some(ctx) = &repaint {
            // Coalesced: a step brings several events, and every frame drawn by a software
            // renderer takes CPU from the trainer.
            ctx.request_repaint_after(REPAINT_EVERY);
        }
    });
    let _ = tx.send(SessionEvent::Ended(ended.err().map(|e| e.to_string())));
    if let Some(ctx) = &repaint {
        ctx.request_repaint();
    }
}
