//! Fuzz targets as property tests (stable Rust): the run-config parser and validation, the JSONL
//! dataset reader and the model-folder loader (config keys and rope dicts, tokenizer files,
//! `tokenizer_config.json`, chat templates, weight bytes) never panic on mutated input, every
//! error they give says something, and `models inspect` refuses exactly what loading refuses. `RLVR_FUZZ_CASES` sets the number of cases per target (default
//! 64, so that CI stays fast); the model loader runs a tenth of them (it copies a 3 MB folder
//! per case). Run by hand: `RLVR_FUZZ_CASES=1000000 cargo test --release -p rlvr-engine --test
//! fuzz config`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};

use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};

fn cases() -> u32 {
    std::env::var("RLVR_FUZZ_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(64)
}

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn presets() -> Vec<String> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(repo().join("app/presets"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
        .collect();
    v.sort();
    v.iter()
        .map(|p| std::fs::read_to_string(p).unwrap())
        .collect()
}

/// One edit of a text made of lines.
#[derive(Clone, Debug)]
enum Edit {
    /// Replace the value after `=` on a line.
    Value(usize, String),
    /// Replace the key before `=` on a line.
    Key(usize, String),
    Delete(usize),
    Duplicate(usize),
    /// Insert a line.
    Insert(usize, String),
    /// Overwrite bytes at a position.
    Bytes(usize, Vec<u8>),
}

fn value() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<i64>().prop_map(|v| v.to_string()),
        any::<f64>().prop_map(|v| format!("{v:?}")),
        Just("nan".to_string()),
        Just("-inf".to_string()),
        Just("1e300".to_string()),
        Just("\"\"".to_string()),
        Just("true".to_string()),
        Just("[]".to_string()),
        Just("{}".to_string()),
        Just("{ k = 200 }".to_string()),
        Just("{ t0 = 1.0 }".to_string()),
        "[a-z_]{0,12}".prop_map(|s| format!("{s:?}")),
        "\\PC{0,20}",
        (0u32..5000).prop_map(|v| v.to_string()),
        (-2.0f64..2.0).prop_map(|v| v.to_string()),
    ]
}

fn key() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-z_]{1,24}",
        Just("[rollout]".to_string()),
        Just("[[rewards.components]]".to_string()),
        Just("sampler_params".to_string()),
        Just("verifier_params".to_string()),
        Just("advantage".to_string()),
        Just("group_size".to_string()),
        Just("name".to_string()),
        "\\PC{0,10}",
    ]
}

fn edit() -> impl Strategy<Value = Edit> {
    prop_oneof![
        4 => (any::<usize>(), value()).prop_map(|(i, v)| Edit::Value(i, v)),
        2 => (any::<usize>(), key()).prop_map(|(i, k)| Edit::Key(i, k)),
        1 => any::<usize>().prop_map(Edit::Delete),
        1 => any::<usize>().prop_map(Edit::Duplicate),
        1 => (any::<usize>(), (key(), value()).prop_map(|(k, v)| format!("{k} = {v}")))
            .prop_map(|(i, l)| Edit::Insert(i, l)),
        1 => (any::<usize>(), proptest::collection::vec(any::<u8>(), 1..8))
            .prop_map(|(i, b)| Edit::Bytes(i, b)),
    ]
}

/// Applies the edits to `text` (positions taken modulo its length).
fn mutate(text: &str, edits: &[Edit]) -> Vec<u8> {
    let mut lines: Vec<String> = text.lines().map(String::from).collect();
    let mut bytes: Vec<(usize, Vec<u8>)> = Vec::new();
    for e in edits {
        let n = lines.len().max(1);
        match e {
            Edit::Value(i, v) | Edit::Key(i, v) if lines.is_empty() => lines.push(v.clone()),
            Edit::Value(i, v) => {
                let l = &mut lines[i % n];
                let k = l.split('=').next().unwrap_or("").trim().to_string();
                *l = format!("{k} = {v}");
            }
            Edit::Key(i, k) => {
                let l = &mut lines[i % n];
                let v = l.split_once('=').map_or("1", |(_, v)| v).trim().to_string();
                *l = format!("{k} = {v}");
            }
            Edit::Delete(i) if !lines.is_empty() => {
                lines.remove(i % n);
            }
            Edit::Duplicate(i) if !lines.is_empty() => {
                let l = lines[i % n].clone();
                lines.insert(i % n, l);
            }
            Edit::Insert(i, l) => lines.insert(i % (lines.len() + 1), l.clone()),
            Edit::Bytes(i, b) => bytes.push((*i, b.clone())),
            _ => {}
        }
    }
    let mut out = lines.join("\n").into_bytes();
    for (i, b) in bytes {
        if out.is_empty() {
            out.extend_from_slice(&b);
            continue;
        }
        let at = i % out.len();
        for (j, x) in b.iter().enumerate() {
            if let Some(slot) = out.get_mut(at + j) {
                *slot = *x;
            }
        }
    }
    out
}

fn runner(cases: u32) -> TestRunner {
    TestRunner::new(Config {
        cases,
        failure_persistence: None,
        ..Config::default()
    })
}

fn says_something(e: &dyn std::fmt::Display) -> Result<(), TestCaseError> {
    let m = e.to_string();
    prop_assert!(!m.trim().is_empty(), "an empty error message");
    Ok(())
}

#[test]
fn config_parser_never_panics_and_errors_say_something() {
    let presets = presets();
    let t0 = std::time::Instant::now();
    let strategy = (0..presets.len(), proptest::collection::vec(edit(), 1..6));
    runner(cases())
        .run(&strategy, |(p, edits)| {
            let bytes = mutate(&presets[p], &edits);
            let text = String::from_utf8_lossy(&bytes);
            match rlvr_engine::RunConfig::from_toml(&text) {
                Ok(cfg) => {
                    // What validated also round-trips.
                    let again = rlvr_engine::RunConfig::from_toml(&cfg.to_toml());
                    prop_assert!(again.is_ok(), "{text}\n=> {:?}", again.err());
                }
                Err(e) => says_something(&e)?,
            }
            Ok(())
        })
        .unwrap();
    eprintln!("config: {} cases in {:.1?}", cases(), t0.elapsed());
}

fn dataset_line() -> impl Strategy<Value = String> {
    prop_oneof![
        ("\\PC{0,30}", "\\PC{0,10}")
            .prop_map(|(p, a)| serde_json::json!({"prompt": p, "answer": a}).to_string()),
        ("\\PC{0,10}", any::<i64>())
            .prop_map(|(p, a)| serde_json::json!({"prompt": p, "answer": a}).to_string()),
        Just(r#"{"prompt": "1+1=", "answer": "2", "meta": {"x": [1, null]}}"#.to_string()),
        Just(r#"{"prompt": ""}"#.to_string()),
        Just("[1, 2]".to_string()),
        Just("null".to_string()),
        Just("\u{feff}{\"prompt\": \"a\", \"answer\": \"b\"}".to_string()),
        "\\PC{0,40}",
        Just(String::new()),
    ]
}

#[test]
fn dataset_reader_never_panics_and_errors_say_something() {
    use rlvr_engine::tasks::{DatasetConfig, TaskConfig};
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("d.jsonl");
    let t0 = std::time::Instant::now();
    let strategy = (
        proptest::collection::vec(dataset_line(), 0..12),
        proptest::collection::vec(edit(), 0..3),
    );
    runner(cases())
        .run(&strategy, |(lines, edits)| {
            let text = lines.join("\n");
            let bytes = if edits.is_empty() {
                text.into_bytes()
            } else {
                mutate(&text, &edits)
            };
            std::fs::write(&path, &bytes).unwrap();
            let cfg = TaskConfig::Dataset(DatasetConfig { path: path.clone() });
            match rlvr_engine::tasks::build(&cfg) {
                Ok(task) => {
                    prop_assert!(!task.name().is_empty());
                }
                Err(e) => says_something(&e)?,
            }
            Ok(())
        })
        .unwrap();
    eprintln!("dataset: {} cases in {:.1?}", cases(), t0.elapsed());
}

/// One edit of the model folder.
#[derive(Clone, Debug)]
enum ModelEdit {
    /// Set a key of config.json (a nested path of tokenizer.json's `model` when `tok`).
    Json {
        tok: bool,
        key: String,
        value: serde_json::Value,
    },
    /// Remove a key of config.json.
    Remove(String),
    /// Overwrite bytes of model.safetensors.
    Weights(usize, Vec<u8>),
    /// Cut model.safetensors.
    Truncate(usize),
    /// Overwrite bytes of tokenizer.json.
    TokBytes(usize, Vec<u8>),
    /// Set `rope_scaling` (or `rope_parameters`) of config.json to a dict.
    Rope {
        parameters: bool,
        dict: serde_json::Map<String, serde_json::Value>,
    },
    /// Set a key of tokenizer_config.json (created when missing).
    TokConfig(String, serde_json::Value),
    /// Write chat_template.jinja.
    Template(String),
}

const ROPE_KEYS: &[&str] = &[
    "rope_type",
    "type",
    "rope_theta",
    "factor",
    "low_freq_factor",
    "high_freq_factor",
    "original_max_position_embeddings",
    "attention_factor",
    "mrope_section",
];

const ROPE_TYPES: &[&str] = &["default", "linear", "llama3", "dynamic", "yarn", "x", ""];

/// Pieces of Jinja, assembled into templates that mostly fail to compile or to render.
const TEMPLATE_PIECES: &[&str] = &[
    "{{",
    "}}",
    "{%",
    "%}",
    "{%- ",
    " -%}",
    " for m in messages ",
    " endfor ",
    " if ",
    " endif ",
    " else ",
    "messages",
    "[0]",
    "[-1]",
    "[::-1]",
    ".content",
    ".role",
    " | tojson",
    "|tojson(indent=2)",
    "raise_exception('refused')",
    "strftime_now('%d %b %Y')",
    "strftime_now('%Q')",
    "loop.index0",
    "(",
    ")",
    "'",
    "\"",
    "bos_token",
    " + ",
    "range(100000)",
    "namespace(n=1)",
    ".strip()",
    ".split('x')[1]",
    "add_generation_prompt",
    "enable_thinking",
    " is defined ",
    " not ",
    "\n",
    "<|im_start|>",
    "{# c #}",
    " set x = ",
    "x",
    " break ",
    " continue ",
];

fn template() -> impl Strategy<Value = String> {
    proptest::collection::vec(proptest::sample::select(TEMPLATE_PIECES), 1..24)
        .prop_map(|v| v.concat())
}

fn rope_value() -> impl Strategy<Value = serde_json::Value> {
    prop_oneof![
        2 => proptest::sample::select(ROPE_TYPES).prop_map(|t| serde_json::json!(t)),
        1 => Just(serde_json::json!(-1.0)),
        1 => Just(serde_json::json!(1e308)),
        1 => Just(serde_json::json!([1, 2])),
        3 => json_value(),
    ]
}

const CONFIG_KEYS: &[&str] = &[
    "hidden_size",
    "intermediate_size",
    "num_hidden_layers",
    "num_attention_heads",
    "num_key_value_heads",
    "vocab_size",
    "max_position_embeddings",
    "rms_norm_eps",
    "rope_theta",
    "tie_word_embeddings",
    "model_type",
    "architectures",
    "head_dim",
    "bos_token_id",
    "eos_token_id",
    "torch_dtype",
];

fn json_value() -> impl Strategy<Value = serde_json::Value> {
    use serde_json::json;
    prop_oneof![
        (0i64..4096).prop_map(|v| json!(v)),
        (-4i64..0).prop_map(|v| json!(v)),
        Just(json!(0)),
        Just(json!(1.5)),
        Just(json!(1e-30)),
        Just(json!("qwen2")),
        Just(json!("llama")),
        Just(json!("x")),
        Just(json!(null)),
        Just(json!(true)),
        Just(json!([])),
        Just(json!({})),
    ]
}

fn model_edit() -> impl Strategy<Value = ModelEdit> {
    let key = proptest::sample::select(CONFIG_KEYS).prop_map(String::from);
    prop_oneof![
        4 => (key.clone(), json_value())
            .prop_map(|(key, value)| ModelEdit::Json { tok: false, key, value }),
        1 => (proptest::sample::select(&["type", "unk_token", "vocab", "merges"][..]), json_value())
            .prop_map(|(k, value)| ModelEdit::Json { tok: true, key: k.to_string(), value }),
        1 => key.prop_map(ModelEdit::Remove),
        2 => (any::<usize>(), proptest::collection::vec(any::<u8>(), 1..16))
            .prop_map(|(i, b)| ModelEdit::Weights(i, b)),
        1 => any::<usize>().prop_map(ModelEdit::Truncate),
        1 => (any::<usize>(), proptest::collection::vec(any::<u8>(), 1..8))
            .prop_map(|(i, b)| ModelEdit::TokBytes(i, b)),
        2 => (any::<bool>(), proptest::collection::btree_map(
                proptest::sample::select(ROPE_KEYS).prop_map(String::from), rope_value(), 0..4))
            .prop_map(|(parameters, m)| ModelEdit::Rope { parameters, dict: m.into_iter().collect() }),
        2 => (proptest::sample::select(&["chat_template", "add_bos_token", "bos_token", "eos_token", "pad_token", "unk_token"][..]),
              prop_oneof![json_value(), template().prop_map(serde_json::Value::from),
                          Just(serde_json::json!([{"name": "default", "template": "{{ messages }}"}])),
                          Just(serde_json::json!({"content": "<eos>"}))])
            .prop_map(|(k, v)| ModelEdit::TokConfig(k.to_string(), v)),
        2 => template().prop_map(ModelEdit::Template),
    ]
}

fn overwrite(path: &Path, at: usize, b: &[u8], header_bias: bool) {
    let mut bytes = std::fs::read(path).unwrap();
    if bytes.is_empty() {
        return;
    }
    // Half the weight edits hit the header (its length and JSON), where the checks are.
    let at = if header_bias && at.is_multiple_of(2) {
        at % 2048.min(bytes.len())
    } else {
        at % bytes.len()
    };
    for (j, x) in b.iter().enumerate() {
        if let Some(s) = bytes.get_mut(at + j) {
            *s = *x;
        }
    }
    std::fs::write(path, bytes).unwrap();
}

fn apply_model_edit(dir: &Path, e: &ModelEdit) {
    let edit_json = |file: &str, f: &dyn Fn(&mut serde_json::Value)| {
        let p = dir.join(file);
        let Ok(mut v) = serde_json::from_slice::<serde_json::Value>(&std::fs::read(&p).unwrap())
        else {
            return;
        };
        f(&mut v);
        std::fs::write(&p, v.to_string()).unwrap();
    };
    match e {
        ModelEdit::Json {
            tok: false,
            key,
            value,
        } => edit_json("config.json", &|v| {
            v[key.as_str()] = value.clone();
        }),
        ModelEdit::Json {
            tok: true,
            key,
            value,
        } => edit_json("tokenizer.json", &|v| {
            v["model"][key.as_str()] = value.clone();
        }),
        ModelEdit::Remove(key) => edit_json("config.json", &|v| {
            if let Some(o) = v.as_object_mut() {
                o.remove(key);
            }
        }),
        ModelEdit::Weights(at, b) => overwrite(&dir.join("model.safetensors"), *at, b, true),
        ModelEdit::Truncate(at) => {
            let p = dir.join("model.safetensors");
            let len = std::fs::metadata(&p).unwrap().len() as usize;
            let f = std::fs::OpenOptions::new().write(true).open(&p).unwrap();
            f.set_len((at % len.max(1)) as u64).unwrap();
        }
        ModelEdit::TokBytes(at, b) => overwrite(&dir.join("tokenizer.json"), *at, b, false),
        ModelEdit::Rope { parameters, dict } => {
            let key = if *parameters {
                "rope_parameters"
            } else {
                "rope_scaling"
            };
            edit_json("config.json", &|v| {
                v[key] = serde_json::Value::Object(dict.clone());
            });
        }
        ModelEdit::TokConfig(key, value) => {
            let p = dir.join("tokenizer_config.json");
            if !p.exists() {
                std::fs::write(&p, "{}").unwrap();
            }
            edit_json("tokenizer_config.json", &|v| {
                v[key.as_str()] = value.clone();
            });
        }
        ModelEdit::Template(t) => std::fs::write(dir.join("chat_template.jinja"), t).unwrap(),
    }
}

#[test]
fn model_loader_never_panics_and_errors_say_something() {
    let src = repo().join("app/assets/default-policy");
    let t0 = std::time::Instant::now();
    let n = (cases() / 10).max(4);
    let strategy = proptest::collection::vec(model_edit(), 1..4);
    runner(n)
        .run(&strategy, |edits| {
            let dir = tempfile::tempdir().unwrap();
            for f in ["config.json", "tokenizer.json", "model.safetensors"] {
                std::fs::copy(src.join(f), dir.path().join(f)).unwrap();
            }
            for e in &edits {
                apply_model_edit(dir.path(), e);
            }
            let loaded = rlvr_engine::model::Policy::load(dir.path(), &candle_core::Device::Cpu);
            // `models inspect` (and the GUI's picker) refuse what loading refuses, with the same
            // message; only the weights' values (non-finite ones) are beyond them.
            let facts = rlvr_engine::model::inspect::inspect(dir.path(), 8, 64, false);
            match (&loaded, &facts) {
                (Err(e), Err(f)) => prop_assert_eq!(e.to_string(), f.to_string()),
                (Ok(_), Err(f)) => prop_assert!(false, "inspect refused a loadable folder: {f}"),
                (Err(e), Ok(_)) => prop_assert!(
                    e.to_string().contains("unreadable weights")
                        || e.to_string().contains("finite"),
                    "inspect accepted a folder load refuses: {e}"
                ),
                (Ok(_), Ok(_)) => {}
            }
            match loaded {
                Err(e) => says_something(&e)?,
                // A template that compiled renders a prompt or says why not.
                Ok(p) => {
                    if let Some(t) = &p.tok.template {
                        if let Err(e) = t.render_prompt(Some("s"), "1+2=", false) {
                            says_something(&e)?;
                        }
                    }
                }
            }
            Ok(())
        })
        .unwrap();
    eprintln!("model: {n} cases in {:.1?}", t0.elapsed());
}
