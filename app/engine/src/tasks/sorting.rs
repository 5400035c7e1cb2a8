//! Sorting: prompt `"sort 5 2 9:"` (or `"desc 5 2 9:"`), answer `"2 5 9"` (or `"9 5 2"`).

use super::{digits, Problem, SortingConfig, Task, TaskConfig, TaskError, Verdict};
use rand::Rng;
use rand_chacha::ChaCha8Rng;

/// The sorting task (built from [`SortingConfig`]).
#[derive(Clone, Debug)]
pub struct Sorting {
    min_len: usize,
    max_len: usize,
    max_value: u32,
    descending: bool,
}

fn join(xs: &[u32]) -> String {
    xs.iter().map(u32::to_string).collect::<Vec<_>>().join(" ")
}

impl Sorting {
    /// Validate `config` and build the task.
    pub fn new(config: &SortingConfig) -> Result<Self, TaskError> {
        TaskConfig::Sorting(config.clone()).check()?;
        Ok(Sorting {
            min_len: config.min_len,
            max_len: config.max_len,
            max_value: config.max_value as u32,
            descending: config.descending,
        })
    }
}

/// Parse space-separated non-negative integers; `None` if empty or any token is not one.
fn parse_list(s: &str) -> Option<Vec<u32>> {
    let list = s
        .split_whitespace()
        .map(|t| {
            if t.bytes().all(|b| b.is_ascii_digit()) {
                t.parse().ok()
            } else {
                None
            }
        })
        .collect::<Option<Vec<u32>>>()?;
    (!list.is_empty()).then_some(list)
}

impl Task for Sorting {
    fn name(&self) -> &'static str {
        "sorting"
    }

    fn generate(&self, rng: &mut ChaCha8Rng) -> Problem {
        let len = rng.random_range(self.min_len..=self.max_len);
        let values: Vec<u32> = (0..len)
            .map(|_| rng.random_range(0..=self.max_value))
            .collect();
        let mut sorted = values.clone();
        sorted.sort_unstable();
        if self.descending {
            sorted.reverse();
        }
        let word = if self.descending { "desc" } else { "sort" };
        Problem {
            prompt: format!("{word} {}:", join(&values)),
            answer: join(&sorted),
            meta: serde_json::json!({ "values": values, "descending": self.descending }),
        }
    }

    fn verify(&self, problem: &Problem, completion: &str) -> Verdict {
        let got = completion.trim();
        let Some(list) = parse_list(got) else {
            return Verdict::fail("not a list of integers");
        };
        match parse_list(&problem.answer) {
            Some(expected) if expected == list => Verdict::pass("correct"),
            Some(expected) => Verdict::fail(format!("expected {}, got {got}", join(&expected))),
            None => Verdict::fail(format!("malformed reference answer {:?}", problem.answer)),
        }
    }

    fn max_answer_chars(&self) -> usize {
        self.max_len * (digits(self.max_value.into()) + 1) - 1
    }

    fn max_prompt_chars(&self) -> usize {
        "sort ".len() + self.max_answer_chars() + 1
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::tasks::test_util::check_task;

    fn task(c: SortingConfig) -> Sorting {
        Sorting::new(&c).unwrap()
    }

    #[test]
    fn generated_problems_verify() {
        // The prompt's own (unsorted) order is wrong unless already sorted; append a value to be sure.
        let wrong = |p: &Problem| format!("{} 0", p.answer);
        check_task(&task(SortingConfig::default()), wrong);
        check_task(
            &task(SortingConfig {
                min_len: 8,
                max_len: 8,
                max_value: 99,
                descending: true,
            }),
            wrong,
        );
        check_task(
            &task(SortingConfig {
                min_len: 2,
                max_len: 2,
                max_value: 1,
                descending: false,
            }),
            wrong,
        );
    }

    #[test]
    fn verify_reasons() {
        let t = task(SortingConfig::default());
        let mut rng = rand::SeedableRng::seed_from_u64(5);
        let p = t.generate(&mut rng);
        assert!(
            p.prompt.starts_with("sort ") && p.prompt.ends_with(':'),
            "{p:?}"
        );
        let p = Problem {
            prompt: "sort 5 2 9:".into(),
            answer: "2 5 9".into(),
            meta: serde_json::json!({}),
        };
        assert_eq!(t.verify(&p, " 2 5 9\n"), Verdict::pass("correct"));
        assert_eq!(
            t.verify(&p, "2 9 5"),
            Verdict::fail("expected 2 5 9, got 2 9 5")
        );
        assert_eq!(
            t.verify(&p, "2 5"),
            Verdict::fail("expected 2 5 9, got 2 5")
        );
        assert_eq!(
            t.verify(&p, "2 5 x"),
            Verdict::fail("not a list of integers")
        );
        assert_eq!(
            t.verify(&p, "2,5,9"),
            Verdict::fail("not a list of integers")
        );
        assert_eq!(
            t.verify(&p, "-2 5 9"),
            Verdict::fail("not a list of integers")
        );
        assert_eq!(t.verify(&p, ""), Verdict::fail("not a list of integers"));
    }

    #[test]
    fn descending_prompt_and_answer() {
        let t = task(SortingConfig {
            descending: true,
            ..Default::default()
        });
        let mut rng = rand::SeedableRng::seed_from_u64(5);
        let p = t.generate(&mut rng);
        assert!(p.prompt.starts_with("desc "), "{p:?}");
        let list = parse_list(&p.answer).unwrap();
        assert!(list.windows(2).all(|w| w[0] >= w[1]), "{p:?}");
    }
}
