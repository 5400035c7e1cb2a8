//! End-to-end tests of the run history: crash and resume, the `runs` commands, bad databases.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use common::*;
use rand::{Rng as _, SeedableRng as _};

/// A short countdown run on the embedded policy (about 5 s here).
fn small_config(dir: &Path, steps: usize) -> PathBuf {
    let model = repo().join("app/assets/default-policy");
    let text = format!(
        "name = \"small\"\nseed = 5\nsteps = {steps}\n[model]\npath = {:?}\n\
         [task]\nname = \"countdown\"\nnumbers = 3\nmax_number = 9\n\
         [rollout]\nprompts_per_step = 16\ngroup_size = 4\n\
         [algorithm]\nkl_coef = 0.02\n[optim]\nlr = 2e-4\n\
         [eval]\nevery = 20\nheldout_size = 40\nsamples = 8\n[output]\nkeep_every = 25\n",
        model.to_string_lossy()
    );
    let p = dir.join("small.toml");
    std::fs::write(&p, text).unwrap();
    p
}

fn db_arg(db: &Path) -> [String; 2] {
    ["--db".into(), db.to_string_lossy().into_owned()]
}

/// `--db DB train CFG --json --out OUT`.
fn train_args(db: &Path, cfg: &Path, out: &Path) -> Vec<String> {
    let mut a: Vec<String> = db_arg(db).into();
    a.extend([
        "train".into(),
        cfg.to_string_lossy().into_owned(),
        "--json".into(),
    ]);
    a.extend(["--out".into(), out.to_string_lossy().into_owned()]);
    a
}

fn runs_json(db: &Path, args: &[&str]) -> Vec<serde_json::Value> {
    let mut a: Vec<String> = db_arg(db).into();
    a.push("runs".into());
    a.extend(args.iter().map(|s| s.to_string()));
    a.push("--json".into());
    json_lines(&run_ok(a))
}

/// Everything stored about a run except wall-clock times and ids, in export order.
fn history(db: &Path, run: &str) -> Vec<serde_json::Value> {
    fn strip(v: &mut serde_json::Value) {
        if let Some(o) = v.as_object_mut() {
            o.retain(|k, _| {
                !(k.ends_with("_s") || k.ends_with("per_s") || k == "run_id" || k == "elapsed_s")
            });
            for x in o.values_mut() {
                strip(x);
            }
        }
    }
    let mut a: Vec<String> = db_arg(db).into();
    a.extend(["runs", "export", run, "--format", "jsonl"].map(String::from));
    let mut lines = json_lines(&run_ok(a));
    for l in &mut lines {
        strip(l);
    }
    lines
}

/// SIGKILL at random moments, several times, then resume to the end: every stored metric,
/// evaluation and sampled completion equals the uninterrupted run's, and each resume
/// recomputes at most the step that was in flight.
#[test]
fn killed_runs_resume_to_the_uninterrupted_history() {
    let dir = tempfile::tempdir().unwrap();
    let steps = 60;
    let cfg = small_config(dir.path(), steps);
    let (db_a, db_b) = (dir.path().join("a.sqlite"), dir.path().join("b.sqlite"));
    let a = train_args(&db_a, &cfg, &dir.path().join("out-a"));
    let t0 = std::time::Instant::now();
    run_ok(a);
    let whole_ms = t0.elapsed().as_millis() as u64;
    let expected = history(&db_a, "1");
    assert!(expected.len() > steps, "{} lines", expected.len());

    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64;
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let out_b = dir.path().join("out-b");
    let mut delays = Vec::new();
    let mut kills = 0;
    let mut attempt = 0;
    // (steps stored before the attempt, first step it computed, killed)
    let mut resumes = Vec::new();
    loop {
        attempt += 1;
        assert!(
            attempt < 20,
            "did not finish (seed {seed}, delays {delays:?})"
        );
        let runs = runs_json(&db_b, &["list"]);
        let mut args: Vec<String> = db_arg(&db_b).into();
        args.push("train".into());
        let before = match runs.first() {
            None => {
                args.push(cfg.to_string_lossy().into_owned());
                args.extend(["--out".into(), out_b.to_string_lossy().into_owned()]);
                None
            }
            Some(r) if r["status"] == "finished" => break,
            Some(r) => {
                assert_eq!(r["status"], "interrupted", "{r}");
                args.extend(["--resume".into(), r["id"].to_string()]);
                Some(r["last_step"].as_u64().unwrap())
            }
        };
        args.push("--json".into());
        let mut child = bin()
            .args(&args)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let killed = if kills < 4 {
            // A moment within the work left (startup included), so most kills land mid-run.
            let left = (steps as u64 - before.unwrap_or(0)).max(1);
            let span = whole_ms * left / steps as u64;
            let ms = rng.random_range(span / 10..(span * 7 / 10).max(span / 10 + 1));
            delays.push(ms);
            std::thread::sleep(Duration::from_millis(ms));
            child.kill().is_ok()
        } else {
            false
        };
        let out = child.wait_with_output().unwrap();
        // A run that ended before the signal was not interrupted.
        let killed = killed && !out.status.success();
        kills += usize::from(killed);
        let text = String::from_utf8_lossy(&out.stdout);
        // A line cut by the kill is not JSON; the lines before it are.
        let first_step = text
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .find(|v| v["type"] == "step")
            .and_then(|v| v["step"].as_u64());
        resumes.push((before, first_step, killed));
        if let (Some(stored), Some(first)) = (before, first_step) {
            assert!(
                first >= stored,
                "resumed at step {first} but {stored} steps were stored: more than the step in \
                 flight was recomputed (seed {seed}, delays {delays:?})"
            );
        }
        if !killed {
            assert!(out.status.success(), "final resume failed");
        }
    }
    eprintln!("seed {seed}: delays {delays:?} ms of a {whole_ms} ms run; attempts {resumes:?}");
    assert!(
        kills >= 2,
        "only {kills} kills landed (seed {seed}, delays {delays:?})"
    );
    let got = history(&db_b, "1");
    assert_eq!(got.len(), expected.len(), "seed {seed}, delays {delays:?}");
    for (g, e) in got.iter().zip(&expected) {
        assert_eq!(g, e, "seed {seed}, delays {delays:?}");
    }
    // The kept policy folders were recorded on the way.
    let show = runs_json(&db_b, &["show", "1"]);
    let kinds: Vec<&str> = show[0]["checkpoints"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["kind"].as_str().unwrap())
        .collect();
    assert!(
        kinds.contains(&"checkpoint") && kinds.contains(&"final"),
        "{kinds:?}"
    );
}

#[test]
fn runs_commands_list_show_diff_samples_export_delete_check() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("h.sqlite");
    let cfg = small_config(dir.path(), 4);
    let train = |out: &str, extra: &[&str]| {
        let mut a = train_args(&db, &cfg, &dir.path().join(out));
        a.extend(extra.iter().map(|s| s.to_string()));
        run_ok(a);
    };
    train("r1", &["--tag", "baseline", "--notes", "first try"]);
    train("r2", &["--seed", "9", "--tag", "sweep"]);

    let all = runs_json(&db, &["list"]);
    assert_eq!(all.len(), 2);
    for r in &all {
        for k in ["id", "name", "status", "created", "config"] {
            assert!(!r[k].is_null(), "{k} missing in {r}");
        }
        assert_eq!(r["status"], "finished");
    }
    assert_eq!(all[0]["id"], 2, "newest first");
    let tagged = runs_json(&db, &["list", "--tag", "baseline"]);
    assert_eq!(tagged.len(), 1);
    assert_eq!(tagged[0]["id"], 1);
    assert_eq!(runs_json(&db, &["list", "--text", "FIRST TRY"]).len(), 1);
    assert_eq!(runs_json(&db, &["list", "--status", "failed"]).len(), 0);

    let show = &runs_json(&db, &["show", "1"])[0];
    assert_eq!(show["last_step"], 4);
    assert_eq!(show["model_hash"].as_str().unwrap().len(), 64);
    assert_eq!(show["dataset_hash"].as_str().unwrap().len(), 64);
    assert!(
        show["final_metrics"]["eval/pass_at_k/8"].is_number(),
        "{show}"
    );

    let diff = &runs_json(&db, &["diff", "1", "2"])[0];
    let keys: Vec<&str> = diff["config"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["key"].as_str().unwrap())
        .collect();
    assert!(
        keys.contains(&"seed") && keys.contains(&"output.dir"),
        "{keys:?}"
    );
    assert!(!keys.contains(&"steps"), "{keys:?}");

    let groups = runs_json(&db, &["samples", "1", "--step", "2"]);
    assert_eq!(groups.len(), 16);
    assert_eq!(groups[0]["samples"].as_array().unwrap().len(), 4);
    let s = &groups[0]["samples"][0];
    let n = s["length"].as_u64().unwrap() as usize;
    assert_eq!(s["tokens"]["logprob"].as_array().unwrap().len(), n);
    assert!(s["components"][0][2].is_string(), "reason kept: {s}");
    let good = runs_json(&db, &["samples", "1", "--step", "2", "--min-reward", "1"]);
    assert!(good
        .iter()
        .flat_map(|g| g["samples"].as_array().unwrap())
        .all(|s| s["reward"].as_f64().unwrap() >= 1.0));

    // CSV: a header and one row per step with a stored metric (steps 0..=4: eval at 0).
    let csv_path = dir.path().join("m.csv");
    let mut a: Vec<String> = db_arg(&db).into();
    a.extend(["runs", "export", "1", "--format", "csv", "--out"].map(String::from));
    a.push(csv_path.to_string_lossy().into_owned());
    run_ok(a);
    let csv = std::fs::read_to_string(&csv_path).unwrap();
    let header: Vec<&str> = csv.lines().next().unwrap().split(',').collect();
    assert_eq!(header[0], "step");
    assert!(header.contains(&"reward_mean") && header.contains(&"eval/greedy_accuracy"));
    assert_eq!(csv.lines().count(), 1 + 5);
    let samples_csv = std::fs::read_to_string(dir.path().join("m.csv.samples.csv")).unwrap();
    assert_eq!(samples_csv.lines().count(), 1 + 4 * 16 * 4);

    let check = &runs_json(&db, &["check"])[0];
    assert!(check["integrity"].as_array().unwrap().is_empty(), "{check}");
    assert!(
        check["orphan_dirs"].as_array().unwrap().is_empty(),
        "{check}"
    );

    // Deleting the history but not the files leaves an orphan folder that check reports.
    runs_json(&db, &["delete", "2"]);
    assert_eq!(runs_json(&db, &["list"]).len(), 1);
    let mut a: Vec<String> = db_arg(&db).into();
    a.extend(["runs", "check", "--json"].map(String::from));
    let out = bin().args(&a).output().unwrap();
    assert!(!out.status.success());
    let rep: serde_json::Value =
        serde_json::from_str(String::from_utf8_lossy(&out.stdout).trim()).unwrap();
    assert!(
        rep["orphan_dirs"][0].as_str().unwrap().ends_with("r2"),
        "{rep}"
    );
    runs_json(&db, &["delete", "1", "--files"]);
    assert!(!dir.path().join("r1").exists());
    let db_s = db.to_string_lossy();
    expect_error(&["--db", &db_s, "runs", "show", "1"], &["no run \"1\""]);
}

/// Damaged, foreign, empty, newer or unwritable databases: one clear error line, never a panic
/// and never an empty history shown as if it were real.
#[test]
fn bad_databases_are_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let db = d.join("good.sqlite");
    let cfg = small_config(d, 2);
    run_ok(train_args(&db, &cfg, &d.join("o")));
    // Closing the last connection folded the write-ahead log into the file, so it can be cut.
    let good = std::fs::read(&db).unwrap();
    assert!(good.len() > 20_000, "{}", good.len());
    let s = |p: &Path| p.to_string_lossy().into_owned();

    let garbage = d.join("garbage.sqlite");
    std::fs::write(&garbage, vec![0x5a; 8192]).unwrap();
    expect_error(
        &["--db", &s(&garbage), "runs", "list"],
        &["garbage.sqlite", "not an RLVR Studio database"],
    );

    // An empty file older than a minute is not a history being created: refused.
    let empty = d.join("empty.sqlite");
    let f = std::fs::File::create(&empty).unwrap();
    f.set_modified(std::time::SystemTime::now() - Duration::from_secs(600))
        .unwrap();
    drop(f);
    expect_error(
        &["--db", &s(&empty), "runs", "list"],
        &["empty.sqlite", "empty"],
    );

    let folder = d.join("folder.sqlite");
    std::fs::create_dir(&folder).unwrap();
    expect_error(
        &["--db", &s(&folder), "runs", "list"],
        &["folder.sqlite", "folder"],
    );

    let cut = d.join("cut.sqlite");
    std::fs::write(&cut, &good[..good.len() / 3]).unwrap();
    let out = bin()
        .args(["--db", &s(&cut), "runs", "show", "1", "--json"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "a truncated database read as fine");
    assert!(!err.contains("panicked"), "{err}");
    assert!(
        err.contains("cut.sqlite") && err.contains("damaged"),
        "{err}"
    );

    // Garbage in the middle: reading may work, but no new run is written into it.
    let mid = d.join("mid.sqlite");
    let mut bytes = good.clone();
    let m = bytes.len() / 2 / 4096 * 4096;
    let end = (m + 8192).min(bytes.len());
    bytes[m..end].fill(0x5a);
    std::fs::write(&mid, &bytes).unwrap();
    let out = bin()
        .args(train_args(&mid, &cfg, &d.join("o2")))
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "trained into a damaged database");
    assert!(
        err.contains("mid.sqlite") && err.contains("damaged"),
        "{err}"
    );

    // A table dropped: `runs check` says so, and exits with an error.
    let dropped = d.join("dropped.sqlite");
    std::fs::write(&dropped, &good).unwrap();
    rusqlite::Connection::open(&dropped)
        .unwrap()
        .execute_batch("DROP TABLE scalars")
        .unwrap();
    let out = bin()
        .args(["--db", &s(&dropped), "runs", "check"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success(), "{text}");
    assert!(text.contains("table scalars is missing"), "{text}");

    let ro = Path::new("/proc/rlvr-studio-test/history.sqlite");
    expect_error(
        &["--db", &s(ro), "runs", "list"],
        &["/proc/rlvr-studio-test"],
    );
}

/// `runs delete --files` on a run trained into a folder of the user's: the run's files go,
/// the user's documents and the folder stay.
#[test]
fn deleting_files_keeps_what_the_run_did_not_write() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("h.sqlite");
    let cfg = small_config(dir.path(), 2);
    let docs = dir.path().join("mydocs");
    std::fs::create_dir_all(docs.join("photos")).unwrap();
    std::fs::write(docs.join("thesis.txt"), "precious").unwrap();
    std::fs::write(docs.join("photos/a.jpg"), "x").unwrap();
    run_ok(train_args(&db, &cfg, &docs));
    assert!(docs.join("policy/model.safetensors").is_file());
    let del = &runs_json(&db, &["delete", "1", "--files"])[0];
    assert_eq!(del["files"]["folder_removed"], false, "{del}");
    assert_eq!(
        std::fs::read_to_string(docs.join("thesis.txt")).unwrap(),
        "precious"
    );
    assert!(docs.join("photos/a.jpg").is_file());
    let mut left: Vec<String> = std::fs::read_dir(&docs)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    left.sort();
    assert_eq!(left, ["photos", "thesis.txt"], "the run's files are gone");
}

/// Several processes opening a new history file at the same moment all succeed (before: most
/// failed, one message calling the history "gone").
#[test]
fn processes_opening_a_new_history_at_once_all_succeed() {
    let dir = tempfile::tempdir().unwrap();
    let mut failures = Vec::new();
    for round in 0..8 {
        let db = dir.path().join(format!("new-{round}.sqlite"));
        let children: Vec<_> = (0..4)
            .map(|_| {
                bin()
                    .args(["--db", &db.to_string_lossy(), "runs", "list"])
                    .stdout(Stdio::null())
                    .stderr(Stdio::piped())
                    .spawn()
                    .unwrap()
            })
            .collect();
        for c in children {
            let out = c.wait_with_output().unwrap();
            if !out.status.success() {
                failures.push(String::from_utf8_lossy(&out.stderr).into_owned());
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} of 32 failed: {failures:?}",
        failures.len()
    );
}

/// A history on a read-only mount can be browsed (list, show, check, export); writing is a
/// clear error. Uses a private mount namespace (`unshare -rm`), skipped where there is none.
#[cfg(target_os = "linux")]
#[test]
fn a_history_on_a_read_only_mount_can_be_browsed() {
    let usable = std::process::Command::new("unshare")
        .args(["-rm", "true"])
        .status()
        .is_ok_and(|s| s.success());
    if !usable {
        eprintln!("skipped: no unshare -rm here");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let ro = dir.path().join("ro");
    std::fs::create_dir(&ro).unwrap();
    let db = ro.join("h.sqlite");
    let cfg = small_config(dir.path(), 2);
    run_ok(train_args(&db, &cfg, &dir.path().join("o")));
    let exe = env!("CARGO_BIN_EXE_rlvr-studio");
    let script = format!(
        "mount --bind -o ro {ro} {ro} || exit 99; B={exe}; D={db}; \
         $B --db $D runs list --json && $B --db $D runs show 1 --json >/dev/null && \
         $B --db $D runs export 1 --format jsonl --no-samples >/dev/null && \
         $B --db $D runs check >/dev/null && \
         if $B --db $D runs note 1 x 2>&1; then exit 98; fi",
        ro = ro.display(),
        db = db.display()
    );
    let out = std::process::Command::new("unshare")
        .args(["-rm", "sh", "-c", &script])
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    if out.status.code() == Some(99) {
        eprintln!("skipped: cannot bind-mount here: {text}");
        return;
    }
    assert!(out.status.success(), "{text}");
    assert!(text.contains("\"name\":\"small\""), "{text}");
    assert!(
        text.contains("read-only"),
        "the note names the cause: {text}"
    );
    assert!(!ro.join("h.sqlite-wal").exists());
}

/// `--db` values SQLite would keep in memory are refused; export errors name the file.
#[test]
fn in_memory_databases_are_refused_and_export_errors_name_the_file() {
    expect_error(
        &["--db", "file:memdb?mode=memory", "runs", "list"],
        &["file:memdb", "would be lost"],
    );
    expect_error(&["--db", ":memory:", "runs", "list"], &["would be lost"]);
    if Path::new("/dev/full").exists() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("h.sqlite");
        let cfg = small_config(dir.path(), 1);
        run_ok(train_args(&db, &cfg, &dir.path().join("o")));
        let db_s = db.to_string_lossy();
        for format in ["jsonl", "csv"] {
            expect_error(
                &[
                    "--db",
                    &db_s,
                    "runs",
                    "export",
                    "1",
                    "--format",
                    format,
                    "--out",
                    "/dev/full",
                ],
                &["/dev/full", "No space left"],
            );
        }
    }
}

fn run_err(args: Vec<String>) -> String {
    let out = bin().args(&args).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!out.status.success(), "{args:?} succeeded");
    assert!(!err.contains("panicked"), "{args:?} panicked: {err}");
    assert!(err.starts_with("error: "), "{args:?}: {err}");
    assert_eq!(err.trim_end().lines().count(), 1, "one line: {err}");
    err
}

fn marker(dir: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(dir.join("run.json")).unwrap()).unwrap()
}

/// Reliability defect 1: a second run with the output folder of another run used to overwrite
/// its config, metrics and checkpoints, and resuming the first then took the second's
/// checkpoint. An explicit `--out` of another run is refused, the default `runs/<name>` is
/// suffixed, and a resume refuses a folder that now holds another run's files.
#[test]
fn two_runs_never_share_an_output_folder() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("h.sqlite");
    let cfg = small_config(dir.path(), 2);
    let shared = dir.path().join("shared");
    run_ok(train_args(&db, &cfg, &shared));
    assert_eq!(marker(&shared)["run_id"], 1);
    let config_before = std::fs::read_to_string(shared.join("config.toml")).unwrap();

    let mut second = train_args(&db, &cfg, &shared);
    second.extend(["--seed".into(), "2".into()]);
    let err = run_err(second);
    for needle in [shared.to_str().unwrap(), "run 1 \"small\"", "--out"] {
        assert!(err.contains(needle), "{err:?} lacks {needle:?}");
    }
    assert_eq!(
        std::fs::read_to_string(shared.join("config.toml")).unwrap(),
        config_before,
        "run 1's files untouched"
    );

    // Without --out: `runs/small`, then `runs/small-2` for the same config trained again.
    for _ in 0..2 {
        let mut a: Vec<String> = db_arg(&db).into();
        a.extend([
            "train".into(),
            cfg.to_string_lossy().into_owned(),
            "--json".into(),
        ]);
        let out = bin().current_dir(dir.path()).args(&a).output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let runs = dir.path().join("runs");
    assert_eq!(marker(&runs.join("small"))["run_id"], 2);
    assert_eq!(marker(&runs.join("small-2"))["run_id"], 3);
    let show = &runs_json(&db, &["show", "3"])[0];
    assert!(
        show["out_dir"].as_str().unwrap().ends_with("small-2"),
        "{show}"
    );

    // Run 1's folder taken over behind its back (here: its marker names run 2): no resume.
    let theirs = std::fs::read(runs.join("small/run.json")).unwrap();
    let ours = std::fs::read(shared.join("run.json")).unwrap();
    std::fs::write(shared.join("run.json"), &theirs).unwrap();
    let mut resume: Vec<String> = db_arg(&db).into();
    resume.extend(["train", "--resume", "1", "--steps", "3", "--json"].map(String::from));
    let err = run_err(resume.clone());
    for needle in [
        "cannot resume run 1",
        shared.to_str().unwrap(),
        "run 2 \"small\"",
    ] {
        assert!(err.contains(needle), "{err:?} lacks {needle:?}");
    }
    std::fs::write(shared.join("run.json"), &ours).unwrap();
    let lines = json_lines(&run_ok(resume));
    let steps: Vec<u64> = of_type(&lines, "step")
        .iter()
        .map(|v| v["step"].as_u64().unwrap())
        .collect();
    assert_eq!(steps, [3]);
}

/// Reliability "resume overrides": `--seed` on a resume silently changed the remaining steps
/// and `--steps` below the checkpoint left "finished 8/3". A resume takes only more steps
/// (recorded in the history and the run folder); a new seed, model, thread count or folder is
/// refused. And the GUI's export writes the same bytes as `runs export --no-samples`.
#[test]
fn resume_takes_only_what_keeps_the_trajectory_and_exports_agree() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("h.sqlite");
    let cfg = small_config(dir.path(), 2);
    let out = dir.path().join("out");
    run_ok(train_args(&db, &cfg, &out));
    let resume = |extra: &[&str]| {
        let mut a: Vec<String> = db_arg(&db).into();
        a.extend(["train", "--resume", "1", "--json"].map(String::from));
        a.extend(extra.iter().map(|s| s.to_string()));
        a
    };
    let elsewhere = dir.path().join("elsewhere");
    for (extra, needles) in [
        (vec!["--seed", "99"], vec!["--seed 99", "seed = 5"]),
        (vec!["--threads", "3"], vec!["--threads 3", "threads = "]),
        (
            vec!["--model", elsewhere.to_str().unwrap()],
            vec!["--model", "model.path"],
        ),
        (
            vec!["--out", elsewhere.to_str().unwrap()],
            vec!["--out", "output.dir"],
        ),
        (
            vec!["--steps", "1"],
            vec!["--steps 1", "after step 2", "--steps 2 or more"],
        ),
    ] {
        let err = run_err(resume(&extra));
        for n in needles.iter().chain(&["run 1 \"small\""]) {
            assert!(err.contains(n), "{extra:?}: {err:?} lacks {n:?}");
        }
    }
    let show = &runs_json(&db, &["show", "1"])[0];
    assert_eq!(
        (show["last_step"].as_i64(), show["steps_planned"].as_i64()),
        (Some(2), Some(2))
    );

    // The same seed is no change; more steps are recorded where `runs show` shows them.
    let lines = json_lines(&run_ok(resume(&["--seed", "5", "--steps", "3"])));
    assert_eq!(of_type(&lines, "step").len(), 1);
    let show = &runs_json(&db, &["show", "1"])[0];
    assert_eq!(
        (show["last_step"].as_i64(), show["steps_planned"].as_i64()),
        (Some(3), Some(3))
    );
    assert_eq!(show["status"], "finished");
    assert!(
        show["config"].as_str().unwrap().contains("steps = 3"),
        "{show}"
    );
    let logs: Vec<&str> = show["logs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["message"].as_str().unwrap())
        .collect();
    assert!(
        logs.contains(&"resumed after step 2 with steps = 3 (was 2)"),
        "{logs:?}"
    );
    let folder_cfg = std::fs::read_to_string(out.join("config.toml")).unwrap();
    assert!(folder_cfg.contains("steps = 3"), "{folder_cfg}");

    // One export for both front ends.
    let store = rlvr_store::Store::open(&db).unwrap();
    for (fmt, name) in [
        (rlvr_store::export::ExportFormat::Csv, "csv"),
        (rlvr_store::export::ExportFormat::Jsonl, "jsonl"),
    ] {
        let cli = dir.path().join(format!("cli.{name}"));
        let mut a: Vec<String> = db_arg(&db).into();
        a.extend(
            [
                "runs",
                "export",
                "1",
                "--no-samples",
                "--format",
                name,
                "--out",
            ]
            .map(String::from),
        );
        a.push(cli.to_string_lossy().into_owned());
        run_ok(a);
        let gui = dir.path().join(format!("gui.{name}"));
        assert_eq!(rlvr_ui::runs::export(&store, 1, &gui, fmt).unwrap(), 4);
        let (c, g) = (std::fs::read(&cli).unwrap(), std::fs::read(&gui).unwrap());
        assert!(c.len() > 100, "{name}");
        assert_eq!(c, g, "{name}: the GUI and the CLI export differ");
    }
}

/// Reliability report §6 and §13: a model folder whose config.json has an absurd size is refused
/// before any size arithmetic (`threads_for_model` too), naming the file and key, and a run that
/// never started leaves no `failed` record.
#[test]
fn a_run_that_cannot_start_leaves_no_record() {
    let dir = tempfile::tempdir().unwrap();
    let (d, db) = (dir.path(), dir.path().join("h.sqlite"));
    let model = d.join("model");
    std::fs::create_dir(&model).unwrap();
    let src = repo().join("app/assets/default-policy");
    for f in ["config.json", "tokenizer.json", "model.safetensors"] {
        std::fs::copy(src.join(f), model.join(f)).unwrap();
    }
    let text = std::fs::read_to_string(model.join("config.json")).unwrap();
    let text = text.replace(
        "\"num_hidden_layers\": 4",
        "\"num_hidden_layers\": 1000000000",
    );
    std::fs::write(model.join("config.json"), text).unwrap();
    let cfg = small_config(d, 2);
    let mut args = train_args(&db, &cfg, &d.join("out"));
    args.extend(["--model".into(), model.to_string_lossy().into_owned()]);
    let err = run_err(args);
    for want in ["config.json", "num_hidden_layers = 1000000000", "1..=1024"] {
        assert!(err.contains(want), "{want}: {err}");
    }
    assert!(runs_json(&db, &["list"]).is_empty(), "no run recorded");
}

#[test]
fn a_nan_reward_filter_and_bad_tags_are_refused_by_name() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("h.sqlite");
    let db_s = db.to_string_lossy();
    let out = bin()
        .args([
            "--db",
            &db_s,
            "runs",
            "samples",
            "1",
            "--step",
            "1",
            "--min-reward",
            "nan",
        ])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "accepted: {err}");
    assert!(err.contains("--min-reward") && err.contains("NaN"), "{err}");
    let cfg = small_config(dir.path(), 1);
    for tag in ["", &"t".repeat(300)] {
        let mut a = train_args(&db, &cfg, &dir.path().join("o"));
        a.extend(["--tag".to_string(), tag.to_string()]);
        let err = run_err(a);
        assert!(err.contains("tag "), "{err}");
    }
    // Nothing was recorded for the refused runs.
    assert!(runs_json(&db, &["list"]).is_empty());
}
