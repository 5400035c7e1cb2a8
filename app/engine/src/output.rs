//! The run's output folder: `config.toml` (fully resolved), `metrics.jsonl` (one JSON object per
//! step / eval / done event, the same lines `rlvr-studio train --json` prints) and `policy/`
//! (written by the trainer).

use std::fs::File;
use std::io::{BufWriter, Write as _};
use std::path::{Path, PathBuf};

use crate::config::RunConfig;
use crate::error::{EngineError, Result};
use crate::events::EngineEvent;

/// The JSON line of an event, with `"type"` and `"elapsed_s"`; `None` for the bulky `samples`.
pub fn event_json(ev: &EngineEvent, elapsed_s: f64) -> Option<serde_json::Value> {
    if matches!(ev, EngineEvent::Samples { .. }) {
        return None;
    }
    let mut v = serde_json::to_value(ev).ok()?;
    if let Some(obj) = v.as_object_mut() {
        obj.entry("elapsed_s")
            .or_insert(serde_json::json!(elapsed_s));
    }
    Some(v)
}

/// Writes the output folder as events arrive.
pub struct RunDirWriter {
    path: PathBuf,
    metrics: BufWriter<File>,
    last_elapsed: f64,
}

impl RunDirWriter {
    /// Creates the folder, writes `config.toml` and opens `metrics.jsonl`.
    pub fn create(dir: &Path, cfg: &RunConfig) -> Result<Self> {
        std::fs::create_dir_all(dir).map_err(|e| EngineError::io(dir, e))?;
        let c = dir.join("config.toml");
        std::fs::write(&c, cfg.to_toml()).map_err(|e| EngineError::io(&c, e))?;
        let path = dir.join("metrics.jsonl");
        let f = File::create(&path).map_err(|e| EngineError::io(&path, e))?;
        Ok(Self {
            path,
            metrics: BufWriter::new(f),
            last_elapsed: 0.0,
        })
    }

    /// Reopens the folder of an interrupted run for appending: a last line cut short by the
    /// interruption is dropped first.
    pub fn reopen(dir: &Path) -> Result<Self> {
        let path = dir.join("metrics.jsonl");
        let text = std::fs::read_to_string(&path).map_err(|e| EngineError::io(&path, e))?;
        let keep = text.rfind('\n').map_or(0, |i| i + 1);
        let f = std::fs::OpenOptions::new()
            .write(true)
            .open(&path)
            .map_err(|e| EngineError::io(&path, e))?;
        f.set_len(keep as u64)
            .map_err(|e| EngineError::io(&path, e))?;
        let f = std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .map_err(|e| EngineError::io(&path, e))?;
        Ok(Self {
            path,
            metrics: BufWriter::new(f),
            last_elapsed: 0.0,
        })
    }

    /// Appends the event's line and flushes it.
    pub fn write(&mut self, ev: &EngineEvent) -> Result<()> {
        if let EngineEvent::Step(m) = ev {
            self.last_elapsed = m.elapsed_s;
        }
        let Some(v) = event_json(ev, self.last_elapsed) else {
            return Ok(());
        };
        let io = |e| EngineError::io(&self.path, e);
        writeln!(self.metrics, "{v}").map_err(io)?;
        // Every line reaches the file at once: a crash loses at most the step in flight.
        self.metrics
            .flush()
            .map_err(|e| EngineError::io(&self.path, e))?;
        Ok(())
    }
}
