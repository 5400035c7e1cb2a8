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
    /// A config value, a config file, a file of the shared formats, a task setting or a plugin
    /// set-up failed (the shared contract's error, shown as is).
    #[error(transparent)]
    Core(#[from] rlvr_core::CoreError),
    /// Tokenizer failure.
    #[error("tokenizer: {0}")]
    Tokenizer(String),
    /// Rewards or losses became non-finite.
    #[error("numerical error: {0}")]
    NonFinite(String),
    /// A worker thread failed or an internal invariant broke (a bug: please report it).
    #[error("internal error: {0}")]
    Internal(String),
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
        Self::Core(rlvr_core::CoreError::config(key, value, expected))
    }

    /// Shorthand for an I/O error on a path.
    pub fn io(path: impl Into<PathBuf>, err: std::io::Error) -> Self {
        Self::Core(rlvr_core::CoreError::io(path, err))
    }
}

/// Engine result.
pub type Result<T, E = EngineError> = std::result::Result<T, E>;

impl From<rlvr_core::config::TaskError> for EngineError {
    fn from(e: rlvr_core::config::TaskError) -> Self {
        Self::Core(e.into())
    }
}
