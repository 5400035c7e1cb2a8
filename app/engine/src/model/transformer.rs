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

/// A linear layer `y = x Wᵀ + b` on `[rows, in]` inputs, with an optional LoRA adapter.
#[derive(Clone, Debug)]
pub struct Linear {
    weight: Tensor,
    bias: Option<Tensor>,
    lora: Option<LoraLinear>,
}

/// A LoRA adapter on a linear layer: `y += scale · B A dropout(x)`, `A: [rank, in]`,
/// `B: [out, rank]` (PEFT's `lora_A` / `lora_B`).
#[derive(Clone, Debug)]
pub struct LoraLinear {
    /// `lora_A.weight`, `[rank, in]`.
    pub a: Tensor,
    /// `lora_B.weight`, `[out, rank]`.
    pub b: Tensor,
    /// `alpha / rank`.
    pub scale: f64,
    /// Dropout probability on the adapter's input (training forwards only).
    pub dropout: f32,
}

impl Linear {
    /// Wraps a weight `[out, in]` and optional bias `[out]`.
    pub fn new(weight: Tensor, bias: Option<Tensor>) -> Self {
        Self {
            weight,
            bias,
            lora: None,
        }
    }

    /// The forward with the adapter's dropout mask drawn from `dropout_seed` (none: no
    /// dropout, as in sampling and evaluation).
    fn forward_seeded(&self, x: &Tensor, dropout_seed: Option<(u64, u64)>) -> Result<Tensor> {
        let y = ops::matmul_t(x, &self.weight)?;
        let y = match &self.bias {
            Some(b) => y.broadcast_add(b)?,
            None => y,
        };
        let Some(l) = &self.lora else {
            return Ok(y);
        };
        let input = match dropout_seed {
            Some(seed) if l.dropout > 0.0 => (x * dropout_mask(x, l.dropout, seed)?)?,
            _ => x.clone(),
        };
        let delta = input.matmul(&l.a.t()?)?.matmul(&l.b.t()?)?;
        y + (delta * l.scale)?
    }
}

/// An inverted-dropout mask of `x`'s shape: 0 with probability `p`, else `1 / (1 - p)`, drawn
/// from ChaCha8(`seed`) stream `stream` (so a recomputed forward draws the same mask).
fn dropout_mask(x: &Tensor, p: f32, (seed, stream): (u64, u64)) -> Result<Tensor> {
    use rand::{Rng as _, SeedableRng as _};
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    rng.set_stream(stream);
    let keep = 1.0 / (1.0 - p);
    let data: Vec<f32> = (0..x.elem_count())
        .map(|_| if rng.random::<f32>() < p { 0.0 } else { keep })
        .collect();
    Tensor::from_vec(data, x.shape(), x.device())
}

impl Module for Linear {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        self.forward_seeded(x, None)
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

impl Block {
    /// The linear layers by PEFT module name, in block order
    /// ([`rlvr_core::config::LORA_MODULES`]).
    fn linears(&self) -> [(&'static str, &Linear); 7] {
        [
            ("q_proj", &self.q),
            ("k_proj", &self.k),
            ("v_proj", &self.v),
            ("o_proj", &self.o),
            ("gate_proj", &self.gate),
            ("up_proj", &self.up),
            ("down_proj", &self.down),
        ]
    }

    fn linear_mut(&mut self, module: &str) -> Option<&mut Linear> {
        Some(match module {
            "q_proj" => &mut self.q,
            "k_proj" => &mut self.k,
            "v_proj" => &mut self.v,
            "o_proj" => &mut self.o,
            "gate_proj" => &mut self.gate,
            "up_proj" => &mut self.up,
            "down_proj" => &mut self.down,
            _ => return None,
        })
    }
}

/// The module path of a block's linear layer, as Hugging Face names it
/// (`model.layers.3.self_attn.q_proj`, `model.layers.3.mlp.up_proj`).
pub fn linear_path(layer: usize, module: &str) -> String {
    let group = if ["gate_proj", "up_proj", "down_proj"].contains(&module) {
        "mlp"
    } else {
        "self_attn"
    };
    format!("model.layers.{layer}.{group}.{module}")
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
    /// Seed of the LoRA dropout masks of a training forward; `None`: no dropout.
    dropout_seed: Option<u64>,
}

/// Positions, mask and rotary tables of one forward.
#[derive(Debug)]
struct Context {
    n: usize,
    t: usize,
    total: usize,
    mask: Tensor,
    cos: Tensor,
    sin: Tensor,
}

/// What [`Transformer::hidden_checkpointed`] kept for the backward: each layer's input and the
/// last layer's output as a variable.
#[derive(Debug)]
pub struct Recompute {
    context: Context,
    inputs: Vec<Tensor>,
    top: candle_core::Var,
    ids: Tensor,
}

impl Recompute {
    /// Completes the backward of a loss computed from the checkpointed hidden states: `grads`
    /// (the loss's own backward, which reached the last layer's output) gets the gradients of
    /// every parameter of the layers and the embedding, each layer recomputed from its kept
    /// input (with the same dropout masks) and differentiated against the gradient of its
    /// output.
    pub fn backward(
        self,
        model: &Transformer,
        grads: candle_core::backprop::GradStore,
    ) -> Result<candle_core::backprop::GradStore> {
        let mut grads = crate::parallel::detached(grads);
        let Some(mut g) = grads.remove(self.top.as_tensor()) else {
            return Ok(grads);
        };
        for (l, x) in self.inputs.into_iter().enumerate().rev() {
            let xv = candle_core::Var::from_tensor(&x)?;
            drop(x);
            let y = model.block(l, xv.as_tensor(), &self.context, None)?;
            let mut layer = (y * &g)?.sum_all()?.backward()?;
            // Detached, so this layer's recomputed graph is freed before the next one is built.
            g = layer
                .remove(xv.as_tensor())
                .ok_or_else(|| candle_core::Error::Msg(format!("layer {l}: no input gradient")))?
                .detach();
            grads.extend(crate::parallel::detached(layer))?;
        }
        let x0 = model.embed.index_select(&self.ids, 0)?;
        if x0.track_op() {
            grads.extend(crate::parallel::detached((x0 * &g)?.sum_all()?.backward()?))?;
        }
        Ok(grads)
    }
}

/// One adapter of [`Transformer::with_adapters`]: layer, PEFT module name, `A`, `B`.
pub type Adapter = (usize, &'static str, Tensor, Tensor);

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
            dropout_seed: None,
        })
    }

    /// Adds LoRA adapters (`A: [rank, in]`, `B: [out, rank]`) to the given linear layers, each
    /// scaled by `scale` (alpha / rank), with `dropout` on their input in training forwards.
    pub fn with_adapters(
        mut self,
        adapters: Vec<Adapter>,
        scale: f64,
        dropout: f32,
    ) -> Result<Self> {
        for (layer, module, a, b) in adapters {
            let lin = self
                .blocks
                .get_mut(layer)
                .and_then(|bl| bl.linear_mut(module))
                .ok_or_else(|| {
                    candle_core::Error::Msg(format!("no linear layer {module} in layer {layer}"))
                })?;
            let (out, inp) = lin.weight.dims2()?;
            let (ra, ia) = a.dims2()?;
            let (ob, rb) = b.dims2()?;
            if ia != inp || ob != out || ra != rb {
                candle_core::bail!(
                    "adapter of {}: lora_A is {:?} and lora_B {:?}, the layer [{out}, {inp}] needs [r, {inp}] and [{out}, r]",
                    linear_path(layer, module),
                    a.dims(),
                    b.dims()
                )
            }
            lin.lora = Some(LoraLinear {
                a,
                b,
                scale,
                dropout,
            });
        }
        Ok(self)
    }

    /// Draws LoRA dropout masks from `seed` in the forwards of this model (`None`: none).
    pub fn with_dropout_seed(mut self, seed: Option<u64>) -> Self {
        self.dropout_seed = seed;
        self
    }

    /// The adapters: (layer, module, `A`, `B`), in layer and block order.
    pub fn adapters(&self) -> Vec<(usize, &'static str, &LoraLinear)> {
        let mut out = Vec::new();
        for (l, b) in self.blocks.iter().enumerate() {
            for (m, lin) in b.linears() {
                if let Some(a) = &lin.lora {
                    out.push((l, m, a));
                }
            }
        }
        out
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

    /// The positions, attention mask and rotary tables of `ids: [n, t]` appended after
    /// `offset` cached positions.
    fn context(&self, ids: &Tensor, pad: &Padding, offset: usize) -> Result<Context> {
        let (n, t) = ids.dims2()?;
        if pad.pad_left.len() != n {
            candle_core::bail!(
                "padding given for {} rows, batch has {n}",
                pad.pad_left.len()
            )
        }
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
        Ok(Context {
            n,
            t,
            total,
            mask,
            cos,
            sin,
        })
    }

    /// Layer `l` on the residual stream `x: [n*t, hidden]`, appending to `cache` when given.
    fn block(
        &self,
        l: usize,
        x: &Tensor,
        c: &Context,
        cache: Option<&mut KvCache>,
    ) -> Result<Tensor> {
        let b = &self.blocks[l];
        let (n, t, total) = (c.n, c.t, c.total);
        let (h, kv, hd) = (
            self.cfg.num_attention_heads,
            self.cfg.kv_heads(),
            self.cfg.head_dim(),
        );
        let scale = 1.0 / (hd as f64).sqrt();
        // Each adapter of each layer draws its own dropout mask.
        let seed = |m: u64| self.dropout_seed.map(|s| (s, (l as u64) << 8 | m));
        let xn = ops::rms_norm(x, &b.input_norm, self.cfg.rms_norm_eps)?;
        let mut q = b.q.forward_seeded(&xn, seed(0))?.reshape((n, t, h, hd))?;
        let mut k = b.k.forward_seeded(&xn, seed(1))?.reshape((n, t, kv, hd))?;
        if let Some((qn, kn)) = &b.qk_norm {
            let eps = self.cfg.rms_norm_eps;
            let per_head = |x: &Tensor, w: &Tensor, heads: usize| -> Result<Tensor> {
                ops::rms_norm(&x.reshape((n * t * heads, hd))?, w, eps)?.reshape((n, t, heads, hd))
            };
            q = per_head(&q, qn, h)?;
            k = per_head(&k, kn, kv)?;
        }
        let q = (q * scale)?;
        let v = b.v.forward_seeded(&xn, seed(2))?.reshape((n, t, kv, hd))?;
        let q = ops::rope(&q, &c.cos, &c.sin)?
            .transpose(1, 2)?
            .contiguous()?;
        let mut k = ops::rope(&k, &c.cos, &c.sin)?
            .transpose(1, 2)?
            .contiguous()?;
        let mut v = v.transpose(1, 2)?.contiguous()?;
        if let Some(c) = cache {
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
        let scores = q.matmul(&k.t()?)?.broadcast_add(&c.mask)?;
        let att = ops::softmax_last_dim(&scores)?;
        let y = att.matmul(&v)?.transpose(1, 2)?.reshape((n * t, h * hd))?;
        let x = (x + b.o.forward_seeded(&y, seed(3))?)?;
        let xn = ops::rms_norm(&x, &b.post_norm, self.cfg.rms_norm_eps)?;
        let mlp = ops::swiglu(
            &b.gate.forward_seeded(&xn, seed(4))?,
            &b.up.forward_seeded(&xn, seed(5))?,
        )?;
        x + b.down.forward_seeded(&mlp, seed(6))?
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
        let offset = cache.as_ref().map_or(0, |c| c.len());
        let c = self.context(ids, pad, offset)?;
        let mut x = self.embed.index_select(&ids.flatten_all()?, 0)?; // [n*t, d]
        if let Some(c) = cache.as_deref_mut() {
            if c.layers.len() != self.blocks.len() {
                c.layers = vec![None; self.blocks.len()];
            }
        }
        for l in 0..self.blocks.len() {
            x = self.block(l, &x, &c, cache.as_deref_mut())?;
        }
        ops::rms_norm(&x, &self.norm, self.cfg.rms_norm_eps)?.reshape((
            c.n,
            c.t,
            self.cfg.hidden_size,
        ))
    }

    /// [`hidden`](Self::hidden) with gradient checkpointing ("Training Deep Nets with
    /// Sublinear Memory Cost", Chen et al. 2016): the layers run without keeping their
    /// activations (only each layer's input is kept); the returned states carry gradients from
    /// the final norm on, and [`Recompute::backward`] carries them through the layers by
    /// recomputing one layer at a time. Same values, same gradients as the plain forward.
    pub fn hidden_checkpointed(&self, ids: &Tensor, pad: &Padding) -> Result<(Tensor, Recompute)> {
        let c = self.context(ids, pad, 0)?;
        let flat = ids.flatten_all()?;
        let mut x = self.embed.index_select(&flat, 0)?.detach();
        let mut inputs = Vec::with_capacity(self.blocks.len());
        for l in 0..self.blocks.len() {
            let y = self.block(l, &x, &c, None)?.detach();
            inputs.push(x);
            x = y;
        }
        let top = candle_core::Var::from_tensor(&x)?;
        let h = ops::rms_norm(top.as_tensor(), &self.norm, self.cfg.rms_norm_eps)?.reshape((
            c.n,
            c.t,
            self.cfg.hidden_size,
        ))?;
        Ok((
            h,
            Recompute {
                context: c,
                inputs,
                top,
                ids: flat,
            },
        ))
    }

    /// Output logits for hidden states `[rows, hidden]` → `[rows, vocab]`.
    pub fn logits(&self, hidden: &Tensor) -> Result<Tensor> {
        ops::matmul_t(hidden, &self.lm_head)
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
