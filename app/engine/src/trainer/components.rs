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

/// (name, value, reason) entries of one completion's reward components.
pub(super) type Entries = Vec<(String, f32, String)>;

/// Reward components of one completion, plus their weighted sum.
pub(super) type Scored = (Entries, f32);

/// The run's plugin components.
#[derive(Default)]
pub(super) struct RunComponents {
    pub verifier: Option<(String, Arc<dyn RewardComponent>)>,
    pub rewards: Vec<Reward>,
    pub sampler: Option<SamplerHook>,
    pub algorithm: Option<(String, Arc<dyn TokenAlgorithm>)>,
    pub errors: Arc<ErrorSink>,
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
    /// non-finite score becomes that item's `Err` and is recorded.
    fn score(
        &self,
        name: &str,
        component: &dyn RewardComponent,
        items: &[(&Problem, &str)],
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
                    self.errors.record(name, e);
                }
                out.push(r);
            }
        }
        out
    }

    /// The run's verdicts (task verifier or plugin verifier) for each pair, with the plugin
    /// verifier's logged sub-scores.
    pub fn verify(&self, task: &dyn Task, items: &[(&Problem, &str)]) -> Vec<(Verdict, Entries)> {
        let Some((name, v)) = &self.verifier else {
            return items
                .iter()
                .map(|(p, c)| (task.verify(p, c), Vec::new()))
                .collect();
        };
        self.score(name, v.as_ref(), items)
            .into_iter()
            .map(|r| match r {
                Ok(s) => {
                    let parts = s
                        .parts
                        .iter()
                        .map(|p| (format!("{name}/{}", p.name), p.score, p.reason.clone()))
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

    /// The extra reward components of each pair: entries and weighted sum.
    pub fn extra(&self, items: &[(&Problem, &str)]) -> Vec<Scored> {
        let mut out: Vec<Scored> = vec![(Vec::new(), 0.0); items.len()];
        for r in &self.rewards {
            for (o, res) in out
                .iter_mut()
                .zip(self.score(&r.name, r.component.as_ref(), items))
            {
                match res {
                    Ok(s) => {
                        o.0.push((r.name.clone(), s.score, s.reason));
                        o.1 += r.weight * s.score;
                        for p in s.parts {
                            o.0.push((format!("{}/{}", r.name, p.name), p.score, p.reason));
                        }
                    }
                    Err(e) => o.0.push((r.name.clone(), 0.0, format!("error: {e}"))),
                }
            }
        }
        out
    }
}
