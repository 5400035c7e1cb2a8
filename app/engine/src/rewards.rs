//! Reward shaping around the verifier: injected verifier noise and its corrections
//! (*Reinforcement Learning with Verifiable yet Noisy Rewards under Imperfect Verifiers*), and
//! DAPO's soft overlong punishment.

use rand::Rng as _;
use rand_chacha::ChaCha8Rng;

use crate::config::NoiseCorrection;

/// Flips verifier outcomes: a pass becomes a fail with probability `fn_rate`, a fail becomes a
/// pass with probability `fp_rate`.
pub fn flip(passed: &[bool], fn_rate: f64, fp_rate: f64, rng: &mut ChaCha8Rng) -> Vec<bool> {
    passed
        .iter()
        .map(|&p| {
            let u: f64 = rng.random();
            if p {
                u >= fn_rate
            } else {
                u < fp_rate
            }
        })
        .collect()
}

/// Corrected rewards for one group of observed binary outcomes.
///
/// - `Backward`: `r̂ = (r̃ − ρ_fp) / (1 − ρ_fn − ρ_fp)`, an unbiased estimate of the clean reward
///   for every sample (`E[r̂ | r] = r`).
/// - `Forward`: each sample gets its posterior probability of being a true pass, given its
///   observation, the noise rates and the group's estimated true pass rate
///   `p̂ = (p_obs − ρ_fp) / (1 − ρ_fn − ρ_fp)`: observed failures keep some credit
///   (`p̂ρ_fn / (p̂ρ_fn + (1 − p̂)(1 − ρ_fp))`), so hidden successes are not pushed down.
/// - `None`: the observed 0/1 reward.
pub fn correct(observed: &[bool], fn_rate: f64, fp_rate: f64, how: NoiseCorrection) -> Vec<f32> {
    let r: Vec<f64> = observed
        .iter()
        .map(|&p| if p { 1.0 } else { 0.0 })
        .collect();
    let denom = (1.0 - fn_rate - fp_rate).max(1e-6);
    match how {
        NoiseCorrection::None => r.iter().map(|&x| x as f32).collect(),
        NoiseCorrection::Backward => r.iter().map(|&x| ((x - fp_rate) / denom) as f32).collect(),
        NoiseCorrection::Forward => {
            let p_obs = r.iter().sum::<f64>() / r.len().max(1) as f64;
            let p = ((p_obs - fp_rate) / denom).clamp(0.0, 1.0);
            let post_fail = {
                let a = p * fn_rate;
                let b = (1.0 - p) * (1.0 - fp_rate);
                if a + b > 0.0 {
                    a / (a + b)
                } else {
                    0.0
                }
            };
            let post_pass = {
                let a = p * (1.0 - fn_rate);
                let b = (1.0 - p) * fp_rate;
                if a + b > 0.0 {
                    a / (a + b)
                } else {
                    1.0
                }
            };
            r.iter()
                .map(|&x| {
                    if x > 0.0 {
                        post_pass as f32
                    } else {
                        post_fail as f32
                    }
                })
                .collect()
        }
    }
}

/// DAPO's soft overlong punishment for a completion of `len` tokens with limit `max_len`:
/// 0 up to `max_len − window`, then falling linearly to −1 at `max_len` (and beyond).
pub fn overlong_penalty(len: usize, max_len: usize, window: usize) -> f32 {
    let start = max_len.saturating_sub(window);
    if len <= start {
        0.0
    } else if len >= max_len {
        -1.0
    } else {
        -((len - start) as f32) / window.max(1) as f32
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use rand::SeedableRng as _;

    #[test]
    fn flips_happen_at_the_set_rates() {
        let mut rng = ChaCha8Rng::seed_from_u64(0);
        let passed = vec![true; 10_000];
        let fails = flip(&passed, 0.3, 0.0, &mut rng)
            .iter()
            .filter(|p| !**p)
            .count();
        assert!((2800..3200).contains(&fails), "{fails}");
        let failed = vec![false; 10_000];
        let passes = flip(&failed, 0.0, 0.1, &mut rng)
            .iter()
            .filter(|p| **p)
            .count();
        assert!((850..1150).contains(&passes), "{passes}");
        assert_eq!(flip(&[true, false], 0.0, 0.0, &mut rng), vec![true, false]);
    }

    #[test]
    fn backward_correction_is_unbiased() {
        // True pass, fn = 0.3, fp = 0.1: observed 1 w.p. 0.7, 0 w.p. 0.3.
        let c = correct(&[true, false], 0.3, 0.1, NoiseCorrection::Backward);
        let (one, zero) = (c[0] as f64, c[1] as f64);
        assert!((one - 0.9 / 0.6).abs() < 1e-6 && (zero + 0.1 / 0.6).abs() < 1e-6);
        assert!(
            (0.7 * one + 0.3 * zero - 1.0).abs() < 1e-6,
            "E[r̂ | pass] = 1"
        );
        assert!((0.1 * one + 0.9 * zero).abs() < 1e-6, "E[r̂ | fail] = 0");
    }

    #[test]
    fn forward_correction_credits_observed_failures() {
        // 4 of 8 observed passes, fn = 0.5, fp = 0: p̂ = 1, so every failure is a hidden pass.
        let obs = [true, true, true, true, false, false, false, false];
        let c = correct(&obs, 0.5, 0.0, NoiseCorrection::Forward);
        assert!(c.iter().all(|&x| (x - 1.0).abs() < 1e-6), "{c:?}");
        // 2 of 8 observed, fn = 0.2: p̂ = 0.3125; failure credit = p̂·0.2 / (p̂·0.2 + 1 − p̂).
        let obs = [true, true, false, false, false, false, false, false];
        let c = correct(&obs, 0.2, 0.0, NoiseCorrection::Forward);
        let p = 0.25 / 0.8;
        let q = p * 0.2 / (p * 0.2 + (1.0 - p));
        assert!(
            (c[0] - 1.0).abs() < 1e-6 && (c[2] as f64 - q).abs() < 1e-6,
            "{c:?}"
        );
        assert_eq!(correct(&obs, 0.2, 0.0, NoiseCorrection::None)[2], 0.0);
    }

    #[test]
    fn overlong_penalty_ramps() {
        assert_eq!(overlong_penalty(4, 10, 4), 0.0);
        assert_eq!(overlong_penalty(6, 10, 4), 0.0);
        assert_eq!(overlong_penalty(8, 10, 4), -0.5);
        assert_eq!(overlong_penalty(10, 10, 4), -1.0);
    }
}
