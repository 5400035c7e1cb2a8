//! The binary's desktop-app entry points, without a display: `rlvr-studio` with no arguments
//! tries to open the window and, when it cannot, says why in one line (no panic).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

#[test]
fn no_arguments_opens_the_app_or_says_why_it_cannot() {
    let out = common::bin()
        .env_remove("DISPLAY")
        .env_remove("WAYLAND_DISPLAY")
        .env_remove("WAYLAND_SOCKET")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(!err.contains("panicked"), "{err}");
    assert!(err.starts_with("error: cannot open the window"), "{err}");
    assert!(err.contains("DISPLAY"), "{err}");
    assert_eq!(err.trim_end().lines().count(), 1, "{err}");
}

#[test]
fn gui_bench_is_a_subcommand() {
    let out = common::run_ok(["gui-bench", "--help"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("--frames") && text.contains("--points"),
        "{text}"
    );
}
