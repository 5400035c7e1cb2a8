//! Extension points: reward components (verifiers and rubrics), token samplers and token-level
//! algorithms supplied from outside the engine. The plugin host adapts plugin libraries to these
//! plain traits, so the engine never sees an ABI; a run config names a component exactly like a
//! built-in and its parameters are checked against the specs it declares.
//!
//! A component that fails (returns an error, a non-finite number, or misses its deadline) never
//! stops the run: the affected samples score 0 with the error as their reason, the step's
//! `plugin_errors` metric counts it and a log line reports it.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};

use crate::error::{CoreError, Result};
use crate::params::{ParamSpec, ParamValue, Params};

/// What a component does.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ComponentKind {
    /// Scores a completion: score, pass/fail, reason.
    Verifier,
    /// Weighted criteria per completion.
    Rubric,
    /// Transforms next-token logits.
    Sampler,
    /// Per-token advantages and loss weights.
    Algorithm,
}

impl fmt::Display for ComponentKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ComponentKind::Verifier => "verifier",
            ComponentKind::Rubric => "rubric",
            ComponentKind::Sampler => "sampler",
            ComponentKind::Algorithm => "algorithm",
        })
    }
}

/// A rubric criterion.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CriterionInfo {
    /// Name.
    pub name: String,
    /// Weight (0 = logged only).
    pub weight: f64,
    /// What it checks.
    pub description: String,
}

/// A component's declaration: what forms and config validation need.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ComponentInfo {
    /// Kind.
    pub kind: ComponentKind,
    /// Name used in run configs.
    pub name: String,
    /// One line.
    pub summary: String,
    /// Parameters.
    pub params: Vec<ParamSpec>,
    /// Rubric criteria (rubrics only).
    pub criteria: Vec<CriterionInfo>,
    /// Where it comes from, e.g. `plugin sql-tools 0.1.0 (/path/libsql_tools.so)`.
    pub origin: String,
}

/// One completion to score.
#[derive(Clone, Copy, Debug)]
pub struct ScoreItem<'a> {
    /// Prompt text.
    pub prompt: &'a str,
    /// Completion text.
    pub completion: &'a str,
    /// Reference answer.
    pub answer: &'a str,
    /// Task metadata.
    pub meta: &'a serde_json::Value,
}

/// A named part of a score (verifier sub-score or rubric criterion).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ScorePart {
    /// Name.
    pub name: String,
    /// Value.
    pub score: f32,
    /// Weight in the component's score (0 = logged only).
    pub weight: f32,
    /// Why.
    pub reason: String,
}

/// A component's score of one completion.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ComponentScore {
    /// The score (finite).
    pub score: f32,
    /// Pass/fail when the component has an opinion.
    pub passed: Option<bool>,
    /// Why.
    pub reason: String,
    /// Sub-scores / criteria.
    pub parts: Vec<ScorePart>,
}

/// A verifier or rubric.
pub trait RewardComponent: Send + Sync {
    /// One result per item; an `Err` is that item's error.
    fn score_batch(
        &self,
        items: &[ScoreItem<'_>],
    ) -> Vec<std::result::Result<ComponentScore, String>>;
}

/// A sampler: transforms one row's next-token logits in place.
pub trait TokenSampler: Send + Sync {
    /// `position` = tokens generated so far in this row, `generated` = those tokens.
    fn transform(
        &self,
        logits: &mut [f32],
        position: usize,
        generated: &[u32],
    ) -> std::result::Result<(), String>;
}

/// The batch table given to a token-level algorithm (token arrays flattened row by row,
/// `token_offsets` has rows + 1 entries).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct AlgoBatch {
    /// Completions per prompt.
    pub group_size: usize,
    /// Group of each row.
    pub group_ids: Vec<u32>,
    /// Total reward per row.
    pub rewards: Vec<f64>,
    /// Verifier pass per row.
    pub passed: Vec<bool>,
    /// Reward component names.
    pub component_names: Vec<String>,
    /// `component_values[c * rows + r]`.
    pub component_values: Vec<f64>,
    /// Row boundaries in the token arrays.
    pub token_offsets: Vec<u32>,
    /// Sampling-policy log-probs.
    pub old_logprobs: Vec<f32>,
    /// Reference log-probs (empty without a reference model).
    pub ref_logprobs: Vec<f32>,
    /// Entropies.
    pub entropies: Vec<f32>,
    /// 1 = in the loss.
    pub mask: Vec<u8>,
}

/// What a token-level algorithm returns (same layout as the batch's token arrays).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct AlgoOutput {
    /// Per-token advantages.
    pub advantages: Vec<f32>,
    /// Per-token loss weights (empty = 1).
    pub weights: Vec<f32>,
}

/// A token-level algorithm.
pub trait TokenAlgorithm: Send + Sync {
    /// Advantages and weights for the batch.
    fn compute(&self, batch: &AlgoBatch) -> std::result::Result<AlgoOutput, String>;
}

/// An instantiated component.
#[derive(Clone)]
pub enum Instance {
    /// Verifier or rubric.
    Reward(Arc<dyn RewardComponent>),
    /// Sampler.
    Sampler(Arc<dyn TokenSampler>),
    /// Algorithm.
    Algorithm(Arc<dyn TokenAlgorithm>),
}

/// Something that can build components by name (the plugin host).
pub trait ComponentFactory: Send + Sync {
    /// Every component it offers.
    fn components(&self) -> Vec<ComponentInfo>;
    /// Builds one from checked parameters.
    fn instantiate(
        &self,
        kind: ComponentKind,
        name: &str,
        params: &Params,
    ) -> std::result::Result<Instance, String>;
}

/// The components available to a run, beside the built-ins.
#[derive(Clone, Default)]
pub struct Extensions {
    factories: Vec<Arc<dyn ComponentFactory>>,
}

impl fmt::Debug for Extensions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<String> = self.components().into_iter().map(|c| c.name).collect();
        f.debug_struct("Extensions")
            .field("components", &names)
            .finish()
    }
}

impl Extensions {
    /// No extensions.
    pub fn none() -> Self {
        Self::default()
    }

    /// Adds a factory.
    pub fn with(mut self, factory: Arc<dyn ComponentFactory>) -> Self {
        self.factories.push(factory);
        self
    }

    /// Every component offered.
    pub fn components(&self) -> Vec<ComponentInfo> {
        self.factories.iter().flat_map(|f| f.components()).collect()
    }

    /// The declaration of `name` of `kind` (rubric and verifier are both reward components:
    /// `kinds` lists the kinds accepted at the config key).
    pub fn find(&self, kinds: &[ComponentKind], name: &str) -> Option<ComponentInfo> {
        self.components()
            .into_iter()
            .find(|c| c.name == name && kinds.contains(&c.kind))
    }

    /// The declaration of `name`, or an error naming the config key `name_key` and listing
    /// what is loaded.
    pub fn require(
        &self,
        name_key: &str,
        kinds: &[ComponentKind],
        name: &str,
    ) -> Result<ComponentInfo> {
        self.find(kinds, name).ok_or_else(|| {
            let offered: Vec<String> = self
                .components()
                .into_iter()
                .filter(|c| kinds.contains(&c.kind))
                .map(|c| c.name)
                .collect();
            let kinds: Vec<String> = kinds.iter().map(ToString::to_string).collect();
            CoreError::config(
                name_key,
                format!("{name:?}"),
                if offered.is_empty() {
                    format!(
                        "a built-in or a loaded plugin {} (no plugin {} is loaded: add a plugin \
                         folder with --plugins DIR or `rlvr-studio plugins install LIB`)",
                        kinds.join(" or "),
                        kinds.join(" or ")
                    )
                } else {
                    format!(
                        "one of the loaded {}s: {}",
                        kinds.join("/"),
                        offered.join(", ")
                    )
                },
            )
        })
    }

    /// Checks `values` (config key `params_key`) against the component's specs.
    pub fn check_params(
        &self,
        name_key: &str,
        params_key: &str,
        kinds: &[ComponentKind],
        name: &str,
        values: &BTreeMap<String, ParamValue>,
    ) -> Result<(ComponentInfo, Params)> {
        let info = self.require(name_key, kinds, name)?;
        let params = Params::resolve(params_key, &info.params, values)?;
        Ok((info, params))
    }

    /// Checks the parameters and builds the component.
    pub fn build(
        &self,
        name_key: &str,
        params_key: &str,
        kinds: &[ComponentKind],
        name: &str,
        values: &BTreeMap<String, ParamValue>,
    ) -> Result<(ComponentInfo, Instance)> {
        let (info, params) = self.check_params(name_key, params_key, kinds, name, values)?;
        let factory = self
            .factories
            .iter()
            .find(|f| {
                f.components()
                    .iter()
                    .any(|c| c.name == name && c.kind == info.kind)
            })
            .ok_or_else(|| CoreError::Internal(format!("no factory for {name}")))?;
        let inst = factory
            .instantiate(info.kind, name, &params)
            .map_err(|e| CoreError::Plugin(format!("{name_key} = {name:?}: {e}")))?;
        Ok((info, inst))
    }
}

/// Errors of components during a step, collected from any thread; the trainer drains them
/// after each step into the `plugin_errors` metric and log lines.
#[derive(Debug, Default)]
pub struct ErrorSink {
    inner: Mutex<BTreeMap<String, (usize, String)>>,
}

impl ErrorSink {
    /// Records one error of `component`.
    pub fn record(&self, component: &str, error: &str) {
        if let Ok(mut m) = self.inner.lock() {
            let e = m
                .entry(component.to_string())
                .or_insert_with(|| (0, error.to_string()));
            e.0 += 1;
        }
    }

    /// Takes the counts and first messages recorded since the last call.
    pub fn drain(&self) -> BTreeMap<String, (usize, String)> {
        self.inner
            .lock()
            .map(|mut m| std::mem::take(&mut *m))
            .unwrap_or_default()
    }
}

/// A sampler plus where its errors go; a row whose transform fails keeps its untransformed
/// logits.
#[derive(Clone)]
pub struct SamplerHook {
    /// Component name.
    pub name: String,
    /// The sampler.
    pub sampler: Arc<dyn TokenSampler>,
    /// Error sink.
    pub errors: Arc<ErrorSink>,
}

impl fmt::Debug for SamplerHook {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SamplerHook")
            .field("name", &self.name)
            .finish()
    }
}

impl SamplerHook {
    /// Applies the sampler to `row`; on an error or a non-finite result the row is restored.
    pub fn apply(
        &self,
        row: &mut [f32],
        scratch: &mut Vec<f32>,
        position: usize,
        generated: &[u32],
    ) {
        scratch.clear();
        scratch.extend_from_slice(row);
        let res = self.sampler.transform(row, position, generated);
        let err = match res {
            Err(e) => Some(e),
            Ok(()) if row.iter().any(|x| x.is_nan() || *x == f32::INFINITY) => {
                Some("returned NaN or +inf logits".to_string())
            }
            Ok(()) if row.iter().all(|x| *x == f32::NEG_INFINITY) => {
                Some("masked every token".to_string())
            }
            Ok(()) => None,
        };
        if let Some(e) = err {
            row.copy_from_slice(scratch);
            self.errors.record(&self.name, &e);
        }
    }
}
