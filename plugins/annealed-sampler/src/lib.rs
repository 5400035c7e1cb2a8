//! Within-sequence annealed temperature (*Let it Calm: Exploratory Annealed Decoding for
//! Verifiable Reinforcement Learning*, EAD): explore at the beginning of a completion, exploit at
//! the end. The temperature of position `t` decays from `start` to `end`:
//! `T(t) = end + (start − end) · decay^t`, and the logits are multiplied by `T_base / T(t)` so
//! that the run's own `rollout.temperature` (`base`) is undone and replaced by `T(t)`.
//! The policy's recorded log-probs stay those of temperature 1 (the engine records them before
//! any sampler), as the clipped objective expects.

use rlvr_plugin_api::{export_plugin, Plugin, Sampler, Spec};

/// The sampler.
pub struct Annealed {
    start: f32,
    end: f32,
    decay: f32,
    base: f32,
}

impl Annealed {
    /// Temperature at generated position `t`.
    pub fn temperature(&self, t: usize) -> f32 {
        self.end + (self.start - self.end) * self.decay.powi(t.min(i32::MAX as usize) as i32)
    }
}

impl Sampler for Annealed {
    fn transform(
        &self,
        logits: &mut [f32],
        position: usize,
        _generated: &[u32],
    ) -> Result<(), String> {
        let scale = self.base / self.temperature(position);
        for x in logits.iter_mut() {
            *x *= scale;
        }
        Ok(())
    }
}

fn plugin() -> Plugin {
    Plugin::new(
        "annealed-decoding",
        env!("CARGO_PKG_VERSION"),
        "Exploratory annealed decoding: temperature falls within each completion",
    )
    .sampler(
        Spec::new(
            "annealed_temperature",
            "temperature decays from `start` to `end` along each completion (EAD)",
        )
        .float(
            "start",
            1.4,
            0.05,
            5.0,
            "temperature of the first generated token",
        )
        .float("end", 0.7, 0.05, 5.0, "temperature the schedule approaches")
        .float(
            "decay",
            0.8,
            0.0,
            1.0,
            "per-token decay factor of (start - end)",
        )
        .float(
            "base",
            1.0,
            0.05,
            5.0,
            "the run's rollout.temperature, which this sampler replaces",
        ),
        |p| {
            Ok(Annealed {
                start: p.f("start") as f32,
                end: p.f("end") as f32,
                decay: p.f("decay") as f32,
                base: p.f("base") as f32,
            })
        },
    )
}

export_plugin!(plugin);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn temperature_falls_from_start_to_end() {
        let a = Annealed {
            start: 1.5,
            end: 0.5,
            decay: 0.5,
            base: 1.0,
        };
        assert_eq!(a.temperature(0), 1.5);
        assert_eq!(a.temperature(1), 1.0);
        assert!((a.temperature(30) - 0.5).abs() < 1e-6);
        let mut l = vec![1.0, 2.0];
        a.transform(&mut l, 1, &[]).unwrap();
        assert_eq!(l, vec![1.0, 2.0]);
        a.transform(&mut l, 0, &[]).unwrap();
        assert!((l[1] - 2.0 / 1.5).abs() < 1e-6);
    }
}
