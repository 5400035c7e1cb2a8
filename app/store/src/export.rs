//! What the CLI (`runs export`, `runs diff`) and the GUI (Export CSV/JSONL, the config diff)
//! share: one metrics export, one samples export and one config diff, so both write the same
//! bytes for the same run.
//!
//! CSV goes through the `csv` crate (fields with commas, quotes or line breaks are quoted as
//! RFC 4180 says; records end with `\n`). JSON lines carry `"type"`, `"run_id"` and `"step"`;
//! metric names `a/b/c` become nested objects again.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;

use crate::read::StoredGroup;

/// Export formats.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExportFormat {
    /// Comma-separated values: one row per step, one column per metric (samples: one row per
    /// completion).
    Csv,
    /// One JSON object per line: `{"type":"step",...}` per step, `{"type":"group",...}` per
    /// sampled group.
    Jsonl,
}

/// A run's metrics by step, as [`crate::Store::metrics_by_step`] returns them.
pub type MetricsByStep = BTreeMap<u64, BTreeMap<String, f64>>;

fn csv_writer<W: Write>(w: W) -> csv::Writer<W> {
    csv::WriterBuilder::new()
        .terminator(csv::Terminator::Any(b'\n'))
        .from_writer(w)
}

/// Writes a run's metrics: CSV (header `step,<metric>...`, metric names sorted, an empty cell
/// where a step lacks a metric) or JSON lines (`{"type":"step","run_id":..,"step":..,...}`).
pub fn write_metrics<W: Write>(
    w: &mut W,
    fmt: ExportFormat,
    run_id: i64,
    by_step: &MetricsByStep,
) -> std::io::Result<()> {
    match fmt {
        ExportFormat::Csv => {
            let names: BTreeSet<&String> = by_step.values().flat_map(|m| m.keys()).collect();
            let mut out = csv_writer(&mut *w);
            out.write_record(std::iter::once("step").chain(names.iter().map(|n| n.as_str())))?;
            for (step, m) in by_step {
                let mut row = Vec::with_capacity(names.len() + 1);
                row.push(step.to_string());
                row.extend(
                    names
                        .iter()
                        .map(|n| m.get(*n).map_or(String::new(), |v| v.to_string())),
                );
                out.write_record(&row)?;
            }
            out.flush()?;
        }
        ExportFormat::Jsonl => {
            for (step, m) in by_step {
                let mut v = nest(m);
                v.insert("type".into(), "step".into());
                v.insert("run_id".into(), run_id.into());
                v.insert("step".into(), (*step).into());
                writeln!(w, "{}", serde_json::Value::Object(v))?;
            }
        }
    }
    Ok(())
}

/// Writes a run's sampled groups: CSV (one row per completion: step, group, prompt, answer,
/// sample, completion, reward, passed, advantage, length, truncated, components) or JSON lines
/// (one `{"type":"group",...}` object per group).
pub fn write_samples<W: Write>(
    w: &mut W,
    fmt: ExportFormat,
    run_id: i64,
    groups: &[StoredGroup],
) -> std::io::Result<()> {
    match fmt {
        ExportFormat::Csv => {
            let mut out = csv_writer(&mut *w);
            out.write_record([
                "step",
                "group",
                "prompt",
                "answer",
                "sample",
                "completion",
                "reward",
                "passed",
                "advantage",
                "length",
                "truncated",
                "components",
            ])?;
            for g in groups {
                for (i, s) in g.samples.iter().enumerate() {
                    let comps: Vec<String> = s
                        .components
                        .iter()
                        .map(|(n, v, why)| format!("{n}={v} ({why})"))
                        .collect();
                    out.write_record([
                        g.step.to_string(),
                        g.index.to_string(),
                        g.prompt.clone(),
                        g.answer.clone(),
                        i.to_string(),
                        s.completion.clone(),
                        s.reward.to_string(),
                        u8::from(s.passed).to_string(),
                        s.advantage.to_string(),
                        s.length.to_string(),
                        u8::from(s.truncated).to_string(),
                        comps.join("; "),
                    ])?;
                }
            }
            out.flush()?;
        }
        ExportFormat::Jsonl => {
            for g in groups {
                let mut v = serde_json::to_value(g)?;
                if let Some(o) = v.as_object_mut() {
                    o.insert("type".into(), "group".into());
                    o.insert("run_id".into(), run_id.into());
                }
                writeln!(w, "{v}")?;
            }
        }
    }
    Ok(())
}

/// Rebuilds nested JSON from `a/b/c` metric names (non-finite values become `null`).
fn nest(m: &BTreeMap<String, f64>) -> serde_json::Map<String, serde_json::Value> {
    fn insert(node: &mut serde_json::Map<String, serde_json::Value>, parts: &[&str], v: f64) {
        let [first, rest @ ..] = parts else {
            return;
        };
        if rest.is_empty() {
            node.insert(
                (*first).to_string(),
                serde_json::Number::from_f64(v).map_or(serde_json::Value::Null, Into::into),
            );
            return;
        }
        let e = node
            .entry((*first).to_string())
            .or_insert_with(|| serde_json::Value::Object(serde_json::Map::new()));
        if !e.is_object() {
            *e = serde_json::Value::Object(serde_json::Map::new());
        }
        if let serde_json::Value::Object(next) = e {
            insert(next, rest, v);
        }
    }
    let mut root = serde_json::Map::new();
    for (name, v) in m {
        let parts: Vec<&str> = name.split('/').collect();
        insert(&mut root, &parts, *v);
    }
    root
}

/// Flattens a TOML document into `section.key = value` pairs (values in TOML syntax); text
/// that is not TOML gives no pairs.
pub fn flat_config(text: &str) -> BTreeMap<String, String> {
    fn walk(prefix: &str, v: &toml::Value, out: &mut BTreeMap<String, String>) {
        match v {
            toml::Value::Table(t) => {
                for (k, x) in t {
                    let key = if prefix.is_empty() {
                        k.clone()
                    } else {
                        format!("{prefix}.{k}")
                    };
                    walk(&key, x, out);
                }
            }
            other => {
                out.insert(prefix.to_string(), other.to_string());
            }
        }
    }
    let mut out = BTreeMap::new();
    if let Ok(t) = text.parse::<toml::Table>() {
        walk("", &toml::Value::Table(t), &mut out);
    }
    out
}

/// One key whose value differs between configs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigDifference {
    /// `section.key`.
    pub key: String,
    /// The value in each config (TOML syntax), `None` where the key is absent.
    pub values: Vec<Option<String>>,
}

/// The keys whose values differ between TOML configs (sorted by key), leaving out the keys in
/// `skip` (the GUI skips `name` and `output.dir`).
pub fn config_diff(configs: &[&str], skip: &[&str]) -> Vec<ConfigDifference> {
    let flats: Vec<BTreeMap<String, String>> = configs.iter().map(|c| flat_config(c)).collect();
    let keys: BTreeSet<&String> = flats.iter().flat_map(|f| f.keys()).collect();
    keys.into_iter()
        .filter(|k| !skip.contains(&k.as_str()))
        .filter_map(|k| {
            let values: Vec<Option<String>> = flats.iter().map(|f| f.get(k).cloned()).collect();
            values
                .iter()
                .any(|v| *v != values[0])
                .then(|| ConfigDifference {
                    key: k.clone(),
                    values,
                })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use crate::read::StoredSample;
    use rlvr_core::events::TokenStats;

    fn group(prompt: &str, completion: &str) -> StoredGroup {
        StoredGroup {
            step: 2,
            index: 0,
            prompt: prompt.into(),
            answer: "a,b".into(),
            samples: vec![StoredSample {
                completion: completion.into(),
                reward: 0.5,
                passed: true,
                advantage: -0.25,
                length: 7,
                truncated: false,
                components: vec![("x".into(), 1.0, "said \"ok\", then\nstopped".into())],
                tokens: TokenStats::default(),
            }],
        }
    }

    #[test]
    fn a_field_with_a_comma_a_quote_and_a_newline_round_trips_through_a_csv_reader() {
        let nasty = "3,\"4\"\n+5\r\nend";
        let mut buf = Vec::new();
        write_samples(&mut buf, ExportFormat::Csv, 1, &[group(nasty, nasty)]).unwrap();
        let mut r = csv::Reader::from_reader(buf.as_slice());
        let header: Vec<String> = r.headers().unwrap().iter().map(String::from).collect();
        assert_eq!(header[2], "prompt");
        let rows: Vec<csv::StringRecord> = r.records().map(Result::unwrap).collect();
        assert_eq!(rows.len(), 1);
        assert_eq!(&rows[0][2], nasty);
        assert_eq!(&rows[0][3], "a,b");
        assert_eq!(&rows[0][5], nasty);
        assert_eq!(&rows[0][11], "x=1 (said \"ok\", then\nstopped)");

        // A metric name with the same characters (a plugin component's name) in the header.
        let by_step = MetricsByStep::from([
            (0, BTreeMap::from([(format!("c/{nasty}/mean"), 1.5)])),
            (1, BTreeMap::from([("reward_mean".to_string(), 0.25)])),
        ]);
        let mut buf = Vec::new();
        write_metrics(&mut buf, ExportFormat::Csv, 1, &by_step).unwrap();
        let mut r = csv::Reader::from_reader(buf.as_slice());
        let header: Vec<String> = r.headers().unwrap().iter().map(String::from).collect();
        assert_eq!(header, ["step", &format!("c/{nasty}/mean"), "reward_mean"]);
        let rows: Vec<Vec<String>> = r
            .records()
            .map(|x| x.unwrap().iter().map(String::from).collect())
            .collect();
        assert_eq!(rows, [["0", "1.5", ""], ["1", "", "0.25"]]);
    }

    #[test]
    fn jsonl_metrics_are_nested_again_and_typed() {
        let by_step = MetricsByStep::from([(
            3,
            BTreeMap::from([
                ("kl_by_kind/k3".to_string(), 0.5),
                ("reward_mean".to_string(), 1.0),
            ]),
        )]);
        let mut buf = Vec::new();
        write_metrics(&mut buf, ExportFormat::Jsonl, 7, &by_step).unwrap();
        let v: serde_json::Value = serde_json::from_slice(&buf).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"type": "step", "run_id": 7, "step": 3,
                               "kl_by_kind": {"k3": 0.5}, "reward_mean": 1.0})
        );
    }

    #[test]
    fn config_diff_lists_changed_and_missing_keys_and_skips_what_it_is_told() {
        let a = "name = \"a\"\nseed = 1\n[optim]\nlr = 0.001\n";
        let b = "name = \"b\"\nseed = 1\n[optim]\nlr = 0.002\nwarmup = 3\n";
        let d = config_diff(&[a, b], &["name"]);
        assert_eq!(
            d,
            [
                ConfigDifference {
                    key: "optim.lr".into(),
                    values: vec![Some("0.001".into()), Some("0.002".into())],
                },
                ConfigDifference {
                    key: "optim.warmup".into(),
                    values: vec![None, Some("3".into())],
                },
            ]
        );
        assert_eq!(config_diff(&[a, b], &[]).len(), 3, "name too");
        assert!(flat_config("not = [toml").is_empty());
    }
}
