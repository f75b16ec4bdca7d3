//! `metagrad example-problem`: writes a problem file drawn as one trial of the tabular study.

use std::path::PathBuf;

use anyhow::Result;
use metagrad::experiments::tabular_study::{StudyParams, TrialSetup};
use metagrad::problem::{Problem, RawProblem};
use metagrad::rng::stream;
use metagrad::tabular::RandomMdpParams;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Seed of every random draw.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Off-policyness ε of the target policy π = ε π_d + (1 − ε) μ.
    #[arg(long, default_value_t = 0.5)]
    eps: f64,
    /// Number of trajectories.
    #[arg(long, default_value_t = 100)]
    n: usize,
    /// Number of states |X|.
    #[arg(long, default_value_t = 20)]
    states: usize,
    /// Number of actions |A|.
    #[arg(long, default_value_t = 5)]
    actions: usize,
    /// Transitions per trajectory T.
    #[arg(long, default_value_t = 20)]
    horizon: usize,
    /// Output file (default: standard output).
    #[arg(long)]
    output: Option<PathBuf>,
}

pub fn run(args: Args) -> Result<()> {
    let study = StudyParams {
        eps: vec![args.eps],
        n: args.n,
        seed: args.seed,
        horizon: args.horizon,
        trials: 1,
        mdp: RandomMdpParams { n_states: args.states, n_actions: args.actions, ..Default::default() },
        ..Default::default()
    }
    .validate()?;
    let setup = TrialSetup::draw(&study, 0);
    let mut rng = stream(args.seed, &[99]);
    let problem = Problem {
        policy: setup.target(args.eps),
        trajectories: setup.sample(args.n, args.horizon, &mut rng),
        mdp: setup.mdp,
        behaviour: setup.behaviour,
        critic: Some(setup.critic),
    };
    super::write_output(args.output.as_deref(), &serde_json::to_string(&RawProblem::from_problem(&problem))?)
}
