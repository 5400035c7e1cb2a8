//! The plugins view. The plugin host arrives on the lead's branch; until then this lists the
//! components of the catalog and says that no plugins are loaded. A loaded plugin adds its
//! components to [`crate::catalog::ComponentCatalog`] and the new-run form shows them.

use crate::catalog::{ComponentCatalog, ComponentKind};
use crate::theme::Theme;

/// The plugins view's state.
#[derive(Default)]
pub struct PluginsPanel {
    /// Load errors to show (one per broken plugin).
    pub errors: Vec<String>,
}

impl PluginsPanel {
    /// Draws the view.
    pub fn ui(&mut self, ui: &mut egui::Ui, catalog: &ComponentCatalog, theme: Theme) {
        ui.heading("Plugins");
        ui.label("No plugins loaded");
        for e in &self.errors {
            ui.colored_label(crate::theme::BAD, e);
        }
        ui.add_space(crate::theme::SECTION_GAP);
        crate::theme::section(ui, "Components available to new runs");
        egui::Grid::new("catalog_grid")
            .striped(true)
            .show(ui, |ui| {
                for h in ["kind", "name", "parameters", "origin", "summary"] {
                    ui.label(egui::RichText::new(h).strong());
                }
                ui.end_row();
                for c in &catalog.components {
                    ui.label(match c.kind {
                        ComponentKind::Estimator => "estimator",
                        ComponentKind::Task => "task",
                    });
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
}
