//! The files a run writes in its output folder, and removing exactly those.
//!
//! The names are the ones the engine's run folder writer and trainer use
//! (`rlvr_core::output`): `config.toml`, `metrics.jsonl` (and its `.tmp` while a resume
//! rewrites it), the launcher's `run.json` marker (and the `.tmp` files of `run.json` and
//! `config.toml` while they are rewritten), the checkpoint slots `resume-0.ckpt` / `resume-1.ckpt`, the final policy
//! `policy/` and kept policies `checkpoints/step-NNNNNN/`, each a Hugging Face folder of
//! [`POLICY_FILES`].

use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::{Result, StoreError};

/// Files a run writes at the top of its output folder.
pub const RUN_FILES: &[&str] = &[
    "config.toml",
    "config.toml.tmp",
    "metrics.jsonl",
    "metrics.jsonl.tmp",
    "run.json",
    "run.json.tmp",
    "resume-0.ckpt",
    "resume-1.ckpt",
];

pub use rlvr_core::output::POLICY_FILES;

/// What removing a run's files did.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct RemovedFiles {
    /// Files and folders removed.
    pub removed: Vec<PathBuf>,
    /// Whether the output folder itself was removed (it was empty afterwards).
    pub folder_removed: bool,
    /// What is left in the output folder that the run did not write (top level).
    pub kept: Vec<PathBuf>,
    /// Other stored runs that use the same output folder: then nothing was removed.
    pub shared_with: Vec<i64>,
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> StoreError + '_ {
    move |err| StoreError::Io {
        path: path.to_path_buf(),
        err,
    }
}

/// A real folder (not a link to one).
fn is_real_dir(p: &Path) -> bool {
    std::fs::symlink_metadata(p).is_ok_and(|m| m.is_dir())
}

/// Removes `p` if it is a file (or a link); a missing file is fine.
fn remove_file(p: &Path, out: &mut RemovedFiles) -> Result<()> {
    match std::fs::symlink_metadata(p) {
        Ok(m) if !m.is_dir() => {
            std::fs::remove_file(p).map_err(io(p))?;
            out.removed.push(p.to_path_buf());
            Ok(())
        }
        _ => Ok(()),
    }
}

/// Removes the folder `p` if it is empty; returns whether it is gone.
fn remove_if_empty(p: &Path, out: &mut RemovedFiles) -> Result<bool> {
    let empty = std::fs::read_dir(p).map_err(io(p))?.next().is_none();
    if empty {
        std::fs::remove_dir(p).map_err(io(p))?;
        out.removed.push(p.to_path_buf());
    }
    Ok(empty)
}

/// Removes a saved policy folder's files, then the folder if nothing else is in it.
fn remove_policy_dir(p: &Path, out: &mut RemovedFiles) -> Result<()> {
    if !is_real_dir(p) {
        return Ok(());
    }
    for f in POLICY_FILES {
        remove_file(&p.join(f), out)?;
    }
    remove_if_empty(p, out)?;
    Ok(())
}

/// `step-` followed by digits: a kept policy folder's name.
fn is_step_dir_name(name: &str) -> bool {
    name.strip_prefix("step-")
        .is_some_and(|d| !d.is_empty() && d.bytes().all(|b| b.is_ascii_digit()))
}

/// Removes what a run wrote in its output folder `dir`: [`RUN_FILES`], `policy/`,
/// `checkpoints/step-N/` and the folders in `recorded` (the paths its history records) that
/// lie inside `dir`, each policy folder only down to [`POLICY_FILES`]. A folder is removed only
/// when it is empty afterwards; anything else (a user's files) stays and is listed in
/// [`RemovedFiles::kept`]. Links are removed, never followed. A missing `dir` removes nothing.
pub fn remove_run_files(dir: &Path, recorded: &[PathBuf]) -> Result<RemovedFiles> {
    let mut out = RemovedFiles::default();
    if !is_real_dir(dir) {
        return Ok(out);
    }
    for f in RUN_FILES {
        remove_file(&dir.join(f), &mut out)?;
    }
    let mut policies: Vec<PathBuf> = vec![dir.join("policy")];
    let kept_dir = dir.join("checkpoints");
    if is_real_dir(&kept_dir) {
        for e in std::fs::read_dir(&kept_dir).map_err(io(&kept_dir))? {
            let e = e.map_err(io(&kept_dir))?;
            if e.file_name().to_str().is_some_and(is_step_dir_name) {
                policies.push(e.path());
            }
        }
    }
    // Recorded folders inside the output folder (never anything outside it).
    for p in recorded {
        let inside = p.strip_prefix(dir).is_ok_and(|rest| {
            !rest.as_os_str().is_empty()
                && rest
                    .components()
                    .all(|c| matches!(c, std::path::Component::Normal(_)))
        });
        if inside && is_real_dir(p) && !policies.contains(p) {
            policies.push(p.clone());
        }
    }
    for p in &policies {
        remove_policy_dir(p, &mut out)?;
    }
    if is_real_dir(&kept_dir) {
        remove_if_empty(&kept_dir, &mut out)?;
    }
    out.folder_removed = remove_if_empty(dir, &mut out)?;
    if !out.folder_removed {
        let mut kept: Vec<PathBuf> = std::fs::read_dir(dir)
            .map_err(io(dir))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .collect();
        kept.sort();
        out.kept = kept;
    }
    Ok(out)
}

/// Where a resumed run starts: the step of the checkpoint slot to load (`None` = from the
/// beginning), and what the caller should tell the user about damaged slots.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ResumeFrom {
    /// The checkpoint step to resume after; `None` restarts the run from step 0.
    pub step: Option<usize>,
    /// One line per damaged slot, saying what was done instead.
    pub notes: Vec<String>,
}

impl crate::Store {
    /// Chooses the checkpoint a run resumes from, given its output folder `dir`, the slot file
    /// names, and `verify`, which returns a slot's step or why it is unusable (the engine's
    /// checksum check). The newest slot that verifies wins; a damaged slot beside it (the
    /// write a full disk or a crash cut short) is skipped with a note. When every slot present
    /// is damaged and the history records no resume checkpoint, the damaged files are from the
    /// first checkpoint write, which never completed: the run restarts from step 0 (its start
    /// state follows from its config), with a note. When the history records a checkpoint that
    /// no slot holds any more, that is an error naming the folder and the files.
    pub fn resume_from(
        &self,
        run_id: i64,
        dir: &Path,
        slots: &[&str],
        verify: impl Fn(&Path) -> std::result::Result<usize, String>,
    ) -> Result<ResumeFrom> {
        let recorded = self
            .checkpoints(run_id)?
            .into_iter()
            .filter(|(kind, _, _)| kind == "resume")
            .map(|(_, step, _)| step)
            .max();
        let mut best: Option<(PathBuf, usize)> = None;
        let mut damaged: Vec<(PathBuf, String)> = Vec::new();
        for slot in slots {
            let p = dir.join(slot);
            if !p.exists() {
                continue;
            }
            match verify(&p) {
                Ok(step) if best.as_ref().is_none_or(|(_, s)| step > *s) => best = Some((p, step)),
                Ok(_) => {}
                Err(why) => damaged.push((p, why)),
            }
        }
        let mut out = ResumeFrom::default();
        match (&best, recorded) {
            (Some((file, step)), _) => {
                out.step = Some(*step);
                for (p, why) in &damaged {
                    out.notes.push(format!(
                        "{}: skipped, unusable ({why}); resuming from {} (step {step})",
                        p.display(),
                        file.display()
                    ));
                }
            }
            (None, None) => {
                for (p, why) in &damaged {
                    out.notes.push(format!(
                        "{}: unusable ({why}); it is the run's first checkpoint, cut short \
                         before the history recorded it, so the run restarts from step 0",
                        p.display()
                    ));
                }
            }
            (None, Some(step)) => {
                let found = if damaged.is_empty() {
                    "its checkpoint files were removed".to_string()
                } else {
                    damaged
                        .iter()
                        .map(|(p, why)| format!("{}: {why}", p.display()))
                        .collect::<Vec<_>>()
                        .join("; ")
                };
                return Err(StoreError::Corrupt(format!(
                    "run {run_id}: no usable checkpoint to resume from in {} (the history \
                     records one at step {step}; {found})",
                    dir.display()
                )));
            }
        }
        Ok(out)
    }
}
