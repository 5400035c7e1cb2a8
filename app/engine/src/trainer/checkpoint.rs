//! Resumable checkpoints: everything that determines the rest of a run, in one file whose
//! format (slots, trailer, state) is defined by [`rlvr_core::checkpoint`]. This module takes the
//! trainer's state as a [`ResumeState`] (a [`ResumeSnapshot`] the listener encodes and writes
//! once it has stored the step's history) and restores a trainer from a file.
//!
//! Taking a [`ResumeState`] is cheap (the parameters are copied in memory, the rest is shared),
//! so the trainer takes one after every step and hands it to its listener in an
//! [`EngineEvent::Checkpoint`](crate::events::EngineEvent::Checkpoint). Resuming on the same
//! machine with the same worker count reproduces the uninterrupted run.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use candle_core::Tensor;
use rand_chacha::ChaCha8Rng;
use rlvr_core::checkpoint::{
    check_stamp, read_state, verified, CheckpointState, RngState, FORMAT, REHEARSAL_KEY, STATE_KEY,
};
pub use rlvr_core::checkpoint::{
    checkpoint_step, latest_checkpoint, ResumePoint, ResumeSnapshot, CHECKPOINT_SLOTS,
};

use super::Trainer;
use crate::error::{EngineError, Result};

fn rng_state(r: &ChaCha8Rng) -> RngState {
    RngState {
        seed: r.get_seed().to_vec(),
        stream: r.get_stream(),
        word_pos: r.get_word_pos().to_string(),
    }
}

fn restore_rng(s: &RngState, path: &Path) -> Result<ChaCha8Rng> {
    let seed: [u8; 32] = s
        .seed
        .as_slice()
        .try_into()
        .map_err(|_| EngineError::model(path, "random state: seed must have 32 bytes"))?;
    let pos: u128 = s
        .word_pos
        .parse()
        .map_err(|_| EngineError::model(path, "random state: bad word position"))?;
    let mut r = <ChaCha8Rng as rand::SeedableRng>::from_seed(seed);
    r.set_stream(s.stream);
    r.set_word_pos(pos);
    Ok(r)
}

/// Everything needed to continue a run exactly, taken after a step.
pub struct ResumeState {
    state: CheckpointState,
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

impl ResumeSnapshot for ResumeState {
    fn step(&self) -> usize {
        self.state.step
    }

    fn encode_document(&self, buf: &mut Vec<u8>) -> rlvr_core::Result<()> {
        use rlvr_core::CoreError;
        let state =
            serde_json::to_string(&self.state).map_err(|e| CoreError::Internal(e.to_string()))?;
        let mut meta = HashMap::from([(STATE_KEY.to_string(), state)]);
        if let Some(r) = &self.rehearsal {
            meta.insert(REHEARSAL_KEY.to_string(), r.clone());
        }
        let doc = safetensors::serialize(self.tensors.iter().map(|(n, t)| (n, t)), Some(meta))
            .map_err(|e| CoreError::Internal(format!("cannot serialize the checkpoint: {e}")))?;
        buf.clear();
        buf.extend_from_slice(&doc);
        Ok(())
    }
}

/// The hash stamped into checkpoints: of the config with what a resume may change (`steps`,
/// plugin folders) cleared, printed after one TOML round trip so that the config a run starts
/// with and the one stored in the history hash alike.
pub fn config_hash(cfg: &crate::config::RunConfig) -> String {
    let mut c = cfg.clone();
    c.steps = 0;
    c.plugins.dirs.clear();
    let text = c.to_toml();
    let text = crate::config::RunConfig::from_toml(&text).map_or(text, |c| c.to_toml());
    rlvr_core::checkpoint::config_hash(&text)
}

fn take(map: &mut HashMap<String, Tensor>, name: &str, path: &Path) -> Result<Tensor> {
    map.remove(name)
        .ok_or_else(|| EngineError::model(path, format!("checkpoint lacks tensor {name}")))
}

impl Trainer {
    /// The reference of a checkpoint of a run with adapters: the base, plus the adapters stored
    /// under `reference.` (present after a ProRL reset).
    fn reference_adapters(
        &self,
        map: &mut HashMap<String, Tensor>,
        path: &Path,
    ) -> Result<crate::model::Transformer> {
        let mut adapters = Vec::new();
        if let Some(ad) = self.policy.adapters() {
            for a in &ad.layers {
                let key = |b| {
                    format!(
                        "reference.{}",
                        crate::model::lora::peft_key(a.layer, a.module, b)
                    )
                };
                match (map.remove(&key(false)), map.remove(&key(true))) {
                    (Some(ta), Some(tb)) => adapters.push((a.layer, a.module, ta, tb)),
                    (None, None) => {}
                    _ => {
                        return Err(EngineError::model(
                            path,
                            format!(
                                "checkpoint has only one of {} and {}",
                                key(false),
                                key(true)
                            ),
                        ))
                    }
                }
            }
        }
        self.policy
            .reference_with(adapters)
            .map_err(|e| EngineError::model(path, format!("reference model: {e}")))
    }

    /// The resume state after the current step: parameters copied, optimizer moments and
    /// reference shared (the optimizer replaces them rather than writing in place).
    pub fn resume_state(&self) -> Result<ResumeState> {
        let mut tensors = Vec::new();
        for (n, v) in self.policy.trainable() {
            tensors.push((format!("policy.{n}"), v.as_tensor().copy()?));
        }
        let (t, m, v) = self.opt.state();
        for (((n, _), m), v) in self.policy.trainable().iter().zip(m).zip(v) {
            tensors.push((format!("m.{n}"), m.clone()));
            tensors.push((format!("v.{n}"), v.clone()));
        }
        match (&self.reference, self.policy.adapters().is_some()) {
            // With adapters the reference is the frozen base plus, after a ProRL reset, a copy
            // of the adapters: only those are stored.
            (Some(r), true) => {
                for (l, m, a) in r.adapters() {
                    let key = |b| crate::model::lora::peft_key(l, m, b);
                    tensors.push((format!("reference.{}", key(false)), a.a.clone()));
                    tensors.push((format!("reference.{}", key(true)), a.b.clone()));
                }
            }
            (Some(r), false) => {
                for (n, t) in r.named_tensors() {
                    tensors.push((format!("reference.{n}"), t));
                }
            }
            (None, _) => {}
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
            state: CheckpointState {
                format: FORMAT,
                step: self.step,
                data_cursor: self.split.cursor(),
                rng: rng_state(&self.rng),
                noise_rng: rng_state(&self.noise_rng),
                optimizer_steps: t,
                critic_optimizer_steps: critic_steps,
                workers: self.workers,
                run_id: self.run_id,
                config_hash: Some(self.config_hash.clone()),
            },
            rehearsal,
            tensors,
        })
    }

    /// Writes the current state into its checkpoint slot of `dir`; returns the file.
    pub fn save_checkpoint(&self, dir: &Path) -> Result<PathBuf> {
        std::fs::create_dir_all(dir).map_err(|e| EngineError::io(dir, e))?;
        Ok(rlvr_core::checkpoint::write_slot(
            dir,
            &self.resume_state()?,
            &mut Vec::new(),
        )?)
    }

    /// Restores a checkpoint file written by [`rlvr_core::checkpoint::write_slot`] into a trainer freshly
    /// made from the run's config. Every inconsistency is an error naming the file.
    pub fn load_checkpoint(&mut self, path: &Path) -> Result<()> {
        let bytes = std::fs::read(path).map_err(|e| EngineError::io(path, e))?;
        let doc = verified(path, &bytes)?;
        let (state, rehearsal) = read_state(path, doc)?;
        check_stamp(path, &state, self.run_id, &self.config_hash)?;
        let device = self.policy.device().clone();
        let mut map = candle_core::safetensors::load_buffer(doc, &device)
            .map_err(|e| EngineError::model(path, format!("unreadable checkpoint tensors: {e}")))?;
        for (n, var) in self.policy.trainable() {
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
        for (n, _) in self.policy.trainable() {
            m.push(take(&mut map, &format!("m.{n}"), path)?);
            v.push(take(&mut map, &format!("v.{n}"), path)?);
        }
        self.opt.load_state(state.optimizer_steps, m, v)?;
        if self.reference.is_some() && self.policy.adapters().is_some() {
            self.reference = Some(self.reference_adapters(&mut map, path)?);
        } else if self.reference.is_some() {
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
        self.rng = restore_rng(&state.rng, path)?;
        self.noise_rng = restore_rng(&state.noise_rng, path)?;
        self.split.seek(state.data_cursor);
        self.step = state.step;
        if state.workers != self.workers {
            // Still a valid run, just not bit-identical to the uninterrupted one.
            self.workers = state.workers;
        }
        Ok(())
    }
}
