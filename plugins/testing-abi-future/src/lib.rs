//! Test-only library that claims to be built for a future plugin ABI (99) with a future SDK:
//! the host must refuse it before touching anything else, with a message naming the expected
//! and found versions.

use rlvr_plugin_api::ffi::{PluginStamp, STAMP_MAGIC};

/// The stamp of a plugin built with "SDK 9.0.0" for ABI 99.
#[no_mangle]
pub static RLVR_PLUGIN_STAMP: PluginStamp = PluginStamp {
    magic: STAMP_MAGIC,
    abi_version: 99,
    sdk_version: *b"9.0.0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0",
};
