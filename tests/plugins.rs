//! End-to-end plugin tests: the example plugins are built (`cargo build --release -p …`), loaded
//! through the host by the `rlvr-studio` binary, and used in real runs; the faulty test plugin's
//! panic, NaN, missed deadline and (isolated) segfault leave the run going, the error recorded
//! and counted, and the history complete.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use common::*;

const CRATES: &[(&str, &str)] = &[
    ("rlvr-plugin-sql", "rlvr_plugin_sql"),
    ("rlvr-plugin-rubric", "rlvr_plugin_rubric"),
    ("rlvr-plugin-annealed", "rlvr_plugin_annealed"),
    ("rlvr-plugin-qae", "rlvr_plugin_qae"),
    ("rlvr-plugin-faulty", "rlvr_plugin_faulty"),
    ("rlvr-plugin-abi-future", "rlvr_plugin_abi_future"),
    ("rlvr-plugin-bad-layout", "rlvr_plugin_bad_layout"),
    ("my-rlvr-plugin", "my_rlvr_plugin"),
];

/// Builds the plugin libraries once (a no-op when `cargo test --workspace --release` already
/// built them) and copies them into a folder of their own, so a run scans only them.
fn plugins_dir() -> &'static Path {
    static DIR: OnceLock<tempfile::TempDir> = OnceLock::new();
    DIR.get_or_init(|| {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let mut cmd = std::process::Command::new(cargo);
        cmd.current_dir(repo())
            .args(["build", "--release", "--quiet"]);
        for (krate, _) in CRATES {
            cmd.args(["-p", krate]);
        }
        let out = cmd.output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let dir = tempfile::tempdir().unwrap();
        for (_, lib) in CRATES {
            if lib.contains("abi_future") || lib.contains("bad_layout") {
                continue;
            }
            let file = format!("lib{lib}.so");
            std::fs::copy(target().join(&file), dir.path().join(&file)).unwrap();
        }
        dir
    })
    .path()
}

fn target() -> PathBuf {
    repo().join("target/release")
}

fn lib(name: &str) -> PathBuf {
    plugins_dir();
    target().join(format!("lib{name}.so"))
}

/// The binary with an empty user plugin folder.
fn studio(args: &[&str]) -> std::process::Output {
    let empty = tempfile::tempdir().unwrap();
    bin()
        .env("RLVR_STUDIO_PLUGINS", empty.path())
        .args(args)
        .output()
        .unwrap()
}

fn ok(out: &std::process::Output) -> String {
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A short arithmetic run with `extra` TOML appended to the sections given.
fn config(dir: &Path, name: &str, steps: usize, sections: &str) -> PathBuf {
    let model = repo().join("app/assets/default-policy");
    let text = format!(
        "name = \"{name}\"\nseed = 3\nsteps = {steps}\nthreads = 2\n[model]\npath = {:?}\n\
         [task]\nname = \"arithmetic\"\n\
         [eval]\nevery = 0\nheldout_size = 16\nsamples = 4\n{sections}\n",
        model.to_string_lossy()
    );
    let p = dir.join(format!("{name}.toml"));
    std::fs::write(&p, text).unwrap();
    p
}

fn train(cfg: &Path, out: &Path) -> Vec<serde_json::Value> {
    let dir = plugins_dir().to_string_lossy().into_owned();
    let o = studio(&[
        "train",
        &cfg.to_string_lossy(),
        "--json",
        "--out",
        &out.to_string_lossy(),
        "--plugins",
        &dir,
    ]);
    let text = ok(&o);
    text.lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn run_id(lines: &[serde_json::Value]) -> String {
    lines[0]["run_id"].as_i64().unwrap().to_string()
}

fn show(id: &str) -> serde_json::Value {
    serde_json::from_str(ok(&studio(&["runs", "show", id, "--json"])).trim()).unwrap()
}

#[test]
fn check_lists_components_and_refuses_incompatible_libraries() {
    let text = ok(&studio(&[
        "plugins",
        "check",
        &lib("rlvr_plugin_rubric").to_string_lossy(),
    ]));
    assert!(
        text.contains("keyword-rubric 0.1.0  (SDK 0.1.0, ABI 1)"),
        "{text}"
    );
    assert!(text.contains("rubric    keyword_rubric"), "{text}");
    assert!(text.contains("criterion format"), "{text}");
    let future = lib("rlvr_plugin_abi_future").to_string_lossy().into_owned();
    let out = studio(&["plugins", "check", &future]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains(
            "incompatible plugin ABI: expected ABI 1 (SDK 0.1.0), found ABI 99 (SDK 9.0.0)"
        ),
        "{err}"
    );
    // Right stamp, wrong types: abi_stable's layout check refuses it, with its `Error:` lines.
    let bad = lib("rlvr_plugin_bad_layout").to_string_lossy().into_owned();
    let out = studio(&["plugins", "check", &bad]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("its plugin types do not match ABI 1: Error:"),
        "{err}"
    );
    assert_eq!(err.trim_end().lines().count(), 1, "{err}");
    let not_lib = repo().join("Cargo.toml").to_string_lossy().into_owned();
    let err = String::from_utf8_lossy(&studio(&["plugins", "check", &not_lib]).stderr).into_owned();
    assert!(
        err.contains("cannot be loaded as a dynamic library"),
        "{err}"
    );
    let list = ok(&studio(&[
        "plugins",
        "list",
        "--plugins",
        &plugins_dir().to_string_lossy(),
    ]));
    for name in [
        "sql-tools",
        "keyword-rubric",
        "annealed-decoding",
        "qae",
        "faulty",
        "my-plugin",
    ] {
        assert!(list.contains(name), "{name} missing from {list}");
    }
}

#[test]
fn sql_verifier_compares_result_sets_in_process_and_isolated() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("shop.sqlite");
    rusqlite::Connection::open(&db)
        .unwrap()
        .execute_batch("CREATE TABLE t(n INTEGER); INSERT INTO t VALUES (1),(2),(3);")
        .unwrap();
    let sql = lib("rlvr_plugin_sql").to_string_lossy().into_owned();
    let param = format!("database={}", db.display());
    for isolated in [false, true] {
        let mut args = vec![
            "verify",
            "--plugin",
            &sql,
            "--component",
            "sql_exec",
            "--param",
            &param,
            "--json",
            "--answer",
            "select n from t where n > 1",
        ];
        if isolated {
            args.push("--isolated");
        }
        let run = |completion: &str| {
            let mut a = args.clone();
            a.extend(["--completion", completion]);
            let v: serde_json::Value = serde_json::from_str(ok(&studio(&a)).trim()).unwrap();
            v
        };
        let pass = run("select n from t where n >= 2 order by n desc");
        assert_eq!(pass["ok"]["passed"], true, "{pass}");
        let fail = run("select n from t");
        assert_eq!(fail["ok"]["passed"], false, "{fail}");
        assert!(fail["ok"]["reason"]
            .as_str()
            .unwrap()
            .contains("expected 2 rows, got 3"));
        let write = run("delete from t");
        assert_eq!(write["ok"]["passed"], false, "{write}");
    }
}

#[test]
fn a_run_uses_a_plugin_of_each_kind() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(
        dir.path(),
        "every-kind",
        4,
        "[rollout]\nprompts_per_step = 8\ngroup_size = 4\nsampler = \"annealed_temperature\"\n\
         sampler_params = { start = 1.3, end = 0.8 }\n\
         [rewards]\nverifier = \"exact_match\"\n\
         [[rewards.components]]\nname = \"keyword_rubric\"\nweight = 0.25\n\
         params = { format = \"^-?[0-9]+$\", max_chars = 3 }\n\
         [algorithm]\nadvantage = \"qae_tokens\"\nadvantage_params = { quantile = 0.5 }\n",
    );
    let lines = train(&cfg, &dir.path().join("out"));
    let steps = of_type(&lines, "step");
    assert_eq!(steps.len(), 4);
    let m = steps[3];
    assert!(
        m["reward_components"]["keyword_rubric"]["mean"]
            .as_f64()
            .unwrap()
            > 0.0,
        "{m}"
    );
    assert!(
        m["reward_components"]["keyword_rubric/format"].is_object(),
        "{m}"
    );
    assert!(m["reward_components"]["exact_match"].is_object(), "{m}");
    assert!(m.get("plugin_errors").is_none(), "{m}");
    let run = show(&run_id(&lines));
    assert_eq!(run["status"], "finished");
    let plugins = run["plugins"].as_array().unwrap();
    let names: Vec<&str> = plugins.iter().map(|p| p[0].as_str().unwrap()).collect();
    for want in [
        "my-plugin 0.1.0",
        "keyword-rubric 0.1.0",
        "annealed-decoding 0.1.0",
        "qae 0.1.0",
    ] {
        assert!(names.contains(&want), "{want} not in {names:?}");
    }
    assert!(
        plugins.iter().all(|p| p[2].as_str().unwrap().len() == 64),
        "{plugins:?}"
    );
    // The sampled completions carry the rubric's per-criterion reasons.
    let samples = ok(&studio(&[
        "runs",
        "samples",
        &run_id(&lines),
        "--step",
        "1",
    ]));
    assert!(samples.contains("keyword_rubric/format"), "{samples}");
}

#[test]
fn plugin_qae_gives_the_builtin_qae_advantages() {
    let dir = tempfile::tempdir().unwrap();
    let base = "[rollout]\nprompts_per_step = 8\ngroup_size = 4\n[algorithm]\n";
    let a = config(
        dir.path(),
        "qae-builtin",
        1,
        &format!("{base}advantage = \"qae\"\n"),
    );
    let b = config(
        dir.path(),
        "qae-plugin",
        1,
        &format!("{base}advantage = \"qae_tokens\"\n"),
    );
    let export = |lines: &[serde_json::Value]| -> Vec<f64> {
        let text = ok(&studio(&[
            "runs",
            "export",
            &run_id(lines),
            "--format",
            "jsonl",
        ]));
        text.lines()
            .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
            .filter(|v| v["type"] == "group")
            .flat_map(|g| {
                g["samples"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|s| s["advantage"].as_f64().unwrap())
                    .collect::<Vec<_>>()
            })
            .collect()
    };
    let builtin = export(&train(&a, &dir.path().join("a")));
    let plugin = export(&train(&b, &dir.path().join("b")));
    assert_eq!(builtin.len(), 32);
    assert!(builtin.iter().any(|&x| x != 0.0), "{builtin:?}");
    for (x, y) in builtin.iter().zip(&plugin) {
        assert!((x - y).abs() < 1e-3, "{builtin:?} vs {plugin:?}");
    }
}

/// Asserts the run finished with every step stored and `plugin_errors/NAME` counted.
fn assert_survived(lines: &[serde_json::Value], steps: usize, component: &str) -> f64 {
    assert_eq!(of_type(lines, "step").len(), steps);
    assert_eq!(of_type(lines, "done").len(), 1, "{lines:?}");
    let errors: f64 = of_type(lines, "step")
        .iter()
        .filter_map(|m| m["plugin_errors"][component].as_f64())
        .sum();
    assert!(errors > 0.0, "no {component} errors counted");
    let run = show(&run_id(lines));
    assert_eq!(run["status"], "finished");
    assert_eq!(run["last_step"].as_u64(), Some(steps as u64));
    let logs = run["logs"].as_array().unwrap();
    assert!(
        logs.iter()
            .any(|l| l["message"].as_str().unwrap().contains(component)),
        "{logs:?}"
    );
    errors
}

#[test]
fn faulty_plugins_in_process_never_stop_a_run() {
    let dir = tempfile::tempdir().unwrap();
    // Panics in the verifier on every 2nd call, NaN from the sampler now and then, NaN
    // advantages on every 2nd step: the run goes on.
    let cfg = config(
        dir.path(),
        "faulty-inproc",
        4,
        "[rollout]\nprompts_per_step = 4\ngroup_size = 4\nsampler = \"faulty_sampler\"\n\
         sampler_params = { mode = \"nan\", every = 7 }\n\
         [[rewards.components]]\nname = \"faulty_verifier\"\nparams = { mode = \"panic\", every = 2 }\n\
         [algorithm]\nadvantage = \"faulty_algorithm\"\nadvantage_params = { mode = \"nan\", every = 2 }\n",
    );
    let lines = train(&cfg, &dir.path().join("out"));
    assert_survived(&lines, 4, "faulty_verifier");
    assert_survived(&lines, 4, "faulty_sampler");
    assert_survived(&lines, 4, "faulty_algorithm");
    let logs = show(&run_id(&lines))["logs"].to_string();
    assert!(logs.contains("deliberate panic"), "{logs}");
    assert!(logs.contains("non-finite"), "{logs}");
    assert!(logs.contains("this step used GRPO advantages"), "{logs}");

    // A verifier that sleeps past its deadline.
    let cfg = config(
        dir.path(),
        "faulty-deadline",
        2,
        "[rollout]\nprompts_per_step = 2\ngroup_size = 2\n\
         [[rewards.components]]\nname = \"faulty_verifier\"\nparams = { mode = \"sleep\", sleep_ms = 400, every = 3 }\n\
         [plugins]\ndeadline_ms = 100\n",
    );
    let lines = train(&cfg, &dir.path().join("out2"));
    assert_survived(&lines, 2, "faulty_verifier");
    let logs = show(&run_id(&lines))["logs"].to_string();
    assert!(logs.contains("missed its deadline of 100 ms"), "{logs}");
}

#[test]
fn isolated_plugins_survive_segfaults_and_hangs() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(
        dir.path(),
        "faulty-isolated",
        3,
        "[rollout]\nprompts_per_step = 3\ngroup_size = 2\n\
         [rewards]\nverifier = \"faulty_verifier\"\nverifier_params = { mode = \"segfault\", every = 4 }\n\
         [plugins]\nisolated = [\"faulty\"]\n",
    );
    let lines = train(&cfg, &dir.path().join("out"));
    assert_survived(&lines, 3, "faulty_verifier");
    let run = show(&run_id(&lines));
    assert!(
        run["logs"].to_string().contains("SIGSEGV"),
        "{}",
        run["logs"]
    );
    // The affected samples are marked with the error.
    let samples = ok(&studio(&[
        "runs",
        "samples",
        &run_id(&lines),
        "--step",
        "2",
    ]));
    let all = [1, 2, 3]
        .iter()
        .map(|s| {
            ok(&studio(&[
                "runs",
                "samples",
                &run_id(&lines),
                "--step",
                &s.to_string(),
            ]))
        })
        .collect::<String>();
    assert!(
        all.contains("error: plugin process killed by signal 11"),
        "{samples}"
    );

    let cfg = config(
        dir.path(),
        "hang-isolated",
        2,
        "[rollout]\nprompts_per_step = 2\ngroup_size = 2\n\
         [[rewards.components]]\nname = \"faulty_verifier\"\nparams = { mode = \"sleep\", sleep_ms = 600000, every = 2 }\n\
         [plugins]\nisolated = [\"faulty_verifier\"]\ndeadline_ms = 200\n",
    );
    // A component name isolates the plugin that declares it (the child was killed, not an
    // in-process call abandoned).
    let lines = train(&cfg, &dir.path().join("out2"));
    assert_survived(&lines, 2, "faulty_verifier");
    assert!(show(&run_id(&lines))["logs"]
        .to_string()
        .contains("was killed and will be restarted"));
}

#[test]
fn configs_naming_unknown_or_misconfigured_components_are_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let d = plugins_dir().to_string_lossy().into_owned();
    let err = |sections: &str| {
        let cfg = config(dir.path(), "bad", 1, sections);
        let out_dir = dir.path().join("out").to_string_lossy().into_owned();
        let out = studio(&[
            "train",
            &cfg.to_string_lossy(),
            "--plugins",
            &d,
            "--out",
            &out_dir,
        ]);
        assert!(!out.status.success());
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    let e = err("[rollout]\nsampler = \"nucleus_magic\"\n");
    assert!(e.contains("rollout.sampler = \"nucleus_magic\""), "{e}");
    assert!(e.contains("annealed_temperature"), "{e}");
    let e =
        err("[rollout]\nsampler = \"annealed_temperature\"\nsampler_params = { start = 9.0 }\n");
    assert!(e.contains("rollout.sampler_params.start = 9"), "{e}");
    // A name in `isolated` that matches no loaded plugin (nor a component of one) would leave
    // the plugin in-process unnoticed.
    let e = err("[plugins]\nisolated = [\"nonexistent\"]\n");
    assert!(
        e.contains("plugins.isolated = \"nonexistent\" is invalid"),
        "{e}"
    );
    assert!(e.contains("loaded plugins: "), "{e}");
    assert!(
        e.contains("faulty (faulty_verifier, faulty_sampler, faulty_algorithm)"),
        "{e}"
    );
    let e = err("[[rewards.components]]\nname = \"keyword_rubric\"\nparams = { format = \"(\" }\n");
    assert!(e.contains("format: bad pattern"), "{e}");
    let e =
        err("[[rewards.components]]\nname = \"keyword_rubric\"\nparams = { colour = \"red\" }\n");
    assert!(e.contains("rewards.components[0].params.colour"), "{e}");
}

#[test]
fn sql_preset_trains_on_a_dataset_with_the_sql_verifier() {
    plugins_dir();
    let dir = tempfile::tempdir().unwrap();
    let preset = repo()
        .join("app/presets/sql.toml")
        .to_string_lossy()
        .into_owned();
    let out = dir.path().join("out").to_string_lossy().into_owned();
    let text = ok(&studio(&[
        "train", &preset, "--json", "--out", &out, "--steps", "2",
    ]));
    let lines: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let steps = of_type(&lines, "step");
    assert_eq!(steps.len(), 2);
    assert!(
        steps[1]["reward_components"]["sql_exec"].is_object(),
        "{}",
        steps[1]
    );
    assert!(steps[1].get("plugin_errors").is_none(), "{}", steps[1]);
    let started = &of_type(&lines, "started")[0];
    assert_eq!(started["task"], "dataset");
    // Every completion was executed (and, from this arithmetic-trained policy, rejected with
    // SQLite's reason).
    let samples = ok(&studio(&[
        "runs",
        "samples",
        &run_id(&lines),
        "--step",
        "1",
    ]));
    assert!(
        samples.contains("sql_exec=0.00 (query failed:"),
        "{samples}"
    );
    let run = show(&run_id(&lines));
    let plugins = run["plugins"].to_string();
    assert!(plugins.contains("sql-tools 0.1.0"), "{plugins}");
}

#[test]
fn in_process_plugin_output_stays_off_the_json_stream() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(
        dir.path(),
        "faulty-print",
        2,
        "[rollout]\nprompts_per_step = 2\ngroup_size = 2\nsampler = \"faulty_sampler\"\n\
         sampler_params = { mode = \"print\", every = 5 }\n\
         [rewards]\nverifier = \"faulty_verifier\"\nverifier_params = { mode = \"print\" }\n\
         [algorithm]\nadvantage = \"faulty_algorithm\"\nadvantage_params = { mode = \"print\" }\n",
    );
    let out = studio(&[
        "train",
        &cfg.to_string_lossy(),
        "--json",
        "--out",
        &dir.path().join("out").to_string_lossy(),
        "--plugins",
        &plugins_dir().to_string_lossy(),
    ]);
    let stdout = ok(&out);
    for line in stdout.lines() {
        let v: Result<serde_json::Value, _> = serde_json::from_str(line);
        assert!(v.is_ok(), "not a JSON event on stdout: {line:?}");
    }
    let lines: Vec<serde_json::Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(of_type(&lines, "step").len(), 2);
    assert_eq!(of_type(&lines, "done").len(), 1);
    // The plugins did print: it went to stderr.
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("faulty plugin writes to stdout on call"),
        "{stderr}"
    );
}

#[test]
fn verify_takes_text_parameters_as_written() {
    let rubric = lib("rlvr_plugin_rubric").to_string_lossy().into_owned();
    let score = |param: &str, completion: &str| -> serde_json::Value {
        let text = ok(&studio(&[
            "verify",
            "--plugin",
            &rubric,
            "--component",
            "keyword_rubric",
            "--param",
            param,
            "--param",
            "required_weight=2",
            "--completion",
            completion,
            "--json",
        ]));
        serde_json::from_str(text.trim()).unwrap()
    };
    // `required` is a text parameter: `2` is the pattern "2", and quotes are not part of it.
    for param in ["required=2", "required=\"2\"", "required='2'"] {
        let v = score(param, "x2");
        assert_eq!(v["ok"]["score"], 1.0, "{param}: {v}");
        let v = score(param, "x3");
        assert_eq!(v["ok"]["score"], 0.0, "{param}: {v}");
    }
    // A number parameter still refuses text, naming the key.
    let out = studio(&[
        "verify",
        "--plugin",
        &rubric,
        "--component",
        "keyword_rubric",
        "--param",
        "max_chars=lots",
        "--completion",
        "x",
    ]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("--param.max_chars = \"lots\" is invalid"),
        "{err}"
    );
}

#[test]
fn an_in_process_plugin_crash_leaves_a_trace_in_stderr_and_the_history() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(
        dir.path(),
        "faulty-inproc-crash",
        3,
        "[rollout]\nprompts_per_step = 2\ngroup_size = 2\n\
         [rewards]\nverifier = \"faulty_verifier\"\nverifier_params = { mode = \"segfault\", every = 3 }\n",
    );
    let out_dir = dir.path().join("out");
    let plugins = plugins_dir().to_string_lossy().into_owned();
    let o = studio(&[
        "train",
        &cfg.to_string_lossy(),
        "--json",
        "--out",
        &out_dir.to_string_lossy(),
        "--plugins",
        &plugins,
    ]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        !o.status.success(),
        "survived an in-process segfault: {err}"
    );
    let trace = "crashed in verifier faulty_verifier (SIGSEGV)";
    assert!(
        err.contains(trace) && err.contains("plugin faulty"),
        "{err}"
    );
    let log = std::fs::read_to_string(out_dir.join("plugin-crash.log")).unwrap();
    assert!(log.contains(trace), "{log}");
    let first = String::from_utf8_lossy(&o.stdout);
    let first: serde_json::Value =
        serde_json::from_str(first.lines().next().expect("no event before the crash")).unwrap();
    let id = first["run_id"].as_i64().unwrap().to_string();
    // The next look at the run records the crash as its error.
    let run = show(&id);
    assert_eq!(run["status"], "failed", "{run}");
    assert!(run["error"].as_str().unwrap().contains(trace), "{run}");
    assert!(run["logs"].to_string().contains(trace), "{}", run["logs"]);
    assert!(!out_dir.join("plugin-crash.log").exists());
}

#[test]
fn missing_plugin_folders_are_errors_naming_the_folder() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("no-such-plugins");
    let m = missing.to_string_lossy().into_owned();
    let cfg = config(dir.path(), "nofolder", 1, "");
    let out = dir.path().join("out").to_string_lossy().into_owned();
    let o = studio(&[
        "train",
        &cfg.to_string_lossy(),
        "--plugins",
        &m,
        "--out",
        &out,
    ]);
    let e = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success());
    assert!(e.contains("--plugins") && e.contains(&m), "{e}");
    let cfg = config(
        dir.path(),
        "nofolder2",
        1,
        &format!("[plugins]\ndirs = [{m:?}]\n"),
    );
    let o = studio(&["train", &cfg.to_string_lossy(), "--out", &out]);
    let e = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success());
    assert!(e.contains("plugins.dirs") && e.contains(&m), "{e}");
}
