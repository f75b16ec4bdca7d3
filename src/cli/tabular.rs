//! `metagrad tabular`: the paper's Fig. 1 (a–c) study and the meta-gradient study.

use std::path::PathBuf;

use anyhow::Result;
use indicatif::{ProgressBar, ProgressStyle};
use metagrad::estimators::Estimator;
use metagrad::experiments::tabular_study::{StudyParams, SummaryRow, Sweep, plot_summary, summarise};
use metagrad::experiments::{RunConfig, prepare_output_dir, write_csv, write_json};
use metagrad::tabular::RandomMdpParams;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Which sweep: eps (Fig. 1 a, b), n (Fig. 1 c), meta (meta-gradients) or all.
    #[arg(long, value_enum, default_value_t = Sweep::All)]
    sweep: Sweep,
    /// ε grid (comma-separated) of the eps and meta sweeps.
    #[arg(long, value_delimiter = ',', default_value = "0,0.2,0.5,0.8")]
    eps: Vec<f64>,
    /// Trajectories per estimate in the eps and meta sweeps.
    #[arg(long, default_value_t = 1000)]
    n: usize,
    /// N grid (comma-separated) of the n sweep.
    #[arg(long, value_delimiter = ',', default_value = "10,30,100,300,1000,3000")]
    n_grid: Vec<usize>,
    /// ε of the n sweep.
    #[arg(long, default_value_t = 0.5)]
    n_sweep_eps: f64,
    /// Independent trials (new MDP, π_d, critic noise and data) per grid point.
    #[arg(long, default_value_t = 10)]
    trials: usize,
    /// Seed of every random draw.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Number of states |X|.
    #[arg(long, default_value_t = 20)]
    states: usize,
    /// Number of actions |A|.
    #[arg(long, default_value_t = 5)]
    actions: usize,
    /// Discount γ.
    #[arg(long, default_value_t = 0.8)]
    gamma: f64,
    /// Transitions per trajectory T.
    #[arg(long, default_value_t = 20)]
    horizon: usize,
    /// Dirichlet concentration of the transition rows.
    #[arg(long, default_value_t = 0.001)]
    dirichlet: f64,
    /// Scale of the critic noise (1 = notes §3: N(0,1)·‖V^μ‖₂/|X|).
    #[arg(long, default_value_t = 1.0)]
    critic_noise: f64,
    /// Comma-separated estimators: is, dr, dr-trunc, taypo-K (K ≥ 1), lvc, maml.
    #[arg(long, default_value = "is,dr,dr-trunc,taypo-1,taypo-2")]
    estimators: String,
    /// Truncation level ρ̄ = c̄ of dr-trunc.
    #[arg(long, default_value_t = 1.0)]
    truncation: f64,
    /// Inner step size η of the meta sweep.
    #[arg(long, default_value_t = metagrad::experiments::tabular_study::DEFAULT_ETA)]
    eta: f64,
    /// Output folder.
    #[arg(long, default_value = "results/tabular")]
    out: PathBuf,
}

pub fn run(args: Args) -> Result<()> {
    let estimators = Estimator::parse_list(&args.estimators, args.truncation)?;
    let params = StudyParams {
        sweep: args.sweep,
        eps: args.eps,
        n: args.n,
        n_grid: args.n_grid,
        n_sweep_eps: args.n_sweep_eps,
        trials: args.trials,
        seed: args.seed,
        mdp: RandomMdpParams {
            n_states: args.states,
            n_actions: args.actions,
            dirichlet: args.dirichlet,
            gamma: args.gamma,
            ..Default::default()
        },
        horizon: args.horizon,
        critic_noise: args.critic_noise,
        estimators,
        eta: args.eta,
    };
    let study = params.validate()?;
    prepare_output_dir(&args.out)?;
    let started = std::time::Instant::now();
    let bar = ProgressBar::new(study.n_jobs() as u64);
    bar.set_style(
        ProgressStyle::with_template(
            "{spinner} tabular [{bar:40}] {pos}/{len} grid points × trials, {elapsed} (eta {eta})",
        )
        .expect("valid template")
        .progress_chars("=> "),
    );
    let rows = study.run(&|| bar.inc(1))?;
    bar.finish_and_clear();
    let summary = summarise(&rows);
    write_csv(&args.out.join("trials.csv"), &rows)?;
    write_csv(&args.out.join("summary.csv"), &summary)?;
    let config = RunConfig::new("tabular", &*study);
    write_json(&args.out.join("config.json"), &config)?;
    let figures = plot_summary(&summary, &args.out)?;
    print_summary(&summary);
    eprintln!(
        "wrote trials.csv, summary.csv, config.json and {} figure(s) ({}) to {} in {:.1} s",
        figures.len(),
        figures.join(", "),
        args.out.display(),
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

fn print_summary(summary: &[SummaryRow]) {
    println!(
        "{:<6} {:<10} {:>5} {:>6}  {:>16}  {:>16}  {:>16}",
        "sweep", "estimator", "eps", "N", "grad corr", "hess corr", "metagrad corr"
    );
    for r in summary {
        let meta = match (r.metagrad_mean, r.metagrad_se) {
            (Some(m), Some(s)) => format!("{m:.3} ± {s:.3}"),
            _ => String::new(),
        };
        println!(
            "{:<6} {:<10} {:>5} {:>6}  {:>16}  {:>16}  {:>16}",
            r.sweep,
            r.estimator,
            r.eps,
            r.n,
            format!("{:.3} ± {:.3}", r.grad_mean, r.grad_se),
            format!("{:.3} ± {:.3}", r.hess_mean, r.hess_se),
            meta
        );
    }
}
