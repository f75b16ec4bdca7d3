//! `metagrad meta-rl`: one meta-RL run (paper Fig. 1 d / Fig. 2 algorithms), and
//! `metagrad meta-rl compare`: the grid of algorithms × seeds with the Fig. 1(d) plot.
//!
//! A run folder holds `config.json` (every setting), `progress.csv` (one row per
//! iteration: `iteration, pre_return, post_return_1..K, env_steps, wall_s, outer_diag`),
//! `checkpoint.json` (settings, θ, optimiser state and the iteration counter, written
//! after every iteration; all randomness of iteration i derives from (seed, i), so
//! `--resume` continues exactly as an uninterrupted run would) and
//! `learning_curve.{png,svg}`.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use clap::Subcommand;
use indicatif::{ProgressBar, ProgressStyle};
use metagrad::estimators::TaylorDiscount;
use metagrad::experiments::metrics::mean_std_se;
use metagrad::experiments::{RunConfig, prepare_output_dir, write_csv, write_json};
use metagrad::meta::algos::{
    Algorithm, IterationStats, Params, Trainer, TrainerState, ValidParams, is_point_env,
};
use metagrad::meta::objectives::Normalisation;
use metagrad::plot::{Figure, Series, save};
use metagrad::policy::Precision;
use serde::{Deserialize, Serialize};

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

/// Settings shared by a single run and a grid.
#[derive(clap::Args, Debug, Clone)]
struct Common {
    /// Environment: point-corners, point-corners-simple, or a MuJoCo meta-task (needs the
    /// `mujoco` feature).
    #[arg(long, default_value = "point-corners")]
    env: String,
    /// Meta-iterations.
    #[arg(long, default_value_t = 500)]
    iterations: usize,
    /// Tasks per iteration.
    #[arg(long, default_value_t = 40)]
    tasks: usize,
    /// Rollouts per task and sampling round.
    #[arg(long, default_value_t = 20)]
    rollouts: usize,
    /// Horizon of every rollout.
    #[arg(long, default_value_t = 100)]
    horizon: usize,
    /// Inner steps K (default: 3 for the point envs, 1 otherwise).
    #[arg(long)]
    inner_steps: Option<usize>,
    /// Inner step size η.
    #[arg(long, default_value_t = 0.1)]
    inner_lr: f64,
    /// Discount γ.
    #[arg(long, default_value_t = 0.99)]
    gamma: f64,
    /// GAE λ.
    #[arg(long, default_value_t = 1.0)]
    gae_lambda: f64,
    /// Hidden layer widths of the policy (comma-separated).
    #[arg(long, value_delimiter = ',', default_value = "64,64")]
    hidden: Vec<usize>,
    /// Floating-point type of the policy's network passes (f32 is ≈2× faster; f64 for
    /// exactness checks).
    #[arg(long, value_enum, default_value_t = Precision::F32)]
    precision: Precision,
    /// Normalisation of the inner objectives: mean over samples or over paths.
    #[arg(long, value_enum, default_value_t = Normalisation::Samples)]
    normalisation: Normalisation,
    /// TayPO-K / naive-score discount: γ^{t2−t1} (from-first, ProMP) or γ^{t} (absolute).
    #[arg(long, value_parser = ["from-first", "absolute"], default_value = "from-first")]
    taypo_discount: String,
    /// Do not rescale DR's rewards and critic by the task's advantage std.
    #[arg(long)]
    no_dr_normalise: bool,
    /// TRPO: bound on the mean KL of a step.
    #[arg(long, default_value_t = 0.01)]
    max_kl: f64,
    /// ProMP: PPO clip ε.
    #[arg(long, default_value_t = 0.3)]
    ppo_clip: f64,
    /// ProMP: inner KL penalty coefficient.
    #[arg(long, default_value_t = 5e-4)]
    kl_coeff: f64,
    /// ProMP: Adam learning rate.
    #[arg(long, default_value_t = 1e-3)]
    adam_lr: f64,
    /// ProMP: Adam steps per iteration.
    #[arg(long, default_value_t = 5)]
    promp_steps: usize,
    /// E-MAML: weight of the exploration term.
    #[arg(long, default_value_t = 1.0)]
    emaml_weight: f64,
}

#[derive(clap::Args, Debug)]
struct RunArgs {
    #[command(flatten)]
    common: Common,
    /// Algorithm: trpo-maml, trpo-fmaml, trpo-emaml, trpo-dice, promp, promp-taypo2.
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
}

#[derive(clap::Args, Debug)]
struct CompareArgs {
    #[command(flatten)]
    common: Common,
    /// Comma-separated algorithms, or `all`.
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
}

impl Common {
    fn params(&self, algo: Algorithm, seed: u64) -> Result<ValidParams> {
        let mut p = Params::new(&self.env, algo);
        p.seed = seed;
        p.iterations = self.iterations;
        p.tasks = self.tasks;
        p.rollouts = self.rollouts;
        p.horizon = self.horizon;
        p.inner_steps = self.inner_steps;
        p.inner_lr = self.inner_lr;
        p.gamma = self.gamma;
        p.gae_lambda = self.gae_lambda;
        p.hidden = self.hidden.clone();
        p.precision = self.precision;
        p.normalisation = self.normalisation;
        p.taypo_discount = if self.taypo_discount == "absolute" {
            TaylorDiscount::Absolute
        } else {
            TaylorDiscount::FromFirst
        };
        p.dr_normalise = !self.no_dr_normalise;
        p.trpo.max_kl = self.max_kl;
        p.ppo_clip = self.ppo_clip;
        p.kl_coeff = self.kl_coeff;
        p.adam_lr = self.adam_lr;
        p.promp_steps = self.promp_steps;
        p.emaml_weight = self.emaml_weight;
        Ok(p.validate()?)
    }
}

pub fn run(args: Args) -> Result<()> {
    match args.sub {
        Some(Sub::Compare(c)) => compare(c),
        None => {
            let r = args.run;
            let algo = Algorithm::parse(&r.algo)?;
            let params = r.common.params(algo, r.seed)?;
            let bar = ProgressBar::new(params.iterations as u64);
            bar.set_style(style());
            bar.set_prefix(format!("{algo} seed {}", r.seed));
            let history = run_one(&params, &r.out, r.resume, false, &bar)?;
            bar.finish_and_clear();
            if let Some(last) = history.last() {
                println!(
                    "{algo} seed {}: iteration {}: pre-update return {:.2}, post-update returns {}",
                    r.seed,
                    last.iteration + 1,
                    last.pre_return,
                    last.post_returns.iter().map(|x| format!("{x:.2}")).collect::<Vec<_>>().join(", ")
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

/// The checkpoint file: settings and state.
#[derive(Serialize, Deserialize)]
struct Checkpoint {
    params: Params,
    state: TrainerState,
}

/// Settings that must agree for a resume (everything but the iteration budget).
fn same_run(a: &Params, b: &Params) -> bool {
    Params { iterations: 0, ..a.clone() } == Params { iterations: 0, ..b.clone() }
}

/// Runs (or resumes) one run in `out`; with `resume_if_present`, an existing checkpoint
/// is continued without asking (the grid). Returns the history.
fn run_one(
    params: &ValidParams,
    out: &Path,
    resume: bool,
    resume_if_present: bool,
    bar: &ProgressBar,
) -> Result<Vec<IterationStats>> {
    prepare_output_dir(out)?;
    let ckpt_path = out.join("checkpoint.json");
    let mut trainer = if ckpt_path.exists() && (resume || resume_if_present) {
        let text = std::fs::read_to_string(&ckpt_path)
            .with_context(|| format!("cannot read {}", ckpt_path.display()))?;
        let ck: Checkpoint = serde_json::from_str(&text)
            .with_context(|| format!("cannot parse checkpoint {}", ckpt_path.display()))?;
        if !same_run(&ck.params, params) {
            bail!(
                "invalid --resume: the settings differ from those of {} (only --iterations may change); \
                 use another --out for a new run",
                ckpt_path.display()
            );
        }
        Trainer::resume(params.clone(), ck.state)?
    } else if ckpt_path.exists() {
        bail!(
            "{} holds a run already: pass --resume to continue it or choose another --out",
            ckpt_path.display()
        );
    } else if resume {
        bail!("invalid --resume: no checkpoint at {}", ckpt_path.display());
    } else {
        Trainer::new(params.clone())?
    };
    // Written by the binary that runs iterations (a finished run keeps the record of the
    // binary that produced it, so that `compare` re-summarising it does not overwrite that).
    if !trainer.finished() || !out.join("config.json").exists() {
        write_json(&out.join("config.json"), &RunConfig::new("meta-rl", &**params))?;
    }
    bar.set_position(trainer.state().iteration as u64);
    while !trainer.finished() {
        let (steps_before, wall_before) = (trainer.state().env_steps, trainer.state().wall_s);
        let s = trainer.step()?;
        bar.inc(1);
        // Throughput of the whole iteration (sampling and update), in env steps per second.
        let rate = (s.env_steps - steps_before) as f64 / (s.wall_s - wall_before).max(1e-9);
        bar.set_message(format!(
            "pre {:.1} → post {} | {:.1}k env steps/s",
            s.pre_return,
            s.post_returns.iter().map(|x| format!("{x:.1}")).collect::<Vec<_>>().join(" → "),
            rate / 1e3
        ));
        write_progress(&out.join("progress.csv"), &trainer.state().history)?;
        let ck = Checkpoint { params: (**params).clone(), state: trainer.state().clone() };
        let tmp = out.join("checkpoint.json.tmp");
        std::fs::write(&tmp, serde_json::to_string(&ck)?)
            .with_context(|| format!("cannot write {}", tmp.display()))?;
        std::fs::rename(&tmp, &ckpt_path).with_context(|| format!("cannot write {}", ckpt_path.display()))?;
    }
    let history = trainer.state().history.clone();
    write_progress(&out.join("progress.csv"), &history)?;
    plot_run(
        &history,
        &format!("{} on {} (seed {})", params.algo, params.env, params.seed),
        &out.join("learning_curve"),
    )?;
    Ok(history)
}

fn write_progress(path: &Path, history: &[IterationStats]) -> Result<()> {
    let k = history.first().map_or(0, |h| h.post_returns.len());
    let mut w = csv::Writer::from_path(path).with_context(|| format!("cannot write {}", path.display()))?;
    let mut header = vec!["iteration".to_string(), "pre_return".into()];
    header.extend((1..=k).map(|i| format!("post_return_{i}")));
    header.extend(["env_steps".into(), "wall_s".into(), "outer_diag".into()]);
    w.write_record(&header)?;
    for h in history {
        let mut rec = vec![h.iteration.to_string(), h.pre_return.to_string()];
        rec.extend(h.post_returns.iter().map(|x| x.to_string()));
        rec.extend([h.env_steps.to_string(), format!("{:.3}", h.wall_s), h.outer_diag.to_string()]);
        w.write_record(&rec)?;
    }
    w.flush()?;
    Ok(())
}

fn plot_run(history: &[IterationStats], title: &str, stem: &Path) -> Result<()> {
    if history.is_empty() {
        return Ok(());
    }
    let x: Vec<f64> = history.iter().map(|h| h.iteration as f64).collect();
    let mut series = vec![Series {
        name: "pre-update".into(),
        x: x.clone(),
        y: history.iter().map(|h| h.pre_return).collect(),
        err: None,
    }];
    for k in 0..history[0].post_returns.len() {
        series.push(Series {
            name: format!("after {} inner step{}", k + 1, if k == 0 { "" } else { "s" }),
            x: x.clone(),
            y: history.iter().map(|h| h.post_returns[k]).collect(),
            err: None,
        });
    }
    let fig = Figure {
        title: title.into(),
        x_label: "iteration".into(),
        y_label: "average return".into(),
        log_x: false,
        series,
    };
    save(&fig, stem)?;
    Ok(())
}

/// One row of the grid's `summary.csv`.
#[derive(Serialize)]
struct SummaryRow {
    algo: String,
    /// Iteration count (1-based) the row reports.
    iteration: usize,
    /// Whether this is the final iteration.
    is_final: bool,
    seeds: usize,
    /// Mean across seeds of the return after the last inner step.
    post_return_mean: f64,
    post_return_se: f64,
    pre_return_mean: f64,
    pre_return_se: f64,
    /// Mean across seeds of the largest drop of the post-update return below its running
    /// best up to this iteration (0 for a curve that never falls back): an instability
    /// measure, the paper's reading of Fig. 1(d).
    max_drop_mean: f64,
    max_drop_se: f64,
    /// Mean across seeds of a run's wall-clock time up to this iteration (seconds; summed
    /// over sittings for resumed runs).
    wall_s_mean: f64,
}

/// The summary as a Markdown table (the README's format): one row per algorithm with the
/// post-update return (mean ± s.e. over seeds) at every reported iteration, then the max
/// drop and the pre-update return at the last one.
fn summary_markdown(rows: &[SummaryRow]) -> String {
    let mut iters: Vec<usize> = rows.iter().map(|r| r.iteration).collect();
    iters.sort_unstable();
    iters.dedup();
    let last = iters.last().copied().unwrap_or(0);
    let pm = |m: f64, se: f64| format!("{m:.1} ± {se:.1}");
    let mut out = String::from("| algorithm |");
    for i in &iters {
        out += &format!(" it. {i} |");
    }
    out += &format!(" max drop by it. {last} | pre-update, it. {last} | minutes per run |\n|---|");
    out += &"---|".repeat(iters.len() + 3);
    out.push('\n');
    let mut algos: Vec<&str> = Vec::new();
    for r in rows {
        if !algos.contains(&r.algo.as_str()) {
            algos.push(&r.algo);
        }
    }
    for a in algos {
        let cell = |i: usize| rows.iter().find(|r| r.algo == a && r.iteration == i);
        out += &format!("| {a} |");
        for &i in &iters {
            out +=
                &format!(" {} |", cell(i).map_or("–".into(), |r| pm(r.post_return_mean, r.post_return_se)));
        }
        match cell(last) {
            Some(r) => {
                out += &format!(
                    " {} | {} | {:.1} |\n",
                    pm(r.max_drop_mean, r.max_drop_se),
                    pm(r.pre_return_mean, r.pre_return_se),
                    r.wall_s_mean / 60.0
                )
            }
            None => out += " – | – | – |\n",
        }
    }
    out
}

/// Largest fall of `ys` below its running maximum (0 if it never falls).
fn max_drop(ys: impl Iterator<Item = f64>) -> f64 {
    let (mut best, mut drop) = (f64::NEG_INFINITY, 0.0f64);
    for y in ys {
        best = best.max(y);
        drop = drop.max(best - y);
    }
    drop
}

fn compare(c: CompareArgs) -> Result<()> {
    let algos: Vec<Algorithm> = if c.algos.trim() == "all" {
        Algorithm::ALL.to_vec()
    } else {
        c.algos
            .split(',')
            .filter(|s| !s.trim().is_empty())
            .map(Algorithm::parse)
            .collect::<metagrad::Result<_>>()?
    };
    if algos.is_empty() {
        bail!("invalid --algos: no algorithm named in {:?}", c.algos);
    }
    if c.seeds.is_empty() {
        bail!("invalid --seeds: needs at least one seed");
    }
    let n = c.common.iterations;
    let mut at: Vec<usize> = if c.at.is_empty() { vec![n / 4, n / 2, 3 * n / 4] } else { c.at.clone() };
    if let Some(bad) = at.iter().find(|&&a| a > n) {
        bail!("invalid --at: {bad} exceeds --iterations {n}");
    }
    at.retain(|&a| a >= 1);
    at.push(n);
    at.sort_unstable();
    at.dedup();
    prepare_output_dir(&c.out)?;
    let runs: Vec<(Algorithm, u64)> =
        algos.iter().flat_map(|&a| c.seeds.iter().map(move |&s| (a, s))).collect();
    // Validate everything before running anything.
    let params: Vec<ValidParams> = runs.iter().map(|&(a, s)| c.common.params(a, s)).collect::<Result<_>>()?;
    let bar = ProgressBar::new((runs.len() * n) as u64);
    bar.set_style(style());
    let mut histories = Vec::new();
    for (i, ((algo, seed), p)) in runs.iter().zip(&params).enumerate() {
        bar.set_prefix(format!("[{}/{}] {algo} seed {seed}", i + 1, runs.len()));
        let sub = ProgressBar::hidden();
        let dir = c.out.join(algo.name()).join(format!("seed{seed}"));
        let before = bar.position();
        let h = run_one(p, &dir, false, true, &sub)?;
        bar.set_position(before + n as u64);
        if let Some(last) = h.last() {
            bar.set_message(format!(
                "last post-update return {:.1}",
                last.post_returns.last().copied().unwrap_or(last.pre_return)
            ));
        }
        histories.push(h);
    }
    bar.finish_and_clear();
    let mut rows = Vec::new();
    let mut series = Vec::new();
    for &algo in &algos {
        let hs: Vec<&Vec<IterationStats>> =
            runs.iter().zip(&histories).filter(|((a, _), _)| *a == algo).map(|(_, h)| h).collect();
        let post = |h: &IterationStats| h.post_returns.last().copied().unwrap_or(h.pre_return);
        let stat = |i: usize, f: &dyn Fn(&IterationStats) -> f64| {
            let v: Vec<f64> = hs.iter().filter_map(|h| h.get(i)).map(f).collect();
            let (m, _, se) = mean_std_se(&v);
            (m, se, v.len())
        };
        let (x, y, err): (Vec<f64>, Vec<f64>, Vec<f64>) = {
            let (mut x, mut y, mut e) = (Vec::new(), Vec::new(), Vec::new());
            for i in 0..n {
                let (m, se, _) = stat(i, &post);
                x.push(i as f64);
                y.push(m);
                e.push(if se.is_finite() { se } else { 0.0 });
            }
            (x, y, e)
        };
        series.push(Series { name: algo.name().into(), x, y, err: Some(err) });
        for &a in &at {
            let (pm, pse, seeds) = stat(a - 1, &post);
            let (qm, qse, _) = stat(a - 1, &|h: &IterationStats| h.pre_return);
            let drops: Vec<f64> =
                hs.iter().filter(|h| h.len() >= a).map(|h| max_drop(h[..a].iter().map(post))).collect();
            let (dm, _, dse) = mean_std_se(&drops);
            let (wm, _, _) = stat(a - 1, &|h: &IterationStats| h.wall_s);
            rows.push(SummaryRow {
                algo: algo.name().into(),
                iteration: a,
                is_final: a == n,
                seeds,
                post_return_mean: pm,
                post_return_se: pse,
                pre_return_mean: qm,
                pre_return_se: qse,
                max_drop_mean: dm,
                max_drop_se: dse,
                wall_s_mean: wm,
            });
        }
    }
    write_csv(&c.out.join("summary.csv"), &rows)?;
    std::fs::write(c.out.join("summary.md"), summary_markdown(&rows))
        .with_context(|| format!("cannot write {}", c.out.join("summary.md").display()))?;
    let fig = Figure {
        title: format!("{}: post-update return, mean ± s.e. over {} seeds", c.common.env, c.seeds.len()),
        x_label: "iteration".into(),
        y_label: "average return after adaptation".into(),
        log_x: false,
        series,
    };
    // The paper's figure: 1(d) for the 2-D task, 2 for the MuJoCo tasks.
    let stem = if is_point_env(&c.common.env) { "fig1d" } else { "fig2" };
    save(&fig, &c.out.join(stem))?;
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
            format!("{:.2} ± {:.2}", r.post_return_mean, r.post_return_se),
            format!("{:.2} ± {:.2}", r.pre_return_mean, r.pre_return_se),
            format!("{:.2} ± {:.2}", r.max_drop_mean, r.max_drop_se)
        );
    }
    eprintln!("wrote {}", c.out.display());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::{SummaryRow, max_drop, summary_markdown};

    #[test]
    fn summary_markdown_has_one_row_per_algorithm() {
        let row = |algo: &str, iteration: usize, m: f64| SummaryRow {
            algo: algo.into(),
            iteration,
            is_final: iteration == 20,
            seeds: 3,
            post_return_mean: m,
            post_return_se: 0.25,
            pre_return_mean: -1.0,
            pre_return_se: 0.5,
            max_drop_mean: 2.0,
            max_drop_se: 0.125,
            wall_s_mean: 90.0,
        };
        let md = summary_markdown(&[row("promp", 10, 1.0), row("promp", 20, 3.0), row("trpo-maml", 10, 2.0)]);
        let lines: Vec<&str> = md.lines().collect();
        assert_eq!(
            lines[0],
            "| algorithm | it. 10 | it. 20 | max drop by it. 20 | pre-update, it. 20 | minutes per run |"
        );
        assert_eq!(lines[1], "|---|---|---|---|---|---|");
        assert_eq!(lines[2], "| promp | 1.0 ± 0.2 | 3.0 ± 0.2 | 2.0 ± 0.1 | -1.0 ± 0.5 | 1.5 |");
        assert_eq!(lines[3], "| trpo-maml | 2.0 ± 0.2 | – | – | – | – |");
        assert_eq!(lines.len(), 4);
    }

    #[test]
    fn max_drop_is_the_largest_fall_below_the_running_best() {
        assert_eq!(max_drop([1.0, 2.0, 3.0].into_iter()), 0.0);
        assert_eq!(max_drop([5.0, 1.0, 6.0, 4.0].into_iter()), 4.0);
        assert_eq!(max_drop([2.0, 9.0, 7.0, 1.0, 10.0].into_iter()), 8.0);
        assert_eq!(max_drop(std::iter::empty()), 0.0);
    }
}
