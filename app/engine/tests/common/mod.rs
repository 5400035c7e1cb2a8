//! Helpers shared by the parity tests (`parity`, `lora`): the engine's log-probs and greedy
//! continuations of token sequences.
#![allow(clippy::unwrap_used, dead_code)]

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
