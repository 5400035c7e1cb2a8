//! `rlvr-studio plugins list|check|install`, `rlvr-studio verify` and the hidden
//! `rlvr-studio plugin-host LIB` (the child process of isolated mode).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context as _;
use clap::{Args, Subcommand};
use rlvr_core::extensions::{ComponentKind, Instance, ScoreItem};
use rlvr_core::params::{ParamKind, ParamSpec, ParamValue};
use rlvr_core::RunConfig;
use rlvr_plugin_host::{LoadedPlugin, PluginHost};

/// `plugins …` subcommands.
#[derive(Subcommand, Debug)]
pub enum PluginsCmd {
    /// List the plugins found in the user plugin folder (and `--plugins DIR`), with their
    /// components, versions, file hashes and load errors.
    List {
        /// Extra plugin folders.
        #[arg(long = "plugins", value_name = "DIR")]
        dirs: Vec<PathBuf>,
        /// One JSON object per plugin / error.
        #[arg(long)]
        json: bool,
    },
    /// Load one library and print what it declares, or why it cannot be used.
    Check {
        /// The library (.so / .dylib / .dll).
        path: PathBuf,
        /// Print the manifest as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Check a library and copy it into the user plugin folder.
    Install {
        /// The library.
        path: PathBuf,
    },
    /// Measure the per-call cost of a verifier: built-in task verifier vs the plugin in-process
    /// vs isolated, for batches of 1 and 64 completions.
    Bench {
        /// The plugin library (e.g. the template's `libmy_rlvr_plugin.so`).
        #[arg(long)]
        plugin: PathBuf,
        /// Its verifier component.
        #[arg(long, default_value = "exact_match")]
        component: String,
        /// Calls per measurement.
        #[arg(long, default_value_t = 2000)]
        iters: usize,
    },
}

/// `verify`: try a verifier or rubric by hand.
#[derive(Args, Debug)]
pub struct VerifyArgs {
    /// The plugin library.
    #[arg(long)]
    pub plugin: PathBuf,
    /// The verifier or rubric component.
    #[arg(long)]
    pub component: String,
    /// The completion to score.
    #[arg(long)]
    pub completion: String,
    /// The reference answer.
    #[arg(long, default_value = "")]
    pub answer: String,
    /// The prompt.
    #[arg(long, default_value = "")]
    pub prompt: String,
    /// Task metadata (JSON).
    #[arg(long, default_value = "null")]
    pub meta: String,
    /// A parameter, `name=value` (repeatable).
    #[arg(long = "param", value_name = "NAME=VALUE")]
    pub params: Vec<String>,
    /// Host the plugin in a child process.
    #[arg(long)]
    pub isolated: bool,
    /// Deadline of the call in milliseconds.
    #[arg(long, default_value_t = 10_000)]
    pub deadline_ms: u64,
    /// Print the result as JSON.
    #[arg(long)]
    pub json: bool,
}

/// The host for a run: the user plugin folder, the config's `plugins.dirs` and `extra` dirs;
/// isolation and deadline from the config.
pub fn host_for(cfg: &RunConfig, extra: &[PathBuf]) -> anyhow::Result<PluginHost> {
    let mut host = PluginHost::new();
    host.deadline = Duration::from_millis(cfg.plugins.deadline_ms);
    host.child_program = Some(std::env::current_exe().context("locating rlvr-studio")?);
    check_dirs(&cfg.plugins.dirs, "plugins.dirs")?;
    let mut dirs: Vec<PathBuf> = rlvr_plugin_host::user_plugin_dir().into_iter().collect();
    dirs.extend(cfg.plugins.dirs.iter().cloned());
    dirs.extend(extra.iter().cloned());
    host.scan(&dirs);
    for e in &host.errors {
        eprintln!("warning: plugin not loaded: {e}");
    }
    // An unknown name would leave the plugin in-process while the user thinks it is isolated.
    if let Err(e) = host.set_isolated(&cfg.plugins.isolated) {
        let mut msg = e.to_string();
        for err in &host.errors {
            msg.push_str(&format!("\n  plugin not loaded: {err}"));
        }
        anyhow::bail!(msg);
    }
    Ok(host)
}

/// Refuses a plugin folder (named by `what`: `plugins.dirs`, `--plugins`) that does not exist
/// or is not a folder: its plugins would silently be missing.
pub fn check_dirs(dirs: &[PathBuf], what: &str) -> anyhow::Result<()> {
    for d in dirs {
        match std::fs::metadata(d) {
            Ok(m) if m.is_dir() => {}
            Ok(_) => anyhow::bail!(
                "{what}: {} is not a folder: expected a folder of plugin libraries",
                d.display()
            ),
            Err(e) => anyhow::bail!(
                "{what}: plugin folder {} cannot be read ({e}): expected an existing folder of plugin libraries",
                d.display()
            ),
        }
    }
    Ok(())
}

/// Validates a config against the loaded plugins; a failure also lists the libraries that
/// could not be loaded (the component may be in one of them).
pub fn validate(cfg: &RunConfig, host: &PluginHost) -> anyhow::Result<()> {
    if let Err(e) = cfg.validate_with(&host.extensions()) {
        let mut msg = e.to_string();
        for err in &host.errors {
            msg.push_str(&format!("\n  plugin not loaded: {err}"));
        }
        anyhow::bail!(msg);
    }
    Ok(())
}

fn kind_name(k: ComponentKind) -> String {
    k.to_string()
}

fn print_plugin(p: &LoadedPlugin) {
    let m = &p.manifest;
    println!(
        "{} {}  (SDK {}, ABI {})",
        m.name, m.version, m.sdk_version, m.abi_version
    );
    println!("  file    {}", p.path.display());
    println!("  sha256  {}", p.sha256);
    if !m.description.is_empty() {
        println!("  {}", m.description);
    }
    for c in &m.components {
        println!("  {:<9} {:<22} {}", kind_name(c.kind), c.name, c.summary);
        for s in &c.params {
            let default = match s.kind {
                ParamKind::Text => format!("{:?}", s.default_text),
                ParamKind::Bool => (s.default != 0.0).to_string(),
                _ => format!("{} in {}..={}", s.default, s.min, s.max),
            };
            println!("            {:<20} {default:<24} {}", s.name, s.help);
        }
        for k in &c.criteria {
            println!(
                "            criterion {:<12} weight {:<5} {}",
                k.name, k.weight, k.description
            );
        }
    }
}

fn manifest_json(p: &LoadedPlugin) -> serde_json::Value {
    serde_json::json!({
        "path": p.path,
        "sha256": p.sha256,
        "manifest": p.manifest,
    })
}

/// Runs a `plugins` subcommand.
pub fn plugins(cmd: PluginsCmd) -> anyhow::Result<()> {
    match cmd {
        PluginsCmd::List { dirs, json } => {
            check_dirs(&dirs, "plugins list")?;
            let mut host = PluginHost::new();
            let mut all: Vec<PathBuf> = rlvr_plugin_host::user_plugin_dir().into_iter().collect();
            all.extend(dirs);
            host.scan(&all);
            if json {
                for p in &host.plugins {
                    println!("{}", manifest_json(p));
                }
                for e in &host.errors {
                    println!("{}", serde_json::json!({ "error": e.to_string() }));
                }
                return Ok(());
            }
            println!(
                "plugin folders: {}",
                all.iter()
                    .map(|d| d.display().to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            );
            if host.plugins.is_empty() && host.errors.is_empty() {
                println!("no plugins found");
            }
            for p in &host.plugins {
                print_plugin(p);
            }
            for e in &host.errors {
                println!("not loaded: {e}");
            }
            Ok(())
        }
        PluginsCmd::Check { path, json } => {
            let p = rlvr_plugin_host::check(&path)?;
            if json {
                println!("{}", manifest_json(&p));
            } else {
                print_plugin(&p);
                println!(
                    "ok: compatible with this RLVR Studio (plugin ABI {})",
                    rlvr_plugin_host::ABI_VERSION
                );
            }
            Ok(())
        }
        PluginsCmd::Bench {
            plugin,
            component,
            iters,
        } => bench(&plugin, &component, iters),
        PluginsCmd::Install { path } => {
            let p = rlvr_plugin_host::check(&path)?;
            let dir = rlvr_plugin_host::user_plugin_dir()
                .context("no user plugin folder on this platform (set RLVR_STUDIO_PLUGINS)")?;
            std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
            let name = path.file_name().context("the path has no file name")?;
            let dest = dir.join(name);
            std::fs::copy(&path, &dest)
                .with_context(|| format!("copying {} to {}", path.display(), dest.display()))?;
            println!(
                "installed {} {} as {}",
                p.manifest.name,
                p.manifest.version,
                dest.display()
            );
            Ok(())
        }
    }
}

/// Median of `iters` timed calls, in microseconds.
fn time_calls(iters: usize, mut f: impl FnMut()) -> f64 {
    let mut t: Vec<f64> = (0..iters.max(1))
        .map(|_| {
            let t0 = std::time::Instant::now();
            f();
            t0.elapsed().as_secs_f64() * 1e6
        })
        .collect();
    t.sort_by(f64::total_cmp);
    t[t.len() / 2]
}

fn bench(plugin: &Path, component: &str, iters: usize) -> anyhow::Result<()> {
    use rlvr_core::config::task::{ArithmeticConfig, TaskConfig};
    let task = rlvr_engine::tasks::build(&TaskConfig::Arithmetic(ArithmeticConfig::default()))?;
    let mut rng = <rand_chacha::ChaCha8Rng as rand::SeedableRng>::seed_from_u64(1);
    let problems: Vec<_> = (0..64).map(|_| task.generate(&mut rng)).collect();
    let meta = serde_json::Value::Null;
    println!(
        "per-call cost of a verifier (median of {iters} calls; µs per call, µs per completion)"
    );
    println!("{:<28} {:>12} {:>14}", "path", "batch of 1", "batch of 64");
    let builtin: Vec<f64> = [1usize, 64]
        .iter()
        .map(|&n| {
            time_calls(iters, || {
                for p in &problems[..n] {
                    std::hint::black_box(task.verify(p, &p.answer));
                }
            })
        })
        .collect();
    println!(
        "{:<28} {:>12.2} {:>9.2} ({:.3})",
        "built-in task verifier",
        builtin[0],
        builtin[1],
        builtin[1] / 64.0
    );
    for isolated in [false, true] {
        let mut host = PluginHost::new();
        host.child_program = Some(std::env::current_exe().context("locating rlvr-studio")?);
        if !host.add(plugin) {
            anyhow::bail!(host.errors.pop().map(|e| e.to_string()).unwrap_or_default());
        }
        if isolated {
            let names: Vec<String> = host
                .plugins
                .iter()
                .map(|p| p.manifest.name.clone())
                .collect();
            host.set_isolated(&names)?;
        }
        let (_, inst) = host.extensions().build(
            "--component",
            "--param",
            &[ComponentKind::Verifier],
            component,
            &BTreeMap::new(),
        )?;
        let Instance::Reward(r) = inst else {
            anyhow::bail!("{component} is not a verifier");
        };
        let times: Vec<f64> = [1usize, 64]
            .iter()
            .map(|&n| {
                let items: Vec<ScoreItem<'_>> = problems[..n]
                    .iter()
                    .map(|p| ScoreItem {
                        prompt: &p.prompt,
                        completion: &p.answer,
                        answer: &p.answer,
                        meta: &meta,
                    })
                    .collect();
                time_calls(iters, || {
                    std::hint::black_box(r.score_batch(&items));
                })
            })
            .collect();
        let name = if isolated {
            "plugin, isolated process"
        } else {
            "plugin, in-process"
        };
        println!(
            "{name:<28} {:>12.2} {:>9.2} ({:.3})",
            times[0],
            times[1],
            times[1] / 64.0
        );
    }
    Ok(())
}

/// Parses `name=value` parameters by the kind each one is declared with in `specs`: a text
/// parameter takes the value as written (`x=2` is the text "2"; matching quotes around it are
/// removed, `x="2"` is "2" too). A name without a spec (the component's check then reports it)
/// or a value that does not parse as its kind is guessed: boolean, integer, float, else text,
/// so the check's message shows what was given.
fn parse_params(
    args: &[String],
    specs: &[ParamSpec],
) -> anyhow::Result<BTreeMap<String, ParamValue>> {
    let mut out = BTreeMap::new();
    for a in args {
        let (k, v) = a
            .split_once('=')
            .with_context(|| format!("--param {a:?}: expected NAME=VALUE"))?;
        let kind = specs.iter().find(|s| s.name == k).map(|s| s.kind);
        let typed = match kind {
            Some(ParamKind::Text) => Some(ParamValue::Text(unquote(v).to_string())),
            Some(ParamKind::Bool) => v.parse::<bool>().ok().map(ParamValue::Bool),
            Some(ParamKind::Int) => v.parse::<i64>().ok().map(ParamValue::Int),
            Some(ParamKind::Float) => v
                .parse::<f64>()
                .ok()
                .filter(|f| f.is_finite())
                .map(ParamValue::Float),
            None => None,
        };
        out.insert(k.to_string(), typed.unwrap_or_else(|| guess(v)));
    }
    Ok(out)
}

/// `v` without one pair of matching surrounding quotes (`"…"` or `'…'`).
fn unquote(v: &str) -> &str {
    for q in ['"', '\''] {
        if let Some(inner) = v.strip_prefix(q).and_then(|r| r.strip_suffix(q)) {
            return inner;
        }
    }
    v
}

fn guess(v: &str) -> ParamValue {
    if let Ok(b) = v.parse::<bool>() {
        ParamValue::Bool(b)
    } else if let Ok(i) = v.parse::<i64>() {
        ParamValue::Int(i)
    } else if let Some(f) = v.parse::<f64>().ok().filter(|f| f.is_finite()) {
        ParamValue::Float(f)
    } else {
        ParamValue::Text(unquote(v).to_string())
    }
}

/// `verify`: load one plugin, build the component, score one completion, print it.
pub fn verify(args: VerifyArgs) -> anyhow::Result<()> {
    let mut host = PluginHost::new();
    host.deadline = Duration::from_millis(args.deadline_ms);
    host.child_program = Some(std::env::current_exe().context("locating rlvr-studio")?);
    if !host.add(&args.plugin) {
        let err = host.errors.pop().map(|e| e.to_string()).unwrap_or_default();
        anyhow::bail!(err);
    }
    if args.isolated {
        let names: Vec<String> = host
            .plugins
            .iter()
            .map(|p| p.manifest.name.clone())
            .collect();
        host.set_isolated(&names)?;
    }
    let ext = host.extensions();
    let kinds = [ComponentKind::Verifier, ComponentKind::Rubric];
    let specs = ext
        .find(&kinds, &args.component)
        .map(|c| c.params)
        .unwrap_or_default();
    let values = parse_params(&args.params, &specs)?;
    let (_, inst) = ext.build("--component", "--param", &kinds, &args.component, &values)?;
    let Instance::Reward(r) = inst else {
        anyhow::bail!("{} is not a verifier or rubric", args.component);
    };
    let meta: serde_json::Value =
        serde_json::from_str(&args.meta).context("--meta: expected a JSON document")?;
    let item = ScoreItem {
        prompt: &args.prompt,
        completion: &args.completion,
        answer: &args.answer,
        meta: &meta,
    };
    let t0 = std::time::Instant::now();
    let out = r
        .score_batch(&[item])
        .pop()
        .unwrap_or_else(|| Err("no result".into()));
    let ms = t0.elapsed().as_secs_f64() * 1e3;
    match out {
        Ok(s) if args.json => println!("{}", serde_json::json!({ "ok": s, "ms": ms })),
        Ok(s) => {
            let passed = match s.passed {
                Some(true) => "passed",
                Some(false) => "failed",
                None if s.score >= 1.0 => "passed",
                None => "failed",
            };
            println!("score {:.4}  {passed}  ({ms:.2} ms)", s.score);
            println!("reason: {}", s.reason);
            for p in &s.parts {
                println!(
                    "  {:<20} {:.4}  weight {}  {}",
                    p.name, p.score, p.weight, p.reason
                );
            }
        }
        Err(e) if args.json => println!("{}", serde_json::json!({ "error": e, "ms": ms })),
        Err(e) => anyhow::bail!("{}: {e}", args.component),
    }
    Ok(())
}

/// The child process of isolated mode.
pub fn plugin_host(lib: &Path) -> anyhow::Result<()> {
    rlvr_plugin_host::serve_stdio(lib).map_err(anyhow::Error::msg)
}
