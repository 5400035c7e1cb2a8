//! The error type of the shared contract. Messages name the file, key or value involved and say
//! what was expected; the engine maps each variant onto its own error of the same wording.

use std::path::PathBuf;

/// What can go wrong in the shared contract: a bad config value, an unreadable file, a damaged
/// checkpoint.
#[derive(Debug, thiserror::Error)]
pub enum CoreError {
    /// A run configuration key holds a bad value.
    #[error("{key} = {value} is invalid: {expected}")]
    Config {
        /// Dotted key, e.g. `rollout.group_size`.
        key: String,
        /// The value found.
        value: String,
        /// What is allowed.
        expected: String,
    },
    /// A configuration file could not be parsed.
    #[error("{}: {msg}", path.display())]
    ConfigFile {
        /// The file.
        path: PathBuf,
        /// The parser's message (names the key and line).
        msg: String,
    },
    /// A file holds something other than what is expected (a damaged checkpoint...).
    #[error("{}: {msg}", path.display())]
    File {
        /// The file or folder at fault.
        path: PathBuf,
        /// What is wrong.
        msg: String,
    },
    /// File system failure.
    #[error("{}: {err}", path.display())]
    Io {
        /// The path involved.
        path: PathBuf,
        /// The underlying error (kept out of the error chain: the message already shows it).
        err: std::io::Error,
    },
    /// A `[task]` setting is out of range, or a task cannot supply what the run needs.
    #[error(transparent)]
    Task(#[from] crate::config::TaskError),
    /// A plugin component could not be set up.
    #[error("plugin: {0}")]
    Plugin(String),
    /// An internal invariant broke (a bug: please report it).
    #[error("internal error: {0}")]
    Internal(String),
}

impl CoreError {
    /// Shorthand for a file error.
    pub fn file(path: impl Into<PathBuf>, msg: impl Into<String>) -> Self {
        Self::File {
            path: path.into(),
            msg: msg.into(),
        }
    }

    /// Shorthand for a configuration value error. A value longer than [`MAX_SHOWN_VALUE`]
    /// characters (a 100 kB string, `1e300` written out in full) is shortened, with its length.
    pub fn config(key: &str, value: impl std::fmt::Display, expected: impl Into<String>) -> Self {
        Self::Config {
            key: key.to_owned(),
            value: shorten(value.to_string()),
            expected: expected.into(),
        }
    }

    /// Shorthand for an I/O error on a path.
    pub fn io(path: impl Into<PathBuf>, err: std::io::Error) -> Self {
        Self::Io {
            path: path.into(),
            err,
        }
    }
}

/// Longest value, in characters, an error message repeats in full.
pub const MAX_SHOWN_VALUE: usize = 60;

/// `value`, or its first characters and its length when it is longer than [`MAX_SHOWN_VALUE`].
fn shorten(value: String) -> String {
    let n = value.chars().count();
    if n <= MAX_SHOWN_VALUE {
        return value;
    }
    let head: String = value.chars().take(MAX_SHOWN_VALUE - 20).collect();
    format!("{head}… ({n} characters)")
}

/// Result of the shared contract.
pub type Result<T, E = CoreError> = std::result::Result<T, E>;
