//! The engine's error type.

use std::path::PathBuf;

/// Everything that can go wrong inside the engine. Messages name the file, key or tensor involved
/// and say what was expected.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// A tensor operation failed.
    #[error("tensor error: {0}")]
    Candle(#[from] candle_core::Error),
    /// A model folder is missing a file, or holds something other than what is expected.
    #[error("{}: {msg}", path.display())]
    ModelFolder {
        /// The file or folder at fault.
        path: PathBuf,
        /// What is wrong.
        msg: String,
    },
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
    /// A task could not be configured.
    #[error(transparent)]
    Task(#[from] crate::tasks::TaskError),
    /// Tokenizer failure.
    #[error("tokenizer: {0}")]
    Tokenizer(String),
    /// File system failure.
    #[error("{}: {err}", path.display())]
    Io {
        /// The path involved.
        path: PathBuf,
        /// The underlying error (kept out of the error chain: the message already shows it).
        err: std::io::Error,
    },
    /// Rewards or losses became non-finite.
    #[error("numerical error: {0}")]
    NonFinite(String),
    /// A worker thread failed or an internal invariant broke (a bug: please report it).
    #[error("internal error: {0}")]
    Internal(String),
    /// A plugin component could not be set up.
    #[error("plugin: {0}")]
    Plugin(String),
    /// The run would need more memory than is available (the message gives the estimate, the
    /// available memory and the keys that lower it).
    #[error("{0}")]
    Memory(String),
    /// The run was stopped by a command.
    #[error("run stopped")]
    Stopped,
}

impl EngineError {
    /// Shorthand for a model-folder error.
    pub fn model(path: impl Into<PathBuf>, msg: impl Into<String>) -> Self {
        Self::ModelFolder {
            path: path.into(),
            msg: msg.into(),
        }
    }

    /// Shorthand for a configuration value error.
    pub fn config(key: &str, value: impl std::fmt::Display, expected: impl Into<String>) -> Self {
        Self::Config {
            key: key.to_owned(),
            value: value.to_string(),
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

/// Engine result.
pub type Result<T, E = EngineError> = std::result::Result<T, E>;

impl From<rlvr_core::CoreError> for EngineError {
    fn from(e: rlvr_core::CoreError) -> Self {
        use rlvr_core::CoreError as C;
        match e {
            C::Config {
                key,
                value,
                expected,
            } => Self::Config {
                key,
                value,
                expected,
            },
            C::ConfigFile { path, msg } => Self::ConfigFile { path, msg },
            C::File { path, msg } => Self::ModelFolder { path, msg },
            C::Io { path, err } => Self::Io { path, err },
            C::Plugin(m) => Self::Plugin(m),
            C::Internal(m) => Self::Internal(m),
        }
    }
}
