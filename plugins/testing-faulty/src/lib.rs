//! Test-only plugin that misbehaves on demand, to prove that a faulty plugin never takes a run
//! (or the app) down. Each component has a `mode`:
//! `ok`, `error` (returns an error), `panic`, `nan` (returns NaN), `sleep` (sleeps `sleep_ms`
//! before answering), `segfault` (raises SIGSEGV: only survivable in isolated mode) and
//! `print` (writes to stdout, which must not disturb the isolated protocol). `every = N` makes
//! only every N-th call misbehave. When it behaves, the verifier is an exact-match verifier.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use rlvr_plugin_api::{
    export_plugin, AlgoBatch, AlgoOutput, Algorithm, Params, Plugin, Sample, Sampler, Spec,
    Verdict, Verifier,
};

/// When and how to misbehave.
pub struct Fault {
    mode: String,
    every: usize,
    sleep: Duration,
    calls: AtomicUsize,
}

impl Fault {
    fn new(p: &Params) -> Result<Self, String> {
        let mode = p.text("mode").to_string();
        const MODES: [&str; 7] = ["ok", "error", "panic", "nan", "sleep", "segfault", "print"];
        if !MODES.contains(&mode.as_str()) {
            return Err(format!(
                "mode {mode:?}: expected one of {}",
                MODES.join(", ")
            ));
        }
        Ok(Self {
            mode,
            every: p.u("every").max(1),
            sleep: Duration::from_millis(p.u("sleep_ms") as u64),
            calls: AtomicUsize::new(0),
        })
    }

    /// Misbehaves if this call is due; returns `Some(NaN-mode)` when the caller must return NaN.
    fn strike(&self) -> Result<bool, String> {
        let n = self.calls.fetch_add(1, Ordering::Relaxed) + 1;
        if !n.is_multiple_of(self.every) {
            return Ok(false);
        }
        match self.mode.as_str() {
            "error" => Err(format!("deliberate error on call {n}")),
            "panic" => panic!("deliberate panic on call {n}"),
            "sleep" => {
                std::thread::sleep(self.sleep);
                Ok(false)
            }
            "segfault" => {
                // A real invalid write: `raise(SIGSEGV)` would be swallowed by the Rust
                // runtime's stack-overflow handler.
                // SAFETY: none — crashing the process with SIGSEGV is this mode's purpose.
                unsafe {
                    std::ptr::null_mut::<u8>().write_volatile(1);
                }
                Ok(false)
            }
            "print" => {
                println!("faulty plugin writes to stdout on call {n}");
                Ok(false)
            }
            "nan" => Ok(true),
            _ => Ok(false),
        }
    }
}

/// Exact match, with faults.
pub struct FaultyVerifier(Fault);

impl Verifier for FaultyVerifier {
    fn verify(&self, s: &Sample<'_>) -> Result<Verdict, String> {
        if self.0.strike()? {
            return Ok(Verdict::partial(f64::NAN, "NaN on purpose"));
        }
        Ok(if s.completion.trim() == s.answer.trim() {
            Verdict::pass("exact match")
        } else {
            Verdict::fail(format!("expected {}", s.answer))
        })
    }

    fn verify_batch(&self, samples: &[Sample<'_>]) -> Vec<Result<Verdict, String>> {
        // One fault decision per batch call, so `every` counts calls, not samples.
        match self.0.strike() {
            Err(e) => samples.iter().map(|_| Err(e.clone())).collect(),
            Ok(nan) => samples
                .iter()
                .map(|s| {
                    if nan {
                        Ok(Verdict::partial(f64::NAN, "NaN on purpose"))
                    } else if s.completion.trim() == s.answer.trim() {
                        Ok(Verdict::pass("exact match"))
                    } else {
                        Ok(Verdict::fail(format!("expected {}", s.answer)))
                    }
                })
                .collect(),
        }
    }
}

/// Leaves logits alone, with faults.
pub struct FaultySampler(Fault);

impl Sampler for FaultySampler {
    fn transform(
        &self,
        logits: &mut [f32],
        _position: usize,
        _generated: &[u32],
    ) -> Result<(), String> {
        if self.0.strike()? {
            logits.fill(f32::NAN);
        }
        Ok(())
    }
}

/// Mean-baseline advantages, with faults.
pub struct FaultyAlgorithm(Fault);

impl Algorithm for FaultyAlgorithm {
    fn compute(&self, batch: &AlgoBatch<'_>) -> Result<AlgoOutput, String> {
        let nan = self.0.strike()?;
        let g = batch.group_size().max(1);
        let per_row: Vec<f32> = batch
            .rewards()
            .chunks(g)
            .flat_map(|grp| {
                let mean = grp.iter().sum::<f64>() / grp.len() as f64;
                grp.iter().map(move |r| (r - mean) as f32)
            })
            .collect();
        let mut out = AlgoOutput::broadcast(batch, &per_row);
        if nan {
            out.advantages.fill(f32::NAN);
        }
        Ok(out)
    }
}

fn spec(name: &str, summary: &str) -> Spec {
    Spec::new(name, summary)
        .text(
            "mode",
            "ok",
            "ok, error, panic, nan, sleep, segfault or print",
        )
        .int("every", 1, 1, 1_000_000, "misbehave on every N-th call")
        .int("sleep_ms", 1000, 0, 3_600_000, "how long `sleep` sleeps")
}

fn plugin() -> Plugin {
    Plugin::new(
        "faulty",
        env!("CARGO_PKG_VERSION"),
        "Test-only: misbehaves on demand",
    )
    .verifier(
        spec("faulty_verifier", "exact match that can fail on purpose"),
        |p| Ok(FaultyVerifier(Fault::new(p)?)),
    )
    .sampler(
        spec(
            "faulty_sampler",
            "identity sampler that can fail on purpose",
        ),
        |p| Ok(FaultySampler(Fault::new(p)?)),
    )
    .algorithm(
        spec(
            "faulty_algorithm",
            "mean-baseline advantages that can fail on purpose",
        ),
        |p| Ok(FaultyAlgorithm(Fault::new(p)?)),
    )
}

export_plugin!(plugin);
