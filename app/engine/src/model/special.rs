//! The special tokens of a model folder, from the three files `transformers` reads them from:
//! `config.json` (`bos/eos/pad_token_id`), `generation_config.json` (the `eos_token_id`s
//! `generate` stops on) and `tokenizer_config.json` (`add_bos_token`, and the `bos/eos/pad_token`
//! strings, or `{"content": …}` objects, when the config gives no id).

use std::path::Path;

use serde_json::Value;

use super::{ModelConfig, TokenIds};
use crate::chat::{ChatTemplate, SpecialTokens};
use crate::error::{EngineError, Result};
use crate::tokenizer::Tok;

/// A JSON file of the folder, `None` when it does not exist.
pub(super) fn read_json(dir: &Path, name: &str) -> Result<Option<(std::path::PathBuf, Value)>> {
    let path = dir.join(name);
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(EngineError::io(&path, e)),
    };
    let v: Value = serde_json::from_str(&text)
        .map_err(|e| EngineError::model(&path, format!("not JSON: {e}")))?;
    if !v.is_object() {
        return Err(EngineError::model(&path, "expected a JSON object"));
    }
    Ok(Some((path, v)))
}

/// `eos_token_id` of `generation_config.json`: a number or a list of numbers.
/// Each id must be below `vocab_size`.
fn generation_eos(dir: &Path, vocab_size: usize) -> Result<Vec<u32>> {
    let Some((path, v)) = read_json(dir, "generation_config.json")? else {
        return Ok(Vec::new());
    };
    let ids = match v.get("eos_token_id") {
        None | Some(Value::Null) => return Ok(Vec::new()),
        Some(x) => serde_json::from_value::<TokenIds>(x.clone())
            .map(|ids| ids.to_vec())
            .map_err(|_| {
                EngineError::model(
                    &path,
                    format!("eos_token_id = {x} is invalid: expected a token id or a list of ids"),
                )
            })?,
    };
    if let Some(id) = ids.iter().find(|id| **id as usize >= vocab_size) {
        return Err(EngineError::model(
            &path,
            format!(
                "eos_token_id {id} is out of range: expected ids below config.json vocab_size = \
                 {vocab_size}"
            ),
        ));
    }
    Ok(ids)
}

/// A special token of `tokenizer_config.json`: a string or an AddedToken `{"content": …}`.
fn token_string(cfg: &Value, path: &Path, key: &str) -> Result<Option<String>> {
    match cfg.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(Value::Object(o)) => match o.get("content") {
            Some(Value::String(s)) => Ok(Some(s.clone())),
            _ => Err(EngineError::model(
                path,
                format!("{key} is an object without a \"content\" string"),
            )),
        },
        Some(other) => Err(EngineError::model(
            path,
            format!("{key} = {other} is invalid: expected a token string"),
        )),
    }
}

/// Reads the tokenizer of `dir` with the special ids of its files: the config's ids first,
/// then `tokenizer_config.json`'s token strings; every end-of-sequence id of `config.json` and
/// `generation_config.json` stops generation. The chat template (`chat_template.jinja`, else
/// `tokenizer_config.json`) comes with it, seeing `tokenizer_config.json`'s token strings (the
/// text of the resolved ids where that file names none). Any id not below `cfg.vocab_size` is refused by the
/// caller's check.
pub(super) fn tokenizer(dir: &Path, cfg: &ModelConfig) -> Result<Tok> {
    let tok_path = dir.join("tokenizer.json");
    let tc = read_json(dir, "tokenizer_config.json")?;
    let gen_eos = generation_eos(dir, cfg.vocab_size)?;
    let cfg_eos = cfg
        .eos_token_id
        .as_ref()
        .map(TokenIds::to_vec)
        .unwrap_or_default();
    // Token strings of tokenizer_config.json, resolved once the tokenizer is read.
    let strings = |key: &str| -> Result<Option<String>> {
        match &tc {
            Some((path, v)) => token_string(v, path, key),
            None => Ok(None),
        }
    };
    let (bos_s, eos_s, pad_s) = (
        strings("bos_token")?,
        strings("eos_token")?,
        strings("pad_token")?,
    );
    let eos = cfg_eos.first().or(gen_eos.first()).copied();
    // Only read the tokenizer an extra time when a string must be looked up.
    let needs_lookup = (cfg.bos_token_id.is_none() && bos_s.is_some())
        || (eos.is_none() && eos_s.is_some())
        || (cfg.pad_token_id.is_none() && pad_s.is_some());
    let probe = match needs_lookup {
        true => Some(Tok::from_file(&tok_path, Some(0), Some(0), Some(0))?),
        false => None,
    };
    let id_of = |key: &str, s: &Option<String>| -> Result<Option<u32>> {
        let (Some(s), Some(probe)) = (s, &probe) else {
            return Ok(None);
        };
        match probe.token_id(s) {
            Some(id) => Ok(Some(id)),
            None => Err(EngineError::model(
                tc.as_ref().map_or(dir, |(p, _)| p.as_path()),
                format!("{key} = {s:?} is not a token of tokenizer.json"),
            )),
        }
    };
    let bos = match cfg.bos_token_id {
        Some(id) => Some(id),
        None => id_of("bos_token", &bos_s)?,
    };
    let eos = match eos {
        Some(id) => Some(id),
        None => id_of("eos_token", &eos_s)?,
    };
    let pad = match cfg.pad_token_id {
        Some(id) => Some(id),
        None => id_of("pad_token", &pad_s)?,
    };
    let mut tok = Tok::from_file(&tok_path, bos, eos, pad)?;
    for id in cfg_eos.into_iter().chain(gen_eos) {
        if !tok.stop.contains(&id) {
            tok.stop.push(id);
        }
    }
    let text = |id: Option<u32>| id.map(|id| tok.token_text(id));
    let specials = SpecialTokens {
        bos: bos_s.or_else(|| text(tok.bos)),
        eos: eos_s.or_else(|| text(Some(tok.eos))),
        unk: strings("unk_token")?,
        pad: pad_s.or_else(|| text(Some(tok.pad))),
    };
    tok.template = ChatTemplate::from_folder(dir, tc.as_ref(), specials)?;
    tok.config = tc.as_ref().map(|(_, v)| v.clone());
    // The studio's own folders from before it wrote tokenizer_config.json got their BOS from
    // the studio, not from a post-processor (see `Tok::add_bos`).
    tok.add_bos = tc.is_none() && !tok.has_post_processor() && tok.bos.is_some();
    if let Some((path, v)) = &tc {
        // transformers ignores it (the post-processor decides); only its type is checked.
        match v.get("add_bos_token") {
            None | Some(Value::Null) | Some(Value::Bool(_)) => {}
            Some(other) => {
                return Err(EngineError::model(
                    path,
                    format!("add_bos_token = {other} is invalid: expected true or false"),
                ))
            }
        }
    }
    Ok(tok)
}
