//! `rlvr-studio`: the RLVR Studio binary. Subcommands run the engine headless.

mod bench;
mod bench_store;
mod compare;
mod import;
mod models;
mod plugins;
mod runs;
mod train;

use std::path::PathBuf;

use clap::{Parser, Subcommand};

/// Train language models with reinforcement learning from verifiable rewards.
#[derive(Parser, Debug)]
#[command(name = "rlvr-studio", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Option<Cmd>,
    /// Run-history database (default: `history.sqlite` in the platform's data directory, or
    /// `$RLVR_STUDIO_DB`).
    #[arg(long, global = true, value_name = "PATH")]
    db: Option<PathBuf>,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Run a GRPO training run from a TOML config (e.g. app/presets/default.toml).
    Train(train::TrainArgs),
    /// Browse the run history: list, show, diff, samples, export, delete, check, tag, note.
    #[command(subcommand)]
    Runs(runs::RunsCmd),
    /// Run several presets on the same seed and print a comparison table.
    Compare(compare::CompareArgs),
    /// Supervised warm start of the tiny embedded default policy (writes a model folder).
    Pretrain(train::PretrainArgs),
    /// Measure rollout and training throughput (tokens/s, GFLOP/s) of a model.
    Bench(bench::BenchArgs),
    /// Measure the run history's cost: writer time and step overhead, list and series latency.
    BenchStore(bench_store::BenchStoreArgs),
    /// Print a config with every key at its default, commented with its range (or, with
    /// `--markdown`, the README's config reference).
    DefaultConfig {
        /// Print the config reference as Markdown tables instead.
        #[arg(long)]
        markdown: bool,
    },
    /// Print the JSON Schema (draft 2020-12) of a run config, for editor completion of TOML/JSON
    /// configs (e.g. with taplo or VS Code's Even Better TOML: `#:schema ./run-config.schema.json`).
    ConfigSchema,
    /// Complete prompts with a model and print each completion with its per-token log-probs.
    Generate(bench::GenerateArgs),
    /// Convert a GGUF model file (llama, qwen2) into a Hugging Face model folder.
    ImportGguf(import::ImportGgufArgs),
    /// Model folders: inspect.
    #[command(subcommand)]
    Models(models::ModelsCmd),
    /// Plugin libraries: list, check, install.
    #[command(subcommand)]
    Plugins(plugins::PluginsCmd),
    /// Score one completion with a plugin verifier or rubric.
    Verify(plugins::VerifyArgs),
    /// Host one plugin library for isolated mode (spoken to over stdin/stdout; not for humans).
    #[command(hide = true)]
    PluginHost {
        /// The library.
        lib: PathBuf,
    },
    /// Measure the desktop app's frame time (p50/p95) while it trains and overlays many runs.
    GuiBench(GuiBenchArgs),
}

/// `rlvr-studio gui-bench`.
#[derive(clap::Args, Debug)]
struct GuiBenchArgs {
    /// Frames to measure.
    #[arg(long, default_value_t = 300)]
    frames: usize,
    /// Synthetic runs overlaid in the comparison view.
    #[arg(long, default_value_t = 10)]
    runs: usize,
    /// Steps per synthetic run.
    #[arg(long, default_value_t = 5000)]
    points: usize,
    /// Do not train while measuring.
    #[arg(long)]
    no_train: bool,
}

/// The desktop app (no subcommand).
fn gui(db: Option<PathBuf>) -> anyhow::Result<()> {
    let model = rlvr_ui::form::default_config().model.path;
    tune_process(threads_for_model(&model, 0));
    rlvr_ui::run_native(rlvr_ui::AppOptions::from_db(db))?;
    Ok(())
}

/// `rlvr-studio gui-bench`: frame times of the real window.
fn gui_bench(args: GuiBenchArgs, db: Option<PathBuf>) -> anyhow::Result<()> {
    let model = rlvr_ui::form::default_config().model.path;
    tune_process(threads_for_model(&model, 0));
    // A throwaway history and run folder unless --db is given.
    let tmp = tempfile::tempdir()?;
    let opts = match db {
        Some(db) => rlvr_ui::AppOptions::from_db(Some(db)),
        None => rlvr_ui::AppOptions::from_db(Some(tmp.path().join("history.sqlite"))),
    };
    let r = rlvr_ui::bench::run(
        opts,
        rlvr_ui::bench::BenchOptions {
            frames: args.frames,
            runs: args.runs,
            points: args.points,
            train: !args.no_train,
            ..Default::default()
        },
    )?;
    println!(
        "gui-bench: {} frames, {} runs x {} points overlaid{}: frame time p50 {:.1} ms, p95 {:.1} ms \
         (StudioApp::ui alone: p50 {:.1} ms, p95 {:.1} ms); {} training steps meanwhile",
        r.frames,
        r.lines,
        args.points,
        if args.no_train { "" } else { ", training" },
        r.frame_p50_ms,
        r.frame_p95_ms,
        r.ui_p50_ms,
        r.ui_p95_ms,
        r.trained_steps
    );
    Ok(())
}

/// Allocator and thread settings that must be in place before any tensor is made.
fn tune_process(threads: usize) {
    // Each candle op allocates its output; with glibc's default thresholds every mid-size buffer
    // is mmapped and unmapped again, which cost ~35% of a training step here (page faults and TLB
    // shootdowns, `shared/research/feasibility-candle.md`). Keep freed memory in the heap instead.
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes allocator tunables; called before other threads exist.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 256 << 20);
        libc::mallopt(libc::M_TRIM_THRESHOLD, 1 << 30);
    }
    if std::env::var_os("RAYON_NUM_THREADS").is_none() && threads > 0 {
        // SAFETY-relevant: set before the thread pool or any other thread starts.
        std::env::set_var("RAYON_NUM_THREADS", threads.to_string());
    }
}

/// Threads for a model folder: 1 below 5 M parameters (candle's thread pool spin-waits, and
/// ops this small do not split well), all cores above. The config goes through the loader's
/// validation first (sizes bounded before any arithmetic); an invalid one counts as small here
/// and is reported, with its file and key, when the model is loaded.
fn threads_for_model(model_dir: &std::path::Path, configured: usize) -> usize {
    let params = rlvr_engine::model::Policy::read_config(model_dir)
        .ok()
        .map_or(0, |c| c.num_params());
    rlvr_engine::trainer::auto_threads(params, configured)
}

fn main() -> std::process::ExitCode {
    // Output piped into `head` and closed early ends the process quietly, like other CLI tools.
    #[cfg(unix)]
    // SAFETY: restoring the default disposition of SIGPIPE before any thread starts.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    let cli = Cli::parse();
    let result = match cli.command {
        Some(Cmd::Train(args)) => train::train(args, cli.db.as_deref()),
        Some(Cmd::Runs(cmd)) => runs::runs(cmd, cli.db.as_deref()),
        Some(Cmd::Pretrain(args)) => {
            tune_process(1);
            train::pretrain(args)
        }
        Some(Cmd::Bench(args)) => {
            let model: PathBuf = args.model.clone().unwrap_or_else(bench::default_model);
            tune_process(threads_for_model(&model, args.threads));
            bench::bench(args)
        }
        Some(Cmd::Compare(args)) => {
            if let Some(first) = args.presets.first() {
                let model = rlvr_core::RunConfig::from_file(first)
                    .map(|c| c.model.path)
                    .unwrap_or_default();
                tune_process(threads_for_model(&model, 0));
            }
            compare::compare(args)
        }
        Some(Cmd::Generate(args)) => {
            tune_process(1);
            bench::generate_cmd(args)
        }
        Some(Cmd::BenchStore(args)) => {
            tune_process(threads_for_model(&bench::default_model(), 0));
            bench_store::bench_store(args)
        }
        Some(Cmd::ImportGguf(args)) => {
            tune_process(0);
            import::import_gguf(args)
        }
        Some(Cmd::Models(cmd)) => models::models(cmd),
        Some(Cmd::Plugins(cmd)) => plugins::plugins(cmd),
        Some(Cmd::Verify(args)) => plugins::verify(args),
        Some(Cmd::PluginHost { lib }) => plugins::plugin_host(&lib),
        Some(Cmd::DefaultConfig { markdown }) => {
            if markdown {
                print!("{}", rlvr_core::spec::markdown_reference());
            } else {
                print!("{}", rlvr_core::spec::default_toml());
            }
            Ok(())
        }
        Some(Cmd::ConfigSchema) => serde_json::to_string_pretty(&rlvr_core::spec::json_schema())
            .map(|s| println!("{s}"))
            .map_err(Into::into),
        Some(Cmd::GuiBench(args)) => gui_bench(args, cli.db),
        None => gui(cli.db),
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
