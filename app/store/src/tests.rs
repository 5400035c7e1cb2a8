use std::collections::BTreeMap;
use std::path::Path;

use rlvr_core::events::{
    EngineEvent, EvalMetrics, RunSummary, SampleGroup, SampleRecord, StepMetrics, TokenStats,
};
use rlvr_core::output::RunDirWriter;

use super::*;

fn new_run(store: &Store, name: &str, out: &Path) -> i64 {
    store
        .create_run(&NewRun {
            name: name.into(),
            config: format!("name = {name:?}\n"),
            seed: 3,
            model_path: "/m".into(),
            steps_planned: 10,
            out_dir: out.to_string_lossy().into_owned(),
            tags: vec!["t1".into()],
            notes: String::new(),
        })
        .unwrap()
}

fn step(n: usize) -> StepMetrics {
    StepMetrics {
        step: n,
        reward_mean: n as f64 / 10.0,
        kl_by_kind: BTreeMap::from([("k3".to_string(), 0.5)]),
        ..StepMetrics::default()
    }
}

fn group(n: usize) -> SampleGroup {
    SampleGroup {
        prompt: format!("p{n}"),
        answer: "a".into(),
        samples: (0..2)
            .map(|i| SampleRecord {
                completion: format!("c{i}"),
                reward: i as f32,
                components: vec![("exact".into(), i as f32, "why".into())],
                passed: i == 1,
                advantage: if i == 1 { 1.0 } else { -1.0 },
                length: 2,
                truncated: false,
                tokens: TokenStats {
                    logprob: vec![-0.5, -1.0],
                    entropy: vec![0.25, 0.5],
                    advantage: vec![1.0, 1.0],
                },
            })
            .collect(),
    }
}

/// Records `steps` steps (3 groups each) of a run through the writer thread.
fn record(
    store: Store,
    run: i64,
    out: &Path,
    steps: std::ops::RangeInclusive<usize>,
    keep: Option<usize>,
) {
    let w = if *steps.start() == 1 {
        RunDirWriter::create(out, "name = \"test\"\n").unwrap()
    } else {
        RunDirWriter::reopen(out, steps.start() - 1).unwrap()
    };
    let rec = Recorder::spawn(store, run, keep, w).unwrap();
    for n in steps.clone() {
        assert!(rec.send(EngineEvent::Samples {
            step: n,
            groups: (0..3).map(group).collect(),
        }));
        assert!(rec.send(EngineEvent::Step(step(n))));
        if n % 2 == 0 {
            assert!(rec.send(EngineEvent::Eval(EvalMetrics {
                step: n,
                pass_at_k: BTreeMap::from([(1, 0.25), (4, 0.5)]),
                ..EvalMetrics::default()
            })));
        }
    }
    assert!(rec.send(EngineEvent::Done(RunSummary {
        steps: *steps.end(),
        elapsed_s: 1.0,
        initial: None,
        last: None,
        mean_step_s: 0.1,
        policy_dir: None,
        stopped: false,
    })));
    let sum = rec.finish().unwrap();
    assert_eq!(sum.steps, steps.count());
}

#[test]
fn events_round_trip_through_the_writer() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("h.sqlite");
    let store = Store::open(&db).unwrap();
    assert_eq!(store.schema_version().unwrap(), schema::VERSION);
    let run = new_run(&store, "a", &dir.path().join("out"));
    record(store, run, &dir.path().join("out"), 1..=4, Some(2));

    let store = Store::open(&db).unwrap();
    let r = store.run(run).unwrap();
    assert_eq!(r.status, RunStatus::Finished);
    assert_eq!(r.last_step, 4);
    assert_eq!(r.tags, vec!["t1".to_string()]);
    let s = store.series(run, "reward_mean").unwrap();
    assert_eq!(s, vec![(1, 0.1), (2, 0.2), (3, 0.3), (4, 0.4)]);
    assert_eq!(store.series(run, "kl_by_kind/k3").unwrap().len(), 4);
    assert_eq!(
        store.series(run, "eval/pass_at_k/4").unwrap(),
        vec![(2, 0.5), (4, 0.5)]
    );
    // keep_groups = 2 of the 3 groups per step.
    let g = store.samples(run, Some(3), None).unwrap();
    assert_eq!(g.len(), 2);
    assert_eq!(g[1].prompt, "p1");
    assert_eq!(g[0].samples[1].components[0].2, "why");
    assert_eq!(g[0].samples[1].tokens.entropy, vec![0.25, 0.5]);
    let passing = store.samples(run, Some(3), Some(1.0)).unwrap();
    assert!(passing
        .iter()
        .all(|g| g.samples.len() == 1 && g.samples[0].passed));
    // metrics.jsonl was written by the same thread.
    let lines = std::fs::read_to_string(dir.path().join("out/metrics.jsonl")).unwrap();
    assert_eq!(
        lines
            .lines()
            .filter(|l| l.contains("\"type\":\"step\""))
            .count(),
        4
    );
}

#[test]
fn rollback_removes_later_steps_before_a_resume() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("h.sqlite");
    let out = dir.path().join("out");
    let store = Store::open(&db).unwrap();
    let run = new_run(&store, "a", &out);
    record(store, run, &out, 1..=4, None);
    let store = Store::open(&db).unwrap();
    store.rollback_for_resume(run, Some(2), 6).unwrap();
    assert_eq!(store.series(run, "reward_mean").unwrap().len(), 2);
    assert_eq!(store.samples(run, Some(3), None).unwrap().len(), 0);
    assert_eq!(store.run(run).unwrap().status, RunStatus::Running);
    record(store, run, &out, 3..=6, None);
    let store = Store::open(&db).unwrap();
    let steps: Vec<u64> = store
        .series(run, "reward_mean")
        .unwrap()
        .iter()
        .map(|x| x.0)
        .collect();
    assert_eq!(steps, vec![1, 2, 3, 4, 5, 6]);
    let lines = std::fs::read_to_string(out.join("metrics.jsonl")).unwrap();
    assert_eq!(
        lines
            .lines()
            .filter(|l| l.contains("\"type\":\"step\""))
            .count(),
        6
    );
}

#[test]
fn a_dead_running_run_reads_as_interrupted_and_filters_work() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("h.sqlite")).unwrap();
    let a = new_run(&store, "alpha", dir.path());
    let b = new_run(&store, "beta", dir.path());
    // This process is alive: running. A pid that cannot exist: interrupted.
    assert_eq!(store.run(a).unwrap().status, RunStatus::Running);
    store
        .conn
        .execute("UPDATE runs SET pid = 2147483647 WHERE id = ?1", [b])
        .unwrap();
    assert_eq!(store.run(b).unwrap().status, RunStatus::Interrupted);
    let f = |status, text: Option<&str>| {
        store
            .list_runs(&RunFilter {
                status,
                text: text.map(String::from),
                ..RunFilter::default()
            })
            .unwrap()
            .iter()
            .map(|r| r.id)
            .collect::<Vec<_>>()
    };
    assert_eq!(f(Some(RunStatus::Interrupted), None), vec![b]);
    assert_eq!(f(None, Some("ALPHA")), vec![a]);
    assert_eq!(f(None, None), vec![b, a]);
    store.set_tags(a, &["x".into()], false).unwrap();
    store.set_tags(a, &["t1".into()], true).unwrap();
    assert_eq!(store.run(a).unwrap().tags, vec!["x".to_string()]);
    assert_eq!(store.resolve("beta").unwrap(), b);
    new_run(&store, "beta", dir.path());
    let e = store.resolve("beta").unwrap_err().to_string();
    assert!(e.contains("2 runs are named"), "{e}");
}

#[test]
fn newer_foreign_and_damaged_files_are_refused_by_name() {
    let dir = tempfile::tempdir().unwrap();
    let newer = dir.path().join("newer.sqlite");
    drop(Store::open(&newer).unwrap());
    {
        let c = rusqlite::Connection::open(&newer).unwrap();
        c.execute_batch("PRAGMA user_version = 99").unwrap();
    }
    let e = Store::open(&newer).unwrap_err().to_string();
    assert!(
        e.contains("newer.sqlite") && e.contains("schema version 99"),
        "{e}"
    );

    let foreign = dir.path().join("foreign.sqlite");
    {
        let c = rusqlite::Connection::open(&foreign).unwrap();
        c.execute_batch("CREATE TABLE t (x); INSERT INTO t VALUES (1);")
            .unwrap();
    }
    let e = Store::open(&foreign).unwrap_err().to_string();
    assert!(
        e.contains("foreign.sqlite") && e.contains("another application"),
        "{e}"
    );

    let empty = dir.path().join("empty.sqlite");
    std::fs::write(&empty, b"").unwrap();
    let e = Store::open(&empty).unwrap_err().to_string();
    assert!(e.contains("empty"), "{e}");

    let junk = dir.path().join("junk.sqlite");
    std::fs::write(&junk, vec![1u8; 4096]).unwrap();
    let e = Store::open(&junk).unwrap_err().to_string();
    assert!(
        e.contains("junk.sqlite") && e.contains("not an RLVR Studio database"),
        "{e}"
    );
}

#[cfg(unix)]
#[test]
fn a_read_only_folder_is_a_clear_error() {
    use std::os::unix::fs::PermissionsExt as _;
    let dir = tempfile::tempdir().unwrap();
    let ro = dir.path().join("ro");
    std::fs::create_dir(&ro).unwrap();
    std::fs::set_permissions(&ro, std::fs::Permissions::from_mode(0o555)).unwrap();
    // Root ignores permission bits; then a folder of /proc stands in for a read-only one.
    let probe = ro.join("probe");
    let target = if std::fs::write(&probe, b"").is_ok() {
        Path::new("/proc/rlvr-store-test/h.sqlite").to_path_buf()
    } else {
        ro.join("h.sqlite")
    };
    let e = Store::open(&target).unwrap_err().to_string();
    assert!(
        e.contains(&*target.parent().unwrap().to_string_lossy()),
        "{e}"
    );
    std::fs::set_permissions(&ro, std::fs::Permissions::from_mode(0o755)).unwrap();
}

#[test]
fn flattening_names_nested_metrics() {
    let mut out = Vec::new();
    write::flatten(
        "",
        &serde_json::json!({"a": 1.5, "b": {"c": 2, "d": null}, "e": true, "s": "x"}),
        &mut out,
    );
    assert_eq!(
        out,
        vec![
            ("a".to_string(), 1.5),
            ("b/c".to_string(), 2.0),
            ("e".to_string(), 1.0)
        ]
    );
}
