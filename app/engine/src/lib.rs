//! The RLVR Studio training engine.
pub mod ops;
