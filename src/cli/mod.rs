//! Command-line interface: one module per subcommand.

mod estimate;
mod example;
mod meta_rl;
mod tabular;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};

/// Gradient, Hessian and meta-gradient estimators for RL value functions.
#[derive(Parser, Debug)]
#[command(name = "metagrad", version, about, long_about = None)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
    /// Worker threads (default: all cores). Results do not depend on it.
    #[arg(long, global = true)]
    threads: Option<usize>,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Estimate V, ∇V and ∇²V of a tabular softmax policy from trajectories (JSON in/out).
    Estimate(estimate::Args),
    /// Accuracy of gradient, Hessian and meta-gradient estimates on random tabular MDPs
    /// (paper Fig. 1 a–c).
    Tabular(tabular::Args),
    /// Write an example problem file for `estimate` (one random trial of the tabular study).
    ExampleProblem(example::Args),
    /// Meta-RL on the 2-D navigation task (or a MuJoCo meta-task): TRPO-MAML, TRPO-FMAML,
    /// TRPO-E-MAML, TRPO-DiCE, ProMP, ProMP-TayPO-2 (paper Fig. 1 d, Fig. 2).
    MetaRl(Box<meta_rl::Args>),
}

/// Runs the parsed command.
pub fn run(cli: Cli) -> Result<()> {
    if let Some(t) = cli.threads {
        anyhow::ensure!(t >= 1, "invalid --threads: must be ≥ 1, got {t}");
        metagrad::limits::check("--threads", t, metagrad::limits::MAX_THREADS, None)?;
        rayon::ThreadPoolBuilder::new()
            .num_threads(t)
            .build_global()
            .context("cannot start the thread pool")?;
    }
    match cli.command {
        Command::Estimate(args) => estimate::run(args),
        Command::Tabular(args) => tabular::run(args),
        Command::ExampleProblem(args) => example::run(args),
        Command::MetaRl(args) => meta_rl::run(*args),
    }
}

/// Writes `text` to `path` atomically (temporary file renamed into place), or to standard output when `path` is `None` or `-`.
pub fn write_output(path: Option<&std::path::Path>, text: &str) -> Result<()> {
    match path {
        Some(p) if p.as_os_str() != "-" => {
            let mut bytes = text.as_bytes().to_vec();
            bytes.push(b'\n');
            Ok(metagrad::atomic::write_bytes(p, &bytes)?)
        }
        _ => {
            use std::io::Write;
            let mut out = std::io::stdout().lock();
            out.write_all(text.as_bytes())?;
            out.write_all(b"\n")?;
            Ok(())
        }
    }
}
