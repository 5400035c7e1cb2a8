//! LoRA adapters against PEFT: adapter folders written by PEFT (`scripts/lora-fixtures.py`,
//! pinned torch/transformers/peft named in each `logprobs.json`) over the tiny parity models
//! load with [`Policy::load`] and give PEFT's greedy tokens and log-probs (within 1e-4), merged
//! or not; the studio writes them back in the same layout.
#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};

use candle_core::Device;
use common::{compare, Row};
use rlvr_engine::model::Policy;
use serde::Deserialize;

mod common;

const TOLERANCE: f32 = 1e-4;

#[derive(Deserialize)]
struct Fixture {
    family: String,
    versions: serde_json::Value,
    greedy_new: usize,
    rows: Vec<Row>,
}

fn fixture_dir(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/lora")
        .join(name)
}

fn check(name: &str) {
    let dir = fixture_dir(name);
    let fx: Fixture =
        serde_json::from_str(&std::fs::read_to_string(dir.join("logprobs.json")).unwrap()).unwrap();
    assert_eq!(fx.family, format!("lora/{name}"));
    let policy = Policy::load(&dir, &Device::Cpu).unwrap();
    assert!(policy.adapters().is_some());
    let merged = policy.merged().unwrap();
    // Written back by the studio (for scripts/lora-fixtures.py --check, run by hand) and read
    // again: the same numbers.
    let written = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../target/lora-written")
        .join(name);
    let _ = std::fs::remove_dir_all(&written);
    policy.save(&written).unwrap();
    let reread = Policy::load(&written, &Device::Cpu).unwrap();
    for (what, p) in [
        ("adapters", &policy),
        ("merged", &merged),
        ("written", &reread),
    ] {
        let (same, max) = compare(p, &fx.rows, fx.greedy_new);
        println!(
            "lora {name:18} {what:8} max |Δ log-prob| = {max:.3e}  greedy {}  (peft {})",
            if same { "identical" } else { "DIFFERENT" },
            fx.versions["peft"]
        );
        assert!(same, "{name} ({what}): greedy tokens differ from PEFT");
        assert!(
            max <= TOLERANCE,
            "{name} ({what}): max |Δ log-prob| = {max:.3e}"
        );
    }
    // The written folder holds PEFT's keys and options.
    let read = |d: &Path| -> serde_json::Value {
        serde_json::from_str(&std::fs::read_to_string(d.join("adapter_config.json")).unwrap())
            .unwrap()
    };
    let (theirs, ours) = (read(&dir), read(&written));
    for key in [
        "peft_type",
        "r",
        "lora_alpha",
        "use_rslora",
        "bias",
        "task_type",
    ] {
        assert_eq!(theirs[key], ours[key], "{key}");
    }
    let names = |d: &Path| -> Vec<String> {
        let bytes = std::fs::read(d.join("adapter_model.safetensors")).unwrap();
        let mut n: Vec<String> = safetensors::SafeTensors::deserialize(&bytes)
            .unwrap()
            .names()
            .into_iter()
            .map(String::from)
            .collect();
        n.sort();
        n
    };
    assert_eq!(names(&dir), names(&written));
}

#[test]
fn peft_all_linear_adapters_on_qwen2() {
    check("qwen2-all-linear");
}

#[test]
fn peft_qv_adapters_on_qwen3() {
    check("qwen3-qv");
}

#[test]
fn peft_rslora_adapters_on_llama3() {
    check("llama3-rslora");
}

#[test]
fn every_fixture_is_tested() {
    let mut found: Vec<String> = std::fs::read_dir(fixture_dir(""))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    found.sort();
    assert_eq!(found, ["llama3-rslora", "qwen2-all-linear", "qwen3-qv"]);
}
