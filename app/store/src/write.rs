//! Writing: creating runs, turning engine events into rows, rolling a run back to its
//! checkpoint before it resumes.

use std::collections::HashMap;
use std::path::Path;

use rlvr_core::events::{EngineEvent, SampleGroup};
use rusqlite::{params, OptionalExtension as _};

use crate::{Result, Store, StoreError};

/// What is known of a run before its engine starts.
#[derive(Clone, Debug, Default)]
pub struct NewRun {
    /// Run name.
    pub name: String,
    /// Fully resolved configuration (TOML).
    pub config: String,
    /// Random seed.
    pub seed: u64,
    /// Model folder.
    pub model_path: String,
    /// Steps planned.
    pub steps_planned: usize,
    /// Output folder (checkpoints, final policy, metrics.jsonl).
    pub out_dir: String,
    /// Tags.
    pub tags: Vec<String>,
    /// Free-form notes.
    pub notes: String,
}

/// Flattens a JSON object of metrics into `(name, value)` pairs: nested objects join their keys
/// with `/`, `null`s (metrics a run does not use) are skipped, booleans are 0/1.
pub fn flatten(prefix: &str, v: &serde_json::Value, out: &mut Vec<(String, f64)>) {
    match v {
        serde_json::Value::Object(m) => {
            for (k, x) in m {
                let name = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}/{k}")
                };
                flatten(&name, x, out);
            }
        }
        serde_json::Value::Number(n) => {
            if let Some(x) = n.as_f64() {
                out.push((prefix.to_string(), x));
            }
        }
        serde_json::Value::Bool(b) => out.push((prefix.to_string(), f64::from(u8::from(*b)))),
        _ => {}
    }
}

/// The name of this host (for telling a crashed run from one running elsewhere).
pub(crate) fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .or_else(|_| std::env::var("HOSTNAME"))
        .unwrap_or_default()
}

/// SHA-256 (hex) of a model folder's `config.json`, `tokenizer.json` and `*.safetensors`
/// files, in name order; `None` when the folder cannot be read.
pub fn hash_model_dir(dir: &Path) -> Option<String> {
    use sha2::Digest as _;
    use std::io::Read as _;
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .ok()?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.extension().is_some_and(|x| x == "safetensors")
                || p.file_name()
                    .is_some_and(|n| n == "config.json" || n == "tokenizer.json")
        })
        .collect();
    files.sort();
    let mut h = sha2::Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    for f in files {
        h.update(f.file_name()?.to_string_lossy().as_bytes());
        let mut file = std::fs::File::open(&f).ok()?;
        loop {
            let n = file.read(&mut buf).ok()?;
            if n == 0 {
                break;
            }
            h.update(&buf[..n]);
        }
    }
    Some(h.finalize().iter().map(|b| format!("{b:02x}")).collect())
}

impl Store {
    /// Records a new run (status `running`, owned by this process) and returns its id. A
    /// damaged database is refused first ([`Store::check_writable`]).
    pub fn create_run(&self, r: &NewRun) -> Result<i64> {
        for t in &r.tags {
            check_tag(t)?;
        }
        self.check_writable()?;
        let tx = self.conn.unchecked_transaction().map_err(|e| self.err(e))?;
        tx.execute(
            "INSERT INTO runs (name, status, config, seed, engine_version, model_path, \
             steps_planned, out_dir, pid, host, notes) \
             VALUES (?1, 'running', ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
            params![
                r.name,
                r.config,
                r.seed as i64,
                env!("CARGO_PKG_VERSION"),
                r.model_path,
                r.steps_planned as i64,
                r.out_dir,
                std::process::id(),
                host_name(),
                r.notes,
            ],
        )
        .map_err(|e| self.err(e))?;
        let id = tx.last_insert_rowid();
        for t in &r.tags {
            tx.execute(
                "INSERT OR IGNORE INTO run_tags (run_id, tag) VALUES (?1, ?2)",
                params![id, t],
            )
            .map_err(|e| self.err(e))?;
        }
        tx.commit().map_err(|e| self.err(e))?;
        Ok(id)
    }

    /// Prepares an interrupted run to continue after `step` (its checkpoint; `None` = restart
    /// from the beginning): the history of later steps is removed (those steps will be
    /// recomputed, identically), the run is marked `running` by this process, and the planned
    /// step count updated. A damaged database is refused first ([`Store::check_writable`]).
    pub fn rollback_for_resume(
        &self,
        run_id: i64,
        step: Option<usize>,
        steps_planned: usize,
    ) -> Result<()> {
        self.check_writable()?;
        let tx = self.conn.unchecked_transaction().map_err(|e| self.err(e))?;
        let s = step.map_or(-1, |s| s as i64);
        for sql in [
            "DELETE FROM scalars WHERE run_id = ?1 AND step > ?2",
            "DELETE FROM sample_groups WHERE run_id = ?1 AND step > ?2",
            "DELETE FROM checkpoints WHERE run_id = ?1 AND step > ?2",
            "DELETE FROM logs WHERE run_id = ?1 AND step > ?2",
        ] {
            tx.execute(sql, params![run_id, s])
                .map_err(|e| self.err(e))?;
        }
        tx.execute(
            "UPDATE runs SET status = 'running', finished = NULL, error = NULL, last_step = max(?2, 0), \
             steps_planned = ?3, pid = ?4, host = ?5, \
             updated = strftime('%Y-%m-%dT%H:%M:%fZ', 'now') WHERE id = ?1",
            params![
                run_id,
                s,
                steps_planned as i64,
                std::process::id(),
                host_name()
            ],
        )
        .map_err(|e| self.err(e))?;
        tx.commit().map_err(|e| self.err(e))
    }

    /// Records how a run's process died (a plugin crash found at the next start): an error log
    /// line at its last stored step, and the run marked failed with `error`.
    pub fn record_crash(&self, run_id: i64, error: &str) -> Result<()> {
        self.conn
            .execute(
                "INSERT INTO logs (run_id, step, level, message) \
                 SELECT id, last_step, 'error', ?2 FROM runs WHERE id = ?1",
                params![run_id, error],
            )
            .map_err(|e| self.err(e))?;
        self.mark_failed(run_id, error)
    }

    /// Marks a run failed with `error` (for failures outside the engine's event stream).
    pub fn mark_failed(&self, run_id: i64, error: &str) -> Result<()> {
        self.conn
            .execute(
                "UPDATE runs SET status = 'failed', error = ?2, pid = NULL, \
                 finished = strftime('%Y-%m-%dT%H:%M:%fZ', 'now'), \
                 updated = strftime('%Y-%m-%dT%H:%M:%fZ', 'now') WHERE id = ?1",
                params![run_id, error],
            )
            .map_err(|e| self.err(e))?;
        Ok(())
    }

    /// Adds (or with `remove`, removes) tags of a run.
    pub fn set_tags(&self, run_id: i64, tags: &[String], remove: bool) -> Result<()> {
        let sql = if remove {
            "DELETE FROM run_tags WHERE run_id = ?1 AND tag = ?2"
        } else {
            "INSERT OR IGNORE INTO run_tags (run_id, tag) VALUES (?1, ?2)"
        };
        for t in tags {
            if !remove {
                check_tag(t)?;
            }
            self.conn
                .execute(sql, params![run_id, t])
                .map_err(|e| self.err(e))?;
        }
        Ok(())
    }

    /// Replaces a run's notes.
    pub fn set_notes(&self, run_id: i64, notes: &str) -> Result<()> {
        self.conn
            .execute(
                "UPDATE runs SET notes = ?2 WHERE id = ?1",
                params![run_id, notes],
            )
            .map_err(|e| self.err(e))?;
        Ok(())
    }

    /// Records a plugin file a run uses.
    pub fn add_plugin(&self, run_id: i64, path: &Path, name: &str, sha256: &str) -> Result<()> {
        self.conn
            .execute(
                "INSERT OR REPLACE INTO run_plugins (run_id, path, name, sha256) \
                 VALUES (?1, ?2, ?3, ?4)",
                params![run_id, path.to_string_lossy(), name, sha256],
            )
            .map_err(|e| self.err(e))?;
        Ok(())
    }
}

/// Applies events of one run to the database. Statements are cached; the caller decides where
/// transactions begin and end (see [`crate::recorder`]).
pub(crate) struct EventWriter {
    run_id: i64,
    keep_groups: Option<usize>,
    metric_ids: HashMap<String, i64>,
}

impl EventWriter {
    pub(crate) fn new(run_id: i64, keep_groups: Option<usize>) -> Self {
        Self {
            run_id,
            keep_groups,
            metric_ids: HashMap::new(),
        }
    }

    fn metric_id(&mut self, store: &Store, name: &str) -> Result<i64> {
        if let Some(&id) = self.metric_ids.get(name) {
            return Ok(id);
        }
        let c = &store.conn;
        c.prepare_cached("INSERT OR IGNORE INTO metric_names (name) VALUES (?1)")
            .and_then(|mut s| s.execute([name]))
            .map_err(|e| store.err(e))?;
        let id: i64 = c
            .prepare_cached("SELECT id FROM metric_names WHERE name = ?1")
            .and_then(|mut s| s.query_row([name], |r| r.get(0)))
            .map_err(|e| store.err(e))?;
        self.metric_ids.insert(name.to_string(), id);
        Ok(id)
    }

    fn scalars(&mut self, store: &Store, step: usize, values: &[(String, f64)]) -> Result<()> {
        for (name, v) in values {
            let id = self.metric_id(store, name)?;
            store
                .conn
                .prepare_cached(
                    "INSERT OR REPLACE INTO scalars (run_id, metric_id, step, value) \
                     VALUES (?1, ?2, ?3, ?4)",
                )
                .and_then(|mut s| s.execute(params![self.run_id, id, step as i64, v]))
                .map_err(|e| store.err(e))?;
        }
        Ok(())
    }

    fn groups(&self, store: &Store, step: usize, groups: &[SampleGroup]) -> Result<()> {
        let keep = self.keep_groups.unwrap_or(usize::MAX);
        let c = &store.conn;
        for (gi, g) in groups.iter().take(keep).enumerate() {
            let gid: i64 = c
                .prepare_cached(
                    "INSERT OR REPLACE INTO sample_groups (run_id, step, idx, prompt, answer) \
                     VALUES (?1, ?2, ?3, ?4, ?5) RETURNING id",
                )
                .and_then(|mut s| {
                    s.query_row(
                        params![self.run_id, step as i64, gi as i64, g.prompt, g.answer],
                        |r| r.get(0),
                    )
                })
                .map_err(|e| store.err(e))?;
            let mut ins = c
                .prepare_cached(
                    "INSERT OR REPLACE INTO samples (group_id, idx, completion, reward, passed, \
                     advantage, length, truncated, components, token_stats) \
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
                )
                .map_err(|e| store.err(e))?;
            for (si, s) in g.samples.iter().enumerate() {
                let components = serde_json::to_string(&s.components)
                    .map_err(|e| StoreError::Corrupt(e.to_string()))?;
                ins.execute(params![
                    gid,
                    si as i64,
                    s.completion,
                    f64::from(s.reward),
                    s.passed,
                    f64::from(s.advantage),
                    s.length as i64,
                    s.truncated,
                    components,
                    crate::tokens::encode(&s.tokens),
                ])
                .map_err(|e| store.err(e))?;
            }
        }
        Ok(())
    }

    fn log(&self, store: &Store, step: usize, level: &str, message: &str) -> Result<()> {
        store
            .conn
            .prepare_cached(
                "INSERT INTO logs (run_id, step, level, message) VALUES (?1, ?2, ?3, ?4)",
            )
            .and_then(|mut s| s.execute(params![self.run_id, step as i64, level, message]))
            .map_err(|e| store.err(e))?;
        Ok(())
    }

    /// Writes the rows of one event (the caller holds the transaction). `last_step` is the
    /// latest step seen, for events that carry none.
    pub(crate) fn apply(
        &mut self,
        store: &Store,
        ev: &EngineEvent,
        last_step: usize,
    ) -> Result<()> {
        let c = &store.conn;
        let id = self.run_id;
        match ev {
            EngineEvent::Started(info) => {
                c.execute(
                    "UPDATE runs SET params = ?2, dataset_hash = ?3, task = ?4, \
                     engine_version = ?5, steps_planned = ?6, \
                     updated = strftime('%Y-%m-%dT%H:%M:%fZ', 'now') WHERE id = ?1",
                    params![
                        id,
                        info.params as i64,
                        info.dataset_hash,
                        info.task,
                        info.engine_version,
                        info.steps as i64
                    ],
                )
                .map_err(|e| store.err(e))?;
                if let Some(h) = hash_model_dir(&info.model_path) {
                    c.execute(
                        "UPDATE runs SET model_hash = ?2 WHERE id = ?1",
                        params![id, h],
                    )
                    .map_err(|e| store.err(e))?;
                }
            }
            EngineEvent::Step(m) => {
                let mut values = Vec::new();
                flatten("", &to_json(m), &mut values);
                values.retain(|(n, _)| n != "step");
                self.scalars(store, m.step, &values)?;
                c.prepare_cached(
                    "UPDATE runs SET last_step = ?2, \
                     updated = strftime('%Y-%m-%dT%H:%M:%fZ', 'now') WHERE id = ?1",
                )
                .and_then(|mut s| s.execute(params![id, m.step as i64]))
                .map_err(|e| store.err(e))?;
            }
            EngineEvent::Eval(e) => {
                let mut values = Vec::new();
                flatten("eval", &to_json(e), &mut values);
                values.retain(|(n, _)| n != "eval/step");
                self.scalars(store, e.step, &values)?;
            }
            EngineEvent::Samples { step, groups } => self.groups(store, *step, groups)?,
            EngineEvent::PolicySaved { step, path, kind } => {
                c.execute(
                    "INSERT OR REPLACE INTO checkpoints (run_id, kind, step, path, bytes) \
                     VALUES (?1, ?2, ?3, ?4, ?5)",
                    params![
                        id,
                        kind,
                        *step as i64,
                        path.to_string_lossy(),
                        dir_bytes(path) as i64
                    ],
                )
                .map_err(|e| store.err(e))?;
            }
            EngineEvent::Checkpoint(_) => {}
            EngineEvent::Log { message } => self.log(store, last_step, "info", message)?,
            EngineEvent::Done(s) => {
                let status = if s.stopped { "interrupted" } else { "finished" };
                c.execute(
                    "UPDATE runs SET status = ?2, last_step = ?3, pid = NULL, \
                     finished = strftime('%Y-%m-%dT%H:%M:%fZ', 'now'), \
                     updated = strftime('%Y-%m-%dT%H:%M:%fZ', 'now') WHERE id = ?1",
                    params![id, status, s.steps as i64],
                )
                .map_err(|e| store.err(e))?;
            }
            EngineEvent::Failed { error } => {
                self.log(store, last_step, "error", error)?;
                store.mark_failed(id, error)?;
            }
        }
        Ok(())
    }

    /// Records the resume checkpoint written after `step` (replacing the previous one).
    pub(crate) fn resume_written(&self, store: &Store, step: usize, path: &Path) -> Result<()> {
        let bytes = std::fs::metadata(path).map(|m| m.len()).unwrap_or(0);
        let tx = store
            .conn
            .unchecked_transaction()
            .map_err(|e| store.err(e))?;
        tx.execute(
            "DELETE FROM checkpoints WHERE run_id = ?1 AND kind = 'resume'",
            [self.run_id],
        )
        .map_err(|e| store.err(e))?;
        tx.execute(
            "INSERT INTO checkpoints (run_id, kind, step, path, bytes) VALUES (?1, 'resume', ?2, ?3, ?4)",
            params![self.run_id, step as i64, path.to_string_lossy(), bytes as i64],
        )
        .map_err(|e| store.err(e))?;
        tx.commit().map_err(|e| store.err(e))
    }
}

fn dir_bytes(p: &Path) -> u64 {
    std::fs::read_dir(p)
        .map(|rd| {
            rd.filter_map(|e| e.ok()?.metadata().ok())
                .map(|m| m.len())
                .sum()
        })
        .unwrap_or(0)
}

fn to_json<T: serde::Serialize>(v: &T) -> serde_json::Value {
    serde_json::to_value(v).unwrap_or(serde_json::Value::Null)
}

/// The run a stored reference (an id or a name) points to, if any.
pub(crate) fn find_run(store: &Store, reference: &str) -> Result<Option<i64>> {
    if let Ok(id) = reference.parse::<i64>() {
        let hit = store
            .conn
            .query_row("SELECT id FROM runs WHERE id = ?1", [id], |r| r.get(0))
            .optional()
            .map_err(|e| store.err(e))?;
        if hit.is_some() {
            return Ok(hit);
        }
    }
    let mut st = store
        .conn
        .prepare("SELECT id FROM runs WHERE name = ?1 ORDER BY id DESC")
        .map_err(|e| store.err(e))?;
    let ids: Vec<i64> = st
        .query_map([reference], |r| r.get(0))
        .and_then(|rows| rows.collect())
        .map_err(|e| store.err(e))?;
    match ids.as_slice() {
        [] => Ok(None),
        [one] => Ok(Some(*one)),
        many => Err(StoreError::NoSuchRun(format!(
            "{} runs are named {reference:?} (ids {}); give the id",
            many.len(),
            many.iter()
                .map(i64::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        ))),
    }
}

/// The longest tag, in characters.
pub const MAX_TAG_CHARS: usize = 200;

/// A tag must be non-empty, at most [`MAX_TAG_CHARS`] characters and free of control characters.
pub fn check_tag(tag: &str) -> Result<()> {
    let n = tag.chars().count();
    let why = if tag.trim().is_empty() {
        "a tag must not be empty or blank".to_string()
    } else if n > MAX_TAG_CHARS {
        format!("a tag has at most {MAX_TAG_CHARS} characters (this one has {n})")
    } else if tag.chars().any(char::is_control) {
        "a tag must not contain control characters (newlines, tabs...)".to_string()
    } else {
        return Ok(());
    };
    let shown: String = tag.chars().take(40).collect();
    let more = if n > 40 { "…" } else { "" };
    Err(StoreError::Invalid(format!("tag {shown:?}{more}: {why}")))
}
