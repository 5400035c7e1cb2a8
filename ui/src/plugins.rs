//! The plugins view: the loaded plugin libraries (name, version, SDK/ABI, kind of each component,
//! file hash) and the ones that failed to load, in plain words; "Add plugin…" (rfd, with a path
//! field beside it); the in-process / isolated choice per plugin; and a verifier playground that
//! scores a typed completion against a reference. A loaded plugin's components go into the
//! [`ComponentCatalog`], so the new-run form offers them with their parameters.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crossbeam_channel::Receiver;
use rlvr_core::extensions::{
    ComponentKind as EngineKind, ComponentScore, Extensions, Instance, ScoreItem,
};
use rlvr_core::params::ParamValue;
use rlvr_plugin_host::PluginHost;

use crate::catalog::ComponentCatalog;
use crate::theme::{self, Theme};

/// The verifier playground's state.
#[derive(Default)]
pub struct Playground {
    /// Verifier or rubric name.
    pub component: String,
    /// Prompt (optional).
    pub prompt: String,
    /// Completion to score.
    pub completion: String,
    /// Reference answer.
    pub answer: String,
    /// The component's parameters (`params.NAME` keys, edited with the form's widgets).
    pub params: toml::Table,
    /// Last result.
    pub result: Option<Result<ComponentScore, String>>,
}

/// The plugins view's state.
pub struct PluginsPanel {
    /// The loaded plugins and the load errors.
    pub host: PluginHost,
    /// Folders scanned at start.
    pub dirs: Vec<PathBuf>,
    /// The "Add plugin" path field.
    pub add_path: String,
    /// Last message: (ok, text).
    pub message: Option<(bool, String)>,
    /// Verifier playground.
    pub playground: Playground,
    dialog: Option<Receiver<Option<PathBuf>>>,
}

impl Default for PluginsPanel {
    fn default() -> Self {
        Self::load(&[], &[])
    }
}

/// A load error in plain words (the library's path first, then what is wrong).
pub fn plain_error(e: &rlvr_plugin_host::PluginError) -> String {
    e.to_string()
}

impl PluginsPanel {
    /// Loads every library in `dirs`; `isolated` names the plugins hosted in a child process
    /// (a name that matches no loaded plugin, e.g. one removed since, is shown as a message).
    pub fn load(dirs: &[PathBuf], isolated: &[String]) -> Self {
        let mut host = PluginHost::new();
        host.child_program = std::env::current_exe().ok();
        host.scan(dirs);
        let message = host
            .set_isolated(isolated)
            .err()
            .map(|e| (false, plain_error(&e)));
        Self {
            host,
            dirs: dirs.to_vec(),
            add_path: String::new(),
            message,
            playground: Playground::default(),
            dialog: None,
        }
    }

    /// The components the loaded plugins offer, for runs.
    pub fn extensions(&self) -> Extensions {
        self.host.extensions()
    }

    /// Names of the isolated plugins (persisted).
    pub fn isolated(&self) -> Vec<String> {
        self.host
            .plugins
            .iter()
            .filter(|p| p.isolated)
            .map(|p| p.manifest.name.clone())
            .collect()
    }

    /// Puts the loaded plugins' components into the catalog.
    pub fn fill_catalog(&self, catalog: &mut ComponentCatalog) {
        for p in &self.host.plugins {
            for c in &p.manifest.components {
                catalog.add_plugin_component(c);
            }
        }
    }

    /// Loads one library; returns whether it loaded (the error is shown otherwise).
    pub fn add(&mut self, path: &Path, catalog: &mut ComponentCatalog) -> bool {
        let before = self.host.errors.len();
        if self.host.add(path) {
            if let Some(p) = self.host.plugins.iter().find(|p| p.path == path) {
                self.message = Some((
                    true,
                    format!(
                        "loaded {} {} ({} component(s))",
                        p.manifest.name,
                        p.manifest.version,
                        p.manifest.components.len()
                    ),
                ));
            }
            self.fill_catalog(catalog);
            true
        } else {
            let e = self.host.errors[before..]
                .last()
                .map(plain_error)
                .unwrap_or_else(|| "could not load the plugin".into());
            self.message = Some((false, e));
            false
        }
    }

    /// Scores the playground's completion with its component.
    pub fn score_playground(&mut self) {
        let pg = &mut self.playground;
        let ext = self.host.extensions();
        let values: BTreeMap<String, ParamValue> = pg
            .params
            .get("params")
            .and_then(|v| v.as_table())
            .map(|t| {
                t.iter()
                    .filter_map(|(k, v)| v.clone().try_into().ok().map(|v| (k.clone(), v)))
                    .collect()
            })
            .unwrap_or_default();
        let built = ext.build(
            "playground.component",
            "playground.params",
            &[EngineKind::Verifier, EngineKind::Rubric],
            &pg.component,
            &values,
        );
        pg.result = Some(match built {
            Ok((_, Instance::Reward(r))) => {
                let meta = serde_json::Value::Null;
                let item = ScoreItem {
                    prompt: &pg.prompt,
                    completion: &pg.completion,
                    answer: &pg.answer,
                    meta: &meta,
                };
                r.score_batch(&[item])
                    .pop()
                    .unwrap_or_else(|| Err("no result".into()))
            }
            Ok(_) => Err(format!("{} is not a verifier or rubric", pg.component)),
            Err(e) => Err(e.to_string()),
        });
    }

    fn open_dialog(&mut self) {
        let (tx, rx) = crossbeam_channel::bounded(1);
        let start = self.dirs.first().cloned().unwrap_or_default();
        let spawned = std::thread::Builder::new()
            .name("file-dialog".into())
            .spawn(move || {
                let picked = rfd::FileDialog::new()
                    .set_directory(&start)
                    .add_filter("plugin library", &[rlvr_plugin_host::library_suffix()])
                    .pick_file();
                let _ = tx.send(picked);
            });
        if spawned.is_ok() {
            self.dialog = Some(rx);
        }
    }

    /// Draws the view. Returns true when the set of components changed (the form must re-check).
    pub fn ui(&mut self, ui: &mut egui::Ui, catalog: &mut ComponentCatalog, theme: Theme) -> bool {
        let mut changed = false;
        if let Some(rx) = &self.dialog {
            if let Ok(picked) = rx.try_recv() {
                self.dialog = None;
                match picked {
                    Some(p) => {
                        self.add_path = p.display().to_string();
                        changed |= self.add(&p, catalog);
                    }
                    None => {
                        self.message = Some((
                            false,
                            "no file chosen (without a desktop file dialog, type the library's \
                             path in the field and press Load)"
                                .into(),
                        ))
                    }
                }
            } else {
                ui.ctx().request_repaint_after(Duration::from_millis(100));
            }
        }
        egui::ScrollArea::vertical()
            .auto_shrink([false, false])
            .show(ui, |ui| changed |= self.view(ui, catalog, theme));
        changed
    }

    fn view(&mut self, ui: &mut egui::Ui, catalog: &mut ComponentCatalog, theme: Theme) -> bool {
        let mut changed = false;
        ui.heading("Plugins");
        ui.label(
            egui::RichText::new(format!(
                "plugin ABI {} · SDK {} · folders: {}",
                rlvr_plugin_host::ABI_VERSION,
                rlvr_plugin_host::SDK_VERSION,
                self.dirs
                    .iter()
                    .map(|d| d.display().to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            ))
            .color(theme.weak()),
        );
        ui.horizontal(|ui| {
            if ui
                .button("Add plugin…")
                .on_hover_text("choose a plugin library (.so / .dylib / .dll)")
                .clicked()
            {
                self.open_dialog();
            }
            let l = ui.label("library path");
            ui.add(egui::TextEdit::singleline(&mut self.add_path).desired_width(360.0))
                .labelled_by(l.id);
            if ui.button("Load").clicked() && !self.add_path.trim().is_empty() {
                let p = PathBuf::from(self.add_path.trim());
                changed |= self.add(&p, catalog);
            }
        });
        if let Some((ok, text)) = &self.message {
            ui.colored_label(if *ok { theme::GOOD } else { theme::BAD }, text);
        }
        ui.add_space(theme::SECTION_GAP);
        theme::section(ui, "Loaded plugins");
        if self.host.plugins.is_empty() {
            ui.label("No plugins loaded");
        }
        let mut toggles: Vec<(String, bool)> = Vec::new();
        let mut reload: Option<PathBuf> = None;
        egui::Grid::new("plugins_grid")
            .striped(true)
            .show(ui, |ui| {
                for h in [
                    "plugin",
                    "version",
                    "ABI",
                    "components",
                    "hosting",
                    "sha256",
                    "file",
                ] {
                    ui.label(egui::RichText::new(h).strong());
                }
                ui.end_row();
                for p in &self.host.plugins {
                    let m = &p.manifest;
                    ui.label(&m.name).on_hover_text(&m.description);
                    ui.label(format!("{} (SDK {})", m.version, m.sdk_version));
                    ui.colored_label(theme::GOOD, format!("ABI {} compatible", m.abi_version));
                    let comps: Vec<String> = m
                        .components
                        .iter()
                        .map(|c| format!("{} {}", c.kind, c.name))
                        .collect();
                    ui.label(comps.join(", "));
                    let mut iso = p.isolated;
                    if ui
                    .checkbox(&mut iso, "isolated")
                    .on_hover_text(
                        "host this plugin in a child process: a crash or a hang costs only the \
                         affected samples (slower per call)",
                    )
                    .changed()
                {
                    toggles.push((m.name.clone(), iso));
                }
                    ui.label(egui::RichText::new(&p.sha256[..12.min(p.sha256.len())]).monospace())
                        .on_hover_text(&p.sha256);
                    ui.horizontal(|ui| {
                        if ui
                            .button("Reload")
                            .on_hover_text(
                                "load the library again from disk (after rebuilding it); each \
                                 reload keeps the old copy in memory (~0.5 MB)",
                            )
                            .clicked()
                        {
                            reload = Some(p.path.clone());
                        }
                        ui.label(
                            egui::RichText::new(p.path.display().to_string()).color(theme.weak()),
                        );
                    });
                    ui.end_row();
                }
            });
        if let Some(path) = reload {
            match self.host.reload(&path) {
                Ok(()) => {
                    self.message = Some((true, format!("reloaded {}", path.display())));
                    self.fill_catalog(catalog);
                    changed = true;
                }
                Err(e) => self.message = Some((false, plain_error(&e))),
            }
        }
        if !toggles.is_empty() {
            let mut names = self.isolated();
            for (name, on) in toggles {
                names.retain(|n| *n != name);
                if on {
                    names.push(name);
                }
            }
            if let Err(e) = self.host.set_isolated(&names) {
                self.message = Some((false, plain_error(&e)));
            }
        }
        if !self.host.errors.is_empty() {
            ui.add_space(theme::SECTION_GAP);
            theme::section(ui, "Not loaded");
            for e in &self.host.errors {
                ui.colored_label(theme::BAD, plain_error(e));
            }
        }
        ui.add_space(theme::SECTION_GAP);
        self.playground_ui(ui, theme);
        ui.add_space(theme::SECTION_GAP);
        theme::section(ui, "Components available to new runs");
        catalog_grid(ui, catalog, theme);
        changed
    }

    fn playground_ui(&mut self, ui: &mut egui::Ui, theme: Theme) {
        theme::section(ui, "Verifier playground");
        let names: Vec<String> = self
            .host
            .plugins
            .iter()
            .flat_map(|p| p.manifest.components.iter())
            .filter(|c| matches!(c.kind, EngineKind::Verifier | EngineKind::Rubric))
            .map(|c| c.name.clone())
            .collect();
        if names.is_empty() {
            ui.label(
                egui::RichText::new("load a plugin with a verifier or rubric to try it here")
                    .color(theme.weak()),
            );
            return;
        }
        if !names.contains(&self.playground.component) {
            self.playground.component = names[0].clone();
            self.playground.params = toml::Table::new();
        }
        let specs: Vec<rlvr_core::params::ParamSpec> = self
            .host
            .plugins
            .iter()
            .flat_map(|p| p.manifest.components.iter())
            .find(|c| c.name == self.playground.component)
            .map(|c| c.params.clone())
            .unwrap_or_default();
        let mut score = false;
        egui::Grid::new("playground_grid")
            .num_columns(2)
            .show(ui, |ui| {
                let l = ui.label("component");
                let before = self.playground.component.clone();
                egui::ComboBox::from_id_salt("playground.component")
                    .selected_text(&self.playground.component)
                    .show_ui(ui, |ui| {
                        for n in &names {
                            ui.selectable_value(&mut self.playground.component, n.clone(), n);
                        }
                    })
                    .response
                    .labelled_by(l.id);
                ui.end_row();
                if self.playground.component != before {
                    self.playground.params = toml::Table::new();
                    self.playground.result = None;
                }
                for spec in &specs {
                    let key = crate::form::spec_key("params", &spec.name);
                    crate::form::field(
                        ui,
                        &mut self.playground.params,
                        &crate::form::Field::Num(key, spec.clone()),
                        None,
                        theme,
                    );
                }
                for (label, text) in [
                    ("prompt", &mut self.playground.prompt),
                    ("completion", &mut self.playground.completion),
                    ("reference", &mut self.playground.answer),
                ] {
                    let l = ui.label(label);
                    ui.add(egui::TextEdit::singleline(text).desired_width(360.0))
                        .labelled_by(l.id);
                    ui.end_row();
                }
                ui.label("");
                score = ui.button("Score").clicked();
                ui.end_row();
            });
        if score {
            self.score_playground();
        }
        match &self.playground.result {
            Some(Ok(s)) => {
                let passed = s.passed.unwrap_or(s.score >= 1.0);
                ui.colored_label(
                    if passed { theme::GOOD } else { theme::BAD },
                    format!(
                        "score {:.3} · {} · {}",
                        s.score,
                        if passed { "passed" } else { "failed" },
                        s.reason
                    ),
                );
                for p in &s.parts {
                    ui.label(format!(
                        "  {} = {:.3} (weight {}) {}",
                        p.name, p.score, p.weight, p.reason
                    ));
                }
            }
            Some(Err(e)) => {
                ui.colored_label(theme::BAD, format!("error: {e}"));
            }
            None => {}
        }
    }
}

fn catalog_grid(ui: &mut egui::Ui, catalog: &ComponentCatalog, theme: Theme) {
    egui::Grid::new("catalog_grid")
        .striped(true)
        .show(ui, |ui| {
            for h in ["kind", "name", "parameters", "origin", "summary"] {
                ui.label(egui::RichText::new(h).strong());
            }
            ui.end_row();
            for c in &catalog.components {
                ui.label(c.kind.label());
                ui.label(&c.name);
                let names: Vec<&str> = c
                    .params
                    .iter()
                    .map(|p| p.name.as_ref())
                    .chain(c.defaults.keys().map(|k| k.as_str()))
                    .collect();
                ui.label(names.join(", "));
                ui.label(egui::RichText::new(&c.origin).color(theme.weak()));
                ui.label(&c.summary);
                ui.end_row();
            }
        });
}
