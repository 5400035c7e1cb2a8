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
pub mod read;
pub mod recorder;
pub mod schema;
mod tokens;
mod write;

use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::{Connection, OpenFlags};

pub use read::{CheckReport, RunFilter, RunRow, RunStatus, StoredGroup, StoredSample};
pub use recorder::{Recorder, RecorderSummary};
pub use write::{flatten, NewRun};

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
    /// Writing the run folder or checkpoint failed in the engine's writer.
    #[error(transparent)]
    Engine(#[from] rlvr_engine::EngineError),
    /// Stored data could not be decoded.
    #[error("{0}")]
    Corrupt(String),
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

/// What SQLite's error means for a user, in words.
fn explain(e: &rusqlite::Error) -> String {
    use rusqlite::ErrorCode as C;
    match e.sqlite_error_code() {
        Some(C::NotADatabase) => {
            format!("not an RLVR Studio database (SQLite: {e}); give another file with --db")
        }
        Some(C::DatabaseCorrupt) => format!(
            "the database is damaged (SQLite: {e}); `rlvr-studio runs check` reports what is \
             readable, or move the file away to start a new history"
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
            format!("the database stayed locked by another process for too long (SQLite: {e})")
        }
        Some(C::DiskFull) => format!("the disk is full (SQLite: {e})"),
        _ => format!("SQLite: {e}"),
    }
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
    pub fn open(path: &Path) -> Result<Self> {
        let sq = |e: rusqlite::Error| StoreError::Sqlite {
            path: path.to_path_buf(),
            msg: explain(&e),
        };
        let unusable = |msg: String| StoreError::Unusable {
            path: path.to_path_buf(),
            msg,
        };
        let exists = path.exists();
        if exists {
            let meta = std::fs::metadata(path).map_err(|err| StoreError::Io {
                path: path.to_path_buf(),
                err,
            })?;
            if meta.is_dir() {
                return Err(unusable(
                    "is a folder; --db takes a database file".to_string(),
                ));
            }
            if meta.len() == 0 {
                return Err(unusable(
                    "the file is empty (0 bytes), so the run history it held is gone; move it \
                     away to start a new history"
                        .to_string(),
                ));
            }
        } else if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|err| StoreError::Io {
                path: dir.to_path_buf(),
                err,
            })?;
        }
        let flags = OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_CREATE
            | OpenFlags::SQLITE_OPEN_NO_MUTEX
            | OpenFlags::SQLITE_OPEN_URI;
        let conn = Connection::open_with_flags(path, flags).map_err(sq)?;
        conn.busy_timeout(Duration::from_secs(10)).map_err(sq)?;
        // The first read of the header: a foreign or damaged file fails here.
        let app_id: i32 = conn
            .query_row("PRAGMA application_id", [], |r| r.get(0))
            .map_err(sq)?;
        let version: i64 = conn
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .map_err(sq)?;
        if exists && app_id != APPLICATION_ID {
            let tables: i64 = conn
                .query_row("SELECT count(*) FROM sqlite_schema", [], |r| r.get(0))
                .map_err(sq)?;
            if tables > 0 || version != 0 {
                return Err(unusable(format!(
                    "an SQLite database of another application (application_id {app_id:#x}), \
                     not an RLVR Studio history; give another file with --db"
                )));
            }
        }
        if version > schema::VERSION {
            return Err(unusable(format!(
                "written by a newer RLVR Studio (schema version {version}; this build reads \
                 versions up to {}); upgrade RLVR Studio or give another file with --db",
                schema::VERSION
            )));
        }
        conn.execute_batch(
            "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; PRAGMA foreign_keys = ON;",
        )
        .map_err(sq)?;
        let store = Self {
            conn,
            path: path.to_path_buf(),
        };
        store.migrate(version)?;
        Ok(store)
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Applies every migration after `from` in one transaction.
    fn migrate(&self, from: i64) -> Result<()> {
        if from == schema::VERSION {
            return Ok(());
        }
        let tx = self.conn.unchecked_transaction().map_err(|e| self.err(e))?;
        for (v, sql) in schema::MIGRATIONS.iter().enumerate() {
            let v = v as i64 + 1;
            if v > from {
                tx.execute_batch(sql).map_err(|e| StoreError::Sqlite {
                    path: self.path.clone(),
                    msg: format!("migration to schema version {v} failed: {}", explain(&e)),
                })?;
            }
        }
        tx.execute_batch(&format!(
            "PRAGMA user_version = {}; PRAGMA application_id = {APPLICATION_ID};",
            schema::VERSION
        ))
        .map_err(|e| self.err(e))?;
        tx.commit().map_err(|e| self.err(e))
    }

    /// Schema version of the open database.
    pub fn schema_version(&self) -> Result<i64> {
        self.conn
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .map_err(|e| self.err(e))
    }
}

#[cfg(test)]
mod tests;
