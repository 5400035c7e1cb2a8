//! `rlvr-studio compare`: several presets on the same seed, one summary table.

use std::path::PathBuf;
use std::time::Instant;

use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use rlvr_core::events::{EngineEvent, EvalMetrics};
use rlvr_core::RunConfig;
use rlvr_engine::Trainer;
use serde::Serialize;

/// Arguments of `compare`.
#[derive(Args, Debug)]
pub struct CompareArgs {
    /// Run configurations to compare (e.g. app/presets/grpo.toml app/presets/dapo.toml).
    #[arg(required = true)]
    pub presets: Vec<PathBuf>,
    /// Steps per run (overrides each preset).
    #[arg(long)]
    pub steps: Option<usize>,
    /// Seed for every run (overrides each preset).
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Folder for the runs' outputs (one subfolder per preset).
    #[arg(long, default_value = "runs/compare")]
    pub out: PathBuf,
    /// Print one JSON object per run instead of the table.
    #[arg(long)]
    pub json: bool,
}

#[derive(Serialize)]
struct Row {
    name: String,
    task: String,
    steps: usize,
    start_pass_at_1: f64,
    pass_at_1: f64,
    greedy_accuracy: f64,
    pass_at_g: f64,
    g: usize,
    mean_entropy: f64,
    final_entropy: f64,
    mean_length: f64,
    wall_s: f64,
}

/// Runs each preset and prints the comparison.
pub fn compare(args: CompareArgs) -> anyhow::Result<()> {
    let mut rows = Vec::new();
    for path in &args.presets {
        let mut cfg = RunConfig::from_file(path)?;
        if let Some(s) = args.steps {
            cfg.steps = s;
            cfg.optim.warmup_steps = cfg.optim.warmup_steps.min(s);
        }
        cfg.seed = args.seed;
        cfg.output.dir = args.out.join(&cfg.name);
        cfg.validate()?;
        let name = cfg.name.clone();
        let task = cfg.task.name().to_string();
        let steps = cfg.steps;
        let bar = if args.json {
            ProgressBar::hidden()
        } else {
            let b = ProgressBar::new(steps as u64);
            b.set_style(
                ProgressStyle::with_template(
                    "{prefix:>16} {bar:30} {pos}/{len} | {msg} | ETA {eta}",
                )
                .unwrap_or_else(|_| ProgressStyle::default_bar()),
            );
            b.set_prefix(name.clone());
            b
        };
        let started = Instant::now();
        let mut trainer = Trainer::new(cfg)?;
        let (mut entropies, mut lengths) = (Vec::new(), Vec::new());
        let mut evals: Vec<EvalMetrics> = Vec::new();
        trainer.run(
            &mut |ev| match ev {
                EngineEvent::Step(m) => {
                    bar.set_position(m.step as u64);
                    bar.set_message(format!("acc {:.3} entropy {:.3}", m.accuracy, m.entropy));
                    entropies.push(m.entropy);
                    lengths.push(m.response_len_mean);
                }
                EngineEvent::Eval(e) => evals.push(e),
                _ => {}
            },
            None,
        )?;
        bar.finish_and_clear();
        let (Some(first), Some(last)) = (evals.first(), evals.last()) else {
            anyhow::bail!("{}: the run produced no evaluation", path.display());
        };
        let g = last.samples;
        let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len().max(1) as f64;
        let tail = &entropies[entropies.len().saturating_sub(20)..];
        let row = Row {
            name,
            task,
            steps,
            start_pass_at_1: first.pass_at_1,
            pass_at_1: last.pass_at_1,
            greedy_accuracy: last.greedy_accuracy,
            pass_at_g: last.pass_at_k.get(&g).copied().unwrap_or(0.0),
            g,
            mean_entropy: mean(&entropies),
            final_entropy: mean(tail),
            mean_length: mean(&lengths),
            wall_s: started.elapsed().as_secs_f64(),
        };
        if args.json {
            println!("{}", serde_json::to_string(&row)?);
        } else {
            println!(
                "{:>16}: pass@1 {:.3} -> {:.3}, pass@{} {:.3}, entropy {:.3}, {:.0} s",
                row.name,
                row.start_pass_at_1,
                row.pass_at_1,
                row.g,
                row.pass_at_g,
                row.final_entropy,
                row.wall_s
            );
        }
        rows.push(row);
    }
    if !args.json {
        println!();
        println!(
            "| run | task | steps | pass@1 start → end | greedy | pass@G | mean entropy | final entropy | mean length | wall s |"
        );
        println!("|---|---|---|---|---|---|---|---|---|---|");
        for r in &rows {
            println!(
                "| {} | {} | {} | {:.3} → {:.3} | {:.3} | {:.3} (G={}) | {:.3} | {:.3} | {:.2} | {:.0} |",
                r.name,
                r.task,
                r.steps,
                r.start_pass_at_1,
                r.pass_at_1,
                r.greedy_accuracy,
                r.pass_at_g,
                r.g,
                r.mean_entropy,
                r.final_entropy,
                r.mean_length,
                r.wall_s
            );
        }
    }
    Ok(())
}
