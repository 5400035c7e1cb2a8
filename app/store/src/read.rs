//! Reading: the queries behind `rlvr-studio runs …` and the GUI's run browser.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use rlvr_core::events::TokenStats;
use rusqlite::{params, OptionalExtension as _};
use serde::{Deserialize, Serialize};

use crate::files::RemovedFiles;
use crate::write::{find_run, host_name};
use crate::{Result, Store, StoreError};

/// Where a run stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RunStatus {
    /// A process is training it now.
    Running,
    /// Stopped early or its process died; it can be resumed.
    Interrupted,
    /// Ran all its steps.
    Finished,
    /// Ended on an error.
    Failed,
}

impl RunStatus {
    /// The lowercase name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Running => "running",
            Self::Interrupted => "interrupted",
            Self::Finished => "finished",
            Self::Failed => "failed",
        }
    }

    /// Parses a lowercase name.
    pub fn parse(s: &str) -> Option<Self> {
        [
            Self::Running,
            Self::Interrupted,
            Self::Finished,
            Self::Failed,
        ]
        .into_iter()
        .find(|x| x.as_str() == s)
    }
}

/// One run as stored.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RunRow {
    /// Id (stable, used by every `runs` command).
    pub id: i64,
    /// Name.
    pub name: String,
    /// Status (a `running` run whose process is gone reads as `interrupted`).
    pub status: RunStatus,
    /// Creation time (UTC, RFC 3339).
    pub created: String,
    /// End time, when ended.
    pub finished: Option<String>,
    /// Fully resolved configuration (TOML).
    pub config: String,
    /// Seed.
    pub seed: u64,
    /// Engine version that ran it.
    pub engine_version: String,
    /// Task name.
    pub task: String,
    /// Model folder.
    pub model_path: String,
    /// SHA-256 of the model files.
    pub model_hash: Option<String>,
    /// SHA-256 of the task definition and held-out set.
    pub dataset_hash: Option<String>,
    /// Policy parameters.
    pub params: Option<i64>,
    /// Steps planned.
    pub steps_planned: i64,
    /// Last step stored.
    pub last_step: i64,
    /// Output folder.
    pub out_dir: String,
    /// Notes.
    pub notes: String,
    /// Tags.
    pub tags: Vec<String>,
    /// Error of a failed run.
    pub error: Option<String>,
    /// Plugins used: (name, path, sha256).
    pub plugins: Vec<(String, String, String)>,
}

/// Filters of [`Store::list_runs`].
#[derive(Clone, Debug, Default)]
pub struct RunFilter {
    /// Only runs with this status.
    pub status: Option<RunStatus>,
    /// Only runs with this tag.
    pub tag: Option<String>,
    /// Only runs whose name, notes, task or config contain this text (case-insensitive).
    pub text: Option<String>,
    /// At most this many (newest first); `None` = all.
    pub limit: Option<usize>,
}

/// A stored completion.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StoredSample {
    /// Completion text.
    pub completion: String,
    /// Total reward.
    pub reward: f64,
    /// Reward components: (name, score, reason).
    pub components: Vec<(String, f32, String)>,
    /// Verifier verdict.
    pub passed: bool,
    /// Advantage.
    pub advantage: f64,
    /// Length in tokens.
    pub length: i64,
    /// Cut at the length limit.
    pub truncated: bool,
    /// Per-token log-prob, entropy, advantage (half precision).
    pub tokens: TokenStats,
}

/// A stored group: one prompt and its completions.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StoredGroup {
    /// Step.
    pub step: i64,
    /// Index of the group in its step.
    pub index: i64,
    /// Prompt.
    pub prompt: String,
    /// Reference answer.
    pub answer: String,
    /// Completions.
    pub samples: Vec<StoredSample>,
}

/// What `runs check` found.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct CheckReport {
    /// Problems `PRAGMA integrity_check` reported (empty = the file is sound).
    pub integrity: Vec<String>,
    /// Tables, indexes or columns the schema lacks (empty = complete).
    #[serde(default)]
    pub schema: Vec<String>,
    /// Rows that point at missing rows.
    pub foreign_key_violations: usize,
    /// Files the history points at that are gone: (run id, path).
    pub missing_files: Vec<(i64, String)>,
    /// Output folders of deleted runs that are still on disk (the run was deleted without
    /// its files) and that no stored run uses.
    pub orphan_dirs: Vec<String>,
    /// Runs checked.
    pub runs: usize,
}

impl CheckReport {
    /// No problem found.
    pub fn ok(&self) -> bool {
        self.integrity.is_empty()
            && self.schema.is_empty()
            && self.foreign_key_violations == 0
            && self.missing_files.is_empty()
            && self.orphan_dirs.is_empty()
    }
}

/// Whether a process with this id exists (on this host).
fn alive(pid: i64) -> bool {
    #[cfg(unix)]
    {
        let Ok(pid) = libc::pid_t::try_from(pid) else {
            return false;
        };
        // SAFETY: signal 0 only checks that the process exists; it sends nothing.
        let r = unsafe { libc::kill(pid, 0) };
        r == 0 || std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)
    }
    #[cfg(not(unix))]
    {
        let _ = pid;
        true
    }
}

const RUN_COLUMNS: &str = "id, name, status, created, finished, config, seed, engine_version, \
     task, model_path, model_hash, dataset_hash, params, steps_planned, last_step, out_dir, notes, \
     error, pid, host";

impl Store {
    fn run_from_row(&self, r: &rusqlite::Row<'_>) -> rusqlite::Result<RunRow> {
        let status: String = r.get(2)?;
        let pid: Option<i64> = r.get(18)?;
        let host: Option<String> = r.get(19)?;
        let mut status = RunStatus::parse(&status).unwrap_or(RunStatus::Failed);
        if status == RunStatus::Running {
            let here = host.as_deref().is_none_or(|h| h == host_name());
            if here && !pid.is_some_and(alive) {
                status = RunStatus::Interrupted;
            }
        }
        Ok(RunRow {
            id: r.get(0)?,
            name: r.get(1)?,
            status,
            created: r.get(3)?,
            finished: r.get(4)?,
            config: r.get(5)?,
            seed: r.get::<_, i64>(6)? as u64,
            engine_version: r.get(7)?,
            task: r.get(8)?,
            model_path: r.get(9)?,
            model_hash: r.get(10)?,
            dataset_hash: r.get(11)?,
            params: r.get(12)?,
            steps_planned: r.get(13)?,
            last_step: r.get(14)?,
            out_dir: r.get(15)?,
            notes: r.get(16)?,
            error: r.get(17)?,
            tags: Vec::new(),
            plugins: Vec::new(),
        })
    }

    fn attach_tags(&self, runs: &mut [RunRow]) -> Result<()> {
        if runs.is_empty() {
            return Ok(());
        }
        let mut tags: BTreeMap<i64, Vec<String>> = BTreeMap::new();
        let mut st = self
            .conn
            .prepare_cached("SELECT run_id, tag FROM run_tags ORDER BY run_id, tag")
            .map_err(|e| self.err(e))?;
        let rows = st
            .query_map([], |r| Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?)))
            .map_err(|e| self.err(e))?;
        for row in rows {
            let (id, t) = row.map_err(|e| self.err(e))?;
            tags.entry(id).or_default().push(t);
        }
        for r in runs.iter_mut() {
            r.tags = tags.remove(&r.id).unwrap_or_default();
        }
        Ok(())
    }

    /// Runs, newest first, filtered.
    pub fn list_runs(&self, f: &RunFilter) -> Result<Vec<RunRow>> {
        let mut sql = format!("SELECT {RUN_COLUMNS} FROM runs WHERE 1");
        let mut args: Vec<String> = Vec::new();
        if let Some(t) = &f.tag {
            args.push(t.clone());
            sql.push_str(&format!(
                " AND id IN (SELECT run_id FROM run_tags WHERE tag = ?{})",
                args.len()
            ));
        }
        if let Some(t) = &f.text {
            // The text matches literally: LIKE's wildcards `%` and `_` (and the escape) escaped.
            let lower = t.to_lowercase();
            let literal = lower
                .replace('\\', "\\\\")
                .replace('%', "\\%")
                .replace('_', "\\_");
            args.push(format!("%{literal}%"));
            let n = args.len();
            sql.push_str(&format!(
                " AND (lower(name) LIKE ?{n} ESCAPE '\\' OR lower(notes) LIKE ?{n} ESCAPE '\\' \
                 OR lower(task) LIKE ?{n} ESCAPE '\\' OR lower(config) LIKE ?{n} ESCAPE '\\')"
            ));
        }
        sql.push_str(" ORDER BY id DESC");
        let mut st = self.conn.prepare(&sql).map_err(|e| self.err(e))?;
        let rows = st
            .query_map(rusqlite::params_from_iter(args.iter()), |r| {
                self.run_from_row(r)
            })
            .map_err(|e| self.err(e))?;
        let mut out = Vec::new();
        for row in rows {
            let row = row.map_err(|e| self.err(e))?;
            // Status is derived (a dead process reads as interrupted), so filter here.
            if f.status.is_none_or(|s| s == row.status) {
                out.push(row);
                if f.limit.is_some_and(|l| out.len() >= l) {
                    break;
                }
            }
        }
        self.attach_tags(&mut out)?;
        Ok(out)
    }

    /// Resolves a user's reference to a run (an id, or a name when unique).
    pub fn resolve(&self, reference: &str) -> Result<i64> {
        find_run(self, reference)?.ok_or_else(|| {
            StoreError::NoSuchRun(format!(
                "no run {reference:?} in {} (`rlvr-studio runs list` shows the ids)",
                self.path.display()
            ))
        })
    }

    /// One run, with its tags and plugins.
    pub fn run(&self, id: i64) -> Result<RunRow> {
        let row = self
            .conn
            .query_row(
                &format!("SELECT {RUN_COLUMNS} FROM runs WHERE id = ?1"),
                [id],
                |r| self.run_from_row(r),
            )
            .optional()
            .map_err(|e| self.err(e))?
            .ok_or_else(|| StoreError::NoSuchRun(format!("no run with id {id}")))?;
        let mut v = vec![row];
        self.attach_tags(&mut v)?;
        let mut row = v.remove(0);
        let mut st = self
            .conn
            .prepare_cached("SELECT name, path, sha256 FROM run_plugins WHERE run_id = ?1")
            .map_err(|e| self.err(e))?;
        row.plugins = st
            .query_map([id], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
            .and_then(|rows| rows.collect())
            .map_err(|e| self.err(e))?;
        Ok(row)
    }

    /// Names of the metrics stored for a run.
    pub fn metric_names(&self, run_id: i64) -> Result<Vec<String>> {
        let mut st = self
            .conn
            .prepare_cached(
                "SELECT name FROM metric_names WHERE id IN \
                 (SELECT DISTINCT metric_id FROM scalars WHERE run_id = ?1) ORDER BY name",
            )
            .map_err(|e| self.err(e))?;
        st.query_map([run_id], |r| r.get(0))
            .and_then(|rows| rows.collect())
            .map_err(|e| self.err(e))
    }

    /// One metric's series: (step, value), by step.
    pub fn series(&self, run_id: i64, metric: &str) -> Result<Vec<(u64, f64)>> {
        let mut st = self
            .conn
            .prepare_cached(
                "SELECT s.step, s.value FROM scalars s JOIN metric_names m ON m.id = s.metric_id \
                 WHERE s.run_id = ?1 AND m.name = ?2 ORDER BY s.step",
            )
            .map_err(|e| self.err(e))?;
        st.query_map(params![run_id, metric], |r| {
            Ok((
                r.get::<_, i64>(0)? as u64,
                r.get::<_, Option<f64>>(1)?.unwrap_or(f64::NAN),
            ))
        })
        .and_then(|rows| rows.collect())
        .map_err(|e| self.err(e))
    }

    /// Every metric of a run by step: step → (name → value). Evaluation metrics are named
    /// `eval/…`.
    pub fn metrics_by_step(&self, run_id: i64) -> Result<BTreeMap<u64, BTreeMap<String, f64>>> {
        let mut st = self
            .conn
            .prepare_cached(
                "SELECT s.step, m.name, s.value FROM scalars s \
                 JOIN metric_names m ON m.id = s.metric_id WHERE s.run_id = ?1",
            )
            .map_err(|e| self.err(e))?;
        let rows = st
            .query_map([run_id], |r| {
                Ok((
                    r.get::<_, i64>(0)? as u64,
                    r.get::<_, String>(1)?,
                    r.get::<_, Option<f64>>(2)?.unwrap_or(f64::NAN),
                ))
            })
            .map_err(|e| self.err(e))?;
        let mut out: BTreeMap<u64, BTreeMap<String, f64>> = BTreeMap::new();
        for row in rows {
            let (step, name, v) = row.map_err(|e| self.err(e))?;
            out.entry(step).or_default().insert(name, v);
        }
        Ok(out)
    }

    /// Sampled groups of a step (all steps when `step` is `None`), keeping only completions
    /// with reward ≥ `min_reward`.
    pub fn samples(
        &self,
        run_id: i64,
        step: Option<u64>,
        min_reward: Option<f64>,
    ) -> Result<Vec<StoredGroup>> {
        let mut st = self
            .conn
            .prepare_cached(
                "SELECT g.id, g.step, g.idx, g.prompt, g.answer, s.completion, s.reward, \
                 s.components, s.passed, s.advantage, s.length, s.truncated, s.token_stats \
                 FROM sample_groups g JOIN samples s ON s.group_id = g.id \
                 WHERE g.run_id = ?1 AND (?2 IS NULL OR g.step = ?2) AND s.reward >= ?3 \
                 ORDER BY g.step, g.idx, s.idx",
            )
            .map_err(|e| self.err(e))?;
        let rows = st
            .query_map(
                params![
                    run_id,
                    step.map(|s| s as i64),
                    min_reward.unwrap_or(f64::NEG_INFINITY)
                ],
                |r| {
                    Ok((
                        r.get::<_, i64>(0)?,
                        r.get::<_, i64>(1)?,
                        r.get::<_, i64>(2)?,
                        r.get::<_, String>(3)?,
                        r.get::<_, String>(4)?,
                        r.get::<_, String>(5)?,
                        r.get::<_, f64>(6)?,
                        r.get::<_, String>(7)?,
                        r.get::<_, bool>(8)?,
                        r.get::<_, f64>(9)?,
                        r.get::<_, i64>(10)?,
                        r.get::<_, bool>(11)?,
                        r.get::<_, Vec<u8>>(12)?,
                    ))
                },
            )
            .map_err(|e| self.err(e))?;
        let mut out: Vec<StoredGroup> = Vec::new();
        let mut last_gid = None;
        for row in rows {
            let (
                gid,
                step,
                idx,
                prompt,
                answer,
                completion,
                reward,
                comp,
                passed,
                adv,
                len,
                tr,
                blob,
            ) = row.map_err(|e| self.err(e))?;
            let bad = |what: &str| {
                StoreError::Corrupt(format!(
                    "{}: run {run_id}, step {step}, group {idx}: damaged {what}",
                    self.path.display()
                ))
            };
            let components: Vec<(String, f32, String)> =
                serde_json::from_str(&comp).map_err(|_| bad("reward components"))?;
            let tokens = crate::tokens::decode(&blob).ok_or_else(|| bad("token statistics"))?;
            if last_gid != Some(gid) {
                out.push(StoredGroup {
                    step,
                    index: idx,
                    prompt,
                    answer,
                    samples: Vec::new(),
                });
                last_gid = Some(gid);
            }
            if let Some(g) = out.last_mut() {
                g.samples.push(StoredSample {
                    completion,
                    reward,
                    components,
                    passed,
                    advantage: adv,
                    length: len,
                    truncated: tr,
                    tokens,
                });
            }
        }
        Ok(out)
    }

    /// Steps that have stored samples.
    pub fn sample_steps(&self, run_id: i64) -> Result<Vec<u64>> {
        let mut st = self
            .conn
            .prepare_cached(
                "SELECT DISTINCT step FROM sample_groups WHERE run_id = ?1 ORDER BY step",
            )
            .map_err(|e| self.err(e))?;
        st.query_map([run_id], |r| Ok(r.get::<_, i64>(0)? as u64))
            .and_then(|rows| rows.collect())
            .map_err(|e| self.err(e))
    }

    /// Checkpoints of a run: (kind, step, path).
    pub fn checkpoints(&self, run_id: i64) -> Result<Vec<(String, u64, String)>> {
        let mut st = self
            .conn
            .prepare_cached(
                "SELECT kind, step, path FROM checkpoints WHERE run_id = ?1 ORDER BY step, kind",
            )
            .map_err(|e| self.err(e))?;
        st.query_map([run_id], |r| {
            Ok((r.get(0)?, r.get::<_, i64>(1)? as u64, r.get(2)?))
        })
        .and_then(|rows| rows.collect())
        .map_err(|e| self.err(e))
    }

    /// Log lines of a run: (step, level, message).
    pub fn logs(&self, run_id: i64) -> Result<Vec<(u64, String, String)>> {
        let mut st = self
            .conn
            .prepare_cached("SELECT step, level, message FROM logs WHERE run_id = ?1 ORDER BY id")
            .map_err(|e| self.err(e))?;
        st.query_map([run_id], |r| {
            Ok((r.get::<_, i64>(0)? as u64, r.get(1)?, r.get(2)?))
        })
        .and_then(|rows| rows.collect())
        .map_err(|e| self.err(e))
    }

    /// Deletes a run's history (every row of it) and notes the deletion in `deleted_runs` (so
    /// `runs check` can report its output folder if it is left behind). Files are left to the
    /// caller; see [`Store::delete_run_with_files`].
    pub fn delete_run(&self, run_id: i64) -> Result<()> {
        let tx = self.conn.unchecked_transaction().map_err(|e| self.err(e))?;
        tx.execute(
            "INSERT OR REPLACE INTO deleted_runs (id, name, out_dir) \
             SELECT id, name, out_dir FROM runs WHERE id = ?1",
            [run_id],
        )
        .map_err(|e| self.err(e))?;
        let n = tx
            .execute("DELETE FROM runs WHERE id = ?1", [run_id])
            .map_err(|e| self.err(e))?;
        if n == 0 {
            return Err(StoreError::NoSuchRun(format!("no run with id {run_id}")));
        }
        tx.commit().map_err(|e| self.err(e))
    }

    /// Deletes a run's history and what the run wrote in its output folder (see
    /// [`crate::files::remove_run_files`]): its own files only, the folder itself only when
    /// nothing else is left in it. When another stored run uses the same folder, no file is
    /// removed (they may be that run's) and [`RemovedFiles::shared_with`] names it.
    pub fn delete_run_with_files(&self, run_id: i64) -> Result<RemovedFiles> {
        let run = self.run(run_id)?;
        let dir = PathBuf::from(&run.out_dir);
        let recorded: Vec<PathBuf> = self
            .checkpoints(run_id)?
            .into_iter()
            .map(|(_, _, p)| PathBuf::from(p))
            .collect();
        let same = |other: &str| {
            let o = Path::new(other);
            o == dir
                || (o.exists() && dir.exists() && o.canonicalize().ok() == dir.canonicalize().ok())
        };
        let shared_with: Vec<i64> = self
            .list_runs(&RunFilter::default())?
            .into_iter()
            .filter(|r| r.id != run_id && same(&r.out_dir))
            .map(|r| r.id)
            .collect();
        self.delete_run(run_id)?;
        if !shared_with.is_empty() {
            return Ok(RemovedFiles {
                shared_with,
                ..RemovedFiles::default()
            });
        }
        crate::files::remove_run_files(&dir, &recorded)
    }

    /// Integrity check of the file, its references, and the files it points at.
    pub fn check(&self) -> Result<CheckReport> {
        let mut rep = CheckReport::default();
        let mut st = self
            .conn
            .prepare("PRAGMA integrity_check")
            .map_err(|e| self.err(e))?;
        let lines: rusqlite::Result<Vec<String>> = st
            .query_map([], |r| r.get(0))
            .and_then(|rows| rows.collect());
        rep.integrity = match lines {
            Ok(lines) => lines.into_iter().filter(|l| l != "ok").collect(),
            // Damage bad enough to stop the check itself is its finding.
            Err(e) if e.sqlite_error_code() == Some(rusqlite::ErrorCode::DatabaseCorrupt) => {
                vec![e.to_string()]
            }
            Err(e) => return Err(self.err(e)),
        };
        rep.schema = self.schema_problems()?;
        if !rep.schema.is_empty() || !rep.integrity.is_empty() {
            // The queries below need a sound file with the whole schema; what is damaged or
            // missing is the finding.
            rep.runs = self.list_runs(&RunFilter::default()).map_or(0, |r| r.len());
            return Ok(rep);
        }
        let mut st = self
            .conn
            .prepare("PRAGMA foreign_key_check")
            .map_err(|e| self.err(e))?;
        rep.foreign_key_violations = st
            .query_map([], |_| Ok(()))
            .map_err(|e| self.err(e))?
            .count();
        let runs = self.list_runs(&RunFilter::default())?;
        rep.runs = runs.len();
        let mut owned: BTreeSet<PathBuf> = BTreeSet::new();
        for r in &runs {
            owned.insert(PathBuf::from(&r.out_dir));
            for (kind, _, path) in self.checkpoints(r.id)? {
                let exists = Path::new(&path).exists();
                // A finished run's resume state may be cleaned up by the user; a kept policy
                // folder or the final policy should be there.
                if !exists && kind != "resume" {
                    rep.missing_files.push((r.id, path));
                }
            }
        }
        // Only folders this history wrote and forgot are orphans: other histories' run folders
        // beside ours are none of its business. (Schema version 1 kept no record of deletions.)
        let has_deleted: bool = self
            .conn
            .query_row(
                "SELECT count(*) > 0 FROM sqlite_schema WHERE type = 'table' \
                 AND name = 'deleted_runs'",
                [],
                |r| r.get(0),
            )
            .map_err(|e| self.err(e))?;
        if has_deleted {
            let mut st = self
                .conn
                .prepare("SELECT DISTINCT out_dir FROM deleted_runs ORDER BY out_dir")
                .map_err(|e| self.err(e))?;
            let dirs: Vec<String> = st
                .query_map([], |r| r.get(0))
                .and_then(|rows| rows.collect())
                .map_err(|e| self.err(e))?;
            for d in dirs {
                let p = PathBuf::from(&d);
                let looks_like_run =
                    p.join("config.toml").is_file() && p.join("metrics.jsonl").is_file();
                if looks_like_run && !owned.contains(&p) {
                    rep.orphan_dirs.push(d);
                }
            }
        }
        Ok(rep)
    }
}
