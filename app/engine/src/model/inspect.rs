//! What a model folder is, read without loading its weights (the headers of the weight files
//! only): `rlvr-studio models inspect` and the GUI's model picker show these facts. A folder
//! [`super::Policy::load`] would refuse is refused here with the same message, since both run
//! the same checks of `config.json`, the tokenizer files, the weight files and their headers.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Serialize;

use super::{load, Policy};
use crate::error::Result;
use crate::memory::{self, RunShape};

/// The LoRA rank of the memory figure (PEFT's common choice, all linear layers).
pub const LORA_RANK: usize = 16;

/// Rows per step of the memory figure unless told otherwise: 2 prompts × 8 completions (the
/// engine trains on every row of a step at once, so rows × tokens drives the activations).
pub const DEFAULT_ROWS: usize = 16;

/// Tokens per row (prompt + completion) of the memory figure unless told otherwise.
pub const DEFAULT_TOKENS: usize = 512;

/// The facts of a model folder.
#[derive(Clone, Debug, Serialize)]
pub struct ModelFacts {
    /// The folder.
    pub dir: PathBuf,
    /// `architectures[0]` of `config.json`.
    pub architecture: String,
    /// `model_type`.
    pub model_type: String,
    /// Decoder layers.
    pub layers: usize,
    /// Hidden width.
    pub hidden: usize,
    /// MLP width.
    pub intermediate: usize,
    /// Attention heads.
    pub heads: usize,
    /// Key/value heads.
    pub kv_heads: usize,
    /// Width of a head.
    pub head_dim: usize,
    /// Vocabulary of `config.json`.
    pub vocab_size: usize,
    /// `max_position_embeddings`.
    pub context: usize,
    /// Output head tied to the embeddings.
    pub tied: bool,
    /// RoPE: type and base.
    pub rope: String,
    /// Parameters.
    pub params: usize,
    /// Stored dtype → number of tensors (computed in f32 whatever they are).
    pub dtypes: BTreeMap<String, usize>,
    /// Weight files read (one, or the shards of the index).
    pub weight_files: usize,
    /// Their total size in bytes.
    pub weight_bytes: u64,
    /// Tokens of `tokenizer.json`, special ones included.
    pub tokenizer_vocab: usize,
    /// The BOS token a plain prompt starts with, if any.
    pub prompt_bos: Option<String>,
    /// Every token that ends a completion.
    pub stop: Vec<String>,
    /// The chat template's file, if the folder has one.
    pub chat_template: Option<PathBuf>,
    /// The memory a training run would need.
    pub memory: MemoryFacts,
}

/// The memory estimate of a run of the default shape on this model.
#[derive(Clone, Debug, Serialize)]
pub struct MemoryFacts {
    /// Rows per step (prompts per step × group size of the default config).
    pub rows: usize,
    /// Tokens per row assumed.
    pub tokens: usize,
    /// Full fine-tuning, bytes (with a KL reference copy when the default config keeps one).
    pub full_bytes: f64,
    /// LoRA of rank [`LORA_RANK`], bytes.
    pub lora_bytes: f64,
    /// Trainable parameters of that LoRA.
    pub lora_params: usize,
}

/// Reads the facts of `dir`: the checks of [`Policy::load`] up to the weights' headers, with a
/// run of `rows` rows of `tokens` tokens for the memory estimate (`tokens` is capped at the
/// context).
pub fn inspect(dir: &Path, rows: usize, tokens: usize, reference: bool) -> Result<ModelFacts> {
    let cfg = Policy::read_config(dir)?;
    let tok = Policy::read_tokenizer(dir, &cfg)?;
    let files = load::weight_files(dir)?;
    let headers = load::read_headers(&files.files)?;
    if let Some(index) = &files.index {
        load::check_index(index, &headers)?;
    }
    load::check_params(&cfg, &dir.join("config.json"), &headers)?;
    let mut dtypes = BTreeMap::new();
    for h in headers.values() {
        *dtypes.entry(h.dtype.clone()).or_insert(0) += 1;
    }
    let weight_bytes = files
        .files
        .iter()
        .map(|f| std::fs::metadata(f).map(|m| m.len()).unwrap_or(0))
        .sum();
    // read_config checked it.
    let rope = cfg
        .rope()
        .map_err(|e| crate::error::EngineError::model(dir.join("config.json"), e))?;
    let shape = RunShape {
        rows,
        tokens: tokens.min(cfg.max_position_embeddings),
        reference,
        critic: false,
        checkpoints: true,
        lora: None,
        micro_rows: rows,
        checkpointing: false,
    };
    let lora = memory::LoraShape::all_linear(LORA_RANK);
    let memory = MemoryFacts {
        rows,
        tokens: shape.tokens,
        full_bytes: memory::estimate(&cfg, &shape).total(),
        lora_bytes: memory::estimate(
            &cfg,
            &RunShape {
                lora: Some(lora),
                ..shape
            },
        )
        .total(),
        lora_params: memory::lora_params(&cfg, &lora),
    };
    Ok(ModelFacts {
        dir: dir.to_path_buf(),
        architecture: cfg.architectures.first().cloned().unwrap_or_default(),
        model_type: cfg.model_type.clone(),
        layers: cfg.num_hidden_layers,
        hidden: cfg.hidden_size,
        intermediate: cfg.intermediate_size,
        heads: cfg.num_attention_heads,
        kv_heads: cfg.kv_heads(),
        head_dim: cfg.head_dim(),
        vocab_size: cfg.vocab_size,
        context: cfg.max_position_embeddings,
        tied: cfg.tie_word_embeddings,
        rope: rope.describe(),
        params: cfg.num_params(),
        dtypes,
        weight_files: files.files.len(),
        weight_bytes,
        tokenizer_vocab: tok.vocab_size(),
        prompt_bos: tok.prompt_bos().map(|id| tok.token_text(id)),
        stop: tok.stop.iter().map(|&id| tok.token_text(id)).collect(),
        chat_template: tok.template.as_ref().map(|t| t.origin().to_path_buf()),
        memory,
    })
}

impl ModelFacts {
    /// The facts as lines of text (the CLI's output and the picker's panel).
    pub fn lines(&self) -> Vec<(String, String)> {
        let gb = |b: f64| match b < 1e9 {
            true => format!("{:.1} MB", b / 1e6),
            false => format!("{:.2} GB", b / 1e9),
        };
        let dtypes = self
            .dtypes
            .iter()
            .map(|(d, n)| format!("{d} ({n} tensors)"))
            .collect::<Vec<_>>()
            .join(", ");
        let m = &self.memory;
        vec![
            ("folder".into(), self.dir.display().to_string()),
            (
                "architecture".into(),
                format!("{} (model_type {})", self.architecture, self.model_type),
            ),
            (
                "shape".into(),
                format!(
                    "{} layers, hidden {}, intermediate {}, {}/{} heads of {}, context {}",
                    self.layers,
                    self.hidden,
                    self.intermediate,
                    self.heads,
                    self.kv_heads,
                    self.head_dim,
                    self.context
                ),
            ),
            (
                "parameters".into(),
                format!(
                    "{} ({:.1} M), head {}",
                    self.params,
                    self.params as f64 / 1e6,
                    if self.tied { "tied" } else { "untied" }
                ),
            ),
            ("rope".into(), self.rope.clone()),
            (
                "weights".into(),
                format!(
                    "{dtypes} in {} file(s), {}; computed in F32",
                    self.weight_files,
                    gb(self.weight_bytes as f64)
                ),
            ),
            (
                "vocabulary".into(),
                format!(
                    "{} (tokenizer.json {})",
                    self.vocab_size, self.tokenizer_vocab
                ),
            ),
            (
                "special tokens".into(),
                format!(
                    "prompt BOS {}, stops on {}",
                    self.prompt_bos.as_deref().unwrap_or("none"),
                    self.stop.join(" ")
                ),
            ),
            (
                "chat template".into(),
                match &self.chat_template {
                    Some(p) => format!("yes ({})", p.display()),
                    None => "none".into(),
                },
            ),
            (
                "training memory".into(),
                format!(
                    "full {}, LoRA r={LORA_RANK} {} ({:.1} M trainable) for {} rows × {} tokens",
                    gb(m.full_bytes),
                    gb(m.lora_bytes),
                    m.lora_params as f64 / 1e6,
                    m.rows,
                    m.tokens
                ),
            ),
        ]
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn facts_of_the_default_policy() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../assets/default-policy");
        let f = inspect(&dir, 64, 22, false).unwrap();
        let p = Policy::load(&dir, &candle_core::Device::Cpu).unwrap();
        assert_eq!(f.params, p.num_params());
        assert_eq!(
            (f.architecture.as_str(), f.layers),
            ("Qwen2ForCausalLM", p.cfg.num_hidden_layers)
        );
        assert_eq!(f.dtypes.get("F32"), Some(&p.params().len()));
        assert_eq!(f.prompt_bos.as_deref(), Some("<bos>"));
        assert!(f.chat_template.is_none());
        assert!(f.memory.lora_bytes < f.memory.full_bytes);
        let text: Vec<_> = f
            .lines()
            .into_iter()
            .map(|(k, v)| format!("{k}: {v}"))
            .collect();
        assert!(
            text.iter().any(|l| l.starts_with("chat template: none")),
            "{text:?}"
        );
    }

    #[test]
    fn bad_folders_give_the_load_message() {
        let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("../assets/default-policy");
        let dir = tempfile::tempdir().unwrap();
        for f in ["config.json", "tokenizer.json", "generation_config.json"] {
            std::fs::copy(src.join(f), dir.path().join(f)).unwrap();
        }
        // Truncated weights.
        let w = std::fs::read(src.join("model.safetensors")).unwrap();
        std::fs::write(dir.path().join("model.safetensors"), &w[..w.len() / 2]).unwrap();
        let a = inspect(dir.path(), 8, 8, false).unwrap_err().to_string();
        let b = Policy::load(dir.path(), &candle_core::Device::Cpu)
            .unwrap_err()
            .to_string();
        assert_eq!(a, b);
        assert!(
            a.contains("model.safetensors") && a.contains("truncated"),
            "{a}"
        );
    }
}
