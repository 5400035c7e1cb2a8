//! Fused kernels against composed candle ops: values and gradients.

use super::*;
use candle_core::{Device, Var};

fn randn(shape: &[usize], seed: u64) -> Tensor {
    // Deterministic pseudo-random values without depending on candle's RNG.
    let n: usize = shape.iter().product();
    let mut state = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    let data: Vec<f32> = (0..n)
        .map(|_| {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((state >> 33) as f32 / (1u64 << 31) as f32) * 2.0 - 1.0
        })
        .collect();
    Tensor::from_vec(data, shape, &Device::Cpu).unwrap()
}

/// Squared L2 norm of a tensor (test helper, shared with the model tests).
pub(crate) fn sq_norm(t: &Tensor) -> f32 {
    t.sqr()
        .unwrap()
        .sum_all()
        .unwrap()
        .to_scalar::<f32>()
        .unwrap()
}

fn max_abs_diff(a: &Tensor, b: &Tensor) -> f32 {
    (a - b)
        .unwrap()
        .abs()
        .unwrap()
        .flatten_all()
        .unwrap()
        .max(0)
        .unwrap()
        .to_scalar::<f32>()
        .unwrap()
}

/// Checks forward values and the gradients of all `inputs` for a fused and a composed function.
fn check(
    inputs: &[Tensor],
    fused: impl Fn(&[Tensor]) -> Result<Tensor>,
    composed: impl Fn(&[Tensor]) -> Result<Tensor>,
) {
    let vars: Vec<Var> = inputs
        .iter()
        .map(|t| Var::from_tensor(t).unwrap())
        .collect();
    let ts: Vec<Tensor> = vars.iter().map(|v| v.as_tensor().clone()).collect();
    let yf = fused(&ts).unwrap();
    let yc = composed(&ts).unwrap();
    assert_eq!(yf.dims(), yc.dims());
    assert!(max_abs_diff(&yf, &yc) < 1e-5, "forward differs");
    // A non-uniform upstream gradient so every term of the backward formula matters.
    let w = randn(yf.dims(), 99);
    let gf = (&yf * &w).unwrap().sum_all().unwrap().backward().unwrap();
    let gc = (&yc * &w).unwrap().sum_all().unwrap().backward().unwrap();
    for v in &ts {
        let a = gf.get(v).expect("fused grad missing");
        let b = gc.get(v).expect("composed grad missing");
        let diff = max_abs_diff(a, b);
        assert!(diff < 1e-4, "gradient differs by {diff}");
        let norm = crate::ops::tests::sq_norm(a);
        assert!(norm > 0.0, "gradient is zero");
    }
}

#[test]
fn rms_norm_matches_composed() {
    let x = randn(&[3, 5, 8], 1);
    let w = (randn(&[8], 2) + 1.0).unwrap();
    check(
        &[x, w],
        |t| rms_norm(&t[0], &t[1], 1e-6),
        |t| {
            let ms = t[0].sqr()?.mean_keepdim(D::Minus1)?;
            t[0].broadcast_div(&(ms + 1e-6)?.sqrt()?)?
                .broadcast_mul(&t[1])
        },
    );
}

#[test]
fn swiglu_matches_composed() {
    let g = (randn(&[4, 6], 3) * 3.0).unwrap();
    let u = randn(&[4, 6], 4);
    check(
        &[g, u],
        |t| swiglu(&t[0], &t[1]),
        |t| candle_nn::ops::silu(&t[0])?.mul(&t[1]),
    );
}

#[test]
fn softmax_matches_composed() {
    let x = (randn(&[2, 3, 7], 5) * 4.0).unwrap();
    check(
        &[x],
        |t| softmax_last_dim(&t[0]),
        |t| candle_nn::ops::softmax(&t[0], D::Minus1),
    );
}

#[test]
fn softmax_handles_masked_entries() {
    let x = Tensor::new(&[[0.0f32, f32::NEG_INFINITY, 1.0]], &Device::Cpu).unwrap();
    let y = softmax_last_dim(&x).unwrap().to_vec2::<f32>().unwrap();
    assert_eq!(y[0][1], 0.0);
    assert!((y[0][0] + y[0][2] - 1.0).abs() < 1e-6);
}

#[test]
fn rope_matches_composed_and_is_a_rotation() {
    let x = randn(&[2, 3, 2, 4], 6);
    let angles = randn(&[2, 3, 2], 7);
    let cos = angles.cos().unwrap();
    let sin = angles.sin().unwrap();
    let (c2, s2) = (cos.clone(), sin.clone());
    check(
        std::slice::from_ref(&x),
        move |t| rope(&t[0], &cos, &sin),
        move |t| {
            let (n, tt, _h, d) = t[0].dims4()?;
            let half = d / 2;
            let cos = c2.reshape((n, tt, 1, half))?;
            let sin = s2.reshape((n, tt, 1, half))?;
            let x1 = t[0].narrow(D::Minus1, 0, half)?;
            let x2 = t[0].narrow(D::Minus1, half, half)?;
            let y1 = (x1.broadcast_mul(&cos)? - x2.broadcast_mul(&sin)?)?;
            let y2 = (x2.broadcast_mul(&cos)? + x1.broadcast_mul(&sin)?)?;
            Tensor::cat(&[y1, y2], D::Minus1)
        },
    );
}

#[test]
fn token_logprob_matches_log_softmax_gather() {
    let logits = (randn(&[5, 7], 8) * 3.0).unwrap();
    let targets = Tensor::new(&[0u32, 6, 3, 3, 1], &Device::Cpu).unwrap();
    let t2 = targets.clone();
    check(
        &[logits],
        move |t| token_logprob(&t[0], &targets),
        move |t| {
            candle_nn::ops::log_softmax(&t[0], D::Minus1)?
                .gather(&t2.unsqueeze(1)?, 1)?
                .squeeze(1)
        },
    );
}

#[test]
fn token_logprob_rejects_out_of_vocab_target() {
    let logits = randn(&[2, 3], 9);
    let targets = Tensor::new(&[0u32, 3], &Device::Cpu).unwrap();
    let err = token_logprob(&logits, &targets).unwrap_err().to_string();
    assert!(err.contains("outside the vocabulary"), "{err}");
}

#[test]
fn entropy_of_uniform_and_peaked_rows() {
    let e = row_entropy(&[0.0, 0.0, 0.0, 0.0, 100.0, 0.0, 0.0, 0.0], 4);
    assert!((e[0] - 4f32.ln()).abs() < 1e-5);
    assert!(e[1] < 1e-3);
}
