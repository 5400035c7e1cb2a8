//! Every estimator against hand-computed values.

use super::*;
use crate::algo::params::Params;
use std::collections::BTreeMap;

fn run(name: &str, rewards: &[f32], group: usize) -> Vec<f32> {
    let passed: Vec<bool> = rewards.iter().map(|&r| r >= 1.0).collect();
    let info = find(name).unwrap();
    let p = Params::resolve("algorithm.advantage_params", info.params, &BTreeMap::new()).unwrap();
    build(info, &p)
        .unwrap()
        .advantages(&GroupRewards {
            rewards,
            passed: &passed,
            group,
        })
        .unwrap()
}

fn close(a: &[f32], b: &[f32]) {
    assert_eq!(a.len(), b.len());
    for (x, y) in a.iter().zip(b) {
        assert!((x - y).abs() < 1e-4, "{a:?} vs {b:?}");
    }
}

#[test]
fn grpo_by_hand_and_edge_cases() {
    let s = 0.5 / (0.577_350_3 + 1e-4);
    close(&run("grpo", &[1.0, 0.0, 0.0, 1.0], 4), &[s, -s, -s, s]);
    close(&run("grpo", &[0.3; 4], 4), &[0.0; 4]);
    close(&run("grpo", &[1.0, 0.0], 1), &[0.0, 0.0]);
    let passed = [true, false];
    for info in ESTIMATORS.iter().filter(|e| e.name != "ppo") {
        let p = Params::resolve("x", info.params, &BTreeMap::new()).unwrap();
        let e = build(info, &p).unwrap();
        let err = e
            .advantages(&GroupRewards {
                rewards: &[1.0, f32::NAN],
                passed: &passed,
                group: 2,
            })
            .unwrap_err()
            .to_string();
        assert!(err.contains("NaN"), "{}: {err}", info.name);
        assert!(e
            .advantages(&GroupRewards {
                rewards: &[1.0, 0.0],
                passed: &passed,
                group: 3
            })
            .is_err());
    }
}

#[test]
fn dr_grpo_equals_grpo_when_the_group_std_is_one() {
    // [0, 1, 2]: mean 1, sample std exactly 1.
    let grpo = Grpo {
        scale: true,
        eps: 0.0,
    }
    .advantages(&GroupRewards {
        rewards: &[0.0, 1.0, 2.0],
        passed: &[false; 3],
        group: 3,
    })
    .unwrap();
    close(&grpo, &run("dr_grpo", &[0.0, 1.0, 2.0], 3));
    close(
        &run("dr_grpo", &[1.0, 0.0, 0.0, 1.0], 4),
        &[0.5, -0.5, -0.5, 0.5],
    );
}

#[test]
fn rloo_by_hand() {
    close(
        &run("rloo", &[1.0, 0.0, 0.0, 1.0], 4),
        &[2.0 / 3.0, -2.0 / 3.0, -2.0 / 3.0, 2.0 / 3.0],
    );
    close(&run("rloo", &[1.0], 1), &[0.0]);
}

#[test]
fn reinforce_pp_normalises_by_the_batch() {
    // centred [0.5, -0.5, 0, 0]; batch sample std = sqrt(0.5 / 3)
    let s = (0.5f32 / 3.0).sqrt();
    close(
        &run("reinforce_pp", &[1.0, 0.0, 1.0, 1.0], 2),
        &[0.5 / s, -0.5 / s, 0.0, 0.0],
    );
    close(&run("reinforce_pp", &[1.0; 4], 2), &[0.0; 4]);
}

#[test]
fn passk_by_hand() {
    // N = 4, one pass, k = 2: R = 1 - C(3,2)/C(4,2) = 0.5, σ = 0.5;
    // A+ = 0.5/0.5 = 1, A- = (0.5 - C(2,1)/C(3,1)) / 0.5 = -1/3.
    let e = PassK { k: 2 };
    let a = e
        .advantages(&GroupRewards {
            rewards: &[1.0, 0.0, 0.0, 0.0],
            passed: &[true, false, false, false],
            group: 4,
        })
        .unwrap();
    close(&a, &[1.0, -1.0 / 3.0, -1.0 / 3.0, -1.0 / 3.0]);
    // k = 1 is GRPO with the population std: (1 - 0.25) / sqrt(0.1875), -0.25 / sqrt(0.1875).
    let a = PassK { k: 1 }
        .advantages(&GroupRewards {
            rewards: &[1.0, 0.0, 0.0, 0.0],
            passed: &[true, false, false, false],
            group: 4,
        })
        .unwrap();
    let s = 0.1875f32.sqrt();
    close(&a, &[0.75 / s, -0.25 / s, -0.25 / s, -0.25 / s]);
    // All passed or all failed: no signal.
    close(&run("passk", &[1.0; 4], 4), &[0.0; 4]);
    close(&run("passk", &[0.0; 4], 4), &[0.0; 4]);
}

#[test]
fn qae_picks_the_side_by_difficulty() {
    let s = 0.2f32.sqrt() + 1e-4; // sample std of [1,0,0,0,0]
    close(
        &run("qae", &[1.0, 0.0, 0.0, 0.0, 0.0], 5),
        &[1.0 / s, 0.0, 0.0, 0.0, 0.0],
    );
    close(
        &run("qae", &[1.0, 1.0, 1.0, 1.0, 0.0], 5),
        &[0.0, 0.0, 0.0, 0.0, -1.0 / s],
    );
}

#[test]
fn w_reinforce_weights() {
    close(&run("w_reinforce", &[1.0, 0.0], 2), &[0.1, -1.0]);
}

#[test]
fn params_are_checked_against_specs() {
    let info = find("passk").unwrap();
    let mut v = BTreeMap::new();
    v.insert("k".to_string(), crate::algo::params::ParamValue::Int(0));
    let e = Params::resolve("algorithm.advantage_params", info.params, &v)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("algorithm.advantage_params.k") && e.contains("1..=256"),
        "{e}"
    );
    let mut v = BTreeMap::new();
    v.insert("kk".to_string(), crate::algo::params::ParamValue::Int(2));
    let e = Params::resolve("algorithm.advantage_params", info.params, &v)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("kk = 2") && e.contains("the parameters are k"),
        "{e}"
    );
    for info in ESTIMATORS {
        for s in info.params {
            assert!(
                s.min <= s.default && s.default <= s.max,
                "{}.{}",
                info.name,
                s.name
            );
            assert!(!s.help.is_empty());
        }
    }
}

#[test]
fn gae_by_hand() {
    // V = [0.5, 0.25], reward 1 at the last token, γ = 1, λ = 0.5:
    // δ1 = 1 - 0.25 = 0.75; δ0 = 0 + 0.25 - 0.5 = -0.25; A1 = 0.75; A0 = -0.25 + 0.5·0.75 = 0.125.
    let (a, r) = gae(&[0.5, 0.25], 1.0, 1.0, 0.5);
    close(&a, &[0.125, 0.75]);
    close(&r, &[0.625, 1.0]);
    // λ = 1, γ = 1: A_t = R - V_t (Monte-Carlo).
    let (a, _) = gae(&[0.2, 0.4, 0.6], 1.0, 1.0, 1.0);
    close(&a, &[0.8, 0.6, 0.4]);
    let ppo = find("ppo").unwrap();
    let p = Params::resolve("x", ppo.params, &BTreeMap::new()).unwrap();
    assert!(build(ppo, &p).unwrap().critic().is_some());
}
