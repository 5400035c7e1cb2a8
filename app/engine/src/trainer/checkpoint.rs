//! Resumable checkpoints: everything that determines the rest of a run.
//!
//! `<output>/checkpoint/` holds `state.json` (step, data cursor, random-number generator states,
//! optimizer step counts), `policy/` (a Hugging Face folder), `optimizer.safetensors` (AdamW
//! moments), and, when used, `reference.safetensors` (KL reference), `critic.safetensors` (PPO
//! value head and its optimizer) and `rehearsal.json` (DPH-RL set). It is written to a temporary
//! folder and renamed into place, so a crash mid-write leaves the previous checkpoint intact.
//! Resuming on the same machine with the same worker count reproduces the uninterrupted run.

use std::collections::HashMap;
use std::path::Path;

use candle_core::{Device, Tensor};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use super::Trainer;
use crate::error::{EngineError, Result};
use crate::model::Policy;

#[derive(Serialize, Deserialize)]
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

#[derive(Serialize, Deserialize)]
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

const FORMAT: u32 = 1;

fn save_tensors(path: &Path, tensors: Vec<(String, Tensor)>) -> Result<()> {
    let tensors: Vec<(String, Tensor)> = tensors
        .into_iter()
        .map(|(n, t)| Ok((n, t.detach().contiguous()?)))
        .collect::<Result<_>>()?;
    safetensors::serialize_to_file(tensors.iter().map(|(n, t)| (n, t)), None, path)
        .map_err(|e| EngineError::model(path, format!("cannot write: {e}")))
}

fn load_tensors(path: &Path, device: &Device) -> Result<HashMap<String, Tensor>> {
    candle_core::safetensors::load(path, device)
        .map_err(|e| EngineError::model(path, format!("unreadable checkpoint tensors: {e}")))
}

fn take(map: &mut HashMap<String, Tensor>, name: &str, path: &Path) -> Result<Tensor> {
    map.remove(name)
        .ok_or_else(|| EngineError::model(path, format!("checkpoint lacks tensor {name}")))
}

impl Trainer {
    /// Writes `<dir>/checkpoint` atomically (temporary folder, then rename).
    pub fn save_checkpoint(&self, dir: &Path) -> Result<()> {
        let tmp = dir.join("checkpoint.tmp");
        let fin = dir.join("checkpoint");
        if tmp.exists() {
            std::fs::remove_dir_all(&tmp).map_err(|e| EngineError::io(&tmp, e))?;
        }
        std::fs::create_dir_all(&tmp).map_err(|e| EngineError::io(&tmp, e))?;
        self.policy.save(&tmp.join("policy"))?;
        let (t, m, v) = self.opt.state();
        let names: Vec<&String> = self.policy.params().iter().map(|(n, _)| n).collect();
        let mut opt = Vec::new();
        for ((n, m), v) in names.iter().zip(m).zip(v) {
            opt.push((format!("m.{n}"), m.clone()));
            opt.push((format!("v.{n}"), v.clone()));
        }
        save_tensors(&tmp.join("optimizer.safetensors"), opt)?;
        if let Some(r) = &self.reference {
            save_tensors(&tmp.join("reference.safetensors"), r.named_tensors())?;
        }
        let mut critic_steps = None;
        if let Some(c) = &self.critic {
            let (ct, cm, cv) = c.opt.state();
            critic_steps = Some(ct);
            let mut ts = vec![
                ("w".to_string(), c.w.as_tensor().clone()),
                ("b".to_string(), c.b.as_tensor().clone()),
            ];
            for (i, (m, v)) in cm.iter().zip(cv).enumerate() {
                ts.push((format!("m.{i}"), m.clone()));
                ts.push((format!("v.{i}"), v.clone()));
            }
            save_tensors(&tmp.join("critic.safetensors"), ts)?;
        }
        if let Some(r) = &self.rehearsal {
            let p = tmp.join("rehearsal.json");
            let text =
                serde_json::to_string(r).map_err(|e| EngineError::model(&p, e.to_string()))?;
            std::fs::write(&p, text).map_err(|e| EngineError::io(&p, e))?;
        }
        let state = State {
            format: FORMAT,
            step: self.step,
            data_cursor: self.split.cursor(),
            rng: RngState::of(&self.rng),
            noise_rng: RngState::of(&self.noise_rng),
            optimizer_steps: t,
            critic_optimizer_steps: critic_steps,
            workers: self.workers,
        };
        let p = tmp.join("state.json");
        let text = serde_json::to_string_pretty(&state)
            .map_err(|e| EngineError::model(&p, e.to_string()))?;
        std::fs::write(&p, text).map_err(|e| EngineError::io(&p, e))?;
        let old = dir.join("checkpoint.old");
        if fin.exists() {
            if old.exists() {
                std::fs::remove_dir_all(&old).map_err(|e| EngineError::io(&old, e))?;
            }
            std::fs::rename(&fin, &old).map_err(|e| EngineError::io(&fin, e))?;
        }
        std::fs::rename(&tmp, &fin).map_err(|e| EngineError::io(&tmp, e))?;
        if old.exists() {
            std::fs::remove_dir_all(&old).map_err(|e| EngineError::io(&old, e))?;
        }
        Ok(())
    }

    /// Restores a checkpoint written by [`Trainer::save_checkpoint`] into a trainer freshly made
    /// from the run's config. Every inconsistency is an error naming the file.
    pub fn load_checkpoint(&mut self, ckpt: &Path) -> Result<()> {
        let sp = ckpt.join("state.json");
        let text = std::fs::read_to_string(&sp).map_err(|e| EngineError::io(&sp, e))?;
        let state: State = serde_json::from_str(&text)
            .map_err(|e| EngineError::model(&sp, format!("invalid checkpoint state: {e}")))?;
        if state.format != FORMAT {
            return Err(EngineError::model(
                &sp,
                format!(
                    "checkpoint format {} is not supported (expected {FORMAT})",
                    state.format
                ),
            ));
        }
        let device = self.policy.device().clone();
        let saved = Policy::load(&ckpt.join("policy"), &device)?;
        if saved.cfg != self.policy.cfg {
            return Err(EngineError::model(
                ckpt.join("policy"),
                "model config differs from the run's model",
            ));
        }
        self.policy.copy_weights_from(&saved)?;
        let op = ckpt.join("optimizer.safetensors");
        let mut map = load_tensors(&op, &device)?;
        let (mut m, mut v) = (Vec::new(), Vec::new());
        for (n, _) in self.policy.params() {
            m.push(take(&mut map, &format!("m.{n}"), &op)?);
            v.push(take(&mut map, &format!("v.{n}"), &op)?);
        }
        self.opt.load_state(state.optimizer_steps, m, v)?;
        if self.reference.is_some() {
            let rp = ckpt.join("reference.safetensors");
            let map = load_tensors(&rp, &device)?;
            self.reference = Some(
                crate::model::Transformer::from_tensors(&self.policy.cfg, &map, &device)
                    .map_err(|e| EngineError::model(&rp, e.to_string()))?,
            );
        }
        if let Some(c) = self.critic.as_mut() {
            let cp = ckpt.join("critic.safetensors");
            let mut map = load_tensors(&cp, &device)?;
            c.w.set(&take(&mut map, "w", &cp)?)?;
            c.b.set(&take(&mut map, "b", &cp)?)?;
            let (mut m, mut v) = (Vec::new(), Vec::new());
            for i in 0..2 {
                m.push(take(&mut map, &format!("m.{i}"), &cp)?);
                v.push(take(&mut map, &format!("v.{i}"), &cp)?);
            }
            c.opt
                .load_state(state.critic_optimizer_steps.unwrap_or(0), m, v)?;
        }
        let rp = ckpt.join("rehearsal.json");
        if rp.exists() {
            let text = std::fs::read_to_string(&rp).map_err(|e| EngineError::io(&rp, e))?;
            self.rehearsal = Some(
                serde_json::from_str(&text)
                    .map_err(|e| EngineError::model(&rp, format!("invalid rehearsal set: {e}")))?,
            );
        }
        self.rng = state.rng.restore(&sp)?;
        self.noise_rng = state.noise_rng.restore(&sp)?;
        self.split.seek(state.data_cursor);
        self.step = state.step;
        if state.workers != self.workers {
            // Still a valid run, just not bit-identical to the uninterrupted one.
            self.workers = state.workers;
        }
        Ok(())
    }
}
