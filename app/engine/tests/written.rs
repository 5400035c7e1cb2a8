//! Folders the studio writes open in `transformers` and behave there as in the studio: the same
//! prompt token ids (`tokenizer(text)`, BOS from the post-processor) and the same greedy
//! completion (`generate(do_sample=False)`, stopping on `generation_config.json`'s eos ids).
//!
//! The folders: the bundled default policy saved again (what every run's `policy/` and kept
//! checkpoint is), a Qwen3 folder made by transformers loaded and saved (its
//! `tokenizer_config.json` and chat template kept), and the SmolLM2 GGUF import. What
//! transformers gives on each is in `tests/fixtures/written/<name>.json`, written by
//! `scripts/written-fixtures.py` from the folders this test leaves in `$RLVR_WRITTEN_DIR` when
//! that is set; each fixture records the SHA-256 of the weights it was made from, so a change to
//! what the studio writes shows up here as a stale fixture.
#![allow(clippy::unwrap_used)]

mod common;

use std::path::{Path, PathBuf};

use candle_core::Device;
use rlvr_engine::gguf::{import, OutDType};
use rlvr_engine::model::Policy;
use rlvr_engine::sampling::{generate, row_rngs, GenParams, SamplingConfig};
use serde::Deserialize;
use sha2::{Digest, Sha256};

#[derive(Deserialize)]
struct Fixture {
    transformers: String,
    weights_sha256: String,
    max_new: usize,
    prompts: Vec<Prompt>,
}

#[derive(Deserialize)]
struct Prompt {
    text: String,
    ids: Vec<u32>,
    greedy: Vec<u32>,
}

fn manifest() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// Where the folder is written: `$RLVR_WRITTEN_DIR/<name>` (kept for the fixture script) or a
/// temporary folder.
fn out_dir(name: &str, tmp: &Path) -> PathBuf {
    match std::env::var_os("RLVR_WRITTEN_DIR") {
        Some(d) => {
            let p = PathBuf::from(d).join(name);
            let _ = std::fs::remove_dir_all(&p);
            p
        }
        None => tmp.join(name),
    }
}

fn sha256_file(p: &Path) -> String {
    Sha256::digest(std::fs::read(p).unwrap())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Loads the written folder as the studio does and compares it with the fixture.
fn check(name: &str, dir: &Path) {
    let fixture_path = manifest().join(format!("tests/fixtures/written/{name}.json"));
    let f: Fixture =
        serde_json::from_str(&std::fs::read_to_string(&fixture_path).unwrap()).unwrap();
    let sha = sha256_file(&dir.join("model.safetensors"));
    assert_eq!(
        sha,
        f.weights_sha256,
        "{name}: the studio now writes other weights than {} was made from; rerun \
         scripts/written-fixtures.py",
        fixture_path.display()
    );
    let policy = Policy::load(dir, &Device::Cpu).unwrap();
    let model = policy.frozen_view().unwrap();
    for p in &f.prompts {
        let ids = policy.tok.encode_prompt(&p.text).unwrap();
        assert_eq!(
            ids, p.ids,
            "{name}: prompt {:?} tokenized unlike transformers {}",
            p.text, f.transformers
        );
        let params = GenParams {
            max_new: f.max_new,
            eos: policy.tok.stop.clone(),
            pad: policy.tok.pad,
            sampling: SamplingConfig::greedy(),
            use_cache: true,
            hook: None,
            progress: None,
        };
        let done = generate(&model, &[ids], &params, &mut row_rngs(0, 1)).unwrap();
        assert_eq!(
            done[0].tokens, p.greedy,
            "{name}: greedy completion of {:?} differs from transformers {}",
            p.text, f.transformers
        );
    }
}

#[test]
fn default_policy_saved_again() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = out_dir("default-policy", tmp.path());
    let p = Policy::load(&manifest().join("../assets/default-policy"), &Device::Cpu).unwrap();
    p.save(&dir).unwrap();
    // transformers opens the folder with these two files; the run-deletion list knows every file.
    for f in ["tokenizer_config.json", "generation_config.json"] {
        assert!(dir.join(f).is_file(), "{f}");
    }
    for e in std::fs::read_dir(&dir).unwrap() {
        let name = e.unwrap().file_name().into_string().unwrap();
        assert!(
            rlvr_core::output::POLICY_FILES.contains(&name.as_str()),
            "{name} is missing from rlvr_core::output::POLICY_FILES"
        );
    }
    check("default-policy", &dir);
}

#[test]
fn qwen3_folder_saved_again() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = out_dir("qwen3-resaved", tmp.path());
    let p = Policy::load(
        &manifest().join("tests/fixtures/parity/qwen3"),
        &Device::Cpu,
    )
    .unwrap();
    p.save(&dir).unwrap();
    check("qwen3-resaved", &dir);
}

#[test]
fn smollm2_import() {
    let gguf = common::asset("SmolLM2-135M-Instruct.Q4_1.gguf");
    let tmp = tempfile::tempdir().unwrap();
    let dir = out_dir("smollm2-import", tmp.path());
    import(&gguf, &dir, OutDType::F32, &mut |_, _| {}).unwrap();
    check("smollm2-import", &dir);
}
