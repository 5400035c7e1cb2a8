//! RLVR Studio's desktop app (egui/eframe). All UI lives in [`StudioApp`] so egui_kittest can
//! drive it headless; [`run_native`] is the thin eframe shell `rlvr-studio` opens with no
//! arguments.

pub mod app;
pub mod bench;
pub mod catalog;
pub mod charts;
pub mod form;
pub mod history;
pub mod inspector;
pub mod model_picker;
pub mod plugins;
pub mod runs;
pub mod session;
pub mod theme;

use std::time::Duration;

pub use app::{AppOptions, Persisted, StudioApp, View};

/// The app icon (PNG, 256×256; made from `icons/rlvr-studio.svg` by `icons/make-png.sh`).
pub const ICON_PNG: &[u8] = include_bytes!("../../icons/rlvr-studio-256.png");

/// Errors of the desktop shell.
#[derive(Debug, thiserror::Error)]
pub enum GuiError {
    /// The window could not be opened (no display, no OpenGL).
    #[error(
        "cannot open the window: {0} (is a display available? set DISPLAY or WAYLAND_DISPLAY)"
    )]
    Window(String),
}

const STORAGE_KEY: &str = "rlvr-studio-ui";

struct Shell {
    app: StudioApp,
}

impl eframe::App for Shell {
    fn ui(&mut self, ui: &mut egui::Ui, _frame: &mut eframe::Frame) {
        self.app.ui(ui);
    }

    fn save(&mut self, storage: &mut dyn eframe::Storage) {
        eframe::set_value(storage, STORAGE_KEY, &self.app.persisted());
    }

    fn auto_save_interval(&self) -> Duration {
        Duration::from_secs(30)
    }

    fn on_exit(&mut self, _gl: Option<&eframe::glow::Context>) {
        // Closing mid-run: stop after the current step and store it; the run reads as
        // interrupted and can be resumed from the Runs view.
        self.app.shutdown();
    }
}

fn icon() -> Option<egui::IconData> {
    eframe::icon_data::from_png_bytes(ICON_PNG).ok()
}

/// Opens the window and runs until it is closed.
pub fn run_native(opts: AppOptions) -> Result<(), GuiError> {
    let mut viewport = egui::ViewportBuilder::default()
        .with_title("RLVR Studio")
        .with_app_id("rlvr-studio")
        .with_inner_size([1280.0, 800.0])
        .with_min_inner_size([900.0, 560.0]);
    if let Some(i) = icon() {
        viewport = viewport.with_icon(i);
    }
    let native = eframe::NativeOptions {
        viewport,
        persist_window: true,
        ..Default::default()
    };
    eframe::run_native(
        "rlvr-studio",
        native,
        Box::new(move |cc| {
            let persisted = cc
                .storage
                .and_then(|s| eframe::get_value::<Persisted>(s, STORAGE_KEY))
                .unwrap_or_default();
            Ok(Box::new(Shell {
                app: StudioApp::new(opts, persisted),
            }))
        }),
    )
    .map_err(|e| GuiError::Window(e.to_string()))
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_window_icon_decodes() {
        let icon = super::icon().expect("icon");
        assert_eq!((icon.width, icon.height), (256, 256));
        assert_eq!(icon.rgba.len(), 256 * 256 * 4);
    }
}
