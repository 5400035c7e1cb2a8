//! RLVR Studio's run history in SQLite: every run, its per-step metrics, evaluations, sampled
//! groups (with reward breakdowns and per-token statistics), checkpoints and log lines.
//!
//! - [`Store::open`] opens (or creates) a database: schema versioned with `PRAGMA user_version`
//!   and migrated forward, WAL journal, foreign keys, a busy timeout so the GUI and a CLI run can
//!   share one file. A file that is not ours, damaged, empty or from a newer build is an error
//!   naming it, never a silently empty history.
//! - [`recorder`]: the writer thread that turns an engine event stream into rows, one
//!   transaction per step, and writes the run folder and the resume checkpoint after the step is
//!   stored.
//! - [`read`]: the queries the CLI's `runs` commands and the GUI use.
//! - [`export`]: the metrics/samples export (CSV, JSON lines) and the config diff, shared by
//!   the CLI and the GUI.
//!
//! The schema is in [`schema`] (and in `ARCHITECTURE.md`).

mod amend;
pub mod export;
pub mod files;
pub mod read;
pub mod recorder;
pub mod schema;
mod tokens;
mod write;

use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::{Connection, OpenFlags};

pub use files::{RemovedFiles, ResumeFrom};
pub use read::{CheckReport, RunFilter, RunRow, RunStatus, StoredGroup, StoredSample};
pub use recorder::{Recorder, RecorderSummary};
pub use write::{check_tag, flatten, NewRun, MAX_TAG_CHARS};

/// Everything that can go wrong with the history database. Messages name the file.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// SQLite failed on this database.
    #[error("{}: {msg}", path.display())]
    Sqlite {
        /// The database file.
        path: PathBuf,
        /// What failed, in words, with SQLite's message.
        msg: String,
    },
    /// The file is not a usable RLVR Studio database (empty, foreign, damaged, newer).
    #[error("{}: {msg}", path.display())]
    Unusable {
        /// The database file.
        path: PathBuf,
        /// Why, and what to do.
        msg: String,
    },
    /// No run matches a reference given by the user.
    #[error("{0}")]
    NoSuchRun(String),
    /// A file next to the database (run folder, checkpoint) could not be read or written.
    #[error("{}: {err}", path.display())]
    Io {
        /// The path involved.
        path: PathBuf,
        /// The error.
        err: std::io::Error,
    },
    /// Writing the run folder or a checkpoint slot failed.
    #[error(transparent)]
    RunFolder(#[from] rlvr_core::CoreError),
    /// Stored data could not be decoded.
    #[error("{0}")]
    Corrupt(String),
    /// A value given by the user cannot be stored (an empty or overlong tag).
    #[error("{0}")]
    Invalid(String),
}

/// Store result.
pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// The `application_id` stamped in our databases ("RLVR" in ASCII).
pub const APPLICATION_ID: i32 = 0x524c_5652;

/// The default database: `history.sqlite` in the platform's data directory
/// (`~/.local/share/rlvr-studio` on Linux), or `$RLVR_STUDIO_DB` when set.
pub fn default_db_path() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("RLVR_STUDIO_DB") {
        return Some(PathBuf::from(p));
    }
    directories::ProjectDirs::from("org", "RLVR Studio", "rlvr-studio")
        .map(|d| d.data_dir().join("history.sqlite"))
}

/// An open history database.
pub struct Store {
    pub(crate) conn: Connection,
    pub(crate) path: PathBuf,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store").field("path", &self.path).finish()
    }
}

/// What SQLite's error means for a user, in words. No advice here moves or deletes the file:
/// another process may be writing it.
fn explain(e: &rusqlite::Error) -> String {
    use rusqlite::ErrorCode as C;
    match e.sqlite_error_code() {
        Some(C::NotADatabase) => {
            format!("not an RLVR Studio database (SQLite: {e}); give another file with --db")
        }
        Some(C::DatabaseCorrupt) => format!(
            "the database is damaged (SQLite: {e}); `rlvr-studio runs check` reports what is \
             readable; give another file with --db to start a new history"
        ),
        Some(C::ReadOnly) | Some(C::PermissionDenied) => format!(
            "cannot write the database (SQLite: {e}); the file or its folder is read-only — \
             give a writable location with --db"
        ),
        Some(C::CannotOpen) => format!(
            "cannot open the database (SQLite: {e}); does the folder exist and is it writable? \
             Give another location with --db"
        ),
        Some(C::DatabaseBusy) | Some(C::DatabaseLocked) => {
            format!("{LOCKED} (SQLite: {e})")
        }
        Some(C::DiskFull) => format!("the disk is full (SQLite: {e})"),
        _ => format!("SQLite: {e}"),
    }
}

/// The start of the message of a database another connection kept locked.
const LOCKED: &str = "the database stayed locked by another process for too long";

/// How long a 0-byte file counts as a history another process is creating right now (SQLite
/// creates the file empty and writes the schema when the creator's first transaction commits).
const CREATING_GRACE: Duration = Duration::from_secs(60);

/// How long to wait for another process's lock.
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

/// A `--db` that SQLite would not treat as a plain file: `:memory:`, an empty name, or a
/// `file:` URI (which can also name an in-memory database). A history there would be lost.
fn refuse_special_name(path: &Path) -> Result<()> {
    let s = path.to_string_lossy();
    let why = if s.is_empty() {
        "an empty name"
    } else if s == ":memory:" {
        "SQLite's in-memory database"
    } else if s.starts_with("file:") {
        "an SQLite URI (it may name an in-memory database)"
    } else {
        return Ok(());
    };
    Err(StoreError::Unusable {
        path: path.to_path_buf(),
        msg: format!(
            "is {why}, not a database file: a history there would be lost when the process \
             ends; give a file path with --db (write ./{s} for a file of that name)"
        ),
    })
}

/// `application_id`, `user_version` and the number of schema objects of an open database.
/// One statement, so all three come from one snapshot (another process may be creating the
/// schema meanwhile).
fn header(conn: &Connection) -> rusqlite::Result<(i32, i64, i64)> {
    conn.query_row(
        "SELECT (SELECT application_id FROM pragma_application_id), \
                (SELECT user_version FROM pragma_user_version), \
                (SELECT count(*) FROM sqlite_schema)",
        [],
        |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
    )
}

/// Refuses a database that is not ours, has a damaged version, or comes from a newer build.
fn check_header(path: &Path, app_id: i32, version: i64, objects: i64) -> Result<()> {
    let unusable = |msg: String| {
        Err(StoreError::Unusable {
            path: path.to_path_buf(),
            msg,
        })
    };
    if app_id != APPLICATION_ID && (objects > 0 || version != 0) {
        return unusable(format!(
            "an SQLite database of another application (application_id {app_id:#x}), not an \
             RLVR Studio history; give another file with --db"
        ));
    }
    if version < 0 || (version == 0 && objects > 0) {
        return unusable(format!(
            "damaged schema version (user_version {version}, but {objects} tables and indexes \
             exist); expected 1..={}; `rlvr-studio runs check` reports what is readable",
            schema::VERSION
        ));
    }
    if version > schema::VERSION {
        return unusable(format!(
            "written by a newer RLVR Studio (schema version {version}; this build reads \
             versions up to {}); upgrade RLVR Studio or give another file with --db",
            schema::VERSION
        ));
    }
    Ok(())
}

/// Whether this process may write `path` and create files beside it (`access(2)`, which also
/// reports a read-only file system to root).
fn writable(path: &Path) -> bool {
    #[cfg(unix)]
    {
        use std::os::unix::ffi::OsStrExt as _;
        let ok = |p: &Path| {
            let p = if p.as_os_str().is_empty() {
                Path::new(".")
            } else {
                p
            };
            std::ffi::CString::new(p.as_os_str().as_bytes()).is_ok_and(|c| {
                // SAFETY: `c` is a valid NUL-terminated string; access only reads it.
                unsafe { libc::access(c.as_ptr(), libc::W_OK) == 0 }
            })
        };
        ok(path) && path.parent().is_none_or(ok)
    }
    #[cfg(not(unix))]
    {
        let _ = path;
        true
    }
}

/// `path` as an SQLite `file:` URI with `query` (the path percent-encoded).
fn file_uri(path: &Path, query: &str) -> String {
    let abs = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
    let mut uri = String::from("file:");
    for b in abs.to_string_lossy().bytes() {
        if b.is_ascii_alphanumeric() || b"/-_.~".contains(&b) {
            uri.push(char::from(b));
        } else {
            uri.push_str(&format!("%{b:02X}"));
        }
    }
    uri.push('?');
    uri.push_str(query);
    uri
}

impl Store {
    pub(crate) fn err(&self, e: rusqlite::Error) -> StoreError {
        StoreError::Sqlite {
            path: self.path.clone(),
            msg: explain(&e),
        }
    }

    /// Opens the database at `path` for reading and writing, creating it (and its folder) when
    /// the file does not exist, and migrating an older schema forward.
    ///
    /// Safe when several processes open a new file at once: the schema is created (or
    /// migrated) inside `BEGIN IMMEDIATE` after re-reading the version, so one process creates
    /// it and the others wait for it (up to the busy timeout) and find it done. A 0-byte file
    /// changed in the last minute counts as a history being created; an older one is refused.
    /// `:memory:`, an empty name and `file:` URIs are refused (a history there would be lost).
    pub fn open(path: &Path) -> Result<Self> {
        // SQLite reports some lock conflicts at once instead of waiting out the busy timeout
        // (a journal-mode switch or a lock upgrade racing another new connection): retry those
        // until the timeout.
        let deadline = std::time::Instant::now() + BUSY_TIMEOUT;
        loop {
            match Self::open_once(path) {
                Err(StoreError::Sqlite { msg, .. })
                    if msg.starts_with(LOCKED) && std::time::Instant::now() < deadline =>
                {
                    std::thread::sleep(Duration::from_millis(20));
                }
                other => return other,
            }
        }
    }

    fn open_once(path: &Path) -> Result<Self> {
        refuse_special_name(path)?;
        let sq = |e: rusqlite::Error| StoreError::Sqlite {
            path: path.to_path_buf(),
            msg: explain(&e),
        };
        let unusable = |msg: String| StoreError::Unusable {
            path: path.to_path_buf(),
            msg,
        };
        match std::fs::metadata(path) {
            Ok(meta) => {
                if meta.is_dir() {
                    return Err(unusable(
                        "is a folder; --db takes a database file".to_string(),
                    ));
                }
                let age = meta
                    .modified()
                    .ok()
                    .and_then(|m| m.elapsed().ok())
                    .unwrap_or(Duration::ZERO);
                if !writable(path) {
                    return Err(unusable(
                        "the file or its folder is read-only here (a read-only mount or \
                         another account's file): the `runs` commands that only read work; \
                         to write, give a writable location with --db"
                            .to_string(),
                    ));
                }
                if meta.len() == 0 && age > CREATING_GRACE {
                    return Err(unusable(format!(
                        "the file is empty (0 bytes) and has not changed for {} s, so it is not \
                         a history being created: any history it held is lost; give another \
                         file with --db, or delete this empty file to start a new history here",
                        age.as_secs()
                    )));
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                    std::fs::create_dir_all(dir).map_err(|err| StoreError::Io {
                        path: dir.to_path_buf(),
                        err,
                    })?;
                }
            }
            Err(err) => {
                return Err(StoreError::Io {
                    path: path.to_path_buf(),
                    err,
                })
            }
        }
        let flags = OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_CREATE
            | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let conn = Connection::open_with_flags(path, flags).map_err(sq)?;
        conn.busy_timeout(BUSY_TIMEOUT).map_err(sq)?;
        // The first read of the header: a foreign or damaged file fails here.
        let (app_id, version, objects) = header(&conn).map_err(sq)?;
        check_header(path, app_id, version, objects)?;
        let store = Self {
            conn,
            path: path.to_path_buf(),
        };
        if version < schema::VERSION {
            store.migrate()?;
        }
        store
            .conn
            .execute_batch(
                "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; \
                 PRAGMA foreign_keys = ON;",
            )
            .map_err(sq)?;
        Ok(store)
    }

    /// Opens an existing database for reading only; nothing is written, not even the WAL's
    /// index, so a history on a read-only file system (a backup, a shared folder) can be
    /// browsed. When SQLite cannot create its shared-memory index there, the file is opened as
    /// immutable. Writes through the returned store fail with a "read-only" error naming the
    /// file. Older schema versions are read as they are.
    pub fn open_read_only(path: &Path) -> Result<Self> {
        refuse_special_name(path)?;
        let meta = std::fs::metadata(path).map_err(|err| StoreError::Io {
            path: path.to_path_buf(),
            err,
        })?;
        let unusable = |msg: &str| StoreError::Unusable {
            path: path.to_path_buf(),
            msg: msg.to_string(),
        };
        if meta.is_dir() {
            return Err(unusable("is a folder; --db takes a database file"));
        }
        if meta.len() == 0 {
            return Err(unusable(
                "the file is empty (0 bytes) and cannot be written here, so it holds no \
                 history; give another file with --db",
            ));
        }
        let sq = |e: rusqlite::Error| StoreError::Sqlite {
            path: path.to_path_buf(),
            msg: explain(&e),
        };
        let flags = OpenFlags::SQLITE_OPEN_READ_ONLY
            | OpenFlags::SQLITE_OPEN_NO_MUTEX
            | OpenFlags::SQLITE_OPEN_URI;
        let open = |query: &str| -> rusqlite::Result<(Connection, (i32, i64, i64))> {
            let conn = Connection::open_with_flags(file_uri(path, query), flags)?;
            conn.busy_timeout(BUSY_TIMEOUT)?;
            let h = header(&conn)?;
            Ok((conn, h))
        };
        let (conn, (app_id, version, objects)) = match open("mode=ro") {
            Ok(x) => x,
            Err(e) if e.sqlite_error_code() == Some(rusqlite::ErrorCode::CannotOpen) => {
                open("immutable=1").map_err(sq)?
            }
            Err(e) => return Err(sq(e)),
        };
        check_header(path, app_id, version, objects)?;
        if version == 0 {
            return Err(unusable(
                "holds no RLVR Studio history yet (no schema) and cannot be written here; give \
                 another file with --db",
            ));
        }
        Ok(Self {
            conn,
            path: path.to_path_buf(),
        })
    }

    /// Opens the database for the commands that only read: [`Store::open`] where this
    /// process can write the file and its folder, [`Store::open_read_only`] where it cannot
    /// (a read-only mount, a file of another account).
    pub fn open_for_reading(path: &Path) -> Result<Self> {
        if path.is_file() && !writable(path) {
            Self::open_read_only(path)
        } else {
            Self::open(path)
        }
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Creates or migrates the schema in one `BEGIN IMMEDIATE` transaction: the version is
    /// re-read under the write lock, so of several processes opening a new file at once one
    /// creates the schema and the others find it done.
    fn migrate(&self) -> Result<()> {
        // A migration may rebuild a table; with foreign keys on, dropping the old table would
        // delete every row that refers to it. (The pragma is a no-op inside a transaction.)
        self.conn
            .execute_batch("PRAGMA foreign_keys = OFF")
            .map_err(|e| self.err(e))?;
        self.conn
            .execute_batch("BEGIN IMMEDIATE")
            .map_err(|e| self.err(e))?;
        let result = self.migrate_locked();
        let end = if result.is_ok() { "COMMIT" } else { "ROLLBACK" };
        let ended = self.conn.execute_batch(end).map_err(|e| self.err(e));
        result.and(ended)
    }

    fn migrate_locked(&self) -> Result<()> {
        let (app_id, from, objects) = header(&self.conn).map_err(|e| self.err(e))?;
        check_header(&self.path, app_id, from, objects)?;
        if from == schema::VERSION {
            return Ok(());
        }
        for (v, sql) in schema::MIGRATIONS.iter().enumerate() {
            let v = v as i64 + 1;
            if v > from {
                self.conn
                    .execute_batch(sql)
                    .map_err(|e| StoreError::Sqlite {
                        path: self.path.clone(),
                        msg: format!("migration to schema version {v} failed: {}", explain(&e)),
                    })?;
            }
        }
        let violations: i64 = self
            .conn
            .query_row("SELECT count(*) FROM pragma_foreign_key_check", [], |r| {
                r.get(0)
            })
            .map_err(|e| self.err(e))?;
        if violations > 0 {
            return Err(StoreError::Unusable {
                path: self.path.clone(),
                msg: format!(
                    "migration to schema version {} left {violations} rows pointing at missing \
                     rows; nothing was changed",
                    schema::VERSION
                ),
            });
        }
        self.conn
            .execute_batch(&format!(
                "PRAGMA user_version = {}; PRAGMA application_id = {APPLICATION_ID};",
                schema::VERSION
            ))
            .map_err(|e| self.err(e))
    }

    /// Schema version of the open database.
    pub fn schema_version(&self) -> Result<i64> {
        self.conn
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .map_err(|e| self.err(e))
    }

    /// What is wrong with the schema: missing tables, indexes or columns, compared with what
    /// the migrations up to the file's version create. Empty when it is complete.
    pub fn schema_problems(&self) -> Result<Vec<String>> {
        let version = self.schema_version()?;
        let expected = schema::expected_objects(version).map_err(|e| self.err(e))?;
        let actual = schema::objects(&self.conn).map_err(|e| self.err(e))?;
        let mut problems = Vec::new();
        for (kind, name, cols) in &expected {
            match actual.iter().find(|(k, n, _)| k == kind && n == name) {
                None => problems.push(format!(
                    "{kind} {name} is missing (schema version {version} has it)"
                )),
                Some((_, _, have)) => {
                    for c in cols.iter().filter(|c| !have.contains(c)) {
                        problems.push(format!("column {name}.{c} is missing"));
                    }
                }
            }
        }
        Ok(problems)
    }

    /// Refuses to write new runs into a database that is damaged: its schema is incomplete
    /// ([`Store::schema_problems`]) or `PRAGMA quick_check` finds a problem. Reads every page
    /// once (well under a second per 100 MB when cached), so it runs before a run starts,
    /// not on every open.
    pub fn check_writable(&self) -> Result<()> {
        let mut problems = self.schema_problems()?;
        if problems.is_empty() {
            let mut st = self
                .conn
                .prepare("PRAGMA quick_check(3)")
                .map_err(|e| self.err(e))?;
            let lines: Vec<String> = st
                .query_map([], |r| r.get(0))
                .and_then(|rows| rows.collect())
                .map_err(|e| self.err(e))?;
            problems.extend(lines.into_iter().filter(|l| l != "ok"));
        }
        if problems.is_empty() {
            return Ok(());
        }
        Err(StoreError::Unusable {
            path: self.path.clone(),
            msg: format!(
                "the database is damaged ({}), so no new run is written into it; \
                 `rlvr-studio runs check` reports what is readable; give another file with \
                 --db to start a new history",
                problems.join("; ")
            ),
        })
    }
}

#[cfg(test)]
mod tests;
