//! `tokenizer.json` and `tokenizer_config.json` from the `tokenizer.*` keys of a GGUF file.
//!
//! Only llama.cpp's `gpt2` tokenizer model (byte-level BPE) is imported, with the pre-tokenizers
//! whose Hugging Face form is known exactly: `smollm` (`\p{N}` then the GPT-2 pattern = HF
//! `Digits(individual_digits)` + `ByteLevel(use_regex)`), `qwen2` (the Qwen2 split pattern, NFC)
//! and `llama-bpe` (the Llama 3 split pattern, whole-word vocabulary hits before merges). Other
//! `tokenizer.ggml.pre` values are refused naming the key.

use candle_core::quantized::gguf_file::Value;
use serde_json::json;
use tokenizers::decoders::byte_level::ByteLevel as ByteLevelDecoder;
use tokenizers::models::bpe::BPE;
use tokenizers::normalizers::unicode::NFC;
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::pre_tokenizers::digits::Digits;
use tokenizers::pre_tokenizers::sequence::Sequence;
use tokenizers::pre_tokenizers::split::{Split, SplitPattern};
use tokenizers::processors::sequence::Sequence as ProcessorSequence;
use tokenizers::processors::template::TemplateProcessing;
use tokenizers::{AddedToken, SplitDelimiterBehavior, Tokenizer};

use super::{show, GgufFile};
use crate::error::Result;
use crate::model::ModelConfig;

/// The Qwen2 pre-tokenizer's split pattern, as in the Qwen2/2.5/3 `tokenizer.json`.
const QWEN2_PATTERN: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

/// The Llama 3 pre-tokenizer's split pattern (digits in runs of up to three).
const LLAMA3_PATTERN: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

/// llama.cpp token types (`llama_token_type`).
const TOKEN_CONTROL: i64 = 3;
const TOKEN_USER_DEFINED: i64 = 4;

/// A tokenizer built from the metadata, and its `tokenizer_config.json`.
pub(super) struct Built {
    pub tokenizer: Tokenizer,
    pub config: serde_json::Value,
}

/// The strings of an array key.
fn strings<'a>(g: &'a GgufFile, key: &str) -> Result<Vec<&'a str>> {
    let bad = |v: &Value| {
        g.err(format!(
            "GGUF key {key} = {}: expected an array of strings",
            show(v)
        ))
    };
    match g.meta(key)? {
        Value::Array(a) => a
            .iter()
            .map(|v| match v {
                Value::String(s) => Ok(s.as_str()),
                other => Err(bad(other)),
            })
            .collect(),
        v => Err(bad(v)),
    }
}

/// Token types (one integer per token; all "normal" when the key is absent).
fn token_types(g: &GgufFile, n: usize) -> Result<Vec<i64>> {
    let key = "tokenizer.ggml.token_type";
    let Some(v) = g.content.metadata.get(key) else {
        return Ok(vec![1; n]);
    };
    let bad = || {
        g.err(format!(
            "GGUF key {key} = {}: expected {n} integers",
            show(v)
        ))
    };
    let Value::Array(a) = v else {
        return Err(bad());
    };
    if a.len() != n {
        return Err(bad());
    }
    a.iter()
        .map(|v| match *v {
            Value::I32(x) => Ok(x.into()),
            Value::U32(x) => Ok(x.into()),
            Value::I8(x) => Ok(x.into()),
            Value::U8(x) => Ok(x.into()),
            _ => Err(bad()),
        })
        .collect()
}

/// Builds the tokenizer and its config; `cfg` gives the special ids and the context length.
pub(super) fn build(g: &GgufFile, cfg: &ModelConfig) -> Result<Built> {
    let model = g.meta_str("tokenizer.ggml.model")?;
    if model != "gpt2" {
        return Err(g.err(format!(
            "GGUF key tokenizer.ggml.model = {model:?} is not supported: expected \"gpt2\" (byte-level BPE)"
        )));
    }
    let pre = g.opt_str("tokenizer.ggml.pre")?.unwrap_or("default");
    let tokens = strings(g, "tokenizer.ggml.tokens")?;
    if tokens.len() > cfg.vocab_size {
        return Err(g.err(format!(
            "GGUF key tokenizer.ggml.tokens has {} tokens but token_embd.weight only {} rows",
            tokens.len(),
            cfg.vocab_size
        )));
    }
    let merges = strings(g, "tokenizer.ggml.merges")?
        .into_iter()
        .enumerate()
        .map(|(i, m)| {
            m.split_once(' ')
                .filter(|(a, b)| !a.is_empty() && !b.is_empty() && !b.contains(' '))
                .map(|(a, b)| (a.to_string(), b.to_string()))
                .ok_or_else(|| {
                    g.err(format!(
                        "GGUF key tokenizer.ggml.merges[{i}] = {m:?}: expected two tokens separated by one space"
                    ))
                })
        })
        .collect::<Result<Vec<_>>>()?;
    let types = token_types(g, tokens.len())?;
    let mut vocab = tokenizers::models::bpe::Vocab::default();
    for (i, t) in tokens.iter().enumerate() {
        if vocab.insert((*t).to_string(), i as u32).is_some() {
            return Err(g.err(format!(
                "GGUF key tokenizer.ggml.tokens[{i}] = {t:?} repeats an earlier token"
            )));
        }
    }
    let bpe = BPE::builder()
        .vocab_and_merges(vocab, merges)
        .ignore_merges(pre == "llama-bpe")
        .build()
        .map_err(|e| g.err(format!("GGUF tokenizer: cannot build the BPE model: {e}")))?;
    let mut tok = Tokenizer::new(bpe);
    match pre {
        "smollm" => {
            tok.with_pre_tokenizer(Some(Sequence::new(vec![
                Digits::new(true).into(),
                ByteLevel::new(false, true, true).into(),
            ])));
        }
        "qwen2" | "llama-bpe" => {
            let pattern = if pre == "qwen2" { QWEN2_PATTERN } else { LLAMA3_PATTERN };
            let split = Split::new(
                SplitPattern::Regex(pattern.into()),
                SplitDelimiterBehavior::Isolated,
                false,
            )
            .map_err(|e| g.err(format!("GGUF tokenizer: {e}")))?;
            if pre == "qwen2" {
                tok.with_normalizer(Some(NFC))
                    .map_err(|e| g.err(format!("GGUF tokenizer: {e}")))?;
            }
            tok.with_pre_tokenizer(Some(Sequence::new(vec![
                split.into(),
                ByteLevel::new(false, false, false).into(),
            ])));
        }
        other => {
            return Err(g.err(format!(
                "GGUF key tokenizer.ggml.pre = {other:?} is not supported: expected \"smollm\", \"qwen2\" or \"llama-bpe\" \
                 (pre-tokenizers whose Hugging Face form is known exactly)"
            )))
        }
    }
    tok.with_decoder(Some(ByteLevelDecoder::new(false, false, pre == "smollm")));
    let mut added = serde_json::Map::new();
    let mut special = Vec::new();
    let mut user = Vec::new();
    for (i, (t, ty)) in tokens.iter().zip(&types).enumerate() {
        let is_special = match *ty {
            TOKEN_CONTROL => true,
            TOKEN_USER_DEFINED => false,
            _ => continue,
        };
        let at = AddedToken::from(*t, is_special).normalized(false);
        if is_special {
            special.push(at);
        } else {
            user.push(at);
        }
        added.insert(
            i.to_string(),
            json!({"content": t, "lstrip": false, "normalized": false, "rstrip": false,
                   "single_word": false, "special": is_special}),
        );
    }
    tok.add_special_tokens(special)
        .map_err(|e| g.err(format!("GGUF tokenizer: {e}")))?;
    tok.add_tokens(user)
        .map_err(|e| g.err(format!("GGUF tokenizer: {e}")))?;
    let name = |id: Option<u32>| id.and_then(|i| tokens.get(i as usize).copied());
    let eos = cfg
        .eos_token_id
        .as_ref()
        .and_then(|e| e.to_vec().first().copied());
    let flag = |key: &str| matches!(g.content.metadata.get(key), Some(Value::Bool(true)));
    let (add_bos, add_eos) = (
        flag("tokenizer.ggml.add_bos_token"),
        flag("tokenizer.ggml.add_eos_token"),
    );
    // The BOS/EOS llama.cpp adds to a prompt go into the post-processor, where transformers
    // (and the studio) take them from.
    let byte_level = ByteLevel::new(false, false, pre == "smollm");
    let mut pieces = Vec::new();
    let mut specials = Vec::new();
    for (on, id, what) in [(add_bos, cfg.bos_token_id, "bos"), (add_eos, eos, "eos")] {
        if !on {
            continue;
        }
        let (Some(id), Some(t)) = (id, name(id)) else {
            return Err(g.err(format!(
                "GGUF key tokenizer.ggml.add_{what}_token = true, but the file names no {what} token"
            )));
        };
        pieces.push((what, t.to_string()));
        specials.push((t.to_string(), id));
    }
    if pieces.is_empty() {
        tok.with_post_processor(Some(byte_level));
    } else {
        let seq = |a: &str| -> String {
            let mut v: Vec<String> = Vec::new();
            v.extend(pieces.iter().filter(|p| p.0 == "bos").map(|p| p.1.clone()));
            v.push(a.to_string());
            v.extend(pieces.iter().filter(|p| p.0 == "eos").map(|p| p.1.clone()));
            v.join(" ")
        };
        let template = TemplateProcessing::builder()
            .try_single(seq("$A"))
            .and_then(|b| b.try_pair(format!("{} {}", seq("$A"), seq("$B:1"))))
            .map_err(|e| g.err(format!("GGUF tokenizer: {e}")))?
            .special_tokens(specials)
            .build()
            .map_err(|e| g.err(format!("GGUF tokenizer: {e}")))?;
        tok.with_post_processor(Some(ProcessorSequence::new(vec![
            byte_level.into(),
            template.into(),
        ])));
    }
    let config = json!({
        "add_bos_token": add_bos,
        "add_eos_token": add_eos,
        "added_tokens_decoder": added,
        "bos_token": name(cfg.bos_token_id),
        "eos_token": name(eos),
        "pad_token": name(cfg.pad_token_id),
        "unk_token": name(g.opt_u32("tokenizer.ggml.unknown_token_id")?),
        "chat_template": g.opt_str("tokenizer.chat_template")?,
        "clean_up_tokenization_spaces": false,
        "model_max_length": cfg.max_position_embeddings,
        "tokenizer_class": match pre {
            "qwen2" => "Qwen2Tokenizer",
            "llama-bpe" => "PreTrainedTokenizerFast",
            _ => "GPT2Tokenizer",
        },
    });
    Ok(Built {
        tokenizer: tok,
        config,
    })
}
