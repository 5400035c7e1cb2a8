//! The database schema and its migrations. `PRAGMA user_version` holds the number of migrations
//! applied; a migration is appended, never edited, once released.
//!
//! | table | one row per | key |
//! |---|---|---|
//! | `runs` | run: name, status, created/finished, resolved config (TOML), seed, engine version, model/dataset hashes, output folder, notes, error | `id` (AUTOINCREMENT: a deleted run's id is never reused) |
//! | `run_tags` | tag of a run | (`run_id`, `tag`) |
//! | `run_plugins` | plugin file a run used, with its SHA-256 | (`run_id`, `path`) |
//! | `metric_names` | metric name (`reward_mean`, `kl_by_kind/k3`, `eval/pass_at_k/8`...) | `id` |
//! | `scalars` | value of one metric at one step (train metrics and `eval/…`) | (`run_id`, `metric_id`, `step`) |
//! | `sample_groups` | prompt of a step with its reference answer | `id`; unique (`run_id`, `step`, `idx`) |
//! | `samples` | completion: text, reward, components with reasons (JSON), passed, advantage, length, truncated, per-token log-prob/entropy/advantage (f16 blob) | (`group_id`, `idx`) |
//! | `checkpoints` | resume state or saved policy folder | (`run_id`, `kind`, `step`) |
//! | `logs` | log line or error of a run | `id` |
//! | `deleted_runs` | run deleted from the history: its id, name and output folder (for `runs check`'s orphan folders) | `id` |

/// Schema version this build writes (= number of migrations).
pub const VERSION: i64 = MIGRATIONS.len() as i64;

/// Migrations, oldest first; migration `i` takes the schema from version `i` to `i + 1`.
pub const MIGRATIONS: &[&str] = &[V1, V2];

const V1: &str = r#"
CREATE TABLE runs (
    id              INTEGER PRIMARY KEY,
    name            TEXT NOT NULL,
    status          TEXT NOT NULL CHECK (status IN ('running', 'interrupted', 'finished', 'failed')),
    created         TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    updated         TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    finished        TEXT,
    config          TEXT NOT NULL,
    seed            INTEGER NOT NULL,
    engine_version  TEXT NOT NULL,
    task            TEXT NOT NULL DEFAULT '',
    model_path      TEXT NOT NULL,
    model_hash      TEXT,
    dataset_hash    TEXT,
    params          INTEGER,
    steps_planned   INTEGER NOT NULL,
    last_step       INTEGER NOT NULL DEFAULT 0,
    out_dir         TEXT NOT NULL,
    pid             INTEGER,
    host            TEXT,
    notes           TEXT NOT NULL DEFAULT '',
    error           TEXT
);
CREATE INDEX runs_by_created ON runs (created);

CREATE TABLE run_tags (
    run_id  INTEGER NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
    tag     TEXT NOT NULL,
    PRIMARY KEY (run_id, tag)
) WITHOUT ROWID;
CREATE INDEX run_tags_by_tag ON run_tags (tag);

CREATE TABLE run_plugins (
    run_id  INTEGER NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
    path    TEXT NOT NULL,
    name    TEXT NOT NULL,
    sha256  TEXT NOT NULL,
    PRIMARY KEY (run_id, path)
) WITHOUT ROWID;

CREATE TABLE metric_names (
    id      INTEGER PRIMARY KEY,
    name    TEXT NOT NULL UNIQUE
);

CREATE TABLE scalars (
    run_id      INTEGER NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
    metric_id   INTEGER NOT NULL REFERENCES metric_names (id),
    step        INTEGER NOT NULL,
    value       REAL,
    PRIMARY KEY (run_id, metric_id, step)
) WITHOUT ROWID;

CREATE TABLE sample_groups (
    id      INTEGER PRIMARY KEY,
    run_id  INTEGER NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
    step    INTEGER NOT NULL,
    idx     INTEGER NOT NULL,
    prompt  TEXT NOT NULL,
    answer  TEXT NOT NULL,
    UNIQUE (run_id, step, idx)
);

CREATE TABLE samples (
    group_id    INTEGER NOT NULL REFERENCES sample_groups (id) ON DELETE CASCADE,
    idx         INTEGER NOT NULL,
    completion  TEXT NOT NULL,
    reward      REAL NOT NULL,
    passed      INTEGER NOT NULL,
    advantage   REAL NOT NULL,
    length      INTEGER NOT NULL,
    truncated   INTEGER NOT NULL,
    components  TEXT NOT NULL,
    token_stats BLOB NOT NULL,
    PRIMARY KEY (group_id, idx)
) WITHOUT ROWID;

CREATE TABLE checkpoints (
    run_id  INTEGER NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
    kind    TEXT NOT NULL CHECK (kind IN ('resume', 'checkpoint', 'final')),
    step    INTEGER NOT NULL,
    path    TEXT NOT NULL,
    bytes   INTEGER,
    created TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    PRIMARY KEY (run_id, kind, step)
) WITHOUT ROWID;

CREATE TABLE logs (
    id      INTEGER PRIMARY KEY,
    run_id  INTEGER NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
    time    TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    step    INTEGER NOT NULL,
    level   TEXT NOT NULL,
    message TEXT NOT NULL
);
CREATE INDEX logs_by_run ON logs (run_id, step);
"#;

/// Version 2: run ids are never reused (`AUTOINCREMENT`; the table is rebuilt, rows and ids
/// kept), and deleted runs leave a row in `deleted_runs`. Runs with foreign keys off (the
/// rebuild drops the old `runs` table, which would otherwise cascade).
const V2: &str = r#"
CREATE TABLE runs_v2 (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    name            TEXT NOT NULL,
    status          TEXT NOT NULL CHECK (status IN ('running', 'interrupted', 'finished', 'failed')),
    created         TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    updated         TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    finished        TEXT,
    config          TEXT NOT NULL,
    seed            INTEGER NOT NULL,
    engine_version  TEXT NOT NULL,
    task            TEXT NOT NULL DEFAULT '',
    model_path      TEXT NOT NULL,
    model_hash      TEXT,
    dataset_hash    TEXT,
    params          INTEGER,
    steps_planned   INTEGER NOT NULL,
    last_step       INTEGER NOT NULL DEFAULT 0,
    out_dir         TEXT NOT NULL,
    pid             INTEGER,
    host            TEXT,
    notes           TEXT NOT NULL DEFAULT '',
    error           TEXT
);
INSERT INTO runs_v2 (id, name, status, created, updated, finished, config, seed, engine_version,
    task, model_path, model_hash, dataset_hash, params, steps_planned, last_step, out_dir, pid,
    host, notes, error)
SELECT id, name, status, created, updated, finished, config, seed, engine_version,
    task, model_path, model_hash, dataset_hash, params, steps_planned, last_step, out_dir, pid,
    host, notes, error FROM runs;
DROP TABLE runs;
ALTER TABLE runs_v2 RENAME TO runs;
CREATE INDEX runs_by_created ON runs (created);

CREATE TABLE deleted_runs (
    id          INTEGER PRIMARY KEY,
    name        TEXT NOT NULL,
    out_dir     TEXT NOT NULL,
    deleted     TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
);
"#;

/// The tables and indexes a database at schema `version` must have, with each table's columns:
/// `(type, name, columns)`, built by applying the migrations to an empty in-memory database.
pub fn expected_objects(version: i64) -> rusqlite::Result<Vec<(String, String, Vec<String>)>> {
    let c = rusqlite::Connection::open_in_memory()?;
    for sql in MIGRATIONS
        .iter()
        .take(usize::try_from(version).unwrap_or(0))
    {
        c.execute_batch(sql)?;
    }
    objects(&c)
}

/// The tables and indexes of a database (SQLite's internal ones left out), with each table's
/// columns, in name order.
pub fn objects(c: &rusqlite::Connection) -> rusqlite::Result<Vec<(String, String, Vec<String>)>> {
    let mut st = c.prepare(
        "SELECT type, name FROM sqlite_schema WHERE type IN ('table', 'index') \
         AND name NOT LIKE 'sqlite_%' ORDER BY name",
    )?;
    let names: Vec<(String, String)> = st
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
        .collect::<rusqlite::Result<_>>()?;
    let mut out = Vec::new();
    for (kind, name) in names {
        let mut cols = Vec::new();
        if kind == "table" {
            let mut st = c.prepare("SELECT name FROM pragma_table_info(?1) ORDER BY cid")?;
            cols = st
                .query_map([&name], |r| r.get(0))?
                .collect::<rusqlite::Result<_>>()?;
        }
        out.push((kind, name, cols));
    }
    Ok(out)
}
