//! SQL-execution verifier: runs the generated query and the reference query on an SQLite
//! database opened read-only, and passes when their result sets match (as multisets of rows, or
//! as ordered lists with `order_matters`). Each query has a time limit (SQLite's progress
//! handler interrupts it). A query that fails to parse or run is a failed sample with the
//! database's message as the reason, not a plugin error.
//!
//! The database is the `database` parameter, or the task metadata's `"db"` field when present
//! (per-problem databases, as in Spider/BIRD-style datasets).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use rlvr_plugin_api::{export_plugin, Plugin, Sample, Spec, Verdict, Verifier};
use rusqlite::types::ValueRef;
use rusqlite::{Connection, OpenFlags};

/// The verifier.
pub struct SqlExec {
    database: PathBuf,
    timeout: Duration,
    order_matters: bool,
    max_rows: usize,
}

/// One row, each value rendered as text (integers and reals that are equal compare equal).
type Row = Vec<String>;

fn render(v: ValueRef<'_>) -> String {
    match v {
        ValueRef::Null => "NULL".into(),
        ValueRef::Integer(i) => i.to_string(),
        ValueRef::Real(f) if f.fract() == 0.0 && f.abs() < 1e15 => (f as i64).to_string(),
        ValueRef::Real(f) => format!("{f:.6}"),
        ValueRef::Text(t) => String::from_utf8_lossy(t).into_owned(),
        ValueRef::Blob(b) => format!("blob:{}", b.len()),
    }
}

impl SqlExec {
    /// The database of a sample: the metadata's `"db"` or the `database` parameter; a relative
    /// path is resolved against the dataset's folder (`"dataset_dir"` in the metadata). A `.sql`
    /// file is a script run into an in-memory database, which is then made query-only.
    fn open(&self, meta: &rlvr_plugin_api::serde_json::Value) -> Result<Connection, String> {
        let mut path = meta
            .get("db")
            .and_then(|v| v.as_str())
            .map(PathBuf::from)
            .unwrap_or_else(|| self.database.clone());
        if path.as_os_str().is_empty() {
            return Err(
                "no database: set the `database` parameter or a \"db\" field in the task metadata"
                    .into(),
            );
        }
        if path.is_relative() {
            if let Some(dir) = meta.get("dataset_dir").and_then(|v| v.as_str()) {
                path = PathBuf::from(dir).join(path);
            }
        }
        if path.extension().is_some_and(|x| x == "sql") {
            let script = std::fs::read_to_string(&path)
                .map_err(|e| format!("{}: cannot read the SQL script: {e}", path.display()))?;
            let conn = Connection::open_in_memory().map_err(|e| e.to_string())?;
            conn.execute_batch(&script)
                .map_err(|e| format!("{}: the script failed: {e}", path.display()))?;
            conn.pragma_update(None, "query_only", true)
                .map_err(|e| e.to_string())?;
            return Ok(conn);
        }
        Connection::open_with_flags(
            &path,
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(|e| format!("{}: cannot open read-only: {e}", path.display()))
    }

    /// Runs one query with the time limit; `Err` carries SQLite's message.
    fn run(&self, conn: &Connection, sql: &str) -> Result<Vec<Row>, String> {
        let sql = sql.trim().trim_end_matches(';');
        if sql.is_empty() {
            return Err("empty query".into());
        }
        let start = Instant::now();
        let limit = self.timeout;
        // A watchdog interrupts the query at the time limit; finishing first ends it.
        let (done, wait) = std::sync::mpsc::channel::<()>();
        let handle = conn.get_interrupt_handle();
        std::thread::spawn(move || {
            if let Err(std::sync::mpsc::RecvTimeoutError::Timeout) = wait.recv_timeout(limit) {
                handle.interrupt();
            }
        });
        let result = (|| {
            let timed_out = |e: rusqlite::Error| {
                if start.elapsed() >= limit {
                    format!("query exceeded {} ms", limit.as_millis())
                } else {
                    e.to_string()
                }
            };
            let mut stmt = conn.prepare(sql).map_err(timed_out)?;
            if !stmt.readonly() {
                return Err("only read-only queries are allowed".to_string());
            }
            let cols = stmt.column_count();
            let mut rows = stmt.query([]).map_err(timed_out)?;
            let mut out = Vec::new();
            while let Some(r) = rows.next().map_err(timed_out)? {
                let row = (0..cols)
                    .map(|i| r.get_ref(i).map(render).map_err(|e| e.to_string()))
                    .collect::<Result<Row, String>>()?;
                out.push(row);
                if out.len() > self.max_rows {
                    return Err(format!("more than {} rows", self.max_rows));
                }
            }
            Ok(out)
        })();
        drop(done);
        result
    }

    fn compare(&self, want: &[Row], got: &[Row]) -> (bool, f64) {
        if self.order_matters {
            return (want == got, overlap(want, got));
        }
        fn count(rows: &[Row]) -> BTreeMap<&Row, usize> {
            let mut m: BTreeMap<&Row, usize> = BTreeMap::new();
            for r in rows {
                *m.entry(r).or_default() += 1;
            }
            m
        }
        (count(want) == count(got), overlap(want, got))
    }
}

/// Jaccard overlap of the two row multisets (partial credit, logged as a sub-score).
fn overlap(want: &[Row], got: &[Row]) -> f64 {
    if want.is_empty() && got.is_empty() {
        return 1.0;
    }
    let mut rest: Vec<&Row> = got.iter().collect();
    let mut common = 0usize;
    for r in want {
        if let Some(i) = rest.iter().position(|g| *g == r) {
            rest.swap_remove(i);
            common += 1;
        }
    }
    common as f64 / (want.len() + got.len() - common) as f64
}

impl Verifier for SqlExec {
    fn verify(&self, s: &Sample<'_>) -> Result<Verdict, String> {
        let conn = self.open(s.meta)?;
        // The reference query failing is the dataset's fault: report it as an error.
        let want = self
            .run(&conn, s.answer)
            .map_err(|e| format!("reference query failed: {e}"))?;
        Ok(match self.run(&conn, s.completion) {
            Err(e) => {
                Verdict::fail(format!("query failed: {e}")).with_sub_score("row_overlap", 0.0)
            }
            Ok(got) => {
                let (same, ov) = self.compare(&want, &got);
                let v = if same {
                    Verdict::pass(format!("result sets match ({} rows)", want.len()))
                } else {
                    Verdict::fail(format!(
                        "result sets differ: expected {} rows, got {} ({:.0}% overlap)",
                        want.len(),
                        got.len(),
                        ov * 100.0
                    ))
                };
                v.with_sub_score("row_overlap", ov)
            }
        })
    }
}

fn plugin() -> Plugin {
    Plugin::new(
        "sql-tools",
        env!("CARGO_PKG_VERSION"),
        "Verifies generated SQL by executing it on a read-only SQLite database",
    )
    .verifier(
        Spec::new(
            "sql_exec",
            "runs the generated and the reference query read-only; passes when the result sets match",
        )
        .text(
            "database",
            "",
            "SQLite database file, or a .sql script loaded into memory (a task metadata \"db\" \
             field overrides it; relative paths are relative to the dataset file)",
        )
        .int("timeout_ms", 2000, 1, 60_000, "time limit of each query in milliseconds")
        .bool("order_matters", false, "compare rows in order (for ORDER BY questions)")
        .int("max_rows", 10_000, 1, 10_000_000, "a query returning more rows fails"),
        |p| {
            Ok(SqlExec {
                database: PathBuf::from(p.text("database")),
                timeout: Duration::from_millis(p.u("timeout_ms") as u64),
                order_matters: p.b("order_matters"),
                max_rows: p.u("max_rows"),
            })
        },
    )
}

export_plugin!(plugin);

#[cfg(test)]
mod tests {
    use super::*;
    use rlvr_plugin_api::serde_json::{json, Value};

    fn db() -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("shop.sqlite");
        let c = Connection::open(&path).unwrap();
        c.execute_batch(
            "CREATE TABLE items(id INTEGER, name TEXT, price REAL);
             INSERT INTO items VALUES (1,'pen',2.0),(2,'book',12.5),(3,'ink',2.0);",
        )
        .unwrap();
        (dir, path)
    }

    fn verifier(path: &std::path::Path, timeout_ms: u64) -> SqlExec {
        SqlExec {
            database: path.into(),
            timeout: Duration::from_millis(timeout_ms),
            order_matters: false,
            max_rows: 1000,
        }
    }

    fn check(v: &SqlExec, completion: &str, answer: &str, meta: &Value) -> Result<Verdict, String> {
        v.verify(&Sample {
            prompt: "",
            completion,
            answer,
            meta,
        })
    }

    #[test]
    fn equivalent_queries_pass_and_different_ones_fail() {
        let (_d, path) = db();
        let v = verifier(&path, 2000);
        let n = Value::Null;
        let ok = check(
            &v,
            "select name from items where price < 3 order by id desc",
            "SELECT name FROM items WHERE price = 2",
            &n,
        )
        .unwrap();
        assert_eq!(ok.passed, Some(true), "{ok:?}");
        let bad = check(
            &v,
            "select name from items",
            "select name from items where price = 2",
            &n,
        )
        .unwrap();
        assert_eq!(bad.passed, Some(false));
        assert!(
            bad.reason.contains("expected 2 rows, got 3"),
            "{}",
            bad.reason
        );
        assert_eq!(bad.sub_scores[0].1, 2.0 / 3.0);
        let syntax = check(&v, "selec name", "select 1", &n).unwrap();
        assert!(
            syntax.reason.starts_with("query failed:"),
            "{}",
            syntax.reason
        );
    }

    #[test]
    fn writes_are_refused_and_the_database_is_untouched() {
        let (_d, path) = db();
        let v = verifier(&path, 2000);
        let r = check(&v, "delete from items", "select 1", &Value::Null).unwrap();
        assert_eq!(r.passed, Some(false));
        let c = Connection::open(&path).unwrap();
        let n: i64 = c
            .query_row("select count(*) from items", [], |r| r.get(0))
            .unwrap();
        assert_eq!(n, 3);
    }

    #[test]
    fn slow_queries_hit_the_time_limit() {
        let (_d, path) = db();
        let v = verifier(&path, 50);
        let endless =
            "with recursive c(x) as (select 1 union all select x+1 from c) select count(*) from c";
        let t = Instant::now();
        let r = check(&v, endless, "select 1", &Value::Null).unwrap();
        assert!(t.elapsed() < Duration::from_secs(5));
        assert_eq!(r.passed, Some(false));
        assert!(
            r.reason.contains("exceeded 50 ms") || r.reason.contains("interrupt"),
            "{}",
            r.reason
        );
    }

    #[test]
    fn sql_scripts_relative_to_the_dataset_are_query_only() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("shop.sql"),
            "CREATE TABLE t(n INTEGER); INSERT INTO t VALUES (1),(2);",
        )
        .unwrap();
        let v = verifier(std::path::Path::new("shop.sql"), 2000);
        let meta = json!({ "dataset_dir": dir.path().to_string_lossy() });
        let ok = check(
            &v,
            "select n from t",
            "select n from t order by n desc",
            &meta,
        )
        .unwrap();
        assert_eq!(ok.passed, Some(true), "{ok:?}");
        let write = check(&v, "insert into t values (3)", "select 1", &meta).unwrap();
        assert_eq!(write.passed, Some(false), "{write:?}");
    }

    #[test]
    fn metadata_names_the_database_and_a_broken_reference_is_an_error() {
        let (_d, path) = db();
        let v = verifier(std::path::Path::new(""), 2000);
        let meta = json!({ "db": path.to_string_lossy() });
        assert_eq!(
            check(&v, "select 1", "select 1", &meta).unwrap().passed,
            Some(true)
        );
        assert!(check(&v, "select 1", "select 1", &Value::Null).is_err());
        assert!(check(&v, "select 1", "select nope from nothing", &meta)
            .unwrap_err()
            .contains("reference query failed"));
    }
}
