//! Batched generation with a KV cache, and the token samplers (temperature, top-k, top-p, min-p).

use candle_core::Tensor;
use rand::Rng as _;
use rand_chacha::ChaCha8Rng;

use crate::error::{EngineError, Result};
use crate::model::{KvCache, Padding, Transformer};

/// How the next token is drawn from the model's distribution.
#[derive(Clone, Debug, PartialEq)]
pub struct SamplingConfig {
    /// Softmax temperature; 0 means greedy (argmax).
    pub temperature: f32,
    /// Keep only the k most likely tokens; 0 disables.
    pub top_k: usize,
    /// Nucleus sampling: keep the smallest set of tokens whose probability reaches p; 1 disables.
    pub top_p: f32,
    /// Drop tokens whose probability is below `min_p` times the top token's; 0 disables.
    pub min_p: f32,
}

impl Default for SamplingConfig {
    /// The defaults of `[rollout]`.
    fn default() -> Self {
        Self::from(&rlvr_core::config::RolloutConfig::default())
    }
}

impl From<&rlvr_core::config::RolloutConfig> for SamplingConfig {
    /// The sampler settings of `[rollout]`.
    fn from(r: &rlvr_core::config::RolloutConfig) -> Self {
        Self {
            temperature: r.temperature,
            top_k: r.top_k,
            top_p: r.top_p,
            min_p: r.min_p,
        }
    }
}

impl SamplingConfig {
    /// Greedy decoding.
    pub fn greedy() -> Self {
        Self {
            temperature: 0.0,
            ..Self::default()
        }
    }

    /// Draws one token from `logits` (modified in place into probabilities).
    pub fn sample(&self, logits: &mut [f32], rng: &mut ChaCha8Rng) -> u32 {
        if self.temperature <= 0.0 {
            return argmax(logits);
        }
        let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        let inv_t = 1.0 / self.temperature;
        for x in logits.iter_mut() {
            *x = ((*x - max) * inv_t).exp();
        }
        let filtering = self.top_k > 0 || self.top_p < 1.0 || self.min_p > 0.0;
        if filtering {
            let mut order: Vec<usize> = (0..logits.len()).collect();
            order.sort_by(|&a, &b| logits[b].total_cmp(&logits[a]).then(a.cmp(&b)));
            let total: f32 = logits.iter().sum();
            let top = logits[order[0]];
            let mut keep = order.len();
            if self.top_k > 0 {
                keep = keep.min(self.top_k);
            }
            if self.min_p > 0.0 {
                let cut = self.min_p * top;
                keep = keep.min(
                    order
                        .iter()
                        .take_while(|&&i| logits[i] >= cut)
                        .count()
                        .max(1),
                );
            }
            if self.top_p < 1.0 {
                let mut acc = 0.0;
                let mut n = 0;
                for &i in &order {
                    acc += logits[i] / total;
                    n += 1;
                    if acc >= self.top_p {
                        break;
                    }
                }
                keep = keep.min(n.max(1));
            }
            for &i in &order[keep..] {
                logits[i] = 0.0;
            }
        }
        let total: f32 = logits.iter().sum();
        let mut u = rng.random::<f32>() * total;
        for (i, &p) in logits.iter().enumerate() {
            if u < p {
                return i as u32;
            }
            u -= p;
        }
        argmax(logits)
    }
}

/// `(log Σ exp x, entropy of softmax(x), max x)` of one row of logits.
fn log_sum_exp_entropy(row: &[f32]) -> (f32, f32, f32) {
    let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let mut sum = 0f32;
    let mut dot = 0f32;
    for &x in row {
        let e = (x - max).exp();
        sum += e;
        dot += e * (x - max);
    }
    let lse = max + sum.ln();
    // H = lse - E[x] = log(sum) - dot/sum (in shifted coordinates)
    (lse, sum.ln() - dot / sum, max)
}

fn argmax(v: &[f32]) -> u32 {
    let mut best = (0usize, f32::NEG_INFINITY);
    for (i, &x) in v.iter().enumerate() {
        if x > best.1 {
            best = (i, x);
        }
    }
    best.0 as u32
}

/// One generated completion.
#[derive(Clone, Debug, PartialEq)]
pub struct Completion {
    /// Generated ids, including the end-of-sequence token when one was produced.
    pub tokens: Vec<u32>,
    /// Whether the completion ended with end-of-sequence (otherwise it hit the length limit).
    pub finished: bool,
    /// Log-probability of each generated token under the model (temperature 1, no filters).
    pub logprobs: Vec<f32>,
    /// Entropy (nats) of the model's next-token distribution at each generated position.
    pub entropies: Vec<f32>,
    /// Probability of the most likely token at each generated position.
    pub top_probs: Vec<f32>,
}

impl AsRef<[u32]> for Completion {
    /// The generated ids.
    fn as_ref(&self) -> &[u32] {
        &self.tokens
    }
}

/// Left-pads prompts to a rectangle: ids `[n, t]` (row-major) and the padding description.
pub fn left_pad(prompts: &[Vec<u32>], pad_id: u32) -> (Vec<u32>, usize, Padding) {
    let t = prompts.iter().map(Vec::len).max().unwrap_or(0);
    let mut ids = Vec::with_capacity(prompts.len() * t);
    let mut pad_left = Vec::with_capacity(prompts.len());
    for p in prompts {
        pad_left.push(t - p.len());
        ids.extend(std::iter::repeat_n(pad_id, t - p.len()));
        ids.extend_from_slice(p);
    }
    (ids, t, Padding { pad_left })
}

/// What to generate: length limit, special ids, sampler.
#[derive(Clone, Debug)]
pub struct GenParams {
    /// At most this many new tokens per row.
    pub max_new: usize,
    /// A row stops after producing any of these ids (the tokenizer's [`stop`] ids).
    ///
    /// [`stop`]: crate::tokenizer::Tok::stop
    pub eos: Vec<u32>,
    /// Fills padded positions.
    pub pad: u32,
    /// The sampler.
    pub sampling: SamplingConfig,
    /// Use the KV cache (false recomputes the whole prefix each step: slow, for checking).
    pub use_cache: bool,
    /// A plugin sampler applied to each row's logits before the built-in sampler (the recorded
    /// log-probs and entropies stay those of the policy).
    pub hook: Option<crate::extensions::SamplerHook>,
    /// Counts each row's decode steps (a finished row counts its unused budget) for a progress
    /// display.
    pub progress: Option<std::sync::Arc<crate::events::Progress>>,
}

/// One random stream per row: row `r` draws from ChaCha8(`seed`) stream `r`, so a row's samples
/// do not depend on how rows are split across workers.
pub fn row_rngs(seed: u64, rows: usize) -> Vec<ChaCha8Rng> {
    (0..rows)
        .map(|r| {
            let mut g = <ChaCha8Rng as rand::SeedableRng>::seed_from_u64(seed);
            g.set_stream(r as u64);
            g
        })
        .collect()
}

/// [`generate`] split over `workers` threads (contiguous shards of rows), each running candle
/// single-threaded: at the small matrix sizes of batched decoding this uses the cores far better
/// than splitting each op.
pub fn generate_parallel(
    model: &Transformer,
    prompts: &[Vec<u32>],
    params: &GenParams,
    rngs: &mut [ChaCha8Rng],
    workers: usize,
) -> Result<Vec<Completion>> {
    if workers <= 1 || prompts.len() <= 1 {
        return generate(model, prompts, params, rngs);
    }
    let ranges = crate::parallel::shard_ranges(prompts.len(), workers);
    let mut shards: Vec<(&[Vec<u32>], &mut [ChaCha8Rng])> = Vec::with_capacity(ranges.len());
    let mut rest = rngs;
    for r in &ranges {
        let (head, tail) = rest.split_at_mut(r.len());
        shards.push((&prompts[r.clone()], head));
        rest = tail;
    }
    let parts = crate::parallel::scoped_map(&mut shards, "rollout", |(ps, rs)| {
        generate(model, ps, params, rs)
    })?;
    Ok(parts.into_iter().flatten().collect())
}

/// Samples one completion per prompt (prompts are token ids, already with BOS), at most
/// `max_new` tokens each, stopping rows at any of `eos`. Row `r` samples with `rngs[r]`.
pub fn generate(
    model: &Transformer,
    prompts: &[Vec<u32>],
    params: &GenParams,
    rngs: &mut [ChaCha8Rng],
) -> Result<Vec<Completion>> {
    let GenParams {
        max_new,
        ref eos,
        pad: pad_id,
        ref sampling,
        use_cache,
        ref hook,
        ref progress,
    } = *params;
    let mut scratch = Vec::new();
    let n = prompts.len();
    if rngs.len() != n {
        return Err(EngineError::Internal(format!(
            "{} random streams for {n} rows",
            rngs.len()
        )));
    }
    let mut out: Vec<Completion> = vec![
        Completion {
            tokens: Vec::new(),
            finished: false,
            logprobs: Vec::new(),
            entropies: Vec::new(),
            top_probs: Vec::new(),
        };
        n
    ];
    if n == 0 || max_new == 0 {
        return Ok(out);
    }
    if prompts.iter().any(Vec::is_empty) {
        return Err(EngineError::Tokenizer("empty prompt".into()));
    }
    let (ids, t0, pad) = left_pad(prompts, pad_id);
    let device = model.device();
    let vocab = model.config().vocab_size;
    let mut cache = KvCache::new();
    let mut seq = ids.clone();
    let mut t = t0;
    let mut logits = if use_cache {
        model.forward_step(&Tensor::from_vec(ids, (n, t0), device)?, &pad, &mut cache)?
    } else {
        last_logits(model, &seq, n, t, &pad)?
    };
    for step in 0..max_new {
        if let Some(p) = progress {
            p.add(n);
        }
        let mut flat = logits.flatten_all()?.to_vec1::<f32>()?;
        let mut next = Vec::with_capacity(n);
        let mut raw = Vec::with_capacity(vocab);
        for (r, row) in flat.chunks_exact_mut(vocab).enumerate() {
            let c = &mut out[r];
            if c.finished {
                next.push(pad_id);
                continue;
            }
            let (lse, entropy, max) = log_sum_exp_entropy(row);
            c.top_probs.push((max - lse).exp());
            raw.clear();
            raw.extend_from_slice(row);
            if let Some(h) = hook {
                h.apply(row, &mut scratch, c.tokens.len(), &c.tokens);
            }
            let tok = sampling.sample(row, &mut rngs[r]);
            c.logprobs.push(raw[tok as usize] - lse);
            c.entropies.push(entropy);
            c.tokens.push(tok);
            if eos.contains(&tok) {
                c.finished = true;
            }
            next.push(tok);
        }
        if out.iter().all(|c| c.finished) || out.iter().all(|c| c.tokens.len() >= max_new) {
            if let Some(p) = progress {
                // The budget the rows did not need.
                p.add(n * (max_new - step - 1));
            }
            break;
        }
        if use_cache {
            logits =
                model.forward_step(&Tensor::from_vec(next, (n, 1), device)?, &pad, &mut cache)?;
        } else {
            let mut grown = Vec::with_capacity(n * (t + 1));
            for r in 0..n {
                grown.extend_from_slice(&seq[r * t..(r + 1) * t]);
                grown.push(next[r]);
            }
            seq = grown;
            t += 1;
            logits = last_logits(model, &seq, n, t, &pad)?;
        }
    }
    Ok(out)
}

fn last_logits(
    model: &Transformer,
    seq: &[u32],
    n: usize,
    t: usize,
    pad: &Padding,
) -> Result<Tensor> {
    let ids = Tensor::from_vec(seq.to_vec(), (n, t), model.device())?;
    Ok(model
        .forward_all(&ids, pad)?
        .narrow(1, t - 1, 1)?
        .squeeze(1)?
        .contiguous()?)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use rand::SeedableRng as _;

    fn probs(logits: &[f32], cfg: &SamplingConfig, draws: usize) -> Vec<f32> {
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let mut counts = vec![0f32; logits.len()];
        for _ in 0..draws {
            let mut l = logits.to_vec();
            counts[cfg.sample(&mut l, &mut rng) as usize] += 1.0;
        }
        counts.iter().map(|c| c / draws as f32).collect()
    }

    #[test]
    fn greedy_takes_argmax() {
        let mut l = vec![0.1, 3.0, 2.0];
        let mut rng = ChaCha8Rng::seed_from_u64(0);
        assert_eq!(SamplingConfig::greedy().sample(&mut l, &mut rng), 1);
    }

    #[test]
    fn filters_restrict_the_support() {
        // probabilities ∝ exp(logits): 0.5, 0.3, 0.15, 0.05 (logits = ln p)
        let l: Vec<f32> = [0.5f32, 0.3, 0.15, 0.05].iter().map(|p| p.ln()).collect();
        let base = SamplingConfig::default();
        let p = probs(&l, &base, 20_000);
        assert!((p[0] - 0.5).abs() < 0.02 && p[3] > 0.03);
        let p = probs(
            &l,
            &SamplingConfig {
                top_k: 2,
                ..base.clone()
            },
            20_000,
        );
        assert!(p[2] == 0.0 && p[3] == 0.0 && (p[0] - 0.625).abs() < 0.02);
        let p = probs(
            &l,
            &SamplingConfig {
                top_p: 0.8,
                ..base.clone()
            },
            20_000,
        );
        assert!(
            p[2] == 0.0 && p[3] == 0.0,
            "top-p 0.8 keeps the two tokens reaching 0.8"
        );
        let p = probs(
            &l,
            &SamplingConfig {
                min_p: 0.25,
                ..base.clone()
            },
            20_000,
        );
        assert!(
            p[2] > 0.0 && p[3] == 0.0,
            "min-p 0.25 drops tokens below 0.125"
        );
        let p = probs(
            &l,
            &SamplingConfig {
                temperature: 0.1,
                ..base
            },
            2_000,
        );
        assert!(p[0] > 0.99, "low temperature concentrates on the mode");
    }
}
