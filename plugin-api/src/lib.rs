//! # rlvr-plugin-api: the RLVR Studio plugin SDK
//!
//! A plugin is a dynamic library (`cdylib`) that adds verifiers, rubric rewards, samplers and
//! algorithms to RLVR Studio. Authors implement one plain Rust trait per component
//! ([`Verifier`], [`Rubric`], [`Sampler`], [`Algorithm`]), describe the plugin with
//! [`Plugin`] and [`Spec`], and call [`export_plugin!`] once. The macro exports the stable-ABI
//! root module and wraps every entry point in `catch_unwind`, so a panic in plugin code becomes
//! an error value (a panic that crossed the boundary would end the host process).
//!
//! ```ignore
//! use rlvr_plugin_api::{export_plugin, Plugin, Sample, Spec, Verdict, Verifier};
//!
//! struct Exact;
//! impl Verifier for Exact {
//!     fn verify(&self, s: &Sample<'_>) -> Result<Verdict, String> {
//!         Ok(if s.completion.trim() == s.answer { Verdict::pass("exact") }
//!            else { Verdict::fail(format!("expected {}", s.answer)) })
//!     }
//! }
//! fn plugin() -> Plugin {
//!     Plugin::new("exact", env!("CARGO_PKG_VERSION"), "exact match")
//!         .verifier(Spec::new("exact_match", "trimmed completion equals the answer"), |_| Ok(Exact))
//! }
//! export_plugin!(plugin);
//! ```
//!
//! See `plugin-api/README.md` for the walk-through and `CHANGELOG.md` for the ABI history.

pub mod ffi;
pub mod sdk;

pub use abi_stable;
pub use sdk::{
    guarded, AlgoBatch, AlgoOutput, Algorithm, ComponentKind, Criterion, CriterionScore, ParamKind,
    Params, Plugin, Rubric, Sample, Sampler, Spec, TokenRow, Verdict, Verifier,
};
pub use serde_json;

/// The plugin ABI version. It changes whenever the root module, the component object or any
/// type crossing the boundary changes; a library built for another ABI version is refused at
/// load time with a message naming both. History in `CHANGELOG.md`.
pub const ABI_VERSION: u32 = 1;

/// `ABI_VERSION` as abi_stable's `major.minor.patch` version string of the root module.
pub const ABI_VERSION_STRING: &str = "1.0.0";

/// Version of this SDK crate.
pub const SDK_VERSION: &str = env!("CARGO_PKG_VERSION");

/// Exports a plugin. Pass a function `fn() -> Plugin`. Call it once, at the crate root of a
/// `cdylib` crate that also depends on `abi_stable` (its export attribute names that crate).
#[macro_export]
macro_rules! export_plugin {
    ($build:path) => {
        /// The plain C stamp the host reads before any abi_stable check.
        #[no_mangle]
        pub static RLVR_PLUGIN_STAMP: $crate::ffi::PluginStamp =
            $crate::ffi::PluginStamp::current();

        /// The stable-ABI root module.
        #[$crate::abi_stable::export_root_module]
        pub fn rlvr_plugin_root_module() -> $crate::ffi::PluginModule_Ref {
            $crate::sdk::root_module($build)
        }
    };
}
