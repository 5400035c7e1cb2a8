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
    let f = std::fs::File::create(&empty).unwrap();
    // Older than the grace period for a file another process is creating.
    f.set_modified(std::time::SystemTime::now() - std::time::Duration::from_secs(600))
        .unwrap();
    drop(f);
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

/// Several processes (here threads, each with its own connection) opening a new file at the
/// same moment: one creates the schema, the others wait for it; none fails.
#[test]
fn concurrent_opens_of_a_new_file_all_succeed() {
    let dir = tempfile::tempdir().unwrap();
    let mut failures = Vec::new();
    for round in 0..15 {
        let db = dir.path().join(format!("new-{round}.sqlite"));
        let barrier = std::sync::Arc::new(std::sync::Barrier::new(8));
        let handles: Vec<_> = (0..8)
            .map(|_| {
                let (db, barrier) = (db.clone(), barrier.clone());
                std::thread::spawn(move || {
                    barrier.wait();
                    Store::open(&db).and_then(|s| s.list_runs(&RunFilter::default()).map(drop))
                })
            })
            .collect();
        for h in handles {
            if let Err(e) = h.join().unwrap() {
                failures.push(e.to_string());
            }
        }
        let s = Store::open(&db).unwrap();
        assert_eq!(s.schema_version().unwrap(), schema::VERSION);
        assert!(s.schema_problems().unwrap().is_empty());
    }
    assert!(
        failures.is_empty(),
        "{} failed: {failures:?}",
        failures.len()
    );
}

#[test]
fn no_message_advises_moving_a_database_away() {
    let dir = tempfile::tempdir().unwrap();
    // An empty file that has not changed for a while is not a history being created.
    let empty = dir.path().join("old-empty.sqlite");
    let f = std::fs::File::create(&empty).unwrap();
    f.set_modified(std::time::SystemTime::now() - std::time::Duration::from_secs(3600))
        .unwrap();
    drop(f);
    let e = Store::open(&empty).unwrap_err().to_string();
    assert!(e.contains("old-empty.sqlite") && e.contains("empty"), "{e}");
    assert!(!e.contains("move"), "{e}");
    // A fresh empty file (another process has just created it) becomes a history.
    let fresh = dir.path().join("fresh-empty.sqlite");
    std::fs::write(&fresh, b"").unwrap();
    let s = Store::open(&fresh).unwrap();
    assert_eq!(s.schema_version().unwrap(), schema::VERSION);
}

#[test]
fn uris_and_in_memory_names_are_refused() {
    for name in ["file:memdb?mode=memory", "file:h.sqlite", ":memory:", ""] {
        let e = Store::open(Path::new(name)).unwrap_err().to_string();
        assert!(e.contains("would be lost"), "{name}: {e}");
    }
}

#[test]
fn a_read_only_open_reads_and_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("h.sqlite");
    let run = {
        let s = Store::open(&db).unwrap();
        new_run(&s, "a", &dir.path().join("out"))
    };
    assert!(!dir.path().join("h.sqlite-wal").exists());
    let before = std::fs::read(&db).unwrap();
    let s = Store::open_read_only(&db).unwrap();
    assert_eq!(s.list_runs(&RunFilter::default()).unwrap().len(), 1);
    assert_eq!(s.run(run).unwrap().name, "a");
    assert!(s.check().unwrap().ok());
    let e = s.set_notes(run, "x").unwrap_err().to_string();
    assert!(e.contains("h.sqlite") && e.contains("read-only"), "{e}");
    drop(s);
    assert_eq!(std::fs::read(&db).unwrap(), before, "the file is unchanged");
    // A writable file opened for reading is opened normally.
    let s = Store::open_for_reading(&db).unwrap();
    s.set_notes(run, "y").unwrap();
}

/// Garbage in the middle of a history: reading still works, but no new run goes into it.
#[test]
fn a_damaged_database_refuses_new_runs() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("h.sqlite");
    let out = dir.path().join("out");
    let store = Store::open(&db).unwrap();
    let run = new_run(&store, "a", &out);
    record(store, run, &out, 1..=200, None);
    let mut bytes = std::fs::read(&db).unwrap();
    assert!(bytes.len() > 256 * 1024, "{}", bytes.len());
    // Well past the schema's pages (written first).
    let mid = bytes.len() * 2 / 3 / 4096 * 4096;
    bytes[mid..mid + 8192].fill(0x5a);
    std::fs::write(&db, &bytes).unwrap();
    let store = Store::open(&db).unwrap();
    assert_eq!(store.list_runs(&RunFilter::default()).unwrap().len(), 1);
    assert!(!store.check().unwrap().integrity.is_empty());
    let e = store
        .create_run(&NewRun {
            name: "b".into(),
            ..NewRun::default()
        })
        .unwrap_err()
        .to_string();
    assert!(e.contains("h.sqlite") && e.contains("damaged"), "{e}");
    assert!(store.rollback_for_resume(run, None, 40).is_err());
    assert_eq!(store.list_runs(&RunFilter::default()).unwrap().len(), 1);
}

#[test]
fn check_reports_a_missing_table_and_runs_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("h.sqlite");
    drop(Store::open(&db).unwrap());
    rusqlite::Connection::open(&db)
        .unwrap()
        .execute_batch("DROP TABLE scalars; DROP INDEX logs_by_run;")
        .unwrap();
    let store = Store::open(&db).unwrap();
    let rep = store.check().unwrap();
    assert!(!rep.ok(), "{rep:?}");
    assert!(
        rep.schema.iter().any(|p| p.contains("table scalars")),
        "{rep:?}"
    );
    assert!(
        rep.schema.iter().any(|p| p.contains("index logs_by_run")),
        "{rep:?}"
    );
    let e = store
        .create_run(&NewRun::default())
        .unwrap_err()
        .to_string();
    assert!(e.contains("scalars"), "{e}");
}

#[test]
fn a_damaged_schema_version_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("h.sqlite");
    drop(Store::open(&db).unwrap());
    for v in ["0", "-3"] {
        rusqlite::Connection::open(&db)
            .unwrap()
            .execute_batch(&format!("PRAGMA user_version = {v}"))
            .unwrap();
        let e = Store::open(&db).unwrap_err().to_string();
        assert!(e.contains("damaged schema version"), "{e}");
        assert!(e.len() < 300, "{e}");
    }
}

#[test]
fn run_ids_are_never_reused_after_a_delete() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("h.sqlite")).unwrap();
    let a = new_run(&store, "a", dir.path());
    let b = new_run(&store, "b", dir.path());
    store.delete_run(b).unwrap();
    let c = new_run(&store, "c", dir.path());
    assert!(c > b && b > a, "{a} {b} {c}");
}

/// A version-1 history (ids without AUTOINCREMENT) is migrated in place: rows, ids and
/// child rows kept, deletes still cascade, new ids continue after the largest.
#[test]
fn a_version_1_history_migrates_keeping_its_rows() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("v1.sqlite");
    {
        let c = rusqlite::Connection::open(&db).unwrap();
        c.execute_batch(schema::MIGRATIONS[0]).unwrap();
        c.execute_batch(&format!(
            "PRAGMA user_version = 1; PRAGMA application_id = {APPLICATION_ID};
             INSERT INTO runs (id, name, status, config, seed, engine_version, model_path,
                 steps_planned, out_dir) VALUES
                 (1, 'a', 'finished', '', 1, 'x', '/m', 3, '/o1'),
                 (7, 'b', 'finished', '', 1, 'x', '/m', 3, '/o7');
             INSERT INTO run_tags VALUES (1, 'keep'), (7, 'gone');
             INSERT INTO metric_names (id, name) VALUES (1, 'reward_mean');
             INSERT INTO scalars VALUES (1, 1, 1, 0.5), (7, 1, 1, 0.25);"
        ))
        .unwrap();
    }
    // Readable as it is, without writing.
    let ro = Store::open_read_only(&db).unwrap();
    assert_eq!(ro.schema_version().unwrap(), 1);
    assert_eq!(ro.list_runs(&RunFilter::default()).unwrap().len(), 2);
    assert!(ro.check().unwrap().ok(), "{:?}", ro.check().unwrap());
    drop(ro);
    let store = Store::open(&db).unwrap();
    assert_eq!(store.schema_version().unwrap(), schema::VERSION);
    assert!(store.schema_problems().unwrap().is_empty());
    assert_eq!(store.run(1).unwrap().tags, vec!["keep".to_string()]);
    assert_eq!(store.series(7, "reward_mean").unwrap(), vec![(1, 0.25)]);
    store.delete_run(7).unwrap();
    let n: i64 = store
        .conn
        .query_row("SELECT count(*) FROM run_tags WHERE run_id = 7", [], |r| {
            r.get(0)
        })
        .unwrap();
    assert_eq!(n, 0, "delete cascades after the rebuild");
    assert_eq!(new_run(&store, "c", dir.path()), 8);
    assert!(store.check().unwrap().foreign_key_violations == 0);
}

/// `runs check` reports the folder of a run deleted without its files, but not the run
/// folders of another history that sit beside this one's.
#[test]
fn orphan_folders_are_only_this_historys_deleted_runs() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (dir.path().join("a.sqlite"), dir.path().join("b.sqlite"));
    let runs = dir.path().join("runs");
    let sa = Store::open(&a).unwrap();
    let ra = new_run(&sa, "a", &runs.join("a"));
    record(sa, ra, &runs.join("a"), 1..=1, None);
    let sb = Store::open(&b).unwrap();
    let rb = new_run(&sb, "b", &runs.join("b"));
    record(sb, rb, &runs.join("b"), 1..=1, None);
    let sa = Store::open(&a).unwrap();
    let rep = sa.check().unwrap();
    assert!(rep.ok(), "another history's folder reported: {rep:?}");
    let ra2 = new_run(&sa, "a2", &runs.join("a2"));
    record(sa, ra2, &runs.join("a2"), 1..=1, None);
    let sa = Store::open(&a).unwrap();
    sa.delete_run(ra2).unwrap();
    let rep = sa.check().unwrap();
    assert_eq!(
        rep.orphan_dirs,
        vec![runs.join("a2").to_string_lossy().into_owned()]
    );
}

fn write_policy(dir: &Path) {
    std::fs::create_dir_all(dir).unwrap();
    for f in files::POLICY_FILES {
        std::fs::write(dir.join(f), b"w").unwrap();
    }
}

#[test]
fn deleting_with_files_removes_only_what_the_run_wrote() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("h.sqlite")).unwrap();
    // A run trained into a folder that holds a user's documents.
    let docs = dir.path().join("docs");
    std::fs::create_dir_all(docs.join("photos")).unwrap();
    std::fs::write(docs.join("thesis.txt"), b"precious").unwrap();
    std::fs::write(docs.join("photos/a.jpg"), b"x").unwrap();
    let run = new_run(&store, "a", &docs);
    for f in files::RUN_FILES {
        std::fs::write(docs.join(f), b"r").unwrap();
    }
    write_policy(&docs.join("policy"));
    write_policy(&docs.join("checkpoints/step-000002"));
    std::fs::write(docs.join("policy/my-notes.txt"), b"mine").unwrap();
    let rep = store.delete_run_with_files(run).unwrap();
    assert!(!rep.folder_removed);
    assert_eq!(std::fs::read(docs.join("thesis.txt")).unwrap(), b"precious");
    assert!(docs.join("photos/a.jpg").is_file());
    assert!(docs.join("policy/my-notes.txt").is_file());
    assert!(!docs.join("policy/model.safetensors").exists());
    assert!(!docs.join("checkpoints").exists());
    for f in files::RUN_FILES {
        assert!(!docs.join(f).exists(), "{f}");
    }
    assert_eq!(
        rep.kept,
        vec![
            docs.join("photos"),
            docs.join("policy"),
            docs.join("thesis.txt")
        ]
    );
    assert!(store.run(run).is_err());

    // A folder holding only the run's files goes entirely.
    let own = dir.path().join("own");
    let run = new_run(&store, "b", &own);
    std::fs::create_dir_all(&own).unwrap();
    std::fs::write(own.join("config.toml"), b"r").unwrap();
    write_policy(&own.join("policy"));
    let rep = store.delete_run_with_files(run).unwrap();
    assert!(rep.folder_removed && !own.exists(), "{rep:?}");

    // Two runs in one folder: deleting one removes none of the files.
    let shared = dir.path().join("shared");
    let r1 = new_run(&store, "c", &shared);
    let r2 = new_run(&store, "d", &shared);
    std::fs::create_dir_all(&shared).unwrap();
    std::fs::write(shared.join("config.toml"), b"r").unwrap();
    let rep = store.delete_run_with_files(r1).unwrap();
    assert_eq!(rep.shared_with, vec![r2]);
    assert!(shared.join("config.toml").is_file());
}

#[test]
fn resume_skips_a_damaged_slot_and_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("h.sqlite")).unwrap();
    let out = dir.path().join("out");
    std::fs::create_dir_all(&out).unwrap();
    let run = new_run(&store, "a", &out);
    let slots = ["resume-0.ckpt", "resume-1.ckpt"];
    // Content "ok N" verifies as step N; anything else is damaged.
    let verify = |p: &Path| {
        let t = std::fs::read_to_string(p).map_err(|e| e.to_string())?;
        t.strip_prefix("ok ")
            .and_then(|n| n.parse().ok())
            .ok_or_else(|| "no RLVR trailer: truncated".to_string())
    };
    // The first checkpoint write was cut short by a full disk: restart from 0, with a note.
    std::fs::write(out.join("resume-1.ckpt"), b"half").unwrap();
    let r = store.resume_from(run, &out, &slots, verify).unwrap();
    assert_eq!(r.step, None);
    assert!(
        r.notes.len() == 1 && r.notes[0].contains("resume-1.ckpt") && r.notes[0].contains("step 0"),
        "{r:?}"
    );
    // A good slot beside a damaged one: the good one, with a note.
    std::fs::write(out.join("resume-0.ckpt"), b"ok 4").unwrap();
    let r = store.resume_from(run, &out, &slots, verify).unwrap();
    assert_eq!(r.step, Some(4));
    assert!(r.notes[0].contains("resume-0.ckpt (step 4)"), "{r:?}");
    // The history records a checkpoint that no slot holds: an error naming the folder.
    let w = write::EventWriter::new(run, None);
    w.resume_written(&store, 4, &out.join("resume-0.ckpt"))
        .unwrap();
    std::fs::write(out.join("resume-0.ckpt"), b"bad").unwrap();
    let e = store
        .resume_from(run, &out, &slots, verify)
        .unwrap_err()
        .to_string();
    assert!(e.contains("step 4") && e.contains("out"), "{e}");
}

#[test]
fn text_filter_matches_wildcards_literally() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("h.sqlite")).unwrap();
    let plain = new_run(&store, "alpha", dir.path());
    let under = new_run(&store, "my_run", dir.path());
    let pct = new_run(&store, "100%", dir.path());
    let slash = new_run(&store, "a\\b", dir.path());
    let f = |text: &str| {
        store
            .list_runs(&RunFilter {
                text: Some(text.into()),
                ..RunFilter::default()
            })
            .unwrap()
            .iter()
            .map(|r| r.id)
            .collect::<Vec<_>>()
    };
    assert_eq!(f("_"), vec![under]);
    assert_eq!(f("%"), vec![pct]);
    assert_eq!(f("\\"), vec![slash]);
    assert_eq!(f("alp"), vec![plain]);
}

#[test]
fn empty_blank_and_overlong_tags_are_refused_by_name() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("h.sqlite")).unwrap();
    let a = new_run(&store, "alpha", dir.path());
    for bad in [String::new(), "  ".into(), "x".repeat(201), "a\nb".into()] {
        let e = store
            .set_tags(a, std::slice::from_ref(&bad), false)
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("tag "), "{e}");
        assert!(
            e.contains("empty") || e.contains("200") || e.contains("control"),
            "{e}"
        );
        let e = store
            .create_run(&NewRun {
                name: "b".into(),
                config: String::new(),
                seed: 0,
                model_path: "/m".into(),
                steps_planned: 1,
                out_dir: String::new(),
                tags: vec![bad],
                notes: String::new(),
            })
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("tag "), "{e}");
    }
    assert_eq!(store.list_runs(&RunFilter::default()).unwrap().len(), 1);
    store.set_tags(a, &["x".repeat(200)], false).unwrap();
}
