//! One decoder-only transformer of the Llama / Qwen2 / Qwen3 / Mistral family, written for
//! training *and* sampling: RMSNorm, rotary position embeddings (with the scalings of
//! [`super::rope`]), grouped-query attention with optional q/k/v(/o) bias, Qwen3's per-head
//! q/k RMSNorm, Mistral's sliding window, SwiGLU MLP with optional bias, tied or untied head.
//!
//! Unlike `candle_transformers::models::{qwen2, llama}` (inference only: their causal-LM forward
//! returns the last position and their fused kernels have no backward), every op here is
//! differentiable (see [`crate::ops`]) and the forward returns hidden states for all positions.
//! Rows are left-padded: each row has its own number of leading pad positions, which are masked
//! out as keys and excluded from position ids, so prompts of different lengths share one batch.

use std::collections::HashMap;

use candle_core::{DType, Device, Module, Result, Tensor, D};

use super::config::ModelConfig;
use crate::ops;

/// A linear layer `y = x Wᵀ + b` on `[rows, in]` inputs.
#[derive(Clone, Debug)]
pub struct Linear {
    weight: Tensor,
    bias: Option<Tensor>,
}

impl Linear {
    /// Wraps a weight `[out, in]` and optional bias `[out]`.
    pub fn new(weight: Tensor, bias: Option<Tensor>) -> Self {
        Self { weight, bias }
    }
}

impl Module for Linear {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let y = x.matmul(&self.weight.t()?)?;
        match &self.bias {
            Some(b) => y.broadcast_add(b),
            None => Ok(y),
        }
    }
}

#[derive(Clone, Debug)]
struct Block {
    input_norm: Tensor,
    q: Linear,
    k: Linear,
    v: Linear,
    o: Linear,
    /// Qwen3's per-head RMSNorm weights `[head_dim]` of queries and keys.
    qk_norm: Option<(Tensor, Tensor)>,
    post_norm: Tensor,
    gate: Linear,
    up: Linear,
    down: Linear,
}

/// Per-layer key/value cache for batched incremental decoding: `[n, kv_heads, t, head_dim]`,
/// keys stored after the rotary embedding.
#[derive(Debug, Default)]
pub struct KvCache {
    layers: Vec<Option<(Tensor, Tensor)>>,
}

impl KvCache {
    /// An empty cache.
    pub fn new() -> Self {
        Self::default()
    }

    /// Number of cached positions.
    pub fn len(&self) -> usize {
        self.layers
            .first()
            .and_then(|l| l.as_ref())
            .map_or(0, |(k, _)| k.dim(2).unwrap_or(0))
    }

    /// Whether nothing is cached.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Where each row's real tokens start: `pad_left[r]` leading positions of row `r` are padding.
#[derive(Clone, Debug)]
pub struct Padding {
    /// Leading pad positions per row.
    pub pad_left: Vec<usize>,
}

/// The transformer. Weights are plain tensors: built from trainable `Var`s they track gradients,
/// built from detached tensors they do not (sampling, frozen reference).
#[derive(Clone, Debug)]
pub struct Transformer {
    cfg: ModelConfig,
    embed: Tensor,
    blocks: Vec<Block>,
    norm: Tensor,
    lm_head: Tensor,
    inv_freq: Vec<f32>,
    window: Option<usize>,
    device: Device,
}

impl Transformer {
    /// Builds the model from named tensors (Hugging Face names, see
    /// [`ModelConfig::parameter_shapes`]). `get` must return a tensor of the given shape or an error.
    pub fn from_fn(
        cfg: &ModelConfig,
        device: &Device,
        mut get: impl FnMut(&str, &[usize]) -> Result<Tensor>,
    ) -> Result<Self> {
        let (d, hd) = (cfg.hidden_size, cfg.head_dim());
        let (h, kv, i) = (
            cfg.num_attention_heads,
            cfg.kv_heads(),
            cfg.intermediate_size,
        );
        let mut lin = |name: &str, out: usize, inp: usize, bias: bool| -> Result<Linear> {
            let w = get(&format!("{name}.weight"), &[out, inp])?;
            let b = if bias {
                Some(get(&format!("{name}.bias"), &[out])?)
            } else {
                None
            };
            Ok(Linear::new(w, b))
        };
        let mut blocks = Vec::with_capacity(cfg.num_hidden_layers);
        let (bias, o_bias, mlp_bias) = (cfg.qkv_bias(), cfg.o_bias(), cfg.mlp_bias());
        for l in 0..cfg.num_hidden_layers {
            let p = format!("model.layers.{l}");
            blocks.push(Block {
                q: lin(&format!("{p}.self_attn.q_proj"), h * hd, d, bias)?,
                k: lin(&format!("{p}.self_attn.k_proj"), kv * hd, d, bias)?,
                v: lin(&format!("{p}.self_attn.v_proj"), kv * hd, d, bias)?,
                o: lin(&format!("{p}.self_attn.o_proj"), d, h * hd, o_bias)?,
                gate: lin(&format!("{p}.mlp.gate_proj"), i, d, mlp_bias)?,
                up: lin(&format!("{p}.mlp.up_proj"), i, d, mlp_bias)?,
                down: lin(&format!("{p}.mlp.down_proj"), d, i, mlp_bias)?,
                input_norm: Tensor::zeros(1, DType::F32, device)?,
                post_norm: Tensor::zeros(1, DType::F32, device)?,
                qk_norm: None,
            });
        }
        for (l, b) in blocks.iter_mut().enumerate() {
            let p = format!("model.layers.{l}");
            b.input_norm = get(&format!("{p}.input_layernorm.weight"), &[d])?;
            b.post_norm = get(&format!("{p}.post_attention_layernorm.weight"), &[d])?;
            if cfg.qk_norm() {
                b.qk_norm = Some((
                    get(&format!("{p}.self_attn.q_norm.weight"), &[hd])?,
                    get(&format!("{p}.self_attn.k_norm.weight"), &[hd])?,
                ));
            }
        }
        let embed = get("model.embed_tokens.weight", &[cfg.vocab_size, d])?;
        let norm = get("model.norm.weight", &[d])?;
        let lm_head = if cfg.tie_word_embeddings {
            embed.clone()
        } else {
            get("lm_head.weight", &[cfg.vocab_size, d])?
        };
        let rope = cfg.rope().map_err(candle_core::Error::Msg)?;
        Ok(Self {
            cfg: cfg.clone(),
            embed,
            blocks,
            norm,
            lm_head,
            inv_freq: rope.inv_freq(hd),
            window: cfg.sliding_window(),
            device: device.clone(),
        })
    }

    /// Builds the model from a map of tensors, checking names and shapes.
    pub fn from_tensors(
        cfg: &ModelConfig,
        tensors: &HashMap<String, Tensor>,
        device: &Device,
    ) -> Result<Self> {
        Self::from_fn(cfg, device, |name, shape| {
            let t = tensors
                .get(name)
                .ok_or_else(|| candle_core::Error::Msg(format!("missing tensor {name}")))?;
            if t.dims() != shape {
                candle_core::bail!(
                    "tensor {name} has shape {:?}, the config implies {:?}",
                    t.dims(),
                    shape
                )
            }
            t.to_dtype(DType::F32)?.to_device(device)
        })
    }

    /// The weights by Hugging Face name (for saving a frozen copy).
    pub fn named_tensors(&self) -> Vec<(String, Tensor)> {
        let mut out = vec![
            ("model.embed_tokens.weight".to_string(), self.embed.clone()),
            ("model.norm.weight".to_string(), self.norm.clone()),
        ];
        if !self.cfg.tie_word_embeddings {
            out.push(("lm_head.weight".to_string(), self.lm_head.clone()));
        }
        for (l, b) in self.blocks.iter().enumerate() {
            let p = format!("model.layers.{l}");
            out.push((format!("{p}.input_layernorm.weight"), b.input_norm.clone()));
            out.push((
                format!("{p}.post_attention_layernorm.weight"),
                b.post_norm.clone(),
            ));
            if let Some((qn, kn)) = &b.qk_norm {
                out.push((format!("{p}.self_attn.q_norm.weight"), qn.clone()));
                out.push((format!("{p}.self_attn.k_norm.weight"), kn.clone()));
            }
            for (name, lin) in [
                ("self_attn.q_proj", &b.q),
                ("self_attn.k_proj", &b.k),
                ("self_attn.v_proj", &b.v),
                ("self_attn.o_proj", &b.o),
                ("mlp.gate_proj", &b.gate),
                ("mlp.up_proj", &b.up),
                ("mlp.down_proj", &b.down),
            ] {
                out.push((format!("{p}.{name}.weight"), lin.weight.clone()));
                if let Some(bias) = &lin.bias {
                    out.push((format!("{p}.{name}.bias"), bias.clone()));
                }
            }
        }
        out
    }

    /// The configuration.
    pub fn config(&self) -> &ModelConfig {
        &self.cfg
    }

    /// The device the weights live on.
    pub fn device(&self) -> &Device {
        &self.device
    }

    /// Rotary tables `[n, t, head_dim/2]` for the given absolute positions (row-major n × t).
    fn rotary(&self, positions: &[u32], n: usize, t: usize) -> Result<(Tensor, Tensor)> {
        let half = self.inv_freq.len();
        let mut cos = Vec::with_capacity(positions.len() * half);
        let mut sin = Vec::with_capacity(positions.len() * half);
        for &p in positions {
            for &f in &self.inv_freq {
                let a = p as f32 * f;
                cos.push(a.cos());
                sin.push(a.sin());
            }
        }
        Ok((
            Tensor::from_vec(cos, (n, t, half), &self.device)?,
            Tensor::from_vec(sin, (n, t, half), &self.device)?,
        ))
    }

    /// Final-normed hidden states `[n, t, hidden]` for token ids `[n, t]` appended after the
    /// `cache` contents (empty cache: a fresh sequence). Left padding per row is given by `pad`
    /// (counted from the start of the whole sequence, cache included).
    pub fn hidden(
        &self,
        ids: &Tensor,
        pad: &Padding,
        mut cache: Option<&mut KvCache>,
    ) -> Result<Tensor> {
        let (n, t) = ids.dims2()?;
        if pad.pad_left.len() != n {
            candle_core::bail!(
                "padding given for {} rows, batch has {n}",
                pad.pad_left.len()
            )
        }
        let offset = cache.as_ref().map_or(0, |c| c.len());
        let total = offset + t;
        if total > self.cfg.max_position_embeddings {
            candle_core::bail!(
                "sequence of {total} positions exceeds max_position_embeddings = {}",
                self.cfg.max_position_embeddings
            )
        }
        // Positions and attention mask (0 = attend, -inf = masked). A sliding window `w` keeps
        // the keys `j > q - w` (transformers' `sliding_window_overlay`); the pad offset is the
        // same for q and j, so padded indices give the real distance.
        let window = self.window.unwrap_or(usize::MAX);
        let mut positions = Vec::with_capacity(n * t);
        let mut mask = Vec::with_capacity(n * t * total);
        for &p in &pad.pad_left {
            for i in 0..t {
                let q = offset + i;
                positions.push(q.saturating_sub(p) as u32);
                for j in 0..total {
                    let ok = (j >= p && j <= q && q - j < window) || j == q;
                    mask.push(if ok { 0f32 } else { f32::NEG_INFINITY });
                }
            }
        }
        let mask = Tensor::from_vec(mask, (n, 1, t, total), &self.device)?;
        let (cos, sin) = self.rotary(&positions, n, t)?;

        let (h, kv, hd) = (
            self.cfg.num_attention_heads,
            self.cfg.kv_heads(),
            self.cfg.head_dim(),
        );
        let d = self.cfg.hidden_size;
        let scale = 1.0 / (hd as f64).sqrt();
        let mut x = self.embed.index_select(&ids.flatten_all()?, 0)?; // [n*t, d]
        if let Some(c) = cache.as_deref_mut() {
            if c.layers.len() != self.blocks.len() {
                c.layers = vec![None; self.blocks.len()];
            }
        }
        for (l, b) in self.blocks.iter().enumerate() {
            let xn = ops::rms_norm(&x, &b.input_norm, self.cfg.rms_norm_eps)?;
            let mut q = b.q.forward(&xn)?.reshape((n, t, h, hd))?;
            let mut k = b.k.forward(&xn)?.reshape((n, t, kv, hd))?;
            if let Some((qn, kn)) = &b.qk_norm {
                let eps = self.cfg.rms_norm_eps;
                let per_head = |x: &Tensor, w: &Tensor, heads: usize| -> Result<Tensor> {
                    ops::rms_norm(&x.reshape((n * t * heads, hd))?, w, eps)?
                        .reshape((n, t, heads, hd))
                };
                q = per_head(&q, qn, h)?;
                k = per_head(&k, kn, kv)?;
            }
            let q = (q * scale)?;
            let v = b.v.forward(&xn)?.reshape((n, t, kv, hd))?;
            let q = ops::rope(&q, &cos, &sin)?.transpose(1, 2)?.contiguous()?;
            let mut k = ops::rope(&k, &cos, &sin)?.transpose(1, 2)?.contiguous()?;
            let mut v = v.transpose(1, 2)?.contiguous()?;
            if let Some(c) = cache.as_deref_mut() {
                if let Some(Some((pk, pv))) = c.layers.get(l) {
                    k = Tensor::cat(&[pk, &k], 2)?;
                    v = Tensor::cat(&[pv, &v], 2)?;
                }
                c.layers[l] = Some((k.clone(), v.clone()));
            }
            let (k, v) = if h != kv {
                let rep = h / kv;
                let expand = |x: &Tensor| -> Result<Tensor> {
                    x.unsqueeze(2)?
                        .expand((n, kv, rep, total, hd))?
                        .reshape((n, h, total, hd))
                };
                (expand(&k)?, expand(&v)?)
            } else {
                (k, v)
            };
            let scores = q.matmul(&k.t()?)?.broadcast_add(&mask)?;
            let att = ops::softmax_last_dim(&scores)?;
            let y = att.matmul(&v)?.transpose(1, 2)?.reshape((n * t, h * hd))?;
            x = (x + b.o.forward(&y)?)?;
            let xn = ops::rms_norm(&x, &b.post_norm, self.cfg.rms_norm_eps)?;
            let mlp = ops::swiglu(&b.gate.forward(&xn)?, &b.up.forward(&xn)?)?;
            x = (x + b.down.forward(&mlp)?)?;
        }
        ops::rms_norm(&x, &self.norm, self.cfg.rms_norm_eps)?.reshape((n, t, d))
    }

    /// Output logits for hidden states `[rows, hidden]` → `[rows, vocab]`.
    pub fn logits(&self, hidden: &Tensor) -> Result<Tensor> {
        hidden.matmul(&self.lm_head.t()?)
    }

    /// Logits for every position of `ids: [n, t]` (no cache) → `[n, t, vocab]`.
    pub fn forward_all(&self, ids: &Tensor, pad: &Padding) -> Result<Tensor> {
        let (n, t) = ids.dims2()?;
        let h = self.hidden(ids, pad, None)?;
        self.logits(&h.reshape((n * t, self.cfg.hidden_size))?)?
            .reshape((n, t, self.cfg.vocab_size))
    }

    /// Logits of the last position after appending `ids` to the cache → `[n, vocab]`.
    pub fn forward_step(&self, ids: &Tensor, pad: &Padding, cache: &mut KvCache) -> Result<Tensor> {
        let (n, t) = ids.dims2()?;
        let h = self.hidden(ids, pad, Some(cache))?;
        let last = h.narrow(1, t - 1, 1)?.reshape((n, self.cfg.hidden_size))?;
        self.logits(&last)?.contiguous()
    }
}

/// Mean log-softmax helper for tests and SFT: log-probs of `targets` under `logits` of any shape
/// `[.., vocab]`.
pub fn gather_logprobs(logits: &Tensor, targets: &Tensor) -> Result<Tensor> {
    let v = logits.dim(D::Minus1)?;
    let rows = logits.elem_count() / v;
    ops::token_logprob(&logits.reshape((rows, v))?, &targets.flatten_all()?)
}
