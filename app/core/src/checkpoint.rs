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
/// Version of [`CheckpointState`] this build writes and reads.
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
    let bytes = std::fs::read(path).map_err(|e| CoreError::io(path, e))?;
    Ok(read_state(path, verified(path, &bytes)?)?.0.step)
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
