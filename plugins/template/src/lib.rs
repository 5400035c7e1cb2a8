//! A template RLVR Studio plugin with one verifier. Copy this folder, rename the crate in
//! `Cargo.toml`, and replace `ExactMatch` with your own logic. See `plugin-api/README.md`.

use rlvr_plugin_api::{export_plugin, Plugin, Sample, Spec, Verdict, Verifier};

/// Passes when the completion, trimmed (and lower-cased unless `case_sensitive`), equals the
/// reference answer.
pub struct ExactMatch {
    case_sensitive: bool,
}

impl Verifier for ExactMatch {
    fn verify(&self, s: &Sample<'_>) -> Result<Verdict, String> {
        let (got, want) = if self.case_sensitive {
            (s.completion.trim().to_string(), s.answer.trim().to_string())
        } else {
            (
                s.completion.trim().to_lowercase(),
                s.answer.trim().to_lowercase(),
            )
        };
        Ok(if got == want {
            Verdict::pass("exact match")
        } else {
            Verdict::fail(format!("expected {want:?}, got {got:?}"))
        })
    }
}

/// Describes the plugin: its name, version, and components with their parameters.
fn plugin() -> Plugin {
    Plugin::new(
        "my-plugin",
        env!("CARGO_PKG_VERSION"),
        "A template plugin: an exact-match verifier",
    )
    .verifier(
        Spec::new(
            "exact_match",
            "trimmed completion equals the reference answer",
        )
        .bool("case_sensitive", false, "compare letters case-sensitively"),
        |p| {
            Ok(ExactMatch {
                case_sensitive: p.b("case_sensitive"),
            })
        },
    )
}

export_plugin!(plugin);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_trimmed_and_case_insensitive() {
        let v = ExactMatch {
            case_sensitive: false,
        };
        let meta = rlvr_plugin_api::serde_json::Value::Null;
        let s = |c| Sample {
            prompt: "2+2=",
            completion: c,
            answer: "Four",
            meta: &meta,
        };
        assert_eq!(v.verify(&s(" four\n")).map(|v| v.passed), Ok(Some(true)));
        assert_eq!(v.verify(&s("five")).map(|v| v.passed), Ok(Some(false)));
    }
}
