//! The desktop app driven headless by egui_kittest: real clicks on the real `StudioApp`, a real
//! engine thread and a real run history in a temporary folder.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use egui_kittest::kittest::Queryable as _;
use egui_kittest::Harness;
use rlvr_store::{RunFilter, RunStatus, Store};
use rlvr_ui::{AppOptions, Persisted, StudioApp, View};

/// A tiny, fast configuration: 2 prompts × 4 completions, one thread.
fn tiny_config(steps: usize) -> rlvr_core::RunConfig {
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
        plugin_dirs: Vec::new(),
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
        a.live.as_ref().is_some_and(|l| l.ended())
    });
    let run = store.run(runs[0].id).unwrap();
    assert_eq!(run.status, RunStatus::Finished);
    assert_eq!(store.series(run.id, "reward_mean").unwrap().len(), 6);
}

/// Pause acknowledgements ("paused at step N") in the run's log so far.
fn pause_acks(app: &StudioApp) -> Vec<usize> {
    app.live.as_ref().map_or_else(Vec::new, |l| {
        l.logs
            .iter()
            .filter_map(|m| m.strip_prefix("paused at step ")?.parse().ok())
            .collect()
    })
}

/// Frames until the engine acknowledges one more `Pause` than the `seen` so far; returns the
/// step it was acknowledged at. Events arrive in order, so every step up to it has landed and
/// no later one ran before it.
fn next_pause_ack(h: &mut Harness<'static, StudioApp>, seen: usize) -> usize {
    run_until(
        h,
        Duration::from_secs(60),
        "the pause acknowledgement",
        |a| pause_acks(a).len() > seen,
    );
    pause_acks(h.state())[seen]
}

/// While paused: asks the engine to acknowledge again (a repeated `Pause` is answered at the
/// step it waits at) and checks that it is still at `step`.
fn assert_still_paused_at(h: &mut Harness<'static, StudioApp>, step: usize, what: &str) {
    let seen = pause_acks(h.state()).len();
    h.state_mut().live.as_mut().unwrap().pause();
    assert_eq!(next_pause_ack(h, seen), step, "{what}");
    assert_eq!(steps_done(h.state()), step, "{what}");
}

#[test]
fn pause_step_once_resume_and_stop_from_buttons_and_shortcuts() {
    let (fx, mut app) = fixture();
    app.form.set_config(&tiny_config(10_000), "test");
    let mut h = harness(app);
    h.run_steps(2);
    // Ctrl+Enter trains.
    h.key_press_modifiers(egui::Modifiers::COMMAND, egui::Key::Enter);
    run_until(&mut h, Duration::from_secs(90), "2 steps", |a| {
        steps_done(a) >= 2
    });
    // Space pauses; the step in flight may still arrive, then the engine acknowledges.
    h.key_press(egui::Key::Space);
    h.step();
    assert!(h.state().live.as_ref().unwrap().is_paused());
    let n0 = next_pause_ack(&mut h, 0);
    assert_eq!(steps_done(h.state()), n0);
    assert_still_paused_at(&mut h, n0, "paused runs do not step");
    // "Step once" runs exactly one update.
    h.get_by_label("Step once").click();
    run_until(&mut h, Duration::from_secs(30), "one step", |a| {
        steps_done(a) > n0
    });
    assert_still_paused_at(&mut h, n0 + 1, "exactly one more step");
    // S steps once too.
    h.key_press(egui::Key::S);
    run_until(&mut h, Duration::from_secs(30), "one step", |a| {
        steps_done(a) > n0 + 1
    });
    assert_still_paused_at(&mut h, n0 + 2, "S steps once");
    // "Checkpoint" while paused saves the policy at once, recorded in the history.
    h.get_by_label("Checkpoint").click();
    let id = h.state().live.as_ref().unwrap().run_id;
    let store = Store::open(&fx.db).unwrap();
    let want = (n0 + 2) as u64;
    let t = Instant::now();
    loop {
        h.step();
        let kept = store.checkpoints(id).unwrap();
        if kept.iter().any(|(k, s, _)| k == "checkpoint" && *s == want) {
            let (_, _, path) = kept.iter().find(|(k, _, _)| k == "checkpoint").unwrap();
            assert!(std::path::Path::new(path)
                .join("model.safetensors")
                .is_file());
            break;
        }
        assert!(
            t.elapsed() < Duration::from_secs(30),
            "no checkpoint: {kept:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(steps_done(h.state()), n0 + 2, "a checkpoint is not a step");
    // Resume continues.
    h.get_by_label("▶ Resume").click();
    run_until(&mut h, Duration::from_secs(30), "steps after resume", |a| {
        steps_done(a) >= n0 + 4
    });
    assert!(!h.state().live.as_ref().unwrap().is_paused());
    // The progress bar shows the step count.
    h.get_by_label_contains("/10000 · running");
    // Stop: the run ends interrupted in the history.
    h.get_by_label("■ Stop").click();
    run_until(&mut h, Duration::from_secs(30), "the run to stop", |a| {
        a.live.as_ref().is_some_and(|l| l.ended())
    });
    let id = h.state().live.as_ref().unwrap().run_id;
    let store = Store::open(&fx.db).unwrap();
    assert_eq!(store.run(id).unwrap().status, RunStatus::Interrupted);
}

#[test]
fn closing_mid_run_marks_it_interrupted_and_resume_continues_from_its_checkpoint() {
    let (fx, mut app) = fixture();
    app.form.set_config(&tiny_config(10_000), "test");
    let opts = app.opts.clone();
    let mut h = harness(app);
    h.run_steps(2);
    h.get_by_label("▶  Train").click();
    run_until(&mut h, Duration::from_secs(90), "3 steps", |a| {
        steps_done(a) >= 3
    });
    // What the window's on_exit does.
    let mut app = h.into_state();
    app.shutdown();
    let live = app.live.as_ref().unwrap();
    let (id, stopped_at) = (live.run_id, live.done_steps);
    assert!(!live.phase.is_active());
    drop(app);
    let store = Store::open(&fx.db).unwrap();
    let row = store.run(id).unwrap();
    assert_eq!(row.status, RunStatus::Interrupted);
    assert_eq!(row.last_step as usize, stopped_at);
    // A new app (as after a restart) resumes it from the Runs view.
    let app = StudioApp::new(opts, Persisted::default());
    let mut h = harness(app);
    h.state_mut().view = View::Runs;
    h.run_steps(2);
    h.get_by_label(&format!("kittest #{id}")).click();
    h.run_steps(2);
    h.get_by_label("Resume").click();
    h.run_steps(1);
    let live = h.state().live.as_ref().expect("resumed");
    assert_eq!(live.run_id, id);
    assert_eq!(live.start_step, stopped_at);
    run_until(
        &mut h,
        Duration::from_secs(60),
        "steps after resuming",
        |a| steps_done(a) >= stopped_at + 2,
    );
    // The curve continues where it stopped: no step twice.
    let steps: Vec<f64> = h
        .state()
        .live
        .as_ref()
        .unwrap()
        .table
        .get("reward_mean")
        .iter()
        .map(|p| p[0])
        .collect();
    assert_eq!(steps[0], 1.0);
    assert!(steps.windows(2).all(|w| w[1] == w[0] + 1.0), "{steps:?}");
    let mut app = h.into_state();
    app.shutdown();
    assert_eq!(store.run(id).unwrap().status, RunStatus::Interrupted);
}

/// Every key of the run-config spec table that the form edits with a plain widget appears in
/// the form under the table's label, and each knob of the selected task too: the form has no
/// field list of its own to drift from the engine's ranges.
#[test]
fn form_has_a_widget_for_every_key_of_the_spec_table() {
    use rlvr_core::spec::{self, Kind};
    let (_fx, mut app) = fixture();
    // With a LoRA rank, so the other LoRA keys are shown too.
    let mut cfg = tiny_config(3);
    cfg.model.lora.rank = 8;
    app.form.set_config(&cfg, "test");
    let mut h = harness(app);
    h.run_steps(2);
    let dedicated = [
        "algorithm.advantage",
        "rollout.sampler",
        "rewards.verifier",
        "output.keep_groups",
    ];
    let mut n = 0;
    for k in spec::keys() {
        let own = matches!(k.kind, Kind::Params | Kind::TextList | Kind::PathList);
        if own || dedicated.contains(&k.key) || k.key == "task.name" {
            continue;
        }
        assert!(
            h.query_by_label(k.label).is_some(),
            "no form widget labelled {:?} for {}",
            k.label,
            k.key
        );
        n += 1;
    }
    let countdown = spec::task("countdown").unwrap();
    for k in countdown.keys {
        assert!(h.query_by_label(k.label).is_some(), "task knob {}", k.key);
    }
    assert!(n > 50, "only {n} keys checked");
}

#[test]
fn form_shows_the_cli_validation_message_and_trains_what_it_shows() {
    let (_fx, mut app) = fixture();
    app.form.set_config(&tiny_config(3), "test");
    let mut h = harness(app);
    h.run_steps(2);
    h.get_by_label_contains("configuration is valid");
    // An invalid value: the engine's own message, as the CLI prints it.
    h.get_by_label("Group size").set_value_accesskit(0.0);
    h.run_steps(2);
    let cli = rlvr_core::RunConfig::from_toml("[rollout]\ngroup_size = 0")
        .unwrap_err()
        .to_string();
    assert!(cli.contains("rollout.group_size"), "{cli}");
    assert!(
        h.get_all_by_label_contains(&cli).count() >= 1,
        "the form shows {cli:?}"
    );
    // Train is disabled while the config is invalid.
    h.get_by_label("▶  Train").click();
    h.run_steps(2);
    assert!(h.state().live.is_none());
    // Fixed: a valid value; the run trains exactly that config.
    h.get_by_label("Group size").set_value_accesskit(3.0);
    h.run_steps(2);
    assert!(h.state().form.error.is_none(), "{:?}", h.state().form.error);
    // Preview TOML and Copy CLI command.
    h.get_by_label("Preview TOML").click();
    h.run_steps(2);
    let toml = h.get_by_label("config.toml (read-only)").value().unwrap();
    assert!(toml.contains("group_size = 3"), "{toml}");
    h.get_by_label("Copy CLI command").click();
    h.run_steps(1);
    let cmd = h.state().form.copied.clone().unwrap();
    assert!(cmd.contains("rlvr-studio train"), "{cmd}");
    assert!(cmd.contains("group_size = 3"), "{cmd}");
    h.get_by_label("▶  Train").click();
    run_until(&mut h, Duration::from_secs(60), "the run to finish", |a| {
        a.live.as_ref().is_some_and(|l| l.ended())
    });
    let live = h.state().live.as_ref().unwrap();
    assert_eq!(live.cfg.rollout.group_size, 3);
    assert_eq!(live.samples.values().next().unwrap()[0].samples.len(), 3);
}

#[test]
fn save_and_load_toml_through_the_path_field_and_errors_name_the_file() {
    let (fx, mut app) = fixture();
    app.form.set_config(&tiny_config(7), "test");
    let mut h = harness(app);
    h.run_steps(2);
    let path = fx.db.with_file_name("saved.toml");
    h.get_by_label("File").focus();
    h.get_by_label("File").type_text(path.to_str().unwrap());
    h.run_steps(1);
    h.get_by_label("Save").click();
    h.run_steps(2);
    let saved = rlvr_core::RunConfig::from_file(&path).unwrap();
    assert_eq!(saved.steps, 7);
    // A broken file: the message names the file and the key (a syntax error: the line).
    std::fs::write(&path, "steps = \"many\"\n").unwrap();
    h.get_by_label("Load").click();
    h.run_steps(2);
    let msg = h.state().form.message.clone().unwrap();
    assert!(!msg.0);
    assert!(
        msg.1.contains("saved.toml") && msg.1.contains("steps = \"many\""),
        "{msg:?}"
    );
    h.get_by_label_contains("saved.toml");
    // The form kept the last good config.
    assert_eq!(h.state().form.config().unwrap().steps, 7);
}

#[test]
fn inspector_shows_a_steps_groups_and_switches_token_colouring() {
    let (_fx, mut app) = fixture();
    app.form.set_config(&tiny_config(3), "test");
    let mut h = harness(app);
    h.run_steps(2);
    h.get_by_label("▶  Train").click();
    run_until(&mut h, Duration::from_secs(60), "the run to finish", |a| {
        a.live.as_ref().is_some_and(|l| l.ended())
    });
    h.get_by_label("Inspector").click();
    h.run_steps(3);
    let ins = &h.state().inspector;
    assert_eq!(ins.step, 3, "the newest step");
    assert_eq!(ins.groups.len(), 2, "2 prompts");
    assert!(
        ins.groups.iter().all(|g| g.samples.len() == 4),
        "G = 4 completions each"
    );
    h.get_by_label_contains("2 of 2 groups at step 3");
    h.get_by_label_contains("Legend (entropy)");
    // Switch the colouring to advantage: the legend follows.
    h.get_by_label("Colour tokens by").click();
    h.run_steps(3);
    h.get_by_label("advantage").click();
    h.run_steps(2);
    h.get_by_label_contains("Legend (advantage)");
    // An earlier step, read back from the store.
    h.get_by_label("◀").click();
    h.run_steps(3);
    assert_eq!(h.state().inspector.step, 2);
    assert_eq!(h.state().inspector.groups.len(), 2);
    // Search narrows the groups.
    let prompt = h.state().inspector.groups[0].prompt.clone();
    h.get_by_label("Search").focus();
    h.get_by_label("Search").type_text(&prompt);
    h.run_steps(2);
    h.get_by_label_contains("1 of 2 groups");
}

#[test]
fn runs_view_overlays_two_runs_with_a_config_diff_and_exports() {
    let (fx, mut app) = fixture();
    let mut cfg = tiny_config(3);
    app.form.set_config(&cfg, "test");
    let mut h = harness(app);
    h.run_steps(2);
    for lr in [1e-4, 3e-4] {
        cfg.optim.lr = lr;
        h.state_mut().form.set_config(&cfg, "test");
        h.get_by_label("▶  Train").click();
        run_until(&mut h, Duration::from_secs(60), "the run to finish", |a| {
            a.live.as_ref().is_some_and(|l| l.ended())
        });
    }
    h.get_by_label("Runs").click();
    h.run_steps(2);
    let ids: Vec<i64> = h.state().runs.rows.iter().map(|r| r.id).collect();
    assert_eq!(ids.len(), 2);
    for id in &ids {
        h.get_by_label(&format!("kittest #{id}")).click();
        h.run_steps(1);
    }
    h.run_steps(2);
    assert_eq!(
        h.state().runs.overlaid("reward_mean"),
        2,
        "two runs in one chart"
    );
    h.get_by_label_contains("Config diff (2 runs)");
    h.get_by_label("optim.lr");
    // Export the newest ticked run as CSV.
    let out = fx.db.with_file_name("export.csv");
    h.get_by_label("Export to").focus();
    h.get_by_label("Export to").type_text(out.to_str().unwrap());
    h.run_steps(1);
    h.get_by_label("Export CSV").click();
    h.run_steps(2);
    let csv = std::fs::read_to_string(&out).unwrap();
    assert!(csv.starts_with("step,"), "{csv}");
    assert_eq!(csv.lines().count(), 1 + 4, "header + steps 0..=3");
    // Delete asks first.
    h.get_by_label("Delete…").click();
    h.run_steps(2);
    assert!(h.state().runs.confirm_delete.is_some(), "asks first");
    h.get_by_label("Yes, delete").click();
    h.run_steps(2);
    assert_eq!(h.state().runs.rows.len(), 1);
    // Inspect the remaining run: its newest step, read from the history.
    h.get_by_label("Inspect").click();
    h.run_steps(3);
    assert_eq!(h.state().view, View::Inspector);
    let ins = &h.state().inspector;
    assert_eq!(ins.run_id, Some(ids[1]));
    assert_eq!((ins.step, ins.groups.len()), (3, 2));
    assert_eq!(ins.steps, vec![1, 2, 3]);
}

#[test]
fn a_component_added_to_the_catalog_appears_in_the_form_with_its_parameters() {
    use rlvr_core::params::ParamSpec;
    use rlvr_ui::catalog::{Component, ComponentKind};
    let (_fx, mut app) = fixture();
    // What a plugin host will do: no UI code involved.
    app.catalog.add(Component {
        kind: ComponentKind::Estimator,
        name: "plugin_baseline".into(),
        summary: "a baseline from a plugin".into(),
        params: vec![ParamSpec::float("alpha_knob", 0.25, 0.0, 1.0, "how much")],
        defaults: toml::Table::new(),
        origin: "plugins/libexample.so".into(),
    });
    let mut h = harness(app);
    h.run_steps(2);
    assert!(h.query_by_label("alpha_knob").is_none());
    // The estimator is further down the form.
    h.get_by_label(rlvr_core::spec::find("algorithm.advantage").unwrap().label)
        .scroll_to_me();
    h.run_steps(3);
    h.get_by_label(rlvr_core::spec::find("algorithm.advantage").unwrap().label)
        .click();
    h.run_steps(3);
    h.get_by_label("plugin_baseline").click_accesskit();
    h.run_steps(3);
    h.get_by_label_contains("a baseline from a plugin");
    h.get_by_label("alpha_knob").set_value_accesskit(0.5);
    h.run_steps(2);
    let toml = h.state().form.toml_text();
    assert!(toml.contains("advantage = \"plugin_baseline\""), "{toml}");
    assert!(toml.contains("alpha_knob = 0.5"), "{toml}");
    // The Plugins view lists it with its origin; the placeholder says no plugins are loaded.
    h.get_by_label("Plugins").click();
    h.run_steps(2);
    h.get_by_label("No plugins loaded");
    h.get_by_label("plugins/libexample.so");
}

#[test]
fn duplicate_run_fills_the_form_and_ui_state_survives_a_restart() {
    let (_fx, mut app) = fixture();
    let mut cfg = tiny_config(2);
    cfg.name = "original".into();
    cfg.rollout.group_size = 5;
    app.form.set_config(&cfg, "test");
    let opts = app.opts.clone();
    let mut h = harness(app);
    h.run_steps(2);
    h.get_by_label("▶  Train").click();
    run_until(&mut h, Duration::from_secs(60), "the run to finish", |a| {
        a.live.as_ref().is_some_and(|l| l.ended())
    });
    // Start over from the default, then duplicate the stored run.
    h.state_mut().form = Default::default();
    h.get_by_label("Runs").click();
    h.run_steps(2);
    let id = h.state().runs.rows[0].id;
    h.get_by_label(&format!("original #{id}")).click();
    h.run_steps(2);
    h.get_by_label("Duplicate run").click();
    h.run_steps(2);
    assert_eq!(h.state().view, View::Train);
    let dup = h.state().form.config().unwrap();
    assert_eq!(dup.name, "original-copy");
    assert_eq!(dup.rollout.group_size, 5);
    assert!(dup.output.dir.as_os_str().is_empty(), "a new output folder");
    // Look settings: dark → light, large text.
    h.get_by_label("Light mode").click();
    h.run_steps(1);
    h.get_by_label("Large text").click();
    h.run_steps(2);
    assert!(!h.state().theme.dark && h.state().theme.large_text);
    // What eframe persists, restored by a new app.
    let saved = ron_roundtrip(&h.state().persisted());
    let app = StudioApp::new(opts, saved);
    assert!(!app.theme.dark && app.theme.large_text);
    assert_eq!(app.view, View::Train);
    assert_eq!(app.form.config().unwrap().name, "original-copy");
}

/// The persisted state goes through serde like eframe's storage does.
fn ron_roundtrip(p: &Persisted) -> Persisted {
    let json = serde_json::to_string(p).unwrap();
    serde_json::from_str(&json).unwrap()
}

#[test]
fn a_bad_history_file_is_a_message_not_a_panic() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("history.sqlite");
    std::fs::write(
        &db,
        b"this is not a database, just text that is long enough",
    )
    .unwrap();
    let app = StudioApp::new(
        AppOptions {
            db: db.clone(),
            runs_root: dir.path().join("runs"),
            plugin_dirs: Vec::new(),
        },
        Persisted::default(),
    );
    let mut h = harness(app);
    h.run_steps(2);
    h.get_by_label_contains("Run history unavailable");
    h.get_by_label_contains("history.sqlite");
    h.get_by_label("Runs").click();
    h.run_steps(2);
    h.get_by_label_contains("The run history is not open");
}

#[test]
fn fill_the_form_through_its_widgets_then_train_that_run() {
    let (fx, app) = fixture();
    let mut h = harness(app);
    h.run_steps(2);
    // Only widgets: name, sizes, steps, evaluation, threads (found by the spec table's labels).
    let label = |key: &str| rlvr_core::spec::find(key).unwrap().label;
    h.get_by_label(label("name")).focus();
    h.key_press_modifiers(egui::Modifiers::COMMAND, egui::Key::A);
    h.get_by_label(label("name")).type_text("typed-run");
    h.run_steps(1);
    for (key, v) in [
        ("steps", 4.0),
        ("threads", 1.0),
        ("rollout.prompts_per_step", 2.0),
        ("rollout.group_size", 3.0),
        ("eval.heldout_size", 6.0),
        ("eval.every", 0.0),
    ] {
        h.get_by_label(label(key)).set_value_accesskit(v);
        h.run_steps(1);
    }
    h.run_steps(1);
    assert!(h.state().form.error.is_none(), "{:?}", h.state().form.error);
    h.get_by_label("▶  Train").click();
    run_until(&mut h, Duration::from_secs(60), "the run to finish", |a| {
        a.live.as_ref().is_some_and(|l| l.ended())
    });
    let live = h.state().live.as_ref().unwrap();
    assert_eq!(live.cfg.name, "typed-run");
    assert_eq!(live.cfg.steps, 4);
    assert_eq!(live.cfg.rollout.prompts_per_step, 2);
    assert_eq!(live.cfg.rollout.group_size, 3);
    assert_eq!(live.cfg.eval.heldout_size, 6);
    assert_eq!(live.table.get("reward_mean").len(), 4);
    let store = Store::open(&fx.db).unwrap();
    let row = store.run(live.run_id).unwrap();
    assert_eq!(row.name, "typed-run");
    assert_eq!(row.status, RunStatus::Finished);
    assert!(row.out_dir.contains("typed-run"), "{}", row.out_dir);
}

/// A run that cannot start (its model folder is missing) is refused when Train is pressed,
/// naming the folder, and leaves no record in the history.
#[test]
fn a_missing_model_folder_is_named_in_the_form_and_when_train_is_pressed() {
    let (fx, mut app) = fixture();
    let mut cfg = tiny_config(2);
    cfg.model.path = fx.db.with_file_name("no-such-model");
    app.form.set_config(&cfg, "test");
    let mut h = harness(app);
    h.run_steps(2);
    // The picker names the folder with the message training gives.
    run_until(
        &mut h,
        Duration::from_secs(30),
        "the picker's verdict",
        |a| {
            a.form
                .picker
                .facts_for(&a.form.config_path_text())
                .is_some()
        },
    );
    h.run_steps(1);
    h.get_by_label_contains("not a folder: expected a model folder");
    h.get_by_label("▶  Train").click();
    run_until(&mut h, Duration::from_secs(30), "the refusal", |a| {
        a.status.as_ref().is_some_and(|(ok, _)| !ok)
    });
    let (_, msg) = h.state().status.clone().unwrap();
    assert!(
        msg.starts_with("cannot start the run") && msg.contains("no-such-model"),
        "{msg}"
    );
    assert!(h.state().live.is_none());
    h.run_steps(2);
    h.get_by_label_contains("cannot start the run");
    let store = Store::open(&fx.db).unwrap();
    assert!(store.list_runs(&Default::default()).unwrap().is_empty());
}

#[test]
fn presets_dropdown_loads_a_preset_and_the_charts_switch_to_time() {
    let (_fx, mut app) = fixture();
    app.form.set_config(&tiny_config(3), "test");
    let mut h = harness(app);
    h.run_steps(2);
    h.get_by_label("Preset").click();
    h.run_steps(3);
    h.get_by_label("rloo").click_accesskit(); // far down the popup list
    h.run_steps(3);
    let cfg = h.state().form.config().unwrap();
    assert_eq!(cfg.algorithm.advantage, "rloo");
    assert_eq!(cfg.name, "rloo");
    assert!(
        cfg.model.path.join("config.json").is_file(),
        "model path resolved"
    );
    // Back to a tiny run; train it and look at it against time.
    h.state_mut().form.set_config(&tiny_config(3), "test");
    h.get_by_label("▶  Train").click();
    run_until(&mut h, Duration::from_secs(60), "the run to finish", |a| {
        a.live.as_ref().is_some_and(|l| l.ended())
    });
    let step_lines = h.state().live_lines;
    assert!(step_lines > 0);
    h.get_by_label("X axis").click();
    h.run_steps(3);
    h.get_by_label("time (s)").click();
    h.run_steps(3);
    assert_eq!(h.state().charts.x_axis, rlvr_ui::charts::XAxis::Time);
    assert_eq!(
        h.state().live_lines,
        step_lines,
        "the same lines against time"
    );
}

/// Builds two example plugins (a no-op when `cargo test --workspace --release` built them) and
/// puts them, with a file that is not a library, in a fresh plugin folder.
fn plugin_folder() -> tempfile::TempDir {
    let repo = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let out = std::process::Command::new(cargo)
        .current_dir(&repo)
        .args([
            "build",
            "--release",
            "--quiet",
            "-p",
            "rlvr-plugin-rubric",
            "-p",
            "rlvr-plugin-annealed",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let dir = tempfile::tempdir().unwrap();
    for lib in ["librlvr_plugin_rubric.so", "librlvr_plugin_annealed.so"] {
        std::fs::copy(repo.join("target/release").join(lib), dir.path().join(lib)).unwrap();
    }
    std::fs::write(dir.path().join("libbroken.so"), b"not a library").unwrap();
    dir
}

#[test]
fn loaded_plugins_show_in_the_plugins_view_and_their_components_in_the_form() {
    let plugins = plugin_folder();
    let dir = tempfile::tempdir().unwrap();
    let opts = AppOptions {
        db: dir.path().join("history.sqlite"),
        runs_root: dir.path().join("runs"),
        plugin_dirs: vec![plugins.path().to_path_buf()],
    };
    let mut app = StudioApp::new(opts, Persisted::default());
    app.form.set_config(&tiny_config(2), "test");
    let mut h = harness(app);
    h.run_steps(2);
    // The Plugins view: both plugins with their versions and hashes, and the broken file's
    // error in plain words.
    h.get_by_label("Plugins").click();
    h.run_steps(3);
    h.get_by_label("keyword-rubric");
    h.get_by_label("annealed-decoding");
    h.get_by_label_contains("libbroken.so: cannot be loaded as a dynamic library");
    // Reloading a plugin loads a fresh copy of the file and keeps it listed once.
    let reloads = h.query_all_by_label("Reload").count();
    assert_eq!(reloads, 2);
    h.query_all_by_label("Reload").last().unwrap().click();
    h.run_steps(3);
    h.get_by_label_contains("reloaded ");
    assert_eq!(h.state().plugins.host.plugins.len(), 2);
    // The verifier playground scores a typed completion with the rubric.
    h.get_by_label("completion").focus();
    h.run_steps(2);
    h.get_by_label("completion").type_text("42");
    h.run_steps(2);
    h.get_by_label("Score").click();
    h.run_steps(3);
    // keyword_rubric without a criterion configured is an error from the plugin itself.
    h.get_by_label_contains("no criterion configured");
    // With its `format` parameter (a widget generated from the plugin's spec) it scores.
    h.get_by_label("format").focus();
    h.run_steps(2);
    h.get_by_label("format").type_text("^[0-9]+$");
    h.run_steps(2);
    h.get_by_label("Score").click();
    h.run_steps(3);
    h.get_by_label_contains("score 1.000 · passed · format: well formed");
    // The form offers the plugin sampler and the rubric as a reward component.
    h.get_by_label("Train").click();
    h.run_steps(3);
    h.get_by_label("sampler").scroll_to_me();
    h.run_steps(3);
    h.get_by_label("sampler").click();
    h.run_steps(3);
    h.get_by_label("annealed_temperature").click_accesskit();
    h.run_steps(3);
    h.get_by_label("start").set_value_accesskit(1.2);
    h.run_steps(2);
    h.get_by_label("Add reward component").scroll_to_me();
    h.run_steps(3);
    h.get_by_label("Add reward component").click();
    h.run_steps(3);
    let toml = h.state().form.toml_text();
    assert!(toml.contains("name = \"keyword_rubric\""), "{toml}");
    h.get_by_label("format").scroll_to_me();
    h.run_steps(2);
    h.get_by_label("format").focus();
    h.run_steps(2);
    h.get_by_label("format").type_text("^[0-9]+$");
    h.run_steps(3);
    let toml = h.state().form.toml_text();
    assert!(
        toml.contains("sampler = \"annealed_temperature\""),
        "{toml}"
    );
    assert!(toml.contains("start = 1.2"), "{toml}");
    assert!(toml.contains("name = \"keyword_rubric\""), "{toml}");
    assert!(toml.contains("format = \"^[0-9]+$\""), "{toml}");
    assert_eq!(h.state().form.error, None, "{toml}");
    // Train it: the run uses the plugins, and the history records their hashes.
    h.state_mut().train(None);
    run_until(&mut h, Duration::from_secs(120), "the run to finish", |a| {
        a.live.as_ref().is_some_and(|l| l.ended())
    });
    let app = h.state();
    let id = app.live.as_ref().unwrap().run_id;
    let store = Store::open(&app.opts.db).unwrap();
    let run = store.run(id).unwrap();
    assert_eq!(run.status, RunStatus::Finished);
    // The stored config names the plugin folder, for a resume from the command line.
    let stored = rlvr_core::RunConfig::from_toml(&run.config).unwrap();
    assert_eq!(
        stored.plugins.dirs,
        Vec::<std::path::PathBuf>::new(),
        "scanned at start"
    );
    let names: Vec<&str> = run.plugins.iter().map(|p| p.0.as_str()).collect();
    assert!(
        names.contains(&"keyword-rubric 0.1.0") && names.contains(&"annealed-decoding 0.1.0"),
        "{names:?}"
    );
}

/// The model picker shows what `rlvr-studio models inspect` shows for the chosen folder, and
/// refuses a broken folder with the message training gives.
#[test]
fn model_picker_shows_facts_and_refuses_broken_folders() {
    let (fx, mut app) = fixture();
    app.form.set_config(&tiny_config(2), "test");
    let mut h = harness(app);
    run_until(&mut h, Duration::from_secs(30), "the facts", |a| {
        a.form
            .picker
            .facts_for(&a.form.config_path_text())
            .is_some()
    });
    h.run_steps(1);
    h.get_by_label_contains("Qwen2ForCausalLM");
    h.get_by_label_contains("LoRA r=16");
    let broken = fx.db.with_file_name("broken-model");
    std::fs::create_dir_all(&broken).unwrap();
    std::fs::write(broken.join("config.json"), "{\"vocab_size\": 3}").unwrap();
    let mut cfg = tiny_config(2);
    cfg.model.path = broken.clone();
    h.state_mut().form.set_config(&cfg, "test");
    run_until(&mut h, Duration::from_secs(30), "the refusal", |a| {
        a.form
            .picker
            .facts_for(&a.form.config_path_text())
            .is_some()
    });
    let want = rlvr_engine::model::inspect::inspect(&broken, 8, 8, false)
        .unwrap_err()
        .to_string();
    assert!(want.contains("config.json"), "{want}");
    h.run_steps(1);
    h.get_by_label(&want);
}

/// The form's LoRA section: a rank shows the other keys and one checkbox per linear layer;
/// unticking one writes the explicit list; the memory line follows the config (LoRA state
/// smaller than full training's), computed off the UI thread.
#[test]
fn lora_fields_and_the_memory_estimate() {
    let (_fx, mut app) = fixture();
    app.form.set_config(&tiny_config(2), "test");
    // Tall enough for the LoRA rows to be on screen (clicks land on what is visible).
    let mut h = Harness::builder()
        .with_size(egui::vec2(1280.0, 2400.0))
        .build_ui_state(|ui, app: &mut StudioApp| app.ui(ui), app);
    let estimate = |h: &mut Harness<'static, StudioApp>| -> String {
        run_until(h, Duration::from_secs(30), "the estimate", |a| {
            !a.form.memory.busy() && a.form.memory.text().is_some()
        });
        h.state().form.memory.text().unwrap().clone().unwrap()
    };
    let full = estimate(&mut h);
    assert!(
        full.starts_with("about ") && full.contains("8 rows"),
        "{full}"
    );
    assert!(
        h.query_by_label("q_proj").is_none(),
        "no module boxes without a rank"
    );
    rlvr_ui::form::set(
        &mut h.state_mut().form.doc,
        "model.lora.rank",
        toml::Value::Integer(8),
    );
    h.run_steps(2);
    h.get_by_label("down_proj");
    h.get_by_label("q_proj").click();
    h.run_steps(2);
    let cfg = h.state().form.config().unwrap();
    assert_eq!(cfg.model.lora.rank, 8);
    assert_eq!(
        cfg.model.lora.target_modules,
        [
            "k_proj",
            "v_proj",
            "o_proj",
            "gate_proj",
            "up_proj",
            "down_proj"
        ]
    );
    let lora = estimate(&mut h);
    assert!(lora.contains("(LoRA)") && lora != full, "{lora} vs {full}");
}

/// A `.gguf` in the model field is offered for import; the import runs with progress on a
/// worker thread and its folder becomes the model (SmolLM2 from scripts/fetch-test-assets.sh).
#[test]
fn a_gguf_is_imported_into_the_model_folder() {
    let assets = std::env::var_os("RLVR_TEST_ASSETS").map_or_else(
        || std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/test-assets"),
        std::path::PathBuf::from,
    );
    let gguf = assets.join("SmolLM2-135M-Instruct.Q4_1.gguf");
    assert!(
        gguf.is_file(),
        "test asset {} is missing: run scripts/fetch-test-assets.sh (or set RLVR_TEST_ASSETS)",
        gguf.display()
    );
    let (fx, mut app) = fixture();
    let link = fx.db.with_file_name("SmolLM2-135M-Instruct.Q4_1.gguf");
    std::os::unix::fs::symlink(&gguf, &link).unwrap();
    let mut cfg = tiny_config(2);
    cfg.model.path = link.clone();
    app.form.set_config(&cfg, "test");
    let mut h = harness(app);
    h.run_steps(2);
    h.get_by_label_contains("a GGUF file, not a model folder");
    h.get_by_label("Import SmolLM2-135M-Instruct.Q4_1.gguf")
        .click();
    h.run_steps(1);
    run_until(&mut h, Duration::from_secs(300), "the import", |a| {
        a.form.picker.message.is_some()
    });
    let (ok, msg) = h.state().form.picker.message.clone().unwrap();
    assert!(ok && msg.contains("272 tensors"), "{msg}");
    let folder = link.with_file_name("SmolLM2-135M-Instruct.Q4_1");
    assert_eq!(
        h.state().form.config_path_text(),
        folder.display().to_string()
    );
    run_until(&mut h, Duration::from_secs(60), "the facts", |a| {
        a.form
            .picker
            .facts_for(&a.form.config_path_text())
            .is_some()
    });
    h.run_steps(1);
    h.get_by_label_contains("LlamaForCausalLM");
    h.get_by_label_contains("yes (");
}
