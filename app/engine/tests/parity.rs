//! Parity with transformers: tiny random models of each family (written by
//! `scripts/parity-fixtures.py` with the pinned torch/transformers named in each
//! `logprobs.json`), loaded with [`Policy::load`]. For every prompt the greedy continuation must be
//! the same tokens, and the log-probability of every token of prompt + continuation must be within
//! [`TOLERANCE`] of what transformers computed (float32, eager attention). The rows of a fixture
//! differ in length and go through the engine as one left-padded batch (transformers computed each
//! row alone), so padding is checked too.
#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};

use candle_core::Device;
use common::{compare, Row};
use rlvr_engine::model::Policy;
use serde::Deserialize;

mod common;

/// Largest accepted |Δ log-prob| against transformers.
const TOLERANCE: f32 = 1e-4;

#[derive(Deserialize)]
struct Fixture {
    family: String,
    versions: serde_json::Value,
    config_form: String,
    greedy_new: usize,
    rows: Vec<Row>,
}

fn fixtures_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/parity")
}

/// Loads one fixture folder and checks greedy tokens and log-probs; panics with the measured
/// max |Δ log-prob| in the message.
fn check(name: &str) {
    let dir = fixtures_dir().join(name);
    let text = std::fs::read_to_string(dir.join("logprobs.json")).unwrap();
    let fx: Fixture = serde_json::from_str(&text).unwrap();
    assert_eq!(fx.family, name);
    let policy = Policy::load(&dir, &Device::Cpu).unwrap_or_else(|e| {
        panic!(
            "{name} ({} config form): Policy::load failed: {e}",
            fx.config_form
        )
    });

    let (greedy_ok, max_delta) = compare(&policy, &fx.rows, fx.greedy_new);
    println!(
        "parity {name:24} max |Δ log-prob| = {max_delta:.3e}  greedy {}  (transformers {})",
        if greedy_ok { "identical" } else { "DIFFERENT" },
        fx.versions["transformers"]
    );
    assert!(
        greedy_ok,
        "{name}: greedy continuations differ from transformers (max |Δ log-prob| = {max_delta:.3e})"
    );
    assert!(
        max_delta <= TOLERANCE,
        "{name}: max |Δ log-prob| = {max_delta:.3e} > {TOLERANCE:e}"
    );
}

macro_rules! parity_tests {
    ($($test:ident => $dir:literal),* $(,)?) => {
        $(
            #[test]
            fn $test() {
                check($dir);
            }
        )*

        /// Every fixture folder has its test above (a new family in the script gets one here).
        #[test]
        fn every_fixture_folder_is_tested() {
            let known = [$($dir),*];
            let mut found: Vec<String> = std::fs::read_dir(fixtures_dir())
                .unwrap()
                .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect();
            found.sort();
            for f in &found {
                assert!(known.contains(&f.as_str()), "fixture folder {f} has no test in parity.rs");
            }
            assert_eq!(found.len(), known.len(), "fixture folders {found:?} vs tests {known:?}");
        }
    };
}

parity_tests! {
    parity_qwen2 => "qwen2",
    parity_qwen2_bf16 => "qwen2-bf16",
    parity_qwen2_rope_parameters => "qwen2-rope-parameters",
    parity_qwen3 => "qwen3",
    parity_llama3 => "llama3",
    parity_llama_linear => "llama-linear",
    parity_smollm2 => "smollm2",
    parity_mistral => "mistral",
    parity_llama_sharded => "llama-sharded",
}
