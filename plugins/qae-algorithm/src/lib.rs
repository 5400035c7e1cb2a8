//! Quantile Advantage Estimation as a token-level algorithm plugin (*Quantile Advantage
//! Estimation for Entropy-Safe Reasoning*, QAE): the baseline of a group is its K-quantile
//! reward instead of its mean, so hard prompts (success rate ≤ 1 − K) reinforce only their rare
//! successes and easy ones only penalise their failures; about 80% of responses get a zero
//! advantage. Every token of a completion gets its completion's advantage; tokens outside the
//! loss mask get weight 0.

use rlvr_plugin_api::{export_plugin, AlgoBatch, AlgoOutput, Algorithm, Plugin, Spec};

/// The algorithm.
pub struct Qae {
    k: f64,
    scale: bool,
}

impl Qae {
    /// Advantages of one group's rewards.
    pub fn group(&self, rewards: &[f64]) -> Vec<f64> {
        let n = rewards.len();
        let mut sorted = rewards.to_vec();
        sorted.sort_by(f64::total_cmp);
        let idx = ((self.k * n as f64).ceil() as usize).clamp(1, n.max(1)) - 1;
        let q = sorted.get(idx).copied().unwrap_or(0.0);
        let mean = rewards.iter().sum::<f64>() / n.max(1) as f64;
        // Sample standard deviation (n − 1), as the engine's group normalisation uses.
        let var = rewards.iter().map(|r| (r - mean) * (r - mean)).sum::<f64>()
            / n.saturating_sub(1).max(1) as f64;
        let std = var.sqrt();
        rewards
            .iter()
            .map(|r| {
                if std == 0.0 {
                    0.0
                } else if self.scale {
                    (r - q) / (std + 1e-4)
                } else {
                    r - q
                }
            })
            .collect()
    }
}

impl Algorithm for Qae {
    fn compute(&self, batch: &AlgoBatch<'_>) -> Result<AlgoOutput, String> {
        let g = batch.group_size();
        if g == 0 || !batch.rows().is_multiple_of(g) {
            return Err(format!("{} rows do not form groups of {g}", batch.rows()));
        }
        let per_row: Vec<f32> = batch
            .rewards()
            .chunks(g)
            .flat_map(|grp| self.group(grp))
            .map(|a| a as f32)
            .collect();
        let mut out = AlgoOutput::broadcast(batch, &per_row);
        out.weights = (0..batch.rows())
            .flat_map(|r| {
                batch
                    .row(r)
                    .mask
                    .iter()
                    .map(|&m| f32::from(m))
                    .collect::<Vec<_>>()
            })
            .collect();
        Ok(out)
    }
}

fn plugin() -> Plugin {
    Plugin::new(
        "qae",
        env!("CARGO_PKG_VERSION"),
        "Quantile Advantage Estimation (K-quantile group baseline) as a token-level algorithm",
    )
    .algorithm(
        Spec::new(
            "qae_tokens",
            "K-quantile group baseline (QAE), broadcast to every token",
        )
        .float(
            "quantile",
            0.4,
            0.0,
            1.0,
            "K: the baseline is the group's K-quantile reward",
        )
        .bool("scale", true, "divide by the group standard deviation"),
        |p| {
            Ok(Qae {
                k: p.f("quantile"),
                scale: p.b("scale"),
            })
        },
    )
}

export_plugin!(plugin);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hard_groups_reinforce_successes_only() {
        let q = Qae {
            k: 0.4,
            scale: false,
        };
        // 1 success of 5: the 0.4-quantile is 0, so only the success moves.
        assert_eq!(
            q.group(&[0.0, 1.0, 0.0, 0.0, 0.0]),
            vec![0.0, 1.0, 0.0, 0.0, 0.0]
        );
        // 4 of 5: the quantile is 1, so only the failure is pushed down.
        assert_eq!(
            q.group(&[1.0, 1.0, 0.0, 1.0, 1.0]),
            vec![0.0, 0.0, -1.0, 0.0, 0.0]
        );
        assert_eq!(q.group(&[1.0, 1.0]), vec![0.0, 0.0]);
    }
}
