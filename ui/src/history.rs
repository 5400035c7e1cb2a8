//! Metric tables: a run's scalar metrics by name, filled live from engine events or read back
//! from the run history. Names follow the store (`reward_mean`, `reward_components/x/mean`,
//! `eval/pass_at_k/4`, ...), so live and stored runs chart the same way.

use std::collections::BTreeMap;

use rlvr_core::events::{EvalMetrics, StepMetrics};
use rlvr_store::Store;

/// Columns of (step, value) points, by metric name, plus each step's wall time.
#[derive(Debug)]
pub struct MetricTable {
    /// Points per metric, in step order.
    pub cols: BTreeMap<String, Vec<[f64; 2]>>,
    /// Seconds since the run started, by step (`elapsed_s` of the step or evaluation).
    pub time: BTreeMap<u64, f64>,
    /// Identity of this table (for caches of derived data).
    pub uid: u64,
    /// Bumped on every change (for caches of derived data).
    pub version: u64,
}

impl Default for MetricTable {
    fn default() -> Self {
        static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
        Self {
            cols: BTreeMap::new(),
            time: BTreeMap::new(),
            uid: NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
            version: 0,
        }
    }
}

// Metric names are the store's (`a/b` for nesting), from the same function.
use rlvr_store::flatten;

impl MetricTable {
    /// Adds one step's metrics.
    pub fn push_step(&mut self, m: &StepMetrics) {
        let mut v = Vec::new();
        flatten("", &serde_json::to_value(m).unwrap_or_default(), &mut v);
        self.time.insert(m.step as u64, m.elapsed_s);
        self.push(m.step as u64, v);
    }

    /// Adds one evaluation (`eval/...`).
    pub fn push_eval(&mut self, e: &EvalMetrics) {
        let mut v = Vec::new();
        flatten("eval", &serde_json::to_value(e).unwrap_or_default(), &mut v);
        self.time.entry(e.step as u64).or_insert(e.elapsed_s);
        self.push(e.step as u64, v);
    }

    fn push(&mut self, step: u64, values: Vec<(String, f64)>) {
        self.version += 1;
        for (name, x) in values {
            let col = self.cols.entry(name).or_default();
            // Keep step order (a resumed run re-sends nothing older than its checkpoint).
            if col.last().is_some_and(|p| p[0] >= step as f64) {
                col.retain(|p| p[0] < step as f64);
            }
            col.push([step as f64, x]);
        }
    }

    /// Reads a run's whole history.
    pub fn load(store: &Store, run_id: i64) -> rlvr_store::Result<Self> {
        let mut t = Self::default();
        for (step, row) in store.metrics_by_step(run_id)? {
            if let Some(e) = row.get("elapsed_s").or_else(|| row.get("eval/elapsed_s")) {
                t.time.insert(step, *e);
            }
            t.push(step, row.into_iter().collect());
        }
        Ok(t)
    }

    /// A metric's points (empty when the run has none).
    pub fn get(&self, name: &str) -> &[[f64; 2]] {
        self.cols.get(name).map_or(&[], |v| v.as_slice())
    }

    /// The last step with metrics.
    pub fn last_step(&self) -> u64 {
        self.cols
            .get("reward_mean")
            .and_then(|c| c.last())
            .map_or(0, |p| p[0] as u64)
    }

    /// Keeps only steps ≤ `step` (a resumed run continues from its checkpoint).
    pub fn truncate(&mut self, step: u64) {
        self.version += 1;
        for c in self.cols.values_mut() {
            c.retain(|p| p[0] <= step as f64);
        }
        self.time.retain(|s, _| *s <= step);
    }

    /// Wall time of a step (linear in between known steps is not needed: every step has one).
    pub fn time_of(&self, step: f64) -> f64 {
        self.time
            .range(..=(step.max(0.0) as u64))
            .next_back()
            .map_or(0.0, |(_, t)| *t)
    }
}
