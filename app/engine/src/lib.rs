//! The RLVR Studio training engine: a Llama/Qwen2-family transformer written for training and
//! sampling on candle, procedural tasks with exact verifiers, batched rollout, the GRPO trainer
//! and held-out evaluation. It knows nothing of windows or databases: it emits the typed
//! [`events::EngineEvent`]s of the shared contract crate `rlvr-core`, which the CLI, the store
//! and the GUI consume.

pub mod algo;
pub mod batch;
pub mod chat;
pub mod error;
pub mod gguf;
pub mod memory;
pub mod model;
pub mod ops;
pub mod optim;
pub mod parallel;
pub mod pretrain;
pub mod rewards;
pub mod sampling;
pub mod tasks;
pub mod tokenizer;
pub mod trainer;

/// The run config, the event stream, the extension traits and the run folder writer live in the
/// shared contract crate; they are re-exported here under their historical paths.
pub use rlvr_core::{config, events, extensions, output};

pub use config::RunConfig;
pub use error::{EngineError, Result};
pub use events::EngineEvent;
pub use trainer::{spawn, Command, RunHandle, Trainer};
