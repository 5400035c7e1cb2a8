//! Helpers shared by the engine's integration tests: the test-asset cache (`chat`, `gguf`), and
//! the engine's log-probs and greedy continuations compared with a fixture's (`parity`, `lora`).
#![allow(clippy::unwrap_used, dead_code)]

use std::path::{Path, PathBuf};

use serde::Deserialize;

use candle_core::{Device, Tensor, D};
use rlvr_engine::model::transformer::gather_logprobs;
use rlvr_engine::model::{KvCache, Policy};
use rlvr_engine::sampling::left_pad;

/// Per-token log-probs of each row (`rows[r][i]`: token `i + 1` given `0..=i`), all rows in one
/// left-padded batch.
pub fn engine_logprobs(policy: &Policy, seqs: &[Vec<u32>]) -> Vec<Vec<f32>> {
    let model = policy.frozen_view().unwrap();
    let (ids, t, pad) = left_pad(seqs, policy.tok.pad);
    let n = seqs.len();
    let targets: Vec<u32> = ids
        .chunks(t)
        .flat_map(|row| row.iter().skip(1).copied().chain([0]))
        .collect();
    let ids = Tensor::from_vec(ids, (n, t), &Device::Cpu).unwrap();
    let targets = Tensor::from_vec(targets, (n, t), &Device::Cpu).unwrap();
    let logits = model.forward_all(&ids, &pad).unwrap();
    let lp: Vec<f32> = gather_logprobs(&logits, &targets)
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1()
        .unwrap();
    (0..n)
        .map(|r| {
            let p = pad.pad_left[r];
            lp[r * t + p..r * t + t - 1].to_vec()
        })
        .collect()
}

/// Greedy continuation of each prompt, `steps` tokens (no stop at end-of-sequence), all rows in
/// one left-padded batch through the KV cache.
pub fn engine_greedy(policy: &Policy, prompts: &[Vec<u32>], steps: usize) -> Vec<Vec<u32>> {
    let model = policy.frozen_view().unwrap();
    let (ids, t, pad) = left_pad(prompts, policy.tok.pad);
    let n = prompts.len();
    let mut cache = KvCache::new();
    let mut input = Tensor::from_vec(ids, (n, t), &Device::Cpu).unwrap();
    let mut out = vec![Vec::new(); n];
    for _ in 0..steps {
        let logits = model.forward_step(&input, &pad, &mut cache).unwrap();
        let next: Vec<u32> = logits.argmax(D::Minus1).unwrap().to_vec1().unwrap();
        for (o, id) in out.iter_mut().zip(&next) {
            o.push(*id);
        }
        input = Tensor::from_vec(next, (n, 1), &Device::Cpu).unwrap();
    }
    out
}

/// The test-asset cache folder: `$RLVR_TEST_ASSETS`, default `<repo>/target/test-assets`.
pub fn assets() -> PathBuf {
    std::env::var_os("RLVR_TEST_ASSETS").map_or_else(
        || Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/test-assets"),
        PathBuf::from,
    )
}

/// A test asset (file or folder), or a failure saying how to get it.
pub fn asset(name: &str) -> PathBuf {
    let p = assets().join(name);
    assert!(
        p.exists(),
        "test asset {} is missing: run scripts/fetch-test-assets.sh (or set RLVR_TEST_ASSETS)",
        p.display()
    );
    p
}

/// One prompt of a log-prob fixture (`scripts/parity-fixtures.py`, `scripts/lora-fixtures.py`).
#[derive(Deserialize)]
pub struct Row {
    /// Token ids.
    pub prompt: Vec<u32>,
    /// transformers' greedy continuation.
    pub greedy: Vec<u32>,
    /// Log-probability of token `i + 1` of `prompt ++ greedy` given tokens `0..=i`.
    pub logprobs: Vec<f32>,
}

/// Whether `policy`'s greedy continuations of the rows equal the fixture's, and the largest
/// |Δ log-prob| over every token (infinity for a NaN).
pub fn compare(policy: &Policy, rows: &[Row], greedy_new: usize) -> (bool, f32) {
    let prompts: Vec<Vec<u32>> = rows.iter().map(|r| r.prompt.clone()).collect();
    let greedy = engine_greedy(policy, &prompts, greedy_new);
    let seqs: Vec<Vec<u32>> = rows
        .iter()
        .map(|r| r.prompt.iter().chain(&r.greedy).copied().collect())
        .collect();
    let lps = engine_logprobs(policy, &seqs);
    let mut max = 0f32;
    for (row, ours) in rows.iter().zip(&lps) {
        assert_eq!(ours.len(), row.logprobs.len());
        for (a, b) in ours.iter().zip(&row.logprobs) {
            let d = (a - b).abs();
            max = if d.is_nan() {
                f32::INFINITY
            } else {
                max.max(d)
            };
        }
    }
    (rows.iter().zip(&greedy).all(|(r, g)| &r.greedy == g), max)
}
