//! Data parallelism over a few OS threads: each worker runs candle single-threaded on its own
//! shard of rows. At the matrix sizes of a small policy this uses the cores far better than
//! splitting each tensor op (candle's pool spin-waits between ops).

use candle_core::backprop::GradStore;
use candle_core::Var;

use crate::error::{EngineError, Result};

/// Runs `f` on every item, one scoped thread per item (named `{name}-{i}`), and collects the
/// results in order. The first error (or a worker panic) is returned.
pub fn scoped_map<T: Send, R: Send>(
    items: &mut [T],
    name: &str,
    f: impl Fn(&mut T) -> Result<R> + Sync,
) -> Result<Vec<R>> {
    if items.len() == 1 {
        return items.iter_mut().map(&f).collect();
    }
    let f = &f;
    let results: Vec<Result<R>> = std::thread::scope(|s| {
        let handles: Vec<_> = items
            .iter_mut()
            .enumerate()
            .map(|(i, item)| {
                std::thread::Builder::new()
                    .name(format!("{name}-{i}"))
                    .spawn_scoped(s, move || f(item))
            })
            .collect();
        handles
            .into_iter()
            .map(|h| match h {
                Ok(h) => h.join().unwrap_or_else(|_| {
                    Err(EngineError::Internal(format!("a {name} worker panicked")))
                }),
                Err(e) => Err(EngineError::Internal(format!(
                    "cannot start a {name} worker: {e}"
                ))),
            })
            .collect()
    });
    results.into_iter().collect()
}

/// `store` with every gradient detached. candle leaves the gradients of leaves as results of ops
/// on the forward's tensors, so a kept store pins the whole forward graph (every activation)
/// until it is dropped; detaching frees the graph as soon as the loss's last tensor goes.
pub fn detached(mut store: GradStore) -> GradStore {
    let ids: Vec<_> = store.get_ids().copied().collect();
    for id in ids {
        if let Some(g) = store.get_id(id).map(candle_core::Tensor::detach) {
            store.insert_id(id, g);
        }
    }
    store
}

/// Sums per-worker gradients of `vars` into one store.
pub fn sum_grads(vars: &[Var], stores: Vec<GradStore>) -> Result<Option<GradStore>> {
    let mut iter = stores.into_iter();
    let Some(mut acc) = iter.next() else {
        return Ok(None);
    };
    for store in iter {
        for var in vars {
            let t = var.as_tensor();
            if let Some(g) = store.get(t) {
                let sum = match acc.get(t) {
                    Some(prev) => (prev + g)?,
                    None => g.clone(),
                };
                acc.insert(t, sum);
            }
        }
    }
    Ok(Some(acc))
}

/// Splits `0..n` into at most `workers` contiguous, near-equal ranges.
pub fn shard_ranges(n: usize, workers: usize) -> Vec<std::ops::Range<usize>> {
    let chunk = n.div_ceil(workers.max(1)).max(1);
    (0..n)
        .step_by(chunk)
        .map(|s| s..(s + chunk).min(n))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shards_cover_the_range() {
        assert_eq!(shard_ranges(5, 2), vec![0..3, 3..5]);
        assert_eq!(shard_ranges(1, 4), vec![0..1]);
        assert!(shard_ranges(0, 2).is_empty());
    }

    #[test]
    fn results_keep_their_order_and_errors_surface() {
        let mut v = vec![1, 2, 3];
        assert_eq!(
            scoped_map(&mut v, "t", |x| Ok(*x * 10)).unwrap(),
            vec![10, 20, 30]
        );
        let r = scoped_map(&mut v, "t", |x| {
            if *x == 2 {
                Err(EngineError::Internal("boom".into()))
            } else {
                Ok(())
            }
        });
        assert!(r.unwrap_err().to_string().contains("boom"));
    }
}
