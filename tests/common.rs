//! Helpers shared by the end-to-end tests: the binary, presets, JSON lines, error checks.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

/// One run-history database per test binary (tests run in parallel and share it, as the GUI
/// and a CLI run share one).
pub fn test_db() -> &'static Path {
    static DB: OnceLock<tempfile::TempDir> = OnceLock::new();
    DB.get_or_init(|| tempfile::tempdir().unwrap()).path()
}

/// The binary, with the test database as its default history.
pub fn bin() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_rlvr-studio"));
    c.env("RLVR_STUDIO_DB", test_db().join("history.sqlite"));
    c
}

pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

pub fn preset(name: &str) -> PathBuf {
    repo().join("app/presets").join(name)
}

/// Runs the binary with `args`, asserting success.
pub fn run_ok<I, S>(args: I) -> Output
where
    I: IntoIterator<Item = S>,
    S: AsRef<std::ffi::OsStr>,
{
    let out = bin().args(args).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

pub fn json_lines(out: &Output) -> Vec<serde_json::Value> {
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON: {l:?}: {e}")))
        .collect()
}

/// `rlvr-studio train PRESET --json --out OUT EXTRA...`: asserts success, returns the JSON lines.
pub fn train_json(preset: &Path, out_dir: &Path, extra: &[&str]) -> Vec<serde_json::Value> {
    let mut args: Vec<std::ffi::OsString> = vec![
        "train".into(),
        preset.into(),
        "--json".into(),
        "--out".into(),
        out_dir.into(),
    ];
    args.extend(extra.iter().map(Into::into));
    let out = run_ok(args);
    json_lines(&out)
}

pub fn of_type<'a>(lines: &'a [serde_json::Value], t: &str) -> Vec<&'a serde_json::Value> {
    lines.iter().filter(|v| v["type"] == t).collect()
}

/// Runs the binary with `args`, asserting failure with one `error: ` line that contains each
/// of `needles`.
pub fn expect_error(args: &[&str], needles: &[&str]) {
    let out = bin().args(args).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{args:?} succeeded");
    assert!(!err.contains("panicked"), "{args:?} panicked: {err}");
    assert!(err.starts_with("error: "), "{args:?}: {err}");
    assert_eq!(err.trim_end().lines().count(), 1, "one line: {err}");
    for n in needles {
        assert!(err.contains(n), "{args:?}: {err:?} lacks {n:?}");
    }
}
