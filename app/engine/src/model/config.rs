//! `config.json` of a Hugging Face causal language model of the Qwen2/Qwen2.5, Qwen3, Llama
//! (Llama 3.x, SmolLM2) and Mistral families: the keys `transformers` reads for them, each one
//! that changes the computation either implemented or refused with the key and value named
//! ([`ModelConfig::validate`]).

use serde::{Deserialize, Serialize};

use super::rope::Rope;

/// One token id or several (Llama 3 lists several end-of-sequence ids).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum TokenIds {
    /// A single id.
    One(u32),
    /// Several ids.
    Many(Vec<u32>),
}

impl TokenIds {
    /// All ids as a vector.
    pub fn to_vec(&self) -> Vec<u32> {
        match self {
            TokenIds::One(id) => vec![*id],
            TokenIds::Many(ids) => ids.clone(),
        }
    }
}

/// The model hyper-parameters, with the keys `transformers` uses for `Qwen2Config` /
/// `LlamaConfig`. Unknown keys are kept (`extra`) so a loaded folder saves back unchanged.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ModelConfig {
    /// e.g. `["Qwen2ForCausalLM"]`.
    #[serde(default)]
    pub architectures: Vec<String>,
    /// `qwen2` or `llama` (also used by SmolLM).
    pub model_type: String,
    /// Vocabulary size (rows of the embedding).
    pub vocab_size: usize,
    /// Model width.
    pub hidden_size: usize,
    /// Width of the SwiGLU MLP.
    pub intermediate_size: usize,
    /// Number of decoder blocks.
    pub num_hidden_layers: usize,
    /// Query heads.
    pub num_attention_heads: usize,
    /// Key/value heads (grouped-query attention); defaults to `num_attention_heads`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub num_key_value_heads: Option<usize>,
    /// Per-head width; defaults to `hidden_size / num_attention_heads` (128 for `qwen3`, as
    /// `Qwen3Config` defaults it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub head_dim: Option<usize>,
    /// Longest sequence (prompt + completion) the model supports.
    #[serde(default = "default_max_pos")]
    pub max_position_embeddings: usize,
    /// RoPE base frequency as a top-level key (transformers 4.x); transformers 5.x writes it
    /// into `rope_parameters` instead. Read both through [`ModelConfig::rope`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rope_theta: Option<f64>,
    /// RMSNorm epsilon.
    #[serde(default = "default_eps")]
    pub rms_norm_eps: f64,
    /// Whether the output head shares the input embedding.
    #[serde(default)]
    pub tie_word_embeddings: bool,
    /// Bias on the q/k/v/o projections (Llama, Qwen3; Qwen2 always has q/k/v biases and no
    /// o bias, whatever this says).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attention_bias: Option<bool>,
    /// Bias on the gate/up/down projections (Llama).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mlp_bias: Option<bool>,
    /// MLP activation; only `silu` (SwiGLU) is supported.
    #[serde(default = "default_act")]
    pub hidden_act: String,
    /// Beginning-of-sequence id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bos_token_id: Option<u32>,
    /// End-of-sequence id(s).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub eos_token_id: Option<TokenIds>,
    /// Padding id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pad_token_id: Option<u32>,
    /// Storage dtype name.
    #[serde(default = "default_dtype")]
    pub torch_dtype: String,
    /// Keys this engine does not use, kept for round trips.
    #[serde(flatten)]
    pub extra: serde_json::Map<String, serde_json::Value>,
}

/// The allowed range of each size key of `config.json`: generous for real models (a 70B Llama
/// has 80 layers, width 8192, MLP 28672, 64 heads, a 128k vocabulary), small enough that no
/// product of them overflows and no list of parameter names gets out of hand.
pub const SIZE_BOUNDS: [(&str, usize, usize); 8] = [
    ("vocab_size", 1, 1 << 21),
    ("hidden_size", 1, 65_536),
    ("intermediate_size", 1, 1 << 20),
    ("num_hidden_layers", 1, 1024),
    ("num_attention_heads", 1, 1024),
    ("num_key_value_heads", 1, 1024),
    ("head_dim", 2, 4096),
    ("max_position_embeddings", 1, 1 << 24),
];

fn size_bounds(key: &str) -> (usize, usize) {
    SIZE_BOUNDS
        .iter()
        .find(|(k, _, _)| *k == key)
        .map_or((1, usize::MAX), |(_, lo, hi)| (*lo, *hi))
}

fn default_max_pos() -> usize {
    2048
}
fn default_eps() -> f64 {
    1e-6
}
fn default_act() -> String {
    "silu".into()
}
fn default_dtype() -> String {
    "float32".into()
}

impl ModelConfig {
    /// Key/value heads.
    pub fn kv_heads(&self) -> usize {
        self.num_key_value_heads.unwrap_or(self.num_attention_heads)
    }

    /// Per-head width.
    pub fn head_dim(&self) -> usize {
        match (self.head_dim, self.model_type.as_str()) {
            (Some(d), _) => d,
            (None, "qwen3") => 128,
            (None, _) => self.hidden_size / self.num_attention_heads.max(1),
        }
    }

    /// Whether q/k/v projections carry a bias.
    pub fn qkv_bias(&self) -> bool {
        match self.model_type.as_str() {
            "qwen2" => true,
            "mistral" => false,
            _ => self.attention_bias.unwrap_or(false),
        }
    }

    /// Whether the output projection `o_proj` carries a bias (`attention_bias` of Llama and
    /// Qwen3; never in Qwen2 and Mistral).
    pub fn o_bias(&self) -> bool {
        match self.model_type.as_str() {
            "llama" | "qwen3" => self.attention_bias.unwrap_or(false),
            _ => false,
        }
    }

    /// Whether the MLP projections carry a bias (`mlp_bias` of Llama).
    pub fn mlp_bias(&self) -> bool {
        self.model_type == "llama" && self.mlp_bias.unwrap_or(false)
    }

    /// Whether each attention head's query and key are RMS-normed before RoPE (Qwen3's
    /// `q_norm` / `k_norm`).
    pub fn qk_norm(&self) -> bool {
        self.model_type == "qwen3"
    }

    /// The attention window of Mistral's sliding-window attention (`sliding_window`): a query
    /// attends to itself and the `w - 1` positions before it. `None`: full causal attention.
    pub fn sliding_window(&self) -> Option<usize> {
        if self.model_type != "mistral" {
            return None;
        }
        self.extra
            .get("sliding_window")
            .and_then(serde_json::Value::as_u64)
            .map(|w| w as usize)
    }

    /// The rotary embedding, from either spelling of the keys (see [`Rope::resolve`]).
    pub fn rope(&self) -> Result<Rope, String> {
        Rope::resolve(self.rope_theta, &self.extra)
    }

    /// Checks every size against [`SIZE_BOUNDS`] (before any arithmetic on them), then the
    /// combination of sizes and the special token ids; the message names the `config.json` key,
    /// the value and what is allowed.
    pub fn validate(&self) -> Result<(), String> {
        self.check_bounds()?;
        self.check_shapes()?;
        self.check_features()?;
        self.rope()?;
        self.check_token_ids()
    }

    /// Each size key with its value (`None`: not given, the default applies).
    fn sizes(&self) -> [(&'static str, Option<usize>); 8] {
        [
            ("vocab_size", Some(self.vocab_size)),
            ("hidden_size", Some(self.hidden_size)),
            ("intermediate_size", Some(self.intermediate_size)),
            ("num_hidden_layers", Some(self.num_hidden_layers)),
            ("num_attention_heads", Some(self.num_attention_heads)),
            ("num_key_value_heads", self.num_key_value_heads),
            ("head_dim", self.head_dim),
            (
                "max_position_embeddings",
                Some(self.max_position_embeddings),
            ),
        ]
    }

    fn check_bounds(&self) -> Result<(), String> {
        for (key, value) in self.sizes() {
            let Some(v) = value else { continue };
            let (lo, hi) = size_bounds(key);
            if v < lo || v > hi {
                return Err(format!(
                    "{key} = {v} is out of range: expected {lo}..={hi} (this engine's bounds on \
                     model sizes, generous for models up to 70B parameters)"
                ));
            }
        }
        Ok(())
    }

    fn check_token_ids(&self) -> Result<(), String> {
        let eos = self.eos_token_id.as_ref().map(TokenIds::to_vec);
        let ids = [
            ("bos_token_id", self.bos_token_id.map(|i| vec![i])),
            ("eos_token_id", eos),
            ("pad_token_id", self.pad_token_id.map(|i| vec![i])),
        ];
        for (key, list) in ids {
            for id in list.unwrap_or_default() {
                if id as usize >= self.vocab_size {
                    return Err(format!(
                        "{key} = {id} is out of range: expected a token id below vocab_size = {}",
                        self.vocab_size
                    ));
                }
            }
        }
        Ok(())
    }

    fn check_shapes(&self) -> Result<(), String> {
        match self.model_type.as_str() {
            "qwen2" | "qwen3" | "llama" | "mistral" => {}
            other => {
                return Err(format!(
                    "model_type \"{other}\" is not supported: expected \"qwen2\", \"qwen3\", \"llama\" \
                     or \"mistral\""
                ))
            }
        }
        if self.hidden_act != "silu" {
            return Err(format!(
                "hidden_act \"{}\" is not supported: expected \"silu\" (SwiGLU MLP)",
                self.hidden_act
            ));
        }
        if !self.num_attention_heads.is_multiple_of(self.kv_heads()) {
            return Err(format!(
                "num_attention_heads ({}) must be a multiple of num_key_value_heads ({})",
                self.num_attention_heads,
                self.kv_heads()
            ));
        }
        if self.head_dim.is_none() && !self.hidden_size.is_multiple_of(self.num_attention_heads) {
            return Err(format!(
                "hidden_size ({}) must be a multiple of num_attention_heads ({})",
                self.hidden_size, self.num_attention_heads
            ));
        }
        if !self.head_dim().is_multiple_of(2) || self.head_dim() == 0 {
            return Err(format!(
                "head dimension {} must be even and positive (rotary embeddings)",
                self.head_dim()
            ));
        }
        if self.rms_norm_eps.is_nan() || self.rms_norm_eps <= 0.0 {
            return Err(format!(
                "rms_norm_eps = {} is invalid: expected a positive number",
                self.rms_norm_eps
            ));
        }
        Ok(())
    }

    /// Refuses the keys that would change the computation in a way this engine does not
    /// reproduce: an active sliding window other than Mistral's, mixture-of-experts layers,
    /// quantized weights, logit soft-capping, dropout, and other per-layer schemes. Each message
    /// names the key and its value.
    fn check_features(&self) -> Result<(), String> {
        use serde_json::Value;
        let get = |k: &str| self.extra.get(k).filter(|v| !v.is_null());
        let refuse = |k: &str, v: &Value, why: &str| -> Result<(), String> {
            Err(format!("{k} = {v} is not supported: {why}"))
        };
        if let Some(v) = get("use_sliding_window").filter(|v| v.as_bool() != Some(false)) {
            return refuse(
                "use_sliding_window",
                v,
                "sliding-window attention on the layers above max_window_layers is not \
                 implemented (expected false)",
            );
        }
        if let Some(v) = get("sliding_window") {
            if self.model_type == "mistral" && v.as_u64().is_none_or(|w| w == 0) {
                return refuse("sliding_window", v, "expected a positive window or null");
            }
        }
        if let Some(v) = get("layer_types") {
            let all_full = v
                .as_array()
                .is_some_and(|a| a.iter().all(|t| t.as_str() == Some("full_attention")));
            if !all_full {
                return refuse(
                    "layer_types",
                    v,
                    "only \"full_attention\" layers are implemented",
                );
            }
        }
        for k in [
            "num_experts",
            "num_local_experts",
            "n_routed_experts",
            "moe_intermediate_size",
            "num_experts_per_tok",
        ] {
            if let Some(v) = get(k).filter(|v| v.as_u64() != Some(0)) {
                return refuse(k, v, "mixture-of-experts layers are not implemented");
            }
        }
        if let Some(v) = get("quantization_config") {
            return refuse(
                "quantization_config",
                v,
                "quantized checkpoints are not loaded; use the unquantized (f32/bf16/f16) \
                 weights, or import a GGUF file with `rlvr-studio import-gguf`",
            );
        }
        for k in [
            "attn_logit_softcapping",
            "final_logit_softcapping",
            "attention_chunk_size",
            "no_rope_layers",
        ] {
            if let Some(v) = get(k) {
                return refuse(
                    k,
                    v,
                    "this engine would ignore it and compute something else",
                );
            }
        }
        if let Some(v) = get("use_mrope").filter(|v| v.as_bool() != Some(false)) {
            return refuse("use_mrope", v, "multimodal RoPE is not implemented");
        }
        for k in ["attention_dropout", "hidden_dropout", "mlp_dropout"] {
            if let Some(v) = get(k).filter(|v| v.as_f64() != Some(0.0)) {
                return refuse(k, v, "dropout is not implemented (expected 0.0)");
            }
        }
        Ok(())
    }

    /// The tiny default architecture (a Qwen2-style model of about 0.75 M parameters).
    pub fn tiny(vocab_size: usize, bos: u32, eos: u32, pad: u32) -> Self {
        Self {
            architectures: vec!["Qwen2ForCausalLM".into()],
            model_type: "qwen2".into(),
            vocab_size,
            hidden_size: 128,
            intermediate_size: 352,
            num_hidden_layers: 4,
            num_attention_heads: 4,
            num_key_value_heads: Some(2),
            head_dim: None,
            max_position_embeddings: 64,
            rope_theta: Some(10_000.0),
            rms_norm_eps: 1e-6,
            tie_word_embeddings: true,
            attention_bias: None,
            mlp_bias: None,
            hidden_act: "silu".into(),
            bos_token_id: Some(bos),
            eos_token_id: Some(TokenIds::One(eos)),
            pad_token_id: Some(pad),
            torch_dtype: "float32".into(),
            extra: serde_json::Map::new(),
        }
    }

    /// Every parameter tensor the model has: Hugging Face name and shape.
    pub fn parameter_shapes(&self) -> Vec<(String, Vec<usize>)> {
        let (d, hd) = (self.hidden_size, self.head_dim());
        let (h, kv, i) = (
            self.num_attention_heads,
            self.kv_heads(),
            self.intermediate_size,
        );
        let mut out = vec![(
            "model.embed_tokens.weight".to_string(),
            vec![self.vocab_size, d],
        )];
        for l in 0..self.num_hidden_layers {
            let p = format!("model.layers.{l}");
            out.push((format!("{p}.input_layernorm.weight"), vec![d]));
            out.push((format!("{p}.self_attn.q_proj.weight"), vec![h * hd, d]));
            out.push((format!("{p}.self_attn.k_proj.weight"), vec![kv * hd, d]));
            out.push((format!("{p}.self_attn.v_proj.weight"), vec![kv * hd, d]));
            if self.qkv_bias() {
                out.push((format!("{p}.self_attn.q_proj.bias"), vec![h * hd]));
                out.push((format!("{p}.self_attn.k_proj.bias"), vec![kv * hd]));
                out.push((format!("{p}.self_attn.v_proj.bias"), vec![kv * hd]));
            }
            if self.qk_norm() {
                out.push((format!("{p}.self_attn.q_norm.weight"), vec![hd]));
                out.push((format!("{p}.self_attn.k_norm.weight"), vec![hd]));
            }
            out.push((format!("{p}.self_attn.o_proj.weight"), vec![d, h * hd]));
            if self.o_bias() {
                out.push((format!("{p}.self_attn.o_proj.bias"), vec![d]));
            }
            out.push((format!("{p}.post_attention_layernorm.weight"), vec![d]));
            out.push((format!("{p}.mlp.gate_proj.weight"), vec![i, d]));
            out.push((format!("{p}.mlp.up_proj.weight"), vec![i, d]));
            out.push((format!("{p}.mlp.down_proj.weight"), vec![d, i]));
            if self.mlp_bias() {
                out.push((format!("{p}.mlp.gate_proj.bias"), vec![i]));
                out.push((format!("{p}.mlp.up_proj.bias"), vec![i]));
                out.push((format!("{p}.mlp.down_proj.bias"), vec![d]));
            }
        }
        out.push(("model.norm.weight".to_string(), vec![d]));
        if !self.tie_word_embeddings {
            out.push(("lm_head.weight".to_string(), vec![self.vocab_size, d]));
        }
        out
    }
}

impl ModelConfig {
    /// Number of scalar parameters implied by the configuration.
    pub fn num_params(&self) -> usize {
        self.parameter_shapes()
            .iter()
            .map(|(_, s)| s.iter().product::<usize>())
            .sum()
    }
}
