//! Integer arithmetic: prompt `"12+34="`, answer `"46"`.

use super::{parse_ops, ArithmeticConfig, Problem, Task, TaskConfig, TaskError, Verdict};
use rand::Rng;
use rand_chacha::ChaCha8Rng;

/// The arithmetic task (built from [`ArithmeticConfig`]).
#[derive(Clone, Debug)]
pub struct Arithmetic {
    min_digits: u32,
    max_digits: u32,
    ops: Vec<char>,
    allow_negative: bool,
}

impl Arithmetic {
    /// Validate `config` and build the task.
    pub fn new(config: &ArithmeticConfig) -> Result<Self, TaskError> {
        TaskConfig::Arithmetic(config.clone()).check()?;
        Ok(Arithmetic {
            min_digits: config.min_digits as u32,
            max_digits: config.max_digits as u32,
            ops: parse_ops(&config.ops)?,
            allow_negative: config.allow_negative,
        })
    }

    fn operand(&self, rng: &mut ChaCha8Rng) -> i64 {
        let d = rng.random_range(self.min_digits..=self.max_digits);
        let lo = if d == 1 { 0 } else { 10i64.pow(d - 1) };
        rng.random_range(lo..10i64.pow(d))
    }
}

/// Parse `[-]digits` (nothing else); `None` if the text is not of that form.
fn parse_int(s: &str) -> Option<Result<i64, ()>> {
    let digits = s.strip_prefix('-').unwrap_or(s);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some(s.parse::<i64>().map_err(|_| ()))
}

impl Task for Arithmetic {
    fn name(&self) -> &'static str {
        "arithmetic"
    }

    fn generate(&self, rng: &mut ChaCha8Rng) -> Problem {
        let op = self.ops[rng.random_range(0..self.ops.len())];
        let (mut a, mut b) = (self.operand(rng), self.operand(rng));
        if op == '-' && !self.allow_negative && a < b {
            std::mem::swap(&mut a, &mut b);
        }
        let result = match op {
            '+' => a + b,
            '-' => a - b,
            _ => a * b,
        };
        Problem {
            prompt: format!("{a}{op}{b}="),
            answer: result.to_string(),
            meta: serde_json::json!({ "a": a, "b": b, "op": op.to_string() }),
        }
    }

    fn verify(&self, problem: &Problem, completion: &str) -> Verdict {
        let got = completion.trim();
        let expected = problem.answer.trim();
        match (parse_int(got), parse_int(expected)) {
            (None, _) => Verdict::fail(format!("not an integer: {got:?}")),
            (_, None) | (_, Some(Err(()))) => {
                Verdict::fail(format!("malformed reference answer {expected:?}"))
            }
            (Some(Ok(g)), Some(Ok(e))) if g == e => Verdict::pass(format!("correct: {e}")),
            (Some(_), Some(Ok(e))) => Verdict::fail(format!("expected {e}, got {got}")),
        }
    }

    fn max_answer_chars(&self) -> usize {
        let d = self.max_digits as usize;
        if self.ops.contains(&'*') {
            2 * d
        } else {
            d + 1
        }
    }

    fn max_prompt_chars(&self) -> usize {
        2 * self.max_digits as usize + 2
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::tasks::test_util::check_task;

    fn task(c: ArithmeticConfig) -> Arithmetic {
        Arithmetic::new(&c).unwrap()
    }

    #[test]
    fn generated_problems_verify() {
        let wrong = |p: &Problem| (p.answer.parse::<i64>().unwrap() + 1).to_string();
        check_task(&task(ArithmeticConfig::default()), wrong);
        check_task(
            &task(ArithmeticConfig {
                min_digits: 4,
                max_digits: 4,
                ops: "+-*".into(),
                ..Default::default()
            }),
            wrong,
        );
        check_task(
            &task(ArithmeticConfig {
                max_digits: 3,
                ops: "-*".into(),
                ..Default::default()
            }),
            wrong,
        );
    }

    #[test]
    fn no_negative_results_when_disallowed() {
        let t = task(ArithmeticConfig {
            ops: "-".into(),
            allow_negative: false,
            ..Default::default()
        });
        let mut rng = rand::SeedableRng::seed_from_u64(3);
        for _ in 0..200 {
            let p = t.generate(&mut rng);
            assert!(!p.answer.starts_with('-'), "{p:?}");
            let (a, b) = (p.meta["a"].as_i64().unwrap(), p.meta["b"].as_i64().unwrap());
            assert_eq!((a - b).to_string(), p.answer);
            assert_eq!(p.prompt, format!("{a}-{b}="));
        }
    }

    #[test]
    fn verify_reasons() {
        let t = task(ArithmeticConfig::default());
        let p = Problem {
            prompt: "12+34=".into(),
            answer: "46".into(),
            meta: serde_json::json!({}),
        };
        assert_eq!(t.verify(&p, " 46\n"), Verdict::pass("correct: 46"));
        assert_eq!(t.verify(&p, "47"), Verdict::fail("expected 46, got 47"));
        assert_eq!(t.verify(&p, "4x"), Verdict::fail("not an integer: \"4x\""));
        assert_eq!(t.verify(&p, ""), Verdict::fail("not an integer: \"\""));
        assert_eq!(t.verify(&p, "-"), Verdict::fail("not an integer: \"-\""));
        assert!(!t.verify(&p, "99999999999999999999999").passed);
        let n = Problem {
            answer: "-7".into(),
            ..p
        };
        assert!(t.verify(&n, "-7").passed);
        assert!(!t.verify(&n, "7").passed);
    }
}
