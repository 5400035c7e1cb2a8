//! The writer thread: consumes a run's engine events and stores them.
//!
//! Each step's rows (its sampled groups and metrics) are one transaction; evaluations, saved
//! policies and log lines are small transactions of their own. The channel is bounded and
//! [`Recorder::send`] blocks when it is full, so a slow disk slows the trainer instead of
//! dropping history. A `Checkpoint` event is written to the run folder only after everything
//! before it is committed, so the resume state on disk never runs ahead of the history: after a
//! crash, the history holds every step up to the checkpoint, and at most the steps after it
//! (the one in flight) are recomputed on resume.

use std::time::Instant;

use crossbeam_channel::{Receiver, Sender};
use rlvr_core::events::EngineEvent;
use rlvr_core::output::RunDirWriter;

use crate::write::EventWriter;
use crate::{Result, Store, StoreError};

/// Events the channel holds before [`Recorder::send`] blocks.
pub const CHANNEL_CAPACITY: usize = 256;

/// What the writer did, for the overhead benchmark.
#[derive(Clone, Debug, Default)]
pub struct RecorderSummary {
    /// Events consumed.
    pub events: usize,
    /// Steps stored.
    pub steps: usize,
    /// Seconds spent writing rows and committing.
    pub db_s: f64,
    /// Slowest step transaction, seconds.
    pub max_step_db_s: f64,
    /// Seconds spent writing resume checkpoints.
    pub checkpoint_s: f64,
    /// Seconds spent appending to `metrics.jsonl`.
    pub jsonl_s: f64,
}

/// A running writer thread for one run.
pub struct Recorder {
    tx: Sender<EngineEvent>,
    thread: std::thread::JoinHandle<Result<RecorderSummary>>,
}

impl Recorder {
    /// Starts the thread `store-writer`, which owns `store` and the run folder writer.
    pub fn spawn(
        store: Store,
        run_id: i64,
        keep_groups: Option<usize>,
        run_dir: RunDirWriter,
    ) -> std::io::Result<Self> {
        let (tx, rx) = crossbeam_channel::bounded(CHANNEL_CAPACITY);
        let thread = std::thread::Builder::new()
            .name("store-writer".into())
            .spawn(move || {
                let writer = EventWriter::new(run_id, keep_groups);
                record(&store, writer, run_dir, &rx)
            })?;
        Ok(Self { tx, thread })
    }

    /// Hands an event to the writer, waiting while its channel is full. Fails only when the
    /// writer stopped on an error; [`Recorder::finish`] then returns that error.
    pub fn send(&self, ev: EngineEvent) -> bool {
        self.tx.send(ev).is_ok()
    }

    /// Waits until every event sent is stored.
    pub fn finish(self) -> Result<RecorderSummary> {
        drop(self.tx);
        self.thread
            .join()
            .map_err(|_| StoreError::Corrupt("the store writer thread panicked".into()))?
    }
}

fn record(
    store: &Store,
    mut writer: EventWriter,
    mut run_dir: RunDirWriter,
    rx: &Receiver<EngineEvent>,
) -> Result<RecorderSummary> {
    let mut sum = RecorderSummary::default();
    let mut in_tx = false;
    let mut last_step = 0usize;
    let mut step_t0: Option<Instant> = None;
    let exec = |sql: &str| store.conn.execute_batch(sql).map_err(|e| store.err(e));
    for ev in rx.iter() {
        sum.events += 1;
        if let EngineEvent::Checkpoint(p) = &ev {
            if in_tx {
                exec("COMMIT")?;
                in_tx = false;
            }
            let t0 = Instant::now();
            let path = run_dir.write_checkpoint(p)?;
            writer.resume_written(store, p.step(), &path)?;
            sum.checkpoint_s += t0.elapsed().as_secs_f64();
            continue;
        }
        let t0 = Instant::now();
        run_dir.write(&ev)?;
        sum.jsonl_s += t0.elapsed().as_secs_f64();
        let t0 = Instant::now();
        if !in_tx {
            exec("BEGIN")?;
            in_tx = true;
            step_t0 = Some(t0);
        }
        if let EngineEvent::Step(m) = &ev {
            last_step = m.step;
        }
        writer.apply(store, &ev, last_step)?;
        // Sampled groups always precede their step's metrics: both go in one transaction.
        if !matches!(ev, EngineEvent::Samples { .. }) {
            exec("COMMIT")?;
            in_tx = false;
            if matches!(ev, EngineEvent::Step(_)) {
                sum.steps += 1;
                if let Some(s) = step_t0 {
                    sum.max_step_db_s = sum.max_step_db_s.max(s.elapsed().as_secs_f64());
                }
            }
        }
        sum.db_s += t0.elapsed().as_secs_f64();
    }
    if in_tx {
        exec("COMMIT")?;
    }
    Ok(sum)
}
