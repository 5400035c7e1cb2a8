//! The run's output folder: `config.toml` (fully resolved), `metrics.jsonl` (one JSON object per
//! step / eval / done event, the same lines `rlvr-studio train --json` prints),
//! `resume-{0,1}.ckpt` (the resume state, written here when the trainer hands it over),
//! `policy/` and `checkpoints/step-N/` (written by the trainer).

use std::fs::File;
use std::io::{BufWriter, Write as _};
use std::path::{Path, PathBuf};

use crate::checkpoint::ResumePoint;
use crate::error::{CoreError, Result};
use crate::events::EngineEvent;

/// The files of a policy folder the engine writes (`policy/`, `checkpoints/step-N/`):
/// `Policy::save` writes these and nothing else (`chat_template.jinja` only over a stale one).
pub const POLICY_FILES: &[&str] = &[
    "config.json",
    "generation_config.json",
    "model.safetensors",
    "tokenizer.json",
    "tokenizer_config.json",
    "chat_template.jinja",
    "adapter_config.json",
    "adapter_model.safetensors",
];

/// The JSON line of an event, with `"type"` and `"elapsed_s"`; `None` for the bulky `samples`.
pub fn event_json(ev: &EngineEvent, elapsed_s: f64) -> Option<serde_json::Value> {
    if matches!(ev, EngineEvent::Samples { .. } | EngineEvent::Checkpoint(_)) {
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
    dir: PathBuf,
    path: PathBuf,
    metrics: BufWriter<File>,
    last_elapsed: f64,
    scratch: Vec<u8>,
}

impl RunDirWriter {
    /// Creates the folder, writes `config.toml` (the resolved config's TOML text) and opens
    /// `metrics.jsonl`.
    pub fn create(dir: &Path, config_toml: &str) -> Result<Self> {
        std::fs::create_dir_all(dir).map_err(|e| CoreError::io(dir, e))?;
        let c = dir.join("config.toml");
        std::fs::write(&c, config_toml).map_err(|e| CoreError::io(&c, e))?;
        let path = dir.join("metrics.jsonl");
        let f = File::create(&path).map_err(|e| CoreError::io(&path, e))?;
        Ok(Self::open(dir, path, f))
    }

    fn open(dir: &Path, path: PathBuf, f: File) -> Self {
        Self {
            dir: dir.to_path_buf(),
            path,
            metrics: BufWriter::new(f),
            last_elapsed: 0.0,
            scratch: Vec::new(),
        }
    }

    /// Reopens the folder of an interrupted run that resumes after `step`: lines of later steps
    /// (they will be recomputed), `done` lines and a last line cut short by the interruption are
    /// dropped, then the file is appended to.
    pub fn reopen(dir: &Path, step: usize) -> Result<Self> {
        let path = dir.join("metrics.jsonl");
        let text = std::fs::read_to_string(&path).map_err(|e| CoreError::io(&path, e))?;
        let mut kept = String::new();
        for line in text.lines() {
            let Ok(v) = serde_json::from_str::<serde_json::Value>(line) else {
                continue;
            };
            let later = v
                .get("step")
                .and_then(serde_json::Value::as_u64)
                .is_some_and(|s| s > step as u64);
            let ended = matches!(
                v.get("type").and_then(|t| t.as_str()),
                Some("done" | "failed")
            );
            if !later && !ended {
                kept.push_str(line);
                kept.push('\n');
            }
        }
        let tmp = dir.join("metrics.jsonl.tmp");
        std::fs::write(&tmp, kept).map_err(|e| CoreError::io(&tmp, e))?;
        std::fs::rename(&tmp, &path).map_err(|e| CoreError::io(&path, e))?;
        let f = std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .map_err(|e| CoreError::io(&path, e))?;
        Ok(Self::open(dir, path, f))
    }

    /// Writes a `Checkpoint`'s resume state into its slot; returns the file.
    pub fn write_checkpoint(&mut self, p: &ResumePoint) -> Result<PathBuf> {
        p.write_slot(&self.dir, &mut self.scratch)
    }

    /// Appends the event's line and flushes it; writes a `Checkpoint`'s resume state into its
    /// slot.
    pub fn write(&mut self, ev: &EngineEvent) -> Result<()> {
        match ev {
            EngineEvent::Step(m) => self.last_elapsed = m.elapsed_s,
            EngineEvent::Checkpoint(p) => return self.write_checkpoint(p).map(drop),
            _ => {}
        }
        let Some(v) = event_json(ev, self.last_elapsed) else {
            return Ok(());
        };
        let io = |e| CoreError::io(&self.path, e);
        writeln!(self.metrics, "{v}").map_err(io)?;
        // Every line reaches the file at once: a crash loses at most the step in flight.
        self.metrics
            .flush()
            .map_err(|e| CoreError::io(&self.path, e))?;
        Ok(())
    }
}
