//! The RLVR Studio training engine: a Llama/Qwen2-family transformer written for training and
//! sampling on candle, procedural tasks with exact verifiers, batched rollout, the GRPO trainer
//! and held-out evaluation. It knows nothing of windows or databases: it emits typed
//! [`events::EngineEvent`]s that the CLI, the store and the GUI consume.

pub mod algo;
pub mod batch;
pub mod config;
pub mod error;
pub mod events;
pub mod extensions;
pub mod model;
pub mod ops;
pub mod optim;
pub mod output;
pub mod parallel;
pub mod pretrain;
pub mod rewards;
pub mod sampling;
pub mod tasks;
pub mod tokenizer;
pub mod trainer;

pub use config::RunConfig;
pub use error::{EngineError, Result};
pub use events::EngineEvent;
pub use trainer::{spawn, Command, RunHandle, Trainer};
