//! A task read from a JSONL file: one problem per line, `{"prompt": "...", "answer": "..."}`,
//! any other fields kept as the problem's metadata (what plugin verifiers receive). The built-in
//! verifier compares the trimmed completion with the answer; a plugin verifier
//! (`[rewards] verifier = "..."`) can judge it instead (SQL execution, unit tests...).
//!
//! Every problem's metadata also gets `dataset_dir`: the absolute folder of the file, so that
//! files a dataset refers to (a database, fixtures) can be named relative to it.

use std::path::{Path, PathBuf};

use rand::Rng as _;
use rand_chacha::ChaCha8Rng;

use super::{DatasetConfig, Problem, Task, TaskError, Verdict};

/// The dataset task (built from [`DatasetConfig`]).
#[derive(Clone, Debug)]
pub struct Dataset {
    problems: Vec<Problem>,
    path: PathBuf,
    /// Line numbers (1-based) of each problem.
    lines: Vec<usize>,
    max_prompt: usize,
    max_answer: usize,
}

fn bad(path: &Path, line: usize, msg: impl Into<String>) -> TaskError {
    TaskError::Dataset {
        path: path.display().to_string(),
        line,
        msg: msg.into(),
    }
}

impl Dataset {
    /// Reads and checks the file.
    pub fn new(config: &DatasetConfig) -> Result<Self, TaskError> {
        super::TaskConfig::Dataset(config.clone()).check()?;
        let path = &config.path;
        let text = std::fs::read_to_string(path).map_err(|e| bad(path, 0, e.to_string()))?;
        // A UTF-8 byte-order mark (some editors write one) is not part of the first line.
        let text = text.strip_prefix('\u{feff}').unwrap_or(&text);
        let dir = std::path::absolute(path)
            .ok()
            .and_then(|p| p.parent().map(Path::to_path_buf))
            .unwrap_or_default();
        let (mut problems, mut lines) = (Vec::new(), Vec::new());
        for (i, line) in text.lines().enumerate() {
            let n = i + 1;
            if line.trim().is_empty() {
                continue;
            }
            let v: serde_json::Value =
                serde_json::from_str(line).map_err(|e| bad(path, n, format!("not JSON: {e}")))?;
            let serde_json::Value::Object(mut obj) = v else {
                return Err(bad(
                    path,
                    n,
                    "expected a JSON object with \"prompt\" and \"answer\"",
                ));
            };
            let mut field = |k: &str| match obj.remove(k) {
                Some(serde_json::Value::String(s)) => Ok(s),
                Some(other) => Err(bad(
                    path,
                    n,
                    format!("\"{k}\" must be a string, found {other}"),
                )),
                None => Err(bad(path, n, format!("missing \"{k}\""))),
            };
            let prompt = field("prompt")?;
            let answer = field("answer")?;
            if prompt.is_empty() {
                return Err(bad(path, n, "\"prompt\" is empty"));
            }
            obj.insert(
                "dataset_dir".into(),
                serde_json::Value::String(dir.to_string_lossy().into_owned()),
            );
            problems.push(Problem {
                prompt,
                answer,
                meta: serde_json::Value::Object(obj),
            });
            lines.push(n);
        }
        if problems.is_empty() {
            return Err(bad(path, 0, "no problems (the file has no JSON lines)"));
        }
        let max_prompt = problems
            .iter()
            .map(|p| p.prompt.chars().count())
            .max()
            .unwrap_or(0);
        let max_answer = problems
            .iter()
            .map(|p| p.answer.chars().count())
            .max()
            .unwrap_or(0);
        Ok(Self {
            problems,
            path: path.clone(),
            lines,
            max_prompt,
            max_answer,
        })
    }

    /// Number of problems in the file.
    pub fn len(&self) -> usize {
        self.problems.len()
    }

    /// Whether the file has no problems (never true after `new`).
    pub fn is_empty(&self) -> bool {
        self.problems.is_empty()
    }
}

impl Task for Dataset {
    fn name(&self) -> &'static str {
        "dataset"
    }

    fn generate(&self, rng: &mut ChaCha8Rng) -> Problem {
        self.problems[rng.random_range(0..self.problems.len())].clone()
    }

    fn verify(&self, problem: &Problem, completion: &str) -> Verdict {
        let (got, want) = (completion.trim(), problem.answer.trim());
        if got == want {
            Verdict::pass(format!("correct: {want}"))
        } else {
            Verdict::fail(format!("expected {want:?}, got {got:?}"))
        }
    }

    fn max_answer_chars(&self) -> usize {
        self.max_answer
    }

    fn max_prompt_chars(&self) -> usize {
        self.max_prompt
    }

    fn longest_origin(&self, answer: bool) -> Option<(String, usize)> {
        let len = |p: &Problem| {
            if answer {
                p.answer.chars().count()
            } else {
                p.prompt.chars().count()
            }
        };
        let i =
            (0..self.problems.len()).max_by_key(|&i| (len(&self.problems[i]), usize::MAX - i))?;
        Some((self.path.display().to_string(), self.lines[i]))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use rand::SeedableRng as _;

    fn write(text: &str) -> (tempfile::TempDir, PathBuf) {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("data.jsonl");
        std::fs::write(&p, text).unwrap();
        (d, p)
    }

    #[test]
    fn reads_problems_with_metadata_and_verifies_trimmed() {
        let (_d, path) = write(
            "{\"prompt\": \"2+2=\", \"answer\": \"4\", \"level\": 1}\n\n{\"prompt\": \"3+3=\", \"answer\": \"6\"}\n",
        );
        let t = Dataset::new(&DatasetConfig { path: path.clone() }).unwrap();
        assert_eq!(t.len(), 2);
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let p = (0..20)
            .map(|_| t.generate(&mut rng))
            .find(|p| p.prompt == "2+2=")
            .unwrap();
        assert_eq!(p.meta["level"], 1);
        assert_eq!(
            p.meta["dataset_dir"],
            path.parent().unwrap().to_string_lossy().as_ref()
        );
        assert!(t.verify(&p, " 4\n").passed);
        assert!(!t.verify(&p, "5").passed);
        assert_eq!((t.max_prompt_chars(), t.max_answer_chars()), (4, 1));
    }

    #[test]
    fn a_byte_order_mark_is_accepted() {
        let (_d, path) = write("\u{feff}{\"prompt\": \"2+2=\", \"answer\": \"4\"}\n");
        let t = Dataset::new(&DatasetConfig { path }).unwrap();
        assert_eq!(t.len(), 1);
        assert_eq!(t.problems[0].prompt, "2+2=");
    }

    #[test]
    fn longest_prompt_and_answer_name_their_line() {
        let (_d, path) = write(
            "{\"prompt\": \"a\", \"answer\": \"long answer\"}\n\n{\"prompt\": \"longer\", \"answer\": \"b\"}\n",
        );
        let t = Dataset::new(&DatasetConfig { path: path.clone() }).unwrap();
        let p = path.display().to_string();
        assert_eq!(t.longest_origin(false), Some((p.clone(), 3)));
        assert_eq!(t.longest_origin(true), Some((p, 1)));
    }

    #[test]
    fn too_few_evaluation_prompts_explain_the_partition() {
        let text: String = (0..4)
            .map(|i| format!("{{\"prompt\": \"q{i}\", \"answer\": \"{i}\"}}\n"))
            .collect();
        let (_d, path) = write(&text);
        let t = Dataset::new(&DatasetConfig { path }).unwrap();
        let e = crate::tasks::TaskSplit::new(Box::new(t), 1, 8)
            .err()
            .unwrap()
            .to_string();
        assert!(
            e.contains("1/5")
                && e.contains("evaluation partition")
                && e.contains("eval.heldout_size"),
            "{e}"
        );
    }

    #[test]
    fn bad_files_name_the_file_and_line() {
        for (text, want) in [
            ("{\"prompt\": \"a\"}\n", "data.jsonl:1: missing \"answer\""),
            (
                "{\"prompt\": \"a\", \"answer\": \"b\"}\nnot json\n",
                "data.jsonl:2: not JSON",
            ),
            ("[1, 2]\n", "data.jsonl:1: expected a JSON object"),
            (
                "{\"prompt\": 3, \"answer\": \"b\"}\n",
                "\"prompt\" must be a string, found 3",
            ),
            ("\n\n", "no problems"),
        ] {
            let (_d, path) = write(text);
            let e = Dataset::new(&DatasetConfig { path })
                .unwrap_err()
                .to_string();
            assert!(e.contains(want), "{e} lacks {want}");
        }
        let e = Dataset::new(&DatasetConfig {
            path: "/nonexistent/x.jsonl".into(),
        })
        .unwrap_err();
        assert!(e.to_string().contains("/nonexistent/x.jsonl"), "{e}");
    }
}
