//! Typed, self-describing parameters of pluggable components: see [`rlvr_core::params`].

pub use rlvr_core::params::*;
