//! The stable ABI: the only types that cross the boundary between RLVR Studio and a plugin
//! library. Everything here is `#[repr(C)]` + `#[derive(StableAbi)]`, so abi_stable checks the
//! layout of every reachable type when the library is loaded.
//!
//! Authors never touch this module: they implement the plain traits of [`crate::sdk`] and call
//! [`export_plugin!`](crate::export_plugin). The host (`rlvr-plugin-host`) is the only user.
//!
//! Shape rule (see `CHANGELOG.md`): the root module and the [`Component`] trait are *prefix
//! types*. A field or method may only be appended after the one marked `last_prefix_field`, and
//! any such addition bumps [`ABI_VERSION`](crate::ABI_VERSION): abi_stable lets a plugin be newer
//! than the host, never older.

#![allow(non_local_definitions, non_camel_case_types, missing_docs)]

use abi_stable::{
    declare_root_module_statics,
    library::RootModule,
    sabi_trait,
    sabi_types::VersionStrings,
    std_types::{RBox, RResult, RSlice, RSliceMut, RStr, RString, RVec},
    StableAbi,
};

/// What a component does.
#[repr(u8)]
#[derive(StableAbi, Clone, Copy, Debug, PartialEq, Eq)]
pub enum ComponentKind {
    /// Scores a completion against a reference: score, pass/fail, reason, sub-scores.
    Verifier = 0,
    /// Weighted criteria scored per completion.
    Rubric = 1,
    /// Transforms next-token logits in place.
    Sampler = 2,
    /// Per-token advantages and loss weights from a batch table.
    Algorithm = 3,
}

/// The kind of a parameter.
#[repr(u8)]
#[derive(StableAbi, Clone, Copy, Debug, PartialEq, Eq)]
pub enum ParamKind {
    /// A real number in `[min, max]`.
    Float = 0,
    /// A whole number in `[min, max]`.
    Int = 1,
    /// A switch.
    Bool = 2,
    /// A string.
    Text = 3,
}

/// A parameter a component declares: the host validates config values against it and the GUI
/// builds its form from it.
#[repr(C)]
#[derive(StableAbi, Clone, Debug)]
pub struct ParamSpec {
    pub name: RString,
    pub kind: ParamKind,
    /// Default of a numeric or boolean (0/1) parameter.
    pub default: f64,
    /// Default of a text parameter.
    pub default_text: RString,
    pub min: f64,
    pub max: f64,
    pub help: RString,
}

/// One criterion of a rubric.
#[repr(C)]
#[derive(StableAbi, Clone, Debug)]
pub struct Criterion {
    pub name: RString,
    /// 0 makes the criterion a logged metric only.
    pub weight: f64,
    pub description: RString,
}

/// A component's declaration.
#[repr(C)]
#[derive(StableAbi, Clone, Debug)]
pub struct ComponentSpec {
    pub kind: ComponentKind,
    pub name: RString,
    pub summary: RString,
    pub params: RVec<ParamSpec>,
    /// Rubrics only.
    pub criteria: RVec<Criterion>,
}

/// What a plugin library declares about itself.
#[repr(C)]
#[derive(StableAbi, Clone, Debug)]
pub struct Manifest {
    pub name: RString,
    pub version: RString,
    pub description: RString,
    /// Version of `rlvr-plugin-api` the library was built with.
    pub sdk_version: RString,
    pub abi_version: u32,
    pub components: RVec<ComponentSpec>,
}

/// One completion to score.
#[repr(C)]
#[derive(StableAbi, Clone, Debug)]
pub struct ScoreItem {
    pub prompt: RString,
    pub completion: RString,
    pub answer: RString,
    /// Task metadata as a JSON document (`null` when the task has none).
    pub meta_json: RString,
}

/// A named part of a score: a verifier's sub-score or a rubric criterion.
#[repr(C)]
#[derive(StableAbi, Clone, Debug)]
pub struct ScorePart {
    pub name: RString,
    pub score: f64,
    /// Weight in the total (0 = logged only).
    pub weight: f64,
    pub reason: RString,
}

/// The score of one completion.
#[repr(C)]
#[derive(StableAbi, Clone, Debug)]
pub struct Score {
    pub score: f64,
    /// 1 = passed, 0 = failed, -1 = no opinion (the host then uses `score >= 1`).
    pub passed: i8,
    pub reason: RString,
    pub parts: RVec<ScorePart>,
}

/// The batch table an algorithm sees. Token arrays are flattened row after row;
/// `token_offsets` (rows + 1 entries) delimit each row's tokens.
#[repr(C)]
#[derive(StableAbi, Clone, Debug)]
pub struct AlgoBatch {
    pub group_size: u32,
    /// Group index of each row.
    pub group_ids: RVec<u32>,
    /// Total reward per row.
    pub rewards: RVec<f64>,
    /// Verifier pass (1) or fail (0) per row.
    pub passed: RVec<u8>,
    /// Reward component names; `component_values[c * rows + r]` is component `c` of row `r`.
    pub component_names: RVec<RString>,
    pub component_values: RVec<f64>,
    pub token_offsets: RVec<u32>,
    /// Log-probability of each sampled token under the sampling policy.
    pub old_logprobs: RVec<f32>,
    /// Under the reference policy; empty when the run has no reference model.
    pub ref_logprobs: RVec<f32>,
    pub entropies: RVec<f32>,
    /// 1 = the token takes part in the loss.
    pub mask: RVec<u8>,
}

/// What an algorithm returns: one advantage and one loss weight per token (same layout as
/// the batch's token arrays). An empty `weights` means 1 everywhere.
#[repr(C)]
#[derive(StableAbi, Clone, Debug, Default)]
pub struct AlgoOutput {
    pub advantages: RVec<f32>,
    pub weights: RVec<f32>,
}

/// A component instance. One object type serves every kind; a method of another kind returns
/// an error. Every method is wrapped in `catch_unwind` by the SDK.
#[sabi_trait]
pub trait Component: Send + Sync {
    /// Verifier or rubric: one result per item.
    fn score(
        &self,
        items: RSlice<'_, ScoreItem>,
    ) -> RResult<RVec<RResult<Score, RString>>, RString>;

    /// Sampler: transform one row's next-token logits in place.
    fn transform(
        &self,
        logits: RSliceMut<'_, f32>,
        position: u32,
        generated: RSlice<'_, u32>,
    ) -> RResult<(), RString>;

    /// Algorithm: per-token advantages and weights.
    #[sabi(last_prefix_field)]
    fn advantages(&self, batch: &AlgoBatch) -> RResult<AlgoOutput, RString>;
}

/// An owned component object.
pub type ComponentBox = Component_TO<'static, RBox<()>>;

/// The root module every plugin exports.
#[repr(C)]
#[derive(StableAbi)]
#[sabi(kind(Prefix(prefix_ref = PluginModule_Ref)))]
#[sabi(missing_field(panic))]
pub struct PluginModule {
    /// The plugin's manifest.
    pub manifest: extern "C" fn() -> RResult<Manifest, RString>,
    /// Builds a component from its name and its parameters (a JSON object already validated
    /// against the declared specs).
    #[sabi(last_prefix_field)]
    pub instantiate: extern "C" fn(
        kind: ComponentKind,
        name: RStr<'_>,
        params_json: RStr<'_>,
    ) -> RResult<ComponentBox, RString>,
}

impl RootModule for PluginModule_Ref {
    declare_root_module_statics! {PluginModule_Ref}
    const BASE_NAME: &'static str = "rlvr_plugin";
    const NAME: &'static str = "rlvr_plugin";
    const VERSION_STRINGS: VersionStrings = VersionStrings::new(crate::ABI_VERSION_STRING);
}

/// A plain C stamp every plugin exports as the symbol `RLVR_PLUGIN_STAMP`, read before any
/// abi_stable check so that a library built for another ABI is refused with a message naming
/// both versions. Its layout never changes.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct PluginStamp {
    /// `b"RLVRPLUG"`.
    pub magic: [u8; 8],
    /// The ABI version the library was built for.
    pub abi_version: u32,
    /// The SDK version, NUL-padded UTF-8.
    pub sdk_version: [u8; 32],
}

/// The stamp's magic bytes.
pub const STAMP_MAGIC: [u8; 8] = *b"RLVRPLUG";

/// The stamp's symbol name (NUL-terminated for dlsym).
pub const STAMP_SYMBOL: &[u8] = b"RLVR_PLUGIN_STAMP\0";

impl PluginStamp {
    /// The stamp of this SDK build.
    pub const fn current() -> Self {
        let mut sdk = [0u8; 32];
        let v = crate::SDK_VERSION.as_bytes();
        let mut i = 0;
        while i < v.len() && i < 32 {
            sdk[i] = v[i];
            i += 1;
        }
        Self {
            magic: STAMP_MAGIC,
            abi_version: crate::ABI_VERSION,
            sdk_version: sdk,
        }
    }

    /// The SDK version as text.
    pub fn sdk(&self) -> String {
        let end = self.sdk_version.iter().position(|&b| b == 0).unwrap_or(32);
        String::from_utf8_lossy(&self.sdk_version[..end]).into_owned()
    }
}
