//! The run configuration, read from TOML: [`RunConfig`] and its sections. Every key's type,
//! default, range, label and help is a row of the spec table ([`crate::spec`]), the one place
//! they are written; the field comments here say what a key means, not its range. Validation
//! checks the raw TOML against the table before serde (so errors name the key), then the rules
//! that relate keys. Unknown keys are errors naming the key, the value and what is allowed.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use std::collections::BTreeMap;

use crate::error::{CoreError, Result};
use crate::extensions::{ComponentKind, Extensions};
use crate::params::{ParamValue, Params};
use crate::spec;

pub mod choices;
pub mod estimators;
mod rules;
pub mod task;

pub use choices::{
    Aggregation, Divergence, KlEstimator, NoiseCorrection, Overlong, RatioLevel, Schedule,
    ZeroVariance,
};
pub use estimators::EstimatorSpec;
pub use task::{TaskConfig, TaskError};

/// A whole training run.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RunConfig {
    /// Run name (used for the default output folder).
    pub name: String,
    /// Seed of everything random: held-out split, prompt stream, sampling.
    pub seed: u64,
    /// Number of policy-update steps.
    pub steps: usize,
    /// CPU threads to use; 0 = all cores. Models under 5 M parameters use them as data-parallel
    /// workers (each batch split across threads, each running tensor ops single-threaded); larger
    /// models use them inside each tensor op.
    pub threads: usize,
    /// The policy model.
    pub model: ModelSection,
    /// The task (dataset) and its difficulty knobs.
    pub task: TaskConfig,
    /// How completions are sampled.
    pub rollout: RolloutConfig,
    /// Advantage estimator and policy loss.
    pub algorithm: AlgorithmConfig,
    /// Reward noise and corrections.
    pub rewards: RewardConfig,
    /// Optimizer.
    pub optim: OptimConfig,
    /// Held-out evaluation.
    pub eval: EvalConfig,
    /// Where results go.
    pub output: OutputConfig,
    /// Plugin libraries: extra folders, isolation, deadlines.
    pub plugins: PluginsConfig,
}

impl Default for RunConfig {
    fn default() -> Self {
        Self {
            name: "run".into(),
            seed: 0,
            steps: 200,
            threads: 0,
            model: ModelSection::default(),
            task: TaskConfig::default(),
            rollout: RolloutConfig::default(),
            algorithm: AlgorithmConfig::default(),
            rewards: RewardConfig::default(),
            optim: OptimConfig::default(),
            eval: EvalConfig::default(),
            output: OutputConfig::default(),
            plugins: PluginsConfig::default(),
        }
    }
}

/// `[model]`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ModelSection {
    /// Hugging Face model folder (config.json, tokenizer.json, *.safetensors). A relative path is
    /// resolved against the folder of the config file. Default: the embedded default policy
    /// (`app/assets/default-policy`).
    pub path: PathBuf,
    /// Render every prompt through the folder's chat template (a system message when
    /// `system_prompt` is set, the user's turn, the opening of the assistant's turn); false gives
    /// the model the task's prompt text as it is.
    pub chat_template: bool,
    /// The system message of the chat template; empty leaves the template's own default.
    pub system_prompt: String,
    /// Qwen3's `enable_thinking`: false makes the template close an empty thinking block.
    pub enable_thinking: bool,
    /// Where the run computes: `auto` (the first CUDA GPU of a CUDA build, else the CPU),
    /// `cpu`, or `cuda:N`.
    pub device: String,
    /// Recompute each layer's activations in the backward pass instead of keeping them
    /// (gradient checkpointing): less memory for one more forward.
    pub gradient_checkpointing: bool,
    /// Low-rank adapters; `rank = 0` trains every weight.
    pub lora: LoraSection,
}

/// `[model.lora]`: LoRA adapters as PEFT defines them ("LoRA: Low-Rank Adaptation of Large
/// Language Models", Hu et al. 2021): each targeted linear layer `W` computes
/// `W x + (alpha / rank) · B A dropout(x)`, only `A` and `B` are trained.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LoraSection {
    /// Rank of the adapters; 0 = no adapters (full fine-tuning).
    pub rank: usize,
    /// Scaling numerator: the adapters' output is multiplied by `alpha / rank`.
    pub alpha: f64,
    /// Dropout on the adapters' input during the training forward.
    pub dropout: f64,
    /// Linear layers that get adapters, by PEFT's names (`q_proj`, `k_proj`, `v_proj`,
    /// `o_proj`, `gate_proj`, `up_proj`, `down_proj`) or `["all-linear"]`.
    pub target_modules: Vec<String>,
}

/// The linear layers of a decoder block, by PEFT's `target_modules` names, in block order.
pub const LORA_MODULES: [&str; 7] = [
    "q_proj",
    "k_proj",
    "v_proj",
    "o_proj",
    "gate_proj",
    "up_proj",
    "down_proj",
];

impl LoraSection {
    /// Whether adapters are trained (`rank > 0`).
    pub fn enabled(&self) -> bool {
        self.rank > 0
    }

    /// The targeted modules in block order (`all-linear` expanded), or the entry that is not a
    /// module name.
    pub fn modules(&self) -> std::result::Result<Vec<&'static str>, String> {
        if self.target_modules.iter().any(|m| m == "all-linear") {
            if self.target_modules.len() > 1 {
                return Err("\"all-linear\" alone, or a list of module names".into());
            }
            return Ok(LORA_MODULES.to_vec());
        }
        for m in &self.target_modules {
            if !LORA_MODULES.contains(&m.as_str()) {
                return Err(format!(
                    "module names among {} (or \"all-linear\"), not {m:?}",
                    LORA_MODULES.join(", ")
                ));
            }
        }
        if self.target_modules.is_empty() {
            return Err("at least one module name, or \"all-linear\"".into());
        }
        Ok(LORA_MODULES
            .into_iter()
            .filter(|m| self.target_modules.iter().any(|t| t == m))
            .collect())
    }
}

/// `model.device` parsed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DeviceChoice {
    /// The first CUDA GPU when the build has CUDA and one is present, else the CPU.
    Auto,
    /// The CPU.
    Cpu,
    /// CUDA GPU number N.
    Cuda(usize),
}

impl ModelSection {
    /// `device` parsed: `auto`, `cpu` or `cuda:N` (`cuda` alone is `cuda:0`).
    pub fn device_choice(&self) -> Result<DeviceChoice> {
        let d = self.device.trim();
        let parsed = match d {
            "auto" => Some(DeviceChoice::Auto),
            "cpu" => Some(DeviceChoice::Cpu),
            "cuda" => Some(DeviceChoice::Cuda(0)),
            _ => d
                .strip_prefix("cuda:")
                .and_then(|n| n.parse().ok())
                .map(DeviceChoice::Cuda),
        };
        parsed.ok_or_else(|| {
            CoreError::config(
                "model.device",
                format!("{:?}", self.device),
                "\"auto\", \"cpu\" or \"cuda:N\" (N the GPU's number, e.g. cuda:0)",
            )
        })
    }
}

impl Default for LoraSection {
    fn default() -> Self {
        Self {
            rank: 0,
            alpha: 16.0,
            dropout: 0.0,
            target_modules: vec!["all-linear".into()],
        }
    }
}

impl Default for ModelSection {
    fn default() -> Self {
        Self {
            path: PathBuf::from(spec::DEFAULT_MODEL_PATH),
            chat_template: false,
            system_prompt: String::new(),
            enable_thinking: true,
            device: "auto".into(),
            gradient_checkpointing: false,
            lora: LoraSection::default(),
        }
    }
}

/// `[rollout]`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RolloutConfig {
    /// Prompts per step (B).
    pub prompts_per_step: usize,
    /// Completions per prompt (G).
    pub group_size: usize,
    /// Longest completion in tokens; 0 = the task's longest answer + 2.
    pub max_new_tokens: usize,
    /// Sampling temperature (0 = greedy).
    pub temperature: f32,
    /// Top-k filter, 0 = off.
    pub top_k: usize,
    /// Top-p (nucleus) filter, 1 = off.
    pub top_p: f32,
    /// Min-p filter, 0 = off.
    pub min_p: f32,
    /// A plugin sampler that transforms each row's next-token logits before the built-in filters
    /// ("" = none).
    pub sampler: String,
    /// The plugin sampler's parameters (checked against its specs).
    pub sampler_params: BTreeMap<String, ParamValue>,
}

impl Default for RolloutConfig {
    fn default() -> Self {
        Self {
            prompts_per_step: 16,
            group_size: 8,
            max_new_tokens: 0,
            temperature: 1.0,
            top_k: 0,
            top_p: 1.0,
            min_p: 0.0,
            sampler: String::new(),
            sampler_params: BTreeMap::new(),
        }
    }
}

/// `[algorithm]`: advantage estimator + policy loss pieces.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AlgorithmConfig {
    /// Advantage estimator by name: grpo, dr_grpo, rloo, reinforce_pp, passk, qae, w_reinforce (see
    /// [`estimators::ESTIMATORS`]).
    pub advantage: String,
    /// The estimator's parameters (checked against its specs), e.g. `{ k = 4 }` for passk.
    pub advantage_params: BTreeMap<String, ParamValue>,
    /// Groups whose rewards are all equal carry no signal: "keep" them, or "resample" (DAPO's
    /// dynamic sampling: draw more prompts until the batch is full of informative groups, at most
    /// `resample_rounds` extra rollouts).
    pub zero_variance: ZeroVariance,
    /// Extra rollout rounds for `zero_variance = "resample"`.
    pub resample_rounds: usize,
    /// "token" ratio (PPO/GRPO) or "sequence" ratio (GSPO).
    pub ratio: RatioLevel,
    /// Lower clip range ε_low of the ratio.
    pub epsilon_low: f64,
    /// Upper clip range ε_high ("clip-higher" when above ε_low).
    pub epsilon_high: f64,
    /// Dual-clip constant c (bounds the loss of negative-advantage tokens at c·|A|); 0 = off.
    pub dual_clip: f64,
    /// KL estimator toward the reference policy: "k1", "k2" or "k3".
    pub kl: KlEstimator,
    /// KL coefficient β; 0 = no reference model.
    pub kl_coef: f64,
    /// Mass-covering divergence to the initial policy, computed on a rehearsal set of completions
    /// sampled from it before training (no online reference model): "none", "forward_kl" or "js"
    /// (*The Choice of Divergence: A Neglected Key to Mitigating Diversity Collapse in RLVR*,
    /// DPH-RL).
    pub divergence: Divergence,
    /// Coefficient of the divergence term.
    pub divergence_coef: f64,
    /// Completions in the rehearsal set.
    pub rehearsal_size: usize,
    /// Rehearsal completions per step.
    pub rehearsal_batch: usize,
    /// Reset the reference policy (and the optimizer moments) to the current policy every N steps
    /// (ProRL); 0 = never.
    pub reference_reset_every: usize,
    /// Entropy bonus coefficient α (maximises the policy's entropy).
    pub entropy_coef: f64,
    /// Policy gradient only on this fraction of highest-entropy tokens (0.2 = the 80/20 rule's
    /// forking tokens); 1 = all tokens.
    pub top_entropy_fraction: f64,
    /// Lp-Reg coefficient: KL from a proxy (the policy with tokens below `lp_reg_min_p` × the top
    /// probability removed and renormalised) on low-probability sampled tokens with negative
    /// advantage.
    pub lp_reg_coef: f64,
    /// Lp-Reg noise threshold relative to the top probability.
    pub lp_reg_min_p: f64,
    /// Lp-Reg protects sampled tokens in this lowest fraction of log-probs.
    pub lp_reg_low_fraction: f64,
    /// Policy updates per batch (μ), each against the log-probs recorded before the first.
    pub inner_updates: usize,
    /// Loss reduction: "grpo", "bnpo", "dr_grpo" or "dapo".
    pub aggregation: Aggregation,
    /// Completions cut at the length limit: "none", "mask" (no gradient from them) or "soft"
    /// (DAPO's soft overlong penalty as a reward component).
    pub overlong: Overlong,
    /// Window (tokens before the limit) of the soft overlong penalty.
    pub overlong_window: usize,
}

impl Default for AlgorithmConfig {
    fn default() -> Self {
        Self {
            advantage: "grpo".into(),
            advantage_params: BTreeMap::new(),
            zero_variance: ZeroVariance::Keep,
            resample_rounds: 3,
            ratio: RatioLevel::Token,
            epsilon_low: 0.2,
            epsilon_high: 0.2,
            dual_clip: 0.0,
            kl: KlEstimator::K3,
            kl_coef: 0.0,
            reference_reset_every: 0,
            divergence: Divergence::None,
            divergence_coef: 0.1,
            rehearsal_size: 512,
            rehearsal_batch: 64,
            entropy_coef: 0.0,
            top_entropy_fraction: 1.0,
            lp_reg_coef: 0.0,
            lp_reg_min_p: 0.02,
            lp_reg_low_fraction: 0.2,
            inner_updates: 1,
            aggregation: Aggregation::Grpo,
            overlong: Overlong::None,
            overlong_window: 4,
        }
    }
}

impl AlgorithmConfig {
    /// The estimator and its checked parameters.
    pub fn estimator(&self) -> Result<(&'static EstimatorSpec, Params)> {
        let info = estimators::find(&self.advantage).ok_or_else(|| {
            let names: Vec<&str> = estimators::ESTIMATORS.iter().map(|e| e.name).collect();
            CoreError::config(
                "algorithm.advantage",
                format!("{:?}", self.advantage),
                format!(
                    "expected one of {} or a loaded plugin algorithm",
                    names.join(", ")
                ),
            )
        })?;
        let params = Params::resolve(
            "algorithm.advantage_params",
            info.params,
            &self.advantage_params,
        )?;
        Ok((info, params))
    }
}

/// `[rewards]`: reward noise (to demonstrate imperfect verifiers) and its corrections.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RewardConfig {
    /// Probability that a passed completion is reported as failed (false negative).
    pub flip_false_negative: f64,
    /// Probability that a failed completion is reported as passed (false positive).
    pub flip_false_positive: f64,
    /// Correction applied to the observed (binary) reward: "none", "backward" or "forward"
    /// (*Reinforcement Learning with Verifiable yet Noisy Rewards under Imperfect Verifiers*).
    pub correction: NoiseCorrection,
    /// False-negative rate the correction assumes; negative = use `flip_false_negative`.
    pub assumed_false_negative: f64,
    /// False-positive rate the correction assumes; negative = use `flip_false_positive`.
    pub assumed_false_positive: f64,
    /// The verifier that decides pass/fail and gives the main reward: "task" (the task's own exact
    /// verifier) or the name of a plugin verifier.
    pub verifier: String,
    /// The plugin verifier's parameters.
    pub verifier_params: BTreeMap<String, ParamValue>,
    /// Extra reward components (plugin verifiers or rubrics), each added with its weight.
    pub components: Vec<RewardComponentConfig>,
}

/// One `[[rewards.components]]` entry.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RewardComponentConfig {
    /// Component name (a plugin verifier or rubric).
    pub name: String,
    /// Weight of its score in the total reward; 0 = logged only.
    pub weight: f64,
    /// Its parameters (checked against its specs).
    pub params: BTreeMap<String, ParamValue>,
}

impl Default for RewardComponentConfig {
    fn default() -> Self {
        Self {
            name: String::new(),
            weight: 1.0,
            params: BTreeMap::new(),
        }
    }
}

/// What a plugin component does in a run.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum ComponentRole {
    /// `rollout.sampler`.
    Sampler,
    /// `rewards.verifier`.
    Verifier,
    /// A `[[rewards.components]]` entry, with its weight.
    Reward(f64),
    /// `algorithm.advantage` (a plugin algorithm).
    Algorithm,
}

/// A plugin component named by a config.
#[derive(Clone, Debug)]
pub struct ComponentRef<'a> {
    /// Its role.
    pub role: ComponentRole,
    /// Config key of its name (for errors).
    pub name_key: String,
    /// Config key of its parameters.
    pub params_key: String,
    /// Kinds accepted there.
    pub kinds: &'static [ComponentKind],
    /// The name.
    pub name: &'a str,
    /// Its parameter values.
    pub values: &'a BTreeMap<String, ParamValue>,
}

/// `[plugins]`: where plugin libraries come from and how they are hosted.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PluginsConfig {
    /// Extra folders scanned for plugin libraries (beside the user plugin folder and
    /// `--plugins DIR`).
    pub dirs: Vec<PathBuf>,
    /// Plugins (by name) hosted in a child process: a crash or an endless loop kills only the
    /// child, which is restarted.
    pub isolated: Vec<String>,
    /// Deadline of one plugin call in milliseconds (a verifier batch, an algorithm step, one
    /// sampler call).
    pub deadline_ms: u64,
}

impl Default for PluginsConfig {
    fn default() -> Self {
        Self {
            dirs: Vec::new(),
            isolated: Vec::new(),
            deadline_ms: 10_000,
        }
    }
}

impl Default for RewardConfig {
    fn default() -> Self {
        Self {
            flip_false_negative: 0.0,
            flip_false_positive: 0.0,
            correction: NoiseCorrection::None,
            assumed_false_negative: -1.0,
            assumed_false_positive: -1.0,
            verifier: "task".into(),
            verifier_params: BTreeMap::new(),
            components: Vec::new(),
        }
    }
}

impl RewardConfig {
    /// (false-negative, false-positive) rates the correction uses.
    pub fn assumed_rates(&self) -> (f64, f64) {
        let pick = |a: f64, b: f64| if a < 0.0 { b } else { a };
        (
            pick(self.assumed_false_negative, self.flip_false_negative),
            pick(self.assumed_false_positive, self.flip_false_positive),
        )
    }
}

/// `[optim]`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct OptimConfig {
    /// Peak learning rate (1e-3 collapses the tiny default policy).
    pub lr: f64,
    /// AdamW β₁.
    pub beta1: f64,
    /// AdamW β₂.
    pub beta2: f64,
    /// AdamW ε.
    pub eps: f64,
    /// Decoupled weight decay.
    pub weight_decay: f64,
    /// Clip the global gradient norm to this value; 0 = off.
    pub grad_clip: f64,
    /// "constant", "linear" or "cosine".
    pub schedule: Schedule,
    /// Linear warm-up steps.
    pub warmup_steps: usize,
    /// Final learning rate of linear/cosine decay as a fraction of `lr`.
    pub min_lr_ratio: f64,
    /// Rows per forward/backward of the update in each worker (gradients are summed over the
    /// micro-batches); 0 = a worker's whole share at once.
    pub micro_batch: usize,
}

impl Default for OptimConfig {
    fn default() -> Self {
        Self {
            lr: 1e-4,
            beta1: 0.9,
            beta2: 0.99,
            eps: 1e-8,
            weight_decay: 0.0,
            grad_clip: 1.0,
            schedule: Schedule::Constant,
            warmup_steps: 0,
            min_lr_ratio: 0.1,
            micro_batch: 0,
        }
    }
}

/// `[eval]`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EvalConfig {
    /// Evaluate every N steps (and at step 0 and the last step); 0 = only at start and end.
    pub every: usize,
    /// Held-out problems, disjoint from the training stream.
    pub heldout_size: usize,
    /// Samples per held-out problem for pass@k; 0 = the group size.
    pub samples: usize,
    /// Sampling temperature for pass@k.
    pub temperature: f32,
}

impl Default for EvalConfig {
    fn default() -> Self {
        Self {
            every: 25,
            heldout_size: 200,
            samples: 0,
            temperature: 1.0,
        }
    }
}

/// `[output]`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct OutputConfig {
    /// Output folder (final policy in HF format, metrics.jsonl, config.toml); empty = `runs/<name>`
    /// under the current directory.
    pub dir: PathBuf,
    /// Take the resume state (the slots `<dir>/resume-{0,1}.ckpt`: policy, optimizer, random
    /// state, data cursor, step) every N steps and at the end; 0 = only at the end. With 1, a crash
    /// loses at most the step in flight (the listener writes it off the training thread).
    pub checkpoint_every: usize,
    /// Keep a copy of the policy as a Hugging Face folder (`<dir>/checkpoints/step-NNNNNN`) every N
    /// steps; 0 = never.
    pub keep_every: usize,
    /// Sampled groups per step kept in the run history; absent = all of them.
    pub keep_groups: Option<usize>,
}

impl Default for OutputConfig {
    fn default() -> Self {
        Self {
            dir: PathBuf::new(),
            checkpoint_every: 1,
            keep_every: 100,
            keep_groups: None,
        }
    }
}

/// A TOML error as one line: `line L, column C: message`.
pub fn toml_error_line(text: &str, e: &toml::de::Error) -> String {
    let msg = e.message().trim_end().replace('\n', " ");
    match e.span() {
        Some(span) => {
            let before = &text[..span.start.min(text.len())];
            let line = before.matches('\n').count() + 1;
            let col = before.len() - before.rfind('\n').map_or(0, |i| i + 1) + 1;
            format!("line {line}, column {col}: {msg}")
        }
        None => msg,
    }
}

impl RunConfig {
    /// Reads a TOML file; relative model paths are resolved against the file's folder.
    pub fn from_file(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| CoreError::io(path, e))?;
        let in_file = |e: CoreError| CoreError::ConfigFile {
            path: path.to_owned(),
            msg: match e {
                CoreError::ConfigFile { msg, .. } => msg,
                other => other.to_string(),
            },
        };
        let mut cfg = Self::parse(&text).map_err(in_file)?;
        // Paths in the file are relative to its folder; made absolute, so the resolved config
        // saved with a run stays valid from anywhere.
        let base = path.parent().unwrap_or(Path::new("."));
        let resolve = |p: &mut PathBuf| {
            if p.is_relative() && !p.as_os_str().is_empty() {
                *p = base.join(&*p);
            }
            if let Ok(abs) = std::fs::canonicalize(&*p) {
                *p = abs;
            }
        };
        resolve(&mut cfg.model.path);
        if let TaskConfig::Dataset(d) = &mut cfg.task {
            resolve(&mut d.path);
        }
        for d in &mut cfg.plugins.dirs {
            resolve(d);
        }
        cfg.validate_ranges().map_err(in_file)?;
        Ok(cfg)
    }

    fn parse(text: &str) -> Result<Self> {
        let syntax = |e: toml::de::Error| CoreError::ConfigFile {
            path: PathBuf::from("<config>"),
            msg: toml_error_line(text, &e),
        };
        // Types, choices and ranges first, against the spec table, so that every such error
        // names its key (serde's own messages name only the line); then the structure.
        let raw: toml::Table = toml::from_str(text).map_err(syntax)?;
        spec::validate(&raw)?;
        toml::from_str(text).map_err(syntax)
    }

    /// Parses TOML text (paths are left as written) and validates it.
    pub fn from_toml(text: &str) -> Result<Self> {
        let cfg = Self::parse(text)?;
        // Plugin components are checked when the plugins are loaded (`validate_with`).
        cfg.validate_ranges()?;
        Ok(cfg)
    }

    /// The TOML text of this configuration (every key, defaults included).
    pub fn to_toml(&self) -> String {
        toml::to_string_pretty(self).unwrap_or_default()
    }

    /// Checks every range without plugins: a config naming a plugin component is an error.
    pub fn validate(&self) -> Result<()> {
        self.validate_with(&Extensions::none())
    }

    /// Checks every range, and every plugin component named (sampler, verifier, reward
    /// components, algorithm) against the components `ext` offers and their parameter specs.
    pub fn validate_with(&self, ext: &Extensions) -> Result<()> {
        self.validate_components(ext)?;
        self.validate_builtin(ext, false)
    }

    /// Checks every range and built-in name; names that may belong to plugin components are
    /// left to [`validate_with`](Self::validate_with).
    pub fn validate_ranges(&self) -> Result<()> {
        self.validate_builtin(&Extensions::none(), true)
    }

    /// Every plugin component the config names (sampler, verifier, reward components, and the
    /// algorithm when it is not a built-in estimator), with the config keys for errors.
    pub fn plugin_components(&self) -> Vec<ComponentRef<'_>> {
        use ComponentKind as K;
        let mut out = Vec::new();
        if !self.rollout.sampler.is_empty() {
            out.push(ComponentRef {
                role: ComponentRole::Sampler,
                name_key: "rollout.sampler".into(),
                params_key: "rollout.sampler_params".into(),
                kinds: &[K::Sampler],
                name: &self.rollout.sampler,
                values: &self.rollout.sampler_params,
            });
        }
        if self.rewards.verifier != "task" {
            out.push(ComponentRef {
                role: ComponentRole::Verifier,
                name_key: "rewards.verifier".into(),
                params_key: "rewards.verifier_params".into(),
                kinds: &[K::Verifier],
                name: &self.rewards.verifier,
                values: &self.rewards.verifier_params,
            });
        }
        for (i, c) in self.rewards.components.iter().enumerate() {
            out.push(ComponentRef {
                role: ComponentRole::Reward(c.weight),
                name_key: format!("rewards.components[{i}].name"),
                params_key: format!("rewards.components[{i}].params"),
                kinds: &[K::Verifier, K::Rubric],
                name: &c.name,
                values: &c.params,
            });
        }
        if estimators::find(&self.algorithm.advantage).is_none() {
            out.push(ComponentRef {
                role: ComponentRole::Algorithm,
                name_key: "algorithm.advantage".into(),
                params_key: "algorithm.advantage_params".into(),
                kinds: &[K::Algorithm],
                name: &self.algorithm.advantage,
                values: &self.algorithm.advantage_params,
            });
        }
        out
    }

    fn validate_components(&self, ext: &Extensions) -> Result<()> {
        for r in self.plugin_components() {
            // An unknown algorithm name gets the built-in estimators' error below.
            if r.role == ComponentRole::Algorithm && ext.find(r.kinds, r.name).is_none() {
                continue;
            }
            ext.check_params(&r.name_key, &r.params_key, r.kinds, r.name, r.values)?;
        }
        Ok(())
    }

    /// Every key's type and range from the spec table ([`rlvr_core::spec`]), then the rules that
    /// relate several keys.
    fn validate_builtin(&self, ext: &Extensions, plugins_later: bool) -> Result<()> {
        let table = toml::Table::try_from(self)
            .map_err(|e| CoreError::Internal(format!("the config does not serialize: {e}")))?;
        spec::validate(&table)?;
        if self.model.path.as_os_str().is_empty() {
            return Err(CoreError::config(
                "model.path",
                "\"\"",
                "expected a Hugging Face model folder (config.json, tokenizer.json, *.safetensors)",
            ));
        }
        self.task.check()?;
        let a = &self.algorithm;
        let plugin_algorithm = ext
            .find(&[ComponentKind::Algorithm], &a.advantage)
            .is_some();
        let builtin = estimators::find(&a.advantage).is_some();
        if builtin || !(plugin_algorithm || plugins_later) {
            a.estimator()?;
        }
        let rw = &self.rewards;
        let (fnr, fpr) = rw.assumed_rates();
        if rw.correction != NoiseCorrection::None && fnr + fpr >= 1.0 {
            // Name the key that was set (or the injected rate it falls back to).
            let key = if rw.assumed_false_positive >= 0.0 {
                "rewards.assumed_false_positive"
            } else if rw.assumed_false_negative >= 0.0 {
                "rewards.assumed_false_negative"
            } else {
                "rewards.flip_false_positive"
            };
            let value = if key.ends_with("false_positive") {
                fpr
            } else {
                fnr
            };
            return Err(CoreError::config(
                key,
                value,
                format!(
                    "false-negative + false-positive rates must stay below 1 for the correction (got {fnr} + {fpr})"
                ),
            ));
        }
        if self.optim.warmup_steps > self.steps {
            return Err(CoreError::config(
                "optim.warmup_steps",
                self.optim.warmup_steps,
                format!("expected at most steps ({})", self.steps),
            ));
        }
        rules::ignored_params(self)?;
        Ok(())
    }

    /// Samples per held-out problem for pass@k.
    pub fn eval_samples(&self) -> usize {
        if self.eval.samples == 0 {
            self.rollout.group_size
        } else {
            self.eval.samples
        }
    }

    /// The output folder.
    pub fn output_dir(&self) -> PathBuf {
        if self.output.dir.as_os_str().is_empty() {
            PathBuf::from("runs").join(&self.name)
        } else {
            self.output.dir.clone()
        }
    }
}

#[cfg(test)]
mod tests;
