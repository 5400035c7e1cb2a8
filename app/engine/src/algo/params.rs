//! Typed, self-describing parameters of pluggable components (advantage estimators today,
//! plugins later). A spec carries the name, default, range and help text a form needs; values
//! from a config are checked against the specs with errors that name the key.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::error::{EngineError, Result};

/// The kind of a parameter.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ParamKind {
    /// A real number.
    Float,
    /// A whole number.
    Int,
    /// A switch (0 or 1 in the value map).
    Bool,
}

/// One parameter of a component.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ParamSpec {
    /// Key in the config.
    pub name: &'static str,
    /// Kind.
    pub kind: ParamKind,
    /// Default value.
    pub default: f64,
    /// Smallest allowed value.
    pub min: f64,
    /// Largest allowed value.
    pub max: f64,
    /// One-line help text.
    pub help: &'static str,
}

impl ParamSpec {
    /// A float parameter.
    pub const fn float(
        name: &'static str,
        default: f64,
        min: f64,
        max: f64,
        help: &'static str,
    ) -> Self {
        Self {
            name,
            kind: ParamKind::Float,
            default,
            min,
            max,
            help,
        }
    }

    /// An integer parameter.
    pub const fn int(
        name: &'static str,
        default: f64,
        min: f64,
        max: f64,
        help: &'static str,
    ) -> Self {
        Self {
            name,
            kind: ParamKind::Int,
            default,
            min,
            max,
            help,
        }
    }

    /// A boolean parameter.
    pub const fn bool(name: &'static str, default: bool, help: &'static str) -> Self {
        Self {
            name,
            kind: ParamKind::Bool,
            default: if default { 1.0 } else { 0.0 },
            min: 0.0,
            max: 1.0,
            help,
        }
    }
}

/// A parameter value as written in TOML.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum ParamValue {
    /// `true` / `false`.
    Bool(bool),
    /// An integer.
    Int(i64),
    /// A float.
    Float(f64),
}

/// Checked parameter values, every spec present (defaults filled in).
#[derive(Clone, Debug, PartialEq)]
pub struct Params(BTreeMap<&'static str, f64>);

impl Params {
    /// Validates `values` (from the config section `section`) against `specs`.
    pub fn resolve(
        section: &str,
        specs: &[ParamSpec],
        values: &BTreeMap<String, ParamValue>,
    ) -> Result<Self> {
        for key in values.keys() {
            if !specs.iter().any(|s| s.name == key) {
                let known: Vec<&str> = specs.iter().map(|s| s.name).collect();
                return Err(EngineError::config(
                    &format!("{section}.{key}"),
                    "?",
                    if known.is_empty() {
                        "no parameters are accepted here".to_string()
                    } else {
                        format!("unknown parameter; expected one of {}", known.join(", "))
                    },
                ));
            }
        }
        let mut out = BTreeMap::new();
        for s in specs {
            let key = format!("{section}.{}", s.name);
            let v = match (values.get(s.name), s.kind) {
                (None, _) => s.default,
                (Some(ParamValue::Bool(b)), ParamKind::Bool) => f64::from(u8::from(*b)),
                (Some(ParamValue::Int(i)), ParamKind::Int | ParamKind::Float) => *i as f64,
                (Some(ParamValue::Float(f)), ParamKind::Float) => *f,
                (Some(other), kind) => {
                    return Err(EngineError::config(
                        &key,
                        format!("{other:?}"),
                        format!("expected a {kind:?} value"),
                    ))
                }
            };
            if v.is_nan() || v < s.min || v > s.max {
                return Err(EngineError::config(
                    &key,
                    v,
                    format!("expected {}..={} ({})", s.min, s.max, s.help),
                ));
            }
            out.insert(s.name, v);
        }
        Ok(Self(out))
    }

    /// A float value (0 if the spec list had no such name: a programming error caught by tests).
    pub fn f(&self, name: &str) -> f64 {
        self.0.get(name).copied().unwrap_or(0.0)
    }

    /// A boolean value.
    pub fn b(&self, name: &str) -> bool {
        self.f(name) != 0.0
    }

    /// An integer value.
    pub fn u(&self, name: &str) -> usize {
        self.f(name).max(0.0) as usize
    }
}
