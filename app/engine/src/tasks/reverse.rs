//! String reversal with per-position partial credit: prompt `"rev 3817:"`, answer `"7183"`.

use super::{Charset, Problem, ReverseConfig, Task, TaskConfig, TaskError, Verdict};
use rand::Rng;
use rand_chacha::ChaCha8Rng;

/// The reverse task (built from [`ReverseConfig`]).
#[derive(Clone, Debug)]
pub struct Reverse {
    min_len: usize,
    max_len: usize,
    charset: Charset,
}

impl Reverse {
    /// Validate `config` and build the task.
    pub fn new(config: &ReverseConfig) -> Result<Self, TaskError> {
        TaskConfig::Reverse(config.clone()).check()?;
        Ok(Reverse {
            min_len: config.min_len,
            max_len: config.max_len,
            charset: config.charset,
        })
    }
}

impl Task for Reverse {
    fn name(&self) -> &'static str {
        "reverse"
    }

    fn generate(&self, rng: &mut ChaCha8Rng) -> Problem {
        let set = self.charset.chars();
        let len = rng.random_range(self.min_len..=self.max_len);
        let text: String = (0..len)
            .map(|_| char::from(set[rng.random_range(0..set.len())]))
            .collect();
        Problem {
            prompt: format!("rev {text}:"),
            answer: text.chars().rev().collect(),
            meta: serde_json::json!({ "text": text }),
        }
    }

    /// Score = positions `i < len(answer)` where the trimmed completion matches the answer, divided by
    /// `max(len(answer), len(completion))`; passed iff exact.
    fn verify(&self, problem: &Problem, completion: &str) -> Verdict {
        let got: Vec<char> = completion.trim().chars().collect();
        let want: Vec<char> = problem.answer.chars().collect();
        if got == want {
            return Verdict::pass("correct");
        }
        let hits = want.iter().zip(&got).filter(|(a, b)| a == b).count();
        let total = want.len().max(got.len());
        let score = hits as f32 / total as f32;
        Verdict {
            score,
            passed: false,
            reason: format!("{hits} of {total} positions correct (score {score:.2})"),
        }
    }

    fn max_answer_chars(&self) -> usize {
        self.max_len
    }

    fn max_prompt_chars(&self) -> usize {
        "rev :".len() + self.max_len
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::tasks::test_util::check_task;

    fn verdict(answer: &str, completion: &str) -> Verdict {
        let t = Reverse::new(&ReverseConfig::default()).unwrap();
        let p = Problem {
            prompt: String::new(),
            answer: answer.into(),
            meta: serde_json::Value::Null,
        };
        t.verify(&p, completion)
    }

    #[test]
    fn generated_problems_verify() {
        // Prepending a character shifts every position (and lengthens the answer).
        let wrong = |p: &Problem| format!("z{}", p.answer);
        for charset in [Charset::Digits, Charset::Letters, Charset::Alnum] {
            for (min_len, max_len) in [(3, 6), (1, 1), (12, 12)] {
                let t = Reverse::new(&ReverseConfig {
                    min_len,
                    max_len,
                    charset,
                })
                .unwrap();
                check_task(&t, wrong);
            }
        }
    }

    #[test]
    fn prompt_is_reversed_answer() {
        let t = Reverse::new(&ReverseConfig {
            charset: Charset::Alnum,
            ..Default::default()
        })
        .unwrap();
        let mut rng = rand::SeedableRng::seed_from_u64(11);
        let p = t.generate(&mut rng);
        let text = p
            .prompt
            .strip_prefix("rev ")
            .unwrap()
            .strip_suffix(':')
            .unwrap();
        assert_eq!(text.chars().rev().collect::<String>(), p.answer);
    }

    #[test]
    fn partial_credit() {
        assert_eq!(verdict("1234", " 1234\n"), Verdict::pass("correct"));
        let v = verdict("1234", "1294");
        assert_eq!(
            (v.score, v.passed, v.reason.as_str()),
            (0.75, false, "3 of 4 positions correct (score 0.75)")
        );
        assert_eq!(verdict("1234", "12345").score, 0.8);
        assert_eq!(verdict("1234", "123").score, 0.75);
        assert_eq!(verdict("1234", "").score, 0.0);
        assert_eq!(verdict("1234", "4321").score, 0.0);
        let v = verdict("718390", "7183");
        assert_eq!(v.reason, "4 of 6 positions correct (score 0.67)");
        assert!((v.score - 4.0 / 6.0).abs() < 1e-6);
    }
}
