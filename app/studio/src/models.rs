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
    }
}

fn facts(args: &InspectArgs) -> anyhow::Result<ModelFacts> {
    let kl = rlvr_core::RunConfig::default().algorithm.kl_coef > 0.0;
    Ok(inspect(&args.dir, args.rows, args.tokens, kl)?)
}
