//! The policy model: a [`Transformer`] whose weights are trainable `Var`s, plus its tokenizer,
//! read from and written to a Hugging Face model folder (`config.json`, `model.safetensors` with
//! HF tensor names, `tokenizer.json`).

pub mod config;
pub mod inspect;
mod load;
pub mod lora;
pub mod rope;
mod special;
pub mod transformer;

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use candle_core::{Device, Tensor, Var};
use rand::{Rng as _, SeedableRng as _};
use rand_chacha::ChaCha8Rng;

pub use config::{ModelConfig, TokenIds};
pub use lora::{Adapters, LoraSpec};
pub use transformer::{KvCache, Padding, Transformer};

use crate::error::{EngineError, Result};
use crate::tokenizer::Tok;

/// How [`Policy::build`] turns a variable into the model's tensor.
type TensorOf = dyn Fn(&Var) -> Result<Tensor>;

/// Trainable policy: configuration, tokenizer and named parameters (sorted by name), with
/// optional LoRA adapters (then only they are trained and the base weights stay frozen).
pub struct Policy {
    /// Model hyper-parameters (`config.json`).
    pub cfg: ModelConfig,
    /// Tokenizer (`tokenizer.json`).
    pub tok: Tok,
    params: Vec<(String, Var)>,
    device: Device,
    lora: Option<Adapters>,
    /// The folder the base weights were read from (an adapter folder names it).
    source: Option<PathBuf>,
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

/// Gives a file the mode a newly created file gets (0666 less the umask: 0644 under umask
/// 022). `safetensors` writes through a temporary file created 0600, which would keep other
/// accounts from loading a trained policy while every other file of the run is readable.
#[cfg(unix)]
fn set_new_file_mode(path: &Path) -> Result<()> {
    use std::os::unix::fs::PermissionsExt as _;
    let mode = 0o666 & !process_umask();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .map_err(|e| EngineError::io(path, e))
}

#[cfg(not(unix))]
fn set_new_file_mode(_path: &Path) -> Result<()> {
    Ok(())
}

/// The process's umask, read from `/proc/self/status` (not changed, so no race with other
/// threads creating files); 022 where that is unavailable.
#[cfg(unix)]
fn process_umask() -> u32 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Umask:"))
                .and_then(|v| u32::from_str_radix(v.trim(), 8).ok())
        })
        .unwrap_or(0o022)
}

/// Refuses a tokenizer with more tokens than `vocab_size`, or any id (of a token or of the
/// special tokens it supplies) at or above it, naming the file.
fn check_tokenizer(tok: &Tok, path: &Path, vocab_size: usize) -> Result<()> {
    if tok.vocab_size() > vocab_size {
        return Err(EngineError::model(
            path,
            format!(
                "tokenizer has {} tokens but config.json vocab_size is {vocab_size}",
                tok.vocab_size()
            ),
        ));
    }
    if let Some((token, id)) = tok.max_id().filter(|(_, id)| *id as usize >= vocab_size) {
        return Err(EngineError::model(
            path,
            format!(
                "token {token:?} has id {id}: expected ids below config.json vocab_size = \
                 {vocab_size}"
            ),
        ));
    }
    let stops = tok.stop.iter().map(|id| ("end-of-sequence", Some(*id)));
    for (what, id) in [
        ("bos", tok.bos),
        ("eos", Some(tok.eos)),
        ("pad", Some(tok.pad)),
    ]
    .into_iter()
    .chain(stops)
    {
        if let Some(id) = id.filter(|id| *id as usize >= vocab_size) {
            return Err(EngineError::model(
                path,
                format!(
                    "the {what} token has id {id}: expected an id below config.json vocab_size = \
                     {vocab_size}"
                ),
            ));
        }
    }
    Ok(())
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
            lora: None,
            source: None,
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

    /// Reads and validates a model folder's `config.json` (sizes within
    /// [`config::SIZE_BOUNDS`], checked before any arithmetic on them, and token ids within
    /// `vocab_size`); every error names the file and the key.
    pub fn read_config(dir: &Path) -> Result<ModelConfig> {
        if !dir.is_dir() {
            return Err(EngineError::model(
                dir,
                "not a folder: expected a model folder with config.json, tokenizer.json and *.safetensors",
            ));
        }
        let cfg_path = dir.join("config.json");
        if !cfg_path.is_file() && lora::is_adapter_folder(dir) {
            return Err(EngineError::model(
                dir.join(lora::ADAPTER_CONFIG),
                "a LoRA adapter folder, not a full model folder: train from its base (base_model_name_or_path), or write a full folder with `rlvr-studio models merge`",
            ));
        }
        let text = std::fs::read_to_string(&cfg_path).map_err(|e| EngineError::io(&cfg_path, e))?;
        let cfg: ModelConfig =
            serde_path_to_error::deserialize(&mut serde_json::Deserializer::from_str(&text))
                .map_err(|e| {
                    let at = match e.path().to_string() {
                        p if p == "." => String::new(),
                        p => format!("key {p}: "),
                    };
                    EngineError::model(
                        &cfg_path,
                        format!("invalid model config: {at}{}", e.inner()),
                    )
                })?;
        cfg.validate()
            .map_err(|m| EngineError::model(&cfg_path, m))?;
        Ok(cfg)
    }

    /// Loads a Hugging Face model folder. Every problem names the file and what was expected:
    /// `config.json` as [`Policy::read_config`] checks it; the tokenizer's ids (and the special
    /// ids it supplies) below `vocab_size`; the weights as `load` checks them: floating dtypes
    /// only, no tensor in two files, none the config leaves unused, and a full scan (every
    /// element, not a sample) for NaN and infinity.
    ///
    /// An adapter folder (`adapter_config.json`, see [`lora`]) loads its base folder
    /// (`base_model_name_or_path`) with the adapters attached.
    pub fn load(dir: &Path, device: &Device) -> Result<Self> {
        if lora::is_adapter_folder(dir) && !dir.join("config.json").is_file() {
            return Self::load_adapter(dir, None, device);
        }
        let cfg = Self::read_config(dir)?;
        let tok = Self::read_tokenizer(dir, &cfg)?;
        Self::load_with(dir, cfg, tok, device)
    }

    /// The tokenizer of the folder as [`load`](Self::load) reads it (special ids, stop ids and
    /// chat template from its files), every id checked against `cfg.vocab_size`.
    pub fn read_tokenizer(dir: &Path, cfg: &ModelConfig) -> Result<Tok> {
        let tok = special::tokenizer(dir, cfg)?;
        check_tokenizer(&tok, &dir.join("tokenizer.json"), cfg.vocab_size)?;
        Ok(tok)
    }

    /// [`load`](Self::load) with the config and tokenizer already read (by
    /// [`read_config`](Self::read_config) and [`read_tokenizer`](Self::read_tokenizer)).
    pub fn load_with(dir: &Path, cfg: ModelConfig, tok: Tok, device: &Device) -> Result<Self> {
        let cfg_path = dir.join("config.json");
        let files = load::weight_files(dir)?;
        let headers = load::read_headers(&files.files)?;
        if let Some(index) = &files.index {
            load::check_index(index, &headers)?;
        }
        load::check_params(&cfg, &cfg_path, &headers)?;
        let weights = load::read_weights(&files.files, device)?;
        let params = load::take_params(&cfg, weights)?
            .into_iter()
            .map(|(n, t)| Ok((n, Var::from_tensor(&t)?)))
            .collect::<Result<Vec<_>>>()?;
        let mut p = Self::from_params(cfg, tok, params, device);
        p.source = Some(std::path::absolute(dir).unwrap_or_else(|_| dir.to_path_buf()));
        Ok(p)
    }

    /// Loads an adapter folder over its base: the base folder named by
    /// `base_model_name_or_path` (or `base`), the adapters of `adapter_model.safetensors`, and
    /// the adapter folder's tokenizer when it has one (the base's otherwise).
    pub fn load_adapter(dir: &Path, base: Option<&Path>, device: &Device) -> Result<Self> {
        let (_, named) = lora::read_config(dir)?;
        let base = base.map_or(named, Path::to_path_buf);
        if !base.join("config.json").is_file() {
            return Err(EngineError::model(
                dir.join(lora::ADAPTER_CONFIG),
                format!(
                    "base_model_name_or_path = {:?} is not a model folder (no config.json): give \
                     the base folder (--base DIR)",
                    base.display().to_string()
                ),
            ));
        }
        let cfg = Self::read_config(&base)?;
        let tok_dir = if dir.join("tokenizer.json").is_file() {
            dir
        } else {
            &base
        };
        let tok = Self::read_tokenizer(tok_dir, &cfg)?;
        let mut p = Self::load_with(&base, cfg, tok, device)?;
        p.lora = Some(Adapters::load(dir, &p.cfg, device)?);
        Ok(p)
    }

    /// Adds fresh adapters (see [`Adapters::init`]): from now on only they are trained.
    pub fn attach_lora(&mut self, spec: LoraSpec, seed: u64) -> Result<()> {
        self.lora = Some(Adapters::init(&self.cfg, spec, seed, &self.device)?);
        Ok(())
    }

    /// The adapters, when the policy has them.
    pub fn adapters(&self) -> Option<&Adapters> {
        self.lora.as_ref()
    }

    /// The trained parameters by name, sorted: the adapters' `A` and `B` by PEFT key when the
    /// policy has adapters, every weight otherwise.
    pub fn trainable(&self) -> &[(String, Var)] {
        match &self.lora {
            Some(a) => &a.vars,
            None => &self.params,
        }
    }

    /// Number of trained scalars.
    pub fn num_trainable(&self) -> usize {
        self.trainable().iter().map(|(_, v)| v.elem_count()).sum()
    }

    /// The policy with the adapters merged into the base weights (`W + scale · B A`), without
    /// adapters; a policy without adapters is copied.
    pub fn merged(&self) -> Result<Self> {
        let mut deltas: HashMap<String, Tensor> = HashMap::new();
        if let Some(ad) = &self.lora {
            let scale = ad.spec.scale();
            for a in &ad.layers {
                let name = format!("{}.weight", transformer::linear_path(a.layer, a.module));
                let d = (a.b.as_tensor().matmul(a.a.as_tensor())? * scale)?;
                deltas.insert(name, d);
            }
        }
        let params = self
            .params
            .iter()
            .map(|(n, v)| {
                let w = v.as_tensor().detach();
                let w = match deltas.get(n) {
                    Some(d) => (w + d)?,
                    None => w.copy()?,
                };
                Ok((n.clone(), Var::from_tensor(&w)?))
            })
            .collect::<Result<Vec<_>>>()?;
        let mut p = Self::from_params(self.cfg.clone(), self.tok.clone(), params, &self.device);
        p.source = self.source.clone();
        Ok(p)
    }

    /// Writes the folder: `config.json`, `generation_config.json`, `model.safetensors` (with the
    /// `format: pt` metadata `transformers` expects), `tokenizer.json` and
    /// `tokenizer_config.json` ([`Tok::save_files`]).
    ///
    /// A policy with adapters writes an adapter folder instead: `adapter_config.json` (naming
    /// the base folder), `adapter_model.safetensors` and the tokenizer files.
    pub fn save(&self, dir: &Path) -> Result<()> {
        std::fs::create_dir_all(dir).map_err(|e| EngineError::io(dir, e))?;
        if let Some(ad) = &self.lora {
            let base = self.source.as_deref().ok_or_else(|| {
                EngineError::model(dir, "adapters over a base that was not read from a folder")
            })?;
            ad.save(dir, base)?;
            return self.tok.save_files(dir, self.cfg.max_position_embeddings);
        }
        let write_json = |name: &str, v: &serde_json::Value| -> Result<()> {
            let p = dir.join(name);
            let text = serde_json::to_string_pretty(v)
                .map_err(|e| EngineError::model(&p, e.to_string()))?;
            std::fs::write(&p, text + "\n").map_err(|e| EngineError::io(&p, e))
        };
        // The weights are written in f32, whatever the loaded folder stored.
        let mut saved = self.cfg.clone();
        saved.torch_dtype = "float32".into();
        if saved.extra.contains_key("dtype") {
            saved.extra.insert("dtype".into(), "float32".into());
        }
        let cfg =
            serde_json::to_value(&saved).map_err(|e| EngineError::model(dir, e.to_string()))?;
        write_json("config.json", &cfg)?;
        write_json(
            "generation_config.json",
            &serde_json::json!({
                "bos_token_id": self.cfg.bos_token_id,
                // Every stop id, so generation_config.json's extra ones survive a save.
                "eos_token_id": match self.tok.stop.as_slice() {
                    [one] => serde_json::json!(one),
                    many => serde_json::json!(many),
                },
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
        set_new_file_mode(&path)?;
        self.tok.save_files(dir, self.cfg.max_position_embeddings)
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

    /// The model over the base weights (each through `f`) and, when `adapters` is given, the
    /// adapters (each through it).
    fn build(
        &self,
        f: impl Fn(&Var) -> Result<Tensor>,
        adapters: Option<&TensorOf>,
    ) -> Result<Transformer> {
        let map: HashMap<&str, &Var> = self.params.iter().map(|(n, v)| (n.as_str(), v)).collect();
        let model = Transformer::from_fn(&self.cfg, &self.device, |name, _shape| {
            let v = map
                .get(name)
                .ok_or_else(|| candle_core::Error::Msg(format!("missing parameter {name}")))?;
            f(v).map_err(|e| candle_core::Error::Msg(e.to_string()))
        })?;
        match (&self.lora, adapters) {
            (Some(ad), Some(g)) => {
                let list = ad
                    .layers
                    .iter()
                    .map(|a| Ok((a.layer, a.module, g(&a.a)?, g(&a.b)?)))
                    .collect::<Result<Vec<_>>>()?;
                Ok(model.with_adapters(list, ad.spec.scale(), ad.spec.dropout as f32)?)
            }
            _ => Ok(model),
        }
    }

    /// The model over the trainable variables: its outputs carry gradients (to the adapters
    /// only when the policy has them; the base is then frozen).
    pub fn train_model(&self) -> Result<Transformer> {
        let track = |v: &Var| Ok(v.as_tensor().clone());
        let frozen = |v: &Var| Ok(v.as_tensor().detach());
        if self.lora.is_some() {
            self.build(frozen, Some(&track))
        } else {
            self.build(track, None)
        }
    }

    /// A no-gradient view sharing the variables' storage (it sees every optimizer update); for
    /// sampling and evaluation.
    pub fn frozen_view(&self) -> Result<Transformer> {
        let frozen = |v: &Var| Ok(v.as_tensor().detach());
        self.build(frozen, Some(&frozen))
    }

    /// A frozen copy of the current policy (a KL reference): with adapters, the base is shared
    /// (it never changes) and only the adapters are copied; otherwise every weight is copied.
    pub fn snapshot(&self) -> Result<Transformer> {
        let copy = |v: &Var| Ok(v.as_tensor().detach().copy()?);
        if self.lora.is_some() {
            self.build(|v| Ok(v.as_tensor().detach()), Some(&copy))
        } else {
            self.build(copy, None)
        }
    }

    /// The KL reference of a run's start: the base without adapters, sharing its storage, when
    /// the policy has adapters (no second copy in memory); a [`snapshot`](Self::snapshot)
    /// otherwise.
    pub fn reference(&self) -> Result<Transformer> {
        if self.lora.is_some() {
            self.build(|v| Ok(v.as_tensor().detach()), None)
        } else {
            self.snapshot()
        }
    }

    /// The reference of a checkpoint: the base with the given adapters (none: the base alone),
    /// for a policy with adapters.
    pub fn reference_with(&self, adapters: Vec<transformer::Adapter>) -> Result<Transformer> {
        let base = self.build(|v| Ok(v.as_tensor().detach()), None)?;
        match &self.lora {
            Some(ad) if !adapters.is_empty() => {
                Ok(base.with_adapters(adapters, ad.spec.scale(), ad.spec.dropout as f32)?)
            }
            _ => Ok(base),
        }
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
