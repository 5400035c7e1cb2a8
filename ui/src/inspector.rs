//! The group inspector: for one step, each prompt with its G completions side by side, their
//! reward components with the verifier's reasons, advantages and lengths, and every token
//! coloured by entropy, log-probability or advantage.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use rlvr_core::events::{SampleGroup, TokenStats};
use rlvr_store::{Store, StoredGroup};
use serde::{Deserialize, Serialize};

use crate::theme::{self, Theme};

/// What token colours show.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum TokenColor {
    /// Entropy of the next-token distribution (nats).
    Entropy,
    /// Log-probability of the sampled token.
    LogProb,
    /// Advantage the token was trained with.
    Advantage,
}

impl TokenColor {
    /// Name in the switch and legend.
    pub fn label(self) -> &'static str {
        match self {
            TokenColor::Entropy => "entropy",
            TokenColor::LogProb => "log-prob",
            TokenColor::Advantage => "advantage",
        }
    }
}

/// One completion, from a live event or the store.
#[derive(Clone, Debug, PartialEq)]
pub struct Completion {
    /// Text.
    pub text: String,
    /// Total reward.
    pub reward: f64,
    /// (component, score, verifier's reason).
    pub components: Vec<(String, f32, String)>,
    /// Verdict.
    pub passed: bool,
    /// Advantage.
    pub advantage: f64,
    /// Tokens.
    pub length: usize,
    /// Cut at the limit.
    pub truncated: bool,
    /// Per-token statistics.
    pub tokens: TokenStats,
}

/// One prompt and its completions.
#[derive(Clone, Debug, PartialEq)]
pub struct Group {
    /// Prompt.
    pub prompt: String,
    /// Reference answer.
    pub answer: String,
    /// The G completions.
    pub samples: Vec<Completion>,
}

impl From<&SampleGroup> for Group {
    fn from(g: &SampleGroup) -> Self {
        Self {
            prompt: g.prompt.clone(),
            answer: g.answer.clone(),
            samples: g
                .samples
                .iter()
                .map(|s| Completion {
                    text: s.completion.clone(),
                    reward: s.reward as f64,
                    components: s.components.clone(),
                    passed: s.passed,
                    advantage: s.advantage as f64,
                    length: s.length,
                    truncated: s.truncated,
                    tokens: s.tokens.clone(),
                })
                .collect(),
        }
    }
}

impl From<StoredGroup> for Group {
    fn from(g: StoredGroup) -> Self {
        Self {
            prompt: g.prompt,
            answer: g.answer,
            samples: g
                .samples
                .into_iter()
                .map(|s| Completion {
                    text: s.completion,
                    reward: s.reward,
                    components: s.components,
                    passed: s.passed,
                    advantage: s.advantage,
                    length: s.length.max(0) as usize,
                    truncated: s.truncated,
                    tokens: s.tokens,
                })
                .collect(),
        }
    }
}

/// The inspector's state.
#[derive(Default)]
pub struct Inspector {
    /// The run inspected (its id in the history).
    pub run_id: Option<i64>,
    /// The step shown.
    pub step: usize,
    /// Token colouring.
    pub color_by: Option<TokenColor>,
    /// Only completions with reward ≥ this.
    pub min_reward: Option<f64>,
    /// Only groups whose prompt or completions contain this text.
    pub search: String,
    /// The groups of (run, step), loaded.
    pub groups: Vec<Group>,
    loaded: Option<(i64, usize)>,
    /// Steps with stored samples (for the step slider).
    pub steps: Vec<usize>,
    /// Why nothing is shown.
    pub error: Option<String>,
    model_dir: Option<PathBuf>,
    steps_of: Option<(i64, usize)>,
    tokenizers: HashMap<PathBuf, Option<rlvr_engine::tokenizer::Tok>>,
}

/// Splits a completion into one text piece per token. The embedded models are character-level
/// (one token per character, plus the end-of-sequence token); other tokenizers are loaded from
/// the model folder.
pub fn token_pieces(
    text: &str,
    n: usize,
    tok: Option<&rlvr_engine::tokenizer::Tok>,
) -> Vec<String> {
    let chars: Vec<String> = text.chars().map(|c| c.to_string()).collect();
    if chars.len() == n {
        return chars;
    }
    if chars.len() + 1 == n {
        let mut v = chars;
        v.push("¶".into());
        return v;
    }
    if let Some(tok) = tok {
        if let Ok(ids) = tok.encode(text) {
            let mut v: Vec<String> = ids.iter().map(|&i| tok.token_text(i)).collect();
            while v.len() < n {
                v.push("¶".into());
            }
            v.truncate(n);
            return v;
        }
    }
    // Unknown mapping: one piece per token, the text split evenly.
    let per = chars.len().div_ceil(n.max(1)).max(1);
    let mut v: Vec<String> = chars.chunks(per).map(|c| c.concat()).collect();
    v.resize(n, String::new());
    v
}

impl Inspector {
    /// Shows `step` of `run_id`.
    pub fn open(&mut self, run_id: i64, step: usize) {
        self.run_id = Some(run_id);
        self.step = step;
        self.loaded = None;
    }

    /// Loads the groups of the chosen step: from the live run's memory when it has them, else
    /// from the store.
    pub fn refresh(&mut self, store: Option<&Store>, live: Option<&crate::session::LiveRun>) {
        let Some(run) = self.run_id else { return };
        let live = live.filter(|l| l.run_id == run);
        // The step list of a live run changes once per step: re-read it then only.
        if let Some(l) = live.filter(|l| self.steps_of != Some((run, l.done_steps))) {
            self.steps_of = Some((run, l.done_steps));
            let mut steps: Vec<usize> = l.samples.keys().copied().collect();
            if let Some(s) = store {
                if let Ok(stored) = s.sample_steps(run) {
                    steps.extend(stored.into_iter().map(|x| x as usize));
                }
            }
            steps.sort_unstable();
            steps.dedup();
            self.steps = steps;
            self.model_dir = Some(l.cfg.model.path.clone());
        }
        if self.loaded == Some((run, self.step)) {
            return;
        }
        self.error = None;
        if let Some(g) = live.and_then(|l| l.samples.get(&self.step)) {
            self.groups = g.iter().map(Group::from).collect();
            self.loaded = Some((run, self.step));
            return;
        }
        let Some(store) = store else {
            self.error = Some("the run history is not open".into());
            return;
        };
        if live.is_none() {
            match store.sample_steps(run) {
                Ok(s) => self.steps = s.into_iter().map(|x| x as usize).collect(),
                Err(e) => self.error = Some(e.to_string()),
            }
            if let Ok(r) = store.run(run) {
                self.model_dir = Some(PathBuf::from(r.model_path));
            }
        }
        if !self.steps.contains(&self.step) {
            if let Some(&last) = self.steps.last() {
                self.step = last;
            }
        }
        match store.samples(run, Some(self.step as u64), None) {
            Ok(g) => self.groups = g.into_iter().map(Group::from).collect(),
            Err(e) => self.error = Some(e.to_string()),
        }
        self.loaded = Some((run, self.step));
    }

    fn tokenizer(&mut self) -> Option<&rlvr_engine::tokenizer::Tok> {
        let dir = self.model_dir.clone()?;
        self.tokenizers
            .entry(dir.clone())
            .or_insert_with(|| load_tok(&dir))
            .as_ref()
    }

    /// Draws the inspector.
    pub fn ui(
        &mut self,
        ui: &mut egui::Ui,
        theme: Theme,
        store: Option<&Store>,
        live: Option<&crate::session::LiveRun>,
    ) {
        if self.run_id.is_none() {
            if let Some(l) = live {
                self.run_id = Some(l.run_id);
                self.step = l.samples.keys().next_back().copied().unwrap_or(0);
            }
        }
        self.refresh(store, live);
        let Some(run) = self.run_id else {
            ui.label("No run to inspect yet: train one, or pick a run in Runs and press Inspect.");
            return;
        };
        let color_by = self.color_by.unwrap_or(TokenColor::Entropy);
        ui.horizontal_wrapped(|ui| {
            ui.label(egui::RichText::new(format!("Run {run}")).strong());
            let l = ui.label("Step");
            let (lo, hi) = (
                self.steps.first().copied().unwrap_or(0),
                self.steps.last().copied().unwrap_or(0),
            );
            let mut step = self.step;
            ui.add(egui::Slider::new(&mut step, lo..=hi.max(lo)))
                .labelled_by(l.id);
            if ui
                .button("◀")
                .on_hover_text("previous step with samples")
                .clicked()
            {
                if let Some(p) = self.steps.iter().rev().find(|&&s| s < step) {
                    step = *p;
                }
            }
            if ui
                .button("▶")
                .on_hover_text("next step with samples")
                .clicked()
            {
                if let Some(n) = self.steps.iter().find(|&&s| s > step) {
                    step = *n;
                }
            }
            if live.is_some_and(|l| l.run_id == run)
                && ui
                    .button("Latest")
                    .on_hover_text("jump to the newest step")
                    .clicked()
            {
                step = hi;
            }
            if step != self.step {
                self.step = step;
                self.loaded = None;
            }
            ui.separator();
            let l = ui.label("Colour tokens by");
            let mut c = color_by;
            egui::ComboBox::from_id_salt("token_color")
                .selected_text(c.label())
                .show_ui(ui, |ui| {
                    for t in [
                        TokenColor::Entropy,
                        TokenColor::LogProb,
                        TokenColor::Advantage,
                    ] {
                        ui.selectable_value(&mut c, t, t.label());
                    }
                })
                .response
                .labelled_by(l.id);
            self.color_by = Some(c);
        });
        ui.horizontal_wrapped(|ui| {
            let l = ui.label("Search");
            ui.add(egui::TextEdit::singleline(&mut self.search).desired_width(160.0))
                .labelled_by(l.id);
            let mut on = self.min_reward.is_some();
            ui.checkbox(&mut on, "Min reward");
            let mut v = self.min_reward.unwrap_or(0.5);
            if on {
                let l = ui.label("≥");
                ui.add(egui::DragValue::new(&mut v).speed(0.05))
                    .labelled_by(l.id);
            }
            self.min_reward = on.then_some(v);
            ui.separator();
            legend(ui, color_by, theme);
        });
        if let Some(e) = &self.error {
            ui.colored_label(theme::BAD, e);
        }
        ui.separator();
        let needle = self.search.to_lowercase();
        let min = self.min_reward;
        let groups = std::mem::take(&mut self.groups);
        let shown: Vec<(usize, &Group, Vec<&Completion>)> = groups
            .iter()
            .enumerate()
            .filter(|(_, g)| {
                needle.is_empty()
                    || g.prompt.to_lowercase().contains(&needle)
                    || g.samples
                        .iter()
                        .any(|s| s.text.to_lowercase().contains(&needle))
            })
            .map(|(i, g)| {
                let s = g
                    .samples
                    .iter()
                    .filter(|s| min.is_none_or(|m| s.reward >= m))
                    .collect();
                (i, g, s)
            })
            .filter(|(_, _, s): &(usize, &Group, Vec<&Completion>)| !s.is_empty())
            .collect();
        ui.label(format!(
            "{} of {} groups at step {}",
            shown.len(),
            groups.len(),
            self.step
        ));
        // Character-level models need no tokenizer; others load theirs once.
        let needs_tok = shown.iter().any(|(_, _, ss)| {
            ss.iter()
                .any(|s| s.text.chars().count().abs_diff(s.tokens.entropy.len()) > 1)
        });
        if needs_tok {
            let _ = self.tokenizer();
        }
        let tok = self
            .model_dir
            .as_ref()
            .and_then(|d| self.tokenizers.get(d))
            .and_then(Option::as_ref);
        egui::ScrollArea::vertical()
            .auto_shrink([false, false])
            .show(ui, |ui| {
                for (i, g, samples) in &shown {
                    group_ui(ui, *i, g, samples, color_by, theme, tok);
                }
            });
        self.groups = groups;
    }
}

fn load_tok(dir: &Path) -> Option<rlvr_engine::tokenizer::Tok> {
    rlvr_engine::tokenizer::Tok::from_file(&dir.join("tokenizer.json"), None, None, None).ok()
}

fn scale(c: TokenColor, v: f32) -> (f32, bool) {
    match c {
        TokenColor::Entropy => (v / 2.0, false),
        TokenColor::LogProb => ((-v) / 4.0, false),
        TokenColor::Advantage => (v / 1.5, true),
    }
}

fn token_color(c: TokenColor, v: f32, dark: bool) -> egui::Color32 {
    let (t, diverging) = scale(c, v);
    if diverging {
        theme::diverging(t, dark)
    } else {
        theme::sequential(t, dark)
    }
}

/// The colour legend for the current token colouring.
pub fn legend(ui: &mut egui::Ui, c: TokenColor, theme: Theme) {
    let stops: &[(f32, &str)] = match c {
        TokenColor::Entropy => &[(0.0, "0 nats"), (1.0, "1"), (2.0, "≥2 (uncertain)")],
        TokenColor::LogProb => &[(0.0, "0 (certain)"), (-2.0, "-2"), (-4.0, "≤-4 (unlikely)")],
        TokenColor::Advantage => &[(-1.5, "≤-1.5"), (0.0, "0"), (1.5, "≥1.5")],
    };
    ui.label(format!("Legend ({}):", c.label()));
    for (v, label) in stops {
        let bg = token_color(c, *v, theme.dark);
        egui::Frame::new()
            .fill(bg)
            .inner_margin(egui::Margin::symmetric(4, 1))
            .corner_radius(3.0)
            .show(ui, |ui| {
                ui.label(egui::RichText::new(*label).color(theme::on(bg)).small());
            });
    }
}

fn group_ui(
    ui: &mut egui::Ui,
    index: usize,
    g: &Group,
    samples: &[&Completion],
    color_by: TokenColor,
    theme: Theme,
    tok: Option<&rlvr_engine::tokenizer::Tok>,
) {
    egui::Frame::new()
        .fill(theme.card())
        .inner_margin(8.0)
        .corner_radius(6.0)
        .show(ui, |ui| {
            ui.set_width(ui.available_width());
            ui.horizontal_wrapped(|ui| {
                ui.label(egui::RichText::new(format!("#{index}")).color(theme.weak()));
                ui.label(egui::RichText::new(&g.prompt).monospace().strong());
                ui.label(egui::RichText::new(format!("answer: {}", g.answer)).color(theme.weak()));
                let pass = g.samples.iter().filter(|s| s.passed).count();
                ui.label(format!("{pass}/{} passed", g.samples.len()));
            });
            let cols = samples.len().clamp(1, 4);
            let w = (ui.available_width() - theme::GAP * (cols as f32 - 1.0)) / cols as f32;
            for row in samples.chunks(cols) {
                ui.horizontal_top(|ui| {
                    for s in row {
                        ui.vertical(|ui| {
                            ui.set_width(w);
                            completion_ui(ui, s, color_by, theme, tok);
                        });
                    }
                });
            }
        });
    ui.add_space(theme::GAP);
}

fn completion_ui(
    ui: &mut egui::Ui,
    s: &Completion,
    color_by: TokenColor,
    theme: Theme,
    tok: Option<&rlvr_engine::tokenizer::Tok>,
) {
    let (mark, col) = if s.passed {
        ("pass", theme::GOOD)
    } else {
        ("fail", theme::BAD)
    };
    ui.horizontal_wrapped(|ui| {
        ui.colored_label(col, mark);
        ui.label(format!("reward {:.2}", s.reward));
        ui.label(format!("adv {:+.2}", s.advantage));
        ui.label(
            egui::RichText::new(format!(
                "{} tok{}",
                s.length,
                if s.truncated { " (cut)" } else { "" }
            ))
            .color(theme.weak()),
        );
    });
    let values = match color_by {
        TokenColor::Entropy => &s.tokens.entropy,
        TokenColor::LogProb => &s.tokens.logprob,
        TokenColor::Advantage => &s.tokens.advantage,
    };
    let pieces = token_pieces(&s.text, values.len(), tok);
    ui.horizontal_wrapped(|ui| {
        ui.spacing_mut().item_spacing = egui::vec2(1.0, 2.0);
        if values.is_empty() {
            ui.label(egui::RichText::new(&s.text).monospace());
        }
        for (p, v) in pieces.iter().zip(values) {
            let bg = token_color(color_by, *v, theme.dark);
            let text = if p.trim().is_empty() {
                "·"
            } else {
                p.as_str()
            };
            ui.label(
                egui::RichText::new(text)
                    .monospace()
                    .background_color(bg)
                    .color(theme::on(bg)),
            )
            .on_hover_text(format!("{:?}: {} = {v:.3}", p, color_by.label()));
        }
    });
    for (name, score, reason) in &s.components {
        ui.label(
            egui::RichText::new(format!("{name}: {score:.2} — {reason}"))
                .small()
                .color(theme.weak()),
        );
    }
}
