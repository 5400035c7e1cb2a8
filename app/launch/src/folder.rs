//! Which run a folder belongs to: the `run.json` marker and the checks that keep two runs out
//! of one output folder.
//!
//! A folder belongs to a run when the history has that run with this `out_dir`, or when the
//! folder's `run.json` names it. A run that failed before storing anything (no step, no
//! checkpoint: typically a bad model folder) owns nothing worth keeping, so its folder can be
//! reused. A folder that holds run files (`config.toml`, `metrics.jsonl`, `resume-*.ckpt`) but
//! no marker and no run in this history belongs to a run we cannot name, and is refused too.

use std::io::Write as _;
use std::path::{Path, PathBuf};

use rlvr_store::{RunFilter, RunRow, RunStatus, Store};
use serde::{Deserialize, Serialize};

use crate::LaunchError;

/// The marker file in every run folder.
pub const MARKER_FILE: &str = "run.json";

/// Files a run writes into its folder (a folder holding any of them is a run folder).
const RUN_FILES: [&str; 4] = [
    "config.toml",
    "metrics.jsonl",
    "resume-0.ckpt",
    "resume-1.ckpt",
];

/// `run.json`: which run of which history a folder belongs to. Written when a run starts (or
/// first resumes) and checked before another run may use the folder and before a resume.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunMarker {
    /// The run's id in its history.
    pub run_id: i64,
    /// The run's name.
    pub name: String,
    /// When the run was created (as stored; tells a run from a later one that got its id back).
    pub created: String,
    /// The history database (absolute path).
    pub history: PathBuf,
}

impl RunMarker {
    /// The marker of a stored run.
    pub fn of(run: &RunRow, store: &Store) -> Self {
        Self {
            run_id: run.id,
            name: run.name.clone(),
            created: run.created.clone(),
            history: canonical(store.path()),
        }
    }

    /// Reads `dir/run.json`; `None` when there is none.
    pub fn read(dir: &Path) -> Result<Option<Self>, LaunchError> {
        let path = dir.join(MARKER_FILE);
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => {
                return Err(LaunchError::Marker {
                    path,
                    msg: format!("cannot read it: {e}"),
                })
            }
        };
        serde_json::from_str(&text)
            .map(Some)
            .map_err(|e| LaunchError::Marker {
                path,
                msg: format!(
                    "not a run marker ({e}); expected {{\"run_id\", \"name\", \"created\", \
                     \"history\"}} — remove it if no run uses this folder"
                ),
            })
    }

    /// Writes `dir/run.json`: with `replace`, over an existing marker; without, only if there is
    /// none (atomically: of two runs claiming one folder at once, one gets
    /// [`std::io::ErrorKind::AlreadyExists`]).
    pub fn write(&self, dir: &Path, replace: bool) -> std::io::Result<()> {
        let text = serde_json::to_string_pretty(self).map_err(std::io::Error::other)? + "\n";
        let path = dir.join(MARKER_FILE);
        if replace {
            let tmp = dir.join("run.json.tmp");
            std::fs::write(&tmp, text)?;
            std::fs::rename(&tmp, &path)
        } else {
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&path)?;
            f.write_all(text.as_bytes())?;
            f.sync_all()
        }
    }

    fn is(&self, run: &RunRow, store: &Store) -> bool {
        self.run_id == run.id && self.created == run.created && self.in_history(store)
    }

    fn in_history(&self, store: &Store) -> bool {
        same_path(&self.history, store.path())
    }
}

/// The absolute, symlink-free path when it exists, else the absolute path.
pub(crate) fn canonical(p: &Path) -> PathBuf {
    std::fs::canonicalize(p)
        .unwrap_or_else(|_| std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf()))
}

fn same_path(a: &Path, b: &Path) -> bool {
    a == b || canonical(a) == canonical(b)
}

/// Who a folder belongs to, in words for an error message ("run 3 \"same\" (interrupted)").
#[derive(Debug)]
pub(crate) struct Owner(pub String);

fn describe(run: &RunRow) -> String {
    format!("run {} {:?} ({})", run.id, run.name, run.status.as_str())
}

/// A run that failed before storing a step or a checkpoint: nothing in its folder is worth
/// keeping (it cannot be resumed past step 0 either way).
fn dispensable(store: &Store, run: &RunRow) -> Result<bool, LaunchError> {
    Ok(run.status == RunStatus::Failed
        && run.last_step == 0
        && store.checkpoints(run.id)?.is_empty())
}

/// The runs of a history, read once for several folder checks.
pub(crate) struct Folders<'a> {
    store: &'a Store,
    runs: Vec<RunRow>,
}

impl<'a> Folders<'a> {
    pub(crate) fn new(store: &'a Store) -> Result<Self, LaunchError> {
        Ok(Self {
            store,
            runs: store.list_runs(&RunFilter::default())?,
        })
    }

    /// Whom `dir` belongs to if a new run may not use it; `None` when it is free.
    pub(crate) fn owner_for_new(&self, dir: &Path) -> Result<Option<Owner>, LaunchError> {
        let store = self.store;
        if let Some(m) = RunMarker::read(dir)? {
            if !m.in_history(store) {
                return Ok(Some(Owner(format!(
                    "run {} {:?} of the history {}",
                    m.run_id,
                    m.name,
                    m.history.display()
                ))));
            }
            match self.runs.iter().find(|r| m.is(r, store)) {
                Some(r) if dispensable(store, r)? => {}
                Some(r) => return Ok(Some(Owner(describe(r)))),
                None => {
                    return Ok(Some(Owner(format!(
                        "run {} {:?}, no longer in the history (its files are still there)",
                        m.run_id, m.name
                    ))))
                }
            }
        }
        let mut in_history = false;
        for r in self
            .runs
            .iter()
            .filter(|r| same_path(Path::new(&r.out_dir), dir))
        {
            in_history = true;
            if !dispensable(store, r)? {
                return Ok(Some(Owner(describe(r))));
            }
        }
        if !in_history && RunMarker::read(dir)?.is_none() {
            let found: Vec<&str> = RUN_FILES
                .iter()
                .copied()
                .filter(|f| dir.join(f).is_file())
                .collect();
            if !found.is_empty() {
                return Ok(Some(Owner(format!(
                    "a run that is not in this history (it holds {})",
                    found.join(", ")
                ))));
            }
        }
        Ok(None)
    }

    /// Checks that the folder of `run` (to be resumed) still holds that run's files: its marker
    /// names it (or there is none, in folders written before markers), and no later run of
    /// the history took the folder over.
    pub(crate) fn check_resume(&self, run: &RunRow, dir: &Path) -> Result<(), LaunchError> {
        let store = self.store;
        let taken = |by: String| {
            Err(LaunchError::FolderTaken(format!(
                "cannot resume run {} {:?}: its output folder {} now holds the files of {by}, \
                 so the checkpoint there is not its own",
                run.id,
                run.name,
                dir.display()
            )))
        };
        if let Some(m) = RunMarker::read(dir)? {
            if !m.is(run, store) {
                let by = match self.runs.iter().find(|r| m.is(r, store)) {
                    Some(r) => describe(r),
                    None if m.in_history(store) => format!("run {} {:?}", m.run_id, m.name),
                    None => format!(
                        "run {} {:?} of the history {}",
                        m.run_id,
                        m.name,
                        m.history.display()
                    ),
                };
                return taken(by);
            }
            return Ok(());
        }
        for r in self
            .runs
            .iter()
            .filter(|r| r.id > run.id && same_path(Path::new(&r.out_dir), dir))
        {
            if !dispensable(store, r)? {
                return taken(describe(r));
            }
        }
        Ok(())
    }

    /// The first free folder among `base`, `base-2`, `base-3`, ...
    pub(crate) fn free_default(&self, base: &Path) -> Result<PathBuf, LaunchError> {
        let mut last = None;
        for n in 1..=1000 {
            let dir = if n == 1 {
                base.to_path_buf()
            } else {
                let mut s = base.as_os_str().to_os_string();
                s.push(format!("-{n}"));
                PathBuf::from(s)
            };
            match self.owner_for_new(&dir)? {
                None => return Ok(dir),
                Some(o) => last = Some((dir, o)),
            }
        }
        let (dir, o) = last.unwrap_or_else(|| (base.to_path_buf(), Owner(String::new())));
        Err(taken_for_new(&dir, &o))
    }
}

/// The refusal of a folder that belongs to another run.
pub(crate) fn taken_for_new(dir: &Path, owner: &Owner) -> LaunchError {
    LaunchError::FolderTaken(format!(
        "{}: this output folder belongs to {}; give the new run another folder with --out DIR \
         (or output.dir in its config), so that neither run overwrites the other's files",
        dir.display(),
        owner.0
    ))
}
