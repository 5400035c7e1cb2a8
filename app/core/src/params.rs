//! Typed, self-describing parameters of pluggable components (advantage estimators today,
//! plugins later). A spec carries the name, default, range and help text a form needs; values
//! from a config are checked against the specs with errors that name the key.

use std::borrow::Cow;
use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::error::{CoreError, Result};

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
    /// A string (plugin parameters: a pattern, a file path...).
    Text,
}

impl ParamKind {
    /// What a value of this kind looks like, for error messages.
    pub fn describe(self) -> &'static str {
        match self {
            ParamKind::Float => "a number",
            ParamKind::Int => "a whole number",
            ParamKind::Bool => "true or false",
            ParamKind::Text => "a string in quotes",
        }
    }
}

/// One parameter of a component.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ParamSpec {
    /// Key in the config.
    pub name: Cow<'static, str>,
    /// Kind.
    pub kind: ParamKind,
    /// Default value.
    pub default: f64,
    /// Smallest allowed value.
    pub min: f64,
    /// Largest allowed value.
    pub max: f64,
    /// One-line help text.
    pub help: Cow<'static, str>,
    /// Default of a text parameter.
    #[serde(default, skip_serializing_if = "str::is_empty")]
    pub default_text: Cow<'static, str>,
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
            name: Cow::Borrowed(name),
            kind: ParamKind::Float,
            default,
            min,
            max,
            help: Cow::Borrowed(help),
            default_text: Cow::Borrowed(""),
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
            name: Cow::Borrowed(name),
            kind: ParamKind::Int,
            default,
            min,
            max,
            help: Cow::Borrowed(help),
            default_text: Cow::Borrowed(""),
        }
    }

    /// A boolean parameter.
    pub const fn bool(name: &'static str, default: bool, help: &'static str) -> Self {
        Self {
            name: Cow::Borrowed(name),
            kind: ParamKind::Bool,
            default: if default { 1.0 } else { 0.0 },
            min: 0.0,
            max: 1.0,
            help: Cow::Borrowed(help),
            default_text: Cow::Borrowed(""),
        }
    }

    /// A text parameter.
    pub fn text(
        name: impl Into<String>,
        default: impl Into<String>,
        help: impl Into<String>,
    ) -> Self {
        Self {
            name: Cow::Owned(name.into()),
            kind: ParamKind::Text,
            default: 0.0,
            min: 0.0,
            max: 0.0,
            help: Cow::Owned(help.into()),
            default_text: Cow::Owned(default.into()),
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
    /// A string.
    Text(String),
}

impl std::fmt::Display for ParamValue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ParamValue::Bool(b) => write!(f, "{b}"),
            ParamValue::Int(i) => write!(f, "{i}"),
            ParamValue::Float(x) => write!(f, "{x}"),
            ParamValue::Text(t) => write!(f, "{t:?}"),
        }
    }
}

/// Checked parameter values, every spec present (defaults filled in).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Params {
    numbers: BTreeMap<String, f64>,
    texts: BTreeMap<String, String>,
}

impl Params {
    /// Validates `values` (from the config section `section`) against `specs`.
    pub fn resolve(
        section: &str,
        specs: &[ParamSpec],
        values: &BTreeMap<String, ParamValue>,
    ) -> Result<Self> {
        for key in values.keys() {
            if !specs.iter().any(|s| s.name == key.as_str()) {
                let known: Vec<&str> = specs.iter().map(|s| s.name.as_ref()).collect();
                return Err(CoreError::config(
                    &format!("{section}.{key}"),
                    &values[key],
                    if known.is_empty() {
                        "no parameters are accepted here".to_string()
                    } else {
                        format!("unknown parameter; the parameters are {}", known.join(", "))
                    },
                ));
            }
        }
        let mut out = Params::default();
        for s in specs {
            let key = format!("{section}.{}", s.name);
            if s.kind == ParamKind::Text {
                let text = match values.get(s.name.as_ref()) {
                    None => s.default_text.to_string(),
                    Some(ParamValue::Text(t)) => t.clone(),
                    Some(other) => {
                        return Err(CoreError::config(
                            &key,
                            other,
                            format!("expected a string in quotes ({})", s.help),
                        ))
                    }
                };
                out.texts.insert(s.name.to_string(), text);
                continue;
            }
            let v = match (values.get(s.name.as_ref()), s.kind) {
                (None, _) => s.default,
                (Some(ParamValue::Bool(b)), ParamKind::Bool) => f64::from(u8::from(*b)),
                (Some(ParamValue::Int(i)), ParamKind::Int | ParamKind::Float) => *i as f64,
                (Some(ParamValue::Float(f)), ParamKind::Float) => *f,
                (Some(other), kind) => {
                    return Err(CoreError::config(
                        &key,
                        other,
                        format!("expected {} ({})", kind.describe(), s.help),
                    ))
                }
            };
            if v.is_nan() || v < s.min || v > s.max {
                return Err(CoreError::config(
                    &key,
                    v,
                    format!("expected {}..={} ({})", s.min, s.max, s.help),
                ));
            }
            out.numbers.insert(s.name.to_string(), v);
        }
        Ok(out)
    }

    /// A float value (0 if the spec list had no such name: a programming error caught by tests).
    pub fn f(&self, name: &str) -> f64 {
        self.numbers.get(name).copied().unwrap_or(0.0)
    }

    /// A text value ("" if absent).
    pub fn text(&self, name: &str) -> &str {
        self.texts.get(name).map(String::as_str).unwrap_or_default()
    }

    /// Every value as a JSON object (what plugins receive): numbers as numbers, texts as strings.
    pub fn to_json(&self) -> String {
        let mut m = serde_json::Map::new();
        for (k, v) in &self.numbers {
            m.insert(k.clone(), serde_json::json!(v));
        }
        for (k, v) in &self.texts {
            m.insert(k.clone(), serde_json::Value::String(v.clone()));
        }
        serde_json::Value::Object(m).to_string()
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
