//! Procedurally generated tasks with programmatic verifiers: the reward source for RLVR.
//!
//! Each task draws short problems from a seeded [`ChaCha8Rng`] and scores a model completion with a
//! deterministic verifier that returns a [`Verdict`] (score in `[0, 1]`, pass flag and a human-readable
//! reason). The design — procedural generators paired with exact verifiers and difficulty knobs — is
//! inspired by reasoning-gym (<https://github.com/open-thought/reasoning-gym>), scaled down so that a
//! ~1M-parameter character-level transformer can learn it: prompts are ~8-20 characters, end with a
//! marker character (`=` or `:`) and the completion is just the answer.
//!
//! Every prompt and answer uses only characters from [`ALPHABET`]. [`TaskConfig`] is the `[task]`
//! section of a run config; [`TaskSplit`] separates a fixed held-out set from a resumable train stream.

mod arithmetic;
mod countdown;
mod dataset;
mod reverse;
mod sorting;

pub use arithmetic::Arithmetic;
pub use countdown::Countdown;
pub use dataset::Dataset;
pub use reverse::Reverse;
pub use sorting::Sorting;

/// The `[task]` configs and their checks are part of the run config (`rlvr_core::config::task`).
pub use rlvr_core::config::task::{
    parse_ops, ArithmeticConfig, Charset, CountdownConfig, DatasetConfig, ReverseConfig,
    SortingConfig, TaskConfig, TaskError,
};

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use std::collections::HashSet;

/// Every character any built-in task can put in a prompt or answer. The default character-level
/// vocabulary is built from this string.
pub const ALPHABET: &str = "0123456789+-*()=:>, abcdefghijklmnopqrstuvwxyz";

/// One problem instance.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Problem {
    /// Text shown to the model; ends with the task's answer marker.
    pub prompt: String,
    /// A reference answer that verifies as passed with score 1.0.
    pub answer: String,
    /// Task-specific structured data the verifier may use (operands, numbers, target, ...).
    pub meta: serde_json::Value,
}

/// Outcome of verifying a completion.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct Verdict {
    /// Reward in `[0, 1]`.
    pub score: f32,
    /// Whether the completion is fully correct.
    pub passed: bool,
    /// Short human-readable explanation, e.g. `"expected 46, got 47"`.
    pub reason: String,
}

impl Verdict {
    /// A fully correct completion (score 1).
    pub(crate) fn pass(reason: impl Into<String>) -> Self {
        Verdict {
            score: 1.0,
            passed: true,
            reason: reason.into(),
        }
    }

    /// A wrong completion (score 0).
    pub(crate) fn fail(reason: impl Into<String>) -> Self {
        Verdict {
            score: 0.0,
            passed: false,
            reason: reason.into(),
        }
    }
}

/// A problem generator paired with its verifier.
pub trait Task: Send + Sync {
    /// Stable task name, as used in configs (`"arithmetic"`, ...).
    fn name(&self) -> &'static str;
    /// Draw one problem (deterministic given the rng state).
    fn generate(&self, rng: &mut ChaCha8Rng) -> Problem;
    /// Score a completion (text the model produced after the prompt, already cut at end-of-sequence,
    /// not trimmed).
    fn verify(&self, problem: &Problem, completion: &str) -> Verdict;
    /// Upper bound on the number of characters a correct answer can have (used to set max new tokens).
    fn max_answer_chars(&self) -> usize;
    /// Upper bound on prompt length in chars.
    fn max_prompt_chars(&self) -> usize;
    /// Where the longest prompt (or, with `answer`, the longest answer) was read: a dataset's
    /// file and 1-based line, so that a problem too long for the model is blamed on it. `None`
    /// for generated tasks.
    fn longest_origin(&self, answer: bool) -> Option<(String, usize)> {
        let _ = answer;
        None
    }
}

/// Number of decimal digits of `n`.
pub(crate) fn digits(n: u64) -> usize {
    n.to_string().len()
}

/// Builds the task; each constructor checks its config ([`TaskConfig::check`]) and a dataset's
/// file is read here.
pub fn build(config: &TaskConfig) -> Result<Box<dyn Task>, TaskError> {
    Ok(match config {
        TaskConfig::Arithmetic(c) => Box::new(Arithmetic::new(c)?),
        TaskConfig::Countdown(c) => Box::new(Countdown::new(c)?),
        TaskConfig::Sorting(c) => Box::new(Sorting::new(c)?),
        TaskConfig::Reverse(c) => Box::new(Reverse::new(c)?),
        TaskConfig::Dataset(c) => Box::new(Dataset::new(c)?),
    })
}

/// Seed derivation for the held-out stream.
const HELDOUT_SALT: u64 = 0x5eed_4e1d;
/// Seed derivation for the train stream.
const TRAIN_SALT: u64 = 0x7a41_9e5e_ed00_0001;
/// Train draws made in [`TaskSplit::new`] to check that the held-out set leaves problems to train on.
const PROBE_DRAWS: usize = 1000;
/// Minimum probe draws that must fall outside the held-out set.
const MIN_PROBE_HITS: usize = 10;
/// Rejections after which `next_train` gives up (unreachable once the probe has passed).
const MAX_REJECTS: usize = 1_000_000;

/// Share of every task's prompt space reserved for evaluation, in fifths.
const EVAL_PARTITION_MOD: u64 = 5;

/// Whether a prompt belongs to the evaluation partition: a fixed fifth of every task's prompt
/// space (by a hash of the prompt text, independent of any seed). Held-out sets are drawn only
/// from it and train streams never enter it, so no training stream of any seed — RL or the
/// supervised warm start of the embedded policy — ever contains a held-out prompt of any seed.
pub fn in_eval_partition(prompt: &str) -> bool {
    // FNV-1a, 64 bit: stable across platforms and releases.
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in prompt.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h.is_multiple_of(EVAL_PARTITION_MOD)
}

/// A fixed held-out set plus a deterministic, resumable train stream that never repeats a held-out prompt.
pub struct TaskSplit {
    /// Held-out problems with distinct prompts (for evaluation).
    pub heldout: Vec<Problem>,
    task: Box<dyn Task>,
    seen: HashSet<String>,
    train_seed: u64,
    drawn: u64,
}

impl TaskSplit {
    /// Held-out set of `heldout_size` distinct prompts drawn with a ChaCha8Rng seeded from
    /// `seed ^ 0x5eed_4e1d`; the train stream uses another seed derivation and never yields a prompt that
    /// is in the held-out set (reject and redraw). Errors if the problem space is too small to give
    /// `heldout_size` distinct prompts, or if the held-out set leaves almost nothing to train on.
    pub fn new(task: Box<dyn Task>, seed: u64, heldout_size: usize) -> Result<Self, TaskError> {
        let mut rng = ChaCha8Rng::seed_from_u64(seed ^ HELDOUT_SALT);
        let mut seen = HashSet::with_capacity(heldout_size);
        let mut heldout = Vec::with_capacity(heldout_size);
        let max_attempts = 10_000 + 250 * heldout_size;
        let mut attempts = 0;
        while heldout.len() < heldout_size {
            if attempts == max_attempts {
                return Err(TaskError::HeldoutTooLarge {
                    task: task.name(),
                    heldout_size,
                    found: heldout.len(),
                    attempts,
                });
            }
            attempts += 1;
            let p = task.generate(&mut rng);
            if in_eval_partition(&p.prompt) && seen.insert(p.prompt.clone()) {
                heldout.push(p);
            }
        }
        let split = TaskSplit {
            heldout,
            task,
            seen,
            train_seed: seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ TRAIN_SALT,
            drawn: 0,
        };
        if heldout_size > 0 {
            let mut probe = ChaCha8Rng::seed_from_u64(split.train_seed ^ HELDOUT_SALT);
            let hits = (0..PROBE_DRAWS)
                .filter(|_| !in_eval_partition(&split.task.generate(&mut probe).prompt))
                .count();
            if hits < MIN_PROBE_HITS {
                return Err(TaskError::NoTrainProblems {
                    task: split.task.name(),
                    heldout_size,
                    train_hits: hits,
                    probes: PROBE_DRAWS,
                });
            }
        }
        Ok(split)
    }

    /// The underlying task (for verification and length bounds).
    pub fn task(&self) -> &dyn Task {
        self.task.as_ref()
    }

    /// Next training problem (deterministic sequence for a seed). Draw `i` uses its own ChaCha8 stream
    /// (`set_stream(i)`), so seeking is O(1).
    pub fn next_train(&mut self) -> Problem {
        let mut rng = ChaCha8Rng::seed_from_u64(self.train_seed);
        rng.set_stream(self.drawn);
        self.drawn += 1;
        let mut p = self.task.generate(&mut rng);
        for _ in 0..MAX_REJECTS {
            if !in_eval_partition(&p.prompt) && !self.seen.contains(&p.prompt) {
                break;
            }
            p = self.task.generate(&mut rng);
        }
        p
    }

    /// How many train problems were drawn so far (the data cursor, for resume).
    pub fn cursor(&self) -> u64 {
        self.drawn
    }

    /// SHA-256 (hex) of `spec` (the task's configuration) and the held-out problems: two runs
    /// with the same fingerprint trained and were evaluated on the same data.
    pub fn fingerprint(&self, spec: &str) -> String {
        use sha2::Digest as _;
        let mut h = sha2::Sha256::new();
        h.update(spec.as_bytes());
        for p in &self.heldout {
            h.update(b"\0");
            h.update(p.prompt.as_bytes());
            h.update(b"\0");
            h.update(p.answer.as_bytes());
        }
        h.finalize().iter().map(|b| format!("{b:02x}")).collect()
    }

    /// Position the train stream at `cursor`: the next `next_train` returns draw number `cursor + 1`.
    pub fn seek(&mut self, cursor: u64) {
        self.drawn = cursor;
    }
}

#[cfg(test)]
pub(crate) mod test_util {
    use super::*;

    /// 200 problems: the reference answer passes with score 1, texts use only ALPHABET and respect the
    /// length bounds, and `wrong(problem)` fails.
    pub(crate) fn check_task(task: &dyn Task, wrong: impl Fn(&Problem) -> String) {
        let mut rng = ChaCha8Rng::seed_from_u64(7);
        for _ in 0..200 {
            let p = task.generate(&mut rng);
            let v = task.verify(&p, &p.answer);
            assert!(v.passed && v.score == 1.0, "{p:?}: {v:?}");
            for text in [&p.prompt, &p.answer] {
                assert!(
                    text.chars().all(|c| ALPHABET.contains(c)),
                    "bad char in {text:?}"
                );
            }
            assert!(p.prompt.chars().count() <= task.max_prompt_chars(), "{p:?}");
            assert!(p.answer.chars().count() <= task.max_answer_chars(), "{p:?}");
            let w = wrong(&p);
            let v = task.verify(&p, &w);
            assert!(!v.passed && v.score < 1.0, "{p:?} / {w:?}: {v:?}");
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn arith(max_digits: usize, ops: &str) -> Box<dyn Task> {
        let c = ArithmeticConfig {
            max_digits,
            ops: ops.into(),
            ..Default::default()
        };
        build(&TaskConfig::Arithmetic(c)).unwrap()
    }

    fn draws(split: &mut TaskSplit, n: usize) -> Vec<Problem> {
        (0..n).map(|_| split.next_train()).collect()
    }

    #[test]
    fn split_is_disjoint_distinct_and_deterministic() {
        let mut a = TaskSplit::new(arith(2, "+"), 42, 200).unwrap();
        let held: HashSet<_> = a.heldout.iter().map(|p| p.prompt.clone()).collect();
        assert_eq!(held.len(), 200);
        let train = draws(&mut a, 5000);
        assert!(train.iter().all(|p| !held.contains(&p.prompt)));
        assert_eq!(a.cursor(), 5000);

        let mut b = TaskSplit::new(arith(2, "+"), 42, 200).unwrap();
        assert_eq!(a.heldout, b.heldout);
        assert_eq!(train[..100], draws(&mut b, 100)[..]);

        let mut c = TaskSplit::new(arith(2, "+"), 43, 200).unwrap();
        assert_ne!(a.heldout, c.heldout);
        assert_ne!(train[..100], draws(&mut c, 100)[..]);
    }

    #[test]
    fn seek_replays_the_stream() {
        let mut fresh = TaskSplit::new(arith(2, "+-*"), 9, 50).unwrap();
        let seq = draws(&mut fresh, 40);
        let mut s = TaskSplit::new(arith(2, "+-*"), 9, 50).unwrap();
        draws(&mut s, 3);
        s.seek(25);
        assert_eq!(s.cursor(), 25);
        assert_eq!(s.next_train(), seq[25]);
        s.seek(0);
        assert_eq!(s.next_train(), seq[0]);
    }

    #[test]
    fn too_small_problem_space_errors() {
        // 1-digit "+" has exactly 100 prompts, of which a fixed fifth or so is reserved for evaluation.
        let reserved = (0..10)
            .flat_map(|a| (0..10).map(move |b| format!("{a}+{b}=")))
            .filter(|p| in_eval_partition(p))
            .count();
        assert!((5..=40).contains(&reserved), "{reserved}");
        let err = TaskSplit::new(arith(1, "+"), 1, 500).err().unwrap();
        let msg = err.to_string();
        assert!(
            msg.contains("heldout_size = 500") && msg.contains("arithmetic"),
            "{msg}"
        );
        assert!(
            matches!(err, TaskError::HeldoutTooLarge { found, .. } if found == reserved),
            "{err:?}"
        );
        // The whole evaluation partition held out still leaves the rest for training.
        let mut s = TaskSplit::new(arith(1, "+"), 1, reserved).unwrap();
        let held: HashSet<_> = s.heldout.iter().map(|p| p.prompt.clone()).collect();
        let train = draws(&mut s, 500);
        assert!(train.iter().all(|p| !held.contains(&p.prompt)));
        assert!(train.iter().all(|p| !in_eval_partition(&p.prompt)));
        assert!(TaskSplit::new(arith(1, "+"), 1, 0)
            .unwrap()
            .heldout
            .is_empty());
    }

    #[test]
    fn train_streams_of_any_seed_avoid_heldout_of_any_seed() {
        let a = TaskSplit::new(arith(2, "+"), 1, 300).unwrap();
        let mut b = TaskSplit::new(arith(2, "+"), 2, 300).unwrap();
        let held: HashSet<_> = a.heldout.iter().map(|p| p.prompt.clone()).collect();
        assert!(draws(&mut b, 3000)
            .iter()
            .all(|p| !held.contains(&p.prompt)));
    }

    #[test]
    fn config_parses_from_toml() {
        let c: TaskConfig = toml::from_str("name = \"arithmetic\"\nmax_digits = 3").unwrap();
        let want = ArithmeticConfig {
            max_digits: 3,
            ..Default::default()
        };
        assert_eq!(c, TaskConfig::Arithmetic(want));
        assert_eq!(c.name(), "arithmetic");
        assert_eq!(build(&c).unwrap().name(), "arithmetic");
        for (text, name) in [
            (
                "name = \"countdown\"\nnumbers = 4\nops = \"+*\"\nuse_all = false",
                "countdown",
            ),
            ("name = \"sorting\"\ndescending = true", "sorting"),
            (
                "name = \"reverse\"\ncharset = \"alnum\"\nmax_len = 12",
                "reverse",
            ),
        ] {
            let c: TaskConfig = toml::from_str(text).unwrap();
            assert_eq!((c.name(), build(&c).unwrap().name()), (name, name));
            let back: TaskConfig = toml::from_str(&toml::to_string(&c).unwrap()).unwrap();
            assert_eq!(back, c);
        }
        assert_eq!(TaskConfig::default().check(), Ok(()));
    }

    #[test]
    fn config_rejects_unknown_keys_and_names() {
        let err =
            toml::from_str::<TaskConfig>("name = \"arithmetic\"\nmax_digitz = 3").unwrap_err();
        assert!(err.to_string().contains("max_digitz"), "{err}");
        let err = toml::from_str::<TaskConfig>("name = \"sudoku\"").unwrap_err();
        assert!(err.to_string().contains("sudoku"), "{err}");
        let err =
            toml::from_str::<TaskConfig>("name = \"reverse\"\ncharset = \"emoji\"").unwrap_err();
        assert!(err.to_string().contains("emoji"), "{err}");
    }

    #[test]
    fn config_range_errors_name_key_value_and_range() {
        const OPS: &str = "a non-empty set of distinct operators from \"+-*\", e.g. \"+-\"";
        #[rustfmt::skip]
        let cases = [
            ("arithmetic", "max_digits = 9", "task.max_digits = 9 is out of range: expected 1..=4"),
            ("arithmetic", "min_digits = 0", "task.min_digits = 0 is out of range: expected 1..=4"),
            ("arithmetic", "min_digits = 3\nmax_digits = 2",
                "task.max_digits = 2 is out of range: expected 3..=4 (at least task.min_digits)"),
            ("arithmetic", "ops = \"+/\"", &format!("task.ops = \"+/\" is out of range: expected {OPS}")),
            ("countdown", "ops = \"\"", &format!("task.ops = \"\" is out of range: expected {OPS}")),
            ("countdown", "ops = \"++\"", &format!("task.ops = \"++\" is out of range: expected {OPS}")),
            ("countdown", "numbers = 5", "task.numbers = 5 is out of range: expected 2..=4"),
            ("countdown", "max_number = 51", "task.max_number = 51 is out of range: expected 2..=50"),
            ("sorting", "max_value = 0", "task.max_value = 0 is out of range: expected 1..=99"),
            ("sorting", "min_len = 1", "task.min_len = 1 is out of range: expected 2..=8"),
            ("reverse", "max_len = 13", "task.max_len = 13 is out of range: expected 1..=12"),
            ("reverse", "min_len = 5\nmax_len = 4",
                "task.max_len = 4 is out of range: expected 5..=12 (at least task.min_len)"),
        ];
        for (name, body, want) in cases {
            let c: TaskConfig = toml::from_str(&format!("name = \"{name}\"\n{body}")).unwrap();
            assert_eq!(c.check().unwrap_err().to_string(), want);
            assert!(build(&c).is_err());
        }
    }
}
