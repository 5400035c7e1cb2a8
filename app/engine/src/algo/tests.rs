//! The policy loss and pass@k against hand-computed values.

use super::*;
use candle_core::{Device, Var};

fn t2(v: &[&[f32]]) -> Tensor {
    Tensor::new(
        v.iter().map(|r| r.to_vec()).collect::<Vec<_>>(),
        &Device::Cpu,
    )
    .unwrap()
}

fn adv(v: &[f32], len: usize) -> Tensor {
    broadcast_advantages(&Tensor::new(v, &Device::Cpu).unwrap(), len).unwrap()
}

fn scalar(t: &Tensor) -> f32 {
    t.to_scalar::<f32>().unwrap()
}

fn grad_of(loss: &Tensor, v: &Var) -> Vec<Vec<f32>> {
    loss.backward()
        .unwrap()
        .get(v.as_tensor())
        .unwrap()
        .to_vec2()
        .unwrap()
}

fn inputs<'a>(
    logp: &'a Tensor,
    old: &'a Tensor,
    a: &'a Tensor,
    mask: &'a Tensor,
    norm: f64,
) -> LossInputs<'a> {
    LossInputs {
        logp,
        old_logp: old,
        ref_logp: None,
        advantages: a,
        mask,
        pg_weight: None,
        entropy: None,
        lp_reg: None,
        normaliser: norm,
    }
}

#[test]
fn clipping_by_hand() {
    // Two one-token sequences, old logp 0, new ratios 1.5 and 0.5.
    let logp = Var::from_tensor(&t2(&[&[1.5f32.ln()], &[0.5f32.ln()]])).unwrap();
    let old = t2(&[&[0.0], &[0.0]]);
    let mask = t2(&[&[1.0], &[1.0]]);
    let p = LossParams {
        epsilon_low: 0.2,
        epsilon_high: 0.28,
        ..Default::default()
    };
    // A = +1: row 1 clipped at 1.28 (no gradient), row 2 unclipped.
    let a = adv(&[1.0, 1.0], 1);
    let out = policy_loss(&inputs(logp.as_tensor(), &old, &a, &mask, 2.0), &p).unwrap();
    assert!((scalar(&out.loss) + (1.28 + 0.5) / 2.0).abs() < 1e-6);
    let g = grad_of(&out.loss, &logp);
    assert_eq!(g[0][0], 0.0);
    assert!((g[1][0] + 0.25).abs() < 1e-6);
    // A = -1: row 1 (ratio 1.5 > 1) keeps its gradient, row 2 (0.5 < 0.8) is clipped.
    let a = adv(&[-1.0, -1.0], 1);
    let out = policy_loss(&inputs(logp.as_tensor(), &old, &a, &mask, 2.0), &p).unwrap();
    assert!((scalar(&out.loss) - (1.5 + 0.8) / 2.0).abs() < 1e-6);
    let g = grad_of(&out.loss, &logp);
    assert!((g[0][0] - 0.75).abs() < 1e-6 && g[1][0] == 0.0);
}

#[test]
fn dual_clip_bounds_negative_advantages() {
    // ratio 5 with A = -1: PPO objective -5; dual clip c = 3 bounds it at -3 (no gradient).
    let logp = Var::from_tensor(&t2(&[&[5f32.ln()]])).unwrap();
    let old = t2(&[&[0.0]]);
    let mask = t2(&[&[1.0]]);
    let a = adv(&[-1.0], 1);
    let plain = policy_loss(
        &inputs(logp.as_tensor(), &old, &a, &mask, 1.0),
        &LossParams::default(),
    )
    .unwrap();
    assert!((scalar(&plain.loss) - 5.0).abs() < 1e-5);
    let p = LossParams {
        dual_clip: 3.0,
        ..Default::default()
    };
    let out = policy_loss(&inputs(logp.as_tensor(), &old, &a, &mask, 1.0), &p).unwrap();
    assert!((scalar(&out.loss) - 3.0).abs() < 1e-6);
    assert_eq!(grad_of(&out.loss, &logp)[0][0], 0.0);
    // Positive advantages are untouched by the dual clip.
    let a = adv(&[1.0], 1);
    let out = policy_loss(&inputs(logp.as_tensor(), &old, &a, &mask, 1.0), &p).unwrap();
    assert!((scalar(&out.loss) + 1.2).abs() < 1e-6);
}

#[test]
fn sequence_ratio_equals_token_ratio_for_one_token_completions() {
    let logp = t2(&[&[-0.3], &[-2.0]]);
    let old = t2(&[&[-0.5], &[-1.0]]);
    let mask = t2(&[&[1.0], &[1.0]]);
    let a = adv(&[0.7, -1.3], 1);
    let tok = policy_loss(&inputs(&logp, &old, &a, &mask, 2.0), &LossParams::default()).unwrap();
    let seq = LossParams {
        ratio: RatioLevel::Sequence,
        ..Default::default()
    };
    let seq = policy_loss(&inputs(&logp, &old, &a, &mask, 2.0), &seq).unwrap();
    assert!((scalar(&tok.loss) - scalar(&seq.loss)).abs() < 1e-7);
    // With two tokens the sequence ratio is the geometric mean: exp((0.2 + 0.4) / 2).
    let logp = t2(&[&[0.2, 0.4]]);
    let old = t2(&[&[0.0, 0.0]]);
    let mask = t2(&[&[1.0, 1.0]]);
    let a = adv(&[1.0], 2);
    let p = LossParams {
        ratio: RatioLevel::Sequence,
        epsilon_high: 10.0,
        ..Default::default()
    };
    let out = policy_loss(&inputs(&logp, &old, &a, &mask, 1.0), &p).unwrap();
    assert!((scalar(&out.loss) + 0.3f32.exp()).abs() < 1e-6);
}

#[test]
fn kl_estimators_and_aggregations_by_hand() {
    // logp = [-1, -2 | -1, pad], ref = [-1.5, -1 | -1, 0]; zero advantages isolate the KL term.
    let logp = t2(&[&[-1.0, -2.0], &[-1.0, 0.0]]);
    let reff = t2(&[&[-1.5, -1.0], &[-1.0, 0.0]]);
    let mask = t2(&[&[1.0, 1.0], &[1.0, 0.0]]);
    let a = adv(&[0.0, 0.0], 2);
    let (d1, d2) = (-0.5f32, 1.0f32);
    for (est, f) in [
        (KlEstimator::K1, (|d: f32| -d) as fn(f32) -> f32),
        (KlEstimator::K2, |d: f32| d * d / 2.0),
        (KlEstimator::K3, |d: f32| d.exp() - d - 1.0),
    ] {
        let (x, y) = (f(d1), f(d2));
        for (agg, norm, expect) in [
            (Aggregation::Grpo, 2.0, ((x + y) / 2.0) / 2.0),
            (Aggregation::Dapo, 3.0, (x + y) / 3.0),
            (Aggregation::DrGrpo, 2.0 * 4.0, (x + y) / 8.0),
            (Aggregation::Bnpo, 3.0, (x + y) / 3.0),
        ] {
            let mut inp = inputs(&logp, &logp, &a, &mask, norm);
            inp.ref_logp = Some(&reff);
            let p = LossParams {
                kl: Some(est),
                kl_coef: 1.0,
                aggregation: agg,
                ..Default::default()
            };
            let out = policy_loss(&inp, &p).unwrap();
            assert!((scalar(&out.loss) - expect).abs() < 1e-6, "{est:?} {agg:?}");
            let kl = out.kl.unwrap().to_vec2::<f32>().unwrap();
            assert!((kl[0][0] - x).abs() < 1e-6);
        }
    }
}

#[test]
fn all_tokens_masked_gives_a_zero_finite_loss() {
    let logp = Var::from_tensor(&t2(&[&[-1.0, -2.0]])).unwrap();
    let old = t2(&[&[-1.0, -1.0]]);
    let mask = t2(&[&[0.0, 0.0]]);
    let a = adv(&[1.0], 2);
    for agg in [Aggregation::Grpo, Aggregation::Dapo] {
        let p = LossParams {
            aggregation: agg,
            ..Default::default()
        };
        let out = policy_loss(&inputs(logp.as_tensor(), &old, &a, &mask, 0.0), &p).unwrap();
        assert_eq!(scalar(&out.loss), 0.0);
        assert!(grad_of(&out.loss, &logp)[0].iter().all(|g| *g == 0.0));
    }
}

#[test]
fn token_weights_entropy_and_lp_reg_terms() {
    let logp = Var::from_tensor(&t2(&[&[-1.0, -1.0]])).unwrap();
    let old = t2(&[&[-1.0, -1.0]]);
    let mask = t2(&[&[1.0, 1.0]]);
    let a = adv(&[1.0], 2);
    // Only the second token selected: its gradient stays, the first one's vanishes.
    let w = t2(&[&[0.0, 1.0]]);
    let mut inp = inputs(logp.as_tensor(), &old, &a, &mask, 1.0);
    inp.pg_weight = Some(&w);
    let g = grad_of(
        &policy_loss(&inp, &LossParams::default()).unwrap().loss,
        &logp,
    );
    assert_eq!(g[0][0], 0.0);
    assert!((g[0][1] + 0.5).abs() < 1e-6);
    // Entropy bonus lowers the loss by α·mean(H); Lp-Reg raises it by γ·mean(term).
    let h = t2(&[&[0.4, 0.8]]);
    let lp = t2(&[&[0.2, 0.0]]);
    let mut inp = inputs(logp.as_tensor(), &old, &a, &mask, 1.0);
    inp.entropy = Some(&h);
    inp.lp_reg = Some(&lp);
    let p = LossParams {
        entropy_coef: 0.5,
        lp_reg_coef: 2.0,
        ..Default::default()
    };
    let l = scalar(&policy_loss(&inp, &p).unwrap().loss);
    assert!((l - (-1.0 - 0.5 * 0.6 + 2.0 * 0.1)).abs() < 1e-6, "{l}");
}

#[test]
fn pass_at_k_by_hand() {
    assert_eq!(pass_at_k(4, 0, 1), Some(0.0));
    assert_eq!(pass_at_k(4, 4, 2), Some(1.0));
    assert!((pass_at_k(4, 1, 1).unwrap() - 0.25).abs() < 1e-12);
    // 1 - C(3,2)/C(4,2) = 1 - 3/6
    assert!((pass_at_k(4, 1, 2).unwrap() - 0.5).abs() < 1e-12);
    // 1 - C(6,3)/C(8,3) = 1 - 20/56
    assert!((pass_at_k(8, 2, 3).unwrap() - (1.0 - 20.0 / 56.0)).abs() < 1e-12);
    assert_eq!(pass_at_k(4, 3, 2), Some(1.0));
    assert_eq!(pass_at_k(4, 1, 5), None);
}

#[test]
fn rehearsal_divergences_by_hand() {
    // u = e^0.5 and e^-1 on two tokens, a third masked.
    let logp = t2(&[&[-0.5, -2.0, 0.0]]);
    let logp0 = t2(&[&[-1.0, -1.0, -5.0]]);
    let mask = t2(&[&[1.0, 1.0, 0.0]]);
    let fwd = scalar(&rehearsal_divergence(&logp, &logp0, &mask, false).unwrap());
    assert!((fwd - (-0.5 + 1.0) / 2.0).abs() < 1e-6, "{fwd}");
    let f = |u: f32| 0.5 * (u * u.ln() - (u + 1.0) * ((u + 1.0) / 2.0).ln());
    let js = scalar(&rehearsal_divergence(&logp, &logp0, &mask, true).unwrap());
    assert!(
        (js - (f(0.5f32.exp()) + f((-1.0f32).exp())) / 2.0).abs() < 1e-6,
        "{js}"
    );
    // Identical policies: zero divergence.
    assert!(scalar(&rehearsal_divergence(&logp0, &logp0, &mask, true).unwrap()).abs() < 1e-7);
}
