//! The model picker under the form's model folder: the facts of the chosen folder (what
//! `rlvr-studio models inspect` prints, read on a worker thread, refusals with the same message
//! training gives) and, for a `.gguf` file, its import into a model folder with progress.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use crossbeam_channel::Receiver;
use rlvr_engine::gguf::{import, OutDType};
use rlvr_engine::model::inspect::{inspect, DEFAULT_ROWS, DEFAULT_TOKENS};

use crate::theme;

/// The facts as (name, value) lines, or the refusal.
type Facts = Result<Vec<(String, String)>, String>;

/// A GGUF import on its worker thread.
struct ImportJob {
    gguf: PathBuf,
    out: PathBuf,
    done: Arc<AtomicUsize>,
    total: Arc<AtomicUsize>,
    result: Receiver<Result<String, String>>,
}

/// The picker's state.
#[derive(Default)]
pub struct ModelPicker {
    /// The path the facts (or the refusal) are about.
    shown_for: Option<String>,
    /// The facts as (name, value) lines, or the refusal.
    facts: Option<Facts>,
    /// An inspection in flight: the path and its answer.
    pending: Option<(String, Receiver<Facts>)>,
    import: Option<ImportJob>,
    dialog: Option<Receiver<Option<PathBuf>>>,
    /// The last import's outcome.
    pub message: Option<(bool, String)>,
}

/// The folder a GGUF file is imported into: `<name without .gguf>` beside it (`-2`, `-3`, … when
/// taken).
pub fn import_target(gguf: &Path) -> PathBuf {
    let stem = gguf
        .file_stem()
        .map_or_else(|| "model".into(), |s| s.to_string_lossy().into_owned());
    let parent = gguf.parent().unwrap_or(Path::new("."));
    let mut out = parent.join(&stem);
    let mut n = 2;
    while out.exists() {
        out = parent.join(format!("{stem}-{n}"));
        n += 1;
    }
    out
}

fn is_gguf(p: &str) -> bool {
    Path::new(p)
        .extension()
        .is_some_and(|x| x.eq_ignore_ascii_case("gguf"))
}

impl ModelPicker {
    /// Whether an inspection or import is running (the app keeps repainting meanwhile).
    pub fn busy(&self) -> bool {
        self.pending.is_some() || self.import.is_some() || self.dialog.is_some()
    }

    /// The facts shown for `path`, once read (`Err`: the refusal).
    pub fn facts_for(&self, path: &str) -> Option<&Facts> {
        (self.shown_for.as_deref() == Some(path))
            .then_some(self.facts.as_ref())
            .flatten()
    }

    fn poll(&mut self, path: &str) -> Option<PathBuf> {
        if let Some((p, rx)) = &self.pending {
            if let Ok(r) = rx.try_recv() {
                self.shown_for = Some(p.clone());
                self.facts = Some(r);
                self.pending = None;
            }
        }
        let stale = self.shown_for.as_deref() != Some(path);
        let asked = self.pending.as_ref().is_some_and(|(p, _)| p == path);
        if stale && !asked && !path.is_empty() && !is_gguf(path) {
            let (tx, rx) = crossbeam_channel::bounded(1);
            let dir = PathBuf::from(path);
            let spawned = std::thread::Builder::new()
                .name("model-inspect".into())
                .spawn(move || {
                    let kl = rlvr_core::RunConfig::default().algorithm.kl_coef > 0.0;
                    let r = inspect(&dir, DEFAULT_ROWS, DEFAULT_TOKENS, kl)
                        .map(|f| f.lines())
                        .map_err(|e| e.to_string());
                    let _ = tx.send(r);
                });
            if spawned.is_ok() {
                self.pending = Some((path.to_string(), rx));
            }
        }
        let mut chosen = None;
        if let Some(rx) = &self.dialog {
            if let Ok(picked) = rx.try_recv() {
                self.dialog = None;
                match picked {
                    Some(p) => self.start_import(&p),
                    None => {
                        self.message = Some((
                            false,
                            "no file chosen (or no file dialog is available here): type the \
                             .gguf path in the model folder field"
                                .into(),
                        ))
                    }
                }
            }
        }
        if let Some(job) = &self.import {
            if let Ok(r) = job.result.try_recv() {
                let out = job.out.clone();
                self.message = Some(match r {
                    Ok(summary) => {
                        chosen = Some(out.clone());
                        (true, format!("imported into {}: {summary}", out.display()))
                    }
                    Err(e) => (false, e),
                });
                self.import = None;
            }
        }
        chosen
    }

    /// Imports `gguf` into [`import_target`] on a worker thread.
    pub fn start_import(&mut self, gguf: &Path) {
        let out = import_target(gguf);
        let (done, total) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
        let (tx, rx) = crossbeam_channel::bounded(1);
        let (g, o, d, t) = (gguf.to_path_buf(), out.clone(), done.clone(), total.clone());
        let spawned = std::thread::Builder::new()
            .name("gguf-import".into())
            .spawn(move || {
                let r = import(&g, &o, OutDType::F32, &mut |i, n| {
                    d.store(i, Ordering::Relaxed);
                    t.store(n, Ordering::Relaxed);
                })
                .map(|s| format!("{} tensors, {} parameters", s.tensors, s.params))
                .map_err(|e| e.to_string());
                let _ = tx.send(r);
            });
        if spawned.is_ok() {
            self.import = Some(ImportJob {
                gguf: gguf.to_path_buf(),
                out,
                done,
                total,
                result: rx,
            });
        }
    }

    fn open_dialog(&mut self, start: &Path) {
        let (tx, rx) = crossbeam_channel::bounded(1);
        let start = start.to_path_buf();
        let spawned = std::thread::Builder::new()
            .name("file-dialog".into())
            .spawn(move || {
                let picked = rfd::FileDialog::new()
                    .set_directory(&start)
                    .add_filter("GGUF", &["gguf"])
                    .pick_file();
                let _ = tx.send(picked);
            });
        if spawned.is_ok() {
            self.dialog = Some(rx);
        }
    }

    /// Draws the picker (rows of the form's two-column grid) for the folder `path`. Returns the
    /// folder to put into `model.path` when an import has finished.
    pub fn ui(&mut self, ui: &mut egui::Ui, path: &str) -> Option<PathBuf> {
        let chosen = self.poll(path);
        if self.busy() {
            ui.ctx()
                .request_repaint_after(std::time::Duration::from_millis(100));
        }
        ui.label("");
        ui.horizontal(|ui| {
            let offer = if is_gguf(path) {
                format!("Import {}", short_name(path))
            } else {
                "Import .gguf…".into()
            };
            let enabled = self.import.is_none();
            let b = ui
                .add_enabled(enabled, egui::Button::new(offer))
                .on_hover_text(
                    "convert a GGUF model file (llama, qwen2) into a Hugging Face model folder \
                     beside it, then use that folder",
                );
            if b.clicked() {
                if is_gguf(path) {
                    self.start_import(Path::new(path));
                } else {
                    let start = Path::new(path).parent().unwrap_or(Path::new("."));
                    self.open_dialog(start);
                }
            }
        });
        ui.end_row();
        if let Some(job) = &self.import {
            let (d, t) = (
                job.done.load(Ordering::Relaxed),
                job.total.load(Ordering::Relaxed),
            );
            ui.label("");
            ui.add(
                egui::ProgressBar::new(if t > 0 { d as f32 / t as f32 } else { 0.0 })
                    .text(format!(
                        "importing {}: {d}/{t} tensors",
                        short_name(&job.gguf.display().to_string())
                    ))
                    .desired_width(320.0),
            );
            ui.end_row();
        }
        if let Some((ok, msg)) = &self.message {
            ui.label("");
            let color = if *ok { theme::GOOD } else { theme::WARN };
            ui.colored_label(color, msg);
            ui.end_row();
        }
        if is_gguf(path) {
            ui.label("");
            ui.colored_label(
                theme::WARN,
                "a GGUF file, not a model folder: import it to train on it",
            );
            ui.end_row();
            return chosen;
        }
        match self.facts_for(path) {
            Some(Ok(lines)) => {
                for (k, v) in lines.iter().filter(|(k, _)| k != "folder") {
                    ui.label(egui::RichText::new(k).weak());
                    ui.add(egui::Label::new(v).wrap());
                    ui.end_row();
                }
            }
            Some(Err(e)) => {
                ui.label("");
                ui.add(egui::Label::new(egui::RichText::new(e).color(theme::WARN)).wrap());
                ui.end_row();
            }
            None if !path.is_empty() => {
                ui.label("");
                ui.label(egui::RichText::new("reading the model folder…").weak());
                ui.end_row();
            }
            None => {}
        }
        chosen
    }
}

fn short_name(p: &str) -> String {
    Path::new(p)
        .file_name()
        .map_or_else(|| p.to_string(), |n| n.to_string_lossy().into_owned())
}
