//! Import of a GGUF model file (llama.cpp's format) into a Hugging Face model folder that
//! [`crate::model::Policy::load`] and `transformers` open: every tensor dequantized to f32 (then
//! bf16 when asked), renamed to its HF name, the llama Q/K rows put back in HF order, plus
//! `config.json`, `generation_config.json`, `tokenizer.json` and `tokenizer_config.json` built from
//! the GGUF metadata (see `shared/research/real-models.md` 6.2).
//!
//! Only what can be reproduced exactly is imported: architectures `llama` and `qwen2`, the GPT-2
//! style BPE tokenizer with a known pre-tokenizer; anything else is refused naming the GGUF key or
//! tensor and its value.

mod tokenizer;

use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::io::BufReader;
use std::path::{Path, PathBuf};

use candle_core::quantized::gguf_file::{Content, Value};
use candle_core::{DType, Device, Tensor};

use crate::error::{EngineError, Result};
use crate::model::{ModelConfig, TokenIds};

/// Storage dtype of the imported weights.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OutDType {
    /// 32-bit floats (what the engine trains in): 4 bytes per parameter.
    F32,
    /// bfloat16: half the size; the engine converts to f32 when it loads.
    Bf16,
}

impl OutDType {
    fn dtype(self) -> DType {
        match self {
            OutDType::F32 => DType::F32,
            OutDType::Bf16 => DType::BF16,
        }
    }

    fn torch_name(self) -> &'static str {
        match self {
            OutDType::F32 => "float32",
            OutDType::Bf16 => "bfloat16",
        }
    }
}

/// The decoder families the import knows (`general.architecture`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Arch {
    /// `llama` (also SmolLM): Q/K rows are permuted in GGUF and put back on import.
    Llama,
    /// `qwen2`: biased q/k/v, no permutation.
    Qwen2,
}

impl Arch {
    fn key(self) -> &'static str {
        match self {
            Arch::Llama => "llama",
            Arch::Qwen2 => "qwen2",
        }
    }
}

/// What an import wrote.
#[derive(Clone, Debug)]
pub struct ImportSummary {
    /// The model configuration written to `config.json`.
    pub config: ModelConfig,
    /// Tensors written.
    pub tensors: usize,
    /// Scalar parameters written.
    pub params: usize,
    /// Total size of the files written, in bytes.
    pub bytes: u64,
}

/// An opened GGUF file: its header (metadata and tensor table) and the file to read data from.
pub struct GgufFile {
    path: PathBuf,
    content: Content,
    reader: BufReader<File>,
}

impl std::fmt::Debug for GgufFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GgufFile")
            .field("path", &self.path)
            .field("tensors", &self.content.tensor_infos.len())
            .finish()
    }
}

/// Short text of a metadata value for messages (strings quoted, arrays by length).
fn show(v: &Value) -> String {
    match v {
        Value::String(s) if s.chars().count() > 60 => {
            format!("{:?}…", s.chars().take(60).collect::<String>())
        }
        Value::String(s) => format!("{s:?}"),
        Value::Array(a) => format!("an array of {} values", a.len()),
        Value::U8(x) => x.to_string(),
        Value::I8(x) => x.to_string(),
        Value::U16(x) => x.to_string(),
        Value::I16(x) => x.to_string(),
        Value::U32(x) => x.to_string(),
        Value::I32(x) => x.to_string(),
        Value::U64(x) => x.to_string(),
        Value::I64(x) => x.to_string(),
        Value::F32(x) => x.to_string(),
        Value::F64(x) => x.to_string(),
        Value::Bool(x) => x.to_string(),
    }
}

/// A non-negative integer of any GGUF integer type.
fn as_u64(v: &Value) -> Option<u64> {
    match *v {
        Value::U8(x) => Some(x.into()),
        Value::U16(x) => Some(x.into()),
        Value::U32(x) => Some(x.into()),
        Value::U64(x) => Some(x),
        Value::I8(x) => u64::try_from(x).ok(),
        Value::I16(x) => u64::try_from(x).ok(),
        Value::I32(x) => u64::try_from(x).ok(),
        Value::I64(x) => u64::try_from(x).ok(),
        _ => None,
    }
}

impl GgufFile {
    /// Reads the header of a GGUF file. A file that is not GGUF, is truncated or holds a tensor
    /// type this build cannot read is an error naming the file.
    pub fn open(path: &Path) -> Result<Self> {
        let file = File::open(path).map_err(|e| EngineError::io(path, e))?;
        let mut reader = BufReader::new(file);
        // candle's reader divides by `general.alignment`, so a file declaring 0 would panic
        // inside it; a panic there is turned into an error like any other bad header.
        let read =
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| Content::read(&mut reader)));
        let content = match read {
            Ok(Ok(c)) => c,
            Ok(Err(e)) => return Err(header_error(path, &e.to_string())),
            Err(_) => return Err(EngineError::model(
                path,
                "not a readable GGUF file: its header is inconsistent (e.g. general.alignment = 0)",
            )),
        };
        Ok(Self {
            path: path.to_path_buf(),
            content,
            reader,
        })
    }

    fn err(&self, msg: impl Into<String>) -> EngineError {
        EngineError::model(&self.path, msg)
    }

    /// A metadata value, or an error naming the missing key.
    fn meta(&self, key: &str) -> Result<&Value> {
        self.content
            .metadata
            .get(key)
            .ok_or_else(|| self.err(format!("GGUF key {key} is missing")))
    }

    fn meta_str(&self, key: &str) -> Result<&str> {
        match self.meta(key)? {
            Value::String(s) => Ok(s),
            v => Err(self.err(format!("GGUF key {key} = {}: expected a string", show(v)))),
        }
    }

    fn opt_str(&self, key: &str) -> Result<Option<&str>> {
        match self.content.metadata.get(key) {
            None => Ok(None),
            Some(_) => self.meta_str(key).map(Some),
        }
    }

    fn opt_usize(&self, key: &str) -> Result<Option<usize>> {
        let Some(v) = self.content.metadata.get(key) else {
            return Ok(None);
        };
        as_u64(v)
            .and_then(|x| usize::try_from(x).ok())
            .map(Some)
            .ok_or_else(|| {
                self.err(format!(
                    "GGUF key {key} = {}: expected a non-negative integer",
                    show(v)
                ))
            })
    }

    fn meta_usize(&self, key: &str) -> Result<usize> {
        self.meta(key)?;
        self.opt_usize(key)?
            .ok_or_else(|| self.err(format!("GGUF key {key} is missing")))
    }

    /// A float; an f32 is read through its shortest decimal form, so 1e-5 stays 1e-5 in JSON.
    fn opt_f64(&self, key: &str) -> Result<Option<f64>> {
        match self.content.metadata.get(key) {
            None => Ok(None),
            Some(Value::F32(x)) if x.is_finite() => Ok(x.to_string().parse().ok()),
            Some(Value::F64(x)) if x.is_finite() => Ok(Some(*x)),
            Some(v) => Err(self.err(format!(
                "GGUF key {key} = {}: expected a finite float",
                show(v)
            ))),
        }
    }

    fn opt_u32(&self, key: &str) -> Result<Option<u32>> {
        match self.opt_usize(key)? {
            None => Ok(None),
            Some(x) => u32::try_from(x)
                .map(Some)
                .map_err(|_| self.err(format!("GGUF key {key} = {x}: expected a token id"))),
        }
    }

    /// `general.architecture`, refused unless it is one the engine runs.
    pub fn arch(&self) -> Result<Arch> {
        match self.meta_str("general.architecture")? {
            "llama" => Ok(Arch::Llama),
            "qwen2" => Ok(Arch::Qwen2),
            other => Err(self.err(format!(
                "GGUF key general.architecture = {other:?} is not supported: expected \"llama\" or \"qwen2\""
            ))),
        }
    }

    /// Shape of a tensor of the file (HF order: rows first).
    fn shape(&self, name: &str) -> Option<&[usize]> {
        self.content.tensor_infos.get(name).map(|t| t.shape.dims())
    }

    /// The `config.json` the folder gets, from the `{arch}.*` keys and the tensor table.
    pub fn model_config(&self, dtype: OutDType) -> Result<ModelConfig> {
        let arch = self.arch()?;
        let a = arch.key();
        let k = |s: &str| format!("{a}.{s}");
        for key in [k("rope.scaling.type"), k("rope.scaling.factor")] {
            if let Some(v) = self.content.metadata.get(&key) {
                let none = matches!(v, Value::String(s) if s == "none")
                    || matches!(v, Value::F32(x) if *x == 0.0 || *x == 1.0);
                if !none {
                    return Err(self.err(format!(
                        "GGUF key {key} = {}: RoPE scaling is not supported by the engine",
                        show(v)
                    )));
                }
            }
        }
        let hidden = self.meta_usize(&k("embedding_length"))?;
        let heads = self.meta_usize(&k("attention.head_count"))?;
        let kv_heads = self
            .opt_usize(&k("attention.head_count_kv"))?
            .unwrap_or(heads);
        let layers = self.meta_usize(&k("block_count"))?;
        if layers > self.content.tensor_infos.len() {
            return Err(self.err(format!(
                "GGUF key {a}.block_count = {layers} but the file has only {} tensors",
                self.content.tensor_infos.len()
            )));
        }
        let head_dim = match self.opt_usize(&k("attention.key_length"))? {
            Some(d) => d,
            None if heads > 0 => hidden / heads,
            None => 0,
        };
        if let Some(rd) = self.opt_usize(&k("rope.dimension_count"))? {
            if rd != head_dim {
                return Err(self.err(format!(
                    "GGUF key {a}.rope.dimension_count = {rd}: partial rotary embeddings are not \
                     supported (head dimension {head_dim})"
                )));
            }
        }
        let embd = self
            .shape("token_embd.weight")
            .ok_or_else(|| self.err("GGUF tensor token_embd.weight is missing"))?;
        let vocab = match embd {
            [rows, cols] if *cols == hidden => *rows,
            s => {
                return Err(self.err(format!(
                    "GGUF tensor token_embd.weight has shape {s:?}: expected [vocab, {hidden}]"
                )))
            }
        };
        let bias = self.shape("blk.0.attn_q.bias").is_some();
        if arch == Arch::Llama && bias != self.shape("blk.0.attn_output.bias").is_some() {
            return Err(self.err(
                "GGUF llama tensors blk.0.attn_q.bias and blk.0.attn_output.bias: one is \
                 present without the other, but transformers' attention_bias puts a bias on \
                 q, k, v and o together",
            ));
        }
        let tie = self.shape("output.weight").is_none();
        let eps = self
            .opt_f64(&k("attention.layer_norm_rms_epsilon"))?
            .ok_or_else(|| {
                self.err(format!(
                    "GGUF key {a}.attention.layer_norm_rms_epsilon is missing"
                ))
            })?;
        let (arch_name, model_type) = match arch {
            Arch::Llama => ("LlamaForCausalLM", "llama"),
            Arch::Qwen2 => ("Qwen2ForCausalLM", "qwen2"),
        };
        let eos = self.eos_ids()?;
        let cfg = ModelConfig {
            architectures: vec![arch_name.into()],
            model_type: model_type.into(),
            vocab_size: vocab,
            hidden_size: hidden,
            intermediate_size: self.meta_usize(&k("feed_forward_length"))?,
            num_hidden_layers: layers,
            num_attention_heads: heads,
            num_key_value_heads: Some(kv_heads),
            head_dim: Some(head_dim),
            max_position_embeddings: self.opt_usize(&k("context_length"))?.unwrap_or(2048),
            rope_theta: Some(self.opt_f64(&k("rope.freq_base"))?.unwrap_or(10_000.0)),
            rms_norm_eps: eps,
            tie_word_embeddings: tie,
            attention_bias: (arch == Arch::Llama).then_some(bias),
            mlp_bias: None,
            hidden_act: "silu".into(),
            bos_token_id: self.opt_u32("tokenizer.ggml.bos_token_id")?,
            eos_token_id: match eos.as_slice() {
                [] => None,
                [one] => Some(TokenIds::One(*one)),
                many => Some(TokenIds::Many(many.to_vec())),
            },
            pad_token_id: self.opt_u32("tokenizer.ggml.padding_token_id")?,
            torch_dtype: dtype.torch_name().into(),
            extra: serde_json::Map::new(),
        };
        cfg.validate()
            .map_err(|m| self.err(format!("the GGUF header implies an invalid model: {m}")))?;
        Ok(cfg)
    }

    /// End-of-sequence ids: `tokenizer.ggml.eos_token_id`, then the end-of-turn id when it differs.
    fn eos_ids(&self) -> Result<Vec<u32>> {
        let mut ids: Vec<u32> = Vec::new();
        for key in ["tokenizer.ggml.eos_token_id", "tokenizer.ggml.eot_token_id"] {
            if let Some(id) = self.opt_u32(key)? {
                if !ids.contains(&id) {
                    ids.push(id);
                }
            }
        }
        Ok(ids)
    }

    /// Reads, dequantizes, renames and (llama) un-permutes every tensor; checks the set and the
    /// shapes against `cfg`. `progress(done, total)` is called after each tensor.
    fn read_tensors(
        &mut self,
        cfg: &ModelConfig,
        dtype: OutDType,
        progress: &mut dyn FnMut(usize, usize),
    ) -> Result<Vec<(String, Tensor)>> {
        let arch = self.arch()?;
        let expected: BTreeMap<String, Vec<usize>> = cfg.parameter_shapes().into_iter().collect();
        let mut names: Vec<(String, String)> = Vec::new();
        for gname in self.content.tensor_infos.keys() {
            let hf = hf_name(gname)
                .filter(|n| expected.contains_key(n))
                .ok_or_else(|| {
                    self.err(format!(
                        "GGUF tensor {gname} has no counterpart in a {} model of this config",
                        cfg.model_type
                    ))
                })?;
            names.push((gname.clone(), hf));
        }
        names.sort_by(|a, b| a.1.cmp(&b.1));
        if let Some(missing) = expected
            .keys()
            .find(|n| !names.iter().any(|(_, h)| h == *n))
        {
            return Err(self.err(format!(
                "the GGUF file lacks the tensor for {missing} (GGUF name {})",
                gguf_name(missing)
            )));
        }
        for (g, h) in &names {
            let got = self.shape(g).unwrap_or_default();
            if got != expected[h].as_slice() {
                return Err(self.err(format!(
                    "GGUF tensor {g} has shape {got:?}, the header implies {:?}",
                    expected[h]
                )));
            }
        }
        let cpu = Device::Cpu;
        let total = names.len();
        let mut out = Vec::with_capacity(total);
        for (i, (g, h)) in names.into_iter().enumerate() {
            let q = self
                .content
                .tensor(&mut self.reader, &g, &cpu)
                .map_err(|e| {
                    self.err(format!("GGUF tensor {g}: {}", first_line(&e.to_string())))
                })?;
            let mut t = q.dequantize(&cpu).map_err(|e| {
                self.err(format!(
                    "GGUF tensor {g}: cannot dequantize: {}",
                    first_line(&e.to_string())
                ))
            })?;
            if arch == Arch::Llama {
                if g.ends_with("attn_q.weight") || g.ends_with("attn_q.bias") {
                    t = unpermute(&t, cfg.num_attention_heads)?;
                } else if g.ends_with("attn_k.weight") || g.ends_with("attn_k.bias") {
                    t = unpermute(&t, cfg.kv_heads())?;
                }
            }
            let t = t.to_dtype(dtype.dtype())?.contiguous()?;
            out.push((h, t));
            progress(i + 1, total);
        }
        Ok(out)
    }
}

/// The error of a header candle could not read, with the unsupported tensor type spelled out.
fn header_error(path: &Path, msg: &str) -> EngineError {
    let msg = first_line(msg);
    if let Some(code) = msg.strip_prefix("unknown dtype for tensor ") {
        let name = code
            .trim()
            .parse::<u32>()
            .ok()
            .and_then(ggml_type_name)
            .unwrap_or("unknown");
        return EngineError::model(
            path,
            format!(
                "GGUF tensor type {} ({name}) is not supported: expected one of F32, F16, BF16, \
                 Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q8_1, Q2_K, Q3_K, Q4_K, Q5_K, Q6_K, Q8_K",
                code.trim()
            ),
        );
    }
    EngineError::model(path, format!("not a readable GGUF file: {msg}"))
}

/// The message of a candle error without the backtrace it carries when `RUST_BACKTRACE` is set.
fn first_line(msg: &str) -> &str {
    msg.lines().next().unwrap_or(msg)
}

/// ggml's names of the tensor types candle cannot read (ggml.h `enum ggml_type`).
fn ggml_type_name(code: u32) -> Option<&'static str> {
    Some(match code {
        4 | 5 => "removed Q4_2/Q4_3",
        16 => "IQ2_XXS",
        17 => "IQ2_XS",
        18 => "IQ3_XXS",
        19 => "IQ1_S",
        20 => "IQ4_NL",
        21 => "IQ3_S",
        22 => "IQ2_S",
        23 => "IQ4_XS",
        24 => "I8",
        25 => "I16",
        26 => "I32",
        27 => "I64",
        28 => "F64",
        29 => "IQ1_M",
        34 => "TQ1_0",
        35 => "TQ2_0",
        39 => "MXFP4",
        _ => return None,
    })
}

/// The Hugging Face name of a GGUF tensor (`blk.N.attn_q.weight` → `model.layers.N.self_attn.q_proj.weight`).
pub fn hf_name(gguf: &str) -> Option<String> {
    match gguf {
        "token_embd.weight" => return Some("model.embed_tokens.weight".into()),
        "output_norm.weight" => return Some("model.norm.weight".into()),
        "output.weight" => return Some("lm_head.weight".into()),
        _ => {}
    }
    let rest = gguf.strip_prefix("blk.")?;
    let (layer, rest) = rest.split_once('.')?;
    layer.parse::<usize>().ok()?;
    let (part, kind) = rest.rsplit_once('.')?;
    if kind != "weight" && kind != "bias" {
        return None;
    }
    let hf = BLOCK_NAMES.iter().find(|(g, _)| *g == part)?.1;
    Some(format!("model.layers.{layer}.{hf}.{kind}"))
}

/// The GGUF name of a Hugging Face tensor name (for messages).
fn gguf_name(hf: &str) -> String {
    match hf {
        "model.embed_tokens.weight" => return "token_embd.weight".into(),
        "model.norm.weight" => return "output_norm.weight".into(),
        "lm_head.weight" => return "output.weight".into(),
        _ => {}
    }
    let Some(rest) = hf.strip_prefix("model.layers.") else {
        return hf.into();
    };
    let Some((layer, rest)) = rest.split_once('.') else {
        return hf.into();
    };
    let Some((part, kind)) = rest.rsplit_once('.') else {
        return hf.into();
    };
    match BLOCK_NAMES.iter().find(|(_, h)| *h == part) {
        Some((g, _)) => format!("blk.{layer}.{g}.{kind}"),
        None => hf.into(),
    }
}

/// GGUF block tensor → HF module inside `model.layers.N`.
const BLOCK_NAMES: [(&str, &str); 9] = [
    ("attn_norm", "input_layernorm"),
    ("ffn_norm", "post_attention_layernorm"),
    ("attn_q", "self_attn.q_proj"),
    ("attn_k", "self_attn.k_proj"),
    ("attn_v", "self_attn.v_proj"),
    ("attn_output", "self_attn.o_proj"),
    ("ffn_gate", "mlp.gate_proj"),
    ("ffn_up", "mlp.up_proj"),
    ("ffn_down", "mlp.down_proj"),
];

/// Undoes llama.cpp's Q/K row permutation: per head, GGUF stores the rotary pairs interleaved
/// (rows 0,1 = pair 0) where HF stores halves (rows 0 and hd/2 = pair 0). For `w` of shape
/// `[heads * hd, in]` (or a bias `[heads * hd]`): `reshape(heads, hd/2, 2, in)`, swap axes 1 and
/// 2, reshape back.
pub fn unpermute(w: &Tensor, heads: usize) -> Result<Tensor> {
    let dims = w.dims().to_vec();
    let rows = dims[0];
    let cols = if dims.len() > 1 { dims[1] } else { 1 };
    if heads == 0 || !rows.is_multiple_of(2 * heads) {
        return Err(EngineError::Internal(format!(
            "cannot un-permute {rows} rows over {heads} heads"
        )));
    }
    let half = rows / heads / 2;
    let t = w
        .reshape((heads, half, 2, cols))?
        .transpose(1, 2)?
        .contiguous()?
        .reshape(dims)?;
    Ok(t)
}

/// Imports `gguf` into the folder `out` (created; refused when it exists and is not empty).
/// Files are written to a sibling `.NAME.importing` folder first and moved into place at the end,
/// so a failed import leaves nothing behind. `progress(done, total)` follows the tensors.
pub fn import(
    gguf: &Path,
    out: &Path,
    dtype: OutDType,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<ImportSummary> {
    if out.exists() {
        let empty = out.is_dir()
            && std::fs::read_dir(out)
                .map_err(|e| EngineError::io(out, e))?
                .next()
                .is_none();
        if !empty {
            return Err(EngineError::model(
                out,
                "already exists and is not empty: give a new or empty folder",
            ));
        }
    }
    let mut file = GgufFile::open(gguf)?;
    let cfg = file.model_config(dtype)?;
    let tok = tokenizer::build(&file, &cfg)?;
    let tensors = file.read_tensors(&cfg, dtype, progress)?;
    let name = out
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "model".into());
    let staging = out
        .parent()
        .unwrap_or(Path::new("."))
        .join(format!(".{name}.importing"));
    let result = write_folder(&staging, &cfg, &tok, &tensors).and_then(|bytes| {
        if out.exists() {
            std::fs::remove_dir(out).map_err(|e| EngineError::io(out, e))?;
        }
        std::fs::rename(&staging, out).map_err(|e| EngineError::io(out, e))?;
        Ok(bytes)
    });
    let bytes = match result {
        Ok(b) => b,
        Err(e) => {
            let _ = std::fs::remove_dir_all(&staging);
            return Err(e);
        }
    };
    Ok(ImportSummary {
        params: tensors.iter().map(|(_, t)| t.elem_count()).sum(),
        tensors: tensors.len(),
        config: cfg,
        bytes,
    })
}

/// Writes the five files into `dir` (created afresh); returns their total size.
fn write_folder(
    dir: &Path,
    cfg: &ModelConfig,
    tok: &tokenizer::Built,
    tensors: &[(String, Tensor)],
) -> Result<u64> {
    if dir.exists() {
        std::fs::remove_dir_all(dir).map_err(|e| EngineError::io(dir, e))?;
    }
    std::fs::create_dir_all(dir).map_err(|e| EngineError::io(dir, e))?;
    let write_json = |name: &str, v: &serde_json::Value| -> Result<()> {
        let p = dir.join(name);
        let text =
            serde_json::to_string_pretty(v).map_err(|e| EngineError::model(&p, e.to_string()))?;
        std::fs::write(&p, text + "\n").map_err(|e| EngineError::io(&p, e))
    };
    let cfg_json = serde_json::to_value(cfg).map_err(|e| EngineError::model(dir, e.to_string()))?;
    write_json("config.json", &cfg_json)?;
    write_json(
        "generation_config.json",
        &serde_json::json!({
            "bos_token_id": cfg.bos_token_id,
            "eos_token_id": cfg.eos_token_id,
            "pad_token_id": cfg.pad_token_id,
        }),
    )?;
    write_json("tokenizer_config.json", &tok.config)?;
    let tok_path = dir.join("tokenizer.json");
    tok.tokenizer
        .save(&tok_path, true)
        .map_err(|e| EngineError::model(&tok_path, format!("cannot write tokenizer: {e}")))?;
    let path = dir.join("model.safetensors");
    let meta = HashMap::from([("format".to_string(), "pt".to_string())]);
    safetensors::serialize_to_file(tensors.iter().map(|(n, t)| (n, t)), Some(meta), &path)
        .map_err(|e| EngineError::model(&path, format!("cannot write weights: {e}")))?;
    let mut bytes = 0;
    for e in std::fs::read_dir(dir).map_err(|e| EngineError::io(dir, e))? {
        let e = e.map_err(|e| EngineError::io(dir, e))?;
        bytes += e
            .metadata()
            .map_err(|err| EngineError::io(e.path(), err))?
            .len();
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests;
