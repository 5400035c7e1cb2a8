//! The spec table, validation, the JSON Schema, the presets and the README agree.
#![allow(clippy::unwrap_used)]
use super::*;

use crate::spec::{self, Default as D, KeySpec, Kind};

/// A config setting `key` (dotted) to `value`, on a base that lets every key reach its
/// range (enough steps for the longest warm-up; the paired `max_*` knob of a `min_*` one).
fn config_with(spec: &KeySpec, task: Option<&str>, value: &str, pair: bool) -> String {
    let (section, name) = spec.key.rsplit_once('.').unwrap_or(("", spec.key));
    let mut text = String::new();
    if spec.key != "steps" {
        text.push_str("steps = 1000000\n");
    }
    if section.is_empty() {
        text.push_str(&format!("{name} = {value}\n"));
        return text;
    }
    text.push_str(&format!("[{section}]\n"));
    // The other LoRA keys count only with adapters.
    if section == "model.lora" && name != "rank" {
        text.push_str("rank = 8\n");
    }
    if let Some(t) = task {
        text.push_str(&format!("name = \"{t}\"\n"));
        // A min_*/max_* pair must stay ordered: move the partner along.
        let partner = match (name.strip_prefix("min_"), name.strip_prefix("max_")) {
            (Some(rest), _) => Some(format!("max_{rest}")),
            (_, Some(rest)) => Some(format!("min_{rest}")),
            _ => None,
        };
        if let Some(p) = partner.filter(|p| pair && spec::task_key(t, p).is_some()) {
            text.push_str(&format!("{p} = {value}\n"));
        }
    }
    text.push_str(&format!("{name} = {value}\n"));
    text
}

/// Values just outside a numeric key's range.
fn outside(spec: &KeySpec) -> Vec<String> {
    let mut v = Vec::new();
    let step = |b: f64| {
        if spec.kind == Kind::Int {
            1.0
        } else {
            b.abs() * 0.01 + 1e-3
        }
    };
    if let Some(b) = spec.min {
        v.push(if b.open {
            b.value
        } else {
            b.value - step(b.value)
        });
    }
    if let Some(b) = spec.max {
        v.push(if b.open {
            b.value
        } else {
            b.value + step(b.value)
        });
    }
    let mut out: Vec<String> = v
        .into_iter()
        .filter(|x| spec.off != Some(*x))
        .map(|x| lit(spec, x))
        .collect();
    if spec.kind == Kind::Float {
        out.extend(["nan".to_string(), "inf".to_string(), "-inf".to_string()]);
    }
    out
}

fn lit(spec: &KeySpec, x: f64) -> String {
    if spec.kind == Kind::Int {
        format!("{}", x as i64)
    } else {
        format!("{x:?}")
    }
}

fn schema_accepts(schema: &jsonschema::Validator, toml_text: &str) -> bool {
    let v: toml::Value = toml::from_str(toml_text).unwrap();
    let json = serde_json::to_value(&v).unwrap();
    schema.is_valid(&json)
}

fn numeric_keys() -> Vec<(&'static KeySpec, Option<&'static str>)> {
    let run = spec::keys().map(|k| (k, None));
    let tasks = spec::TASKS
        .iter()
        .filter(|t| t.name != "dataset")
        .flat_map(|t| t.keys.iter().map(move |k| (k, Some(t.name))));
    run.chain(tasks)
        .filter(|(k, _)| k.kind.is_number())
        .collect()
}

/// The spec table, the config's validation and the JSON Schema agree on every numeric key:
/// the default is the config's default, both ends of the range are accepted, values just
/// outside (and NaN/inf) are refused by validation naming the key and by the schema.
#[test]
fn spec_table_validation_and_schema_agree_on_every_key() {
    let schema = jsonschema::validator_for(&spec::json_schema()).unwrap();
    let defaults: toml::Table = toml::Table::try_from(RunConfig::default()).unwrap();
    for (spec, task) in numeric_keys() {
        if task.is_none() {
            if let D::Num(d) = spec.default {
                let got = spec::lookup_value(&defaults, spec.key)
                    .and_then(|v| v.as_float().or(v.as_integer().map(|i| i as f64)));
                assert_eq!(
                    got,
                    Some(d),
                    "{}: table default vs RunConfig::default()",
                    spec.key
                );
            }
        }
        let mut ends: Vec<f64> = [spec.min, spec.max]
            .into_iter()
            .flatten()
            .filter(|b| !b.open)
            .map(|b| b.value)
            .collect();
        ends.extend(spec.off);
        for x in ends {
            let text = config_with(spec, task, &lit(spec, x), true);
            let ok = RunConfig::from_toml(&text);
            assert!(ok.is_ok(), "{}: {x} refused: {:?}", spec.key, ok.err());
            assert!(
                schema_accepts(&schema, &text),
                "{}: schema refuses {x}",
                spec.key
            );
        }
        for bad in outside(spec) {
            let text = config_with(spec, task, &bad, false);
            let e = RunConfig::from_toml(&text)
                .map(|_| ())
                .unwrap_err()
                .to_string();
            assert!(
                e.starts_with(&format!("{} = ", spec.key)),
                "{} = {bad}: {e}",
                spec.key
            );
            if !bad.contains("nan") && !bad.contains("inf") {
                assert!(
                    !schema_accepts(&schema, &text),
                    "{}: schema accepts {bad}",
                    spec.key
                );
            }
        }
    }
}

/// Every choice listed in the table parses, and the defaults of the whole table are the
/// config's defaults (`default-config` prints a file that reads back as the default).
#[test]
fn choices_parse_and_the_commented_default_reads_back() {
    for k in spec::keys().chain(spec::TASKS.iter().flat_map(|t| t.keys.iter())) {
        if let Kind::Choice(opts) = k.kind {
            if k.key == "task.name" {
                continue;
            }
            let task = spec::TASKS
                .iter()
                .find(|t| t.keys.contains(k))
                .map(|t| t.name);
            for o in opts {
                let text = config_with(k, task, &format!("{o:?}"), true);
                assert!(RunConfig::from_toml(&text).is_ok(), "{} = {o}", k.key);
            }
        }
    }
    assert_eq!(
        RunConfig::from_toml(&spec::default_toml()).unwrap(),
        RunConfig::default()
    );
}

/// Every preset in app/presets validates against the JSON Schema.
#[test]
fn presets_validate_against_the_schema() {
    let schema = jsonschema::validator_for(&spec::json_schema()).unwrap();
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../presets");
    let mut n = 0;
    for e in std::fs::read_dir(&dir).unwrap() {
        let p = e.unwrap().path();
        if p.extension().is_none_or(|x| x != "toml") || p.ends_with("pretrain.toml") {
            continue;
        }
        let text = std::fs::read_to_string(&p).unwrap();
        let v: toml::Value = toml::from_str(&text).unwrap();
        let json = serde_json::to_value(&v).unwrap();
        let errors: Vec<String> = schema.iter_errors(&json).map(|e| e.to_string()).collect();
        assert!(errors.is_empty(), "{}: {errors:?}", p.display());
        n += 1;
    }
    assert!(n >= 20, "only {n} presets found");
}

/// The README's config reference is the one generated from the table.
#[test]
fn readme_config_reference_is_generated_from_the_table() {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../README.md")).unwrap();
    let start =
        "<!-- config-reference:start (generated: rlvr-studio default-config --markdown) -->\n";
    let end = "<!-- config-reference:end -->";
    let a = readme
        .find(start)
        .expect("README lacks the config reference start marker")
        + start.len();
    let b = readme
        .find(end)
        .expect("README lacks the config reference end marker");
    assert!(
        readme[a..b] == spec::markdown_reference(),
        "README.md's config reference is stale: regenerate it with `rlvr-studio default-config --markdown`"
    );
}

#[test]
fn empty_config_is_the_default() {
    assert_eq!(RunConfig::from_toml("").unwrap(), RunConfig::default());
}

#[test]
fn full_round_trip() {
    let cfg = RunConfig::default();
    assert_eq!(RunConfig::from_toml(&cfg.to_toml()).unwrap(), cfg);
}

#[test]
fn unknown_keys_are_named() {
    let e = RunConfig::from_toml("[rollout]\ngroup_sise = 4\n")
        .unwrap_err()
        .to_string();
    assert!(e.contains("group_sise"), "{e}");
    let e = RunConfig::from_toml("stpes = 4\n").unwrap_err().to_string();
    assert!(e.contains("stpes"), "{e}");
}

#[test]
fn out_of_range_values_are_named() {
    for (toml, key) in [
        ("[rollout]\ngroup_size = 0", "rollout.group_size"),
        ("[optim]\nlr = 0.0", "optim.lr"),
        ("[algorithm]\nepsilon_low = 1.5", "algorithm.epsilon_low"),
        ("[rollout]\ntop_p = 1.5", "rollout.top_p"),
        (
            "[task]\nname = \"arithmetic\"\nmax_digits = 9",
            "task.max_digits",
        ),
    ] {
        let e = RunConfig::from_toml(toml).unwrap_err().to_string();
        assert!(e.contains(key), "{toml}: {e}");
    }
    let e = RunConfig::from_toml("[algorithm]\naggregation = \"sum\"")
        .unwrap_err()
        .to_string();
    assert!(e.contains("sum") && e.contains("aggregation"), "{e}");
    let e = RunConfig::from_toml("[task]\nname = \"chess\"")
        .unwrap_err()
        .to_string();
    assert!(e.contains("chess"), "{e}");
}

/// A 100 kB value or a number written out in 301 digits is shortened in the message.
#[test]
fn long_values_are_shortened_in_messages() {
    let long = "x".repeat(100_000);
    let e = RunConfig::from_toml(&format!("[algorithm]\naggregation = \"{long}\""))
        .unwrap_err()
        .to_string();
    assert!(e.starts_with("algorithm.aggregation = "), "{e}");
    assert!(
        e.len() < 400 && e.contains("characters)"),
        "{} chars",
        e.len()
    );
    let e = RunConfig::from_toml("[rollout]\ngroup_size = 1e300")
        .unwrap_err()
        .to_string();
    assert!(
        e.starts_with("rollout.group_size = ") && e.len() < 300,
        "{e}"
    );
}

/// An empty model path names the key (it used to be `: not a folder`).
#[test]
fn empty_model_path_names_the_key() {
    let e = RunConfig::from_toml("[model]\npath = \"\"")
        .unwrap_err()
        .to_string();
    assert!(e.starts_with("model.path = \"\" is invalid"), "{e}");
}

/// The chat-template keys that would be ignored without `model.chat_template` are refused.
#[test]
fn chat_keys_need_the_chat_template() {
    let e = RunConfig::from_toml("[model]\nsystem_prompt = \"Be brief.\"")
        .unwrap_err()
        .to_string();
    assert!(
        e.starts_with("model.system_prompt = \"Be brief.\" is invalid")
            && e.contains("model.chat_template = true"),
        "{e}"
    );
    let e = RunConfig::from_toml("[model]\nenable_thinking = false")
        .unwrap_err()
        .to_string();
    assert!(
        e.starts_with("model.enable_thinking = false is invalid"),
        "{e}"
    );
    let c = RunConfig::from_toml(
        "[model]\nchat_template = true\nsystem_prompt = \"Be brief.\"\nenable_thinking = false",
    )
    .unwrap();
    assert!(c.model.chat_template && !c.model.enable_thinking);
}

#[test]
fn lora_and_device_keys_are_checked() {
    let err = |t: &str| RunConfig::from_toml(t).unwrap_err().to_string();
    let e = err("[model.lora]\nalpha = 32");
    assert!(
        e.starts_with("model.lora.alpha = 32 is invalid") && e.contains("model.lora.rank = 0"),
        "{e}"
    );
    let e = err("[model.lora]\nrank = 8\ntarget_modules = [\"q_proj\", \"qkv\"]");
    assert!(
        e.starts_with("model.lora.target_modules") && e.contains("not \"qkv\""),
        "{e}"
    );
    let e = err("[model.lora]\nrank = 8\ntarget_modules = [\"all-linear\", \"q_proj\"]");
    assert!(e.contains("\"all-linear\" alone"), "{e}");
    let e = err("[model.lora]\nrank = 8\ntarget_modules = []");
    assert!(e.contains("at least one module name"), "{e}");
    let e = err("[model.lora]\nrank = 8\ndropout = 1.0");
    assert!(e.starts_with("model.lora.dropout = 1.0 is invalid"), "{e}");
    let c =
        RunConfig::from_toml("[model.lora]\nrank = 8\ntarget_modules = [\"v_proj\", \"q_proj\"]")
            .unwrap();
    assert_eq!(c.model.lora.modules().unwrap(), ["q_proj", "v_proj"]);
    for (d, want) in [
        ("auto", DeviceChoice::Auto),
        ("cpu", DeviceChoice::Cpu),
        ("cuda", DeviceChoice::Cuda(0)),
        ("cuda:3", DeviceChoice::Cuda(3)),
    ] {
        let c = RunConfig::from_toml(&format!("[model]\ndevice = \"{d}\"")).unwrap();
        assert_eq!(c.model.device_choice().unwrap(), want);
    }
    for bad in ["gpu", "cuda:x", "cuda:-1", "metal"] {
        let e = err(&format!("[model]\ndevice = \"{bad}\""));
        assert!(
            e.starts_with("model.device") && e.contains("cuda:N"),
            "{bad}: {e}"
        );
    }
}
