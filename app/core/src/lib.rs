//! The contract shared by the RLVR Studio crates: what the engine emits and what every listener
//! (CLI, run history, desktop app) and adapter (plugin host) reads. It holds plain data and
//! traits only — no tensor library, no SQLite, no GUI — so the history builds without candle.
//!
//! - [`config`]: the run configuration ([`RunConfig`](config::RunConfig) and its sections, the
//!   named choices, the task configs, the built-in estimators' parameter specs) and its
//!   validation against the spec table;
//! - [`events`]: the typed [`EngineEvent`] stream and its metrics;
//! - [`params`]: self-describing typed parameters ([`ParamSpec`](params::ParamSpec)) of
//!   components, checked against config values;
//! - [`extensions`]: the traits plugin components are adapted to (verifiers, rubrics, samplers,
//!   algorithms) and the factories a run config names;
//! - [`checkpoint`]: the resume checkpoint file format (slots, trailer, state);
//! - [`output`]: the run folder writer (`config.toml`, `metrics.jsonl`, checkpoint slots);
//! - [`spec`]: the run-config spec table (every key's type, default, range, label and help),
//!   and what is generated from it: validation, the commented default config, the README
//!   reference and the JSON Schema.

pub mod checkpoint;
pub mod config;
pub mod error;
pub mod events;
pub mod extensions;
pub mod output;
pub mod params;
pub mod spec;

pub use config::RunConfig;
pub use error::{CoreError, Result};
pub use events::EngineEvent;
