//! The chart grid: one egui_plot per metric group, with smoothing, step or time on the x axis,
//! hover values, and linked x zoom/pan and cursor across all charts. Used by the live view (one
//! run, one colour per metric) and the comparison view (several runs, one colour per run).

use egui::{Color32, Id};
use egui_plot::{Legend, Line, Plot, PlotPoints};
use serde::{Deserialize, Serialize};

use crate::history::MetricTable;
use crate::theme;

/// One chart: a title and the metrics it draws. A name ending in `/*` draws every metric with
/// that prefix (reward components, pass@k, KL by estimator).
pub struct ChartDef {
    /// Title above the chart.
    pub title: &'static str,
    /// Metric names or prefixes.
    pub metrics: &'static [&'static str],
    /// The few drawn when several runs are overlaid (a `*` pattern draws its largest match).
    pub overlay: &'static [&'static str],
}

/// The charts of the live and comparison views.
pub const CHARTS: &[ChartDef] = &[
    ChartDef {
        title: "Reward",
        metrics: &["reward_components/*/mean", "reward_mean"],
        overlay: &["reward_mean"],
    },
    ChartDef {
        title: "Accuracy",
        metrics: &["accuracy", "eval/greedy_accuracy", "eval/pass_at_1"],
        overlay: &["accuracy", "eval/greedy_accuracy"],
    },
    ChartDef {
        title: "pass@k (held-out)",
        metrics: &["eval/pass_at_k/*"],
        overlay: &["eval/pass_at_k/*"],
    },
    ChartDef {
        title: "Entropy (nats)",
        metrics: &["entropy", "entropy_top20", "entropy_rest"],
        overlay: &["entropy"],
    },
    ChartDef {
        title: "KL to reference",
        metrics: &["kl", "kl_by_kind/*"],
        overlay: &["kl"],
    },
    ChartDef {
        title: "Response length (tokens)",
        metrics: &["response_len_mean", "response_len_max"],
        overlay: &["response_len_mean"],
    },
    ChartDef {
        title: "Clip fractions",
        metrics: &["clip_low_frac", "clip_high_frac", "truncated_frac"],
        overlay: &["clip_high_frac", "clip_low_frac"],
    },
    ChartDef {
        title: "Zero-variance groups",
        metrics: &["zero_var_frac", "nonzero_adv_frac"],
        overlay: &["zero_var_frac"],
    },
    ChartDef {
        title: "Gradient norm",
        metrics: &["grad_norm"],
        overlay: &["grad_norm"],
    },
    ChartDef {
        title: "Throughput (tokens/s)",
        metrics: &["tokens_per_s", "train_tokens_per_s"],
        overlay: &["tokens_per_s"],
    },
];

/// Width reserved for a chart's y axis labels.
const Y_AXIS: f32 = 40.0;

/// What the x axis shows.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum XAxis {
    /// Update steps.
    Step,
    /// Seconds since the run started.
    Time,
}

/// Chart settings (persisted).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ChartSettings {
    /// Exponential smoothing weight in [0, 0.99] (0 = raw).
    pub smoothing: f64,
    /// Step or time.
    pub x_axis: XAxis,
    /// Charts per row.
    pub columns: usize,
}

impl Default for ChartSettings {
    fn default() -> Self {
        Self {
            smoothing: 0.6,
            x_axis: XAxis::Step,
            columns: 2,
        }
    }
}

impl ChartSettings {
    /// The smoothing slider, x-axis switch and column count.
    pub fn controls(&mut self, ui: &mut egui::Ui) {
        ui.horizontal(|ui| {
            let l = ui.label("Smoothing");
            ui.add(egui::Slider::new(&mut self.smoothing, 0.0..=0.99).fixed_decimals(2))
                .labelled_by(l.id);
            ui.separator();
            let l = ui.label("X axis");
            egui::ComboBox::from_id_salt("x_axis")
                .selected_text(match self.x_axis {
                    XAxis::Step => "step",
                    XAxis::Time => "time (s)",
                })
                .show_ui(ui, |ui| {
                    ui.selectable_value(&mut self.x_axis, XAxis::Step, "step");
                    ui.selectable_value(&mut self.x_axis, XAxis::Time, "time (s)");
                })
                .response
                .labelled_by(l.id);
            ui.separator();
            let l = ui.label("Columns");
            ui.add(egui::DragValue::new(&mut self.columns).range(1..=4))
                .labelled_by(l.id);
        });
    }
}

/// Series prepared for drawing (mapped, smoothed, decimated), reused while nothing changed.
#[derive(Default)]
pub struct ChartCache {
    entries: std::collections::HashMap<(u64, String), CacheEntry>,
}

struct CacheEntry {
    key: (u64, u64, XAxis, usize),
    points: Vec<[f64; 2]>,
}

impl ChartCache {
    fn get(
        &mut self,
        table: &MetricTable,
        name: &str,
        settings: &ChartSettings,
        buckets: usize,
    ) -> &[[f64; 2]] {
        let key = (
            table.version,
            settings.smoothing.to_bits(),
            settings.x_axis,
            buckets,
        );
        let e = self
            .entries
            .entry((table.uid, name.to_string()))
            .or_insert_with(|| CacheEntry {
                key,
                points: prepared(table, name, settings, buckets),
            });
        if e.key != key {
            *e = CacheEntry {
                key,
                points: prepared(table, name, settings, buckets),
            };
        }
        &e.points
    }
}

/// A run as drawn in the charts.
pub struct RunSeries<'a> {
    /// Label in legends.
    pub label: String,
    /// Its metrics.
    pub table: &'a MetricTable,
    /// Its colour when several runs are overlaid.
    pub color: Color32,
}

/// Names in `table` matching `pattern` (`a/*/b` or `a/*` match any one or more segments).
pub fn matching(table: &MetricTable, pattern: &str) -> Vec<String> {
    match pattern.split_once('*') {
        None => {
            if table.cols.contains_key(pattern) {
                vec![pattern.to_string()]
            } else {
                Vec::new()
            }
        }
        Some((pre, post)) => table
            .cols
            .range(pre.to_string()..)
            .take_while(|(k, _)| k.starts_with(pre))
            .filter(|(k, _)| k.ends_with(post) && k.len() > pre.len() + post.len())
            .map(|(k, _)| k.clone())
            .collect(),
    }
}

/// The match with the largest numeric suffix (`pass_at_k/16` over `pass_at_k/8`).
fn largest(mut names: Vec<String>) -> Option<String> {
    names.sort_by_key(|n| {
        n.rsplit('/')
            .next()
            .and_then(|x| x.parse::<u64>().ok())
            .unwrap_or(0)
    });
    names.pop()
}

/// Exponential moving average with TensorBoard-style debiasing.
pub fn smooth(points: &[[f64; 2]], weight: f64) -> Vec<[f64; 2]> {
    if weight <= 0.0 {
        return points.to_vec();
    }
    let mut out = Vec::with_capacity(points.len());
    let mut acc = 0.0;
    let mut n = 0;
    for p in points {
        if !p[1].is_finite() {
            continue;
        }
        n += 1;
        acc = acc * weight + (1.0 - weight) * p[1];
        let debias = 1.0 - weight.powi(n);
        out.push([p[0], acc / debias]);
    }
    out
}

/// Keeps at most ~2 points per bucket (min and max, in order) so long series draw fast.
pub fn decimate(points: Vec<[f64; 2]>, buckets: usize) -> Vec<[f64; 2]> {
    if buckets == 0 || points.len() <= 2 * buckets {
        return points;
    }
    let per = points.len().div_ceil(buckets);
    let mut out = Vec::with_capacity(2 * buckets + 1);
    for chunk in points.chunks(per) {
        let (mut lo, mut hi) = (0, 0);
        for (i, p) in chunk.iter().enumerate() {
            if p[1] < chunk[lo][1] {
                lo = i;
            }
            if p[1] > chunk[hi][1] {
                hi = i;
            }
        }
        let (a, b) = if lo <= hi { (lo, hi) } else { (hi, lo) };
        out.push(chunk[a]);
        if b != a {
            out.push(chunk[b]);
        }
    }
    out
}

fn short(name: &str) -> String {
    name.trim_start_matches("reward_components/")
        .trim_end_matches("/mean")
        .replace("eval/pass_at_k/", "pass@")
        .to_string()
}

/// Points of one metric of one run, as drawn (time axis mapped, smoothed, decimated).
pub fn prepared(
    table: &MetricTable,
    name: &str,
    settings: &ChartSettings,
    buckets: usize,
) -> Vec<[f64; 2]> {
    let raw = table.get(name);
    let mut pts: Vec<[f64; 2]> = match settings.x_axis {
        XAxis::Step => raw.to_vec(),
        XAxis::Time => raw.iter().map(|p| [table.time_of(p[0]), p[1]]).collect(),
    };
    // Evaluations are sparse: smoothing them would lag by many steps.
    if !name.starts_with("eval/") {
        pts = smooth(&pts, settings.smoothing);
    }
    decimate(pts, buckets)
}

/// Draws the chart grid for `runs`; returns the number of lines drawn (for tests).
pub fn chart_grid(
    ui: &mut egui::Ui,
    id: &str,
    runs: &[RunSeries<'_>],
    settings: &ChartSettings,
    height: f32,
    cache: &mut ChartCache,
) -> usize {
    let link = Id::unique((id, "link"));
    let overlay = runs.len() > 1;
    // The plot's width excludes its y axis; leave room for the axis and a scroll bar.
    let avail = ui.available_width().min(ui.clip_rect().width()) - 18.0;
    // Fewer columns when charts would get too narrow (large text, small windows).
    let fit = ((avail / 340.0).floor() as usize).max(1);
    let cols = settings.columns.clamp(1, fit);
    let cell = ((avail - theme::GAP * (cols as f32 - 1.0)) / cols as f32).max(160.0);
    let width = cell - Y_AXIS;
    // Min and max per bucket: at most about one point per pixel column.
    let buckets = (width as usize / 6).max(20);
    let mut lines = 0;
    // Sparse charts (evaluations only) still span the steps trained so far.
    let x_max = runs
        .iter()
        .map(|r| {
            let last = r.table.last_step() as f64;
            match settings.x_axis {
                XAxis::Step => last,
                XAxis::Time => r.table.time_of(last),
            }
        })
        .fold(1.0, f64::max);
    // Only charts with data for at least one run.
    let charts: Vec<(&ChartDef, Vec<Vec<String>>)> = CHARTS
        .iter()
        .map(|c| {
            let names = runs
                .iter()
                .map(|r| {
                    if overlay {
                        c.overlay
                            .iter()
                            .filter_map(|m| largest(matching(r.table, m)))
                            .collect()
                    } else {
                        c.metrics
                            .iter()
                            .flat_map(|m| matching(r.table, m))
                            .collect()
                    }
                })
                .collect::<Vec<Vec<String>>>();
            (c, names)
        })
        .filter(|(_, names)| names.iter().any(|n| !n.is_empty()))
        .collect();
    if charts.is_empty() {
        ui.label("No metrics yet.");
        return 0;
    }
    if overlay {
        ui.horizontal_wrapped(|ui| {
            for run in runs {
                ui.label(egui::RichText::new("■").color(run.color));
                ui.label(&run.label);
                ui.add_space(theme::GAP);
            }
        });
    }
    egui::Grid::new((id, "grid"))
        .num_columns(cols)
        .spacing(egui::vec2(theme::GAP, theme::GAP))
        .show(ui, |ui| {
            for (i, (chart, names)) in charts.iter().enumerate() {
                ui.vertical(|ui| {
                    ui.set_width(cell);
                    // Charts scrolled out of view only take their space.
                    let title_h =
                        ui.text_style_height(&egui::TextStyle::Body) + ui.spacing().item_spacing.y;
                    let full = egui::Rect::from_min_size(
                        ui.cursor().min,
                        egui::vec2(cell, height + title_h),
                    );
                    if !ui.is_rect_visible(full) {
                        ui.allocate_space(full.size());
                        return;
                    }
                    ui.label(egui::RichText::new(chart.title).strong());
                    let mut plot = Plot::new((id, chart.title))
                        .height(height)
                        .width(width)
                        .link_axis(link, [true, false])
                        .link_cursor(link, [true, false]);
                    // Overlays share one legend above the grid (runs by colour).
                    if !overlay || std::env::var_os("RLVR_PLOT_LEGENDS").is_some() {
                        plot = plot.legend(
                            Legend::default()
                                .position(egui_plot::Corner::LeftTop)
                                .text_style(egui::TextStyle::Small)
                                .background_alpha(0.6),
                        );
                    }
                    let plot = plot
                        .include_x(0.0)
                        .include_x(x_max)
                        // Denser x labels than egui_plot's default (60 px apart): charts are narrow.
                        .custom_x_axes(vec![egui_plot::AxisHints::new_x()
                            .label(match settings.x_axis {
                                XAxis::Step => "step",
                                XAxis::Time => "seconds",
                            })
                            .label_spacing(28.0..=40.0)])
                        .custom_y_axes(vec![egui_plot::AxisHints::new_y()
                            .min_thickness(Y_AXIS)
                            .label_spacing(13.0..=20.0)]);
                    plot.show(ui, |pui| {
                        for (r, run) in runs.iter().enumerate() {
                            for (k, name) in names[r].iter().enumerate() {
                                let pts = cache.get(run.table, name, settings, buckets).to_vec();
                                let (label, color) = if overlay {
                                    let c = if names[r].len() > 1 {
                                        run.color.gamma_multiply(1.0 - 0.25 * k.min(3) as f32)
                                    } else {
                                        run.color
                                    };
                                    (
                                        if names[r].len() > 1 {
                                            format!("{} · {}", run.label, short(name))
                                        } else {
                                            run.label.clone()
                                        },
                                        c,
                                    )
                                } else {
                                    (short(name), theme::series(k))
                                };
                                if name.starts_with("eval/") {
                                    // Sparse held-out evaluations: markers joined by a dashed line.
                                    pui.points(
                                        egui_plot::Points::new(
                                            label.clone(),
                                            PlotPoints::new(pts.clone()),
                                        )
                                        .color(color)
                                        .radius(3.0),
                                    );
                                    pui.line(
                                        Line::new(label, PlotPoints::new(pts))
                                            .color(color)
                                            .width(1.0)
                                            .style(egui_plot::LineStyle::dashed_loose()),
                                    );
                                } else {
                                    pui.line(
                                        Line::new(label, PlotPoints::new(pts))
                                            .color(color)
                                            .width(1.5),
                                    );
                                }
                                lines += 1;
                            }
                        }
                    });
                });
                if (i + 1) % cols == 0 {
                    ui.end_row();
                }
            }
        });
    lines
}
