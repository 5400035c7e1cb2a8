//! `StudioApp`: the whole UI as one state struct with `ui(&mut self, ui)`, driven by the eframe
//! shell ([`crate::run_native`]) and, headless, by egui_kittest.

use std::path::PathBuf;
use std::time::Duration;

use rlvr_store::Store;
use serde::{Deserialize, Serialize};

use crate::catalog::ComponentCatalog;
use crate::charts::{self, ChartSettings, RunSeries};
use crate::form::NewRunForm;
use crate::inspector::Inspector;
use crate::plugins::PluginsPanel;
use crate::runs::{RunsAction, RunsPanel};
use crate::session::{LiveRun, Phase};
use crate::theme::{self, Theme};

/// The top-level views.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum View {
    /// Configure and watch a run.
    Train,
    /// History and comparison.
    Runs,
    /// Sampled groups of a step.
    Inspector,
    /// Loaded plugins.
    Plugins,
}

impl View {
    /// All views, in tab order.
    pub const ALL: [View; 4] = [View::Train, View::Runs, View::Inspector, View::Plugins];

    /// Tab label.
    pub fn label(self) -> &'static str {
        match self {
            View::Train => "Train",
            View::Runs => "Runs",
            View::Inspector => "Inspector",
            View::Plugins => "Plugins",
        }
    }
}

/// Where the app keeps its data.
#[derive(Clone, Debug)]
pub struct AppOptions {
    /// Run-history database.
    pub db: PathBuf,
    /// Parent of new runs' output folders.
    pub runs_root: PathBuf,
    /// Folders scanned for plugin libraries at start (the user plugin folder by default).
    pub plugin_dirs: Vec<PathBuf>,
}

impl AppOptions {
    /// The default history (`$RLVR_STUDIO_DB` or the platform data folder), or `db`.
    pub fn from_db(db: Option<PathBuf>) -> Self {
        let db = db
            .or_else(rlvr_store::default_db_path)
            .unwrap_or_else(|| PathBuf::from("history.sqlite"));
        let runs_root = db
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .map_or_else(|| PathBuf::from("runs"), |p| p.join("runs"));
        let plugin_dirs = rlvr_plugin_host::user_plugin_dir().into_iter().collect();
        Self {
            db,
            runs_root,
            plugin_dirs,
        }
    }
}

/// UI state that survives a restart.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default)]
pub struct Persisted {
    /// Look.
    pub theme: Theme,
    /// Chart settings.
    pub charts: ChartSettings,
    /// Last view.
    pub view: View,
    /// Last config in the form (TOML).
    pub last_config: Option<String>,
    /// Width of the form panel.
    pub form_open: bool,
    /// Plugins hosted in a child process (by name).
    pub isolated_plugins: Vec<String>,
}

impl Default for Persisted {
    fn default() -> Self {
        Self {
            theme: Theme::default(),
            charts: ChartSettings::default(),
            view: View::Train,
            last_config: None,
            form_open: true,
            isolated_plugins: Vec::new(),
        }
    }
}

/// The application.
pub struct StudioApp {
    /// Paths.
    pub opts: AppOptions,
    /// Look.
    pub theme: Theme,
    /// Current view.
    pub view: View,
    /// Components the form offers (plugins add theirs here).
    pub catalog: ComponentCatalog,
    /// The new-run form.
    pub form: NewRunForm,
    /// The run being trained, if any.
    pub live: Option<LiveRun>,
    /// Chart settings.
    pub charts: ChartSettings,
    /// The history for reading (an error message when it cannot be opened).
    pub store: Result<Store, String>,
    /// Group inspector.
    pub inspector: Inspector,
    /// Runs and comparison.
    pub runs: RunsPanel,
    /// Plugins view (placeholder until the plugin host lands).
    pub plugins: PluginsPanel,
    /// Last app-level message: (ok, text).
    pub status: Option<(bool, String)>,
    /// Show the form beside the charts.
    pub form_open: bool,
    /// Lines drawn in the live charts last frame (for tests and the benchmark).
    pub live_lines: usize,
    chart_cache: charts::ChartCache,
    applied_theme: Option<Theme>,
}

impl StudioApp {
    /// A fresh app on `opts`, restoring `persisted` UI state.
    pub fn new(opts: AppOptions, persisted: Persisted) -> Self {
        let store = Store::open(&opts.db).map_err(|e| e.to_string());
        let plugins = PluginsPanel::load(&opts.plugin_dirs, &persisted.isolated_plugins);
        let mut catalog = ComponentCatalog::builtin();
        plugins.fill_catalog(&mut catalog);
        let mut form = NewRunForm::default();
        form.set_extensions(plugins.extensions());
        if let Some(text) = &persisted.last_config {
            if let Ok(cfg) = rlvr_core::RunConfig::from_toml(text) {
                form.set_config(&cfg, "last session");
            }
        }
        Self {
            opts,
            theme: persisted.theme,
            view: persisted.view,
            catalog,
            form,
            live: None,
            charts: persisted.charts,
            store,
            inspector: Inspector::default(),
            runs: RunsPanel::default(),
            plugins,
            status: None,
            form_open: persisted.form_open,
            live_lines: 0,
            chart_cache: Default::default(),
            applied_theme: None,
        }
    }

    /// What to persist.
    pub fn persisted(&self) -> Persisted {
        Persisted {
            theme: self.theme,
            charts: self.charts.clone(),
            view: self.view,
            last_config: Some(self.form.toml_text()),
            form_open: self.form_open,
            isolated_plugins: self.plugins.isolated(),
        }
    }

    /// Starts training the form's config.
    pub fn train(&mut self, ctx: Option<egui::Context>) {
        if self.live.as_ref().is_some_and(|l| l.phase.is_active()) {
            self.status = Some((false, "a run is already training; stop it first".into()));
            return;
        }
        let mut cfg = match self.form.config() {
            Ok(c) => c,
            Err(e) => {
                self.status = Some((false, e));
                return;
            }
        };
        // The run's config says where its plugins are and how they are hosted, so that
        // `rlvr-studio train --resume` (or a copy of the config) finds them the same way.
        cfg.plugins.isolated = self.plugins.isolated();
        let dirs: Vec<PathBuf> = self
            .plugins
            .host
            .used_by(&cfg)
            .iter()
            .filter_map(|p| p.path.parent().map(std::path::Path::to_path_buf))
            .collect();
        for d in dirs {
            if !cfg.plugins.dirs.contains(&d) && !self.opts.plugin_dirs.contains(&d) {
                cfg.plugins.dirs.push(d);
            }
        }
        let tags: Vec<String> = self
            .form
            .tags
            .split(',')
            .map(|t| t.trim().to_string())
            .filter(|t| !t.is_empty())
            .collect();
        match LiveRun::start(
            cfg,
            &self.opts.db,
            &self.opts.runs_root,
            tags,
            &self.plugins.host,
            ctx,
        ) {
            Ok(run) => {
                self.status = Some((true, format!("run {} started", run.run_id)));
                self.inspector = Inspector::default();
                self.live = Some(run);
                self.runs.invalidate();
                self.view = View::Train;
            }
            Err(e) => self.status = Some((false, format!("cannot start the run: {e}"))),
        }
    }

    /// Resumes an interrupted run.
    pub fn resume_run(&mut self, run_id: i64, ctx: Option<egui::Context>) {
        if self.live.as_ref().is_some_and(|l| l.phase.is_active()) {
            self.status = Some((false, "a run is already training; stop it first".into()));
            return;
        }
        match LiveRun::resume(run_id, &self.opts.db, &self.plugins.host, ctx) {
            Ok(run) => {
                self.status = Some((
                    true,
                    format!("run {run_id} resumed after step {}", run.start_step),
                ));
                self.live = Some(run);
                self.inspector = Inspector::default();
                self.runs.invalidate();
                self.view = View::Train;
            }
            Err(e) => self.status = Some((false, format!("cannot resume run {run_id}: {e}"))),
        }
    }

    /// Stops the live run and waits until its history is stored (window closing).
    pub fn shutdown(&mut self) {
        if let Some(l) = self.live.as_mut() {
            l.shutdown(Duration::from_secs(60));
        }
    }

    /// Drains the live run's events (never blocks).
    pub fn poll(&mut self) -> usize {
        let Some(l) = self.live.as_mut() else {
            return 0;
        };
        let was_running = !l.ended();
        let n = l.poll(4096);
        if was_running && l.ended() {
            self.runs.invalidate();
        }
        n
    }

    fn shortcuts(&mut self, ui: &mut egui::Ui) {
        let ctx = ui.ctx().clone();
        // Keys typed into a text field are text, not commands.
        let typing = ctx.egui_wants_keyboard_input();
        if ctx.input_mut(|i| i.consume_key(egui::Modifiers::COMMAND, egui::Key::Q)) {
            // Closing stops a live run cleanly (see the shell's on_exit).
            ctx.send_viewport_cmd(egui::ViewportCommand::Close);
        }
        let (space, s, e, train, stop, c) = ctx.input_mut(|i| {
            let train = i.consume_key(egui::Modifiers::COMMAND, egui::Key::Enter);
            let stop = i.consume_key(egui::Modifiers::COMMAND, egui::Key::Period);
            if typing {
                return (false, false, false, train, stop, false);
            }
            (
                i.consume_key(egui::Modifiers::NONE, egui::Key::Space),
                i.consume_key(egui::Modifiers::NONE, egui::Key::S),
                i.consume_key(egui::Modifiers::NONE, egui::Key::E),
                train,
                stop,
                i.consume_key(egui::Modifiers::NONE, egui::Key::C),
            )
        });
        if train {
            self.train(Some(ctx.clone()));
        }
        if let Some(l) = self.live.as_mut() {
            if space {
                if l.is_paused() {
                    l.resume_training();
                } else {
                    l.pause();
                }
            }
            if c {
                l.checkpoint();
            }
            if s {
                if matches!(l.phase, Phase::Running | Phase::Starting) {
                    l.pause();
                }
                l.step_once();
            }
            if e {
                l.evaluate();
            }
            if stop {
                l.stop();
            }
        }
    }

    /// Draws one frame.
    pub fn ui(&mut self, ui: &mut egui::Ui) {
        if self.applied_theme != Some(self.theme) {
            if self.applied_theme.is_none() {
                Theme::install_fonts(ui.ctx());
            }
            self.theme.apply(ui.ctx());
            self.applied_theme = Some(self.theme);
        }
        self.poll();
        self.shortcuts(ui);
        if self.live.as_ref().is_some_and(|l| l.phase.is_active()) {
            // The ETA, the elapsed time and the step's progress tick even between events.
            ui.ctx().request_repaint_after(Duration::from_millis(250));
        }
        egui::Panel::top("top_bar").show(ui, |ui| self.top_bar(ui));
        egui::CentralPanel::default().show(ui, |ui| match self.view {
            View::Train => self.train_view(ui),
            View::Runs => self.runs_view(ui),
            View::Inspector => {
                let store = self.store.as_ref().ok();
                self.inspector.ui(ui, self.theme, store, self.live.as_ref());
            }
            View::Plugins => {
                if self.plugins.ui(ui, &mut self.catalog, self.theme) {
                    self.form.set_extensions(self.plugins.extensions());
                }
            }
        });
    }

    fn top_bar(&mut self, ui: &mut egui::Ui) {
        ui.horizontal(|ui| {
            ui.label(egui::RichText::new("RLVR Studio").heading().strong());
            ui.add_space(theme::SECTION_GAP);
            for v in View::ALL {
                let on = self.view == v;
                let text = egui::RichText::new(v.label()).size(15.0 * self.theme.scale());
                if ui.selectable_label(on, text).clicked() {
                    self.view = v;
                    if v == View::Runs {
                        self.runs.invalidate();
                    }
                }
            }
            ui.with_layout(egui::Layout::right_to_left(egui::Align::Center), |ui| {
                let mut t = self.theme;
                ui.toggle_value(&mut t.large_text, "Large text")
                    .on_hover_text("bigger text for projectors");
                if ui
                    .button(if t.dark { "Light mode" } else { "Dark mode" })
                    .on_hover_text("switch dark / light mode")
                    .clicked()
                {
                    t.dark = !t.dark;
                }
                self.theme = t;
                ui.separator();
                if let Some(l) = &self.live {
                    let col = match l.phase {
                        Phase::Running | Phase::Starting => theme::ACCENT,
                        Phase::Paused | Phase::Stopping | Phase::Stopped => theme::WARN,
                        Phase::Finished => theme::GOOD,
                        Phase::Failed(_) => theme::BAD,
                    };
                    ui.colored_label(
                        col,
                        format!(
                            "run {} · {} · step {}/{}",
                            l.run_id,
                            l.phase.label(),
                            l.done_steps,
                            l.total_steps
                        ),
                    );
                }
            });
        });
        if let Err(e) = &self.store {
            ui.colored_label(
                theme::BAD,
                format!("Run history unavailable: {e}. Runs will not be recorded; start with --db PATH to choose another file."),
            );
        }
        if let Some((ok, m)) = &self.status {
            ui.colored_label(if *ok { theme::GOOD } else { theme::BAD }, m);
        }
    }

    fn run_summary(&self) -> String {
        match self.form.config() {
            Ok(cfg) => {
                let task = toml::Table::try_from(&cfg.task)
                    .map(|t| {
                        t.iter()
                            .filter(|(k, _)| k.as_str() != "name")
                            .map(|(k, v)| format!("{k} {v}"))
                            .collect::<Vec<_>>()
                            .join(", ")
                    })
                    .unwrap_or_default();
                let model = cfg.model.path.file_name().map_or_else(
                    || cfg.model.path.display().to_string(),
                    |n| n.to_string_lossy().into_owned(),
                );
                format!(
                    "Task: {} ({task})\nModel: {model}\nAlgorithm: {} · {} prompts × {} completions · {} steps",
                    cfg.task.name(),
                    cfg.algorithm.advantage,
                    cfg.rollout.prompts_per_step,
                    cfg.rollout.group_size,
                    cfg.steps
                )
            }
            Err(e) => format!("The configuration is not valid: {e}"),
        }
    }

    fn train_view(&mut self, ui: &mut egui::Ui) {
        let active = self.live.as_ref().is_some_and(|l| l.phase.is_active());
        if self.form_open {
            egui::Panel::left("form_panel")
                .resizable(true)
                .default_size(430.0)
                .max_size(560.0)
                .show(ui, |ui| {
                    ui.horizontal(|ui| {
                        ui.heading("New run");
                        if ui
                            .small_button("Hide")
                            .on_hover_text("hide the form")
                            .clicked()
                        {
                            self.form_open = false;
                        }
                    });
                    self.form.header_ui(ui, self.theme);
                    ui.separator();
                    egui::ScrollArea::vertical()
                        .id_salt("form_scroll")
                        .auto_shrink([false, false])
                        .show(ui, |ui| {
                            self.form.fields_ui(ui, &self.catalog, self.theme);
                        });
                });
        }
        egui::CentralPanel::default().show(ui, |ui| {
            self.control_bar(ui, active);
            ui.separator();
            match &self.live {
                None => self.welcome(ui),
                Some(_) => self.live_charts(ui),
            }
        });
    }

    fn welcome(&mut self, ui: &mut egui::Ui) {
        ui.add_space(theme::SECTION_GAP);
        egui::Frame::new()
            .fill(self.theme.card())
            .inner_margin(16.0)
            .corner_radius(8.0)
            .show(ui, |ui| {
                ui.label(egui::RichText::new("Train a model with verifiable rewards").heading());
                ui.add_space(theme::GAP);
                match self.form.error.is_none() {
                    true => ui.label(self.run_summary()),
                    false => ui.colored_label(theme::BAD, self.run_summary()),
                };
                ui.add_space(theme::GAP);
                ui.label(
                    egui::RichText::new(
                        "Press Train: reward and accuracy appear here live, within seconds. \
                         Change anything in the form on the left first if you like.",
                    )
                    .color(self.theme.weak()),
                );
                ui.label(
                    egui::RichText::new(
                        "Shortcuts: Ctrl+Enter train · Space pause/resume · S step once · E evaluate · C checkpoint · Ctrl+. stop · Ctrl+Q quit",
                    )
                    .color(self.theme.weak())
                    .small(),
                );
            });
    }

    fn control_bar(&mut self, ui: &mut egui::Ui, active: bool) {
        let ctx = ui.ctx().clone();
        ui.horizontal_wrapped(|ui| {
            if !self.form_open && ui.button("Show form").clicked() {
                self.form_open = true;
            }
            let big = egui::RichText::new("▶  Train")
                .size(20.0 * self.theme.scale())
                .strong();
            let train = ui
                .add_enabled(
                    !active && self.form.error.is_none(),
                    egui::Button::new(big)
                        .fill(theme::ACCENT)
                        .min_size(egui::vec2(140.0, 40.0 * self.theme.scale())),
                )
                .on_hover_text("start training the configuration in the form (Ctrl+Enter)");
            if train.clicked() {
                self.train(Some(ctx.clone()));
            }
            let Some(l) = self.live.as_mut() else { return };
            let paused = l.is_paused();
            if paused {
                if ui
                    .add_enabled(active, egui::Button::new("▶ Resume"))
                    .on_hover_text("continue training (Space)")
                    .clicked()
                {
                    l.resume_training();
                }
            } else if ui
                .add_enabled(
                    active && l.phase != Phase::Stopping,
                    egui::Button::new("Pause"),
                )
                .on_hover_text("pause between steps (Space)")
                .clicked()
            {
                l.pause();
            }
            if ui
                .add_enabled(
                    active && l.phase != Phase::Stopping,
                    egui::Button::new("Step once"),
                )
                .on_hover_text("pause, then run exactly one update (S)")
                .clicked()
            {
                if matches!(l.phase, Phase::Running | Phase::Starting) {
                    l.pause();
                }
                l.step_once();
            }
            if ui
                .add_enabled(active, egui::Button::new("Evaluate"))
                .on_hover_text("held-out evaluation after the current step (E)")
                .clicked()
            {
                l.evaluate();
            }
            if ui
                .add_enabled(active, egui::Button::new("Checkpoint"))
                .on_hover_text(
                    "save the policy now as a Hugging Face folder (checkpoints/step-N) with a \
                     resume checkpoint (C)",
                )
                .clicked()
            {
                l.checkpoint();
            }
            if ui
                .add_enabled(
                    active && l.phase != Phase::Stopping,
                    egui::Button::new("■ Stop"),
                )
                .on_hover_text("stop after the current step; the run can be resumed (Ctrl+.)")
                .clicked()
            {
                l.stop();
            }
            if !active && l.phase == Phase::Stopped {
                let id = l.run_id;
                if ui
                    .button("Resume run")
                    .on_hover_text("continue from the last checkpoint")
                    .clicked()
                {
                    self.resume_run(id, Some(ctx.clone()));
                }
            }
        });
        let Some(l) = &self.live else { return };
        ui.horizontal_wrapped(|ui| {
            let eta = l
                .eta()
                .map_or(String::new(), |d| format!(" · ETA {}", fmt_duration(d)));
            let doing = l.activity().map_or(String::new(), |a| format!(" · {a}"));
            let text = format!(
                "step {}/{} · {}{doing}{}",
                l.done_steps,
                l.total_steps,
                l.phase.label(),
                eta
            );
            ui.add(
                egui::ProgressBar::new(l.progress())
                    .text(text)
                    .desired_width((ui.available_width() * 0.5).min(460.0)),
            );
            if let Some(m) = l.steps.last() {
                ui.label(
                    egui::RichText::new(format!(
                        "reward {:.3} · acc {:.3} · {:.2} s/step",
                        m.reward_mean, m.accuracy, m.step_time_s
                    ))
                    .monospace(),
                );
            }
            if let Some(c) = l.last_checkpoint {
                ui.label(egui::RichText::new(format!("checkpoint @ {c}")).color(self.theme.weak()));
            }
        });
        if let Phase::Failed(e) = &l.phase {
            ui.colored_label(theme::BAD, format!("The run failed: {e}"));
        }
    }

    fn live_charts(&mut self, ui: &mut egui::Ui) {
        let Some(l) = &self.live else { return };
        self.charts.controls(ui);
        let series = [RunSeries {
            label: l.cfg.name.clone(),
            table: &l.table,
            color: theme::series(0),
        }];
        let mut lines = 0;
        egui::ScrollArea::vertical()
            .id_salt("live_scroll")
            .auto_shrink([false, false])
            .show(ui, |ui| {
                if l.table.cols.is_empty() {
                    ui.label(format!(
                        "Loading the model and evaluating step 0… ({:.0} s)",
                        l.wall_s()
                    ));
                }
                lines = charts::chart_grid(
                    ui,
                    "live",
                    &series,
                    &self.charts,
                    theme::CHART_HEIGHT,
                    &mut self.chart_cache,
                );
                if !l.logs.is_empty() {
                    egui::CollapsingHeader::new(format!("Log ({} lines)", l.logs.len())).show(
                        ui,
                        |ui| {
                            for line in l.logs.iter().rev().take(50) {
                                ui.label(egui::RichText::new(line).monospace().small());
                            }
                        },
                    );
                }
            });
        self.live_lines = lines;
    }

    fn runs_view(&mut self, ui: &mut egui::Ui) {
        let ctx = ui.ctx().clone();
        let live_id = self
            .live
            .as_ref()
            .filter(|l| l.phase.is_active())
            .map(|l| l.run_id);
        let store = self.store.as_ref().ok();
        let live_table = self.live.as_ref().map(|l| (l.run_id, &l.table));
        let action = self
            .runs
            .ui(ui, self.theme, store, &mut self.charts, live_id, live_table);
        match action {
            Some(RunsAction::Inspect(id)) => {
                let step = self
                    .store
                    .as_ref()
                    .ok()
                    .and_then(|s| s.sample_steps(id).ok())
                    .and_then(|v| v.last().copied())
                    .unwrap_or(0);
                self.inspector.open(id, step as usize);
                self.view = View::Inspector;
            }
            Some(RunsAction::Duplicate(id)) => {
                let config = self
                    .store
                    .as_ref()
                    .ok()
                    .and_then(|s| s.run(id).ok())
                    .map(|r| r.config);
                match config.map(|c| self.form.duplicate(id, &c)) {
                    Some(Ok(())) => {
                        self.form_open = true;
                        self.view = View::Train;
                        self.status = Some((true, format!("form filled from run {id}")));
                    }
                    Some(Err(e)) => self.status = Some((false, e)),
                    None => self.status = Some((false, format!("run {id} not found"))),
                }
            }
            Some(RunsAction::Resume(id)) => self.resume_run(id, Some(ctx)),
            None => {}
        }
    }
}

/// `1h02m`, `3m05s`, `42s`.
pub fn fmt_duration(d: Duration) -> String {
    let s = d.as_secs();
    if s >= 3600 {
        format!("{}h{:02}m", s / 3600, (s % 3600) / 60)
    } else if s >= 60 {
        format!("{}m{:02}s", s / 60, s % 60)
    } else {
        format!("{s}s")
    }
}
