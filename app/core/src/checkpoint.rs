//! The resume checkpoint file format, shared by the engine (which encodes and restores the
//! state) and the history writer (which writes it to disk once the step is stored).
//!
//! A checkpoint is a safetensors document followed by an 8-byte trailer (CRC-32 of the
//! document, then `RLVR`). The document holds the policy (`policy.*`), the AdamW moments
//! (`m.*`, `v.*`), and, when used, the KL reference (`reference.*`) and the PPO value head with
//! its optimizer (`critic.*`); its metadata carries the [`CheckpointState`] (`rlvr.state`, JSON:
//! step, data cursor, random-number generator states, optimizer step counts) and the DPH-RL
//! rehearsal set (`rlvr.rehearsal`).
//!
//! A run folder has two slots, `resume-0.ckpt` and `resume-1.ckpt`; step `s` goes to slot
//! `s % 2`, overwritten in place (about 10× cheaper than a new file: no fresh pages to
//! allocate). A crash mid-write leaves that slot failing its checksum and the other slot holding
//! the previous step; [`latest_checkpoint`] picks the newest slot that verifies.
//!
//! The engine hands a taken state to its listener as a [`ResumePoint`] inside
//! [`EngineEvent::Checkpoint`](crate::events::EngineEvent::Checkpoint): an opaque
//! [`ResumeSnapshot`] that encodes itself on the listener's thread, so the event stream carries
//! no tensors and this crate needs no tensor library.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::error::{CoreError, Result};

/// The two checkpoint slots of a run folder.
pub const CHECKPOINT_SLOTS: [&str; 2] = ["resume-0.ckpt", "resume-1.ckpt"];
const TRAILER_MAGIC: &[u8; 4] = b"RLVR";
/// Version of [`CheckpointState`] this build writes and reads. The run stamp (`run_id`,
/// `config_hash`) was added to format 2 as optional keys, so checkpoints written before it
/// still read (and resume without the check).
pub const FORMAT: u32 = 2;
/// Metadata key of the [`CheckpointState`] JSON.
pub const STATE_KEY: &str = "rlvr.state";
/// Metadata key of the DPH-RL rehearsal set JSON.
pub const REHEARSAL_KEY: &str = "rlvr.rehearsal";

/// A ChaCha random-number generator's position.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RngState {
    /// The 32-byte seed.
    pub seed: Vec<u8>,
    /// Stream number.
    pub stream: u64,
    /// Word position (a u128 as decimal text).
    pub word_pos: String,
}

/// The scalar state of a run after a step (the `rlvr.state` metadata).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CheckpointState {
    /// [`FORMAT`].
    pub format: u32,
    /// Updates done.
    pub step: usize,
    /// Position of the training prompt stream.
    pub data_cursor: u64,
    /// The trainer's generator.
    pub rng: RngState,
    /// The reward-noise generator.
    pub noise_rng: RngState,
    /// AdamW steps of the policy optimizer.
    pub optimizer_steps: usize,
    /// AdamW steps of the critic's optimizer, when a critic is used.
    pub critic_optimizer_steps: Option<usize>,
    /// Data-parallel workers the run used.
    pub workers: usize,
    /// The run (its id in the run history) the checkpoint belongs to, so that a resume can
    /// refuse another run's checkpoint. `None` in checkpoints written before the stamp existed
    /// (format 2 without these keys, still read) and by runs outside a history.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_id: Option<i64>,
    /// [`config_hash`] of the run's config; `None` in checkpoints written before the stamp.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config_hash: Option<String>,
}

/// A stable hash of a run's config text (FNV-1a, 64 bit, as 16 hex digits): the same text
/// gives the same hash on every platform and release.
pub fn config_hash(text: &str) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in text.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    format!("{h:016x}")
}

/// Refuses a checkpoint `state` (read from `path`) that belongs to another run than `run_id`,
/// or to a config other than the one hashing to `config_hash`, naming both. A checkpoint
/// without a stamp (older builds) passes.
pub fn check_stamp(
    path: &Path,
    state: &CheckpointState,
    run_id: Option<i64>,
    config_hash: &str,
) -> Result<()> {
    if let (Some(theirs), Some(ours)) = (state.run_id, run_id) {
        if theirs != ours {
            return Err(CoreError::file(
                path,
                format!(
                    "this checkpoint belongs to run {theirs}, not to run {ours} (copied in from \
                     another run's folder?); resume run {theirs} instead, or move the file away"
                ),
            ));
        }
    }
    if let Some(theirs) = state.config_hash.as_deref().filter(|h| *h != config_hash) {
        return Err(CoreError::file(
            path,
            format!(
                "this checkpoint was written by a run with another config (config hash \
                 {theirs}; {}'s config hashes to {config_hash}); it cannot continue this run",
                run_id.map_or("this run".to_string(), |i| format!("run {i}"))
            ),
        ));
    }
    Ok(())
}

/// A taken resume state the listener writes: it knows its step and encodes itself as a
/// safetensors document.
pub trait ResumeSnapshot: Send + Sync + std::fmt::Debug {
    /// Updates done when it was taken.
    fn step(&self) -> usize;
    /// Writes the safetensors document into `buf` (cleared first; reusing one buffer avoids
    /// fresh allocations).
    fn encode_document(&self, buf: &mut Vec<u8>) -> Result<()>;
}

/// A [`ResumeSnapshot`] shared with a listener (cheap to clone; compares by identity).
#[derive(Clone, Debug)]
pub struct ResumePoint(pub Arc<dyn ResumeSnapshot>);

impl PartialEq for ResumePoint {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

impl ResumePoint {
    /// Updates done when it was taken.
    pub fn step(&self) -> usize {
        self.0.step()
    }

    /// Writes it into its slot of the run folder `dir`; returns the file.
    pub fn write_slot(&self, dir: &Path, buf: &mut Vec<u8>) -> Result<PathBuf> {
        write_slot(dir, &*self.0, buf)
    }
}

/// Serializes `snap` into `buf`: the safetensors document, then the CRC-32 trailer.
pub fn encode(snap: &dyn ResumeSnapshot, buf: &mut Vec<u8>) -> Result<()> {
    snap.encode_document(buf)?;
    let crc = crc32fast::hash(buf);
    buf.extend_from_slice(&crc.to_le_bytes());
    buf.extend_from_slice(TRAILER_MAGIC);
    Ok(())
}

/// Writes `snap` into its slot of the run folder `dir` (slot `step % 2`, in place) and returns
/// the file. `buf` is scratch space kept between calls.
pub fn write_slot(dir: &Path, snap: &dyn ResumeSnapshot, buf: &mut Vec<u8>) -> Result<PathBuf> {
    use std::io::{Seek as _, Write as _};
    encode(snap, buf)?;
    let path = dir.join(CHECKPOINT_SLOTS[snap.step() % 2]);
    let io = |e| CoreError::io(&path, e);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .map_err(io)?;
    f.seek(std::io::SeekFrom::Start(0)).map_err(io)?;
    f.write_all(buf).map_err(io)?;
    f.set_len(buf.len() as u64).map_err(io)?;
    Ok(path)
}

/// Checks a checkpoint file's trailer; returns the safetensors document.
pub fn verified<'a>(path: &Path, bytes: &'a [u8]) -> Result<&'a [u8]> {
    let n = bytes.len();
    if n < 8 || &bytes[n - 4..] != TRAILER_MAGIC {
        return Err(CoreError::file(
            path,
            "not an RLVR Studio checkpoint (no RLVR trailer: truncated or another file)",
        ));
    }
    let doc = &bytes[..n - 8];
    let crc = u32::from_le_bytes([bytes[n - 8], bytes[n - 7], bytes[n - 6], bytes[n - 5]]);
    if crc32fast::hash(doc) != crc {
        return Err(CoreError::file(
            path,
            "checkpoint checksum mismatch (the write was interrupted, or the file is damaged)",
        ));
    }
    Ok(doc)
}

/// The state and rehearsal-set JSON of a verified checkpoint document.
pub fn read_state(path: &Path, doc: &[u8]) -> Result<(CheckpointState, Option<String>)> {
    let (_, header) = safetensors::SafeTensors::read_metadata(doc)
        .map_err(|e| CoreError::file(path, format!("not a checkpoint (unreadable header: {e})")))?;
    let meta: HashMap<String, String> = header.metadata().clone().unwrap_or_default();
    let text = meta.get(STATE_KEY).ok_or_else(|| {
        CoreError::file(path, format!("not a checkpoint (no {STATE_KEY} metadata)"))
    })?;
    let state: CheckpointState = serde_json::from_str(text)
        .map_err(|e| CoreError::file(path, format!("invalid checkpoint state: {e}")))?;
    if state.format != FORMAT {
        return Err(CoreError::file(
            path,
            format!(
                "checkpoint format {} is not supported (expected {FORMAT})",
                state.format
            ),
        ));
    }
    Ok((state, meta.get(REHEARSAL_KEY).cloned()))
}

/// The step a checkpoint file was taken at (after verifying its checksum).
pub fn checkpoint_step(path: &Path) -> Result<usize> {
    Ok(checkpoint_state(path)?.step)
}

/// The [`CheckpointState`] of a checkpoint file (after verifying its checksum).
pub fn checkpoint_state(path: &Path) -> Result<CheckpointState> {
    let bytes = std::fs::read(path).map_err(|e| CoreError::io(path, e))?;
    Ok(read_state(path, verified(path, &bytes)?)?.0)
}

/// The newest checkpoint of a run folder that verifies: `(file, step)`. `Ok(None)` when the
/// folder has none; an error naming the files when every slot present is damaged.
pub fn latest_checkpoint(dir: &Path) -> Result<Option<(PathBuf, usize)>> {
    let mut best: Option<(PathBuf, usize)> = None;
    let mut errors = Vec::new();
    for slot in CHECKPOINT_SLOTS {
        let p = dir.join(slot);
        if !p.exists() {
            continue;
        }
        match checkpoint_step(&p) {
            Ok(step) => {
                if best.as_ref().is_none_or(|(_, s)| step > *s) {
                    best = Some((p, step));
                }
            }
            Err(e) => errors.push(e.to_string()),
        }
    }
    match (best, errors.is_empty()) {
        (Some(b), _) => Ok(Some(b)),
        (None, true) => Ok(None),
        (None, false) => Err(CoreError::file(
            dir,
            format!("no usable checkpoint: {}", errors.join("; ")),
        )),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn state() -> CheckpointState {
        let rng = RngState {
            seed: vec![0; 32],
            stream: 1,
            word_pos: "0".into(),
        };
        CheckpointState {
            format: FORMAT,
            step: 3,
            data_cursor: 24,
            rng: rng.clone(),
            noise_rng: rng,
            optimizer_steps: 3,
            critic_optimizer_steps: None,
            workers: 2,
            run_id: Some(7),
            config_hash: Some(config_hash("seed = 1\n")),
        }
    }

    #[test]
    fn checkpoints_before_the_stamp_still_read() {
        let mut old = serde_json::to_value(state()).unwrap();
        let obj = old.as_object_mut().unwrap();
        obj.remove("run_id");
        obj.remove("config_hash");
        let back: CheckpointState = serde_json::from_value(old).unwrap();
        assert_eq!((back.run_id, back.config_hash.as_deref()), (None, None));
        check_stamp(Path::new("resume-1.ckpt"), &back, Some(9), "x").unwrap();
    }

    #[test]
    fn another_runs_checkpoint_is_refused_naming_both_runs() {
        let s = state();
        let p = Path::new("/runs/a/resume-1.ckpt");
        let ours = config_hash("seed = 1\n");
        check_stamp(p, &s, Some(7), &ours).unwrap();
        let err = check_stamp(p, &s, Some(9), &ours).unwrap_err().to_string();
        assert!(
            err.contains("resume-1.ckpt") && err.contains("run 7") && err.contains("run 9"),
            "{err}"
        );
        let err = check_stamp(p, &s, Some(7), &config_hash("seed = 2\n"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("another config"), "{err}");
        assert_ne!(config_hash("a"), config_hash("b"));
        assert_eq!(config_hash("a"), config_hash("a"));
    }
}
