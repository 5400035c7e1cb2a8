//! Countdown: prompt `"3 5 7>22:"` (numbers, `>`, target, `:`); answer is any expression over the
//! given numbers with `+ - *` and parentheses that evaluates to the target, e.g. `"3*5+7"`.

use super::{digits, parse_ops, CountdownConfig, Problem, Task, TaskConfig, TaskError, Verdict};
use rand::seq::SliceRandom;
use rand::Rng;
use rand_chacha::ChaCha8Rng;

/// The countdown task (built from [`CountdownConfig`]).
#[derive(Clone, Debug)]
pub struct Countdown {
    numbers: usize,
    max_number: i64,
    ops: Vec<char>,
    use_all: bool,
}

/// Largest target the generator produces.
const MAX_TARGET: i64 = 999;
/// Redraws before the generator falls back to an all-ones problem (practically unreachable).
const MAX_REDRAWS: usize = 100_000;

/// An expression tree (generation only).
enum Expr {
    Num(i64),
    Bin(char, Box<Expr>, Box<Expr>),
}

fn prec(op: char) -> u8 {
    if op == '*' {
        2
    } else {
        1
    }
}

impl Expr {
    /// Random binary tree over `leaves` (in order) with operators from `ops`.
    fn random(leaves: &[i64], ops: &[char], rng: &mut ChaCha8Rng) -> Expr {
        if leaves.len() == 1 {
            return Expr::Num(leaves[0]);
        }
        let split = rng.random_range(1..leaves.len());
        let op = ops[rng.random_range(0..ops.len())];
        let left = Expr::random(&leaves[..split], ops, rng);
        let right = Expr::random(&leaves[split..], ops, rng);
        Expr::Bin(op, Box::new(left), Box::new(right))
    }

    fn eval(&self) -> Option<i64> {
        match self {
            Expr::Num(n) => Some(*n),
            Expr::Bin(op, a, b) => apply(*op, a.eval()?, b.eval()?),
        }
    }

    /// Render with the minimal parentheses needed under normal precedence.
    fn render(&self, out: &mut String) {
        match self {
            Expr::Num(n) => out.push_str(&n.to_string()),
            Expr::Bin(op, a, b) => {
                a.render_child(prec(*op), false, out);
                out.push(*op);
                b.render_child(prec(*op), *op == '-', out);
            }
        }
    }

    fn render_child(&self, parent: u8, strict: bool, out: &mut String) {
        let paren = matches!(self, Expr::Bin(op, ..) if prec(*op) < parent || (strict && prec(*op) == parent));
        if paren {
            out.push('(');
        }
        self.render(out);
        if paren {
            out.push(')');
        }
    }
}

fn apply(op: char, a: i64, b: i64) -> Option<i64> {
    match op {
        '+' => a.checked_add(b),
        '-' => a.checked_sub(b),
        _ => a.checked_mul(b),
    }
}

/// A parse failure at a 1-based character position.
struct ParseError(usize, String);

/// Recursive-descent parser/evaluator for `expr := term (('+'|'-') term)*`,
/// `term := atom ('*' atom)*`, `atom := number | '(' expr ')'`; spaces are skipped.
/// Evaluation is checked: overflow yields `None` for the value.
struct Parser<'a> {
    chars: Vec<char>,
    pos: usize,
    used: &'a mut Vec<i64>,
}

impl Parser<'_> {
    fn peek(&mut self) -> Option<char> {
        while self.chars.get(self.pos) == Some(&' ') {
            self.pos += 1;
        }
        self.chars.get(self.pos).copied()
    }

    fn error(&self) -> ParseError {
        match self.chars.get(self.pos) {
            Some(c) => ParseError(self.pos + 1, format!("unexpected {c:?}")),
            None => ParseError(self.pos + 1, "unexpected end of input".into()),
        }
    }

    fn expr(&mut self) -> Result<Option<i64>, ParseError> {
        let mut value = self.term()?;
        while let Some(op @ ('+' | '-')) = self.peek() {
            self.pos += 1;
            let rhs = self.term()?;
            value = value.zip(rhs).and_then(|(a, b)| apply(op, a, b));
        }
        Ok(value)
    }

    fn term(&mut self) -> Result<Option<i64>, ParseError> {
        let mut value = self.atom()?;
        while self.peek() == Some('*') {
            self.pos += 1;
            let rhs = self.atom()?;
            value = value.zip(rhs).and_then(|(a, b)| apply('*', a, b));
        }
        Ok(value)
    }

    fn atom(&mut self) -> Result<Option<i64>, ParseError> {
        match self.peek() {
            Some('(') => {
                self.pos += 1;
                let value = self.expr()?;
                if self.peek() != Some(')') {
                    return Err(self.error());
                }
                self.pos += 1;
                Ok(value)
            }
            Some(c) if c.is_ascii_digit() => {
                let start = self.pos;
                while self.chars.get(self.pos).is_some_and(|c| c.is_ascii_digit()) {
                    self.pos += 1;
                }
                let text: String = self.chars[start..self.pos].iter().collect();
                let n = text
                    .parse::<i64>()
                    .map_err(|_| ParseError(start + 1, format!("number {text} is too large")))?;
                self.used.push(n);
                Ok(Some(n))
            }
            _ => Err(self.error()),
        }
    }
}

fn times(n: usize) -> String {
    match n {
        1 => "once".into(),
        2 => "twice".into(),
        _ => format!("{n} times"),
    }
}

impl Countdown {
    /// Validate `config` and build the task.
    pub fn new(config: &CountdownConfig) -> Result<Self, TaskError> {
        TaskConfig::Countdown(config.clone()).check()?;
        Ok(Countdown {
            numbers: config.numbers,
            max_number: config.max_number as i64,
            ops: parse_ops(&config.ops)?,
            use_all: config.use_all,
        })
    }

    fn problem(numbers: &[i64], target: i64, answer: String) -> Problem {
        let list: Vec<String> = numbers.iter().map(i64::to_string).collect();
        Problem {
            prompt: format!("{}>{target}:", list.join(" ")),
            answer,
            meta: serde_json::json!({ "numbers": numbers, "target": target }),
        }
    }

    /// All ones with a right-nested chain of the first operator: always lands in 0..=4.
    fn fallback(&self) -> Problem {
        let numbers = vec![1; self.numbers];
        let mut expr = Expr::Num(1);
        for _ in 1..self.numbers {
            expr = Expr::Bin(self.ops[0], Box::new(Expr::Num(1)), Box::new(expr));
        }
        let mut answer = String::new();
        expr.render(&mut answer);
        Countdown::problem(&numbers, expr.eval().unwrap_or(0), answer)
    }

    /// Check the numbers an expression used against the given multiset.
    fn check_usage(&self, given: &[i64], used: &[i64]) -> Result<(), String> {
        let count = |xs: &[i64], n: i64| xs.iter().filter(|&&x| x == n).count();
        for &n in used {
            let (u, g) = (count(used, n), count(given, n));
            if g == 0 {
                return Err(format!("uses {n} which is not available"));
            }
            if u > g {
                return Err(format!("{n} used {} but given {}", times(u), times(g)));
            }
        }
        if self.use_all {
            if let Some(&n) = given.iter().find(|&&n| count(used, n) < count(given, n)) {
                return Err(format!("does not use {n}"));
            }
        }
        Ok(())
    }
}

impl Task for Countdown {
    fn name(&self) -> &'static str {
        "countdown"
    }

    fn generate(&self, rng: &mut ChaCha8Rng) -> Problem {
        for _ in 0..MAX_REDRAWS {
            let numbers: Vec<i64> = (0..self.numbers)
                .map(|_| rng.random_range(1..=self.max_number))
                .collect();
            let mut leaves = numbers.clone();
            leaves.shuffle(rng);
            if !self.use_all {
                leaves.truncate(rng.random_range(2..=self.numbers));
            }
            let expr = Expr::random(&leaves, &self.ops, rng);
            if let Some(target @ 0..=MAX_TARGET) = expr.eval() {
                let mut answer = String::new();
                expr.render(&mut answer);
                return Countdown::problem(&numbers, target, answer);
            }
        }
        self.fallback()
    }

    fn verify(&self, problem: &Problem, completion: &str) -> Verdict {
        let given: Option<Vec<i64>> = problem.meta["numbers"]
            .as_array()
            .and_then(|a| a.iter().map(serde_json::Value::as_i64).collect());
        let (Some(given), Some(target)) = (given, problem.meta["target"].as_i64()) else {
            return Verdict::fail("malformed problem: meta needs numbers and target");
        };
        let text = completion.trim();
        if text.is_empty() {
            return Verdict::fail("empty completion");
        }
        let mut used = Vec::new();
        let mut parser = Parser {
            chars: text.chars().collect(),
            pos: 0,
            used: &mut used,
        };
        let parsed = parser.expr().and_then(|v| match parser.peek() {
            None => Ok(v),
            Some(_) => Err(parser.error()),
        });
        let value = match parsed {
            Ok(v) => v,
            Err(ParseError(at, what)) => {
                return Verdict::fail(format!("parse error at char {at}: {what}"))
            }
        };
        if let Err(reason) = self.check_usage(&given, &used) {
            return Verdict::fail(reason);
        }
        match value {
            None => Verdict::fail("arithmetic overflow"),
            Some(v) if v == target => Verdict::pass(format!("correct: {text} = {target}")),
            Some(v) => Verdict::fail(format!("evaluates to {v}, target {target}")),
        }
    }

    fn max_answer_chars(&self) -> usize {
        // Numbers, operators and up to one parenthesis pair per operator.
        let n = self.numbers;
        n * digits(self.max_number as u64) + 3 * (n - 1)
    }

    fn max_prompt_chars(&self) -> usize {
        let n = self.numbers;
        n * digits(self.max_number as u64) + (n - 1) + 1 + digits(MAX_TARGET as u64) + 1
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::tasks::test_util::check_task;

    fn task(use_all: bool) -> Countdown {
        Countdown::new(&CountdownConfig {
            use_all,
            ..Default::default()
        })
        .unwrap()
    }

    #[test]
    fn generated_problems_verify() {
        // Appending "+1" uses an unavailable or extra number, or changes the value.
        let wrong = |p: &Problem| format!("({})+1", p.answer);
        check_task(&task(true), wrong);
        check_task(&task(false), wrong);
        for (numbers, max_number, ops) in [(4, 50, "*"), (4, 50, "-"), (2, 2, "+"), (4, 20, "+-*")]
        {
            let c = CountdownConfig {
                numbers,
                max_number,
                ops: ops.into(),
                use_all: true,
            };
            check_task(&Countdown::new(&c).unwrap(), wrong);
        }
    }

    #[test]
    fn hand_written_cases() {
        const BIG: i64 = 999_999_999;
        #[rustfmt::skip]
        let cases: &[(bool, &[i64], i64, &str, &str)] = &[
            // use_all, numbers, target, completion, expected reason
            (true, &[3, 5, 7], 22, "3*5+7", "correct: 3*5+7 = 22"),
            (true, &[2, 3, 4], 14, "2+3*4", "correct: 2+3*4 = 14"),
            (true, &[2, 3, 4], 20, "2+3*4", "evaluates to 14, target 20"),
            (true, &[2, 3, 4], 20, " (2 + 3) * 4 ", "correct: (2 + 3) * 4 = 20"),
            (true, &[2, 3, 4], 3, "4-(3-2)", "correct: 4-(3-2) = 3"),
            (true, &[2, 3, 4], 3, "4-3-2", "evaluates to -1, target 3"),
            (true, &[2, 3, 4], 24, "((2*3))*4", "correct: ((2*3))*4 = 24"),
            (true, &[3, 5, 7], 22, "5*5-3", "5 used twice but given once"),
            (true, &[3, 5, 7], 22, "8+7+3+5", "uses 8 which is not available"),
            (true, &[3, 5, 7], 22, "3*5", "does not use 7"),
            (false, &[3, 5, 7], 22, "3*5", "evaluates to 15, target 22"),
            (false, &[3, 5, 7], 15, "3*5", "correct: 3*5 = 15"),
            (true, &[5, 5, 2], 27, "5*5+2", "correct: 5*5+2 = 27"),
            (true, &[5, 5, 2], 27, "5*5+5+2", "5 used 3 times but given twice"),
            (true, &[3, 5, 7], 22, "", "empty completion"),
            (true, &[3, 5, 7], 22, "  \n", "empty completion"),
            (true, &[3, 5, 7], 22, "3*)", "parse error at char 3: unexpected ')'"),
            (true, &[3, 5, 7], 22, "3*5+7x", "parse error at char 6: unexpected 'x'"),
            (true, &[3, 5, 7], 22, "3/5+7", "parse error at char 2: unexpected '/'"),
            (true, &[3, 5, 7], 22, "-3+5+7", "parse error at char 1: unexpected '-'"),
            (true, &[3, 5, 7], 22, "(3*5+7", "parse error at char 7: unexpected end of input"),
            (true, &[3, 5, 7], 22, "3 5+7", "parse error at char 3: unexpected '5'"),
            (true, &[3, 5, 7], 22, "3*5+7=22", "parse error at char 6: unexpected '='"),
            (true, &[3, 5, 7], 22, "99999999999999999999+1",
                "parse error at char 1: number 99999999999999999999 is too large"),
            (true, &[3, 5, 7], 22, "999999999*999999999*999999999", "uses 999999999 which is not available"),
            (true, &[BIG, BIG, BIG], 1, "999999999*999999999*999999999", "arithmetic overflow"),
        ];
        for &(use_all, numbers, target, completion, want) in cases {
            let p = Countdown::problem(numbers, target, String::new());
            let v = task(use_all).verify(&p, completion);
            assert_eq!(v.reason, want, "{completion:?}");
            assert_eq!(
                (v.passed, v.score),
                if want.starts_with("correct") {
                    (true, 1.0)
                } else {
                    (false, 0.0)
                }
            );
        }
        assert_eq!(
            Countdown::problem(&[3, 5, 7], 22, String::new()).prompt,
            "3 5 7>22:"
        );
        let bad_meta = Problem {
            prompt: String::new(),
            answer: String::new(),
            meta: serde_json::json!({ "numbers": "x" }),
        };
        assert!(!task(true).verify(&bad_meta, "3*5+7").passed);
    }

    #[test]
    fn fallback_problem_is_valid() {
        for ops in ["+", "-", "*"] {
            let t = Countdown::new(&CountdownConfig {
                numbers: 4,
                ops: ops.into(),
                ..Default::default()
            })
            .unwrap();
            let p = t.fallback();
            assert!(t.verify(&p, &p.answer).passed, "{p:?}");
            assert!(
                (0..=4).contains(&p.meta["target"].as_i64().unwrap()),
                "{p:?}"
            );
        }
    }
}
