//! Resumable checkpoints: everything that determines the rest of a run, in one file.
//!
//! A checkpoint is a safetensors document followed by an 8-byte trailer (CRC-32 of the
//! document, then `RLVR`). The document holds the policy (`policy.*`), the AdamW moments
//! (`m.*`, `v.*`), and, when used, the KL reference (`reference.*`) and the PPO value head with
//! its optimizer (`critic.*`); its metadata carries the step, data cursor, random-number
//! generator states and optimizer step counts (`rlvr.state`, JSON) and the DPH-RL rehearsal set
//! (`rlvr.rehearsal`).
//!
//! A run folder has two slots, `resume-0.ckpt` and `resume-1.ckpt`; step `s` goes to slot
//! `s % 2`, overwritten in place (about 10× cheaper than a new file: no fresh pages to
//! allocate). A crash mid-write leaves that slot failing its checksum and the other slot holding
//! the previous step; [`latest_checkpoint`] picks the newest slot that verifies.
//!
//! Taking a [`ResumeState`] is cheap (the parameters are copied in memory, the rest is shared),
//! so the trainer takes one after every step and hands it to its listener in an
//! [`EngineEvent::Checkpoint`](crate::events::EngineEvent::Checkpoint): the listener writes it
//! once it has stored the step's history, so a checkpoint on disk never runs ahead of the
//! history. Resuming on the same machine with the same worker count reproduces the
//! uninterrupted run.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use candle_core::Tensor;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use super::Trainer;
use crate::error::{EngineError, Result};

/// The two checkpoint slots of a run folder.
pub const CHECKPOINT_SLOTS: [&str; 2] = ["resume-0.ckpt", "resume-1.ckpt"];
const TRAILER_MAGIC: &[u8; 4] = b"RLVR";

#[derive(Clone, Debug, Serialize, Deserialize)]
struct RngState {
    seed: Vec<u8>,
    stream: u64,
    word_pos: String,
}

impl RngState {
    fn of(r: &ChaCha8Rng) -> Self {
        Self {
            seed: r.get_seed().to_vec(),
            stream: r.get_stream(),
            word_pos: r.get_word_pos().to_string(),
        }
    }

    fn restore(&self, path: &Path) -> Result<ChaCha8Rng> {
        let seed: [u8; 32] = self
            .seed
            .as_slice()
            .try_into()
            .map_err(|_| EngineError::model(path, "random state: seed must have 32 bytes"))?;
        let pos: u128 = self
            .word_pos
            .parse()
            .map_err(|_| EngineError::model(path, "random state: bad word position"))?;
        let mut r = <ChaCha8Rng as rand::SeedableRng>::from_seed(seed);
        r.set_stream(self.stream);
        r.set_word_pos(pos);
        Ok(r)
    }
}

#[derive(Clone, Debug, Serialize, Deserialize)]
struct State {
    format: u32,
    step: usize,
    data_cursor: u64,
    rng: RngState,
    noise_rng: RngState,
    optimizer_steps: usize,
    critic_optimizer_steps: Option<usize>,
    workers: usize,
}

const FORMAT: u32 = 2;
const STATE_KEY: &str = "rlvr.state";
const REHEARSAL_KEY: &str = "rlvr.rehearsal";

/// Everything needed to continue a run exactly, taken after a step.
pub struct ResumeState {
    state: State,
    rehearsal: Option<String>,
    tensors: Vec<(String, Tensor)>,
}

impl std::fmt::Debug for ResumeState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResumeState")
            .field("step", &self.state.step)
            .field("tensors", &self.tensors.len())
            .finish()
    }
}

impl ResumeState {
    /// Updates done when it was taken.
    pub fn step(&self) -> usize {
        self.state.step
    }

    /// Serializes it into `buf` (cleared first; reusing one buffer avoids fresh allocations):
    /// the safetensors document, then the CRC-32 trailer.
    pub fn encode(&self, buf: &mut Vec<u8>) -> Result<()> {
        let state =
            serde_json::to_string(&self.state).map_err(|e| EngineError::Internal(e.to_string()))?;
        let mut meta = HashMap::from([(STATE_KEY.to_string(), state)]);
        if let Some(r) = &self.rehearsal {
            meta.insert(REHEARSAL_KEY.to_string(), r.clone());
        }
        let doc = safetensors::serialize(self.tensors.iter().map(|(n, t)| (n, t)), Some(meta))
            .map_err(|e| EngineError::Internal(format!("cannot serialize the checkpoint: {e}")))?;
        buf.clear();
        buf.extend_from_slice(&doc);
        buf.extend_from_slice(&crc32fast::hash(&doc).to_le_bytes());
        buf.extend_from_slice(TRAILER_MAGIC);
        Ok(())
    }

    /// Writes it into its slot of the run folder `dir` (slot `step % 2`, in place) and returns
    /// the file. `buf` is scratch space kept between calls.
    pub fn write_slot(&self, dir: &Path, buf: &mut Vec<u8>) -> Result<PathBuf> {
        use std::io::{Seek as _, Write as _};
        self.encode(buf)?;
        let path = dir.join(CHECKPOINT_SLOTS[self.state.step % 2]);
        let io = |e| EngineError::io(&path, e);
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
}

/// A [`ResumeState`] shared with a listener (cheap to clone; compares by identity).
#[derive(Clone, Debug)]
pub struct ResumePoint(pub Arc<ResumeState>);

impl PartialEq for ResumePoint {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

/// Checks a checkpoint file's trailer; returns the safetensors document.
fn verified<'a>(path: &Path, bytes: &'a [u8]) -> Result<&'a [u8]> {
    let n = bytes.len();
    if n < 8 || &bytes[n - 4..] != TRAILER_MAGIC {
        return Err(EngineError::model(
            path,
            "not an RLVR Studio checkpoint (no RLVR trailer: truncated or another file)",
        ));
    }
    let doc = &bytes[..n - 8];
    let crc = u32::from_le_bytes([bytes[n - 8], bytes[n - 7], bytes[n - 6], bytes[n - 5]]);
    if crc32fast::hash(doc) != crc {
        return Err(EngineError::model(
            path,
            "checkpoint checksum mismatch (the write was interrupted, or the file is damaged)",
        ));
    }
    Ok(doc)
}

/// The step a checkpoint file was taken at (after verifying its checksum).
pub fn checkpoint_step(path: &Path) -> Result<usize> {
    let bytes = std::fs::read(path).map_err(|e| EngineError::io(path, e))?;
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
        (None, false) => Err(EngineError::model(
            dir,
            format!("no usable checkpoint: {}", errors.join("; ")),
        )),
    }
}

fn read_state(path: &Path, bytes: &[u8]) -> Result<(State, Option<String>)> {
    let (_, header) = safetensors::SafeTensors::read_metadata(bytes).map_err(|e| {
        EngineError::model(path, format!("not a checkpoint (unreadable header: {e})"))
    })?;
    let meta = header.metadata().clone().unwrap_or_default();
    let text = meta.get(STATE_KEY).ok_or_else(|| {
        EngineError::model(path, format!("not a checkpoint (no {STATE_KEY} metadata)"))
    })?;
    let state: State = serde_json::from_str(text)
        .map_err(|e| EngineError::model(path, format!("invalid checkpoint state: {e}")))?;
    if state.format != FORMAT {
        return Err(EngineError::model(
            path,
            format!(
                "checkpoint format {} is not supported (expected {FORMAT})",
                state.format
            ),
        ));
    }
    Ok((state, meta.get(REHEARSAL_KEY).cloned()))
}

fn take(map: &mut HashMap<String, Tensor>, name: &str, path: &Path) -> Result<Tensor> {
    map.remove(name)
        .ok_or_else(|| EngineError::model(path, format!("checkpoint lacks tensor {name}")))
}

impl Trainer {
    /// The resume state after the current step: parameters copied, optimizer moments and
    /// reference shared (the optimizer replaces them rather than writing in place).
    pub fn resume_state(&self) -> Result<ResumeState> {
        let mut tensors = Vec::new();
        for (n, v) in self.policy.params() {
            tensors.push((format!("policy.{n}"), v.as_tensor().copy()?));
        }
        let (t, m, v) = self.opt.state();
        for (((n, _), m), v) in self.policy.params().iter().zip(m).zip(v) {
            tensors.push((format!("m.{n}"), m.clone()));
            tensors.push((format!("v.{n}"), v.clone()));
        }
        if let Some(r) = &self.reference {
            for (n, t) in r.named_tensors() {
                tensors.push((format!("reference.{n}"), t));
            }
        }
        let mut critic_steps = None;
        if let Some(c) = &self.critic {
            let (ct, cm, cv) = c.opt.state();
            critic_steps = Some(ct);
            tensors.push(("critic.w".into(), c.w.as_tensor().copy()?));
            tensors.push(("critic.b".into(), c.b.as_tensor().copy()?));
            for (i, (m, v)) in cm.iter().zip(cv).enumerate() {
                tensors.push((format!("critic.m.{i}"), m.clone()));
                tensors.push((format!("critic.v.{i}"), v.clone()));
            }
        }
        let rehearsal = match &self.rehearsal {
            Some(r) => {
                Some(serde_json::to_string(r).map_err(|e| EngineError::Internal(e.to_string()))?)
            }
            None => None,
        };
        let tensors = tensors
            .into_iter()
            .map(|(n, t)| Ok((n, t.detach().contiguous()?)))
            .collect::<Result<_>>()?;
        Ok(ResumeState {
            state: State {
                format: FORMAT,
                step: self.step,
                data_cursor: self.split.cursor(),
                rng: RngState::of(&self.rng),
                noise_rng: RngState::of(&self.noise_rng),
                optimizer_steps: t,
                critic_optimizer_steps: critic_steps,
                workers: self.workers,
            },
            rehearsal,
            tensors,
        })
    }

    /// Writes the current state into its checkpoint slot of `dir`; returns the file.
    pub fn save_checkpoint(&self, dir: &Path) -> Result<PathBuf> {
        std::fs::create_dir_all(dir).map_err(|e| EngineError::io(dir, e))?;
        self.resume_state()?.write_slot(dir, &mut Vec::new())
    }

    /// Restores a checkpoint file written by [`ResumeState::write_slot`] into a trainer freshly
    /// made from the run's config. Every inconsistency is an error naming the file.
    pub fn load_checkpoint(&mut self, path: &Path) -> Result<()> {
        let bytes = std::fs::read(path).map_err(|e| EngineError::io(path, e))?;
        let doc = verified(path, &bytes)?;
        let (state, rehearsal) = read_state(path, doc)?;
        let device = self.policy.device().clone();
        let mut map = candle_core::safetensors::load_buffer(doc, &device)
            .map_err(|e| EngineError::model(path, format!("unreadable checkpoint tensors: {e}")))?;
        for (n, var) in self.policy.params() {
            let t = take(&mut map, &format!("policy.{n}"), path)?;
            if t.dims() != var.dims() {
                return Err(EngineError::model(
                    path,
                    format!(
                        "tensor policy.{n} has shape {:?}, the run's model has {:?}",
                        t.dims(),
                        var.dims()
                    ),
                ));
            }
            var.set(&t)?;
        }
        let (mut m, mut v) = (Vec::new(), Vec::new());
        for (n, _) in self.policy.params() {
            m.push(take(&mut map, &format!("m.{n}"), path)?);
            v.push(take(&mut map, &format!("v.{n}"), path)?);
        }
        self.opt.load_state(state.optimizer_steps, m, v)?;
        if self.reference.is_some() {
            let prefix = "reference.";
            let refs: HashMap<String, Tensor> = map
                .iter()
                .filter_map(|(k, t)| Some((k.strip_prefix(prefix)?.to_string(), t.clone())))
                .collect();
            self.reference = Some(
                crate::model::Transformer::from_tensors(&self.policy.cfg, &refs, &device)
                    .map_err(|e| EngineError::model(path, format!("reference model: {e}")))?,
            );
        }
        if let Some(c) = self.critic.as_mut() {
            c.w.set(&take(&mut map, "critic.w", path)?)?;
            c.b.set(&take(&mut map, "critic.b", path)?)?;
            let (mut m, mut v) = (Vec::new(), Vec::new());
            for i in 0..2 {
                m.push(take(&mut map, &format!("critic.m.{i}"), path)?);
                v.push(take(&mut map, &format!("critic.v.{i}"), path)?);
            }
            c.opt
                .load_state(state.critic_optimizer_steps.unwrap_or(0), m, v)?;
        }
        if let Some(text) = rehearsal {
            self.rehearsal =
                Some(serde_json::from_str(&text).map_err(|e| {
                    EngineError::model(path, format!("invalid rehearsal set: {e}"))
                })?);
        }
        self.rng = state.rng.restore(path)?;
        self.noise_rng = state.noise_rng.restore(path)?;
        self.split.seek(state.data_cursor);
        self.step = state.step;
        if state.workers != self.workers {
            // Still a valid run, just not bit-identical to the uninterrupted one.
            self.workers = state.workers;
        }
        Ok(())
    }
}
