//! The desktop app driven headless by egui_kittest: real clicks on the real `StudioApp`, a real
//! engine thread and a real run history in a temporary folder.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use egui_kittest::kittest::Queryable as _;
use egui_kittest::Harness;
use rlvr_store::{RunFilter, RunStatus, Store};
use rlvr_ui::{AppOptions, Persisted, StudioApp, View};

/// A tiny, fast configuration: 2 prompts × 4 completions, one thread.
fn tiny_config(steps: usize) -> rlvr_engine::RunConfig {
    let mut cfg = rlvr_ui::form::default_config();
    cfg.name = "kittest".into();
    cfg.steps = steps;
    cfg.threads = 1;
    cfg.rollout.prompts_per_step = 2;
    cfg.rollout.group_size = 4;
    cfg.eval.heldout_size = 8;
    cfg.eval.every = 0;
    cfg.output.keep_every = 0;
    cfg
}

struct Fixture {
    _dir: tempfile::TempDir,
    db: std::path::PathBuf,
}

fn fixture() -> (Fixture, StudioApp) {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("history.sqlite");
    let opts = AppOptions {
        db: db.clone(),
        runs_root: dir.path().join("runs"),
    };
    let app = StudioApp::new(opts, Persisted::default());
    (Fixture { _dir: dir, db }, app)
}

fn harness(app: StudioApp) -> Harness<'static, StudioApp> {
    Harness::builder()
        .with_size(egui::vec2(1280.0, 800.0))
        .build_ui_state(|ui, app: &mut StudioApp| app.ui(ui), app)
}

/// Runs frames until `done` holds (panics after `limit`).
fn run_until(
    h: &mut Harness<'static, StudioApp>,
    limit: Duration,
    what: &str,
    done: impl Fn(&StudioApp) -> bool,
) {
    let t = Instant::now();
    loop {
        h.step();
        if done(h.state()) {
            return;
        }
        assert!(t.elapsed() < limit, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn steps_done(app: &StudioApp) -> usize {
    app.live.as_ref().map_or(0, |l| l.done_steps)
}

#[test]
fn first_start_shows_default_task_and_model_and_train_streams_metrics_into_the_store() {
    let (fx, mut app) = fixture();
    // The first start shows the embedded default preset.
    let cfg = app.form.config().unwrap();
    assert_eq!(cfg.task.name(), "countdown");
    assert_eq!(app.view, View::Train);
    app.form.set_config(&tiny_config(6), "test");
    let mut h = harness(app);
    h.run_steps(2);
    h.get_by_label_contains("Task: countdown");
    h.get_by_label_contains("Model: default-policy");
    // One obvious Train action.
    h.get_by_label("▶  Train").click();
    run_until(&mut h, Duration::from_secs(90), "3 steps", |a| {
        steps_done(a) >= 3
    });
    let app = h.state();
    let live = app.live.as_ref().unwrap();
    assert!(live.table.get("reward_mean").len() >= 3);
    assert!(!live.table.get("accuracy").is_empty());
    assert!(app.live_lines > 0, "the charts drew lines");
    // The run is in the history, with its metrics.
    let store = Store::open(&fx.db).unwrap();
    let runs = store.list_runs(&RunFilter::default()).unwrap();
    assert_eq!(runs.len(), 1);
    assert_eq!(runs[0].id, live.run_id);
    assert_eq!(runs[0].task, "countdown");
    run_until(&mut h, Duration::from_secs(90), "the run to finish", |a| {
        a.live.as_ref().is_some_and(|l| !l.phase.is_active())
    });
    let run = store.run(runs[0].id).unwrap();
    assert_eq!(run.status, RunStatus::Finished);
    assert_eq!(store.series(run.id, "reward_mean").unwrap().len(), 6);
}
