//! The author-facing SDK: one plain Rust trait per plugin kind, a [`Plugin`] description built
//! with [`Spec`]s, and the glue that turns them into the stable ABI objects with every entry
//! point guarded by `catch_unwind`.

use std::collections::BTreeMap;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::OnceLock;

use abi_stable::sabi_trait::TD_Opaque;
use abi_stable::std_types::{RResult, RSlice, RSliceMut, RStr, RString, RVec};

use crate::ffi;
pub use crate::ffi::{ComponentKind, ParamKind};

// ---------------------------------------------------------------------------------------------
// Data an author sees.

/// One completion to score.
#[derive(Clone, Debug)]
pub struct Sample<'a> {
    /// The prompt the model saw.
    pub prompt: &'a str,
    /// What the model wrote after the prompt (cut at end-of-sequence, not trimmed).
    pub completion: &'a str,
    /// The reference answer of the problem.
    pub answer: &'a str,
    /// Task metadata (`Value::Null` when the task has none).
    pub meta: &'a serde_json::Value,
}

/// A verifier's judgement of one completion.
#[derive(Clone, Debug, PartialEq)]
pub struct Verdict {
    /// Reward, usually in `[0, 1]`. Must be finite.
    pub score: f64,
    /// Pass/fail; `None` lets the host decide (`score >= 1`).
    pub passed: Option<bool>,
    /// Why, for a human: "expected 46, got 47".
    pub reason: String,
    /// Named sub-scores, logged beside the score (not added to the reward).
    pub sub_scores: Vec<(String, f64)>,
}

impl Verdict {
    /// A pass with score 1.
    pub fn pass(reason: impl Into<String>) -> Self {
        Self {
            score: 1.0,
            passed: Some(true),
            reason: reason.into(),
            sub_scores: Vec::new(),
        }
    }

    /// A fail with score 0.
    pub fn fail(reason: impl Into<String>) -> Self {
        Self {
            score: 0.0,
            passed: Some(false),
            reason: reason.into(),
            sub_scores: Vec::new(),
        }
    }

    /// Partial credit; passes only at `score >= 1`.
    pub fn partial(score: f64, reason: impl Into<String>) -> Self {
        Self {
            score,
            passed: None,
            reason: reason.into(),
            sub_scores: Vec::new(),
        }
    }

    /// Adds a named sub-score.
    pub fn with_sub_score(mut self, name: impl Into<String>, value: f64) -> Self {
        self.sub_scores.push((name.into(), value));
        self
    }
}

/// A rubric criterion: name, weight (0 = logged only) and what it checks.
#[derive(Clone, Debug, PartialEq)]
pub struct Criterion {
    /// Short name, shown as `rubric/criterion` in charts.
    pub name: String,
    /// Weight in the rubric's score; 0 makes it a logged metric only.
    pub weight: f64,
    /// What it checks.
    pub description: String,
}

impl Criterion {
    /// A criterion.
    pub fn new(name: impl Into<String>, weight: f64, description: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            weight,
            description: description.into(),
        }
    }
}

/// The score of one criterion for one completion.
#[derive(Clone, Debug, PartialEq)]
pub struct CriterionScore {
    /// Usually in `[0, 1]`.
    pub score: f64,
    /// Why.
    pub reason: String,
}

impl CriterionScore {
    /// A score with its reason.
    pub fn new(score: f64, reason: impl Into<String>) -> Self {
        Self {
            score,
            reason: reason.into(),
        }
    }
}

/// One row of an [`AlgoBatch`]: a completion's per-token arrays.
#[derive(Clone, Copy, Debug)]
pub struct TokenRow<'a> {
    /// Log-probability of each sampled token under the sampling policy.
    pub old_logprobs: &'a [f32],
    /// Under the reference policy (empty without a reference model).
    pub ref_logprobs: &'a [f32],
    /// Entropy of the policy at each position.
    pub entropies: &'a [f32],
    /// 1 where the token takes part in the loss.
    pub mask: &'a [u8],
}

/// The batch table an [`Algorithm`] sees.
pub struct AlgoBatch<'a> {
    raw: &'a ffi::AlgoBatch,
}

impl<'a> AlgoBatch<'a> {
    /// Completions per prompt (G).
    pub fn group_size(&self) -> usize {
        self.raw.group_size as usize
    }

    /// Number of rows (completions).
    pub fn rows(&self) -> usize {
        self.raw.rewards.len()
    }

    /// Total reward per row.
    pub fn rewards(&self) -> &'a [f64] {
        self.raw.rewards.as_slice()
    }

    /// Group index of each row.
    pub fn group_ids(&self) -> &'a [u32] {
        self.raw.group_ids.as_slice()
    }

    /// Verifier pass/fail per row.
    pub fn passed(&self, row: usize) -> bool {
        self.raw.passed.get(row).is_some_and(|&p| p != 0)
    }

    /// Names of the reward components.
    pub fn component_names(&self) -> Vec<&'a str> {
        self.raw
            .component_names
            .iter()
            .map(|s| s.as_str())
            .collect()
    }

    /// One reward component's value per row.
    pub fn component(&self, name: &str) -> Option<&'a [f64]> {
        let c = self
            .raw
            .component_names
            .iter()
            .position(|n| n.as_str() == name)?;
        let r = self.rows();
        self.raw.component_values.as_slice().get(c * r..(c + 1) * r)
    }

    /// Total tokens over all rows.
    pub fn tokens(&self) -> usize {
        self.raw.old_logprobs.len()
    }

    /// The per-token arrays of one row.
    pub fn row(&self, row: usize) -> TokenRow<'a> {
        let off = self.raw.token_offsets.as_slice();
        let (a, b) = match (off.get(row), row.checked_add(1).and_then(|r| off.get(r))) {
            (Some(&a), Some(&b)) if a <= b => (a as usize, b as usize),
            _ => (0, 0),
        };
        let cut = |v: &'a RVec<f32>| v.as_slice().get(a..b).unwrap_or(&[]);
        TokenRow {
            old_logprobs: cut(&self.raw.old_logprobs),
            ref_logprobs: cut(&self.raw.ref_logprobs),
            entropies: cut(&self.raw.entropies),
            mask: self.raw.mask.as_slice().get(a..b).unwrap_or(&[]),
        }
    }
}

/// An algorithm's result: one advantage and one loss weight per token, rows concatenated in
/// batch order.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct AlgoOutput {
    /// Per-token advantages.
    pub advantages: Vec<f32>,
    /// Per-token loss weights; empty = 1 everywhere.
    pub weights: Vec<f32>,
}

impl AlgoOutput {
    /// Gives every token of row `r` the advantage `per_row[r]`, weights 1.
    pub fn broadcast(batch: &AlgoBatch<'_>, per_row: &[f32]) -> Self {
        let mut advantages = Vec::with_capacity(batch.tokens());
        for (r, &a) in per_row.iter().enumerate().take(batch.rows()) {
            let n = batch.row(r).old_logprobs.len();
            advantages.extend(std::iter::repeat_n(a, n));
        }
        Self {
            advantages,
            weights: Vec::new(),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The four traits.

/// Scores completions against a reference: the reward source of RLVR.
pub trait Verifier: Send + Sync + 'static {
    /// Judge one completion. An `Err` marks the sample as errored (score 0) and is counted.
    fn verify(&self, sample: &Sample<'_>) -> Result<Verdict, String>;

    /// Judge a batch (override for speed, e.g. to reuse a connection); one result per sample.
    ///
    /// The default calls [`verify`](Self::verify) once per sample, each call guarded on its
    /// own: a panic costs only the sample that caused it (it becomes that sample's `Err`).
    /// An override is guarded as a whole, so a panic inside it errors the whole batch; wrap
    /// per-sample work in [`guarded`] to keep that property.
    fn verify_batch(&self, samples: &[Sample<'_>]) -> Vec<Result<Verdict, String>> {
        samples.iter().map(|s| guarded(|| self.verify(s))).collect()
    }
}

/// Weighted criteria scored per completion. The rubric's score is
/// `Σ w_i s_i / Σ w_i` over the criteria with `w_i > 0`; criteria of weight 0 are logged only.
pub trait Rubric: Send + Sync + 'static {
    /// The criteria, in the order `score` returns them.
    fn criteria(&self) -> Vec<Criterion>;

    /// One score per criterion.
    fn score(&self, sample: &Sample<'_>) -> Result<Vec<CriterionScore>, String>;
}

/// Transforms the next-token logits of one row in place before the token is drawn.
pub trait Sampler: Send + Sync + 'static {
    /// `position` counts generated tokens (0 for the first); `generated` holds them.
    fn transform(
        &self,
        logits: &mut [f32],
        position: usize,
        generated: &[u32],
    ) -> Result<(), String>;
}

/// Per-token advantages and loss weights from a batch; the differentiable loss stays in the
/// engine.
pub trait Algorithm: Send + Sync + 'static {
    /// Advantages (and optional weights) for every token of the batch.
    fn compute(&self, batch: &AlgoBatch<'_>) -> Result<AlgoOutput, String>;
}

// ---------------------------------------------------------------------------------------------
// Parameters.

/// A parameter declaration (see [`Spec`]'s builder methods).
#[derive(Clone, Debug, PartialEq)]
pub struct ParamSpec {
    /// Key in the run config.
    pub name: String,
    /// Kind.
    pub kind: ParamKind,
    /// Default of a number or switch.
    pub default: f64,
    /// Default of a text.
    pub default_text: String,
    /// Smallest value.
    pub min: f64,
    /// Largest value.
    pub max: f64,
    /// One line of help.
    pub help: String,
}

/// A component's parameter values, checked by the host against the declared specs (every
/// declared parameter is present, defaults filled in).
#[derive(Clone, Debug, Default)]
pub struct Params {
    values: BTreeMap<String, serde_json::Value>,
}

impl Params {
    /// Parses the JSON object the host sends.
    pub fn from_json(text: &str) -> Result<Self, String> {
        let values: BTreeMap<String, serde_json::Value> = if text.trim().is_empty() {
            BTreeMap::new()
        } else {
            serde_json::from_str(text)
                .map_err(|e| format!("parameters are not a JSON object: {e}"))?
        };
        Ok(Self { values })
    }

    /// A number (0 when absent).
    pub fn f(&self, name: &str) -> f64 {
        match self.values.get(name) {
            Some(serde_json::Value::Bool(b)) => f64::from(u8::from(*b)),
            Some(v) => v.as_f64().unwrap_or(0.0),
            None => 0.0,
        }
    }

    /// A whole number (0 when absent or negative).
    pub fn u(&self, name: &str) -> usize {
        self.f(name).max(0.0) as usize
    }

    /// A switch.
    pub fn b(&self, name: &str) -> bool {
        self.f(name) != 0.0
    }

    /// A text ("" when absent).
    pub fn text(&self, name: &str) -> &str {
        self.values
            .get(name)
            .and_then(|v| v.as_str())
            .unwrap_or_default()
    }
}

/// The declaration of one component: name, one-line summary, parameters, rubric criteria.
#[derive(Clone, Debug)]
pub struct Spec {
    name: String,
    summary: String,
    params: Vec<ParamSpec>,
    criteria: Vec<Criterion>,
}

impl Spec {
    /// A component called `name` (as written in run configs) with a one-line summary.
    pub fn new(name: impl Into<String>, summary: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            summary: summary.into(),
            params: Vec::new(),
            criteria: Vec::new(),
        }
    }

    fn param(
        mut self,
        name: &str,
        kind: ParamKind,
        default: f64,
        text: &str,
        range: (f64, f64),
        help: &str,
    ) -> Self {
        self.params.push(ParamSpec {
            name: name.into(),
            kind,
            default,
            default_text: text.into(),
            min: range.0,
            max: range.1,
            help: help.into(),
        });
        self
    }

    /// A real-valued parameter in `[min, max]`.
    pub fn float(self, name: &str, default: f64, min: f64, max: f64, help: &str) -> Self {
        self.param(name, ParamKind::Float, default, "", (min, max), help)
    }

    /// A whole-number parameter in `[min, max]`.
    pub fn int(self, name: &str, default: i64, min: i64, max: i64, help: &str) -> Self {
        self.param(
            name,
            ParamKind::Int,
            default as f64,
            "",
            (min as f64, max as f64),
            help,
        )
    }

    /// A switch.
    pub fn bool(self, name: &str, default: bool, help: &str) -> Self {
        self.param(
            name,
            ParamKind::Bool,
            f64::from(u8::from(default)),
            "",
            (0.0, 1.0),
            help,
        )
    }

    /// A text parameter.
    pub fn text(self, name: &str, default: &str, help: &str) -> Self {
        self.param(name, ParamKind::Text, 0.0, default, (0.0, 0.0), help)
    }

    /// A default rubric criterion (shown before the rubric is instantiated).
    pub fn criterion(mut self, name: &str, weight: f64, description: &str) -> Self {
        self.criteria
            .push(Criterion::new(name, weight, description));
        self
    }
}

// ---------------------------------------------------------------------------------------------
// Registration.

type Build<T> = Box<dyn Fn(&Params) -> Result<T, String> + Send + Sync>;

enum Ctor {
    Verifier(Build<Box<dyn Verifier>>),
    Rubric(Build<Box<dyn Rubric>>),
    Sampler(Build<Box<dyn Sampler>>),
    Algorithm(Build<Box<dyn Algorithm>>),
}

impl Ctor {
    fn kind(&self) -> ComponentKind {
        match self {
            Ctor::Verifier(_) => ComponentKind::Verifier,
            Ctor::Rubric(_) => ComponentKind::Rubric,
            Ctor::Sampler(_) => ComponentKind::Sampler,
            Ctor::Algorithm(_) => ComponentKind::Algorithm,
        }
    }
}

/// A plugin: its name, version, description and components. Build one in the function you
/// pass to [`export_plugin!`](crate::export_plugin).
pub struct Plugin {
    name: String,
    version: String,
    description: String,
    components: Vec<(Spec, Ctor)>,
}

impl Plugin {
    /// A plugin; `version` is usually `env!("CARGO_PKG_VERSION")`.
    pub fn new(name: &str, version: &str, description: &str) -> Self {
        Self {
            name: name.into(),
            version: version.into(),
            description: description.into(),
            components: Vec::new(),
        }
    }

    /// Registers a verifier built by `build` from its checked parameters.
    pub fn verifier<V: Verifier>(
        mut self,
        spec: Spec,
        build: impl Fn(&Params) -> Result<V, String> + Send + Sync + 'static,
    ) -> Self {
        let ctor = Ctor::Verifier(Box::new(move |p| {
            Ok(Box::new(build(p)?) as Box<dyn Verifier>)
        }));
        self.components.push((spec, ctor));
        self
    }

    /// Registers a rubric.
    pub fn rubric<R: Rubric>(
        mut self,
        spec: Spec,
        build: impl Fn(&Params) -> Result<R, String> + Send + Sync + 'static,
    ) -> Self {
        let ctor = Ctor::Rubric(Box::new(
            move |p| Ok(Box::new(build(p)?) as Box<dyn Rubric>),
        ));
        self.components.push((spec, ctor));
        self
    }

    /// Registers a sampler.
    pub fn sampler<S: Sampler>(
        mut self,
        spec: Spec,
        build: impl Fn(&Params) -> Result<S, String> + Send + Sync + 'static,
    ) -> Self {
        let ctor = Ctor::Sampler(Box::new(move |p| {
            Ok(Box::new(build(p)?) as Box<dyn Sampler>)
        }));
        self.components.push((spec, ctor));
        self
    }

    /// Registers an algorithm.
    pub fn algorithm<A: Algorithm>(
        mut self,
        spec: Spec,
        build: impl Fn(&Params) -> Result<A, String> + Send + Sync + 'static,
    ) -> Self {
        let ctor = Ctor::Algorithm(Box::new(move |p| {
            Ok(Box::new(build(p)?) as Box<dyn Algorithm>)
        }));
        self.components.push((spec, ctor));
        self
    }

    fn manifest(&self) -> ffi::Manifest {
        let components = self
            .components
            .iter()
            .map(|(s, c)| ffi::ComponentSpec {
                kind: c.kind(),
                name: s.name.as_str().into(),
                summary: s.summary.as_str().into(),
                params: s
                    .params
                    .iter()
                    .map(|p| ffi::ParamSpec {
                        name: p.name.as_str().into(),
                        kind: p.kind,
                        default: p.default,
                        default_text: p.default_text.as_str().into(),
                        min: p.min,
                        max: p.max,
                        help: p.help.as_str().into(),
                    })
                    .collect(),
                criteria: s.criteria.iter().map(criterion_ffi).collect(),
            })
            .collect();
        ffi::Manifest {
            name: self.name.as_str().into(),
            version: self.version.as_str().into(),
            description: self.description.as_str().into(),
            sdk_version: crate::SDK_VERSION.into(),
            abi_version: crate::ABI_VERSION,
            components,
        }
    }
}

fn criterion_ffi(c: &Criterion) -> ffi::Criterion {
    ffi::Criterion {
        name: c.name.as_str().into(),
        weight: c.weight,
        description: c.description.as_str().into(),
    }
}

// ---------------------------------------------------------------------------------------------
// Panic guard.

thread_local! {
    static LAST_PANIC: std::cell::RefCell<Option<String>> = const { std::cell::RefCell::new(None) };
    /// How many [`guarded`] calls this thread is inside.
    static GUARD_DEPTH: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

/// Runs `f`, turning a panic into `Err("panicked at FILE:LINE: MESSAGE")`. The first call
/// installs a panic hook (in this library's copy of std) that, inside `guarded`, records the
/// message quietly instead of printing it, since the host reports it; a panic outside
/// `guarded` goes to the hook that was there before.
pub fn guarded<T>(f: impl FnOnce() -> Result<T, String>) -> Result<T, String> {
    static HOOK: OnceLock<()> = OnceLock::new();
    HOOK.get_or_init(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if GUARD_DEPTH.with(std::cell::Cell::get) == 0 {
                return previous(info);
            }
            let msg = if let Some(s) = info.payload().downcast_ref::<&str>() {
                (*s).to_string()
            } else if let Some(s) = info.payload().downcast_ref::<String>() {
                s.clone()
            } else {
                "non-text panic payload".to_string()
            };
            let at = info
                .location()
                .map(|l| format!(" at {}:{}", l.file(), l.line()))
                .unwrap_or_default();
            LAST_PANIC.with(|p| *p.borrow_mut() = Some(format!("panicked{at}: {msg}")));
        }));
    });
    GUARD_DEPTH.with(|d| d.set(d.get() + 1));
    let r = catch_unwind(AssertUnwindSafe(f));
    GUARD_DEPTH.with(|d| d.set(d.get().saturating_sub(1)));
    match r {
        Ok(r) => r,
        Err(_) => Err(LAST_PANIC
            .with(|p| p.borrow_mut().take())
            .unwrap_or_else(|| "panicked".to_string())),
    }
}

// ---------------------------------------------------------------------------------------------
// ABI glue.

static PLUGIN: OnceLock<Result<Plugin, String>> = OnceLock::new();
static BUILD: OnceLock<fn() -> Plugin> = OnceLock::new();

fn plugin() -> Result<&'static Plugin, String> {
    PLUGIN
        .get_or_init(|| {
            let build = BUILD
                .get()
                .ok_or_else(|| "plugin not initialised (export_plugin! missing)".to_string())?;
            guarded(|| Ok(build()))
        })
        .as_ref()
        .map_err(|e| format!("building the plugin description {e}"))
}

#[doc(hidden)]
pub fn root_module(build: fn() -> Plugin) -> ffi::PluginModule_Ref {
    use abi_stable::prefix_type::PrefixTypeTrait as _;
    let _ = BUILD.set(build);
    ffi::PluginModule {
        manifest: ffi_manifest,
        instantiate: ffi_instantiate,
    }
    .leak_into_prefix()
}

fn rres<T>(r: Result<T, String>) -> RResult<T, RString> {
    match r {
        Ok(v) => RResult::ROk(v),
        Err(e) => RResult::RErr(e.into()),
    }
}

extern "C" fn ffi_manifest() -> RResult<ffi::Manifest, RString> {
    rres(guarded(|| Ok(plugin()?.manifest())))
}

extern "C" fn ffi_instantiate(
    kind: ComponentKind,
    name: RStr<'_>,
    params_json: RStr<'_>,
) -> RResult<ffi::ComponentBox, RString> {
    rres(guarded(|| {
        let p = plugin()?;
        let (_, ctor) = p
            .components
            .iter()
            .find(|(s, c)| s.name == name.as_str() && c.kind() == kind)
            .ok_or_else(|| format!("no {kind:?} component named {:?}", name.as_str()))?;
        let params = Params::from_json(params_json.as_str())?;
        let inner = match ctor {
            Ctor::Verifier(b) => Inner::Verifier(b(&params)?),
            Ctor::Rubric(b) => Inner::Rubric(b(&params)?),
            Ctor::Sampler(b) => Inner::Sampler(b(&params)?),
            Ctor::Algorithm(b) => Inner::Algorithm(b(&params)?),
        };
        Ok(ffi::Component_TO::from_value(Guarded(inner), TD_Opaque))
    }))
}

enum Inner {
    Verifier(Box<dyn Verifier>),
    Rubric(Box<dyn Rubric>),
    Sampler(Box<dyn Sampler>),
    Algorithm(Box<dyn Algorithm>),
}

/// A component with every ABI method guarded.
struct Guarded(Inner);

fn wrong(kind: &str) -> RString {
    format!("this component is not a {kind}").into()
}

fn score_ffi(v: Verdict) -> ffi::Score {
    ffi::Score {
        score: v.score,
        passed: match v.passed {
            Some(true) => 1,
            Some(false) => 0,
            None => -1,
        },
        reason: v.reason.into(),
        parts: v
            .sub_scores
            .into_iter()
            .map(|(name, score)| ffi::ScorePart {
                name: name.into(),
                score,
                weight: 0.0,
                reason: RString::new(),
            })
            .collect(),
    }
}

fn rubric_score(
    r: &dyn Rubric,
    criteria: &[Criterion],
    s: &Sample<'_>,
) -> Result<ffi::Score, String> {
    let scores = r.score(s)?;
    if scores.len() != criteria.len() {
        return Err(format!(
            "rubric returned {} scores for {} criteria",
            scores.len(),
            criteria.len()
        ));
    }
    let (mut num, mut den) = (0.0, 0.0);
    let mut reasons = Vec::new();
    let mut parts = RVec::new();
    for (c, sc) in criteria.iter().zip(scores) {
        if c.weight > 0.0 {
            num += c.weight * sc.score;
            den += c.weight;
        }
        if !sc.reason.is_empty() {
            reasons.push(format!("{}: {}", c.name, sc.reason));
        }
        parts.push(ffi::ScorePart {
            name: c.name.as_str().into(),
            score: sc.score,
            weight: c.weight,
            reason: sc.reason.into(),
        });
    }
    let score = if den > 0.0 { num / den } else { 0.0 };
    Ok(ffi::Score {
        score,
        passed: -1,
        reason: reasons.join("; ").into(),
        parts,
    })
}

impl ffi::Component for Guarded {
    fn score(
        &self,
        items: RSlice<'_, ffi::ScoreItem>,
    ) -> RResult<RVec<RResult<ffi::Score, RString>>, RString> {
        let metas: Vec<serde_json::Value> = items
            .iter()
            .map(|i| serde_json::from_str(i.meta_json.as_str()).unwrap_or(serde_json::Value::Null))
            .collect();
        let samples: Vec<Sample<'_>> = items
            .iter()
            .zip(&metas)
            .map(|(i, meta)| Sample {
                prompt: i.prompt.as_str(),
                completion: i.completion.as_str(),
                answer: i.answer.as_str(),
                meta,
            })
            .collect();
        match &self.0 {
            Inner::Verifier(v) => rres(guarded(|| {
                let out = v.verify_batch(&samples);
                if out.len() != samples.len() {
                    return Err(format!(
                        "verify_batch returned {} results for {} samples",
                        out.len(),
                        samples.len()
                    ));
                }
                Ok(out.into_iter().map(|r| rres(r.map(score_ffi))).collect())
            })),
            Inner::Rubric(r) => rres(guarded(|| {
                let criteria = r.criteria();
                Ok(samples
                    .iter()
                    .map(|s| rres(guarded(|| rubric_score(r.as_ref(), &criteria, s))))
                    .collect())
            })),
            _ => RResult::RErr(wrong("verifier or rubric")),
        }
    }

    fn transform(
        &self,
        mut logits: RSliceMut<'_, f32>,
        position: u32,
        generated: RSlice<'_, u32>,
    ) -> RResult<(), RString> {
        match &self.0 {
            Inner::Sampler(s) => rres(guarded(|| {
                s.transform(
                    logits.as_mut_slice(),
                    position as usize,
                    generated.as_slice(),
                )
            })),
            _ => RResult::RErr(wrong("sampler")),
        }
    }

    fn advantages(&self, batch: &ffi::AlgoBatch) -> RResult<ffi::AlgoOutput, RString> {
        match &self.0 {
            Inner::Algorithm(a) => rres(guarded(|| {
                let out = a.compute(&AlgoBatch { raw: batch })?;
                Ok(ffi::AlgoOutput {
                    advantages: out.advantages.into(),
                    weights: out.weights.into(),
                })
            })),
            _ => RResult::RErr(wrong("algorithm")),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;
    use crate::ffi::Component as _;

    fn sample<'a>(completion: &'a str, meta: &'a serde_json::Value) -> Sample<'a> {
        Sample {
            prompt: "p",
            completion,
            answer: "42",
            meta,
        }
    }

    /// Passes "42", panics on "boom", errors on "err".
    struct Picky;

    impl Verifier for Picky {
        fn verify(&self, s: &Sample<'_>) -> Result<Verdict, String> {
            match s.completion {
                "boom" => panic!("cannot judge {:?}", s.completion),
                "err" => Err("refused".into()),
                c if c == s.answer => Ok(Verdict::pass("exact")),
                _ => Ok(Verdict::fail("expected 42")),
            }
        }
    }

    fn item(completion: &str) -> ffi::ScoreItem {
        ffi::ScoreItem {
            prompt: "p".into(),
            completion: completion.into(),
            answer: "42".into(),
            meta_json: "null".into(),
        }
    }

    #[test]
    fn guarded_turns_a_panic_into_its_message_and_location() {
        let e = guarded::<()>(|| panic!("deliberate {}", 7)).unwrap_err();
        assert!(e.starts_with("panicked at "), "{e}");
        assert!(e.contains("sdk.rs:"), "{e}");
        assert!(e.ends_with(": deliberate 7"), "{e}");
        let e = guarded::<()>(|| std::panic::panic_any(5_u8)).unwrap_err();
        assert!(e.ends_with(": non-text panic payload"), "{e}");
        // Errors and values pass through unchanged; nothing is left over for the next call.
        assert_eq!(guarded::<u8>(|| Err("no".into())), Err("no".to_string()));
        assert_eq!(guarded(|| Ok(3)), Ok(3));
        // A panic inside a nested guard is that guard's error; the outer call goes on.
        let outer = guarded(|| Ok(guarded::<()>(|| panic!("inner")).unwrap_err()));
        assert!(outer.unwrap().ends_with(": inner"));
    }

    #[test]
    fn default_verify_batch_costs_a_panic_only_its_own_sample() {
        let meta = serde_json::Value::Null;
        let texts = ["42", "boom", "7", "err", "42", "boom", "42", "1"];
        let samples: Vec<Sample<'_>> = texts.iter().map(|t| sample(t, &meta)).collect();
        let out = Picky.verify_batch(&samples);
        assert_eq!(out.len(), 8);
        for (t, r) in texts.iter().zip(&out) {
            match *t {
                "boom" => {
                    let e = r.as_ref().unwrap_err();
                    assert!(e.contains("cannot judge \"boom\""), "{e}");
                }
                "err" => assert_eq!(r, &Err("refused".to_string())),
                "42" => assert!(r.as_ref().unwrap().passed == Some(true)),
                _ => assert!(r.as_ref().unwrap().passed == Some(false)),
            }
        }
    }

    #[test]
    fn the_abi_glue_keeps_per_sample_errors_per_sample() {
        let g = Guarded(Inner::Verifier(Box::new(Picky)));
        let items: Vec<ffi::ScoreItem> = ["42", "boom", "7"].iter().map(|t| item(t)).collect();
        let RResult::ROk(out) = g.score(RSlice::from_slice(&items)) else {
            panic!("the whole batch failed");
        };
        assert_eq!(out.len(), 3);
        assert!(matches!(&out[0], RResult::ROk(s) if s.score == 1.0 && s.passed == 1));
        assert!(matches!(&out[1], RResult::RErr(e) if e.contains("cannot judge")));
        assert!(matches!(&out[2], RResult::ROk(s) if s.score == 0.0 && s.passed == 0));
    }

    /// An override that panics as a whole, and one that returns too few results.
    struct WholeBatch(bool);

    impl Verifier for WholeBatch {
        fn verify(&self, _: &Sample<'_>) -> Result<Verdict, String> {
            Ok(Verdict::pass("ok"))
        }
        fn verify_batch(&self, samples: &[Sample<'_>]) -> Vec<Result<Verdict, String>> {
            if self.0 {
                panic!("batch panic");
            }
            samples.iter().skip(1).map(|s| self.verify(s)).collect()
        }
    }

    #[test]
    fn an_overridden_verify_batch_is_guarded_and_checked_as_a_whole() {
        let items: Vec<ffi::ScoreItem> = ["a", "b"].iter().map(|t| item(t)).collect();
        let g = Guarded(Inner::Verifier(Box::new(WholeBatch(true))));
        let RResult::RErr(e) = g.score(RSlice::from_slice(&items)) else {
            panic!("a panic in an override must fail the batch");
        };
        assert!(e.contains("batch panic"), "{e}");
        let g = Guarded(Inner::Verifier(Box::new(WholeBatch(false))));
        let RResult::RErr(e) = g.score(RSlice::from_slice(&items)) else {
            panic!("a short result must fail the batch");
        };
        assert_eq!(e.as_str(), "verify_batch returned 1 results for 2 samples");
    }

    struct Fixed(Vec<(f64, &'static str)>);

    impl Rubric for Fixed {
        fn criteria(&self) -> Vec<Criterion> {
            Vec::new()
        }
        fn score(&self, _: &Sample<'_>) -> Result<Vec<CriterionScore>, String> {
            Ok(self
                .0
                .iter()
                .map(|&(s, r)| CriterionScore::new(s, r))
                .collect())
        }
    }

    #[test]
    fn rubric_score_is_the_weighted_mean_over_positive_weights() {
        let meta = serde_json::Value::Null;
        let s = sample("x", &meta);
        let criteria = [
            Criterion::new("a", 3.0, ""),
            Criterion::new("b", 1.0, ""),
            Criterion::new("logged", 0.0, ""),
        ];
        let r = Fixed(vec![(1.0, "good"), (0.2, ""), (0.9, "noted")]);
        let out = rubric_score(&r, &criteria, &s).unwrap();
        // (3·1 + 1·0.2) / (3 + 1); the weight-0 criterion is logged, not counted.
        assert!((out.score - 0.8).abs() < 1e-12, "{}", out.score);
        assert_eq!(out.passed, -1);
        assert_eq!(out.reason.as_str(), "a: good; logged: noted");
        let parts: Vec<(&str, f64, f64)> = out
            .parts
            .iter()
            .map(|p| (p.name.as_str(), p.score, p.weight))
            .collect();
        assert_eq!(
            parts,
            [("a", 1.0, 3.0), ("b", 0.2, 1.0), ("logged", 0.9, 0.0)]
        );
        // Only weight-0 criteria: score 0, not NaN.
        let zero = [Criterion::new("only", 0.0, "")];
        let out = rubric_score(&Fixed(vec![(1.0, "")]), &zero, &s).unwrap();
        assert_eq!(out.score, 0.0);
        // One score per criterion, or an error.
        let e = rubric_score(&Fixed(vec![(1.0, "")]), &criteria, &s).unwrap_err();
        assert_eq!(e, "rubric returned 1 scores for 3 criteria");
    }

    fn algo_batch(offsets: Vec<u32>, tokens: usize) -> ffi::AlgoBatch {
        let rows = offsets.len().saturating_sub(1);
        ffi::AlgoBatch {
            group_size: 2,
            group_ids: vec![0; rows].into(),
            rewards: vec![1.0; rows].into(),
            passed: vec![1; rows].into(),
            component_names: RVec::new(),
            component_values: RVec::new(),
            token_offsets: offsets.into(),
            old_logprobs: (0..tokens).map(|i| i as f32).collect(),
            ref_logprobs: RVec::new(),
            entropies: (0..tokens).map(|i| -(i as f32)).collect(),
            mask: vec![1; tokens].into(),
        }
    }

    #[test]
    fn algo_batch_rows_stay_within_bounds() {
        let raw = algo_batch(vec![0, 2, 5], 5);
        let b = AlgoBatch { raw: &raw };
        assert_eq!(b.rows(), 2);
        assert_eq!(b.row(0).old_logprobs, [0.0, 1.0]);
        assert_eq!(b.row(1).old_logprobs, [2.0, 3.0, 4.0]);
        assert_eq!(b.row(1).entropies, [-2.0, -3.0, -4.0]);
        assert_eq!(b.row(1).mask, [1, 1, 1]);
        // No reference model: empty, not out of bounds.
        assert!(b.row(1).ref_logprobs.is_empty());
        // Past the last row: empty.
        assert!(b.row(2).old_logprobs.is_empty());
        assert!(b.row(usize::MAX).old_logprobs.is_empty());
        // Offsets that go backwards or past the token arrays: empty rows, no panic.
        let raw = algo_batch(vec![0, 3, 1, 9], 4);
        let b = AlgoBatch { raw: &raw };
        assert_eq!(b.row(0).old_logprobs.len(), 3);
        assert!(b.row(1).old_logprobs.is_empty());
        assert!(b.row(2).old_logprobs.is_empty());
        assert!(b.row(2).mask.is_empty());
        let out = AlgoOutput::broadcast(&b, &[0.5, 1.0, 2.0]);
        assert_eq!(out.advantages, [0.5, 0.5, 0.5]);
    }
}
