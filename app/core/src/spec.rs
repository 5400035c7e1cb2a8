//! The run-config spec table: one row per key (type, default, range, unit, a human label and a
//! one-line help), one table per section. It is the single source of truth for the ranges: the
//! engine's validation ([`check`], [`validate`]), `rlvr-studio default-config` ([`default_toml`]),
//! the README's config reference ([`markdown_reference`]), the desktop app's form (labels,
//! tooltips, widgets and ranges) and the JSON Schema editors use ([`json_schema`]) all read it.
//!
//! Keys are dotted paths as written in TOML (`rollout.group_size`). Task knobs are keyed
//! `task.<knob>` inside one table per task ([`TASKS`]); `[[rewards.components]]` entries are
//! described by [`COMPONENT_KEYS`].

use std::fmt::Write as _;

use crate::error::{CoreError, Result};

/// What a key holds.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Kind {
    /// A whole number.
    Int,
    /// A real number (finite).
    Float,
    /// `true` / `false`.
    Bool,
    /// Free text.
    Text,
    /// A file or folder (a relative path is resolved against the config file's folder).
    Path,
    /// One of fixed options.
    Choice(&'static [&'static str]),
    /// A table of a component's parameters, checked against that component's own specs.
    Params,
    /// A list of strings.
    TextList,
    /// A list of folders.
    PathList,
}

impl Kind {
    /// The word for the reference table.
    pub fn word(self) -> &'static str {
        match self {
            Kind::Int => "integer",
            Kind::Float => "number",
            Kind::Bool => "bool",
            Kind::Text => "string",
            Kind::Path => "path",
            Kind::Choice(_) => "choice",
            Kind::Params => "table",
            Kind::TextList => "list of strings",
            Kind::PathList => "list of paths",
        }
    }

    /// Whether values are numbers with a range.
    pub fn is_number(self) -> bool {
        matches!(self, Kind::Int | Kind::Float)
    }
}

/// One end of a range.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Bound {
    /// The limit.
    pub value: f64,
    /// Whether the limit itself is excluded.
    pub open: bool,
}

/// A key's default value.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Default {
    /// A number.
    Num(f64),
    /// A switch.
    Bool(bool),
    /// Text (also a path or a choice).
    Text(&'static str),
    /// An empty list or table.
    Empty,
    /// A list of strings.
    List(&'static [&'static str]),
    /// Absent (an optional key).
    Absent,
}

/// One config key.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct KeySpec {
    /// Dotted path, e.g. `rollout.group_size`.
    pub key: &'static str,
    /// What it holds.
    pub kind: Kind,
    /// Its default.
    pub default: Default,
    /// Smallest allowed value (numbers).
    pub min: Option<Bound>,
    /// Largest allowed value (numbers).
    pub max: Option<Bound>,
    /// A value allowed outside the range that switches the feature off (`dual_clip = 0`).
    pub off: Option<f64>,
    /// Unit, e.g. "tokens" ("" when none).
    pub unit: &'static str,
    /// A short human label for forms.
    pub label: &'static str,
    /// One line of help: what it does, and what special values mean.
    pub help: &'static str,
}

const fn closed(value: f64) -> Option<Bound> {
    Some(Bound { value, open: false })
}

const fn open(value: f64) -> Option<Bound> {
    Some(Bound { value, open: true })
}

const fn base(key: &'static str, kind: Kind, default: Default) -> KeySpec {
    KeySpec {
        key,
        kind,
        default,
        min: None,
        max: None,
        off: None,
        unit: "",
        label: "",
        help: "",
    }
}

/// An integer key with an inclusive range.
const fn int(key: &'static str, default: f64, min: f64, max: f64) -> KeySpec {
    let mut s = base(key, Kind::Int, Default::Num(default));
    s.min = closed(min);
    s.max = closed(max);
    s
}

/// A float key with an inclusive range.
const fn float(key: &'static str, default: f64, min: f64, max: f64) -> KeySpec {
    let mut s = base(key, Kind::Float, Default::Num(default));
    s.min = closed(min);
    s.max = closed(max);
    s
}

const fn choice(
    key: &'static str,
    options: &'static [&'static str],
    default: &'static str,
) -> KeySpec {
    base(key, Kind::Choice(options), Default::Text(default))
}

const fn text(key: &'static str, default: &'static str) -> KeySpec {
    base(key, Kind::Text, Default::Text(default))
}

impl KeySpec {
    const fn label(mut self, label: &'static str, help: &'static str) -> Self {
        self.label = label;
        self.help = help;
        self
    }

    const fn unit(mut self, unit: &'static str) -> Self {
        self.unit = unit;
        self
    }

    const fn open_min(mut self) -> Self {
        if let Some(b) = self.min {
            self.min = open(b.value);
        }
        self
    }

    const fn open_max(mut self) -> Self {
        if let Some(b) = self.max {
            self.max = open(b.value);
        }
        self
    }

    const fn or_off(mut self, off: f64) -> Self {
        self.off = Some(off);
        self
    }

    /// The last part of the key (`group_size` for `rollout.group_size`).
    pub fn name(&self) -> &'static str {
        self.key.rsplit('.').next().unwrap_or(self.key)
    }

    /// The allowed values in words: `1..=1024`, `(0, 1]`, `0 (off) or 1..=100`, `one of …`.
    pub fn allowed(&self) -> String {
        let range = match (self.min, self.max) {
            (Some(lo), Some(hi)) if !lo.open && !hi.open => {
                format!("{}..={}", num(lo.value), num(hi.value))
            }
            (Some(lo), Some(hi)) => format!(
                "{}{}, {}{}",
                if lo.open { '(' } else { '[' },
                num(lo.value),
                num(hi.value),
                if hi.open { ')' } else { ']' }
            ),
            (Some(lo), None) => format!("{} {}", if lo.open { ">" } else { ">=" }, num(lo.value)),
            (None, Some(hi)) => format!("{} {}", if hi.open { "<" } else { "<=" }, num(hi.value)),
            (None, None) => match self.kind {
                Kind::Choice(opts) => format!("one of {}", opts.join(", ")),
                k => k.word().to_string(),
            },
        };
        match self.off {
            Some(off) => format!("{} (off) or {range}", num(off)),
            None => range,
        }
    }

    /// Whether a number is allowed (finite, within the range, or the `off` value).
    pub fn admits(&self, v: f64) -> bool {
        if !v.is_finite() {
            return false;
        }
        if self.off == Some(v) {
            return true;
        }
        if self.kind == Kind::Int && v.fract() != 0.0 {
            return false;
        }
        let above_min = self
            .min
            .is_none_or(|b| if b.open { v > b.value } else { v >= b.value });
        let below_max = self
            .max
            .is_none_or(|b| if b.open { v < b.value } else { v <= b.value });
        above_min && below_max
    }

    /// The error for a value outside the range: `key = value is invalid: expected … (help)`.
    pub fn range_error(&self, value: impl std::fmt::Display) -> CoreError {
        CoreError::config(
            self.key,
            value,
            format!("expected {} ({})", self.allowed(), self.help),
        )
    }
}

/// A number as written in TOML: integers without a fraction, large ones in exponent form.
pub fn num(v: f64) -> String {
    if v.fract() == 0.0 && v.abs() < 9.2e18 {
        format!("{}", v as i64)
    } else {
        format!("{v:?}")
    }
}

/// One `[section]` of a run config.
#[derive(Clone, Copy, Debug)]
pub struct Section {
    /// TOML name ("" for the top-level keys).
    pub name: &'static str,
    /// Heading for forms and docs.
    pub title: &'static str,
    /// Its keys.
    pub keys: &'static [KeySpec],
}

/// One task (`task.name = "…"`) with its knobs.
#[derive(Clone, Copy, Debug)]
pub struct TaskSpec {
    /// The value of `task.name`.
    pub name: &'static str,
    /// One line: what the model must do.
    pub summary: &'static str,
    /// Its knobs, keyed `task.<knob>`.
    pub keys: &'static [KeySpec],
}

/// The default policy shipped with the source tree.
pub const DEFAULT_MODEL_PATH: &str =
    concat!(env!("CARGO_MANIFEST_DIR"), "/../assets/default-policy");

/// Top-level keys.
pub static TOP: &[KeySpec] = &[
    text("name", "run").label("Run name", "names the run and its default output folder runs/<name>"),
    int("seed", 0.0, 0.0, 9_007_199_254_740_991.0).label(
        "Seed",
        "seed of everything random: held-out split, prompt stream, sampling",
    ),
    int("steps", 200.0, 1.0, 1_000_000.0)
        .unit("steps")
        .label("Steps", "policy updates"),
    int("threads", 0.0, 0.0, 256.0).label(
        "Threads",
        "CPU threads; 0 = all cores (models under 5 M parameters use them as data-parallel workers)",
    ),
];

/// `[model]`.
pub static MODEL: &[KeySpec] = &[
    base("model.path", Kind::Path, Default::Text(DEFAULT_MODEL_PATH)).label(
        "Model folder",
        "Hugging Face model folder (config.json, tokenizer.json, *.safetensors); default: the bundled default policy",
    ),
    base("model.chat_template", Kind::Bool, Default::Bool(false)).label(
        "Chat template",
        "render each prompt through the folder's chat template (system, user turn, assistant opening); off: the prompt text as it is",
    ),
    text("model.system_prompt", "").label(
        "System prompt",
        "system message of the chat template; empty: the template's own default",
    ),
    base("model.enable_thinking", Kind::Bool, Default::Bool(true)).label(
        "Thinking",
        "Qwen3's enable_thinking; off: the template opens an empty <think></think> block",
    ),
    text("model.device", "auto").label(
        "Device",
        "where the run computes: auto (the first CUDA GPU of a build with the cuda feature, else the CPU), cpu, or cuda:N",
    ),
    base("model.gradient_checkpointing", Kind::Bool, Default::Bool(false)).label(
        "Gradient checkpointing",
        "keep only each layer's input and recompute its activations in the backward pass (less memory, about one more forward of time)",
    ),
];

/// `[model.lora]`.
pub static LORA: &[KeySpec] = &[
    int("model.lora.rank", 0.0, 1.0, 4096.0).or_off(0.0).label(
        "LoRA rank",
        "rank of the low-rank adapters (only they are trained, the base stays frozen); 0 = full fine-tuning",
    ),
    float("model.lora.alpha", 16.0, 0.0, 1e6).open_min().label(
        "LoRA alpha",
        "the adapters' output is scaled by alpha / rank",
    ),
    float("model.lora.dropout", 0.0, 0.0, 1.0).open_max().label(
        "LoRA dropout",
        "dropout on the adapters' input in the training forward (not in sampling)",
    ),
    base(
        "model.lora.target_modules",
        Kind::TextList,
        Default::List(&["all-linear"]),
    )
    .label(
        "LoRA modules",
        "linear layers with adapters, PEFT's names: q_proj, k_proj, v_proj, o_proj, gate_proj, up_proj, down_proj, or [\"all-linear\"]",
    ),
];

/// `[task]` keys common to every task.
pub static TASK: &[KeySpec] = &[choice(
    "task.name",
    &["arithmetic", "countdown", "sorting", "reverse", "dataset"],
    "arithmetic",
)
.label(
    "Task",
    "the problems and their verifier; each task has its own knobs",
)];

/// Every built-in task with its knobs.
pub static TASKS: &[TaskSpec] = &[
    TaskSpec {
        name: "arithmetic",
        summary: "a+b= style integer arithmetic",
        keys: &[
            int("task.min_digits", 1.0, 1.0, 4.0)
                .unit("digits")
                .label("Fewest digits", "fewest digits per operand"),
            int("task.max_digits", 2.0, 1.0, 4.0)
                .unit("digits")
                .label("Most digits", "most digits per operand, at least task.min_digits"),
            text("task.ops", "+").label(
                "Operators",
                "operators to draw from: distinct characters from \"+-*\"",
            ),
            base("task.allow_negative", Kind::Bool, Default::Bool(true)).label(
                "Negative results",
                "allow negative results of -; if false the operands are swapped",
            ),
        ],
    },
    TaskSpec {
        name: "countdown",
        summary: "reach the target with + - * using the given numbers",
        keys: &[
            int("task.numbers", 3.0, 2.0, 4.0).label("Numbers", "how many numbers are given"),
            int("task.max_number", 9.0, 2.0, 50.0)
                .label("Largest number", "numbers are drawn from 1..=max_number"),
            text("task.ops", "+-*").label(
                "Operators",
                "operators the generator uses: distinct characters from \"+-*\" (the verifier accepts all three)",
            ),
            base("task.use_all", Kind::Bool, Default::Bool(true)).label(
                "Use all",
                "every number must be used exactly once; if false, each at most once",
            ),
        ],
    },
    TaskSpec {
        name: "sorting",
        summary: "sort a short list of integers",
        keys: &[
            int("task.min_len", 3.0, 2.0, 8.0).label("Shortest list", "fewest values"),
            int("task.max_len", 4.0, 2.0, 8.0)
                .label("Longest list", "most values, at least task.min_len"),
            int("task.max_value", 9.0, 1.0, 99.0)
                .label("Largest value", "values are drawn from 0..=max_value"),
            base("task.descending", Kind::Bool, Default::Bool(false)).label(
                "Descending",
                "sort in descending order (the prompt word is desc instead of sort)",
            ),
        ],
    },
    TaskSpec {
        name: "reverse",
        summary: "reverse a short string (partial credit per position)",
        keys: &[
            int("task.min_len", 3.0, 1.0, 12.0)
                .unit("characters")
                .label("Shortest string", "fewest characters"),
            int("task.max_len", 6.0, 1.0, 12.0)
                .unit("characters")
                .label("Longest string", "most characters, at least task.min_len"),
            choice("task.charset", &["digits", "letters", "alnum"], "digits")
                .label("Characters", "characters the strings are drawn from"),
        ],
    },
    TaskSpec {
        name: "dataset",
        summary: "problems from a JSONL file: prompt, answer, other fields as metadata",
        keys: &[base("task.path", Kind::Path, Default::Text("")).label(
            "JSONL file",
            "one JSON object per line with prompt and answer; other fields are kept as metadata",
        )],
    },
];

/// `[rollout]`.
pub static ROLLOUT: &[KeySpec] = &[
    int("rollout.prompts_per_step", 16.0, 1.0, 1024.0)
        .unit("prompts")
        .label("Prompts per step", "prompts sampled for each update (B)"),
    int("rollout.group_size", 8.0, 1.0, 256.0)
        .unit("completions")
        .label("Group size", "completions per prompt (G)"),
    int("rollout.max_new_tokens", 0.0, 0.0, 4096.0)
        .unit("tokens")
        .label(
            "Max new tokens",
            "longest completion; 0 = the task's longest answer + 2",
        ),
    float("rollout.temperature", 1.0, 0.0, 5.0)
        .label("Temperature", "sampling temperature; 0 = greedy"),
    int("rollout.top_k", 0.0, 0.0, 1_000_000.0)
        .unit("tokens")
        .label("Top-k", "keep the k most likely tokens; 0 = off"),
    float("rollout.top_p", 1.0, 0.0, 1.0).open_min().label(
        "Top-p",
        "nucleus sampling: keep the smallest set with this mass; 1 = off",
    ),
    float("rollout.min_p", 0.0, 0.0, 1.0).open_max().label(
        "Min-p",
        "drop tokens below min_p x the top probability; 0 = off",
    ),
    text("rollout.sampler", "").label(
        "Plugin sampler",
        "a plugin sampler transforming each row's logits before the filters; empty = none",
    ),
    base("rollout.sampler_params", Kind::Params, Default::Empty)
        .label("Sampler parameters", "the plugin sampler's parameters"),
];

/// `[algorithm]`.
pub static ALGORITHM: &[KeySpec] = &[
    text("algorithm.advantage", "grpo").label(
        "Advantage estimator",
        "grpo, dr_grpo, rloo, reinforce_pp, passk, qae, w_reinforce, ppo, or a plugin algorithm",
    ),
    base("algorithm.advantage_params", Kind::Params, Default::Empty)
        .label("Estimator parameters", "the estimator's parameters, e.g. { k = 4 } for passk"),
    choice("algorithm.zero_variance", &["keep", "resample"], "keep").label(
        "Zero-variance groups",
        "groups with equal rewards: keep them, or resample (DAPO dynamic sampling)",
    ),
    int("algorithm.resample_rounds", 3.0, 1.0, 16.0)
        .label("Resample rounds", "extra rollout rounds for zero_variance = resample"),
    choice("algorithm.ratio", &["token", "sequence"], "token").label(
        "Ratio level",
        "token ratio (PPO/GRPO) or sequence ratio (GSPO)",
    ),
    float("algorithm.epsilon_low", 0.2, 0.0, 1.0)
        .label("ε low", "lower clip range of the ratio"),
    float("algorithm.epsilon_high", 0.2, 0.0, 10.0)
        .label("ε high", "upper clip range (clip-higher when above epsilon_low)"),
    float("algorithm.dual_clip", 0.0, 1.0, 100.0).or_off(0.0).label(
        "Dual clip",
        "dual-clip constant c bounding the loss of negative-advantage tokens at c·|A|; 0 = off",
    ),
    choice("algorithm.kl", &["k1", "k2", "k3"], "k3")
        .label("KL estimator", "estimator of the KL to the reference policy"),
    float("algorithm.kl_coef", 0.0, 0.0, 10.0)
        .label("KL coefficient", "β of the KL to the reference policy; 0 = no reference model"),
    choice("algorithm.divergence", &["none", "forward_kl", "js"], "none").label(
        "Divergence",
        "mass-covering divergence to the initial policy on a rehearsal set (DPH-RL)",
    ),
    float("algorithm.divergence_coef", 0.1, 0.0, 10.0)
        .label("Divergence coefficient", "weight of the DPH-RL divergence"),
    int("algorithm.rehearsal_size", 512.0, 1.0, 65_536.0)
        .unit("completions")
        .label("Rehearsal set", "completions sampled from the initial policy for DPH-RL"),
    int("algorithm.rehearsal_batch", 64.0, 1.0, 4096.0)
        .unit("completions")
        .label("Rehearsal batch", "rehearsal completions per step"),
    int("algorithm.reference_reset_every", 0.0, 0.0, 1_000_000.0)
        .unit("steps")
        .label(
            "Reference reset",
            "reset the reference policy and optimizer moments every N steps (ProRL); 0 = never",
        ),
    float("algorithm.entropy_coef", 0.0, 0.0, 1.0)
        .label("Entropy bonus", "entropy bonus coefficient α"),
    float("algorithm.top_entropy_fraction", 1.0, 0.0, 1.0)
        .open_min()
        .label(
            "Top-entropy fraction",
            "policy gradient only on this fraction of highest-entropy tokens (0.2 = 80/20 rule); 1 = all",
        ),
    float("algorithm.lp_reg_coef", 0.0, 0.0, 10.0).label(
        "Lp-Reg coefficient",
        "KL from a low-probability proxy on protected negative-advantage tokens; 0 = off",
    ),
    float("algorithm.lp_reg_min_p", 0.02, 0.0, 1.0)
        .open_max()
        .label("Lp-Reg noise threshold", "relative to the top probability"),
    float("algorithm.lp_reg_low_fraction", 0.2, 0.0, 1.0)
        .open_min()
        .label("Lp-Reg protected fraction", "lowest fraction of log-probs Lp-Reg protects"),
    int("algorithm.inner_updates", 1.0, 1.0, 64.0)
        .label("Inner updates", "policy updates per batch (μ)"),
    choice(
        "algorithm.aggregation",
        &["grpo", "bnpo", "dr_grpo", "dapo", "seq_mean_token_mean", "token_mean"],
        "grpo",
    )
    .label(
        "Loss aggregation",
        "how token losses are reduced to one number (seq_mean_token_mean = grpo, token_mean = dapo)",
    ),
    choice("algorithm.overlong", &["none", "mask", "soft"], "none").label(
        "Overlong",
        "completions cut at the limit: nothing, mask them, or the soft overlong penalty (DAPO)",
    ),
    int("algorithm.overlong_window", 4.0, 1.0, 4096.0)
        .unit("tokens")
        .label("Overlong window", "tokens before the limit where the soft penalty grows"),
];

/// `[rewards]`.
pub static REWARDS: &[KeySpec] = &[
    float("rewards.flip_false_negative", 0.0, 0.0, 1.0)
        .open_max()
        .label(
            "False-negative rate",
            "chance a correct answer is scored wrong (injected noise)",
        ),
    float("rewards.flip_false_positive", 0.0, 0.0, 1.0)
        .open_max()
        .label(
            "False-positive rate",
            "chance a wrong answer is scored right (injected noise)",
        ),
    choice(
        "rewards.correction",
        &["none", "backward", "forward"],
        "none",
    )
    .label(
        "Noise correction",
        "correction applied to the observed binary reward",
    ),
    float("rewards.assumed_false_negative", -1.0, -1.0, 1.0)
        .open_max()
        .label(
            "Assumed false-negative rate",
            "rate the correction assumes; -1 = the injected rate",
        ),
    float("rewards.assumed_false_positive", -1.0, -1.0, 1.0)
        .open_max()
        .label(
            "Assumed false-positive rate",
            "rate the correction assumes; -1 = the injected rate",
        ),
    text("rewards.verifier", "task").label(
        "Verifier",
        "task (the task's own exact verifier) or a plugin verifier",
    ),
    base("rewards.verifier_params", Kind::Params, Default::Empty)
        .label("Verifier parameters", "the plugin verifier's parameters"),
];

/// Keys of one `[[rewards.components]]` entry (an extra reward component).
pub static COMPONENT_KEYS: &[KeySpec] = &[
    text("rewards.components[].name", "").label("Component", "a plugin verifier or rubric"),
    float("rewards.components[].weight", 1.0, -100.0, 100.0).label(
        "Weight",
        "weight of its score in the total reward; 0 = logged only",
    ),
    base("rewards.components[].params", Kind::Params, Default::Empty)
        .label("Parameters", "its parameters"),
];

/// `[optim]`.
pub static OPTIM: &[KeySpec] = &[
    float("optim.lr", 1e-4, 0.0, 1.0)
        .open_min()
        .label("Learning rate", "peak learning rate"),
    float("optim.beta1", 0.9, 0.0, 1.0)
        .open_max()
        .label("AdamW β1", "first-moment decay"),
    float("optim.beta2", 0.99, 0.0, 1.0)
        .open_max()
        .label("AdamW β2", "second-moment decay"),
    float("optim.eps", 1e-8, 0.0, 1.0)
        .open_min()
        .open_max()
        .label("AdamW ε", "added to the denominator"),
    float("optim.weight_decay", 0.0, 0.0, 1.0).label("Weight decay", "decoupled weight decay"),
    float("optim.grad_clip", 1.0, 0.0, 1e6).label(
        "Gradient clip",
        "clip the global gradient norm to this value; 0 = off",
    ),
    choice(
        "optim.schedule",
        &["constant", "linear", "cosine"],
        "constant",
    )
    .label("Schedule", "learning-rate schedule after warm-up"),
    int("optim.warmup_steps", 0.0, 0.0, 1_000_000.0)
        .unit("steps")
        .label("Warm-up", "linear warm-up steps, at most steps"),
    float("optim.min_lr_ratio", 0.1, 0.0, 1.0).label(
        "Final LR ratio",
        "final learning rate of linear/cosine decay as a fraction of lr",
    ),
    int("optim.micro_batch", 0.0, 0.0, 1_000_000.0)
        .unit("rows")
        .label(
            "Micro-batch",
            "rows per forward/backward of the update in each worker, gradients summed over them (less memory, same update); 0 = all of a worker's rows at once",
        ),
];

/// `[eval]`.
pub static EVAL: &[KeySpec] = &[
    int("eval.every", 25.0, 0.0, 1_000_000.0)
        .unit("steps")
        .label(
        "Evaluate every",
        "held-out evaluation every N steps (and at the start and end); 0 = only at start and end",
    ),
    int("eval.heldout_size", 200.0, 1.0, 100_000.0)
        .unit("problems")
        .label(
            "Held-out problems",
            "problems held out from training, disjoint from the training stream",
        ),
    int("eval.samples", 0.0, 0.0, 256.0).unit("samples").label(
        "Samples per problem",
        "samples per held-out problem for pass@k; 0 = the group size",
    ),
    float("eval.temperature", 1.0, 0.0, 5.0)
        .label("Eval temperature", "sampling temperature for pass@k"),
];

/// `[output]`.
pub static OUTPUT: &[KeySpec] = &[
    base("output.dir", Kind::Path, Default::Text("")).label(
        "Output folder",
        "policy, metrics.jsonl, config.toml and checkpoints; empty = runs/<name>",
    ),
    int("output.checkpoint_every", 1.0, 0.0, 1_000_000.0)
        .unit("steps")
        .label(
            "Resume state every",
            "take the resume state (resume-{0,1}.ckpt) every N steps and at the end; 0 = only at the end",
        ),
    int("output.keep_every", 100.0, 0.0, 1_000_000.0)
        .unit("steps")
        .label("Keep policy every", "keep a copy of the policy (checkpoints/step-N) every N steps; 0 = never"),
    {
        let mut s = int("output.keep_groups", 0.0, 0.0, 1_000_000.0);
        s.default = Default::Absent;
        s.unit("groups")
            .label("Groups kept", "sampled groups per step kept in the run history; absent = all")
    },
];

/// `[plugins]`.
pub static PLUGINS: &[KeySpec] = &[
    base("plugins.dirs", Kind::PathList, Default::Empty).label(
        "Plugin folders",
        "extra folders scanned for plugin libraries (beside the user plugin folder and --plugins)",
    ),
    base("plugins.isolated", Kind::TextList, Default::Empty).label(
        "Isolated plugins",
        "plugins hosted in a child process: a crash or an endless loop kills only the child",
    ),
    int("plugins.deadline_ms", 10_000.0, 1.0, 600_000.0)
        .unit("ms")
        .label(
            "Call deadline",
            "deadline of one plugin call (a verifier batch, an algorithm step, a sampler call)",
        ),
];

/// Every section in file order.
pub static SECTIONS: &[Section] = &[
    Section {
        name: "",
        title: "Run",
        keys: TOP,
    },
    Section {
        name: "model",
        title: "Model",
        keys: MODEL,
    },
    Section {
        name: "model.lora",
        title: "LoRA",
        keys: LORA,
    },
    Section {
        name: "task",
        title: "Task",
        keys: TASK,
    },
    Section {
        name: "rollout",
        title: "Rollout",
        keys: ROLLOUT,
    },
    Section {
        name: "algorithm",
        title: "Algorithm",
        keys: ALGORITHM,
    },
    Section {
        name: "rewards",
        title: "Rewards",
        keys: REWARDS,
    },
    Section {
        name: "optim",
        title: "Optimizer",
        keys: OPTIM,
    },
    Section {
        name: "eval",
        title: "Evaluation",
        keys: EVAL,
    },
    Section {
        name: "output",
        title: "Output",
        keys: OUTPUT,
    },
    Section {
        name: "plugins",
        title: "Plugins",
        keys: PLUGINS,
    },
];

/// Every key of the run-level sections (tasks and reward components excluded).
pub fn keys() -> impl Iterator<Item = &'static KeySpec> {
    SECTIONS.iter().flat_map(|s| s.keys.iter())
}

/// The spec of a run-level key.
pub fn find(key: &str) -> Option<&'static KeySpec> {
    keys().find(|k| k.key == key)
}

/// A task's spec.
pub fn task(name: &str) -> Option<&'static TaskSpec> {
    TASKS.iter().find(|t| t.name == name)
}

/// The spec of a task knob (`knob` without the `task.` prefix).
pub fn task_key(task_name: &str, knob: &str) -> Option<&'static KeySpec> {
    task(task_name)?.keys.iter().find(|k| k.name() == knob)
}

/// The value at a dotted key of a TOML table.
pub fn lookup_value<'a>(root: &'a toml::Table, key: &str) -> Option<&'a toml::Value> {
    let mut parts = key.split('.');
    let first = parts.next()?;
    let mut v = root.get(first)?;
    for p in parts {
        v = v.as_table()?.get(p)?;
    }
    Some(v)
}

/// Checks one present value against its spec (type and range; NaN and infinities are refused).
pub fn check(spec: &KeySpec, v: &toml::Value) -> Result<()> {
    let wrong = |what: &str| CoreError::config(spec.key, v, format!("expected {what}"));
    match spec.kind {
        Kind::Int | Kind::Float => {
            let x = match v {
                toml::Value::Integer(i) => *i as f64,
                toml::Value::Float(f) if spec.kind == Kind::Float => *f,
                _ if spec.kind == Kind::Int => return Err(wrong("a whole number")),
                _ => return Err(wrong("a number")),
            };
            if !spec.admits(x) {
                return Err(spec.range_error(v));
            }
        }
        Kind::Bool if !v.is_bool() => return Err(wrong("true or false")),
        Kind::Text | Kind::Path if !v.is_str() => return Err(wrong("a string in quotes")),
        Kind::Choice(opts) if !v.as_str().is_some_and(|s| opts.contains(&s)) => {
            return Err(wrong(&format!("one of {}", opts.join(", "))));
        }
        Kind::Params if !v.is_table() => return Err(wrong("a table, e.g. { k = 4 }")),
        Kind::TextList | Kind::PathList
            if !v
                .as_array()
                .is_some_and(|a| a.iter().all(toml::Value::is_str)) =>
        {
            return Err(wrong("a list of strings"));
        }
        _ => {}
    }
    Ok(())
}

/// Checks every key present in `root` (a whole run config as a TOML table) against the table:
/// the run-level sections, the task's knobs and each reward component. Keys that are absent are
/// at their defaults, which are valid.
pub fn validate(root: &toml::Table) -> Result<()> {
    for spec in keys() {
        if let Some(v) = lookup_value(root, spec.key) {
            check(spec, v)?;
        }
    }
    let task = root.get("task").and_then(toml::Value::as_table);
    if let Some(t) = task {
        let name = t
            .get("name")
            .and_then(toml::Value::as_str)
            .unwrap_or("arithmetic");
        if let Some(ts) = self::task(name) {
            for spec in ts.keys {
                if let Some(v) = t.get(spec.name()) {
                    check(spec, v)?;
                }
            }
        }
    }
    let components = lookup_value(root, "rewards.components").and_then(toml::Value::as_array);
    for (i, c) in components.into_iter().flatten().enumerate() {
        let Some(c) = c.as_table() else { continue };
        for spec in COMPONENT_KEYS {
            if let Some(v) = c.get(spec.name()) {
                let indexed = spec.key.replace("[]", &format!("[{i}]"));
                check(spec, v).map_err(|e| match e {
                    CoreError::Config {
                        value, expected, ..
                    } => CoreError::Config {
                        key: indexed,
                        value,
                        expected,
                    },
                    other => other,
                })?;
            }
        }
    }
    Ok(())
}

fn default_value(spec: &KeySpec) -> Option<String> {
    Some(match spec.default {
        Default::Num(v) if spec.kind == Kind::Int => num(v),
        Default::Num(v) => {
            let s = format!("{v:?}");
            if s.contains('.') || s.contains('e') {
                s
            } else {
                format!("{s}.0")
            }
        }
        Default::Bool(b) => b.to_string(),
        Default::Text(t) => format!("{t:?}"),
        Default::Empty => match spec.kind {
            Kind::Params => "{}".into(),
            _ => "[]".into(),
        },
        Default::List(items) => format!("{items:?}"),
        Default::Absent => return None,
    })
}

fn comment(out: &mut String, spec: &KeySpec) {
    let mut line = format!("# {}: {}", spec.label, spec.help);
    if spec.kind.is_number() {
        let _ = write!(line, ". {}", spec.allowed());
        if !spec.unit.is_empty() {
            let _ = write!(line, " {}", spec.unit);
        }
    } else if let Kind::Choice(opts) = spec.kind {
        let _ = write!(line, ". One of {}", opts.join(", "));
    }
    let _ = writeln!(out, "{line}.");
}

fn key_lines(out: &mut String, specs: &[KeySpec]) {
    for spec in specs {
        comment(out, spec);
        match default_value(spec) {
            Some(v) => {
                let _ = writeln!(out, "{} = {v}", spec.name());
            }
            None => {
                let _ = writeln!(out, "# {} = 64", spec.name());
            }
        }
    }
}

/// A commented run config with every key at its default (what `rlvr-studio default-config`
/// prints); it parses back to the default configuration.
pub fn default_toml() -> String {
    let mut out = String::from(
        "# RLVR Studio run configuration: every key at its default, with its range.\n\
         # Reference: README.md (Configuration reference); schema: `rlvr-studio config-schema`.\n\n",
    );
    for s in SECTIONS {
        if !s.name.is_empty() {
            let _ = writeln!(out, "\n[{}]", s.name);
        }
        key_lines(&mut out, s.keys);
        if s.name == "task" {
            if let Some(t) = TASKS.first() {
                let others: Vec<&str> = TASKS.iter().skip(1).map(|t| t.name).collect();
                let _ = writeln!(
                    out,
                    "# Knobs of task {:?} ({}); the other tasks ({}) have their own (README).",
                    t.name,
                    t.summary,
                    others.join(", ")
                );
                key_lines(&mut out, t.keys);
            }
        }
        if s.name == "rewards" {
            out.push_str(
                "# Extra reward components, each added with its weight:\n\
                 # [[rewards.components]]\n# name = \"my_rubric\"\n# weight = 1.0\n# params = {}\n",
            );
        }
    }
    out
}

fn md_row(out: &mut String, spec: &KeySpec) {
    let default = match spec.default {
        Default::Text(t) if spec.key == "model.path" => {
            let _ = t;
            "the bundled default policy".to_string()
        }
        Default::Absent => "absent".to_string(),
        _ => default_value(spec).unwrap_or_default(),
    };
    let allowed = match spec.kind {
        Kind::Int | Kind::Float => spec.allowed(),
        Kind::Choice(opts) => opts.join(", "),
        k => k.word().to_string(),
    };
    let unit = if spec.unit.is_empty() {
        String::new()
    } else {
        format!(" {}", spec.unit)
    };
    let _ = writeln!(
        out,
        "| `{}` | {}{unit} | `{}` | {}: {} |",
        spec.key,
        allowed,
        default.replace('|', "\\|"),
        spec.label,
        spec.help.replace('|', "\\|")
    );
}

/// The config reference as Markdown tables (the README's "Configuration reference").
pub fn markdown_reference() -> String {
    let mut out = String::new();
    let header = "| key | allowed | default | meaning |\n|---|---|---|---|\n";
    for s in SECTIONS {
        let name = if s.name.is_empty() {
            "top level".to_string()
        } else {
            format!("`[{}]`", s.name)
        };
        let _ = write!(out, "\n**{} ({name})**\n\n{header}", s.title);
        for spec in s.keys {
            md_row(&mut out, spec);
        }
        if s.name == "rewards" {
            for spec in COMPONENT_KEYS {
                md_row(&mut out, spec);
            }
        }
    }
    for t in TASKS {
        let _ = write!(out, "\n**Task `{}`** ({})\n\n{header}", t.name, t.summary);
        for spec in t.keys {
            md_row(&mut out, spec);
        }
    }
    out
}

fn key_schema(spec: &KeySpec) -> serde_json::Value {
    use serde_json::{json, Map, Value};
    let mut m = Map::new();
    let ty = match spec.kind {
        Kind::Int => "integer",
        Kind::Float => "number",
        Kind::Bool => "boolean",
        Kind::Text | Kind::Path | Kind::Choice(_) => "string",
        Kind::Params => "object",
        Kind::TextList | Kind::PathList => "array",
    };
    m.insert("type".into(), json!(ty));
    let mut desc = format!("{}: {}", spec.label, spec.help);
    if !spec.unit.is_empty() {
        let _ = write!(desc, " ({})", spec.unit);
    }
    m.insert("description".into(), json!(desc));
    if let Kind::Choice(opts) = spec.kind {
        m.insert("enum".into(), json!(opts));
    }
    if matches!(spec.kind, Kind::TextList | Kind::PathList) {
        m.insert("items".into(), json!({ "type": "string" }));
    }
    let mut range = Map::new();
    if let Some(b) = spec.min {
        let k = if b.open {
            "exclusiveMinimum"
        } else {
            "minimum"
        };
        range.insert(k.into(), json!(b.value));
    }
    if let Some(b) = spec.max {
        let k = if b.open {
            "exclusiveMaximum"
        } else {
            "maximum"
        };
        range.insert(k.into(), json!(b.value));
    }
    match spec.off {
        Some(off) => {
            m.insert(
                "anyOf".into(),
                json!([{ "const": off }, Value::Object(range)]),
            );
        }
        None => m.extend(range),
    }
    match spec.default {
        Default::Num(v) if spec.kind == Kind::Int => {
            m.insert("default".into(), json!(v as i64));
        }
        Default::Num(v) => {
            m.insert("default".into(), json!(v));
        }
        Default::Bool(b) => {
            m.insert("default".into(), json!(b));
        }
        Default::Text(t) => {
            m.insert("default".into(), json!(t));
        }
        Default::Empty => {
            let empty = if spec.kind == Kind::Params {
                json!({})
            } else {
                json!([])
            };
            m.insert("default".into(), empty);
        }
        Default::List(items) => {
            m.insert("default".into(), json!(items));
        }
        Default::Absent => {}
    }
    Value::Object(m)
}

fn object(props: serde_json::Map<String, serde_json::Value>, title: &str) -> serde_json::Value {
    serde_json::json!({
        "type": "object",
        "description": title,
        "additionalProperties": false,
        "properties": props,
    })
}

/// The JSON Schema (draft 2020-12) of a run config, for editors' TOML/JSON completion
/// (`rlvr-studio config-schema`).
pub fn json_schema() -> serde_json::Value {
    use serde_json::{json, Map, Value};
    let mut root = Map::new();
    for s in SECTIONS {
        let mut props = Map::new();
        for spec in s.keys {
            props.insert(spec.name().into(), key_schema(spec));
        }
        match s.name {
            "" => root.extend(props),
            "task" => {
                let variants: Vec<Value> = TASKS
                    .iter()
                    .map(|t| {
                        let mut p = Map::new();
                        let mut name = key_schema(&s.keys[0]);
                        if let Some(o) = name.as_object_mut() {
                            o.remove("enum");
                            o.insert("const".into(), json!(t.name));
                        }
                        p.insert("name".into(), name);
                        for spec in t.keys {
                            p.insert(spec.name().into(), key_schema(spec));
                        }
                        let mut o = object(p, t.summary);
                        if t.name != "arithmetic" {
                            o["required"] = json!(["name"]);
                        }
                        o
                    })
                    .collect();
                root.insert(
                    "task".into(),
                    json!({ "description": s.title, "type": "object", "oneOf": variants }),
                );
            }
            name => {
                if name == "rewards" {
                    let mut c = Map::new();
                    for spec in COMPONENT_KEYS {
                        c.insert(spec.name().into(), key_schema(spec));
                    }
                    let mut item = object(c, "an extra reward component");
                    item["required"] = json!(["name"]);
                    props.insert(
                        "components".into(),
                        json!({ "type": "array", "description": "extra reward components (plugin verifiers or rubrics), each added with its weight", "items": item, "default": [] }),
                    );
                }
                let obj = object(props, s.title);
                // A subsection (`model.lora`) is a property of its section's object.
                match name.split_once('.') {
                    Some((parent, child)) => {
                        if let Some(p) = root
                            .get_mut(parent)
                            .and_then(|p| p.get_mut("properties"))
                            .and_then(Value::as_object_mut)
                        {
                            p.insert(child.into(), obj);
                        }
                    }
                    None => {
                        root.insert(name.into(), obj);
                    }
                }
            }
        }
    }
    let mut schema = object(root, "RLVR Studio run configuration");
    if let Some(o) = schema.as_object_mut() {
        o.insert(
            "$schema".into(),
            json!("https://json-schema.org/draft/2020-12/schema"),
        );
        o.insert("title".into(), json!("RLVR Studio run config"));
    }
    schema
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn ranges_read_as_written() {
        assert_eq!(find("rollout.group_size").unwrap().allowed(), "1..=256");
        assert_eq!(find("rollout.top_p").unwrap().allowed(), "(0, 1]");
        assert_eq!(find("optim.eps").unwrap().allowed(), "(0, 1)");
        assert_eq!(
            find("algorithm.dual_clip").unwrap().allowed(),
            "0 (off) or 1..=100"
        );
    }

    #[test]
    fn non_finite_and_out_of_range_values_are_refused_with_the_key() {
        let t: toml::Table = toml::from_str("[rewards]\nassumed_false_negative = nan").unwrap();
        let e = validate(&t).unwrap_err().to_string();
        assert!(e.starts_with("rewards.assumed_false_negative = nan"), "{e}");
        let t: toml::Table = toml::from_str("[rewards]\nassumed_false_positive = 2.0").unwrap();
        let e = validate(&t).unwrap_err().to_string();
        assert!(e.starts_with("rewards.assumed_false_positive = 2.0"), "{e}");
        let t: toml::Table = toml::from_str("[optim]\nlr = inf").unwrap();
        assert!(validate(&t).is_err());
        let t: toml::Table =
            toml::from_str("[[rewards.components]]\nname = \"x\"\nweight = 101.0").unwrap();
        let e = validate(&t).unwrap_err().to_string();
        assert!(e.starts_with("rewards.components[0].weight = 101.0"), "{e}");
        let t: toml::Table = toml::from_str("[task]\nname = \"countdown\"\nnumbers = 5").unwrap();
        let e = validate(&t).unwrap_err().to_string();
        assert!(e.starts_with("task.numbers = 5"), "{e}");
    }

    #[test]
    fn every_key_has_a_label_help_and_a_valid_default() {
        let all = keys()
            .chain(COMPONENT_KEYS)
            .chain(TASKS.iter().flat_map(|t| t.keys.iter()));
        for k in all {
            assert!(!k.label.is_empty() && !k.help.is_empty(), "{}", k.key);
            if let Default::Num(v) = k.default {
                assert!(k.admits(v), "{} default {v}", k.key);
            }
            if let (Kind::Choice(opts), Default::Text(t)) = (k.kind, k.default) {
                assert!(opts.contains(&t), "{}", k.key);
            }
        }
    }

    #[test]
    fn the_default_toml_is_valid_against_the_table() {
        let t: toml::Table = toml::from_str(&default_toml()).unwrap();
        validate(&t).unwrap();
    }
}
