//! The plugin components a run uses (verifier, extra reward components, sampler, algorithm),
//! built from the config through [`Extensions`], and the scoring that turns their outcomes —
//! errors included — into verdicts and reward components.

use std::sync::Arc;

use crate::config::{ComponentRole, RunConfig};
use crate::error::{EngineError, Result};
use crate::extensions::{
    ComponentScore, ErrorSink, Extensions, Instance, RewardComponent, SamplerHook, ScoreItem,
    TokenAlgorithm,
};
use crate::tasks::{Problem, Task, Verdict};

/// Items per call to a reward component.
const SCORE_CHUNK: usize = 256;

/// A reward component of the run.
pub(super) struct Reward {
    pub name: String,
    pub weight: f32,
    pub component: Arc<dyn RewardComponent>,
}

/// One reward component's outcome for one completion.
#[derive(Clone, Debug, PartialEq)]
pub(super) struct RewardEntry {
    /// Component name (`verifier`, `NAME`, `NAME/part`, `overlong`).
    pub name: String,
    /// Its score.
    pub score: f32,
    /// Why (the verifier's reason, `error: ...` when the component failed).
    pub reason: String,
}

impl RewardEntry {
    /// An entry from its parts.
    pub fn new(name: impl Into<String>, score: f32, reason: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            score,
            reason: reason.into(),
        }
    }

    /// The `(name, score, reason)` tuple of [`SampleRecord::components`](crate::events::SampleRecord).
    pub fn into_tuple(self) -> (String, f32, String) {
        (self.name, self.score, self.reason)
    }
}

/// The reward-component entries of one completion.
pub(super) type Entries = Vec<RewardEntry>;

/// Reward components of one completion, plus their weighted sum.
pub(super) type Scored = (Entries, f32);

/// The run's plugin components.
#[derive(Default)]
pub(super) struct RunComponents {
    pub verifier: Option<(String, Arc<dyn RewardComponent>)>,
    pub rewards: Vec<Reward>,
    pub sampler: Option<SamplerHook>,
    pub algorithm: Option<(String, Arc<dyn TokenAlgorithm>)>,
    /// Errors during training steps (the sampler hook shares it); drained after each step.
    pub errors: Arc<ErrorSink>,
    /// Errors during evaluations, kept apart so they never count toward a training step.
    pub eval_errors: ErrorSink,
}

impl RunComponents {
    /// Instantiates every plugin component the config names.
    pub fn build(cfg: &RunConfig, ext: &Extensions) -> Result<Self> {
        let mut out = RunComponents::default();
        for r in cfg.plugin_components() {
            let (_, inst) = ext.build(&r.name_key, &r.params_key, r.kinds, r.name, r.values)?;
            let wrong = || EngineError::Internal(format!("{}: wrong component kind", r.name_key));
            match (r.role, inst) {
                (ComponentRole::Verifier, Instance::Reward(c)) => {
                    out.verifier = Some((r.name.to_string(), c));
                }
                (ComponentRole::Reward(weight), Instance::Reward(c)) => out.rewards.push(Reward {
                    name: r.name.to_string(),
                    weight: weight as f32,
                    component: c,
                }),
                (ComponentRole::Sampler, Instance::Sampler(s)) => {
                    out.sampler = Some(SamplerHook {
                        name: r.name.to_string(),
                        sampler: s,
                        errors: out.errors.clone(),
                    });
                }
                (ComponentRole::Algorithm, Instance::Algorithm(a)) => {
                    out.algorithm = Some((r.name.to_string(), a));
                }
                _ => return Err(wrong()),
            }
        }
        Ok(out)
    }

    /// Scores `(problem, completion)` pairs with one component, in chunks; an error or a
    /// non-finite score becomes that item's `Err` and is recorded in `errors`.
    fn score(
        name: &str,
        component: &dyn RewardComponent,
        items: &[(&Problem, &str)],
        errors: &ErrorSink,
    ) -> Vec<std::result::Result<ComponentScore, String>> {
        let mut out = Vec::with_capacity(items.len());
        for chunk in items.chunks(SCORE_CHUNK) {
            let batch: Vec<ScoreItem<'_>> = chunk
                .iter()
                .map(|(p, c)| ScoreItem {
                    prompt: &p.prompt,
                    completion: c,
                    answer: &p.answer,
                    meta: &p.meta,
                })
                .collect();
            let mut res = component.score_batch(&batch);
            if res.len() != chunk.len() {
                let e = format!(
                    "returned {} results for {} completions",
                    res.len(),
                    chunk.len()
                );
                res = vec![Err(e); chunk.len()];
            }
            for r in res {
                let r = r.and_then(|s| {
                    if s.score.is_finite() && s.parts.iter().all(|p| p.score.is_finite()) {
                        Ok(s)
                    } else {
                        Err(format!("returned a non-finite score ({})", s.score))
                    }
                });
                if let Err(e) = &r {
                    errors.record(name, e);
                }
                out.push(r);
            }
        }
        out
    }

    /// The run's verdicts (task verifier or plugin verifier) for each pair, with the plugin
    /// verifier's logged sub-scores; the plugin verifier's errors go to `errors`.
    pub fn verify(
        &self,
        task: &dyn Task,
        items: &[(&Problem, &str)],
        errors: &ErrorSink,
    ) -> Vec<(Verdict, Entries)> {
        let Some((name, v)) = &self.verifier else {
            return items
                .iter()
                .map(|(p, c)| (task.verify(p, c), Vec::new()))
                .collect();
        };
        Self::score(name, v.as_ref(), items, errors)
            .into_iter()
            .map(|r| match r {
                Ok(s) => {
                    let parts = s
                        .parts
                        .iter()
                        .map(|p| {
                            RewardEntry::new(
                                format!("{name}/{}", p.name),
                                p.score,
                                p.reason.clone(),
                            )
                        })
                        .collect();
                    let verdict = Verdict {
                        score: s.score,
                        passed: s.passed.unwrap_or(s.score >= 1.0),
                        reason: s.reason,
                    };
                    (verdict, parts)
                }
                Err(e) => (
                    Verdict {
                        score: 0.0,
                        passed: false,
                        reason: format!("error: {e}"),
                    },
                    Vec::new(),
                ),
            })
            .collect()
    }

    /// The extra reward components of each pair: entries and weighted sum (errors count toward
    /// the training step).
    pub fn extra(&self, items: &[(&Problem, &str)]) -> Vec<Scored> {
        let mut out: Vec<Scored> = vec![(Vec::new(), 0.0); items.len()];
        for r in &self.rewards {
            for (o, res) in out.iter_mut().zip(Self::score(
                &r.name,
                r.component.as_ref(),
                items,
                &self.errors,
            )) {
                match res {
                    Ok(s) => {
                        o.0.push(RewardEntry::new(r.name.clone(), s.score, s.reason));
                        o.1 += r.weight * s.score;
                        for p in s.parts {
                            o.0.push(RewardEntry::new(
                                format!("{}/{}", r.name, p.name),
                                p.score,
                                p.reason,
                            ));
                        }
                    }
                    Err(e) => {
                        o.0.push(RewardEntry::new(r.name.clone(), 0.0, format!("error: {e}")))
                    }
                }
            }
        }
        out
    }
}
