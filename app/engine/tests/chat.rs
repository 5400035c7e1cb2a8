//! Chat templates against `transformers`' `apply_chat_template`: the real Qwen2.5, Qwen3,
//! Llama 3 and SmolLM2 templates render every fixture conversation to the same text, and the
//! prompt path of rollouts (`Tok::use_chat` + `encode_prompt`) gives the same token ids.
//! Fixtures: `tests/fixtures/chat/cases.json`, written by `scripts/chat-fixtures.py`; templates
//! and tokenizers: the test assets of `scripts/fetch-test-assets.sh`.
#![allow(clippy::unwrap_used)]

mod common;

use std::path::{Path, PathBuf};

use common::asset;

use candle_core::quantized::gguf_file::{self, Value as GgufValue};
use rlvr_engine::chat::{RenderOptions, TEMPLATE_FILE};
use rlvr_engine::model::Policy;
use rlvr_engine::tokenizer::{ChatPrompt, Tok};
use serde_json::Value;
use sha2::{Digest, Sha256};

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/chat")
}

/// A model folder around a real tokenizer: a tiny `config.json` (the tokenizer's vocabulary),
/// the asset's `tokenizer.json` and `tokenizer_config.json`, and `chat_template.jinja` when
/// `template` is given. Only the tokenizer of it is read.
fn folder(dir: &Path, tokenizer: &str, template: Option<&str>) -> Tok {
    let src = asset(tokenizer);
    for f in ["tokenizer.json", "tokenizer_config.json"] {
        std::fs::copy(src.join(f), dir.join(f)).unwrap();
    }
    if let Some(t) = template {
        std::fs::write(dir.join(TEMPLATE_FILE), t).unwrap();
    }
    let vocab = match tokenizer {
        "tokenizer-qwen3" => 151_669,
        _ => 128_256,
    };
    let config = serde_json::json!({
        "architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": 16,
        "intermediate_size": 32, "num_hidden_layers": 1, "num_attention_heads": 2,
        "num_key_value_heads": 2, "vocab_size": vocab, "max_position_embeddings": 4096,
        "rms_norm_eps": 1e-6, "tie_word_embeddings": true
    });
    std::fs::write(dir.join("config.json"), config.to_string()).unwrap();
    let cfg = Policy::read_config(dir).unwrap();
    Policy::read_tokenizer(dir, &cfg).unwrap()
}

fn smollm2_template() -> String {
    let path = asset("SmolLM2-135M-Instruct.Q4_1.gguf");
    let mut f = std::fs::File::open(&path).unwrap();
    let content = gguf_file::Content::read(&mut f).unwrap();
    match content.metadata.get("tokenizer.chat_template") {
        Some(GgufValue::String(s)) => s.clone(),
        other => panic!("no chat template in {}: {other:?}", path.display()),
    }
}

fn sha256(s: &str) -> String {
    Sha256::digest(s.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[test]
fn templates_render_as_transformers_does() {
    let text = std::fs::read_to_string(fixtures().join("cases.json")).unwrap();
    let cases: Value = serde_json::from_str(&text).unwrap();
    // The same file read by minijinja's own serde: its maps keep the file's key order, as
    // Python's dicts do (serde_json's sort them), which `tojson` of tool schemas shows.
    let ordered: minijinja::Value = serde_json::from_str(&text).unwrap();
    let ordered = ordered.get_attr("cases").unwrap();
    let qwen25 = std::fs::read_to_string(fixtures().join("qwen2.5-instruct.jinja")).unwrap();
    let smollm2 = smollm2_template();
    let dirs: Vec<_> = (0..4).map(|_| tempfile::tempdir().unwrap()).collect();
    let toks = [
        ("qwen3", folder(dirs[0].path(), "tokenizer-qwen3", None)),
        (
            "qwen2.5",
            folder(dirs[1].path(), "tokenizer-qwen3", Some(&qwen25)),
        ),
        ("llama3", folder(dirs[2].path(), "tokenizer-llama3", None)),
        (
            "smollm2",
            folder(dirs[3].path(), "tokenizer-qwen3", Some(&smollm2)),
        ),
    ];
    let mut checked = 0;
    for (i, case) in cases["cases"].as_array().unwrap().iter().enumerate() {
        let entry = ordered.get_item(&minijinja::Value::from(i)).unwrap();
        let name = case["template"].as_str().unwrap();
        let what = format!("{name} / {}", case["case"]);
        let tok = &toks.iter().find(|(n, _)| *n == name).unwrap().1;
        let t = tok.template.as_ref().unwrap();
        assert_eq!(
            sha256(t.source()),
            case["template_sha256"].as_str().unwrap(),
            "{what}: the fixture was made from another template"
        );
        let opts = RenderOptions {
            add_generation_prompt: case["add_generation_prompt"].as_bool().unwrap(),
            enable_thinking: case["enable_thinking"].as_bool().unwrap(),
            tools: (!case["tools"].is_null()).then(|| entry.get_attr("tools").unwrap()),
        };
        let text = t
            .render(entry.get_attr("messages").unwrap(), &opts)
            .unwrap();
        let want = case["text"].as_str().unwrap();
        assert_eq!(text, want, "{what}");
        if let Some(ids) = case.get("ids") {
            let want: Vec<u32> = serde_json::from_value(ids.clone()).unwrap();
            assert_eq!(tok.encode(&text).unwrap(), want, "{what}: token ids");
        }
        checked += 1;
    }
    assert_eq!(checked, 28);
}

/// The rollout path: a task's prompt as the user's turn, an optional system prompt, thinking
/// on or off; the ids are what `apply_chat_template(…, tokenize=True)` gives (no BOS added, the
/// template's own special tokens matched).
#[test]
fn prompts_go_through_the_template() {
    let cases: Value =
        serde_json::from_str(&std::fs::read_to_string(fixtures().join("cases.json")).unwrap())
            .unwrap();
    let find = |template: &str, case: &str| {
        cases["cases"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["template"] == template && c["case"] == case)
            .unwrap()
            .clone()
    };
    for (template, tokenizer) in [("qwen3", "tokenizer-qwen3"), ("llama3", "tokenizer-llama3")] {
        let dir = tempfile::tempdir().unwrap();
        let mut tok = folder(dir.path(), tokenizer, None);
        // Without the template: the text as it is (Qwen3 and this Llama 3 add no BOS).
        let plain = tok.encode_prompt("What is 3 + 5?").unwrap();
        assert_eq!(plain, tok.encode("What is 3 + 5?").unwrap());
        for (case, thinking) in [
            ("user_prompt", true),
            ("system_user", true),
            ("no_thinking", false),
        ] {
            let c = find(template, case);
            let msgs = c["messages"].as_array().unwrap();
            let system =
                (msgs.len() == 2).then(|| msgs[0]["content"].as_str().unwrap().to_string());
            let user = msgs.last().unwrap()["content"].as_str().unwrap();
            tok.use_chat(ChatPrompt {
                system,
                enable_thinking: thinking,
            })
            .unwrap();
            let want: Vec<u32> = serde_json::from_value(c["ids"].clone()).unwrap();
            assert_eq!(
                tok.encode_prompt(user).unwrap(),
                want,
                "{template} / {case}"
            );
            assert_eq!(tok.prompt_text(user).unwrap(), c["text"].as_str().unwrap());
            assert_eq!(tok.prompt_bos(), None, "the template writes its own BOS");
        }
        // The frame around an empty user turn: what the context check adds to a prompt.
        let frame = tok.encode(&tok.prompt_text("").unwrap()).unwrap().len();
        assert!(frame > 5);
        assert_eq!(tok.prompt_overhead().unwrap(), frame);
    }
}

#[test]
fn chat_needs_a_template() {
    let dir = tempfile::tempdir().unwrap();
    let mut tok = folder(dir.path(), "tokenizer-qwen3", None);
    // The same folder without a template anywhere.
    let tc = dir.path().join("tokenizer_config.json");
    let mut v: Value = serde_json::from_str(&std::fs::read_to_string(&tc).unwrap()).unwrap();
    v.as_object_mut().unwrap().remove("chat_template");
    std::fs::write(&tc, v.to_string()).unwrap();
    let cfg = Policy::read_config(dir.path()).unwrap();
    let mut bare = Policy::read_tokenizer(dir.path(), &cfg).unwrap();
    assert!(bare.template.is_none());
    let chat = ChatPrompt {
        system: None,
        enable_thinking: true,
    };
    let e = bare.use_chat(chat.clone()).unwrap_err().to_string();
    assert!(e.contains("no chat template"), "{e}");
    // A template that refuses a plain user turn is refused when chat is switched on.
    std::fs::write(
        dir.path().join(TEMPLATE_FILE),
        "{% if messages[0].role == 'user' %}{{ raise_exception('System message required') }}{% endif %}",
    )
    .unwrap();
    let mut picky = Policy::read_tokenizer(dir.path(), &cfg).unwrap();
    let e = picky.use_chat(chat.clone()).unwrap_err().to_string();
    assert!(
        e.contains("System message required") && e.contains(TEMPLATE_FILE),
        "{e}"
    );
    assert!(tok.use_chat(chat).is_ok());
    // A template that does not compile names its file.
    std::fs::write(dir.path().join(TEMPLATE_FILE), "{% for m in messages %}").unwrap();
    let e = Policy::read_tokenizer(dir.path(), &cfg)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains(TEMPLATE_FILE) && e.contains("chat template"),
        "{e}"
    );
}
