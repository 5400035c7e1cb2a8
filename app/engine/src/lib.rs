//! The RLVR Studio training engine: a Llama/Qwen2-family transformer written for training and
//! sampling on candle, procedural tasks with exact verifiers, batched rollout, the GRPO trainer
//! and held-out evaluation. It knows nothing of windows or databases: it emits typed events.

pub mod algo;
pub mod error;
pub mod model;
pub mod ops;
pub mod optim;
pub mod sampling;
pub mod tasks;
pub mod tokenizer;

pub use error::{EngineError, Result};
