//! Frame-time benchmark (`rlvr-studio gui-bench`): the real window, a run training, and the
//! comparison view overlaying N synthetic runs of M steps each. Reports the p50/p95 of the time
//! between frames (everything: layout, tessellation, painting) and of `StudioApp::ui` alone.

use std::sync::{Arc, Mutex};
use std::time::Instant;

use crate::history::MetricTable;
use crate::{AppOptions, GuiError, StudioApp, View};

/// What to measure.
#[derive(Clone, Debug)]
pub struct BenchOptions {
    /// Frames measured (after a warm-up of 30).
    pub frames: usize,
    /// Synthetic runs overlaid.
    pub runs: usize,
    /// Steps per synthetic run.
    pub points: usize,
    /// Train the default preset meanwhile.
    pub train: bool,
    /// Step count of the training run.
    pub train_steps: usize,
}

impl Default for BenchOptions {
    fn default() -> Self {
        Self {
            frames: 300,
            runs: 10,
            points: 5000,
            train: true,
            train_steps: 100_000,
        }
    }
}

/// Measured frame times.
#[derive(Clone, Debug, Default)]
pub struct BenchReport {
    /// Frames measured.
    pub frames: usize,
    /// Median time between frames (ms).
    pub frame_p50_ms: f64,
    /// 95th percentile between frames (ms).
    pub frame_p95_ms: f64,
    /// Median of `StudioApp::ui` alone (ms).
    pub ui_p50_ms: f64,
    /// 95th percentile of `StudioApp::ui` alone (ms).
    pub ui_p95_ms: f64,
    /// Lines the comparison drew.
    pub lines: usize,
    /// Steps the training run made during the benchmark.
    pub trained_steps: usize,
}

/// A synthetic run's metrics: noisy rising reward/accuracy curves and the usual diagnostics.
pub fn synthetic_table(seed: u64, points: usize) -> MetricTable {
    let mut t = MetricTable::default();
    let mut x = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    let mut noise = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        (x % 10_000) as f64 / 10_000.0 - 0.5
    };
    let rate = 1.0 + seed as f64 * 0.15;
    for s in 1..=points {
        let p = s as f64 / points as f64;
        let learn = 1.0 - (-4.0 * rate * p).exp();
        let m = rlvr_core::events::StepMetrics {
            step: s,
            elapsed_s: s as f64 * 0.2,
            reward_mean: 0.1 + 0.8 * learn + 0.08 * noise(),
            accuracy: 0.05 + 0.85 * learn + 0.08 * noise(),
            entropy: 1.2 - 0.8 * learn + 0.05 * noise(),
            response_len_mean: 6.0 + 2.0 * noise(),
            clip_low_frac: 0.02 + 0.01 * noise(),
            clip_high_frac: 0.03 + 0.01 * noise(),
            zero_var_frac: 0.5 * learn + 0.05 * noise(),
            grad_norm: 0.5 + 0.2 * noise(),
            tokens_per_s: 4000.0 + 300.0 * noise(),
            step_time_s: 0.2,
            ..Default::default()
        };
        t.push_step(&m);
    }
    t
}

fn percentile(v: &mut [f64], q: f64) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    v.sort_by(|a, b| a.total_cmp(b));
    v[((v.len() - 1) as f64 * q).round() as usize]
}

impl BenchReport {
    fn from_samples(mut frame: Vec<f64>, mut ui: Vec<f64>, lines: usize, steps: usize) -> Self {
        Self {
            frames: frame.len(),
            frame_p50_ms: percentile(&mut frame, 0.5),
            frame_p95_ms: percentile(&mut frame, 0.95),
            ui_p50_ms: percentile(&mut ui, 0.5),
            ui_p95_ms: percentile(&mut ui, 0.95),
            lines,
            trained_steps: steps,
        }
    }
}

/// Puts the synthetic runs into the comparison view and starts the training run.
pub fn prepare(app: &mut StudioApp, b: &BenchOptions, ctx: Option<egui::Context>) {
    for i in 0..b.runs {
        let id = -(i as i64) - 1;
        app.runs
            .tables
            .insert(id, synthetic_table(i as u64, b.points));
        app.runs.selected.insert(id);
    }
    app.view = View::Runs;
    if b.train {
        let mut cfg = crate::form::default_config();
        cfg.steps = b.train_steps;
        cfg.name = "gui-bench".into();
        app.form.set_config(&cfg, "benchmark");
        app.train(ctx);
        app.view = View::Runs;
    }
}

struct BenchShell {
    app: StudioApp,
    opts: BenchOptions,
    prepared: bool,
    last: Option<Instant>,
    frame_ms: Vec<f64>,
    ui_ms: Vec<f64>,
    seen: usize,
    out: Arc<Mutex<Option<BenchReport>>>,
}

impl eframe::App for BenchShell {
    fn ui(&mut self, ui: &mut egui::Ui, _frame: &mut eframe::Frame) {
        if !self.prepared {
            prepare(&mut self.app, &self.opts, Some(ui.ctx().clone()));
            self.prepared = true;
        }
        let now = Instant::now();
        if let Some(prev) = self.last.replace(now) {
            self.seen += 1;
            if self.seen > 30 {
                self.frame_ms
                    .push(now.duration_since(prev).as_secs_f64() * 1e3);
            }
        }
        let t = Instant::now();
        self.app.ui(ui);
        if self.seen > 30 {
            self.ui_ms.push(t.elapsed().as_secs_f64() * 1e3);
        }
        if self.frame_ms.len() >= self.opts.frames {
            let steps = self.app.live.as_ref().map_or(0, |l| l.done_steps);
            let lines = self.app.runs.overlaid("reward_mean");
            if let Ok(mut o) = self.out.lock() {
                *o = Some(BenchReport::from_samples(
                    std::mem::take(&mut self.frame_ms),
                    std::mem::take(&mut self.ui_ms),
                    lines,
                    steps,
                ));
            }
            ui.ctx().send_viewport_cmd(egui::ViewportCommand::Close);
        }
        ui.ctx().request_repaint();
    }

    fn on_exit(&mut self, _gl: Option<&eframe::glow::Context>) {
        self.app.shutdown();
    }
}

/// Opens the window, measures, closes it.
pub fn run(opts: AppOptions, b: BenchOptions) -> Result<BenchReport, GuiError> {
    let out = Arc::new(Mutex::new(None));
    let out2 = out.clone();
    let native = eframe::NativeOptions {
        viewport: egui::ViewportBuilder::default()
            .with_title("RLVR Studio — frame benchmark")
            .with_inner_size([1280.0, 800.0]),
        // Measure the frame, not the wait for the display's refresh.
        glow_options: eframe::egui_glow::GlowConfiguration {
            vsync: false,
            ..Default::default()
        },
        ..Default::default()
    };
    eframe::run_native(
        "rlvr-studio-bench",
        native,
        Box::new(move |_cc| {
            Ok(Box::new(BenchShell {
                app: StudioApp::new(opts, crate::Persisted::default()),
                opts: b,
                prepared: false,
                last: None,
                frame_ms: Vec::new(),
                ui_ms: Vec::new(),
                seen: 0,
                out: out2,
            }))
        }),
    )
    .map_err(|e| GuiError::Window(e.to_string()))?;
    let report = out.lock().ok().and_then(|mut o| o.take());
    report.ok_or_else(|| GuiError::Window("the window closed before the benchmark finished".into()))
}
