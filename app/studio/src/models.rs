//! `rlvr-studio models`: what a model folder is, before training on it.

use std::path::PathBuf;

use clap::Subcommand;
use rlvr_engine::model::inspect::{inspect, ModelFacts};

/// `rlvr-studio models …`.
#[derive(Subcommand, Debug)]
pub enum ModelsCmd {
    /// Print a model folder's architecture, parameter count, stored dtypes, vocabulary, special
    /// tokens, chat template and the memory a full or LoRA training run would need (checked as
    /// training would check it, without loading the weights).
    Inspect(InspectArgs),
}

/// `rlvr-studio models inspect`.
#[derive(clap::Args, Debug)]
pub struct InspectArgs {
    /// The model folder.
    pub dir: PathBuf,
    /// Print one JSON object.
    #[arg(long)]
    pub json: bool,
    /// Rows per step of the memory estimate (default: prompts per step × group size of the
    /// default config).
    #[arg(long)]
    pub rows: Option<usize>,
    /// Tokens per row (prompt + completion) of the memory estimate.
    #[arg(long, default_value_t = 1024)]
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
    }
}

fn facts(args: &InspectArgs) -> anyhow::Result<ModelFacts> {
    let defaults = rlvr_core::RunConfig::default();
    let rows = args
        .rows
        .unwrap_or(defaults.rollout.prompts_per_step * defaults.rollout.group_size);
    Ok(inspect(
        &args.dir,
        rows,
        args.tokens,
        defaults.algorithm.kl_coef > 0.0,
    )?)
}
