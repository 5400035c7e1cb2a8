//! The new-run form. The configuration being edited is a TOML table; every widget is generated
//! from a spec: the run-config spec table of `rlvr_core::spec` (labels, tooltips, widgets and
//! ranges of every section and task knob) and the catalog's estimator and plugin parameter
//! specs. The whole table is validated with the engine's own `RunConfig::from_toml` on every
//! change, so the messages are the CLI's.

use std::path::{Path, PathBuf};

use crossbeam_channel::Receiver;
use rlvr_core::params::{ParamKind, ParamSpec};
use rlvr_core::spec::{self, KeySpec, Kind};
use rlvr_core::RunConfig;

use crate::catalog::{ComponentCatalog, ComponentKind};
use crate::theme::{self, Theme};

/// The default preset, embedded so the first start needs no files.
pub const DEFAULT_PRESET: &str = include_str!("../../app/presets/default.toml");

/// Where the bundled presets live (the source tree; `$RLVR_STUDIO_PRESETS` overrides).
pub fn presets_dir() -> PathBuf {
    std::env::var_os("RLVR_STUDIO_PRESETS").map_or_else(
        || PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../app/presets")),
        PathBuf::from,
    )
}

/// The embedded default preset with its model folder resolved.
pub fn default_config() -> RunConfig {
    let mut cfg = RunConfig::from_toml(DEFAULT_PRESET).unwrap_or_default();
    if cfg.model.path.is_relative() {
        let p = presets_dir().join(&cfg.model.path);
        cfg.model.path = std::fs::canonicalize(&p).unwrap_or(p);
    }
    if !cfg.model.path.exists() {
        cfg.model.path = RunConfig::default().model.path;
    }
    cfg
}

/// One widget of the form.
#[derive(Clone, Debug)]
pub enum Field {
    /// A number or switch at `key` (dotted path).
    Num(&'static str, ParamSpec),
    /// One of fixed options.
    Choice {
        /// Dotted path.
        key: &'static str,
        /// Allowed values.
        options: &'static [&'static str],
        /// Tooltip.
        help: &'static str,
    },
    /// Free text.
    Text(&'static str, &'static str),
    /// A folder.
    Folder(&'static str, &'static str),
}

/// The form field of a spec-table key ([`rlvr_core::spec`]); `None` for keys the form edits
/// with a dedicated widget (parameter tables, plugin lists).
pub fn spec_field(k: &'static KeySpec) -> Option<Field> {
    let bound = |b: Option<spec::Bound>, far: f64| b.map_or(far, |b| b.value);
    let (lo, hi) = (bound(k.min, f64::MIN), bound(k.max, f64::MAX));
    let lo = k.off.map_or(lo, |off| off.min(lo));
    let num_default = match k.default {
        spec::Default::Num(v) => v,
        _ => 0.0,
    };
    Some(match k.kind {
        Kind::Int => Field::Num(k.key, ParamSpec::int(k.name(), num_default, lo, hi, k.help)),
        Kind::Float => Field::Num(
            k.key,
            ParamSpec::float(k.name(), num_default, lo, hi, k.help),
        ),
        Kind::Bool => Field::Num(
            k.key,
            ParamSpec::bool(k.name(), k.default == spec::Default::Bool(true), k.help),
        ),
        Kind::Choice(options) => Field::Choice {
            key: k.key,
            options,
            help: k.help,
        },
        Kind::Text => Field::Text(k.key, k.help),
        Kind::Path => Field::Folder(k.key, k.help),
        Kind::Params | Kind::TextList | Kind::PathList => return None,
    })
}

/// The form fields of a section's keys, in table order, except those in `skip` (edited by a
/// dedicated widget).
pub fn section_fields(keys: &'static [KeySpec], skip: &[&str]) -> Vec<Field> {
    keys.iter()
        .filter(|k| !skip.contains(&k.key))
        .filter_map(spec_field)
        .collect()
}

/// The label and tooltip of a key: the table's human label, and its dotted key, help, range
/// and default (a plugin or estimator parameter has no table row: its name and help).
/// The human label of a key in the spec table (the key itself if the table lacks it).
fn table_label(key: &str) -> &str {
    spec::find(key).map_or(key, |k| k.label)
}

fn label_and_help(key: &str, f: &Field) -> (String, String) {
    let k = spec::find(key).or_else(|| {
        let knob = key.strip_prefix("task.")?;
        spec::TASKS
            .iter()
            .find_map(|t| t.keys.iter().find(|k| k.name() == knob))
    });
    let short = key.rsplit('.').next().unwrap_or(key).to_string();
    match (k, f) {
        (Some(k), _) => {
            let mut help = format!("{}: {}", k.key, k.help);
            if k.kind.is_number() {
                help.push_str(&format!(" — {}", k.allowed()));
                if !k.unit.is_empty() {
                    help.push_str(&format!(" {}", k.unit));
                }
            }
            if let Field::Num(_, p) = f {
                if p.kind != ParamKind::Bool {
                    help.push_str(&format!(", default {}", spec::num(p.default)));
                }
            }
            (k.label.to_string(), help)
        }
        (None, Field::Num(_, spec)) => {
            let range = if spec.kind == ParamKind::Bool || spec.kind == ParamKind::Text {
                String::new()
            } else {
                format!(" ({}..={}, default {})", spec.min, spec.max, spec.default)
            };
            (short, format!("{}{range}", spec.help))
        }
        (None, Field::Choice { help, .. } | Field::Text(_, help) | Field::Folder(_, help)) => {
            (short, (*help).to_string())
        }
    }
}

/// Reads a dotted path.
pub fn get<'a>(doc: &'a toml::Table, key: &str) -> Option<&'a toml::Value> {
    let mut parts = key.split('.');
    let first = parts.next()?;
    let mut v = doc.get(first)?;
    for p in parts {
        v = v.as_table()?.get(p)?;
    }
    Some(v)
}

/// Writes a dotted path, creating tables on the way.
pub fn set(doc: &mut toml::Table, key: &str, value: toml::Value) {
    let mut parts: Vec<&str> = key.split('.').collect();
    let Some(last) = parts.pop() else { return };
    let mut t = doc;
    for p in parts {
        let entry = t
            .entry(p.to_string())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
        if !entry.is_table() {
            *entry = toml::Value::Table(toml::Table::new());
        }
        let Some(next) = entry.as_table_mut() else {
            return;
        };
        t = next;
    }
    t.insert(last.to_string(), value);
}

/// Removes a dotted path.
pub fn remove(doc: &mut toml::Table, key: &str) {
    let mut parts: Vec<&str> = key.split('.').collect();
    let Some(last) = parts.pop() else { return };
    let mut t = doc;
    for p in parts {
        let Some(next) = t.get_mut(p).and_then(|v| v.as_table_mut()) else {
            return;
        };
        t = next;
    }
    t.remove(last);
}

fn as_f64(v: Option<&toml::Value>) -> Option<f64> {
    match v? {
        toml::Value::Integer(i) => Some(*i as f64),
        toml::Value::Float(f) => Some(*f),
        toml::Value::Boolean(b) => Some(f64::from(u8::from(*b))),
        _ => None,
    }
}

/// The new-run form's state.
pub struct NewRunForm {
    /// The configuration being edited.
    pub doc: toml::Table,
    /// Where it came from (a preset, a file, a past run).
    pub source: String,
    /// The engine's verdict on `doc` (None = valid).
    pub error: Option<String>,
    /// Path for Save / Load (also filled by the file dialog).
    pub path: String,
    /// Tags for the new run (comma separated).
    pub tags: String,
    /// Show the TOML preview.
    pub show_toml: bool,
    /// Result of the last save/load/copy: (ok, message).
    pub message: Option<(bool, String)>,
    /// Text last copied to the clipboard (for tests and the status line).
    pub copied: Option<String>,
    /// Plugin components the config may name (checked with their parameter specs).
    pub ext: rlvr_core::extensions::Extensions,
    /// The facts of the model folder, and GGUF import.
    pub picker: crate::model_picker::ModelPicker,
    /// The run's memory estimate.
    pub memory: MemoryLine,
    dialog: Option<(DialogKind, Receiver<Option<PathBuf>>)>,
    presets: Vec<(String, PathBuf)>,
    dirty: bool,
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum DialogKind {
    Open,
    Save,
    Folder,
}

fn to_doc(cfg: &RunConfig) -> toml::Table {
    toml::from_str(&cfg.to_toml()).unwrap_or_default()
}

impl Default for NewRunForm {
    fn default() -> Self {
        Self::new(&default_config(), "default preset")
    }
}

impl NewRunForm {
    /// A form holding `cfg`.
    pub fn new(cfg: &RunConfig, source: &str) -> Self {
        let mut f = Self {
            doc: to_doc(cfg),
            source: source.into(),
            error: None,
            path: String::new(),
            tags: String::new(),
            show_toml: false,
            message: None,
            copied: None,
            ext: Default::default(),
            picker: Default::default(),
            memory: Default::default(),
            dialog: None,
            presets: list_presets(&presets_dir()),
            dirty: true,
        };
        f.revalidate();
        f
    }

    /// Replaces the config (preset, file, past run).
    pub fn set_config(&mut self, cfg: &RunConfig, source: &str) {
        self.doc = to_doc(cfg);
        self.source = source.into();
        self.dirty = true;
        self.revalidate();
    }

    /// Starts from a past run's config: a new name and a new output folder.
    pub fn duplicate(&mut self, run_id: i64, config_toml: &str) -> Result<(), String> {
        let mut cfg = RunConfig::from_toml(config_toml)
            .map_err(|e| format!("stored configuration of run {run_id}: {e}"))?;
        cfg.name = format!("{}-copy", cfg.name);
        cfg.output.dir = PathBuf::new();
        self.set_config(&cfg, &format!("copy of run {run_id}"));
        Ok(())
    }

    /// The TOML text of the current form.
    pub fn toml_text(&self) -> String {
        toml::to_string_pretty(&self.doc).unwrap_or_default()
    }

    /// The config, or the engine's message naming the field.
    pub fn config(&self) -> Result<RunConfig, String> {
        let cfg = RunConfig::from_toml(&self.toml_text()).map_err(|e| e.to_string())?;
        cfg.validate_with(&self.ext).map_err(|e| e.to_string())?;
        Ok(cfg)
    }

    /// New plugin components: re-check the config against them.
    pub fn set_extensions(&mut self, ext: rlvr_core::extensions::Extensions) {
        self.ext = ext;
        self.dirty = true;
        self.revalidate();
    }

    /// Re-checks after a change.
    pub fn revalidate(&mut self) {
        if self.dirty {
            self.error = self.config().err();
            self.dirty = false;
        }
    }

    /// A shell command that reproduces this run with the CLI.
    pub fn cli_command(&self) -> String {
        let saved = !self.path.trim().is_empty() && Path::new(self.path.trim()).is_file();
        if saved {
            format!("rlvr-studio train '{}'", self.path.trim())
        } else {
            format!(
                "cat > run.toml <<'EOF'\n{}EOF\nrlvr-studio train run.toml",
                self.toml_text()
            )
        }
    }

    /// Loads a TOML file (errors name the file and line).
    pub fn load_file(&mut self, path: &Path) {
        match RunConfig::from_file(path) {
            Ok(cfg) => {
                self.set_config(&cfg, &path.display().to_string());
                self.path = path.display().to_string();
                self.message = Some((true, format!("loaded {}", path.display())));
            }
            Err(e) => self.message = Some((false, e.to_string())),
        }
    }

    /// The text of the model folder field.
    pub fn config_path_text(&self) -> String {
        get(&self.doc, "model.path")
            .and_then(|v| v.as_str())
            .unwrap_or("")
            .to_string()
    }

    /// Saves the current TOML to a file.
    pub fn save_file(&mut self, path: &Path) {
        let text = match self.config() {
            Ok(cfg) => cfg.to_toml(),
            Err(_) => self.toml_text(),
        };
        self.message = Some(match std::fs::write(path, text) {
            Ok(()) => {
                self.path = path.display().to_string();
                (true, format!("saved {}", path.display()))
            }
            Err(e) => (false, format!("{}: {e}", path.display())),
        });
    }

    fn open_dialog(&mut self, kind: DialogKind) {
        let (tx, rx) = crossbeam_channel::bounded(1);
        let start = presets_dir();
        let spawned = std::thread::Builder::new()
            .name("file-dialog".into())
            .spawn(move || {
                let d = rfd::FileDialog::new().set_directory(&start);
                let picked = match kind {
                    DialogKind::Open => d.add_filter("TOML", &["toml"]).pick_file(),
                    DialogKind::Save => d
                        .add_filter("TOML", &["toml"])
                        .set_file_name("run.toml")
                        .save_file(),
                    DialogKind::Folder => d.pick_folder(),
                };
                let _ = tx.send(picked);
            });
        if spawned.is_ok() {
            self.dialog = Some((kind, rx));
        }
    }

    fn poll_dialog(&mut self) {
        let Some((kind, rx)) = &self.dialog else {
            return;
        };
        let kind = *kind;
        let Ok(picked) = rx.try_recv() else { return };
        self.dialog = None;
        match (picked, kind) {
            (None, _) => {
                self.message = Some((
                    false,
                    "no file chosen (or no file dialog is available here): type a path in the \
                     field and use Load / Save"
                        .into(),
                ))
            }
            (Some(p), DialogKind::Open) => self.load_file(&p),
            (Some(p), DialogKind::Save) => self.save_file(&p),
            (Some(p), DialogKind::Folder) => {
                set(
                    &mut self.doc,
                    "model.path",
                    toml::Value::String(p.display().to_string()),
                );
                self.dirty = true;
            }
        }
    }

    /// Draws the form; returns what the user asked for.
    pub fn ui(&mut self, ui: &mut egui::Ui, catalog: &ComponentCatalog, theme: Theme) {
        self.header_ui(ui, theme);
        ui.add_space(theme::GAP);
        self.fields_ui(ui, catalog, theme);
    }

    /// The generated fields (the part that scrolls).
    pub fn fields_ui(&mut self, ui: &mut egui::Ui, catalog: &ComponentCatalog, theme: Theme) {
        self.sections(ui, catalog, theme);
    }

    /// Presets, file actions, TOML preview and the validation verdict (the part that stays in
    /// view).
    pub fn header_ui(&mut self, ui: &mut egui::Ui, _theme: Theme) {
        self.poll_dialog();
        // Header: presets, file actions.
        ui.horizontal_wrapped(|ui| {
            let l = ui.label("Preset");
            let mut chosen = None;
            egui::ComboBox::from_id_salt("preset")
                .selected_text(&self.source)
                .show_ui(ui, |ui| {
                    if ui.selectable_label(false, "default (embedded)").clicked() {
                        chosen = Some(None);
                    }
                    for (name, path) in &self.presets {
                        if ui.selectable_label(false, name).clicked() {
                            chosen = Some(Some(path.clone()));
                        }
                    }
                })
                .response
                .labelled_by(l.id);
            match chosen {
                Some(None) => self.set_config(&default_config(), "default preset"),
                Some(Some(p)) => {
                    let keep = self.path.clone();
                    self.load_file(&p);
                    self.path = keep;
                }
                None => {}
            }
            ui.separator();
            let l = ui.label("File");
            ui.add(
                egui::TextEdit::singleline(&mut self.path)
                    .hint_text("path/to/run.toml")
                    .desired_width(220.0),
            )
            .labelled_by(l.id);
            let typed = PathBuf::from(self.path.trim());
            if ui
                .button("Load")
                .on_hover_text("load the TOML file named in the field")
                .clicked()
            {
                if self.path.trim().is_empty() {
                    self.message = Some((false, "type a path to load first".into()));
                } else {
                    self.load_file(&typed);
                }
            }
            if ui
                .button("Save")
                .on_hover_text("save to the file named in the field")
                .clicked()
            {
                if self.path.trim().is_empty() {
                    self.message = Some((false, "type a path to save to first".into()));
                } else {
                    self.save_file(&typed);
                }
            }
            if ui
                .button("Open…")
                .on_hover_text("choose a TOML file")
                .clicked()
            {
                self.open_dialog(DialogKind::Open);
            }
            if ui
                .button("Save as…")
                .on_hover_text("choose where to save")
                .clicked()
            {
                self.open_dialog(DialogKind::Save);
            }
        });
        ui.horizontal_wrapped(|ui| {
            ui.toggle_value(&mut self.show_toml, "Preview TOML");
            if ui
                .button("Copy CLI command")
                .on_hover_text("a shell command that runs this config headless")
                .clicked()
            {
                let cmd = self.cli_command();
                ui.ctx().copy_text(cmd.clone());
                self.copied = Some(cmd);
                self.message = Some((true, "CLI command copied to the clipboard".into()));
            }
            let l = ui.label("Tags");
            ui.add(
                egui::TextEdit::singleline(&mut self.tags)
                    .hint_text("comma,separated")
                    .desired_width(140.0),
            )
            .labelled_by(l.id);
        });
        if let Some((ok, msg)) = &self.message {
            ui.colored_label(if *ok { theme::GOOD } else { theme::BAD }, msg);
        }
        self.revalidate();
        match &self.error {
            Some(e) => {
                ui.colored_label(theme::BAD, format!("▲ {e}"));
            }
            None => {
                ui.colored_label(theme::GOOD, "● configuration is valid");
            }
        }
        if self.show_toml {
            let mut text = self.toml_text();
            egui::CollapsingHeader::new("TOML")
                .default_open(true)
                .show(ui, |ui| {
                    let l = ui.label("config.toml (read-only)");
                    egui::ScrollArea::vertical()
                        .id_salt("toml_preview")
                        .max_height(260.0)
                        .show(ui, |ui| {
                            ui.add(
                                egui::TextEdit::multiline(&mut text)
                                    .code_editor()
                                    .interactive(false)
                                    .desired_width(f32::INFINITY),
                            )
                            .labelled_by(l.id);
                        });
                });
        }
    }

    fn sections(&mut self, ui: &mut egui::Ui, catalog: &ComponentCatalog, theme: Theme) {
        let err = self.error.clone();
        let mut changed = false;
        egui::Grid::new("form_grid")
            .num_columns(2)
            .spacing(egui::vec2(12.0, 6.0))
            .striped(false)
            .show(ui, |ui| {
                let heading = |ui: &mut egui::Ui, t: &str| {
                    ui.end_row();
                    theme::section(ui, t);
                    ui.end_row();
                };
                heading(ui, "Run");
                for f in section_fields(spec::TOP, &[]) {
                    changed |= field(ui, &mut self.doc, &f, err.as_deref(), theme);
                }
                heading(ui, "Model");
                for f in section_fields(spec::MODEL, &[]) {
                    changed |= field(ui, &mut self.doc, &f, err.as_deref(), theme);
                }
                ui.label("");
                if ui
                    .button("Choose folder…")
                    .on_hover_text(
                        "pick a model folder (config.json, tokenizer.json, *.safetensors)",
                    )
                    .clicked()
                {
                    self.open_dialog(DialogKind::Folder);
                }
                ui.end_row();
                let path = self.config_path_text();
                if let Some(folder) = self.picker.ui(ui, &path) {
                    set(
                        &mut self.doc,
                        "model.path",
                        toml::Value::String(folder.display().to_string()),
                    );
                    changed = true;
                }
                heading(ui, "LoRA");
                changed |= lora_fields(ui, &mut self.doc, err.as_deref(), theme);
                let cfg = self.config().ok();
                self.memory.ui(ui, cfg);
                heading(ui, "Task");
                changed |= self.task_fields(ui, catalog, err.as_deref(), theme);
                heading(ui, "Algorithm");
                changed |= self.estimator_fields(ui, catalog, err.as_deref(), theme);
                let own_widgets = ["algorithm.advantage"];
                for f in section_fields(spec::ALGORITHM, &own_widgets) {
                    changed |= field(ui, &mut self.doc, &f, err.as_deref(), theme);
                }
                heading(ui, "Sampler");
                for f in section_fields(spec::ROLLOUT, &["rollout.sampler"]) {
                    changed |= field(ui, &mut self.doc, &f, err.as_deref(), theme);
                }
                changed |= plugin_choice(
                    ui,
                    &mut self.doc,
                    ("rollout.sampler", "rollout.sampler_params"),
                    catalog.of(ComponentKind::Sampler).collect(),
                    "none",
                    err.as_deref(),
                    theme,
                );
                heading(ui, "Rewards and noise");
                changed |= plugin_choice(
                    ui,
                    &mut self.doc,
                    ("rewards.verifier", "rewards.verifier_params"),
                    catalog.of(ComponentKind::Verifier).collect(),
                    "task",
                    err.as_deref(),
                    theme,
                );
                changed |= reward_components(ui, &mut self.doc, catalog, err.as_deref(), theme);
                for f in section_fields(spec::REWARDS, &["rewards.verifier"]) {
                    changed |= field(ui, &mut self.doc, &f, err.as_deref(), theme);
                }
                heading(ui, "Optimisation");
                for f in section_fields(spec::OPTIM, &[]) {
                    changed |= field(ui, &mut self.doc, &f, err.as_deref(), theme);
                }
                heading(ui, "Evaluation and output");
                for f in section_fields(spec::EVAL, &[])
                    .into_iter()
                    .chain(section_fields(spec::OUTPUT, &["output.keep_groups"]))
                    .chain(section_fields(spec::PLUGINS, &[]))
                {
                    changed |= field(ui, &mut self.doc, &f, err.as_deref(), theme);
                }
            });
        if changed {
            self.dirty = true;
            self.message = None;
        }
    }

    fn task_fields(
        &mut self,
        ui: &mut egui::Ui,
        catalog: &ComponentCatalog,
        err: Option<&str>,
        theme: Theme,
    ) -> bool {
        let mut changed = false;
        let current = get(&self.doc, "task.name")
            .and_then(|v| v.as_str())
            .unwrap_or("")
            .to_string();
        let l = ui.label(table_label("task.name"));
        let mut pick = None;
        egui::ComboBox::from_id_salt("task.name")
            .selected_text(&current)
            .show_ui(ui, |ui| {
                for c in catalog.of(ComponentKind::Task) {
                    if ui
                        .selectable_label(c.name == current, &c.name)
                        .on_hover_text(&c.summary)
                        .clicked()
                    {
                        pick = Some(c.name.clone());
                    }
                }
            })
            .response
            .labelled_by(l.id);
        ui.end_row();
        if let Some(name) = pick.filter(|n| *n != current) {
            let mut t = catalog
                .find(ComponentKind::Task, &name)
                .map(|c| c.defaults.clone())
                .unwrap_or_default();
            t.insert("name".into(), toml::Value::String(name));
            self.doc.insert("task".into(), toml::Value::Table(t));
            changed = true;
        }
        if let Some(c) = catalog.find(ComponentKind::Task, &current) {
            ui.label("");
            ui.label(egui::RichText::new(&c.summary).color(theme.weak()).small());
            ui.end_row();
        }
        // The task's knobs, from its spec table.
        if let Some(t) = spec::task(&current) {
            for f in section_fields(t.keys, &[]) {
                changed |= field(ui, &mut self.doc, &f, err, theme);
            }
        }
        changed
    }

    fn estimator_fields(
        &mut self,
        ui: &mut egui::Ui,
        catalog: &ComponentCatalog,
        err: Option<&str>,
        theme: Theme,
    ) -> bool {
        let mut changed = false;
        let current = get(&self.doc, "algorithm.advantage")
            .and_then(|v| v.as_str())
            .unwrap_or("grpo")
            .to_string();
        let l = ui.label(table_label("algorithm.advantage"));
        let mut pick = None;
        egui::ComboBox::from_id_salt("algorithm.advantage")
            .selected_text(&current)
            .show_ui(ui, |ui| {
                for c in catalog.of(ComponentKind::Estimator) {
                    if ui
                        .selectable_label(c.name == current, &c.name)
                        .on_hover_text(format!("{} ({})", c.summary, c.origin))
                        .clicked()
                    {
                        pick = Some(c.name.clone());
                    }
                }
            })
            .response
            .labelled_by(l.id);
        ui.end_row();
        field_error(ui, "algorithm.advantage", err);
        if let Some(name) = pick.filter(|n| *n != current) {
            set(
                &mut self.doc,
                "algorithm.advantage",
                toml::Value::String(name),
            );
            set(
                &mut self.doc,
                "algorithm.advantage_params",
                toml::Value::Table(toml::Table::new()),
            );
            changed = true;
        }
        if let Some(c) = catalog.find(ComponentKind::Estimator, &current) {
            ui.label("");
            ui.label(egui::RichText::new(&c.summary).color(theme.weak()).small());
            ui.end_row();
            for spec in &c.params {
                let key = spec_key("algorithm.advantage_params", &spec.name);
                changed |= field(
                    ui,
                    &mut self.doc,
                    &Field::Num(key, spec.clone()),
                    err,
                    theme,
                );
            }
        }
        changed
    }
}

/// A choice between a built-in (`none_label`: "none" = empty string, or "task") and the plugin
/// components offered, with the chosen component's parameters.
fn plugin_choice(
    ui: &mut egui::Ui,
    doc: &mut toml::Table,
    (key, params_key): (&str, &str),
    offered: Vec<&crate::catalog::Component>,
    none_label: &str,
    err: Option<&str>,
    theme: Theme,
) -> bool {
    let none_value = if none_label == "none" { "" } else { none_label };
    let current = get(doc, key)
        .and_then(|v| v.as_str())
        .unwrap_or(none_value)
        .to_string();
    if offered.is_empty() && current == none_value {
        return false;
    }
    let short = key.rsplit('.').next().unwrap_or(key);
    let l = ui.label(short);
    let shown = if current.is_empty() {
        none_label
    } else {
        current.as_str()
    };
    let mut pick = None;
    egui::ComboBox::from_id_salt(key)
        .selected_text(shown)
        .show_ui(ui, |ui| {
            if ui
                .selectable_label(current == none_value, none_label)
                .clicked()
            {
                pick = Some(none_value.to_string());
            }
            for c in &offered {
                if ui
                    .selectable_label(c.name == current, &c.name)
                    .on_hover_text(format!("{} ({})", c.summary, c.origin))
                    .clicked()
                {
                    pick = Some(c.name.clone());
                }
            }
        })
        .response
        .labelled_by(l.id);
    ui.end_row();
    field_error(ui, key, err);
    let mut changed = false;
    if let Some(name) = pick.filter(|n| *n != current) {
        set(doc, key, toml::Value::String(name));
        set(doc, params_key, toml::Value::Table(toml::Table::new()));
        changed = true;
    }
    if let Some(c) = offered.iter().find(|c| c.name == current) {
        ui.label("");
        ui.label(egui::RichText::new(&c.summary).color(theme.weak()).small());
        ui.end_row();
        for spec in &c.params {
            let k = spec_key(params_key, &spec.name);
            changed |= field(ui, doc, &Field::Num(k, spec.clone()), err, theme);
        }
    }
    changed
}

/// The `[[rewards.components]]` list: each entry's component, weight and parameters, with add
/// and remove buttons.
fn reward_components(
    ui: &mut egui::Ui,
    doc: &mut toml::Table,
    catalog: &ComponentCatalog,
    err: Option<&str>,
    theme: Theme,
) -> bool {
    let offered: Vec<&crate::catalog::Component> = catalog
        .of(ComponentKind::Verifier)
        .chain(catalog.of(ComponentKind::Rubric))
        .collect();
    let entries: Vec<toml::Table> = get(doc, "rewards.components")
        .and_then(|v| v.as_array())
        .map(|a| a.iter().filter_map(|v| v.as_table().cloned()).collect())
        .unwrap_or_default();
    if offered.is_empty() && entries.is_empty() {
        return false;
    }
    let mut new = entries.clone();
    let mut remove = None;
    for (i, entry) in new.iter_mut().enumerate() {
        let current = entry
            .get("name")
            .and_then(|v| v.as_str())
            .unwrap_or("")
            .to_string();
        let l = ui.label(format!("reward component {}", i + 1));
        let mut pick = None;
        ui.horizontal(|ui| {
            egui::ComboBox::from_id_salt(("rewards.components", i))
                .selected_text(&current)
                .show_ui(ui, |ui| {
                    for c in &offered {
                        if ui
                            .selectable_label(c.name == current, &c.name)
                            .on_hover_text(format!(
                                "{} {}: {}",
                                c.kind.label(),
                                c.origin,
                                c.summary
                            ))
                            .clicked()
                        {
                            pick = Some(c.name.clone());
                        }
                    }
                })
                .response
                .labelled_by(l.id);
            let mut w = entry
                .get("weight")
                .and_then(|v| v.as_float().or_else(|| v.as_integer().map(|i| i as f64)))
                .unwrap_or(1.0);
            let wl = ui.label("weight");
            if ui
                .add(
                    egui::DragValue::new(&mut w)
                        .speed(0.01)
                        .range(-100.0..=100.0),
                )
                .labelled_by(wl.id)
                .on_hover_text(
                    "weight of this component's score in the total reward (0 = logged only)",
                )
                .changed()
            {
                entry.insert("weight".into(), toml::Value::Float(w));
            }
            if ui
                .button("Remove")
                .on_hover_text("remove this reward component")
                .clicked()
            {
                remove = Some(i);
            }
        });
        ui.end_row();
        if let Some(name) = pick.filter(|n| *n != current) {
            entry.insert("name".into(), toml::Value::String(name));
            entry.insert("params".into(), toml::Value::Table(toml::Table::new()));
        }
        let name = entry
            .get("name")
            .and_then(|v| v.as_str())
            .unwrap_or("")
            .to_string();
        if let Some(c) = offered.iter().find(|c| c.name == name) {
            for spec in &c.params {
                let k = spec_key("params", &spec.name);
                field(ui, entry, &Field::Num(k, spec.clone()), err, theme);
            }
        }
    }
    if let Some(i) = remove {
        new.remove(i);
    }
    if let Some(first) = offered.first() {
        ui.label("");
        if ui
            .button("Add reward component")
            .on_hover_text("add a plugin verifier or rubric to the reward, with a weight")
            .clicked()
        {
            let mut t = toml::Table::new();
            t.insert("name".into(), toml::Value::String(first.name.clone()));
            t.insert("weight".into(), toml::Value::Float(1.0));
            t.insert("params".into(), toml::Value::Table(toml::Table::new()));
            new.push(t);
        }
        ui.end_row();
    }
    if new != entries {
        set(
            doc,
            "rewards.components",
            toml::Value::Array(new.into_iter().map(toml::Value::Table).collect()),
        );
        return true;
    }
    false
}

/// `section.name` as a `&'static str` (specs are few and fixed; the strings are interned once).
pub(crate) fn spec_key(section: &str, name: &str) -> &'static str {
    use std::collections::HashMap;
    use std::sync::{Mutex, OnceLock};
    static KEYS: OnceLock<Mutex<HashMap<String, &'static str>>> = OnceLock::new();
    let key = format!("{section}.{name}");
    let mut m = KEYS
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|e| e.into_inner());
    if let Some(k) = m.get(&key) {
        return k;
    }
    let leaked: &'static str = Box::leak(key.clone().into_boxed_str());
    m.insert(key, leaked);
    leaked
}

fn field_error(ui: &mut egui::Ui, key: &str, err: Option<&str>) {
    if let Some(e) = err.filter(|e| e.starts_with(&format!("{key} = "))) {
        ui.label("");
        ui.colored_label(theme::BAD, e);
        ui.end_row();
    }
}

/// One row of the grid: label, widget, and the validation message when it concerns this key.
/// Returns whether the value changed.
/// `[model.lora]`: the rank, and with a rank the other keys and one checkbox per linear layer
/// of `target_modules` (all ticked = `["all-linear"]`). Setting the rank to 0 removes the other
/// keys (they would be refused as ignored).
fn lora_fields(ui: &mut egui::Ui, doc: &mut toml::Table, err: Option<&str>, theme: Theme) -> bool {
    use rlvr_core::config::LORA_MODULES;
    let mut changed = false;
    let mut fields = section_fields(spec::LORA, &[]).into_iter();
    if let Some(rank) = fields.next() {
        changed |= field(ui, doc, &rank, err, theme);
    }
    let rank = get(doc, "model.lora.rank")
        .and_then(toml::Value::as_integer)
        .unwrap_or(0);
    if rank <= 0 {
        if changed {
            for k in ["alpha", "dropout", "target_modules"] {
                remove(doc, &format!("model.lora.{k}"));
            }
        }
        return changed;
    }
    for f in fields {
        changed |= field(ui, doc, &f, err, theme);
    }
    let key = "model.lora.target_modules";
    let current: Vec<String> = get(doc, key)
        .and_then(toml::Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str().map(String::from))
                .collect()
        })
        .unwrap_or_else(|| vec!["all-linear".into()]);
    let all = current.iter().any(|m| m == "all-linear");
    let mut on: Vec<bool> = LORA_MODULES
        .iter()
        .map(|m| all || current.iter().any(|c| c == m))
        .collect();
    let help = spec::find(key).map_or("", |k| k.help);
    ui.label("LoRA modules").on_hover_text(help);
    let mut toggled = false;
    ui.horizontal_wrapped(|ui| {
        for (m, b) in LORA_MODULES.iter().zip(on.iter_mut()) {
            toggled |= ui.checkbox(b, *m).on_hover_text(help).changed();
        }
    });
    ui.end_row();
    field_error(ui, key, err);
    if toggled {
        let list: Vec<toml::Value> = if on.iter().all(|b| *b) {
            vec![toml::Value::String("all-linear".into())]
        } else {
            LORA_MODULES
                .iter()
                .zip(&on)
                .filter(|(_, b)| **b)
                .map(|(m, _)| toml::Value::String((*m).into()))
                .collect()
        };
        set(doc, key, toml::Value::Array(list));
        changed = true;
    }
    changed
}

/// The run's memory estimate ([`rlvr_engine::trainer::memory_estimate`]: `config.json`, the
/// task and the tokenizer are read, not the weights), computed on a `memory-estimate` thread
/// for each new configuration.
#[derive(Default)]
pub struct MemoryLine {
    shown_for: Option<String>,
    text: Option<Result<String, String>>,
    pending: Option<(String, Receiver<Result<String, String>>)>,
}

impl MemoryLine {
    /// Whether an estimate is being computed.
    pub fn busy(&self) -> bool {
        self.pending.is_some()
    }

    /// The line shown (`Err`: why there is no estimate).
    pub fn text(&self) -> Option<&Result<String, String>> {
        self.text.as_ref()
    }

    fn poll(&mut self, cfg: Option<RunConfig>) {
        if let Some((k, rx)) = &self.pending {
            if let Ok(r) = rx.try_recv() {
                self.shown_for = Some(k.clone());
                self.text = Some(r);
                self.pending = None;
            }
        }
        let Some(cfg) = cfg else { return };
        let key = cfg.to_toml();
        let asked = self.pending.as_ref().is_some_and(|(k, _)| *k == key);
        if self.shown_for.as_deref() == Some(key.as_str()) || asked || self.pending.is_some() {
            return;
        }
        let (tx, rx) = crossbeam_channel::bounded(1);
        let spawned = std::thread::Builder::new()
            .name("memory-estimate".into())
            .spawn(move || {
                let r = rlvr_engine::trainer::memory_estimate(&cfg)
                    .map(|(est, shape)| est.summary(&shape))
                    .map_err(|e| e.to_string());
                let _ = tx.send(r);
            });
        if spawned.is_ok() {
            self.pending = Some((key, rx));
        }
    }

    /// The "Memory" row of the form for `cfg` (None: the form does not parse).
    pub fn ui(&mut self, ui: &mut egui::Ui, cfg: Option<RunConfig>) {
        self.poll(cfg);
        if self.busy() {
            ui.ctx()
                .request_repaint_after(std::time::Duration::from_millis(100));
        }
        ui.label("Memory").on_hover_text(
            "what a step of this run holds at its peak (the run refuses to start when it exceeds the available memory)",
        );
        match &self.text {
            Some(Ok(t)) => ui.add(egui::Label::new(t.as_str()).wrap()),
            // The reason (a model folder or task problem) is shown where it belongs; here only
            // on hover.
            Some(Err(e)) => ui
                .label("no estimate until the model folder and the task are valid")
                .on_hover_text(e.as_str()),
            None => ui.label("estimating…"),
        };
        ui.end_row();
    }
}

pub(crate) fn field(
    ui: &mut egui::Ui,
    doc: &mut toml::Table,
    f: &Field,
    err: Option<&str>,
    _theme: Theme,
) -> bool {
    let mut changed = false;
    let key = match f {
        Field::Num(k, _)
        | Field::Choice { key: k, .. }
        | Field::Text(k, _)
        | Field::Folder(k, _) => *k,
    };
    let (label, help) = label_and_help(key, f);
    let short = label.as_str();
    match f {
        Field::Num(_, spec) => {
            let l = ui.label(short);
            let cur = as_f64(get(doc, key)).unwrap_or(spec.default);
            match spec.kind {
                ParamKind::Bool => {
                    let mut b = cur != 0.0;
                    if ui
                        .checkbox(&mut b, "")
                        .labelled_by(l.id)
                        .on_hover_text(&help)
                        .changed()
                    {
                        set(doc, key, toml::Value::Boolean(b));
                        changed = true;
                    }
                }
                ParamKind::Int => {
                    let mut i = cur as i64;
                    let r = ui
                        .add(egui::DragValue::new(&mut i).speed(0.2))
                        .labelled_by(l.id)
                        .on_hover_text(&help);
                    if r.changed() {
                        set(doc, key, toml::Value::Integer(i));
                        changed = true;
                    }
                }
                ParamKind::Float => {
                    let mut x = cur;
                    let speed = (spec.max - spec.min).abs().min(10.0) / 500.0;
                    let r = ui
                        .add(
                            egui::DragValue::new(&mut x)
                                .speed(speed.max(1e-6))
                                .max_decimals(8),
                        )
                        .labelled_by(l.id)
                        .on_hover_text(&help);
                    if r.changed() {
                        set(doc, key, toml::Value::Float(x));
                        changed = true;
                    }
                }
                ParamKind::Text => {
                    let mut t = get(doc, key)
                        .and_then(|v| v.as_str())
                        .unwrap_or(&spec.default_text)
                        .to_string();
                    let r = ui
                        .text_edit_singleline(&mut t)
                        .labelled_by(l.id)
                        .on_hover_text(&help);
                    if r.changed() {
                        set(doc, key, toml::Value::String(t));
                        changed = true;
                    }
                }
            }
        }
        Field::Choice { options, .. } => {
            let l = ui.label(short);
            let cur = get(doc, key)
                .and_then(|v| v.as_str())
                .unwrap_or("")
                .to_string();
            let mut pick = None;
            egui::ComboBox::from_id_salt(key)
                .selected_text(&cur)
                .show_ui(ui, |ui| {
                    for o in options.iter() {
                        if ui.selectable_label(*o == cur, *o).clicked() {
                            pick = Some(*o);
                        }
                    }
                })
                .response
                .labelled_by(l.id)
                .on_hover_text(&help);
            if let Some(p) = pick.filter(|p| *p != cur) {
                set(doc, key, toml::Value::String(p.to_string()));
                changed = true;
            }
        }
        Field::Text(..) | Field::Folder(..) => {
            let l = ui.label(short);
            let mut s = get(doc, key)
                .and_then(|v| v.as_str())
                .unwrap_or("")
                .to_string();
            let r = ui
                .add(egui::TextEdit::singleline(&mut s).desired_width(320.0))
                .labelled_by(l.id)
                .on_hover_text(&help);
            if r.changed() {
                set(doc, key, toml::Value::String(s));
                changed = true;
            }
        }
    }
    ui.end_row();
    field_error(ui, key, err);
    changed
}

/// The `*.toml` files of a presets folder, by name.
pub fn list_presets(dir: &Path) -> Vec<(String, PathBuf)> {
    let mut v: Vec<(String, PathBuf)> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .map(|e| e.path())
                .filter(|p| p.extension().is_some_and(|x| x == "toml"))
                .map(|p| {
                    (
                        p.file_stem()
                            .map(|s| s.to_string_lossy().into_owned())
                            .unwrap_or_default(),
                        p,
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}
