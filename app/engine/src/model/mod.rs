//! The policy model: a [`Transformer`] whose weights are trainable `Var`s, plus its tokenizer,
//! read from and written to a Hugging Face model folder (`config.json`, `model.safetensors` with
//! HF tensor names, `tokenizer.json`).

pub mod config;
pub mod transformer;

use std::collections::HashMap;
use std::path::Path;

use candle_core::{DType, Device, Tensor, Var};
use rand::{Rng as _, SeedableRng as _};
use rand_chacha::ChaCha8Rng;

pub use config::{ModelConfig, TokenIds};
pub use transformer::{KvCache, Padding, Transformer};

use crate::error::{EngineError, Result};
use crate::tokenizer::Tok;

/// Trainable policy: configuration, tokenizer and named parameters (sorted by name).
pub struct Policy {
    /// Model hyper-parameters (`config.json`).
    pub cfg: ModelConfig,
    /// Tokenizer (`tokenizer.json`).
    pub tok: Tok,
    params: Vec<(String, Var)>,
    device: Device,
}

impl std::fmt::Debug for Policy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Policy")
            .field("model_type", &self.cfg.model_type)
            .field("params", &self.num_params())
            .finish()
    }
}

/// Standard normal sample (Box-Muller), so initialisation is reproducible from our seed.
fn normal(rng: &mut ChaCha8Rng) -> f32 {
    let u1: f32 = rng.random::<f32>().max(f32::MIN_POSITIVE);
    let u2: f32 = rng.random();
    (-2.0 * u1.ln()).sqrt() * (2.0 * std::f32::consts::PI * u2).cos()
}

impl Policy {
    fn from_params(
        cfg: ModelConfig,
        tok: Tok,
        mut params: Vec<(String, Var)>,
        device: &Device,
    ) -> Self {
        params.sort_by(|a, b| a.0.cmp(&b.0));
        Self {
            cfg,
            tok,
            params,
            device: device.clone(),
        }
    }

    /// A freshly initialised policy: weights N(0, 0.02), norms 1, biases 0.
    pub fn init(cfg: ModelConfig, tok: Tok, seed: u64, device: &Device) -> Result<Self> {
        cfg.validate()
            .map_err(|m| EngineError::config("model", &cfg.model_type, m))?;
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let mut params = Vec::new();
        for (name, shape) in cfg.parameter_shapes() {
            let n: usize = shape.iter().product();
            let data: Vec<f32> = if name.ends_with("norm.weight") {
                vec![1.0; n]
            } else if name.ends_with(".bias") {
                vec![0.0; n]
            } else {
                (0..n).map(|_| normal(&mut rng) * 0.02).collect()
            };
            let t = Tensor::from_vec(data, shape, device)?;
            params.push((name, Var::from_tensor(&t)?));
        }
        Ok(Self::from_params(cfg, tok, params, device))
    }

    /// Loads a Hugging Face model folder. Every problem names the file and what was expected.
    pub fn load(dir: &Path, device: &Device) -> Result<Self> {
        if !dir.is_dir() {
            return Err(EngineError::model(
                dir,
                "not a folder: expected a model folder with config.json, tokenizer.json and *.safetensors",
            ));
        }
        let cfg_path = dir.join("config.json");
        let text = std::fs::read_to_string(&cfg_path).map_err(|e| EngineError::io(&cfg_path, e))?;
        let cfg: ModelConfig = serde_json::from_str(&text)
            .map_err(|e| EngineError::model(&cfg_path, format!("invalid model config: {e}")))?;
        cfg.validate()
            .map_err(|m| EngineError::model(&cfg_path, m))?;
        let eos = cfg
            .eos_token_id
            .as_ref()
            .and_then(|e| e.to_vec().first().copied());
        let tok = Tok::from_file(
            &dir.join("tokenizer.json"),
            cfg.bos_token_id,
            eos,
            cfg.pad_token_id,
        )?;
        if tok.vocab_size() > cfg.vocab_size {
            return Err(EngineError::model(
                dir.join("tokenizer.json"),
                format!(
                    "tokenizer has {} tokens but config.json vocab_size is {}",
                    tok.vocab_size(),
                    cfg.vocab_size
                ),
            ));
        }
        let mut files: Vec<_> = std::fs::read_dir(dir)
            .map_err(|e| EngineError::io(dir, e))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "safetensors"))
            .collect();
        files.sort();
        if files.is_empty() {
            return Err(EngineError::model(dir, "no *.safetensors weight file"));
        }
        let mut tensors = HashMap::new();
        for f in &files {
            let part = candle_core::safetensors::load(f, device)
                .map_err(|e| EngineError::model(f, format!("unreadable weights: {e}")))?;
            tensors.extend(part);
        }
        let mut params = Vec::new();
        for (name, shape) in cfg.parameter_shapes() {
            let t = tensors.get(&name).ok_or_else(|| {
                EngineError::model(dir, format!("weights lack tensor {name} (shape {shape:?})"))
            })?;
            if t.dims() != shape.as_slice() {
                return Err(EngineError::model(
                    dir,
                    format!(
                        "tensor {name} has shape {:?}, config.json implies {shape:?}",
                        t.dims()
                    ),
                ));
            }
            params.push((name, Var::from_tensor(&t.to_dtype(DType::F32)?)?));
        }
        Ok(Self::from_params(cfg, tok, params, device))
    }

    /// Writes the folder: `config.json`, `generation_config.json`, `model.safetensors` (with the
    /// `format: pt` metadata `transformers` expects) and `tokenizer.json`.
    pub fn save(&self, dir: &Path) -> Result<()> {
        std::fs::create_dir_all(dir).map_err(|e| EngineError::io(dir, e))?;
        let write_json = |name: &str, v: &serde_json::Value| -> Result<()> {
            let p = dir.join(name);
            let text = serde_json::to_string_pretty(v)
                .map_err(|e| EngineError::model(&p, e.to_string()))?;
            std::fs::write(&p, text + "\n").map_err(|e| EngineError::io(&p, e))
        };
        let cfg =
            serde_json::to_value(&self.cfg).map_err(|e| EngineError::model(dir, e.to_string()))?;
        write_json("config.json", &cfg)?;
        write_json(
            "generation_config.json",
            &serde_json::json!({
                "bos_token_id": self.cfg.bos_token_id,
                "eos_token_id": self.cfg.eos_token_id,
                "pad_token_id": self.cfg.pad_token_id,
            }),
        )?;
        let tensors: Vec<(String, Tensor)> = self
            .params
            .iter()
            .map(|(n, v)| Ok((n.clone(), v.as_tensor().detach().contiguous()?)))
            .collect::<Result<_>>()?;
        let path = dir.join("model.safetensors");
        let meta = HashMap::from([("format".to_string(), "pt".to_string())]);
        safetensors::serialize_to_file(tensors.iter().map(|(n, t)| (n, t)), Some(meta), &path)
            .map_err(|e| EngineError::model(&path, format!("cannot write weights: {e}")))?;
        self.tok.save(&dir.join("tokenizer.json"))
    }

    /// The device of the weights.
    pub fn device(&self) -> &Device {
        &self.device
    }

    /// Named trainable parameters, sorted by name.
    pub fn params(&self) -> &[(String, Var)] {
        &self.params
    }

    /// Number of scalar parameters.
    pub fn num_params(&self) -> usize {
        self.params.iter().map(|(_, v)| v.elem_count()).sum()
    }

    fn build(&self, f: impl Fn(&Var) -> Result<Tensor>) -> Result<Transformer> {
        let map: HashMap<&str, &Var> = self.params.iter().map(|(n, v)| (n.as_str(), v)).collect();
        Transformer::from_fn(&self.cfg, &self.device, |name, _shape| {
            let v = map
                .get(name)
                .ok_or_else(|| candle_core::Error::Msg(format!("missing parameter {name}")))?;
            f(v).map_err(|e| candle_core::Error::Msg(e.to_string()))
        })
        .map_err(EngineError::from)
    }

    /// The model over the trainable variables: its outputs carry gradients.
    pub fn train_model(&self) -> Result<Transformer> {
        self.build(|v| Ok(v.as_tensor().clone()))
    }

    /// A no-gradient view sharing the variables' storage (it sees every optimizer update); for
    /// sampling and evaluation.
    pub fn frozen_view(&self) -> Result<Transformer> {
        self.build(|v| Ok(v.as_tensor().detach()))
    }

    /// A deep copy of the current weights (a frozen reference policy).
    pub fn snapshot(&self) -> Result<Transformer> {
        self.build(|v| Ok(v.as_tensor().detach().copy()?))
    }

    /// Copies all weights from another policy with the same configuration.
    pub fn copy_weights_from(&self, other: &Policy) -> Result<()> {
        for ((n, v), (m, w)) in self.params.iter().zip(&other.params) {
            if n != m {
                return Err(EngineError::model("", format!("parameter {n} vs {m}")));
            }
            v.set(&w.as_tensor().detach().copy()?)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
