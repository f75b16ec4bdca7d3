//! `metagrad estimate`: exact and estimated derivatives for a problem file.

use std::collections::BTreeMap;
use std::path::PathBuf;

use anyhow::Result;
use metagrad::estimators::Estimator;
use metagrad::limits::{DEFAULT_MAX_INPUT_BYTES, DEFAULT_MAX_PARAMS, DEFAULT_MAX_STEPS, Limits};
use metagrad::problem::Problem;
use metagrad::tabular::oracle::Derivatives;
use serde::Serialize;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Problem file (JSON; schema in docs/guides/cli.md), or `-` for standard input.
    #[arg(long)]
    input: PathBuf,
    /// Largest input accepted, in MiB.
    #[arg(long, default_value_t = DEFAULT_MAX_INPUT_BYTES >> 20)]
    max_input_mb: u64,
    /// Largest parameter count D = |X|·|A| accepted (each Hessian in the output is D×D).
    #[arg(long, default_value_t = DEFAULT_MAX_PARAMS)]
    max_params: usize,
    /// Largest total number of steps Σ_n T_n over the trajectories.
    #[arg(long, default_value_t = DEFAULT_MAX_STEPS)]
    max_steps: usize,
    /// Comma-separated estimators: is, dr, dr-trunc, taypo-K (K ≥ 1), lvc, maml.
    #[arg(long, default_value = "is,dr,dr-trunc,taypo-1,taypo-2")]
    estimators: String,
    /// Truncation level ρ̄ = c̄ of dr-trunc.
    #[arg(long, default_value_t = 1.0)]
    truncation: f64,
    /// Output file (default: standard output).
    #[arg(long)]
    output: Option<PathBuf>,
}

/// Value, gradient (|X|×|A|) and Hessian (D×D).
#[derive(Serialize)]
struct Out {
    value: f64,
    gradient: Vec<Vec<f64>>,
    hessian: Vec<Vec<f64>>,
}

impl Out {
    fn new(d: Derivatives, n_actions: usize) -> Self {
        let dim = d.gradient.len();
        Self {
            value: d.value,
            gradient: d.gradient.chunks(n_actions).map(<[f64]>::to_vec).collect(),
            hessian: d.hessian.chunks(dim).map(<[f64]>::to_vec).collect(),
        }
    }
}

#[derive(Serialize)]
struct Report {
    exact: Out,
    estimates: BTreeMap<String, Out>,
}

pub fn run(args: Args) -> Result<()> {
    let estimators = Estimator::parse_list(&args.estimators, args.truncation)?;
    let limits = Limits {
        max_input_bytes: args.max_input_mb.checked_mul(1 << 20).ok_or_else(|| {
            metagrad::error::invalid(
                "max-input-mb",
                format!("{} MiB overflows a byte count", args.max_input_mb),
            )
        })?,
        max_params: args.max_params,
        max_steps: args.max_steps,
    };
    let problem = Problem::load_with(&args.input, &limits)?;
    problem.check_estimators(&estimators)?;
    let na = problem.mdp.n_actions();
    let mut estimates = BTreeMap::new();
    for e in estimators {
        estimates.insert(e.name(), Out::new(problem.estimate(e)?, na));
    }
    let exact = problem.exact();
    exact.ensure_finite("exact")?;
    let report = Report { exact: Out::new(exact, na), estimates };
    super::write_output(args.output.as_deref(), &serde_json::to_string_pretty(&report)?)
}
