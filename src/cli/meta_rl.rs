//! `metagrad meta-rl` (one run) and `metagrad meta-rl compare` (a grid of algorithms ×
//! seeds): flags, progress bars and printing around [`metagrad::experiments::meta_rl`],
//! which holds the runs, checkpoints, summaries and figures.

use std::path::PathBuf;

use anyhow::Result;
use clap::Subcommand;
use indicatif::{ProgressBar, ProgressStyle};
use metagrad::experiments::meta_rl::{self, GridSettings, Progress, Resume, RunSettings, mean_se_text};
use metagrad::meta::algos::{Algorithm, IterationStats};

#[derive(clap::Args, Debug)]
#[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
pub struct Args {
    #[command(subcommand)]
    sub: Option<Sub>,
    #[command(flatten)]
    run: RunArgs,
}

#[derive(Subcommand, Debug)]
enum Sub {
    /// Run a grid of algorithms × seeds (resumable) and plot Fig. 1(d) with a summary table.
    Compare(CompareArgs),
}

#[derive(clap::Args, Debug)]
struct RunArgs {
    #[command(flatten)]
    settings: RunSettings,
    /// Algorithm: trpo-maml, trpo-fmaml, trpo-emaml, trpo-dice, promp, promp-taypo2, trpo-tmaml, trpo-tmaml-past.
    #[arg(long, default_value = "promp-taypo2")]
    algo: String,
    /// Seed of every random draw.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Output folder.
    #[arg(long, default_value = "results/meta-rl")]
    out: PathBuf,
    /// Continue from `OUT/checkpoint.json` (the settings must match; --iterations may grow).
    #[arg(long)]
    resume: bool,
    /// Start from the state of the run in this folder (its checkpoint: θ, optimiser state and
    /// history) with these settings, which may differ from that run's in anything that keeps
    /// the state valid (e.g. ProMP's --inner-kl-average, --kl-coeff, --adam-eps); OUT records
    /// the origin in fork.json. Continue the fork itself with --resume.
    #[arg(long, value_name = "DIR", conflicts_with = "resume")]
    fork_from: Option<PathBuf>,
}

#[derive(clap::Args, Debug)]
struct CompareArgs {
    #[command(flatten)]
    settings: RunSettings,
    /// Comma-separated algorithms, or `all` (the paper's six; trpo-tmaml and trpo-tmaml-past by name).
    #[arg(long, default_value = "all")]
    algos: String,
    /// Comma-separated seeds.
    #[arg(long, value_delimiter = ',', default_value = "1,2,3")]
    seeds: Vec<u64>,
    /// Iterations (1-based counts) at which summary.csv reports the return, besides the
    /// final one (default: a quarter, half and three quarters of --iterations).
    #[arg(long, value_delimiter = ',')]
    at: Vec<usize>,
    /// Output folder (one sub-folder per algorithm and seed).
    #[arg(long, default_value = "results/meta-rl-compare")]
    out: PathBuf,
    /// Runs at a time, each on max(1, threads / jobs) threads (same files whatever the
    /// value; memory grows with it: ≈ 0.5 GB per TRPO run on the 2-D task).
    #[arg(long, default_value_t = 1)]
    jobs: usize,
}

pub fn run(args: Args) -> Result<()> {
    match args.sub {
        Some(Sub::Compare(c)) => compare(c),
        None => {
            let r = args.run;
            let algo = Algorithm::parse(&r.algo)?;
            let params = r.settings.params(algo, r.seed)?;
            let bar = ProgressBar::new(params.iterations as u64);
            bar.set_style(style());
            bar.set_prefix(format!("{algo} seed {}", r.seed));
            let resume = if r.resume { Resume::Required } else { Resume::No };
            let mut observe = |p: Progress| {
                show(&bar, p);
                Ok(())
            };
            let history = match &r.fork_from {
                Some(from) => meta_rl::fork(&params, &r.out, from, &mut observe)?,
                None => meta_rl::run(&params, &r.out, resume, &mut observe)?,
            };
            bar.finish_and_clear();
            if let Some(last) = history.last() {
                println!(
                    "{algo} seed {}: iteration {}: pre-update return {:.2}, post-update returns {}",
                    r.seed,
                    last.iteration + 1,
                    last.pre_return,
                    returns(last, ", ", 2)
                );
            }
            eprintln!("wrote {}", r.out.display());
            Ok(())
        }
    }
}

fn style() -> ProgressStyle {
    ProgressStyle::with_template("{prefix} [{bar:30}] {pos}/{len} it, {elapsed} (eta {eta}) {msg}")
        .expect("valid template")
        .progress_chars("=> ")
}

fn returns(s: &IterationStats, sep: &str, digits: usize) -> String {
    s.post_returns.iter().map(|x| format!("{x:.digits$}")).collect::<Vec<_>>().join(sep)
}

/// Moves a run's bar: to the completed count at the start, one step per iteration with the
/// returns and the throughput.
fn show(bar: &ProgressBar, p: Progress) {
    match p {
        Progress::Started { done, .. } => bar.set_position(done as u64),
        Progress::Diverged(d) => {
            bar.suspend(|| eprintln!("warning: diverged at iteration {}: {}", d.iteration + 1, d.cause))
        }
        Progress::Iteration { stats, env_steps_per_s } => {
            bar.inc(1);
            bar.set_message(format!(
                "pre {:.1} → post {} | {:.1}k env steps/s",
                stats.pre_return,
                returns(stats, " → ", 1),
                env_steps_per_s / 1e3
            ));
        }
    }
}

fn compare(c: CompareArgs) -> Result<()> {
    let grid = GridSettings {
        algos: Algorithm::parse_list(&c.algos)?,
        seeds: c.seeds,
        at: c.at,
        out: c.out,
        run: c.settings,
    }
    .validate()?;
    let n = grid.settings().run.iterations as u64;
    let bar = ProgressBar::new(grid.runs().len() as u64 * n);
    bar.set_style(style());
    // Iterations done per run (runs may go several at a time).
    let done = std::sync::Mutex::new(vec![0u64; grid.runs().len()]);
    let advance = |run: usize, to: u64| {
        let mut d = done.lock().expect("not poisoned");
        d[run] = to;
        bar.set_position(d.iter().sum());
    };
    let rows = grid.run(c.jobs, &|g| {
        match g.progress {
            Progress::Started { done, .. } => {
                bar.set_prefix(format!(
                    "[{}/{}] {} seed {}",
                    g.run + 1,
                    g.runs,
                    g.params.algo,
                    g.params.seed
                ));
                advance(g.run, done as u64);
            }
            Progress::Diverged(d) => bar.suspend(|| {
                eprintln!(
                    "warning: {} seed {} diverged at iteration {}: {}",
                    g.params.algo,
                    g.params.seed,
                    d.iteration + 1,
                    d.cause
                )
            }),
            Progress::Iteration { stats, .. } => {
                advance(g.run, stats.iteration as u64 + 1);
                bar.set_message(format!(
                    "{} seed {}: last post-update return {:.1}",
                    g.params.algo,
                    g.params.seed,
                    stats.post_returns.last().copied().unwrap_or(stats.pre_return)
                ));
            }
        }
        Ok(())
    })?;
    bar.finish_and_clear();
    println!(
        "{:<14} {:>6} {:>5} {:>18} {:>18} {:>18}",
        "algorithm", "iter", "seeds", "post-update", "pre-update", "max drop"
    );
    for r in &rows {
        println!(
            "{:<14} {:>6} {:>5} {:>18} {:>18} {:>18}",
            r.algo,
            r.iteration,
            r.seeds,
            mean_se_text(r.seeds, r.post_return_mean, r.post_return_se, 2),
            mean_se_text(r.seeds, r.pre_return_mean, r.pre_return_se, 2),
            mean_se_text(r.seeds, r.max_drop_mean, r.max_drop_se, 2)
        );
    }
    eprintln!("wrote {}", grid.settings().out.display());
    Ok(())
}
