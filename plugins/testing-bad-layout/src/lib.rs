//! Test-only library: it carries the current ABI stamp but exports a root module of another
//! shape under the same name and version, as a plugin built against a hand-edited SDK would.
//! The stamp check passes; abi_stable's layout check must refuse it.
#![allow(non_local_definitions, non_camel_case_types, missing_docs)]

use abi_stable::{
    declare_root_module_statics, export_root_module, library::RootModule,
    prefix_type::PrefixTypeTrait, sabi_types::VersionStrings, std_types::RString, StableAbi,
};
use rlvr_plugin_api::ffi::PluginStamp;

#[no_mangle]
pub static RLVR_PLUGIN_STAMP: PluginStamp = PluginStamp::current();

/// A root module with one field where the real one has two.
#[repr(C)]
#[derive(StableAbi)]
#[sabi(kind(Prefix(prefix_ref = OtherModule_Ref)))]
#[sabi(missing_field(panic))]
pub struct OtherModule {
    #[sabi(last_prefix_field)]
    pub manifest: extern "C" fn() -> RString,
}

impl RootModule for OtherModule_Ref {
    declare_root_module_statics! {OtherModule_Ref}
    const BASE_NAME: &'static str = "rlvr_plugin";
    const NAME: &'static str = "rlvr_plugin";
    const VERSION_STRINGS: VersionStrings =
        VersionStrings::new(rlvr_plugin_api::ABI_VERSION_STRING);
}

extern "C" fn manifest() -> RString {
    "not the manifest the host expects".into()
}

#[export_root_module]
pub fn root_module() -> OtherModule_Ref {
    OtherModule { manifest }.leak_into_prefix()
}
