//! Rotary position embeddings as `config.json` defines them, in both spellings `transformers`
//! writes: the top-level `rope_theta` with an optional `rope_scaling` dict (transformers 4.x), or
//! one `rope_parameters` dict holding `rope_theta` and the scaling (transformers 5.x,
//! `RotaryEmbeddingConfigMixin`). The frequencies are computed in f32 in the order
//! `transformers/modeling_rope_utils.py` computes them, so the angles are the same floats.
//!
//! Supported `rope_type`s: `default`, `linear` (position interpolation: every frequency divided
//! by `factor`) and `llama3` (Llama 3.1/3.2: low frequencies divided by `factor`, high ones
//! kept, a smooth blend between). Any other type (`dynamic`, `yarn`, `longrope`, …) or any key
//! this module does not apply (`attention_factor` ≠ 1, `partial_rotary_factor`, `mrope_section`,
//! …) is refused with the key named, never ignored.

use serde_json::{Map, Value};

/// How the base frequencies are rescaled.
#[derive(Clone, Debug, PartialEq)]
pub enum RopeScaling {
    /// `rope_type = "default"` (or no scaling at all).
    None,
    /// `rope_type = "linear"`: `inv_freq / factor`.
    Linear {
        /// The interpolation factor (> 0).
        factor: f64,
    },
    /// `rope_type = "llama3"` (transformers `_compute_llama3_parameters`).
    Llama3 {
        /// Divides the low frequencies.
        factor: f64,
        /// Wavelengths above `original / low_freq_factor` are low frequencies.
        low_freq_factor: f64,
        /// Wavelengths below `original / high_freq_factor` are kept.
        high_freq_factor: f64,
        /// The context length of pre-training.
        original_max_position_embeddings: f64,
    },
}

/// The RoPE of a model: base and scaling.
#[derive(Clone, Debug, PartialEq)]
pub struct Rope {
    /// The base frequency (`rope_theta`).
    pub theta: f64,
    /// The scaling of the frequencies.
    pub scaling: RopeScaling,
}

impl Rope {
    /// One line for people: the type, the base and the scaling's numbers.
    pub fn describe(&self) -> String {
        match &self.scaling {
            RopeScaling::None => format!("default, theta {}", self.theta),
            RopeScaling::Linear { factor } => format!("linear, theta {}, factor {factor}", self.theta),
            RopeScaling::Llama3 {
                factor,
                low_freq_factor,
                high_freq_factor,
                original_max_position_embeddings,
            } => format!(
                "llama3, theta {}, factor {factor}, low/high freq factors {low_freq_factor}/{high_freq_factor}, original context {original_max_position_embeddings}",
                self.theta
            ),
        }
    }
}

/// Keys a rope dict may hold for each type (besides `rope_type`/`type` and `rope_theta`).
fn allowed_keys(kind: &str) -> &'static [&'static str] {
    match kind {
        "linear" => &["factor"],
        "llama3" => &[
            "factor",
            "low_freq_factor",
            "high_freq_factor",
            "original_max_position_embeddings",
        ],
        _ => &[],
    }
}

/// A positive finite number under `key` of the dict named `dict`.
fn number(map: &Map<String, Value>, dict: &str, key: &str) -> Result<f64, String> {
    match map.get(key) {
        Some(v) => match v.as_f64() {
            Some(x) if x.is_finite() && x > 0.0 => Ok(x),
            _ => Err(format!(
                "{dict}.{key} = {v} is invalid: expected a positive number"
            )),
        },
        None => Err(format!(
            "{dict} has rope_type \"{}\" but no {key}: expected a positive number",
            map.get("rope_type")
                .or_else(|| map.get("type"))
                .and_then(Value::as_str)
                .unwrap_or("?")
        )),
    }
}

impl Rope {
    /// Resolves the RoPE from the top-level `rope_theta` (`None`: not given) and the `extra` keys
    /// of `config.json` (`rope_scaling`, `rope_parameters`, `partial_rotary_factor`). Errors
    /// name the key and the value.
    pub fn resolve(rope_theta: Option<f64>, extra: &Map<String, Value>) -> Result<Rope, String> {
        if let Some(v) = extra.get("partial_rotary_factor") {
            if v.as_f64() != Some(1.0) {
                return Err(format!(
                    "partial_rotary_factor = {v} is not supported: this engine rotates the whole \
                     head (expected 1.0 or no key)"
                ));
            }
        }
        let dict = |key: &str| -> Result<Option<&Map<String, Value>>, String> {
            match extra.get(key) {
                None | Some(Value::Null) => Ok(None),
                Some(Value::Object(m)) => Ok(Some(m)),
                Some(other) => Err(format!(
                    "{key} = {other} is invalid: expected a dict with rope_type (or null)"
                )),
            }
        };
        let (params, scaling) = (dict("rope_parameters")?, dict("rope_scaling")?);
        let (name, map) = match (params, scaling) {
            (Some(p), Some(s)) => {
                let without_theta = |m: &Map<String, Value>| {
                    let mut m = m.clone();
                    m.remove("rope_theta");
                    if let Some(t) = m.remove("type") {
                        m.entry("rope_type").or_insert(t);
                    }
                    m
                };
                if without_theta(p) != without_theta(s) {
                    return Err(format!(
                        "rope_parameters = {} and rope_scaling = {} disagree: keep one of them",
                        Value::Object(p.clone()),
                        Value::Object(s.clone())
                    ));
                }
                ("rope_parameters", Some(p))
            }
            (Some(p), None) => ("rope_parameters", Some(p)),
            (None, Some(s)) => ("rope_scaling", Some(s)),
            (None, None) => ("rope_scaling", None),
        };
        let inner_theta = match map.and_then(|m| m.get("rope_theta")) {
            None => None,
            Some(v) => Some(
                v.as_f64()
                    .filter(|x| x.is_finite() && *x > 0.0)
                    .ok_or_else(|| {
                        format!("{name}.rope_theta = {v} is invalid: expected a positive number")
                    })?,
            ),
        };
        let theta = match (rope_theta, inner_theta) {
            (Some(a), Some(b)) if a != b => {
                return Err(format!(
                    "rope_theta = {a} and {name}.rope_theta = {b} disagree: keep one of them"
                ))
            }
            (Some(a), _) | (None, Some(a)) => a,
            (None, None) => 10_000.0,
        };
        if theta.is_nan() || theta <= 0.0 {
            return Err(format!(
                "rope_theta = {theta} is invalid: expected a positive number"
            ));
        }
        let Some(map) = map else {
            return Ok(Rope {
                theta,
                scaling: RopeScaling::None,
            });
        };
        let kind = match map.get("rope_type").or_else(|| map.get("type")) {
            Some(Value::String(s)) => s.as_str(),
            Some(other) => {
                return Err(format!(
                    "{name}.rope_type = {other} is invalid: expected a string"
                ))
            }
            None => {
                return Err(format!(
                    "{name} has no rope_type: expected \"default\", \"linear\" or \"llama3\""
                ))
            }
        };
        if !matches!(kind, "default" | "linear" | "llama3") {
            return Err(format!(
                "{name}.rope_type = \"{kind}\" is not supported: expected \"default\", \
                 \"linear\" or \"llama3\" (dynamic, yarn and longrope scaling change the \
                 positions' frequencies in ways this engine does not reproduce)"
            ));
        }
        for (key, value) in map {
            let known = matches!(key.as_str(), "rope_type" | "type" | "rope_theta")
                || allowed_keys(kind).contains(&key.as_str());
            let neutral = key == "attention_factor" && value.as_f64() == Some(1.0);
            if !known && !neutral {
                return Err(format!(
                    "{name}.{key} = {value} is not supported with rope_type \"{kind}\": \
                     this engine would ignore it and compute something else"
                ));
            }
        }
        let scaling = match kind {
            "linear" => RopeScaling::Linear {
                factor: number(map, name, "factor")?,
            },
            "llama3" => {
                let s = RopeScaling::Llama3 {
                    factor: number(map, name, "factor")?,
                    low_freq_factor: number(map, name, "low_freq_factor")?,
                    high_freq_factor: number(map, name, "high_freq_factor")?,
                    original_max_position_embeddings: number(
                        map,
                        name,
                        "original_max_position_embeddings",
                    )?,
                };
                if let RopeScaling::Llama3 {
                    low_freq_factor: lo,
                    high_freq_factor: hi,
                    ..
                } = s
                {
                    if hi <= lo {
                        return Err(format!(
                            "{name}.high_freq_factor = {hi} must be above low_freq_factor = {lo}"
                        ));
                    }
                }
                s
            }
            _ => RopeScaling::None,
        };
        Ok(Rope { theta, scaling })
    }

    /// The `head_dim / 2` inverse frequencies, in f32 as transformers computes them:
    /// `1 / theta^(2i / d)` with the exponent in f32, then the scaling.
    pub fn inv_freq(&self, head_dim: usize) -> Vec<f32> {
        let base = self.theta as f32;
        let d = head_dim as f32;
        let mut inv: Vec<f32> = (0..head_dim / 2)
            .map(|k| 1.0 / base.powf((2 * k) as f32 / d))
            .collect();
        match self.scaling {
            RopeScaling::None => {}
            RopeScaling::Linear { factor } => {
                let f = factor as f32;
                inv.iter_mut().for_each(|x| *x /= f);
            }
            RopeScaling::Llama3 {
                factor,
                low_freq_factor,
                high_freq_factor,
                original_max_position_embeddings: old,
            } => {
                let (f, lo, hi, old) = (
                    factor as f32,
                    low_freq_factor as f32,
                    high_freq_factor as f32,
                    old as f32,
                );
                let (low_wl, high_wl) = (old / lo, old / hi);
                for x in &mut inv {
                    let wl = 2.0 * std::f32::consts::PI / *x;
                    if wl < high_wl {
                        continue;
                    }
                    if wl > low_wl {
                        *x /= f;
                    } else {
                        let s = (old / wl - lo) / (hi - lo);
                        *x = (1.0 - s) * *x / f + s * *x;
                    }
                }
            }
        }
        inv
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use serde_json::json;

    fn extra(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn both_spellings_give_the_same_rope() {
        let old = Rope::resolve(
            Some(5e5),
            &extra(json!({"rope_scaling": {"rope_type": "llama3",
            "factor": 32.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
            "original_max_position_embeddings": 8192}})),
        )
        .unwrap();
        let new = Rope::resolve(
            None,
            &extra(json!({"rope_parameters": {"rope_type": "llama3",
            "rope_theta": 5e5, "factor": 32.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
            "original_max_position_embeddings": 8192}})),
        )
        .unwrap();
        assert_eq!(old, new);
        assert_eq!(old.theta, 5e5);
        let plain = Rope::resolve(
            None,
            &extra(json!({"rope_parameters": {"rope_type": "default",
            "rope_theta": 1e6}})),
        )
        .unwrap();
        assert_eq!(plain.theta, 1e6);
        assert_eq!(plain.scaling, RopeScaling::None);
        assert_eq!(Rope::resolve(None, &Map::new()).unwrap().theta, 10_000.0);
    }

    #[test]
    fn llama3_scaling_divides_low_frequencies_only() {
        let r = Rope::resolve(
            Some(5e5),
            &extra(json!({"rope_scaling": {"rope_type": "llama3",
            "factor": 32.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
            "original_max_position_embeddings": 8192}})),
        )
        .unwrap();
        let plain = Rope {
            theta: 5e5,
            scaling: RopeScaling::None,
        };
        let (a, b) = (r.inv_freq(64), plain.inv_freq(64));
        assert_eq!(a[0], b[0], "the highest frequency is kept");
        assert_eq!(a[31], b[31] / 32.0, "the lowest is divided by the factor");
        assert!(a.iter().zip(&b).all(|(x, y)| x <= y));
    }

    #[test]
    fn unsupported_rope_is_refused_with_the_key() {
        for (v, want) in [
            (
                json!({"rope_scaling": {"rope_type": "yarn", "factor": 4.0}}),
                "rope_scaling.rope_type = \"yarn\"",
            ),
            (
                json!({"rope_scaling": {"type": "dynamic", "factor": 2.0}}),
                "\"dynamic\" is not supported",
            ),
            (
                json!({"rope_scaling": {"rope_type": "linear"}}),
                "no factor",
            ),
            (
                json!({"rope_parameters": {"rope_type": "default", "rope_theta": 1e6,
                    "mrope_section": [1, 2]}}),
                "rope_parameters.mrope_section",
            ),
            (
                json!({"partial_rotary_factor": 0.5}),
                "partial_rotary_factor",
            ),
            (json!({"rope_scaling": "big"}), "rope_scaling = \"big\""),
        ] {
            let err = Rope::resolve(None, &extra(v)).unwrap_err();
            assert!(err.contains(want), "{err}");
        }
        let err = Rope::resolve(
            Some(1e4),
            &extra(json!({"rope_parameters": {"rope_type": "default", "rope_theta": 1e6}})),
        )
        .unwrap_err();
        assert!(err.contains("disagree"), "{err}");
    }
}
