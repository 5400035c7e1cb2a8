//! LoRA adapters in PEFT's layout ("LoRA: Low-Rank Adaptation of Large Language Models", Hu et
//! al. 2021): each targeted linear layer `W` of a decoder block computes
//! `W x + (alpha / r) · B A dropout(x)` with `A: [r, in]` (initialised as PEFT does, uniform in
//! ±1/√in) and `B: [out, r]` (zeros, so a fresh adapter leaves the model unchanged). Only `A` and
//! `B` are trained; the base weights stay frozen and are shared by the sampling view and the KL
//! reference.
//!
//! An adapter folder is what `peft.PeftModel.from_pretrained` opens: `adapter_config.json`
//! (`peft_type = "LORA"`, `r`, `lora_alpha`, `target_modules`, `base_model_name_or_path`, …) and
//! `adapter_model.safetensors` with PEFT's key names
//! (`base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight`). Reading one refuses
//! every PEFT option that would change the math and is not implemented here (DoRA, rank or alpha
//! patterns, trained biases, `modules_to_save`, layer subsets, `fan_in_fan_out`), naming the key.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use candle_core::{Device, Tensor, Var};
use rand::{Rng as _, SeedableRng as _};
use rand_chacha::ChaCha8Rng;
use rlvr_core::config::{LoraSection, LORA_MODULES};

use super::transformer::linear_path;
use super::ModelConfig;
use crate::error::{EngineError, Result};

/// The adapter folder's configuration file.
pub const ADAPTER_CONFIG: &str = "adapter_config.json";
/// The adapter folder's weights.
pub const ADAPTER_WEIGHTS: &str = "adapter_model.safetensors";

/// What the adapters are: rank, scaling, dropout and the targeted modules.
#[derive(Clone, Debug, PartialEq)]
pub struct LoraSpec {
    /// Rank `r`.
    pub rank: usize,
    /// `lora_alpha`.
    pub alpha: f64,
    /// `lora_dropout`.
    pub dropout: f64,
    /// `target_modules` as written: PEFT module names (`q_proj`) or module paths
    /// (`model.layers.0.self_attn.q_proj`), each matching the linear layers whose path is it or
    /// ends with `.` + it, as PEFT matches a list.
    pub target_modules: Vec<String>,
    /// PEFT's `use_rslora`: scale by `alpha / √r` instead of `alpha / r`.
    pub rslora: bool,
}

impl LoraSpec {
    /// The spec of a run's `[model.lora]`; `None` when `rank = 0`.
    pub fn from_config(l: &LoraSection) -> Result<Option<Self>> {
        if !l.enabled() {
            return Ok(None);
        }
        let modules: Vec<String> = l
            .modules()
            .map_err(|expected| {
                EngineError::config(
                    "model.lora.target_modules",
                    format!("{:?}", l.target_modules),
                    expected,
                )
            })?
            .into_iter()
            .map(String::from)
            .collect();
        Ok(Some(Self {
            rank: l.rank,
            alpha: l.alpha,
            dropout: l.dropout,
            target_modules: modules,
            rslora: false,
        }))
    }

    /// The (layer, module) pairs of a model of `layers` layers that `target_modules` selects,
    /// in layer and block order; an entry that selects no linear layer of the blocks is an
    /// error naming it.
    pub fn targets(
        &self,
        layers: usize,
    ) -> std::result::Result<Vec<(usize, &'static str)>, String> {
        let hits = |t: &str, path: &str| {
            t == "all-linear" || path == t || path.ends_with(&format!(".{t}"))
        };
        let mut out = Vec::new();
        for layer in 0..layers {
            for m in LORA_MODULES {
                let path = linear_path(layer, m);
                if self.target_modules.iter().any(|t| hits(t, &path)) {
                    out.push((layer, m));
                }
            }
        }
        if let Some(t) = self.target_modules.iter().find(|t| {
            !(0..layers).any(|l| LORA_MODULES.iter().any(|m| hits(t, &linear_path(l, m))))
        }) {
            return Err(format!(
                "{t:?} is not a linear layer of the decoder blocks (module names: {})",
                LORA_MODULES.join(", ")
            ));
        }
        Ok(out)
    }

    /// The factor of the adapters' output: `alpha / r` (`alpha / √r` with rsLoRA).
    pub fn scale(&self) -> f64 {
        if self.rslora {
            self.alpha / (self.rank as f64).sqrt()
        } else {
            self.alpha / self.rank as f64
        }
    }
}

/// PEFT's key of an adapter matrix: `base_model.model.<module path>.lora_A.weight`.
pub fn peft_key(layer: usize, module: &str, b: bool) -> String {
    let which = if b { "lora_B" } else { "lora_A" };
    format!(
        "base_model.model.{}.{which}.weight",
        linear_path(layer, module)
    )
}

/// One adapter: its layer and module, and the trained `A` and `B`.
#[derive(Clone, Debug)]
pub struct AdapterVars {
    /// Decoder layer.
    pub layer: usize,
    /// PEFT module name.
    pub module: &'static str,
    /// `lora_A.weight`, `[r, in]`.
    pub a: Var,
    /// `lora_B.weight`, `[out, r]`.
    pub b: Var,
}

/// The adapters of a policy.
#[derive(Clone, Debug)]
pub struct Adapters {
    /// What they are.
    pub spec: LoraSpec,
    /// One per targeted linear layer, in layer and block order.
    pub layers: Vec<AdapterVars>,
    /// The same variables by PEFT key, sorted (the trained parameters).
    pub(super) vars: Vec<(String, Var)>,
}

/// `[out, in]` of a block's linear layer.
fn linear_shape(cfg: &ModelConfig, layer: usize, module: &str) -> Result<(usize, usize)> {
    let name = format!("{}.weight", linear_path(layer, module));
    cfg.parameter_shapes()
        .into_iter()
        .find(|(n, _)| *n == name)
        .and_then(|(_, s)| match s.as_slice() {
            [o, i] => Some((*o, *i)),
            _ => None,
        })
        .ok_or_else(|| EngineError::Internal(format!("the model has no linear layer {name}")))
}

impl Adapters {
    fn from_layers(spec: LoraSpec, layers: Vec<AdapterVars>) -> Self {
        let mut vars: Vec<(String, Var)> = layers
            .iter()
            .flat_map(|a| {
                [
                    (peft_key(a.layer, a.module, false), a.a.clone()),
                    (peft_key(a.layer, a.module, true), a.b.clone()),
                ]
            })
            .collect();
        vars.sort_by(|x, y| x.0.cmp(&y.0));
        Self { spec, layers, vars }
    }

    /// Fresh adapters as PEFT initialises them: `A` uniform in ±1/√in (kaiming-uniform with
    /// a = √5), `B` zero; drawn from `seed` (its own stream, so the base's initialisation and
    /// the run's other streams are unchanged).
    pub fn init(cfg: &ModelConfig, spec: LoraSpec, seed: u64, device: &Device) -> Result<Self> {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        rng.set_stream(7);
        let mut layers = Vec::new();
        let targets = spec.targets(cfg.num_hidden_layers).map_err(|e| {
            EngineError::config(
                "model.lora.target_modules",
                format!("{:?}", spec.target_modules),
                e,
            )
        })?;
        for (layer, module) in targets {
            {
                let (out, inp) = linear_shape(cfg, layer, module)?;
                let bound = 1.0 / (inp as f32).sqrt();
                let a: Vec<f32> = (0..spec.rank * inp)
                    .map(|_| rng.random_range(-bound..bound))
                    .collect();
                let a = Var::from_tensor(&Tensor::from_vec(a, (spec.rank, inp), device)?)?;
                let b = Var::from_tensor(&Tensor::zeros(
                    (out, spec.rank),
                    candle_core::DType::F32,
                    device,
                )?)?;
                layers.push(AdapterVars {
                    layer,
                    module,
                    a,
                    b,
                });
            }
        }
        Ok(Self::from_layers(spec, layers))
    }

    /// Number of trained scalars.
    pub fn num_params(&self) -> usize {
        self.vars.iter().map(|(_, v)| v.elem_count()).sum()
    }

    /// `adapter_config.json` as PEFT writes it for these adapters over `base`.
    pub fn config_json(&self, base: &Path) -> serde_json::Value {
        let s = &self.spec;
        let alpha = if s.alpha.fract() == 0.0 && s.alpha.abs() < 1e15 {
            serde_json::json!(s.alpha as i64)
        } else {
            serde_json::json!(s.alpha)
        };
        serde_json::json!({
            "peft_type": "LORA",
            "task_type": "CAUSAL_LM",
            "base_model_name_or_path": base.to_string_lossy(),
            "r": s.rank,
            "lora_alpha": alpha,
            "lora_dropout": s.dropout,
            "target_modules": s.target_modules,
            "bias": "none",
            "fan_in_fan_out": false,
            "inference_mode": true,
            "init_lora_weights": true,
            "use_rslora": s.rslora,
            "use_dora": false,
            "modules_to_save": null,
            "layers_to_transform": null,
            "layers_pattern": null,
            "rank_pattern": {},
            "alpha_pattern": {},
            "revision": null,
        })
    }

    /// Writes `adapter_config.json` and `adapter_model.safetensors` into `dir`.
    pub fn save(&self, dir: &Path, base: &Path) -> Result<()> {
        let p = dir.join(ADAPTER_CONFIG);
        let text = serde_json::to_string_pretty(&self.config_json(base))
            .map_err(|e| EngineError::model(&p, e.to_string()))?;
        std::fs::write(&p, text + "\n").map_err(|e| EngineError::io(&p, e))?;
        let tensors: Vec<(String, Tensor)> = self
            .vars
            .iter()
            .map(|(n, v)| Ok((n.clone(), v.as_tensor().detach().contiguous()?)))
            .collect::<Result<_>>()?;
        let path = dir.join(ADAPTER_WEIGHTS);
        let meta = HashMap::from([("format".to_string(), "pt".to_string())]);
        safetensors::serialize_to_file(tensors.iter().map(|(n, t)| (n, t)), Some(meta), &path)
            .map_err(|e| EngineError::model(&path, format!("cannot write adapters: {e}")))?;
        super::set_new_file_mode(&path)
    }

    /// Reads the adapters of an adapter folder for a base of shape `cfg`: every key of
    /// `adapter_config.json` that would change the math is implemented or refused, every tensor
    /// of `adapter_model.safetensors` must be an adapter of a targeted layer with its shape.
    pub fn load(dir: &Path, cfg: &ModelConfig, device: &Device) -> Result<Self> {
        let (spec, _) = read_config(dir)?;
        let path = dir.join(ADAPTER_WEIGHTS);
        if !path.is_file() {
            return Err(EngineError::model(
                &path,
                format!("missing: an adapter folder holds {ADAPTER_CONFIG} and {ADAPTER_WEIGHTS}"),
            ));
        }
        let mut map = candle_core::safetensors::load(&path, device)
            .map_err(|e| EngineError::model(&path, format!("unreadable adapter weights: {e}")))?;
        let mut layers = Vec::new();
        let targets = spec.targets(cfg.num_hidden_layers).map_err(|e| {
            EngineError::model(dir.join(ADAPTER_CONFIG), format!("key target_modules: {e}"))
        })?;
        for (layer, module) in targets {
            {
                let (out, inp) = linear_shape(cfg, layer, module)?;
                let mut take = |b: bool, shape: [usize; 2]| -> Result<Var> {
                    let key = peft_key(layer, module, b);
                    let t = map.remove(&key).ok_or_else(|| {
                        EngineError::model(&path, format!("missing tensor {key} (shape {shape:?})"))
                    })?;
                    if t.dims() != shape {
                        return Err(EngineError::model(
                            &path,
                            format!(
                                "tensor {key} has shape {:?}, expected {shape:?} (r = {} in {ADAPTER_CONFIG})",
                                t.dims(),
                                spec.rank
                            ),
                        ));
                    }
                    let t = t.to_dtype(candle_core::DType::F32)?;
                    check_finite(&t, &path, &key)?;
                    Ok(Var::from_tensor(&t)?)
                };
                let a = take(false, [spec.rank, inp])?;
                let b = take(true, [out, spec.rank])?;
                layers.push(AdapterVars {
                    layer,
                    module,
                    a,
                    b,
                });
            }
        }
        if let Some(extra) = map.keys().min() {
            return Err(EngineError::model(
                &path,
                format!(
                    "unexpected tensor {extra}: expected only lora_A/lora_B of the modules of target_modules ({}) in {ADAPTER_CONFIG}",
                    spec.target_modules.join(", ")
                ),
            ));
        }
        Ok(Self::from_layers(spec, layers))
    }
}

fn check_finite(t: &Tensor, path: &Path, key: &str) -> Result<()> {
    let bad = t
        .flatten_all()?
        .to_vec1::<f32>()?
        .into_iter()
        .find(|v| !v.is_finite());
    match bad {
        Some(v) => Err(EngineError::model(
            path,
            format!("tensor {key} holds {v}: expected finite values"),
        )),
        None => Ok(()),
    }
}

/// Whether `dir` is an adapter folder (it has `adapter_config.json`).
pub fn is_adapter_folder(dir: &Path) -> bool {
    dir.join(ADAPTER_CONFIG).is_file()
}

/// Reads `adapter_config.json`: the spec, and the base folder it names
/// (`base_model_name_or_path`, relative to the adapter folder when relative).
pub fn read_config(dir: &Path) -> Result<(LoraSpec, PathBuf)> {
    let path = dir.join(ADAPTER_CONFIG);
    let text = std::fs::read_to_string(&path).map_err(|e| EngineError::io(&path, e))?;
    let v: serde_json::Value = serde_json::from_str(&text)
        .map_err(|e| EngineError::model(&path, format!("invalid JSON: {e}")))?;
    let obj = v
        .as_object()
        .ok_or_else(|| EngineError::model(&path, "expected a JSON object"))?;
    let bad = |key: &str, value: &serde_json::Value, expected: &str| {
        EngineError::model(&path, format!("key {key} = {value}: expected {expected}"))
    };
    let get = |k: &str| obj.get(k).unwrap_or(&serde_json::Value::Null);
    let peft_type = get("peft_type");
    if peft_type.as_str() != Some("LORA") {
        return Err(bad(
            "peft_type",
            peft_type,
            "\"LORA\" (other PEFT methods are not supported)",
        ));
    }
    let rank = get("r")
        .as_u64()
        .filter(|&r| (1..=4096).contains(&r))
        .ok_or_else(|| bad("r", get("r"), "a whole number in 1..=4096"))? as usize;
    let alpha = match get("lora_alpha") {
        serde_json::Value::Null => 8.0,
        a => a
            .as_f64()
            .filter(|a| a.is_finite() && *a > 0.0)
            .ok_or_else(|| bad("lora_alpha", a, "a positive number"))?,
    };
    let dropout = match get("lora_dropout") {
        serde_json::Value::Null => 0.0,
        d => d
            .as_f64()
            .filter(|d| (0.0..1.0).contains(d))
            .ok_or_else(|| bad("lora_dropout", d, "a number in [0, 1)"))?,
    };
    let rslora = match get("use_rslora") {
        serde_json::Value::Null => false,
        b => b
            .as_bool()
            .ok_or_else(|| bad("use_rslora", b, "true or false"))?,
    };
    // Options that change the math and are not implemented: refused rather than ignored.
    let off = |key: &str, ok: &dyn Fn(&serde_json::Value) -> bool, expected: &str| {
        let v = get(key);
        if ok(v) {
            Ok(())
        } else {
            Err(bad(key, v, expected))
        }
    };
    let null_or_false = |v: &serde_json::Value| v.is_null() || v == &serde_json::json!(false);
    let null_or_empty = |v: &serde_json::Value| {
        v.is_null()
            || v.as_object().is_some_and(|o| o.is_empty())
            || v.as_array().is_some_and(|a| a.is_empty())
    };
    off("use_dora", &null_or_false, "false (DoRA is not supported)")?;
    off(
        "fan_in_fan_out",
        &null_or_false,
        "false (weights stored [out, in])",
    )?;
    off(
        "bias",
        &|v| v.is_null() || v.as_str() == Some("none"),
        "\"none\" (trained biases are not supported)",
    )?;
    off(
        "modules_to_save",
        &null_or_empty,
        "null (fully trained extra modules are not supported)",
    )?;
    off(
        "layers_to_transform",
        &|v| v.is_null(),
        "null (adapters on every layer)",
    )?;
    off(
        "rank_pattern",
        &null_or_empty,
        "{} (one rank for every module)",
    )?;
    off(
        "alpha_pattern",
        &null_or_empty,
        "{} (one alpha for every module)",
    )?;
    off("exclude_modules", &null_or_empty, "null")?;
    off(
        "lora_bias",
        &null_or_false,
        "false (trained lora_B biases are not supported)",
    )?;
    off("use_qalora", &null_or_false, "false")?;
    off("use_bdlora", &null_or_false, "null or false")?;
    for key in [
        "layer_replication",
        "target_parameters",
        "trainable_token_indices",
        "alora_invocation_tokens",
    ] {
        off(key, &null_or_empty, "null (not supported)")?;
    }
    let targets = get("target_modules");
    let target_modules: Vec<String> =
        match targets {
            serde_json::Value::String(s) if s == "all-linear" => {
                LORA_MODULES.iter().map(|m| m.to_string()).collect()
            }
            serde_json::Value::Array(items) => {
                let names: Vec<String> = items
                    .iter()
                    .filter_map(|i| i.as_str().map(String::from))
                    .collect();
                if names.len() != items.len() || names.is_empty() {
                    return Err(bad(
                        "target_modules",
                        targets,
                        "a non-empty list of module names",
                    ));
                }
                names
            }
            _ => return Err(bad(
                "target_modules",
                targets,
                "a list of module names or \"all-linear\" (regular expressions are not supported)",
            )),
        };
    let base = get("base_model_name_or_path")
        .as_str()
        .filter(|s| !s.is_empty())
        .ok_or_else(|| {
            bad(
                "base_model_name_or_path",
                get("base_model_name_or_path"),
                "the base model folder",
            )
        })?;
    let base = PathBuf::from(base);
    let base = if base.is_absolute() {
        base
    } else {
        dir.join(base)
    };
    Ok((
        LoraSpec {
            rank,
            alpha,
            dropout,
            target_modules,
            rslora,
        },
        base,
    ))
}

#[cfg(test)]
mod tests;
