//! The `[task]` section: which task and its difficulty knobs. The knobs' ranges are rows of the
//! spec table ([`crate::spec::TASKS`]); [`TaskConfig::check`] applies them and the rules between
//! knobs. The engine builds the task from it (`rlvr_engine::tasks::build`).

use std::path::PathBuf;

/// Invalid task configuration or an unusable split.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TaskError {
    /// A numeric or textual setting outside its allowed range.
    #[error("task.{key} = {value} is out of range: expected {expected}")]
    OutOfRange {
        /// Config key inside `[task]`.
        key: &'static str,
        /// The offending value, as written in TOML.
        value: String,
        /// What is allowed.
        expected: String,
    },
    /// The problem space cannot supply `heldout_size` distinct prompts.
    #[error(
        "eval.heldout_size = {heldout_size} is too large for task {task}: only {found} distinct \
         prompts of the evaluation partition found after {attempts} draws. Held-out prompts come \
         only from that partition, the fixed 1/5 of prompts (by a hash of the prompt text) that \
         training never uses, so a task (or a dataset file) offers about a fifth of its distinct \
         prompts for evaluation; set eval.heldout_size to {found} or less, or widen the task \
         settings (for a dataset: add problems)"
    )]
    HeldoutTooLarge {
        /// Task name.
        task: &'static str,
        /// Requested held-out size.
        heldout_size: usize,
        /// Distinct prompts found.
        found: usize,
        /// Draws attempted.
        attempts: usize,
    },
    /// The held-out set covers (almost) the whole problem space, leaving nothing to train on.
    #[error(
        "heldout_size = {heldout_size} leaves (almost) no training problems for task {task}: \
         {train_hits} of {probes} probe draws were outside the held-out set; lower heldout_size \
         or widen the task settings"
    )]
    NoTrainProblems {
        /// Task name.
        task: &'static str,
        /// Requested held-out size.
        heldout_size: usize,
        /// Probe draws that were not held out.
        train_hits: usize,
        /// Probe draws made.
        probes: usize,
    },
    /// A dataset file is missing or malformed (`line` 0 = the file as a whole).
    #[error("{path}{}: {msg}", if *line > 0 { format!(":{line}") } else { String::new() })]
    Dataset {
        /// The file.
        path: String,
        /// 1-based line number, 0 for the whole file.
        line: usize,
        /// What is wrong.
        msg: String,
    },
}

/// The allowed range of a task knob, from the spec table (`crate::spec::TASKS`), the one
/// place task ranges are written.
pub fn knob_range(task: &str, knob: &str) -> (usize, usize) {
    let end = |b: Option<crate::spec::Bound>, far: usize| b.map_or(far, |b| b.value as usize);
    crate::spec::task_key(task, knob)
        .map_or((0, usize::MAX), |k| (end(k.min, 0), end(k.max, usize::MAX)))
}

/// Check `min..=max` for an integer setting.
pub fn check_range(
    key: &'static str,
    value: usize,
    min: usize,
    max: usize,
) -> Result<(), TaskError> {
    if (min..=max).contains(&value) {
        Ok(())
    } else {
        Err(TaskError::OutOfRange {
            key,
            value: value.to_string(),
            expected: format!("{min}..={max}"),
        })
    }
}

/// Check a `min_*` / `max_*` pair: both in `lo..=hi` and `max >= min`.
pub fn check_min_max(
    (min_key, min): (&'static str, usize),
    (max_key, max): (&'static str, usize),
    lo: usize,
    hi: usize,
) -> Result<(), TaskError> {
    check_range(min_key, min, lo, hi)?;
    check_range(max_key, max, lo, hi)?;
    if max < min {
        return Err(TaskError::OutOfRange {
            key: max_key,
            value: max.to_string(),
            expected: format!("{min}..={hi} (at least task.{min_key})"),
        });
    }
    Ok(())
}

/// Parse an operator set: a non-empty string of distinct characters from `"+-*"`.
pub fn parse_ops(ops: &str) -> Result<Vec<char>, TaskError> {
    let mut out: Vec<char> = Vec::new();
    for c in ops.chars() {
        if !"+-*".contains(c) || out.contains(&c) {
            out.clear();
            break;
        }
        out.push(c);
    }
    if out.is_empty() {
        return Err(TaskError::OutOfRange {
            key: "ops",
            value: format!("{ops:?}"),
            expected: "a non-empty set of distinct operators from \"+-*\", e.g. \"+-\"".into(),
        });
    }
    Ok(out)
}

/// The `[task]` section of a run config; `name` selects the task.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "name", rename_all = "snake_case", deny_unknown_fields)]
pub enum TaskConfig {
    /// `a+b=` style integer arithmetic.
    Arithmetic(ArithmeticConfig),
    /// Reach a target number with the given numbers and `+ - *`.
    Countdown(CountdownConfig),
    /// Sort a short list of integers.
    Sorting(SortingConfig),
    /// Reverse a short string (partial credit per position).
    Reverse(ReverseConfig),
    /// Problems read from a JSONL file (`prompt`, `answer`, any other fields as metadata).
    Dataset(DatasetConfig),
}

impl Default for TaskConfig {
    fn default() -> Self {
        TaskConfig::Arithmetic(ArithmeticConfig::default())
    }
}

impl TaskConfig {
    /// The task name as written in `name = "..."`.
    pub fn name(&self) -> &'static str {
        match self {
            TaskConfig::Arithmetic(_) => "arithmetic",
            TaskConfig::Countdown(_) => "countdown",
            TaskConfig::Sorting(_) => "sorting",
            TaskConfig::Reverse(_) => "reverse",
            TaskConfig::Dataset(_) => "dataset",
        }
    }

    /// Checks every knob against the spec table and the rules between knobs (`min_*` at most
    /// `max_*`, operator sets); a dataset's file is read when the task is built.
    pub fn check(&self) -> Result<(), TaskError> {
        match self {
            TaskConfig::Arithmetic(c) => {
                check_pair(
                    "arithmetic",
                    ("min_digits", c.min_digits),
                    ("max_digits", c.max_digits),
                )?;
                parse_ops(&c.ops).map(|_| ())
            }
            TaskConfig::Countdown(c) => {
                check_knob("countdown", "numbers", c.numbers)?;
                check_knob("countdown", "max_number", c.max_number)?;
                parse_ops(&c.ops).map(|_| ())
            }
            TaskConfig::Sorting(c) => {
                check_pair("sorting", ("min_len", c.min_len), ("max_len", c.max_len))?;
                check_knob("sorting", "max_value", c.max_value)
            }
            TaskConfig::Reverse(c) => {
                check_pair("reverse", ("min_len", c.min_len), ("max_len", c.max_len))
            }
            TaskConfig::Dataset(c) => {
                if c.path.as_os_str().is_empty() {
                    return Err(TaskError::Dataset {
                        path: String::new(),
                        line: 0,
                        msg: "task.path is empty: name a JSONL file".into(),
                    });
                }
                Ok(())
            }
        }
    }
}

/// One knob against its range in the spec table.
fn check_knob(task: &str, knob: &'static str, value: usize) -> Result<(), TaskError> {
    let (lo, hi) = knob_range(task, knob);
    check_range(knob, value, lo, hi)
}

/// A `min_*` / `max_*` pair against the range of the `max_*` knob.
fn check_pair(
    task: &str,
    min: (&'static str, usize),
    max: (&'static str, usize),
) -> Result<(), TaskError> {
    let (lo, hi) = knob_range(task, max.0);
    check_min_max(min, max, lo, hi)
}

/// `[task]` settings for `name = "arithmetic"`.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ArithmeticConfig {
    /// Fewest digits per operand.
    pub min_digits: usize,
    /// Most digits per operand (multiplication too); at least `min_digits`.
    pub max_digits: usize,
    /// Operators to draw from: a non-empty set of distinct characters from `"+-*"`.
    pub ops: String,
    /// Allow negative results of `-`; if false the operands are swapped so the result is >= 0.
    pub allow_negative: bool,
}

impl Default for ArithmeticConfig {
    fn default() -> Self {
        ArithmeticConfig {
            min_digits: 1,
            max_digits: 2,
            ops: "+".into(),
            allow_negative: true,
        }
    }
}

/// `[task]` settings for `name = "countdown"`.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CountdownConfig {
    /// How many numbers are given.
    pub numbers: usize,
    /// Largest given number (numbers are drawn from 1..=max_number).
    pub max_number: usize,
    /// Operators the generator uses: a non-empty set of distinct characters from `"+-*"` (default
    /// `"+-*"`). The verifier accepts all three.
    pub ops: String,
    /// Every given number must be used exactly once; if false, each at most once.
    pub use_all: bool,
}

impl Default for CountdownConfig {
    fn default() -> Self {
        CountdownConfig {
            numbers: 3,
            max_number: 9,
            ops: "+-*".into(),
            use_all: true,
        }
    }
}

/// `[task]` settings for `name = "sorting"`.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SortingConfig {
    /// Shortest list.
    pub min_len: usize,
    /// Longest list; at least `min_len`.
    pub max_len: usize,
    /// Values are drawn from 0..=max_value.
    pub max_value: usize,
    /// Sort in descending order; the prompt word is `desc` instead of `sort`.
    pub descending: bool,
}

impl Default for SortingConfig {
    fn default() -> Self {
        SortingConfig {
            min_len: 3,
            max_len: 4,
            max_value: 9,
            descending: false,
        }
    }
}

/// `[task]` settings for `name = "reverse"`.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ReverseConfig {
    /// Shortest string.
    pub min_len: usize,
    /// Longest string; at least `min_len`.
    pub max_len: usize,
    /// Characters to draw from: `"digits"`, `"letters"` or `"alnum"`.
    pub charset: Charset,
}

impl Default for ReverseConfig {
    fn default() -> Self {
        ReverseConfig {
            min_len: 3,
            max_len: 6,
            charset: Charset::Digits,
        }
    }
}

/// `[task]` settings for `name = "dataset"`.
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DatasetConfig {
    /// The JSONL file; a relative path is resolved against the config file's folder.
    pub path: PathBuf,
}

/// Characters a reversal string is drawn from.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Charset {
    /// `0-9`.
    #[default]
    Digits,
    /// `a-z`.
    Letters,
    /// `0-9` and `a-z`.
    Alnum,
}

impl Charset {
    /// The characters, as bytes.
    pub fn chars(self) -> &'static [u8] {
        match self {
            Charset::Digits => b"0123456789",
            Charset::Letters => b"abcdefghijklmnopqrstuvwxyz",
            Charset::Alnum => b"0123456789abcdefghijklmnopqrstuvwxyz",
        }
    }
}
