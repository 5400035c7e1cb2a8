//! Fused CPU kernels *with* backward passes for the operations that dominate a training step of a
//! small transformer: RMSNorm, SwiGLU, softmax over the last dimension, rotary embeddings and the
//! per-token log-probability of chosen tokens (log-softmax + gather).
//!
//! Why: candle's own fused kernels (`candle_nn::ops::rms_norm`, `softmax_last_dim`, `rope`, ...)
//! have no backward pass, so gradients silently stop at them, while the composed fallbacks run as
//! chains of single-threaded element-wise ops, each allocating a tensor (measured in
//! `shared/research/feasibility-candle.md`: backward was 4-5x the forward). Each op here is one pass
//! over contiguous memory forward and one pass backward.
//!
//! Every public function falls back to composed, differentiable candle ops when the tensors are not
//! on the CPU (CUDA / Metal), so the model runs unchanged on a GPU. The fused and composed paths are
//! checked against each other in the tests, values and gradients.

use candle_core::backend::BackendStorage as _;
use candle_core::{
    bail, CpuStorage, CustomOp1, CustomOp2, CustomOp3, DType, Layout, Result, Shape, Tensor, D,
};

fn f32_slice<'a>(s: &'a CpuStorage, l: &Layout, op: &str) -> Result<&'a [f32]> {
    let CpuStorage::F32(data) = s else {
        bail!("{op}: only f32 tensors are supported, got {:?}", s.dtype())
    };
    match l.contiguous_offsets() {
        Some((a, b)) => Ok(&data[a..b]),
        None => bail!("{op}: input must be contiguous"),
    }
}

fn u32_slice<'a>(s: &'a CpuStorage, l: &Layout, op: &str) -> Result<&'a [u32]> {
    let CpuStorage::U32(data) = s else {
        bail!("{op}: token ids must be u32, got {:?}", s.dtype())
    };
    match l.contiguous_offsets() {
        Some((a, b)) => Ok(&data[a..b]),
        None => bail!("{op}: token ids must be contiguous"),
    }
}

fn last_dim(l: &Layout) -> usize {
    l.dims().last().copied().unwrap_or(1)
}

// ---------------------------------------------------------------------------------------------
// RMSNorm

struct RmsNorm {
    eps: f32,
}

impl CustomOp2 for RmsNorm {
    fn name(&self) -> &'static str {
        "fused-rms-norm"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let x = f32_slice(s1, l1, self.name())?;
        let w = f32_slice(s2, l2, self.name())?;
        let d = last_dim(l1);
        if w.len() != d {
            bail!(
                "fused-rms-norm: weight has {} elements, hidden size is {d}",
                w.len()
            )
        }
        let mut out = vec![0f32; x.len()];
        for (xr, yr) in x.chunks_exact(d).zip(out.chunks_exact_mut(d)) {
            let ms = xr.iter().map(|v| v * v).sum::<f32>() / d as f32;
            let r = 1.0 / (ms + self.eps).sqrt();
            for ((y, &xv), &wv) in yr.iter_mut().zip(xr).zip(w) {
                *y = xv * r * wv;
            }
        }
        Ok((CpuStorage::F32(out), l1.shape().clone()))
    }

    fn bwd(
        &self,
        x: &Tensor,
        w: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let grad = grad.contiguous()?;
        let d = w.elem_count();
        let rows = x.elem_count() / d.max(1);
        let both = x.apply_op3_no_bwd(w, &grad, &RmsNormBwd { eps: self.eps })?;
        let dx = both.narrow(0, 0, rows)?.reshape(x.shape())?;
        let dw = both.narrow(0, rows, 1)?.reshape(w.shape())?;
        Ok((Some(dx), Some(dw)))
    }
}

/// Backward of RMSNorm; returns `[rows + 1, d]`: the input gradient, then the weight gradient.
struct RmsNormBwd {
    eps: f32,
}

impl CustomOp3 for RmsNormBwd {
    fn name(&self) -> &'static str {
        "fused-rms-norm-bwd"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let x = f32_slice(s1, l1, self.name())?;
        let w = f32_slice(s2, l2, self.name())?;
        let g = f32_slice(s3, l3, self.name())?;
        let d = w.len();
        let rows = x.len() / d.max(1);
        let mut out = vec![0f32; (rows + 1) * d];
        let (dx_all, dw) = out.split_at_mut(rows * d);
        for ((xr, gr), dxr) in x
            .chunks_exact(d)
            .zip(g.chunks_exact(d))
            .zip(dx_all.chunks_exact_mut(d))
        {
            let ms = xr.iter().map(|v| v * v).sum::<f32>() / d as f32;
            let r = 1.0 / (ms + self.eps).sqrt();
            // mean over the row of (g * w) * xhat
            let mut dot = 0f32;
            for i in 0..d {
                dot += gr[i] * w[i] * xr[i] * r;
            }
            let mean = dot / d as f32;
            for i in 0..d {
                let xhat = xr[i] * r;
                dxr[i] = r * (gr[i] * w[i] - xhat * mean);
                dw[i] += gr[i] * xhat;
            }
        }
        Ok((CpuStorage::F32(out), Shape::from((rows + 1, d))))
    }
}

/// RMSNorm over the last dimension: `x / sqrt(mean(x²) + eps) * w`.
pub fn rms_norm(x: &Tensor, w: &Tensor, eps: f64) -> Result<Tensor> {
    if x.device().is_cpu() && x.dtype() == DType::F32 {
        x.contiguous()?.apply_op2(w, RmsNorm { eps: eps as f32 })
    } else {
        let ms = x.sqr()?.mean_keepdim(D::Minus1)?;
        x.broadcast_div(&(ms + eps)?.sqrt()?)?.broadcast_mul(w)
    }
}

// ---------------------------------------------------------------------------------------------
// SwiGLU: silu(gate) * up

struct SwiGlu;

fn sigmoid(v: f32) -> f32 {
    1.0 / (1.0 + (-v).exp())
}

impl CustomOp2 for SwiGlu {
    fn name(&self) -> &'static str {
        "fused-swiglu"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let g = f32_slice(s1, l1, self.name())?;
        let u = f32_slice(s2, l2, self.name())?;
        if g.len() != u.len() {
            bail!("fused-swiglu: gate and up differ in size")
        }
        let out = g
            .iter()
            .zip(u)
            .map(|(&gv, &uv)| gv * sigmoid(gv) * uv)
            .collect();
        Ok((CpuStorage::F32(out), l1.shape().clone()))
    }

    fn bwd(
        &self,
        gate: &Tensor,
        up: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let grad = grad.contiguous()?;
        let n = gate.elem_count();
        let both = gate.apply_op3_no_bwd(up, &grad, &SwiGluBwd)?;
        let dg = both.narrow(0, 0, n)?.reshape(gate.shape())?;
        let du = both.narrow(0, n, n)?.reshape(up.shape())?;
        Ok((Some(dg), Some(du)))
    }
}

struct SwiGluBwd;

impl CustomOp3 for SwiGluBwd {
    fn name(&self) -> &'static str {
        "fused-swiglu-bwd"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let g = f32_slice(s1, l1, self.name())?;
        let u = f32_slice(s2, l2, self.name())?;
        let gr = f32_slice(s3, l3, self.name())?;
        let n = g.len();
        let mut out = vec![0f32; 2 * n];
        let (dg, du) = out.split_at_mut(n);
        for i in 0..n {
            let s = sigmoid(g[i]);
            let silu = g[i] * s;
            dg[i] = gr[i] * u[i] * s * (1.0 + g[i] * (1.0 - s));
            du[i] = gr[i] * silu;
        }
        Ok((CpuStorage::F32(out), Shape::from(2 * n)))
    }
}

/// SwiGLU activation `silu(gate) * up` (element-wise).
pub fn swiglu(gate: &Tensor, up: &Tensor) -> Result<Tensor> {
    if gate.device().is_cpu() && gate.dtype() == DType::F32 {
        gate.contiguous()?.apply_op2(&up.contiguous()?, SwiGlu)
    } else {
        candle_nn::ops::silu(gate)?.mul(up)
    }
}

// ---------------------------------------------------------------------------------------------
// Softmax over the last dimension

struct Softmax;

impl CustomOp1 for Softmax {
    fn name(&self) -> &'static str {
        "fused-softmax"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let x = f32_slice(s, l, self.name())?;
        let d = last_dim(l);
        let mut out = vec![0f32; x.len()];
        for (xr, yr) in x.chunks_exact(d).zip(out.chunks_exact_mut(d)) {
            let max = xr.iter().copied().fold(f32::NEG_INFINITY, f32::max);
            let mut sum = 0f32;
            for (y, &v) in yr.iter_mut().zip(xr) {
                let e = (v - max).exp();
                *y = e;
                sum += e;
            }
            let inv = 1.0 / sum;
            yr.iter_mut().for_each(|y| *y *= inv);
        }
        Ok((CpuStorage::F32(out), l.shape().clone()))
    }

    fn bwd(&self, _arg: &Tensor, res: &Tensor, grad: &Tensor) -> Result<Option<Tensor>> {
        let grad = grad.contiguous()?;
        Ok(Some(res.apply_op2_no_bwd(&grad, &SoftmaxBwd)?))
    }
}

struct SoftmaxBwd;

impl CustomOp2 for SoftmaxBwd {
    fn name(&self) -> &'static str {
        "fused-softmax-bwd"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let y = f32_slice(s1, l1, self.name())?;
        let g = f32_slice(s2, l2, self.name())?;
        let d = last_dim(l1);
        let mut out = vec![0f32; y.len()];
        for ((yr, gr), dr) in y
            .chunks_exact(d)
            .zip(g.chunks_exact(d))
            .zip(out.chunks_exact_mut(d))
        {
            let dot: f32 = yr.iter().zip(gr).map(|(a, b)| a * b).sum();
            for i in 0..d {
                dr[i] = yr[i] * (gr[i] - dot);
            }
        }
        Ok((CpuStorage::F32(out), l1.shape().clone()))
    }
}

/// Softmax over the last dimension (rows that are entirely `-inf` are not allowed).
pub fn softmax_last_dim(x: &Tensor) -> Result<Tensor> {
    if x.device().is_cpu() && x.dtype() == DType::F32 {
        x.contiguous()?.apply_op1(Softmax)
    } else {
        candle_nn::ops::softmax(x, D::Minus1)
    }
}

// ---------------------------------------------------------------------------------------------
// Rotary position embedding (Hugging Face "rotate_half" layout)

/// `x: [n, t, h, d]`, `cos`/`sin`: `[n, t, d/2]` (per row and position).
struct Rope;

fn rope_kernel(x: &[f32], cos: &[f32], sin: &[f32], heads: usize, d: usize, out: &mut [f32]) {
    let half = d / 2;
    let nt = x.len() / (heads * d);
    for p in 0..nt {
        let c = &cos[p * half..(p + 1) * half];
        let s = &sin[p * half..(p + 1) * half];
        for h in 0..heads {
            let base = (p * heads + h) * d;
            let xr = &x[base..base + d];
            let yr = &mut out[base..base + d];
            for i in 0..half {
                let (a, b) = (xr[i], xr[i + half]);
                yr[i] = a * c[i] - b * s[i];
                yr[i + half] = b * c[i] + a * s[i];
            }
        }
    }
}

impl CustomOp3 for Rope {
    fn name(&self) -> &'static str {
        "fused-rope"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let x = f32_slice(s1, l1, self.name())?;
        let cos = f32_slice(s2, l2, self.name())?;
        let sin = f32_slice(s3, l3, self.name())?;
        let dims = l1.dims();
        let [n, t, h, d] = dims else {
            bail!("fused-rope: expected x of rank 4 [n, t, heads, head_dim], got {dims:?}")
        };
        if cos.len() != n * t * d / 2 || sin.len() != cos.len() {
            bail!("fused-rope: cos/sin must be [n, t, head_dim/2]")
        }
        let mut out = vec![0f32; x.len()];
        rope_kernel(x, cos, sin, *h, *d, &mut out);
        Ok((CpuStorage::F32(out), l1.shape().clone()))
    }

    fn bwd(
        &self,
        _x: &Tensor,
        cos: &Tensor,
        sin: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        // The rotation is orthogonal: its transpose is the rotation by -angle.
        let dx = grad
            .contiguous()?
            .apply_op3_no_bwd(cos, &sin.neg()?, &Rope)?;
        Ok((Some(dx), None, None))
    }
}

/// Applies rotary embeddings to `x: [n, t, heads, head_dim]` with per-position `cos`/`sin`
/// tables of shape `[n, t, head_dim / 2]` (the half-split layout used by Llama and Qwen2).
pub fn rope(x: &Tensor, cos: &Tensor, sin: &Tensor) -> Result<Tensor> {
    if x.device().is_cpu() && x.dtype() == DType::F32 {
        x.contiguous()?
            .apply_op3(&cos.contiguous()?, &sin.contiguous()?, Rope)
    } else {
        let (n, t, _h, d) = x.dims4()?;
        let half = d / 2;
        let cos = cos.reshape((n, t, 1, half))?;
        let sin = sin.reshape((n, t, 1, half))?;
        let x1 = x.narrow(D::Minus1, 0, half)?;
        let x2 = x.narrow(D::Minus1, half, half)?;
        let y1 = (x1.broadcast_mul(&cos)? - x2.broadcast_mul(&sin)?)?;
        let y2 = (x2.broadcast_mul(&cos)? + x1.broadcast_mul(&sin)?)?;
        Tensor::cat(&[y1, y2], D::Minus1)
    }
}

// ---------------------------------------------------------------------------------------------
// log p(target) = log_softmax(logits)[target]

struct TokenLogProb;

impl CustomOp2 for TokenLogProb {
    fn name(&self) -> &'static str {
        "fused-token-logprob"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let logits = f32_slice(s1, l1, self.name())?;
        let targets = u32_slice(s2, l2, self.name())?;
        let v = last_dim(l1);
        let rows = logits.len() / v.max(1);
        if targets.len() != rows {
            bail!(
                "fused-token-logprob: {rows} rows of logits but {} targets",
                targets.len()
            )
        }
        let mut out = Vec::with_capacity(rows);
        for (row, &t) in logits.chunks_exact(v).zip(targets) {
            let t = t as usize;
            if t >= v {
                bail!("fused-token-logprob: target id {t} is outside the vocabulary of {v}")
            }
            out.push(row[t] - log_sum_exp(row));
        }
        Ok((CpuStorage::F32(out), Shape::from(rows)))
    }

    fn bwd(
        &self,
        logits: &Tensor,
        targets: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let grad = grad.contiguous()?;
        let d = logits.apply_op3_no_bwd(targets, &grad, &TokenLogProbBwd)?;
        Ok((Some(d), None))
    }
}

fn log_sum_exp(row: &[f32]) -> f32 {
    let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let sum: f32 = row.iter().map(|&x| (x - max).exp()).sum();
    max + sum.ln()
}

struct TokenLogProbBwd;

impl CustomOp3 for TokenLogProbBwd {
    fn name(&self) -> &'static str {
        "fused-token-logprob-bwd"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let logits = f32_slice(s1, l1, self.name())?;
        let targets = u32_slice(s2, l2, self.name())?;
        let g = f32_slice(s3, l3, self.name())?;
        let v = last_dim(l1);
        let mut out = vec![0f32; logits.len()];
        for (((row, &t), &gv), dr) in logits
            .chunks_exact(v)
            .zip(targets)
            .zip(g)
            .zip(out.chunks_exact_mut(v))
        {
            let lse = log_sum_exp(row);
            for (d, &x) in dr.iter_mut().zip(row) {
                *d = -gv * (x - lse).exp();
            }
            if let Some(d) = dr.get_mut(t as usize) {
                *d += gv;
            }
        }
        Ok((CpuStorage::F32(out), l1.shape().clone()))
    }
}

/// Log-probability of each row's target token: `logits: [rows, vocab]` (f32), `targets: [rows]`
/// (u32) → `[rows]`. Differentiable with respect to the logits.
pub fn token_logprob(logits: &Tensor, targets: &Tensor) -> Result<Tensor> {
    if logits.device().is_cpu() && logits.dtype() == DType::F32 {
        logits
            .contiguous()?
            .apply_op2(&targets.contiguous()?, TokenLogProb)
    } else {
        let lsm = candle_nn::ops::log_softmax(logits, D::Minus1)?;
        lsm.gather(&targets.contiguous()?.unsqueeze(1)?, 1)?
            .squeeze(1)
    }
}

// ---------------------------------------------------------------------------------------------
// Product with a frozen weight

/// `x Wᵀ` whose backward gives only `x` its gradient (`grad · W`): candle's matmul backward
/// always computes both operands' gradients, so a frozen weight (a LoRA base, a frozen head)
/// would cost a wasted `[out, in]` product per layer and step. The forward is candle's own CPU
/// product (the same gemm call as `x.matmul(&w.t())`, so the values are identical).
struct FrozenMatmul {
    weight: Tensor,
}

impl CustomOp1 for FrozenMatmul {
    fn name(&self) -> &'static str {
        "frozen-matmul"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let (m, k) = l.shape().dims2()?;
        let (w_storage, w_layout) = self.weight.storage_and_layout();
        let candle_core::Storage::Cpu(w) = &*w_storage else {
            bail!("frozen-matmul: the weight is not on the CPU")
        };
        let (n, wk) = w_layout.shape().dims2()?;
        if wk != k {
            bail!("frozen-matmul: input has {k} features, the weight {wk}")
        }
        let wt = w_layout.transpose(0, 1)?;
        let out = s.matmul(w, (1, m, n, k), l, &wt)?;
        Ok((out, Shape::from((m, n))))
    }

    fn bwd(&self, _x: &Tensor, _res: &Tensor, grad: &Tensor) -> Result<Option<Tensor>> {
        Ok(Some(grad.matmul(&self.weight)?))
    }
}

/// `x Wᵀ` for `x: [rows, in]` and a weight `W: [out, in]`. When `x` carries gradients and `W`
/// does not, the backward skips `W`'s gradient (on the CPU; other devices use the plain
/// product).
pub fn matmul_t(x: &Tensor, w: &Tensor) -> Result<Tensor> {
    let frozen = x.track_op() && !w.track_op();
    if frozen && x.device().is_cpu() && x.dtype() == DType::F32 && w.dtype() == DType::F32 {
        x.apply_op1(FrozenMatmul { weight: w.clone() })
    } else {
        x.matmul(&w.t()?)
    }
}

/// Entropy (nats) of each row's softmax distribution, computed outside the graph (a metric).
pub fn row_entropy(logits: &[f32], vocab: usize) -> Vec<f32> {
    logits
        .chunks_exact(vocab.max(1))
        .map(|row| {
            let lse = log_sum_exp(row);
            -row.iter()
                .map(|&x| {
                    let lp = x - lse;
                    if lp.is_finite() {
                        lp.exp() * lp
                    } else {
                        0.0
                    }
                })
                .sum::<f32>()
        })
        .collect()
}

#[cfg(test)]
pub(crate) mod tests;
