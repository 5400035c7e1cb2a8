//! AdamW with global gradient-norm clipping and learning-rate schedules.
//!
//! candle-nn has an AdamW, but its moment estimates are private, so a run could not be
//! checkpointed and resumed exactly; this one keeps the same update rule (*Decoupled Weight Decay
//! Regularization*, Loshchilov & Hutter, 2019) with its state exposed.

use candle_core::{backprop::GradStore, Tensor, Var};

use crate::error::{EngineError, Result};

pub use rlvr_core::config::Schedule;

/// Learning rate at `step` (0-based) of `total` steps.
pub fn learning_rate(
    base: f64,
    schedule: Schedule,
    warmup: usize,
    min_ratio: f64,
    step: usize,
    total: usize,
) -> f64 {
    if step < warmup {
        return base * (step + 1) as f64 / warmup as f64;
    }
    let span = total.saturating_sub(warmup).max(1) as f64;
    let progress = ((step - warmup) as f64 / span).min(1.0);
    let floor = base * min_ratio;
    match schedule {
        Schedule::Constant => base,
        Schedule::Linear => floor + (base - floor) * (1.0 - progress),
        Schedule::Cosine => {
            floor + (base - floor) * 0.5 * (1.0 + (std::f64::consts::PI * progress).cos())
        }
    }
}

/// AdamW hyper-parameters.
#[derive(Clone, Copy, Debug)]
pub struct AdamWParams {
    /// β₁.
    pub beta1: f64,
    /// β₂.
    pub beta2: f64,
    /// ε.
    pub eps: f64,
    /// Decoupled weight decay.
    pub weight_decay: f64,
}

impl Default for AdamWParams {
    /// β = (0.9, 0.99), ε = 1e-8, no weight decay.
    fn default() -> Self {
        Self {
            beta1: 0.9,
            beta2: 0.99,
            eps: 1e-8,
            weight_decay: 0.0,
        }
    }
}

/// The optimizer and its state.
pub struct AdamW {
    vars: Vec<Var>,
    m: Vec<Tensor>,
    v: Vec<Tensor>,
    t: usize,
    params: AdamWParams,
}

impl AdamW {
    /// A new optimizer over `vars` with zero moments.
    pub fn new(vars: Vec<Var>, params: AdamWParams) -> Result<Self> {
        let m = vars
            .iter()
            .map(|v| v.as_tensor().zeros_like())
            .collect::<candle_core::Result<Vec<_>>>()?;
        let v = m.clone();
        Ok(Self {
            vars,
            m,
            v,
            t: 0,
            params,
        })
    }

    /// Global L2 norm of the gradients of all variables.
    pub fn grad_norm(&self, grads: &GradStore) -> Result<f64> {
        let mut sq = 0f64;
        for var in &self.vars {
            if let Some(g) = grads.get(var.as_tensor()) {
                sq += g.sqr()?.sum_all()?.to_scalar::<f32>()? as f64;
            }
        }
        let norm = sq.sqrt();
        if !norm.is_finite() {
            return Err(EngineError::NonFinite(format!("gradient norm is {norm}")));
        }
        Ok(norm)
    }

    /// One update with learning rate `lr`, gradients scaled by `grad_scale` (for clipping).
    pub fn step(&mut self, grads: &GradStore, lr: f64, grad_scale: f64) -> Result<()> {
        self.t += 1;
        let p = self.params;
        let bc1 = 1.0 - p.beta1.powi(self.t as i32);
        let bc2 = 1.0 - p.beta2.powi(self.t as i32);
        for i in 0..self.vars.len() {
            let var = &self.vars[i];
            let Some(g) = grads.get(var.as_tensor()) else {
                continue;
            };
            let g = (g * grad_scale)?;
            let m = ((&self.m[i] * p.beta1)? + (&g * (1.0 - p.beta1))?)?;
            let v = ((&self.v[i] * p.beta2)? + (g.sqr()? * (1.0 - p.beta2))?)?;
            let update = ((&m / bc1)? / ((&v / bc2)?.sqrt()? + p.eps)?)?;
            let theta = var.as_tensor().detach();
            let theta = ((theta * (1.0 - lr * p.weight_decay))? - (update * lr)?)?;
            var.set(&theta)?;
            self.m[i] = m;
            self.v[i] = v;
        }
        Ok(())
    }

    /// Zeroes the moment estimates and the step count (used when the reference policy is reset).
    pub fn reset_moments(&mut self) -> Result<()> {
        for (m, v) in self.m.iter_mut().zip(self.v.iter_mut()) {
            *m = m.zeros_like()?;
            *v = v.zeros_like()?;
        }
        self.t = 0;
        Ok(())
    }

    /// The state for a checkpoint: (updates taken, first moments, second moments), in the order
    /// of the variables given to [`AdamW::new`].
    pub fn state(&self) -> (usize, &[Tensor], &[Tensor]) {
        (self.t, &self.m, &self.v)
    }

    /// Restores a state saved with [`AdamW::state`]; shapes must match the variables.
    pub fn load_state(&mut self, t: usize, m: Vec<Tensor>, v: Vec<Tensor>) -> Result<()> {
        if m.len() != self.vars.len() || v.len() != self.vars.len() {
            return Err(EngineError::Internal(format!(
                "optimizer state has {} / {} moments for {} variables",
                m.len(),
                v.len(),
                self.vars.len()
            )));
        }
        for ((var, a), b) in self.vars.iter().zip(&m).zip(&v) {
            if a.dims() != var.dims() || b.dims() != var.dims() {
                return Err(EngineError::Internal(format!(
                    "optimizer moment of shape {:?} for a variable of shape {:?}",
                    a.dims(),
                    var.dims()
                )));
            }
        }
        self.t = t;
        self.m = m;
        self.v = v;
        Ok(())
    }

    /// Number of updates taken.
    pub fn steps_taken(&self) -> usize {
        self.t
    }
}

/// Clip scale for a gradient norm: `min(1, max_norm / norm)`; `max_norm <= 0` disables clipping.
pub fn clip_scale(norm: f64, max_norm: f64) -> f64 {
    if max_norm > 0.0 && norm > max_norm {
        max_norm / norm
    } else {
        1.0
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use candle_core::Device;

    #[test]
    fn schedules() {
        assert_eq!(learning_rate(1.0, Schedule::Constant, 0, 0.0, 5, 10), 1.0);
        assert!((learning_rate(1.0, Schedule::Constant, 4, 0.0, 0, 10) - 0.25).abs() < 1e-12);
        assert!((learning_rate(1.0, Schedule::Linear, 0, 0.1, 10, 10) - 0.1).abs() < 1e-12);
        assert!((learning_rate(1.0, Schedule::Linear, 0, 0.0, 5, 10) - 0.5).abs() < 1e-12);
        assert!((learning_rate(1.0, Schedule::Cosine, 0, 0.0, 5, 10) - 0.5).abs() < 1e-12);
    }

    #[test]
    fn adamw_first_step_moves_by_lr_against_the_gradient() {
        let w = Var::new(&[1.0f32, -2.0], &Device::Cpu).unwrap();
        let p = AdamWParams {
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay: 0.0,
        };
        let mut opt = AdamW::new(vec![w.clone()], p).unwrap();
        // loss = 3*w0 - 0.5*w1 -> gradient (3, -0.5); first Adam step is lr * sign(g)
        let loss = (w.as_tensor() * &Tensor::new(&[3.0f32, -0.5], &Device::Cpu).unwrap())
            .unwrap()
            .sum_all()
            .unwrap();
        let g = loss.backward().unwrap();
        assert!((opt.grad_norm(&g).unwrap() - (9.25f64).sqrt()).abs() < 1e-6);
        opt.step(&g, 0.1, 1.0).unwrap();
        let v = w.as_tensor().to_vec1::<f32>().unwrap();
        assert!(
            (v[0] - 0.9).abs() < 1e-5 && (v[1] + 1.9).abs() < 1e-5,
            "{v:?}"
        );
        assert_eq!(clip_scale(4.0, 1.0), 0.25);
        assert_eq!(clip_scale(0.5, 1.0), 1.0);
        assert_eq!(clip_scale(4.0, 0.0), 1.0);
    }
}
