//! The command-line tool `metagrad` (feature `cli`): one module per subcommand. The binary
//! (`src/main.rs`) and the Python package's `metagrad` command run [`main`].

mod estimate;
mod example;
mod meta_rl;
mod tabular;

use std::ffi::OsString;

use anyhow::{Context, Result};
use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};

/// Runs the command line `args` (the program name first) and returns the process's exit
/// code: 0, or 2 after printing the error (`--help`, `--version` and argument errors exit
/// the process from inside, as clap does). `--version` prints the version, the commit and
/// the CPU level of the hot loops; a bad `METAGRAD_CPU` is an error before anything runs.
pub fn main<I, T>(args: I) -> u8
where
    I: IntoIterator<Item = T>,
    T: Into<OsString> + Clone,
{
    let cpu = match metagrad::cpu::init() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: {e}");
            return 2;
        }
    };
    let commit = env!("METAGRAD_GIT_COMMIT");
    let version = format!(
        "{} (commit {}, CPU level {})",
        env!("CARGO_PKG_VERSION"),
        commit.get(..12).unwrap_or(commit),
        cpu.level
    );
    let matches = Cli::command().version(&*version.leak()).get_matches_from(args);
    let cli = Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit());
    match run(cli) {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("error: {}", message(&e));
            2
        }
    }
}

/// The error and its causes, each said once: a cause whose text its parent's message
/// already contains (e.g. an I/O error the context quotes) is not repeated.
fn message(e: &anyhow::Error) -> String {
    let mut msg = String::new();
    for cause in e.chain() {
        let text = cause.to_string();
        if msg.contains(&text) {
            continue;
        }
        if !msg.is_empty() {
            msg.push_str(": ");
        }
        msg.push_str(&text);
    }
    msg
}

/// Gradient, Hessian and meta-gradient estimators for RL value functions.
#[derive(Parser, Debug)]
#[command(name = "metagrad", version, about, long_about = None)]
struct Cli {
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
fn run(cli: Cli) -> Result<()> {
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
pub(crate) fn write_output(path: Option<&std::path::Path>, text: &str) -> Result<()> {
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
