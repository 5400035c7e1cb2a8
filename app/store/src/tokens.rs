//! Per-token statistics as a compact blob: a little-endian `u32` token count `n`, then `n`
//! log-probs, `n` entropies and `n` advantages as IEEE half floats (2 bytes each).

use rlvr_core::events::TokenStats;

/// Encodes the three series (they must have equal lengths; shorter ones are padded with 0).
pub fn encode(t: &TokenStats) -> Vec<u8> {
    let n = t.logprob.len().max(t.entropy.len()).max(t.advantage.len());
    let mut out = Vec::with_capacity(4 + 6 * n);
    out.extend_from_slice(&(n as u32).to_le_bytes());
    for series in [&t.logprob, &t.entropy, &t.advantage] {
        for i in 0..n {
            let v = series.get(i).copied().unwrap_or(0.0);
            out.extend_from_slice(&half::f16::from_f32(v).to_le_bytes());
        }
    }
    out
}

/// Decodes a blob made by [`encode`]; `None` when its size does not match its header.
pub fn decode(b: &[u8]) -> Option<TokenStats> {
    let n = u32::from_le_bytes(b.get(..4)?.try_into().ok()?) as usize;
    if b.len() != 4 + 6 * n {
        return None;
    }
    let series = |k: usize| -> Vec<f32> {
        b[4 + 2 * n * k..4 + 2 * n * (k + 1)]
            .chunks_exact(2)
            .map(|c| half::f16::from_le_bytes([c[0], c[1]]).to_f32())
            .collect()
    };
    Some(TokenStats {
        logprob: series(0),
        entropy: series(1),
        advantage: series(2),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_within_half_precision() {
        let t = TokenStats {
            logprob: vec![-0.01, -2.5, -11.0],
            entropy: vec![0.3, 1.2, 0.0],
            advantage: vec![0.7, 0.7, -1.25],
        };
        let b = encode(&t);
        assert_eq!(b.len(), 4 + 6 * 3);
        let d = decode(&b).unwrap();
        for (a, b) in [
            (&t.logprob, &d.logprob),
            (&t.entropy, &d.entropy),
            (&t.advantage, &d.advantage),
        ] {
            for (x, y) in a.iter().zip(b) {
                assert!((x - y).abs() <= x.abs() * 1e-3 + 1e-4, "{x} vs {y}");
            }
        }
        assert!(decode(&b[..b.len() - 1]).is_none());
        assert!(decode(&[1, 0]).is_none());
    }
}
