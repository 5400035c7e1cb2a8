//! The run history: search and tags, multi-select to overlay several runs' curves with a config
//! diff beside them, and delete / export / resume / duplicate / inspect.

use std::collections::{BTreeSet, HashMap};
use std::io::Write as _;
use std::path::Path;

pub use rlvr_store::export::ExportFormat;
use rlvr_store::{RunFilter, RunRow, RunStatus, Store};

use crate::charts::{self, ChartSettings, RunSeries};
use crate::history::MetricTable;
use crate::theme::{self, Theme};

/// What the runs view asks the app to do.
#[derive(Clone, Debug, PartialEq)]
pub enum RunsAction {
    /// Open the inspector on this run.
    Inspect(i64),
    /// Copy this run's config into the new-run form.
    Duplicate(i64),
    /// Continue this interrupted run.
    Resume(i64),
}

/// The runs view's state.
#[derive(Default)]
pub struct RunsPanel {
    /// Runs listed (newest first).
    pub rows: Vec<RunRow>,
    /// Text filter (name, notes, task, config).
    pub search: String,
    /// Tag filter.
    pub tag: String,
    /// Runs ticked for comparison.
    pub selected: BTreeSet<i64>,
    /// Loaded metric tables, by run.
    pub tables: HashMap<i64, MetricTable>,
    /// Tag to add to the ticked runs.
    pub new_tag: String,
    /// Export file.
    pub export_path: String,
    /// Result of the last action: (ok, message).
    pub message: Option<(bool, String)>,
    /// Run awaiting delete confirmation.
    pub confirm_delete: Option<i64>,
    /// Prepared chart series.
    pub cache: charts::ChartCache,
    /// Last held-out greedy accuracy of each listed run.
    pub final_acc: HashMap<i64, Option<f64>>,
    stale: bool,
    loaded_once: bool,
}

/// The estimator of a stored config (for the list).
fn algorithm_of(config: &str) -> String {
    toml::from_str::<toml::Table>(config)
        .ok()
        .and_then(|t| {
            t.get("algorithm")?
                .get("advantage")?
                .as_str()
                .map(str::to_string)
        })
        .unwrap_or_else(|| "grpo".into())
}

/// Keys whose values differ between configs, apart from `name` and `output.dir`: key → value
/// per config ("—" when absent). The same diff as `rlvr-studio runs diff`.
pub fn config_diff(configs: &[&str]) -> Vec<(String, Vec<String>)> {
    rlvr_store::export::config_diff(configs, &["output.dir", "name"])
        .into_iter()
        .map(|d| {
            let vals = d
                .values
                .into_iter()
                .map(|v| v.unwrap_or_else(|| "—".into()))
                .collect();
            (d.key, vals)
        })
        .collect()
}

/// Writes a run's metrics as CSV or JSONL to `path`: the same bytes as
/// `rlvr-studio runs export RUN --no-samples`. Returns the number of steps written.
pub fn export(store: &Store, run_id: i64, path: &Path, fmt: ExportFormat) -> Result<usize, String> {
    let by_step = store.metrics_by_step(run_id).map_err(|e| e.to_string())?;
    let io = |e: std::io::Error| format!("{}: {e}", path.display());
    let f = std::fs::File::create(path).map_err(io)?;
    let mut w = std::io::BufWriter::new(f);
    rlvr_store::export::write_metrics(&mut w, fmt, run_id, &by_step).map_err(io)?;
    w.flush().map_err(io)?;
    Ok(by_step.len())
}

fn status_color(s: RunStatus) -> egui::Color32 {
    match s {
        RunStatus::Running => theme::ACCENT,
        RunStatus::Finished => theme::GOOD,
        RunStatus::Interrupted => theme::WARN,
        RunStatus::Failed => theme::BAD,
    }
}

impl RunsPanel {
    /// Marks the list for reloading on the next frame.
    pub fn invalidate(&mut self) {
        self.stale = true;
    }

    /// Reloads the list (and forgets cached tables of runs that may have grown).
    pub fn reload(&mut self, store: &Store) {
        let filter = RunFilter {
            text: (!self.search.trim().is_empty()).then(|| self.search.trim().to_string()),
            tag: (!self.tag.trim().is_empty()).then(|| self.tag.trim().to_string()),
            ..Default::default()
        };
        match store.list_runs(&filter) {
            Ok(rows) => {
                for r in &rows {
                    if r.status == RunStatus::Running {
                        self.tables.remove(&r.id);
                        self.final_acc.remove(&r.id);
                    }
                    self.final_acc.entry(r.id).or_insert_with(|| {
                        store
                            .series(r.id, "eval/greedy_accuracy")
                            .ok()
                            .and_then(|s| s.last().map(|p| p.1))
                    });
                }
                self.rows = rows;
            }
            Err(e) => self.message = Some((false, e.to_string())),
        }
        self.stale = false;
    }

    /// Tables of the ticked runs, loading what is missing.
    pub fn load_selected(&mut self, store: &Store) {
        for id in &self.selected {
            if !self.tables.contains_key(id) {
                match MetricTable::load(store, *id) {
                    Ok(t) => {
                        self.tables.insert(*id, t);
                    }
                    Err(e) => self.message = Some((false, e.to_string())),
                }
            }
        }
    }

    /// Draws the view.
    pub fn ui(
        &mut self,
        ui: &mut egui::Ui,
        theme: Theme,
        store: Option<&Store>,
        charts_settings: &mut ChartSettings,
        live_run: Option<i64>,
        live_table: Option<(i64, &MetricTable)>,
    ) -> Option<RunsAction> {
        let Some(store) = store else {
            ui.colored_label(
                theme::BAD,
                "The run history is not open (see the message above).",
            );
            return None;
        };
        if self.stale || !self.loaded_once {
            self.loaded_once = true;
            self.reload(store);
        }
        let mut action = None;
        egui::Panel::left("runs_list")
            .resizable(true)
            .default_size(520.0)
            .show(ui, |ui| {
                action = self.list_ui(ui, theme, store, live_run);
            });
        egui::CentralPanel::default().show(ui, |ui| {
            self.compare_ui(ui, theme, store, charts_settings, live_table);
        });
        action
    }

    fn list_ui(
        &mut self,
        ui: &mut egui::Ui,
        theme: Theme,
        store: &Store,
        live_run: Option<i64>,
    ) -> Option<RunsAction> {
        let mut action = None;
        ui.horizontal_wrapped(|ui| {
            let l = ui.label("Search");
            let r1 = ui
                .add(egui::TextEdit::singleline(&mut self.search).desired_width(140.0))
                .labelled_by(l.id);
            let l = ui.label("Tag");
            let r2 = ui
                .add(egui::TextEdit::singleline(&mut self.tag).desired_width(80.0))
                .labelled_by(l.id);
            if r1.changed() || r2.changed() || ui.button("↻ Refresh").clicked() {
                self.reload(store);
            }
        });
        if let Some((ok, m)) = &self.message {
            ui.colored_label(if *ok { theme::GOOD } else { theme::BAD }, m);
        }
        ui.label(
            egui::RichText::new(format!(
                "{} runs · tick runs to overlay their curves",
                self.rows.len()
            ))
            .color(theme.weak()),
        );
        egui::ScrollArea::vertical()
            .id_salt("runs_scroll")
            .max_height(ui.available_height() * 0.55)
            .show(ui, |ui| {
                egui::Grid::new("runs_grid")
                    .num_columns(6)
                    .striped(true)
                    .spacing(egui::vec2(10.0, 4.0))
                    .show(ui, |ui| {
                        for h in ["run", "status", "task", "algorithm", "accuracy", "created"] {
                            ui.label(egui::RichText::new(h).strong());
                        }
                        ui.end_row();
                        for r in &self.rows {
                            let mut on = self.selected.contains(&r.id);
                            if ui
                                .checkbox(&mut on, format!("{} #{}", r.name, r.id))
                                .on_hover_text("tick to overlay this run's curves")
                                .changed()
                            {
                                if on {
                                    self.selected.insert(r.id);
                                } else {
                                    self.selected.remove(&r.id);
                                }
                            }
                            ui.colored_label(status_color(r.status), r.status.as_str());
                            ui.label(&r.task);
                            ui.label(algorithm_of(&r.config));
                            let acc = self.final_acc.get(&r.id).copied().flatten();
                            ui.label(acc.map_or("—".into(), |a| format!("{a:.3}")));
                            ui.label(r.created.get(..16).unwrap_or(&r.created).replace('T', " "));
                            ui.end_row();
                        }
                    });
            });
        ui.separator();
        // Actions on the ticked runs.
        let first = self.selected.iter().next_back().copied();
        let row = first
            .and_then(|id| self.rows.iter().find(|r| r.id == id))
            .cloned();
        ui.horizontal_wrapped(|ui| {
            let one = row.is_some();
            if ui.add_enabled(one, egui::Button::new("Inspect")).clicked() {
                action = first.map(RunsAction::Inspect);
            }
            if ui
                .add_enabled(one, egui::Button::new("Duplicate run"))
                .on_hover_text("start a new run from this run's config")
                .clicked()
            {
                action = first.map(RunsAction::Duplicate);
            }
            let resumable = row
                .as_ref()
                .is_some_and(|r| r.status == RunStatus::Interrupted && live_run.is_none());
            if ui
                .add_enabled(resumable, egui::Button::new("Resume"))
                .on_hover_text("continue an interrupted run from its last checkpoint")
                .clicked()
            {
                action = first.map(RunsAction::Resume);
            }
            let deletable = row.as_ref().is_some_and(|r| Some(r.id) != live_run);
            if ui
                .add_enabled(deletable, egui::Button::new("Delete…"))
                .clicked()
            {
                self.confirm_delete = first;
            }
        });
        if let Some(id) = self.confirm_delete {
            ui.horizontal(|ui| {
                ui.colored_label(theme::WARN, format!("Delete run {id} and its history?"));
                if ui.button("Yes, delete").clicked() {
                    match store.delete_run(id) {
                        Ok(()) => {
                            self.message = Some((true, format!("deleted run {id}")));
                            self.selected.remove(&id);
                            self.tables.remove(&id);
                        }
                        Err(e) => self.message = Some((false, e.to_string())),
                    }
                    self.confirm_delete = None;
                    self.reload(store);
                }
                if ui.button("Cancel").clicked() {
                    self.confirm_delete = None;
                }
            });
        }
        if let Some(r) = &row {
            ui.horizontal_wrapped(|ui| {
                ui.label(format!("Run {}: tags", r.id));
                for t in &r.tags {
                    ui.label(egui::RichText::new(t).background_color(theme.card()));
                }
                let l = ui.label("New tag");
                ui.add(egui::TextEdit::singleline(&mut self.new_tag).desired_width(80.0))
                    .labelled_by(l.id);
                if ui.button("Add tag").clicked() && !self.new_tag.trim().is_empty() {
                    let tag = self.new_tag.trim().to_string();
                    let ids: Vec<i64> = self.selected.iter().copied().collect();
                    for id in ids {
                        if let Err(e) = store.set_tags(id, std::slice::from_ref(&tag), false) {
                            self.message = Some((false, e.to_string()));
                        }
                    }
                    self.new_tag.clear();
                    self.reload(store);
                }
            });
            ui.horizontal_wrapped(|ui| {
                let l = ui.label("Export to");
                ui.add(
                    egui::TextEdit::singleline(&mut self.export_path)
                        .hint_text("run.csv or run.jsonl")
                        .desired_width(200.0),
                )
                .labelled_by(l.id);
                for (label, fmt, ext) in [
                    ("Export CSV", ExportFormat::Csv, "csv"),
                    ("Export JSONL", ExportFormat::Jsonl, "jsonl"),
                ] {
                    if ui.button(label).clicked() {
                        let path = if self.export_path.trim().is_empty() {
                            std::path::PathBuf::from(format!("run-{}.{ext}", r.id))
                        } else {
                            std::path::PathBuf::from(self.export_path.trim())
                        };
                        self.message = Some(match export(store, r.id, &path, fmt) {
                            Ok(n) => (true, format!("wrote {n} steps to {}", path.display())),
                            Err(e) => (false, e),
                        });
                    }
                }
            });
        }
        action
    }

    fn compare_ui(
        &mut self,
        ui: &mut egui::Ui,
        theme: Theme,
        store: &Store,
        settings: &mut ChartSettings,
        live_table: Option<(i64, &MetricTable)>,
    ) {
        if self.selected.is_empty() {
            ui.label("Tick one or more runs on the left to see their curves here.");
            return;
        }
        self.load_selected(store);
        settings.controls(ui);
        let ids: Vec<i64> = self.selected.iter().copied().collect();
        let rows: Vec<&RunRow> = ids
            .iter()
            .filter_map(|id| self.rows.iter().find(|r| r.id == *id))
            .collect();
        if rows.len() >= 2 {
            egui::CollapsingHeader::new(format!("Config diff ({} runs)", rows.len()))
                .default_open(true)
                .show(ui, |ui| {
                    let diff =
                        config_diff(&rows.iter().map(|r| r.config.as_str()).collect::<Vec<_>>());
                    if diff.is_empty() {
                        ui.label("The configs are identical (apart from name and folder).");
                    }
                    egui::ScrollArea::vertical()
                        .id_salt("diff_scroll")
                        .max_height(160.0)
                        .show(ui, |ui| {
                            egui::Grid::new("diff_grid").striped(true).show(ui, |ui| {
                                ui.label(egui::RichText::new("key").strong());
                                for (i, r) in rows.iter().enumerate() {
                                    ui.colored_label(
                                        theme::series(i),
                                        format!("{} #{}", r.name, r.id),
                                    );
                                }
                                ui.end_row();
                                for (k, vals) in &diff {
                                    ui.label(egui::RichText::new(k).monospace());
                                    for v in vals {
                                        ui.label(egui::RichText::new(v).monospace());
                                    }
                                    ui.end_row();
                                }
                            });
                        });
                });
        }
        let series: Vec<RunSeries<'_>> = ids
            .iter()
            .enumerate()
            .filter_map(|(i, id)| {
                // The run being trained: its live table, not a snapshot of the history.
                let t = match live_table {
                    Some((lid, t)) if lid == *id => t,
                    _ => self.tables.get(id)?,
                };
                let name = self
                    .rows
                    .iter()
                    .find(|r| r.id == *id)
                    .map_or(format!("#{id}"), |r| format!("{} #{id}", r.name));
                Some(RunSeries {
                    label: name,
                    table: t,
                    color: theme::series(i),
                })
            })
            .collect();
        let _ = theme;
        egui::ScrollArea::vertical()
            .id_salt("compare_scroll")
            .show(ui, |ui| {
                charts::chart_grid(
                    ui,
                    "compare",
                    &series,
                    settings,
                    theme::CHART_HEIGHT,
                    &mut self.cache,
                );
            });
    }

    /// How many lines the comparison draws for a metric (for tests): runs ticked that have it.
    pub fn overlaid(&self, metric: &str) -> usize {
        self.selected
            .iter()
            .filter(|id| {
                self.tables
                    .get(id)
                    .is_some_and(|t| !t.get(metric).is_empty())
            })
            .count()
    }
}
