//! `rlvr-studio bench-store`: what the run history costs. Prints the store writer's work per
//! training step, the step-time overhead of recording a real run (alternating runs with and
//! without the store), and read latencies: listing 1,000 runs, loading a 10,000-step series.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::Context as _;
use clap::Args;
use rlvr_core::events::{EngineEvent, SampleGroup, SampleRecord, StepMetrics, TokenStats};
use rlvr_core::output::RunDirWriter;
use rlvr_core::RunConfig;
use rlvr_store::{NewRun, Recorder, RunFilter, Store};

/// Arguments of `bench-store`.
#[derive(Args, Debug)]
pub struct BenchStoreArgs {
    /// Run config for the overhead measurement (default: app/presets/default.toml).
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Training steps per overhead run (0 skips the overhead measurement).
    #[arg(long, default_value_t = 100)]
    pub steps: usize,
    /// Pairs of runs (with / without the store) for the overhead measurement.
    #[arg(long, default_value_t = 2)]
    pub pairs: usize,
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// Runs `cfg` on the engine thread; with a store, every event goes through the writer thread
/// exactly as `train` does. Returns (mean step seconds, writer summary).
fn timed_run(
    cfg: &RunConfig,
    store: Option<(Store, i64)>,
) -> anyhow::Result<(f64, Option<rlvr_store::RecorderSummary>)> {
    let dir = cfg.output_dir();
    let recorder = match store {
        Some((s, id)) => Some(Recorder::spawn(
            s,
            id,
            cfg.output.keep_groups,
            RunDirWriter::create(&dir, &cfg.to_toml())?,
        )?),
        None => None,
    };
    let h = rlvr_engine::trainer::spawn(cfg.clone())?;
    for ev in h.events.iter() {
        if let Some(r) = &recorder {
            r.send(ev);
        }
    }
    let summary = h
        .thread
        .join()
        .map_err(|_| anyhow::anyhow!("engine thread panicked"))??;
    let rec = match recorder {
        Some(r) => Some(r.finish()?),
        None => None,
    };
    Ok((summary.mean_step_s, rec))
}

fn fake_step(n: usize) -> (StepMetrics, Vec<SampleGroup>) {
    let m = StepMetrics {
        step: n,
        reward_mean: (n as f64).sin(),
        entropy: 1.0 / (1.0 + n as f64),
        ..StepMetrics::default()
    };
    (m, Vec::new())
}

/// `rlvr-studio bench-store`.
pub fn bench_store(args: BenchStoreArgs) -> anyhow::Result<()> {
    let tmp = tempfile::tempdir().context("temporary folder")?;
    println!("store benchmark (database in {})", tmp.path().display());

    if args.steps > 0 {
        let path = args.config.clone().unwrap_or_else(|| {
            PathBuf::from(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/../presets/default.toml"
            ))
        });
        let mut cfg = RunConfig::from_file(&path)?;
        cfg.steps = args.steps;
        cfg.eval.every = 0;
        let db = tmp.path().join("overhead.sqlite");
        let (mut with, mut without) = (Vec::new(), Vec::new());
        let mut last = None;
        let mut count = 0;
        for pair in 0..args.pairs {
            for recorded in [pair % 2 == 0, pair % 2 != 0] {
                cfg.output.dir = tmp.path().join(format!("run-{pair}-{recorded}"));
                let store = if recorded {
                    let s = Store::open(&db)?;
                    let id = s.create_run(&NewRun {
                        name: "bench".into(),
                        config: cfg.to_toml(),
                        out_dir: cfg.output.dir.to_string_lossy().into_owned(),
                        steps_planned: cfg.steps,
                        ..NewRun::default()
                    })?;
                    Some((s, id))
                } else {
                    None
                };
                let (step_s, rec) = timed_run(&cfg, store)?;
                if recorded {
                    with.push(step_s);
                    last = rec;
                } else {
                    without.push(step_s);
                }
                count += 1;
                println!(
                    "  run {count}: {} steps, {:.1} ms/step {}",
                    cfg.steps,
                    1e3 * step_s,
                    if recorded {
                        "with the store"
                    } else {
                        "without"
                    }
                );
            }
        }
        let (w, wo) = (median(with), median(without));
        if let Some(r) = last {
            let per = |s: f64| 1e3 * s / r.steps.max(1) as f64;
            println!(
                "writer thread per step: {:.2} ms database (max {:.1} ms), {:.2} ms checkpoint, \
                 {:.3} ms metrics.jsonl",
                per(r.db_s),
                1e3 * r.max_step_db_s,
                per(r.checkpoint_s),
                per(r.jsonl_s)
            );
            println!(
                "  = {:.1}% of the step time on a thread beside the trainer",
                100.0 * (r.db_s + r.checkpoint_s + r.jsonl_s) / r.steps.max(1) as f64 / w
            );
        }
        println!(
            "step time: {:.1} ms with the store, {:.1} ms without (median of {} each): \
             overhead {:+.1}%",
            1e3 * w,
            1e3 * wo,
            args.pairs,
            100.0 * (w / wo - 1.0)
        );
    }

    // Reads: 1,000 runs.
    let db = tmp.path().join("reads.sqlite");
    let store = Store::open(&db)?;
    let config = RunConfig::default().to_toml();
    let t0 = Instant::now();
    for i in 0..1000 {
        store.create_run(&NewRun {
            name: format!("run-{i}"),
            config: config.clone(),
            out_dir: format!("/runs/{i}"),
            steps_planned: 600,
            tags: vec![format!("sweep-{}", i % 10)],
            ..NewRun::default()
        })?;
    }
    println!(
        "created 1,000 runs in {:.0} ms",
        1e3 * t0.elapsed().as_secs_f64()
    );
    let time = |f: &dyn Fn() -> anyhow::Result<usize>| -> anyhow::Result<(f64, usize)> {
        let mut ts = Vec::new();
        let mut n = 0;
        for _ in 0..7 {
            let t = Instant::now();
            n = f()?;
            ts.push(t.elapsed().as_secs_f64());
        }
        Ok((median(ts), n))
    };
    let (t, n) = time(&|| Ok(store.list_runs(&RunFilter::default())?.len()))?;
    println!("list {n} runs (with configs and tags): {:.2} ms", 1e3 * t);
    let (t, n) = time(&|| {
        Ok(store
            .list_runs(&RunFilter {
                tag: Some("sweep-3".into()),
                text: Some("arithmetic".into()),
                ..RunFilter::default()
            })?
            .len())
    })?;
    println!(
        "list filtered by tag and text ({n} runs): {:.2} ms",
        1e3 * t
    );

    // Reads: a 10,000-step series, written through the real writer.
    let id = store.create_run(&NewRun {
        name: "long".into(),
        config: config.clone(),
        out_dir: tmp.path().join("long").to_string_lossy().into_owned(),
        steps_planned: 10_000,
        ..NewRun::default()
    })?;
    let long_dir = tmp.path().join("long");
    let writer = RunDirWriter::create(&long_dir, &RunConfig::default().to_toml())?;
    let rec = Recorder::spawn(Store::open(&db)?, id, None, writer)?;
    let t0 = Instant::now();
    for n in 1..=10_000 {
        let (m, _) = fake_step(n);
        if n == 1 {
            // One realistic step of samples, so the tables are not empty.
            rec.send(EngineEvent::Samples {
                step: 1,
                groups: vec![SampleGroup {
                    prompt: "1 2 3>6:".into(),
                    answer: "1+2+3".into(),
                    samples: vec![SampleRecord {
                        completion: "1+2+3".into(),
                        reward: 1.0,
                        components: vec![("countdown".into(), 1.0, "ok".into())],
                        passed: true,
                        advantage: 0.5,
                        length: 6,
                        truncated: false,
                        tokens: TokenStats::default(),
                    }],
                }],
            });
        }
        rec.send(EngineEvent::Step(m));
    }
    let r = rec.finish()?;
    println!(
        "wrote 10,000 steps ({} metrics each) in {:.2} s ({:.3} ms per step transaction)",
        store.metric_names(id)?.len(),
        t0.elapsed().as_secs_f64(),
        1e3 * r.db_s / r.steps as f64
    );
    let (t, n) = time(&|| Ok(store.series(id, "reward_mean")?.len()))?;
    println!("load one {n}-step series: {:.2} ms", 1e3 * t);
    let (t, n) = time(&|| Ok(store.metrics_by_step(id)?.len()))?;
    println!("load every metric of {n} steps: {:.1} ms", 1e3 * t);
    Ok(())
}
