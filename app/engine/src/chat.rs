//! Chat templates: the Jinja `chat_template` of a model folder, rendered with minijinja the way
//! `transformers`' `apply_chat_template` renders it with jinja2.
//!
//! `transformers` compiles the template in an `ImmutableSandboxedEnvironment` with `trim_blocks`,
//! `lstrip_blocks` and the loop-controls extension, a `tojson` that is Python's `json.dumps`
//! (`", "` / `": "` separators, non-ASCII kept, no HTML escaping) and the globals
//! `raise_exception` and `strftime_now`; the tokenizer's special-token strings are variables. The
//! same is set up here, with Python's string/list/dict methods from `minijinja-contrib`'s pycompat
//! (`.strip()`, `.split()`, `.startswith()`, `.items()`, …).
//!
//! Where the template comes from, as `transformers` 5 reads it: `chat_template.jinja` next to
//! `tokenizer_config.json` wins; otherwise `tokenizer_config.json`'s `chat_template`, a string or a
//! list of `{name, template}` (the one named `default` is used).
//!
//! Reproducibility: the calendar never changes a prompt. `date_string` is always
//! [`DATE_STRING`] (the Llama 3.1 templates' own fallback) and `strftime_now` formats that same
//! fixed day, so prompts and their token counts are the same on every run.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use minijinja::value::{Kwargs, Value, ValueKind};
use minijinja::{Environment, Error, ErrorKind};
use serde_json::Value as Json;

use crate::error::{EngineError, Result};

/// The day every prompt is rendered on: `date_string`, and what `strftime_now` formats.
pub const DATE_STRING: &str = "26 Jul 2024";

/// The file that overrides `tokenizer_config.json`'s `chat_template`.
pub const TEMPLATE_FILE: &str = "chat_template.jinja";

/// Instructions one render may execute before it is stopped (a runaway template is an error,
/// never a hang). The real templates use under 1 % of it on a long multi-turn chat.
const FUEL: u64 = 5_000_000;

/// The special-token strings a template sees (`bos_token`, …), as `tokenizer_config.json` names them.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct SpecialTokens {
    /// `bos_token`.
    pub bos: Option<String>,
    /// `eos_token`.
    pub eos: Option<String>,
    /// `unk_token`.
    pub unk: Option<String>,
    /// `pad_token`.
    pub pad: Option<String>,
}

/// How one conversation is rendered.
#[derive(Clone, Debug)]
pub struct RenderOptions {
    /// Ends the text with the opening of an assistant turn (what a prompt for generation needs).
    pub add_generation_prompt: bool,
    /// Qwen3's `enable_thinking`: `false` makes the template open an empty `<think></think>`.
    /// Templates that do not use it ignore it.
    pub enable_thinking: bool,
    /// Tool descriptions (`tools`), `None` for none.
    pub tools: Option<Value>,
}

impl Default for RenderOptions {
    fn default() -> Self {
        Self {
            add_generation_prompt: true,
            enable_thinking: true,
            tools: None,
        }
    }
}

/// A compiled chat template.
#[derive(Clone)]
pub struct ChatTemplate {
    env: Arc<Environment<'static>>,
    source: Arc<str>,
    origin: PathBuf,
    specials: SpecialTokens,
}

impl std::fmt::Debug for ChatTemplate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChatTemplate")
            .field("origin", &self.origin)
            .field("chars", &self.source.chars().count())
            .field("specials", &self.specials)
            .finish()
    }
}

/// One message of a conversation.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Message<'a> {
    /// `system`, `user`, `assistant` or `tool`.
    pub role: &'a str,
    /// The text.
    pub content: &'a str,
}

impl ChatTemplate {
    /// Compiles `source`; `origin` is the file it came from (named by every error).
    pub fn new(source: String, origin: PathBuf, specials: SpecialTokens) -> Result<Self> {
        let mut env = Environment::new();
        env.set_trim_blocks(true);
        env.set_lstrip_blocks(true);
        env.set_fuel(Some(FUEL));
        env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
        env.add_filter("tojson", tojson);
        env.add_function("raise_exception", raise_exception);
        env.add_function("strftime_now", strftime_now);
        env.add_template_owned("chat_template", source.clone())
            .map_err(|e| EngineError::model(&origin, format!("chat template: {}", describe(&e))))?;
        Ok(Self {
            env: Arc::new(env),
            source: source.into(),
            origin,
            specials,
        })
    }

    /// The template of a model folder: `chat_template.jinja`, else `tokenizer_config.json`'s
    /// `chat_template` (`tc`, already read by the caller); `None` when the folder has neither.
    pub fn from_folder(
        dir: &Path,
        tc: Option<&(PathBuf, Json)>,
        specials: SpecialTokens,
    ) -> Result<Option<Self>> {
        let file = dir.join(TEMPLATE_FILE);
        match std::fs::read_to_string(&file) {
            Ok(source) => return Self::new(source, file, specials).map(Some),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(EngineError::io(&file, e)),
        }
        let Some((path, cfg)) = tc else {
            return Ok(None);
        };
        let source = match cfg.get("chat_template") {
            None | Some(Json::Null) => return Ok(None),
            Some(Json::String(s)) => s.clone(),
            Some(Json::Array(list)) => named_default(list).ok_or_else(|| {
                EngineError::model(
                    path,
                    "chat_template is a list without an entry {\"name\": \"default\", \
                     \"template\": \"…\"}",
                )
            })?,
            Some(other) => {
                return Err(EngineError::model(
                    path,
                    format!(
                        "chat_template = {} is invalid: expected a template string or a list \
                         of {{name, template}}",
                        short(other)
                    ),
                ))
            }
        };
        Self::new(source, path.clone(), specials).map(Some)
    }

    /// The template text.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// The file the template was read from.
    pub fn origin(&self) -> &Path {
        &self.origin
    }

    /// The special-token strings the template sees.
    pub fn specials(&self) -> &SpecialTokens {
        &self.specials
    }

    /// Renders a conversation (`messages`: a list of `{role, content, …}` maps).
    pub fn render(&self, messages: Value, opts: &RenderOptions) -> Result<String> {
        let tmpl = self
            .env
            .get_template("chat_template")
            .map_err(|e| self.error(&e))?;
        let s = &self.specials;
        let ctx = minijinja::context! {
            messages,
            add_generation_prompt => opts.add_generation_prompt,
            enable_thinking => opts.enable_thinking,
            tools => opts.tools.clone(),
            date_string => DATE_STRING,
            bos_token => s.bos.clone(),
            eos_token => s.eos.clone(),
            unk_token => s.unk.clone(),
            pad_token => s.pad.clone(),
        };
        tmpl.render(ctx).map_err(|e| self.error(&e))
    }

    /// Renders the prompt of one problem: an optional system message, then the user's text,
    /// then the opening of the assistant's turn.
    pub fn render_prompt(
        &self,
        system: Option<&str>,
        user: &str,
        enable_thinking: bool,
    ) -> Result<String> {
        let mut messages = Vec::with_capacity(2);
        if let Some(content) = system {
            messages.push(Message {
                role: "system",
                content,
            });
        }
        messages.push(Message {
            role: "user",
            content: user,
        });
        let opts = RenderOptions {
            add_generation_prompt: true,
            enable_thinking,
            tools: None,
        };
        self.render(Value::from_serialize(&messages), &opts)
    }

    fn error(&self, e: &Error) -> EngineError {
        EngineError::model(
            &self.origin,
            format!("chat template failed: {}", describe(e)),
        )
    }
}

/// The `template` of the entry named `default` in a list of `{name, template}`.
fn named_default(list: &[Json]) -> Option<String> {
    list.iter().find_map(|e| {
        (e.get("name")?.as_str()? == "default")
            .then(|| e.get("template")?.as_str().map(str::to_string))?
    })
}

/// A JSON value, cut short for an error message.
fn short(v: &Json) -> String {
    let s = v.to_string();
    match s.char_indices().nth(60) {
        Some((i, _)) => format!("{}…", &s[..i]),
        None => s,
    }
}

/// A minijinja error with its line and its causes.
fn describe(e: &Error) -> String {
    let mut msg = match e.kind() {
        ErrorKind::InvalidOperation if e.detail().is_some() => {
            e.detail().unwrap_or_default().to_string()
        }
        _ => e.to_string(),
    };
    if let Some(line) = e.line() {
        if !msg.contains("line") {
            msg = format!("{msg} (line {line})");
        }
    }
    let mut cause = std::error::Error::source(e);
    while let Some(c) = cause {
        msg = format!("{msg}: {c}");
        cause = c.source();
    }
    msg
}

/// `raise_exception(message)`: the template refuses the conversation.
fn raise_exception(message: String) -> std::result::Result<Value, Error> {
    Err(Error::new(ErrorKind::InvalidOperation, message))
}

const MONTHS: [&str; 12] = [
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
];

/// `strftime_now(format)` on the fixed day of [`DATE_STRING`] (Friday 26 July 2024, 00:00:00).
fn strftime_now(format: String) -> std::result::Result<Value, Error> {
    let (year, month, day, weekday, yday) = (2024, 7usize, 26, "Friday", 208);
    let mut out = String::new();
    let mut chars = format.chars();
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        let mut code = chars.next();
        // glibc's "%-d": no padding.
        let pad = code != Some('-');
        if !pad {
            code = chars.next();
        }
        let num = |n: u32, width: usize| match pad {
            true => format!("{n:0width$}"),
            false => n.to_string(),
        };
        match code {
            Some('d') => out += &num(day, 2),
            Some('e') => out += &format!("{day:>2}"),
            Some('m') => out += &num(month as u32, 2),
            Some('Y') => out += &year.to_string(),
            Some('y') => out += &num(year % 100, 2),
            Some('b') | Some('h') => out += &MONTHS[month - 1][..3],
            Some('B') => out += MONTHS[month - 1],
            Some('a') => out += &weekday[..3],
            Some('A') => out += weekday,
            Some('j') => out += &num(yday, 3),
            Some('H') | Some('M') | Some('S') | Some('I') => out += &num(0, 2),
            Some('p') => out += "AM",
            Some('%') => out.push('%'),
            other => {
                return Err(Error::new(
                    ErrorKind::InvalidOperation,
                    format!(
                        "strftime_now: format code %{} is not supported",
                        other.map(String::from).unwrap_or_default()
                    ),
                ))
            }
        }
    }
    Ok(Value::from(out))
}

/// Python's `json.dumps(value, ensure_ascii=False, indent=…, separators=…, sort_keys=…)`, as
/// `transformers` registers `tojson`. Maps keep their order (the template's input order).
fn tojson(value: &Value, kwargs: Kwargs) -> std::result::Result<Value, Error> {
    let indent: Option<Value> = kwargs.get("indent")?;
    let sort_keys = kwargs.get::<Option<bool>>("sort_keys")?.unwrap_or(false);
    let separators: Option<Vec<String>> = kwargs.get("separators")?;
    // Jinja's own tojson has ensure_ascii; transformers' ignores nothing else.
    let _: Option<bool> = kwargs.get("ensure_ascii")?;
    kwargs.assert_all_used()?;
    let indent = match indent {
        None => None,
        Some(v) if v.is_none() => None,
        Some(v) => match v.kind() {
            ValueKind::Number => Some(" ".repeat(usize::try_from(v)?)),
            ValueKind::String => Some(v.as_str().unwrap_or_default().to_string()),
            _ => {
                return Err(Error::new(
                    ErrorKind::InvalidOperation,
                    "tojson: indent must be a number or a string",
                ))
            }
        },
    };
    let (item, key) = match (&separators, &indent) {
        (Some(s), _) if s.len() == 2 => (s[0].clone(), s[1].clone()),
        (Some(_), _) => {
            return Err(Error::new(
                ErrorKind::InvalidOperation,
                "tojson: separators must be a pair (item, key)",
            ))
        }
        (None, None) => (", ".into(), ": ".into()),
        (None, Some(_)) => (",".into(), ": ".into()),
    };
    let style = JsonStyle {
        indent,
        item,
        key,
        sort_keys,
    };
    let mut out = String::new();
    style.write(value, 0, &mut out)?;
    Ok(Value::from_safe_string(out))
}

struct JsonStyle {
    indent: Option<String>,
    item: String,
    key: String,
    sort_keys: bool,
}

impl JsonStyle {
    fn newline(&self, level: usize, out: &mut String) {
        if let Some(ind) = &self.indent {
            out.push('\n');
            for _ in 0..level {
                out.push_str(ind);
            }
        }
    }

    fn write(&self, v: &Value, level: usize, out: &mut String) -> std::result::Result<(), Error> {
        if level > 64 {
            return Err(Error::new(
                ErrorKind::InvalidOperation,
                "tojson: nested deeper than 64 levels",
            ));
        }
        match v.kind() {
            ValueKind::Undefined | ValueKind::None => out.push_str("null"),
            ValueKind::Bool => out.push_str(if v.is_true() { "true" } else { "false" }),
            ValueKind::Number => out.push_str(&python_number(v)),
            ValueKind::String => out.push_str(&json_string(v.as_str().unwrap_or_default())),
            ValueKind::Seq | ValueKind::Iterable => {
                let items: Vec<Value> = v.try_iter()?.collect();
                self.container(('[', ']'), items.len(), level, out, |i, out| {
                    self.write(&items[i], level + 1, out)
                })?;
            }
            ValueKind::Map => {
                let mut keys: Vec<Value> = v.try_iter()?.collect();
                if self.sort_keys {
                    keys.sort();
                }
                self.container(('{', '}'), keys.len(), level, out, |i, out| {
                    let k = &keys[i];
                    let name = match k.as_str() {
                        Some(s) => s.to_string(),
                        None => k.to_string(),
                    };
                    out.push_str(&json_string(&name));
                    out.push_str(&self.key);
                    self.write(&v.get_item(k)?, level + 1, out)
                })?;
            }
            other => {
                return Err(Error::new(
                    ErrorKind::InvalidOperation,
                    format!("tojson: a {other} value is not JSON"),
                ))
            }
        }
        Ok(())
    }

    fn container(
        &self,
        (open, close): (char, char),
        n: usize,
        level: usize,
        out: &mut String,
        mut each: impl FnMut(usize, &mut String) -> std::result::Result<(), Error>,
    ) -> std::result::Result<(), Error> {
        out.push(open);
        if n == 0 {
            out.push(close);
            return Ok(());
        }
        for i in 0..n {
            if i > 0 {
                out.push_str(&self.item);
            }
            self.newline(level + 1, out);
            each(i, out)?;
        }
        self.newline(level, out);
        out.push(close);
        Ok(())
    }
}

/// A JSON string as Python writes it with `ensure_ascii=False` (the escapes serde_json writes).
fn json_string(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_else(|_| "\"\"".into())
}

/// A number as Python's `json.dumps` writes it: integers as they are, floats with a `.0` when
/// whole, `NaN`/`Infinity` spelt as Python spells them.
fn python_number(v: &Value) -> String {
    if v.is_integer() {
        return v.to_string();
    }
    let f = f64::try_from(v.clone()).unwrap_or(f64::NAN);
    if f.is_nan() {
        "NaN".into()
    } else if f.is_infinite() {
        if f > 0.0 { "Infinity" } else { "-Infinity" }.into()
    } else {
        // Python's repr: shortest round-trip digits, exponent form outside [1e-4, 1e16).
        let a = f.abs();
        if a != 0.0 && !(1e-4..1e16).contains(&a) {
            let s = format!("{f:e}");
            let (m, e) = s.split_once('e').unwrap_or((&s, "0"));
            let exp: i32 = e.parse().unwrap_or(0);
            format!("{m}e{}{:02}", if exp < 0 { '-' } else { '+' }, exp.abs())
        } else {
            let s = format!("{f}");
            if s.contains('.') {
                s
            } else {
                format!("{s}.0")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tmpl(src: &str) -> ChatTemplate {
        ChatTemplate::new(src.into(), "t.jinja".into(), SpecialTokens::default()).unwrap()
    }

    fn json(text: &str) -> Value {
        serde_json::from_str::<Value>(text).unwrap()
    }

    fn render_with(src: &str, messages: &str) -> String {
        tmpl(src)
            .render(json(messages), &RenderOptions::default())
            .unwrap()
    }

    #[test]
    fn tojson_is_python_json_dumps() {
        let m = r#"[{"b": 1, "a": "x <y> & 'z' é", "c": [1.5, true, null, {}], "d": 1e-7}]"#;
        assert_eq!(
            render_with("{{ messages[0] | tojson }}", m),
            r#"{"b": 1, "a": "x <y> & 'z' é", "c": [1.5, true, null, {}], "d": 1e-07}"#
        );
        assert_eq!(
            render_with("{{ messages[0] | tojson(sort_keys=true) }}", m),
            r#"{"a": "x <y> & 'z' é", "b": 1, "c": [1.5, true, null, {}], "d": 1e-07}"#
        );
        assert_eq!(
            render_with("{{ messages[0].c | tojson(indent=2) }}", m),
            "[\n  1.5,\n  true,\n  null,\n  {}\n]"
        );
        assert_eq!(
            render_with("{{ 2.0 | tojson }} {{ \"a\\nb\" | tojson }}", "[]"),
            r#"2.0 "a\nb""#
        );
    }

    #[test]
    fn blocks_are_trimmed_like_transformers() {
        let src = "{% for m in messages %}\n    {% if m.role == 'user' %}\n[{{ m.content.strip() }}]\n    {% endif %}\n{% endfor %}";
        assert_eq!(
            render_with(src, r#"[{"role": "user", "content": " hi "}]"#),
            "[hi]\n"
        );
    }

    #[test]
    fn raise_exception_is_an_error_naming_the_file() {
        let e = tmpl("{{ raise_exception('Only user and assistant roles') }}")
            .render(json("[]"), &RenderOptions::default())
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("t.jinja") && e.contains("Only user and assistant roles"),
            "{e}"
        );
    }

    #[test]
    fn the_date_is_fixed() {
        let t = tmpl(
            "{{ date_string }}|{{ strftime_now('%d %b %Y') }}|{{ strftime_now('%-d %B %y, %A') }}",
        );
        assert_eq!(
            t.render(json("[]"), &RenderOptions::default()).unwrap(),
            "26 Jul 2024|26 Jul 2024|26 July 24, Friday"
        );
        assert!(tmpl("{{ strftime_now('%Z') }}")
            .render(json("[]"), &RenderOptions::default())
            .is_err());
    }

    #[test]
    fn bad_templates_are_errors_not_panics() {
        for src in ["{% for %}", "{{ messages[", "{% if x %}", "{{ 1 + }}"] {
            let e = ChatTemplate::new(src.into(), "bad.jinja".into(), SpecialTokens::default())
                .unwrap_err()
                .to_string();
            assert!(
                e.contains("bad.jinja") && e.contains("chat template"),
                "{e}"
            );
        }
        // A runaway loop runs out of fuel instead of hanging.
        let e = tmpl(
            "{% for i in range(100000) %}{% for j in range(100000) %}x{% endfor %}{% endfor %}",
        )
        .render(json("[]"), &RenderOptions::default())
        .unwrap_err()
        .to_string();
        assert!(e.contains("fuel"), "{e}");
        // Undefined attributes of undefined values are errors, as in jinja2.
        assert!(tmpl("{{ nothing.attr.deeper }}")
            .render(json("[]"), &RenderOptions::default())
            .is_err());
    }

    #[test]
    fn folder_forms() {
        let dir = tempfile::tempdir().unwrap();
        let tc = |v: Json| (dir.path().join("tokenizer_config.json"), v);
        let specials = SpecialTokens::default();
        let read = |v: Json| ChatTemplate::from_folder(dir.path(), Some(&tc(v)), specials.clone());
        assert!(read(serde_json::json!({})).unwrap().is_none());
        let t = read(serde_json::json!({"chat_template": "A{{ messages|length }}"}))
            .unwrap()
            .unwrap();
        assert_eq!(
            t.render(json("[1]"), &RenderOptions::default()).unwrap(),
            "A1"
        );
        let t = read(serde_json::json!({"chat_template": [
            {"name": "tool_use", "template": "T"}, {"name": "default", "template": "D"}]}))
        .unwrap()
        .unwrap();
        assert_eq!(t.source(), "D");
        let e = read(serde_json::json!({"chat_template": [{"name": "tool_use", "template": "T"}]}))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("tokenizer_config.json") && e.contains("default"),
            "{e}"
        );
        let e = read(serde_json::json!({"chat_template": 3}))
            .unwrap_err()
            .to_string();
        assert!(e.contains("chat_template = 3"), "{e}");
        // chat_template.jinja overrides the JSON field.
        std::fs::write(dir.path().join(TEMPLATE_FILE), "J").unwrap();
        let t = read(serde_json::json!({"chat_template": "A"}))
            .unwrap()
            .unwrap();
        assert_eq!(
            (t.source(), t.origin()),
            ("J", dir.path().join(TEMPLATE_FILE).as_path())
        );
    }
}
