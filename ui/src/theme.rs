//! The one place for colours, spacing and fonts. Every view takes its colours from here, so dark
//! and light modes and the "large text" (projector) toggle apply everywhere.

use egui::{Color32, FontFamily, FontId, Stroke, TextStyle};
use serde::{Deserialize, Serialize};

/// The user's look settings (persisted).
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Theme {
    /// Dark mode (default) or light mode.
    pub dark: bool,
    /// Larger text and controls, for projectors and demos.
    pub large_text: bool,
}

impl Default for Theme {
    fn default() -> Self {
        Self {
            dark: true,
            large_text: false,
        }
    }
}

/// Accent colour (buttons that start things, the selected view).
pub const ACCENT: Color32 = Color32::from_rgb(0x3d, 0x9c, 0xf0);
/// Good things: passed, rising accuracy, running.
pub const GOOD: Color32 = Color32::from_rgb(0x3c, 0xb3, 0x71);
/// Warnings: paused, interrupted.
pub const WARN: Color32 = Color32::from_rgb(0xe8, 0xa3, 0x3d);
/// Errors: failed, validation messages.
pub const BAD: Color32 = Color32::from_rgb(0xe0, 0x55, 0x55);

/// Series colours for charts (colour-blind friendly, distinct on dark and light backgrounds).
pub const SERIES: [Color32; 10] = [
    Color32::from_rgb(0x4e, 0x9f, 0xe5),
    Color32::from_rgb(0xf2, 0x8e, 0x2b),
    Color32::from_rgb(0x59, 0xa1, 0x4f),
    Color32::from_rgb(0xe1, 0x57, 0x59),
    Color32::from_rgb(0xb0, 0x7a, 0xa1),
    Color32::from_rgb(0x76, 0xb7, 0xb2),
    Color32::from_rgb(0xed, 0xc9, 0x48),
    Color32::from_rgb(0xff, 0x9d, 0xa7),
    Color32::from_rgb(0x9c, 0x75, 0x5f),
    Color32::from_rgb(0xba, 0xb0, 0xac),
];

/// The colour of the `i`-th series.
pub fn series(i: usize) -> Color32 {
    SERIES[i % SERIES.len()]
}

/// Small gap between related widgets.
pub const GAP: f32 = 6.0;
/// Gap between sections.
pub const SECTION_GAP: f32 = 14.0;
/// Height of one chart in the live view.
pub const CHART_HEIGHT: f32 = 190.0;

impl Theme {
    /// Font scale: 1 normally, larger for projectors.
    pub fn scale(self) -> f32 {
        if self.large_text {
            1.35
        } else {
            1.0
        }
    }

    /// Installs the fonts: egui's defaults, with the monospace font (Hack) as a fallback of the
    /// proportional one for the few symbols the UI uses (▶ ◀ ■ ● ↻).
    pub fn install_fonts(ctx: &egui::Context) {
        let mut defs = egui::FontDefinitions::default();
        if let Some(p) = defs.families.get_mut(&FontFamily::Proportional) {
            p.push("Hack".into());
        }
        ctx.set_fonts(defs);
    }

    /// Applies colours, spacing and font sizes to the context (call when the theme changes and
    /// once at start).
    pub fn apply(self, ctx: &egui::Context) {
        ctx.set_theme(if self.dark {
            egui::Theme::Dark
        } else {
            egui::Theme::Light
        });
        let s = self.scale();
        let dark = self.dark;
        ctx.all_styles_mut(|style| {
            style.text_styles = [
                (
                    TextStyle::Heading,
                    FontId::new(20.0 * s, FontFamily::Proportional),
                ),
                (
                    TextStyle::Body,
                    FontId::new(14.0 * s, FontFamily::Proportional),
                ),
                (
                    TextStyle::Button,
                    FontId::new(14.0 * s, FontFamily::Proportional),
                ),
                (
                    TextStyle::Small,
                    FontId::new(11.0 * s, FontFamily::Proportional),
                ),
                (
                    TextStyle::Monospace,
                    FontId::new(13.0 * s, FontFamily::Monospace),
                ),
            ]
            .into();
            style.spacing.item_spacing = egui::vec2(8.0, 6.0) * s.sqrt();
            style.spacing.button_padding = egui::vec2(8.0, 4.0) * s.sqrt();
            style.spacing.interact_size.y = 22.0 * s;
            style.visuals.selection.bg_fill = ACCENT.gamma_multiply(if dark { 0.55 } else { 0.35 });
            style.visuals.selection.stroke = Stroke::new(1.0, ACCENT);
            style.visuals.hyperlink_color = ACCENT;
            style.visuals.error_fg_color = BAD;
            style.visuals.warn_fg_color = WARN;
        });
    }

    /// Colour of secondary text (hints, units).
    pub fn weak(self) -> Color32 {
        if self.dark {
            Color32::from_gray(150)
        } else {
            Color32::from_gray(100)
        }
    }

    /// Background of cards (completions in the inspector, panels of the live view).
    pub fn card(self) -> Color32 {
        if self.dark {
            Color32::from_gray(32)
        } else {
            Color32::from_gray(244)
        }
    }
}

/// Heading of a section inside a view.
pub fn section(ui: &mut egui::Ui, text: &str) {
    ui.add_space(GAP);
    ui.label(
        egui::RichText::new(text).strong().size(
            ui.style()
                .text_styles
                .get(&TextStyle::Body)
                .map_or(14.0, |f| f.size)
                * 1.1,
        ),
    );
}

/// A diverging colour for a value in [-1, 1] (negative = red, positive = blue/green), used for
/// token colouring; `t` is clamped.
pub fn diverging(t: f32, dark: bool) -> Color32 {
    let t = t.clamp(-1.0, 1.0);
    let base = if dark {
        Color32::from_gray(40)
    } else {
        Color32::from_gray(250)
    };
    let target = if t >= 0.0 { GOOD } else { BAD };
    lerp(base, target, t.abs())
}

/// A sequential colour for a value in [0, 1] (low = background, high = warm), used for entropy.
pub fn sequential(t: f32, dark: bool) -> Color32 {
    let t = t.clamp(0.0, 1.0);
    let base = if dark {
        Color32::from_gray(40)
    } else {
        Color32::from_gray(250)
    };
    if t < 0.5 {
        lerp(base, WARN, t * 2.0)
    } else {
        lerp(WARN, BAD, (t - 0.5) * 2.0)
    }
}

fn lerp(a: Color32, b: Color32, t: f32) -> Color32 {
    let m = |x: u8, y: u8| (x as f32 + (y as f32 - x as f32) * t).round() as u8;
    Color32::from_rgb(m(a.r(), b.r()), m(a.g(), b.g()), m(a.b(), b.b()))
}

/// Text colour readable on `bg`.
pub fn on(bg: Color32) -> Color32 {
    let l = 0.299 * bg.r() as f32 + 0.587 * bg.g() as f32 + 0.114 * bg.b() as f32;
    if l > 140.0 {
        Color32::from_gray(15)
    } else {
        Color32::from_gray(235)
    }
}
