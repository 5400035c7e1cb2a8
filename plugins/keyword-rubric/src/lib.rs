//! Keyword / regex rubric: weighted criteria checked with regular expressions, in the spirit of
//! rubric rewards (*Rubrics as Rewards: Reinforcement Learning Beyond Verifiable Domains*):
//! `required` patterns that must appear, `forbidden` patterns that must not, a `format` the whole
//! trimmed completion must match, and a length budget. A criterion whose weight is 0 is logged
//! only. Only configured criteria are scored.

use regex::Regex;
use rlvr_plugin_api::{export_plugin, Criterion, CriterionScore, Plugin, Rubric, Sample, Spec};

/// One configured check.
#[derive(Debug)]
enum Check {
    /// Share of these patterns found.
    Required(Vec<Regex>),
    /// 1 when none of these patterns is found.
    Forbidden(Vec<Regex>),
    /// 1 when the trimmed completion matches.
    Format(Regex),
    /// 1 up to `max` characters, then falling linearly to 0 at twice that.
    Length(usize),
}

/// The rubric.
#[derive(Debug)]
pub struct KeywordRubric {
    checks: Vec<(Criterion, Check)>,
}

fn patterns(key: &str, text: &str) -> Result<Vec<Regex>, String> {
    text.split(";;")
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .map(|p| Regex::new(p).map_err(|e| format!("{key}: bad pattern {p:?}: {e}")))
        .collect()
}

impl KeywordRubric {
    /// Builds the rubric from its parameters.
    pub fn new(p: &rlvr_plugin_api::Params) -> Result<Self, String> {
        let mut checks = Vec::new();
        let required = patterns("required", p.text("required"))?;
        if !required.is_empty() {
            let c = Criterion::new(
                "required",
                p.f("required_weight"),
                "share of the required patterns present",
            );
            checks.push((c, Check::Required(required)));
        }
        let forbidden = patterns("forbidden", p.text("forbidden"))?;
        if !forbidden.is_empty() {
            let c = Criterion::new(
                "forbidden",
                p.f("forbidden_weight"),
                "none of the forbidden patterns present",
            );
            checks.push((c, Check::Forbidden(forbidden)));
        }
        let format = p.text("format").trim();
        if !format.is_empty() {
            let re =
                Regex::new(format).map_err(|e| format!("format: bad pattern {format:?}: {e}"))?;
            let c = Criterion::new(
                "format",
                p.f("format_weight"),
                "the trimmed completion matches the format",
            );
            checks.push((c, Check::Format(re)));
        }
        if p.u("max_chars") > 0 {
            let c = Criterion::new(
                "length",
                p.f("length_weight"),
                "within the character budget",
            );
            checks.push((c, Check::Length(p.u("max_chars"))));
        }
        if checks.is_empty() {
            return Err(
                "no criterion configured: set required, forbidden, format or max_chars".into(),
            );
        }
        Ok(Self { checks })
    }
}

impl Rubric for KeywordRubric {
    fn criteria(&self) -> Vec<Criterion> {
        self.checks.iter().map(|(c, _)| c.clone()).collect()
    }

    fn score(&self, s: &Sample<'_>) -> Result<Vec<CriterionScore>, String> {
        let text = s.completion;
        Ok(self
            .checks
            .iter()
            .map(|(_, check)| match check {
                Check::Required(res) => {
                    let missing: Vec<&str> = res
                        .iter()
                        .filter(|r| !r.is_match(text))
                        .map(Regex::as_str)
                        .collect();
                    let score = 1.0 - missing.len() as f64 / res.len() as f64;
                    let reason = if missing.is_empty() {
                        "all present".to_string()
                    } else {
                        format!("missing {}", missing.join(", "))
                    };
                    CriterionScore::new(score, reason)
                }
                Check::Forbidden(res) => match res.iter().find(|r| r.is_match(text)) {
                    Some(r) => CriterionScore::new(0.0, format!("contains {}", r.as_str())),
                    None => CriterionScore::new(1.0, "clean"),
                },
                Check::Format(re) => {
                    if re.is_match(text.trim()) {
                        CriterionScore::new(1.0, "well formed")
                    } else {
                        CriterionScore::new(0.0, format!("does not match {}", re.as_str()))
                    }
                }
                Check::Length(max) => {
                    let n = text.chars().count();
                    let score = if n <= *max {
                        1.0
                    } else {
                        (2.0 - n as f64 / *max as f64).max(0.0)
                    };
                    CriterionScore::new(score, format!("{n} chars (budget {max})"))
                }
            })
            .collect())
    }
}

fn plugin() -> Plugin {
    Plugin::new(
        "keyword-rubric",
        env!("CARGO_PKG_VERSION"),
        "Rubric rewards from regular expressions: required and forbidden patterns, a format, a length budget",
    )
    .rubric(
        Spec::new("keyword_rubric", "weighted regex criteria: required, forbidden, format, length")
            .text("required", "", "patterns that must appear, separated by ;;")
            .float("required_weight", 1.0, 0.0, 100.0, "weight of the required criterion (0 = logged only)")
            .text("forbidden", "", "patterns that must not appear, separated by ;;")
            .float("forbidden_weight", 1.0, 0.0, 100.0, "weight of the forbidden criterion")
            .text("format", "", "pattern the whole trimmed completion must match, e.g. ^-?[0-9]+$")
            .float("format_weight", 1.0, 0.0, 100.0, "weight of the format criterion")
            .int("max_chars", 0, 0, 1_000_000, "character budget (0 = no length criterion)")
            .float("length_weight", 0.0, 0.0, 100.0, "weight of the length criterion (default: logged only)")
            .criterion("required", 1.0, "share of the required patterns present")
            .criterion("forbidden", 1.0, "none of the forbidden patterns present")
            .criterion("format", 1.0, "the trimmed completion matches the format")
            .criterion("length", 0.0, "within the character budget"),
        KeywordRubric::new,
    )
}

export_plugin!(plugin);

#[cfg(test)]
mod tests {
    use super::*;
    use rlvr_plugin_api::Params;

    fn rubric(json: &str) -> Result<KeywordRubric, String> {
        KeywordRubric::new(&Params::from_json(json)?)
    }

    fn score(r: &KeywordRubric, text: &str) -> Vec<f64> {
        let meta = rlvr_plugin_api::serde_json::Value::Null;
        let s = Sample {
            prompt: "",
            completion: text,
            answer: "",
            meta: &meta,
        };
        r.score(&s).unwrap().into_iter().map(|c| c.score).collect()
    }

    #[test]
    fn criteria_score_as_documented() {
        let r = rubric(r#"{"required":"select;;from","required_weight":1,"forbidden":"drop","forbidden_weight":1,
                          "format":"^[a-z ]+$","format_weight":1,"max_chars":10,"length_weight":0}"#).unwrap();
        assert_eq!(
            r.criteria()
                .iter()
                .map(|c| c.name.as_str())
                .collect::<Vec<_>>(),
            ["required", "forbidden", "format", "length"]
        );
        assert_eq!(score(&r, "select a"), vec![0.5, 1.0, 1.0, 1.0]);
        assert_eq!(score(&r, "select a from t drop"), vec![1.0, 0.0, 1.0, 0.0]);
        assert_eq!(score(&r, "SELECT 1"), vec![0.0, 1.0, 0.0, 1.0]);
    }

    #[test]
    fn bad_patterns_and_empty_rubrics_are_errors() {
        assert!(rubric(r#"{"required":"(unclosed"}"#)
            .unwrap_err()
            .contains("required: bad pattern"));
        assert!(rubric("{}")
            .unwrap_err()
            .contains("no criterion configured"));
    }
}
