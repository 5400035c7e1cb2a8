//! The first-minute promise, measured: the default preset trained from the app (headless, as a
//! user pressing Train) shows reward and accuracy rising within a minute. Takes a minute of both
//! cores, so it is ignored in CI:
//!   cargo test --release -p rlvr-ui --test first_minute -- --ignored --nocapture
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use egui_kittest::kittest::Queryable as _;
use egui_kittest::Harness;
use rlvr_ui::{AppOptions, Persisted, StudioApp};

fn mean(v: &[[f64; 2]]) -> f64 {
    v.iter().map(|p| p[1]).sum::<f64>() / v.len().max(1) as f64
}

#[test]
#[ignore = "a minute of training; run by hand"]
fn default_preset_shows_reward_and_accuracy_rising_within_a_minute() {
    let dir = tempfile::tempdir().unwrap();
    let app = StudioApp::new(
        AppOptions {
            db: dir.path().join("history.sqlite"),
            runs_root: dir.path().join("runs"),
            plugin_dirs: Vec::new(),
        },
        Persisted::default(),
    );
    let mut h = Harness::builder()
        .with_size(egui::vec2(1280.0, 800.0))
        .build_ui_state(|ui, app: &mut StudioApp| app.ui(ui), app);
    h.run_steps(2);
    let t = Instant::now();
    h.get_by_label("▶  Train").click();
    let mut marks = vec![10.0, 20.0, 30.0, 45.0, 60.0];
    while t.elapsed() < Duration::from_secs(60) {
        h.step();
        std::thread::sleep(Duration::from_millis(50));
        let s = t.elapsed().as_secs_f64();
        if marks.first().is_some_and(|m| s >= *m) {
            marks.remove(0);
            let l = h.state().live.as_ref().unwrap();
            let acc = l.table.get("accuracy");
            let last = &acc[acc.len().saturating_sub(5)..];
            println!(
                "{s:>5.1} s: step {:>3}, reward (last 5) {:.3}, accuracy (last 5) {:.3}, first step after {:.1} s",
                l.done_steps,
                mean(&l.table.get("reward_mean")[l.table.get("reward_mean").len().saturating_sub(5)..]),
                mean(last),
                l.first_step_s().unwrap_or(f64::NAN)
            );
        }
    }
    let l = h.state().live.as_ref().unwrap();
    let acc = l.table.get("accuracy");
    assert!(acc.len() >= 20, "only {} steps in a minute", acc.len());
    let first = mean(&acc[..5]);
    let last = mean(&acc[acc.len() - 5..]);
    println!("accuracy: first 5 steps {first:.3} -> last 5 steps {last:.3}");
    assert!(
        last > first + 0.05,
        "accuracy did not rise: {first:.3} -> {last:.3}"
    );
    let mut app = h.into_state();
    app.shutdown();
}
