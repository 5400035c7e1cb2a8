//! `rlvr-studio models`: what a model folder is, before training on it.

use std::path::PathBuf;

use clap::Subcommand;
use rlvr_engine::model::inspect::{inspect, ModelFacts, DEFAULT_ROWS, DEFAULT_TOKENS};

/// `rlvr-studio models …`.
#[derive(Subcommand, Debug)]
pub enum ModelsCmd {
    /// Print a model folder's architecture, parameter count, stored dtypes, vocabulary, special
    /// tokens, chat template and the memory a full or LoRA training run would need (checked as
    /// training would check it, without loading the weights).
    Inspect(InspectArgs),
    /// Merge a LoRA adapter folder (PEFT's layout, as a LoRA run writes its policy) into its
    /// base: writes a full Hugging Face folder with `W + (alpha / r) · B A`.
    Merge(MergeArgs),
}

/// `rlvr-studio models merge ADAPTER --out DIR [--base DIR]`.
#[derive(clap::Args, Debug)]
pub struct MergeArgs {
    /// The adapter folder (`adapter_config.json`, `adapter_model.safetensors`).
    pub adapter: PathBuf,
    /// The folder to write (a full model folder).
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
    /// The base model folder; default: `base_model_name_or_path` of `adapter_config.json`.
    #[arg(long, value_name = "DIR")]
    pub base: Option<PathBuf>,
}

/// `rlvr-studio models inspect`.
#[derive(clap::Args, Debug)]
pub struct InspectArgs {
    /// The model folder.
    pub dir: PathBuf,
    /// Print one JSON object.
    #[arg(long)]
    pub json: bool,
    /// Rows per step of the memory estimate (prompts per step × group size).
    #[arg(long, default_value_t = DEFAULT_ROWS)]
    pub rows: usize,
    /// Tokens per row (prompt + completion) of the memory estimate.
    #[arg(long, default_value_t = DEFAULT_TOKENS)]
    pub tokens: usize,
}

/// Runs a `models` subcommand.
pub fn models(cmd: ModelsCmd) -> anyhow::Result<()> {
    match cmd {
        ModelsCmd::Inspect(args) => {
            let facts = facts(&args)?;
            if args.json {
                println!("{}", serde_json::to_string_pretty(&facts)?);
            } else {
                for (k, v) in facts.lines() {
                    println!("{k:>16}: {v}");
                }
            }
            Ok(())
        }
        ModelsCmd::Merge(args) => merge(&args),
    }
}

fn merge(args: &MergeArgs) -> anyhow::Result<()> {
    use anyhow::Context as _;
    let start = std::time::Instant::now();
    let device = candle_core::Device::Cpu;
    let policy =
        rlvr_engine::model::Policy::load_adapter(&args.adapter, args.base.as_deref(), &device)
            .with_context(|| format!("loading the adapter folder {}", args.adapter.display()))?;
    let ad = policy.adapters().context("the folder has no adapters")?;
    let (layers, rank) = (ad.layers.len(), ad.spec.rank);
    if args.out.exists() && std::fs::read_dir(&args.out)?.next().is_some() {
        anyhow::bail!("{}: expected a new or empty folder", args.out.display());
    }
    policy
        .merged()?
        .save(&args.out)
        .with_context(|| format!("writing {}", args.out.display()))?;
    println!(
        "merged {layers} adapters of rank {rank} from {} into {} ({} parameters) in {:.1} s",
        args.adapter.display(),
        args.out.display(),
        policy.num_params(),
        start.elapsed().as_secs_f64()
    );
    Ok(())
}

fn facts(args: &InspectArgs) -> anyhow::Result<ModelFacts> {
    let kl = rlvr_core::RunConfig::default().algorithm.kl_coef > 0.0;
    Ok(inspect(&args.dir, args.rows, args.tokens, kl)?)
}
