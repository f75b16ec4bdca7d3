//! Meta-RL runs and grids with their result files (paper Fig. 1 d and Fig. 2): the one
//! implementation behind `metagrad meta-rl`, `metagrad meta-rl compare` and the Python
//! package's `metagrad.meta_rl`.
//!
//! A run folder holds `config.json` (every setting), `progress.csv` (one row per
//! iteration: `iteration, pre_return, post_return_1..K, env_steps, wall_s, outer_diag`),
//! `checkpoint.json` (settings, θ, optimiser state and the iteration counter, written
//! after every iteration; all randomness of iteration i derives from (seed, i), so a
//! resumed run continues exactly as an uninterrupted run would) and
//! `learning_curve.{png,svg}`. A grid folder holds one run folder per algorithm and seed
//! (`<algo>/seed<s>/`), `summary.csv`, `paired.csv` (per seed, the paired differences of
//! every two algorithms: [`paired_differences`]), `summary.md` (both as tables) and the
//! figure (`fig1d` for the 2-D task, `fig2` for a MuJoCo task).

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::metrics::mean_std_se;
use super::{RunConfig, csv_io, first_seen, prepare_output_dir, write_csv, write_csv_or_header, write_json};
use crate::envs::EnvSource;
use crate::error::{Error, Result, invalid};
use crate::estimators::{Taylor2Pairs, TaylorDiscount};
use crate::meta::algos::{
    Algorithm, Divergence, IterationStats, MetaTest, Params, Trainer, TrainerState, ValidParams, is_point_env,
};
use crate::meta::objectives::{DiceCritic, Normalisation};
use crate::meta::task_sampling::RemoteSampling;
use crate::plot::{Figure, Series, save_or_skip};
use crate::policy::Precision;

/// Settings shared by a single run and a grid, under the command line's names and with
/// its defaults (ProMP's setup, docs/theory.md#meta-rl-setup). The command line flattens this
/// struct; the Python package fills it from keyword arguments (unknown names are refused).
#[derive(clap::Args, Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RunSettings {
    /// Environment: point-corners, point-corners-simple, or a MuJoCo meta-task (needs the
    /// `mujoco` feature).
    #[arg(long, default_value = "point-corners")]
    pub env: String,
    /// Meta-iterations.
    #[arg(long, default_value_t = 500)]
    pub iterations: usize,
    /// Tasks per iteration.
    #[arg(long, default_value_t = 40)]
    pub tasks: usize,
    /// Rollouts per task and sampling round.
    #[arg(long, default_value_t = 20)]
    pub rollouts: usize,
    /// Horizon of every rollout.
    #[arg(long, default_value_t = 100)]
    pub horizon: usize,
    /// Inner steps K (default: 3 for the point envs, 1 otherwise).
    #[arg(long)]
    pub inner_steps: Option<usize>,
    /// Inner step size η.
    #[arg(long, default_value_t = 0.1)]
    pub inner_lr: f64,
    /// Discount γ.
    #[arg(long, default_value_t = 0.99)]
    pub gamma: f64,
    /// GAE λ.
    #[arg(long, default_value_t = 1.0)]
    pub gae_lambda: f64,
    /// Hidden layer widths of the policy (comma-separated).
    #[arg(long, value_delimiter = ',', default_value = "64,64")]
    pub hidden: Vec<usize>,
    /// Floating-point type of the policy's network passes (f32 is ≈2× faster; f64 for
    /// exactness checks).
    #[arg(long, value_enum, default_value_t = Precision::F32)]
    pub precision: Precision,
    /// Normalisation of the inner objectives: mean over samples or over paths.
    #[arg(long, value_enum, default_value_t = Normalisation::Samples)]
    pub normalisation: Normalisation,
    /// TayPO-K / naive-score discount: γ^{t2−t1} (from-first, ProMP) or γ^{t} (absolute).
    #[arg(long, value_enum, default_value_t = TaylorDiscount::FromFirst)]
    pub taypo_discount: TaylorDiscount,
    /// Do not rescale DR's rewards and critic by the task's advantage std.
    #[arg(long)]
    pub no_dr_normalise: bool,
    /// TRPO-DiCE's critic: time (time-only linear fit, the paper's setup), features (the
    /// observation-feature baseline) or promp (ProMP's own DiCE loss).
    #[arg(long, value_enum, default_value_t = DiceCritic::Time)]
    pub dice_critic: DiceCritic,
    /// ProMP-TayPO-2: weighting of the pair term: discounted (the paper's Eq. 6) or
    /// normalised (per path by its first-order over its pair weight).
    #[arg(long, value_enum, default_value_t = Taylor2Pairs::Discounted)]
    pub taypo2_pairs: Taylor2Pairs,
    /// ProMP-TayPO-2: clip ρ_t − 1 in the inner objective to ± this bound, as PPO clips
    /// (default: no clip).
    #[arg(long)]
    pub taypo2_ratio_clip: Option<f64>,
    /// TRPO: bound on the mean KL of a step.
    #[arg(long, default_value_t = 0.01)]
    pub max_kl: f64,
    /// ProMP: PPO clip ε.
    #[arg(long, default_value_t = 0.3)]
    pub ppo_clip: f64,
    /// ProMP: inner KL penalty coefficient.
    #[arg(long, default_value_t = 5e-4)]
    pub kl_coeff: f64,
    /// ProMP: Adam learning rate.
    #[arg(long, default_value_t = 1e-3)]
    pub adam_lr: f64,
    /// ProMP: Adam steps per iteration.
    #[arg(long, default_value_t = 5)]
    pub promp_steps: usize,
    /// E-MAML: weight of the exploration term.
    #[arg(long, default_value_t = 1.0)]
    pub emaml_weight: f64,
    /// Divergence guard: stop a run (marked diverged in the summary) when an outer loss is
    /// not finite or exceeds this (`inf` disables it).
    #[arg(long, default_value_t = 10.0)]
    pub divergence_threshold: f64,
    /// ProMP algorithms: also stop a run (marked diverged) when the largest |ρ − 1| on the
    /// inner data during its outer steps exceeds this (default: no such guard).
    #[arg(long)]
    pub ratio_guard: Option<f64>,
    /// Largest number of environment steps per iteration, tasks × rollouts × horizon ×
    /// (inner steps + 1), accepted.
    #[arg(long, default_value_t = crate::limits::DEFAULT_MAX_META_STEPS)]
    pub max_steps_per_iteration: usize,
    /// Meta-test: evaluate on fresh tasks (of the test split, for environments that have
    /// one) every this many iterations and after the last; 0: never.
    #[arg(long, default_value_t = 0)]
    pub test_every: usize,
    /// Meta-test: tasks per evaluation (default: --tasks).
    #[arg(long)]
    pub test_tasks: Option<usize>,
    /// Meta-test: evaluation episodes per task with the adapted policy.
    #[arg(long, default_value_t = 3)]
    pub test_episodes: usize,
}

impl Default for RunSettings {
    /// The command line's defaults (one source: the `#[arg]` attributes above).
    fn default() -> Self {
        super::command_line_defaults()
    }
}

impl RunSettings {
    /// The validated settings of one run of `algo` with `seed` on the built-in environment
    /// named by `env`.
    pub fn params(&self, algo: Algorithm, seed: u64) -> Result<ValidParams> {
        self.params_in(algo, seed, EnvSource::Builtin(self.env.clone()), None)
    }

    /// [`Self::params`] on the environment `env` (e.g. a user's, outside the crate; `env`
    /// of these settings is then ignored), with the meta-test's tasks drawn from `test_env`
    /// (default: `env`).
    pub fn params_in(
        &self,
        algo: Algorithm,
        seed: u64,
        env: EnvSource,
        test_env: Option<EnvSource>,
    ) -> Result<ValidParams> {
        let mut p = Params::new(env.name(), algo);
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
        p.taypo_discount = self.taypo_discount;
        p.dr_normalise = !self.no_dr_normalise;
        p.dice_critic = Some(self.dice_critic);
        p.taypo2_pairs = self.taypo2_pairs;
        p.taypo2_ratio_clip = self.taypo2_ratio_clip;
        p.trpo.max_kl = self.max_kl;
        p.ppo_clip = self.ppo_clip;
        p.kl_coeff = self.kl_coeff;
        p.adam_lr = self.adam_lr;
        p.promp_steps = self.promp_steps;
        p.emaml_weight = self.emaml_weight;
        p.divergence_threshold = self.divergence_threshold;
        p.ratio_guard = self.ratio_guard;
        p.meta_test = (self.test_every > 0).then(|| MetaTest {
            every: self.test_every,
            tasks: self.test_tasks.unwrap_or(self.tasks),
            episodes: self.test_episodes,
        });
        p.validate_in(self.max_steps_per_iteration, env, test_env)
    }
}

/// What to do with an existing checkpoint in a run folder.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Resume {
    /// Start a new run; refuse a folder that holds one.
    No,
    /// Continue the run in the folder; refuse a folder without one.
    Required,
    /// Continue a run if the folder holds one, start one otherwise (grids).
    IfPresent,
}

/// What a run reports while it goes.
#[derive(Clone, Copy, Debug)]
pub enum Progress<'a> {
    /// The run starts (`done` = iterations already completed by earlier sittings).
    Started {
        /// Completed iterations.
        done: usize,
        /// The iteration budget.
        total: usize,
    },
    /// The divergence guard stopped the run (after the diverging iteration's checkpoint).
    Diverged(&'a Divergence),
    /// An iteration finished and its checkpoint is on disk.
    Iteration {
        /// Its results.
        stats: &'a IterationStats,
        /// Environment steps per second of the whole iteration (sampling and update).
        env_steps_per_s: f64,
    },
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

fn read_checkpoint(path: &Path) -> Result<Checkpoint> {
    let text =
        crate::limits::read_bounded_as(path, crate::limits::DEFAULT_MAX_INPUT_BYTES, "checkpoint", None)?;
    let ck: Checkpoint = serde_json::from_str(&text)
        .map_err(|source| Error::Parse { context: format!("checkpoint {}", path.display()), source })?;
    Ok(Checkpoint { params: ck.params.upgrade_legacy(), state: ck.state })
}

/// Runs (or resumes, see [`Resume`]) one run in `out`, calling `observe` when it starts and
/// after every iteration (an error from `observe` stops the run there, with that
/// iteration's checkpoint written). Returns the whole history.
pub fn run(
    params: &ValidParams,
    out: &Path,
    resume: Resume,
    observe: &mut dyn FnMut(Progress) -> Result<()>,
) -> Result<Vec<IterationStats>> {
    run_with(params, out, resume, None, observe)
}

/// [`run`] with every iteration's tasks sampled by `remote` when given (e.g. by workers in
/// other processes, [`crate::meta::task_sampling`]): the same files, bit for bit.
pub fn run_with(
    params: &ValidParams,
    out: &Path,
    resume: Resume,
    mut remote: Option<&mut dyn RemoteSampling>,
    observe: &mut dyn FnMut(Progress) -> Result<()>,
) -> Result<Vec<IterationStats>> {
    prepare_output_dir(out)?;
    let ckpt_path = out.join("checkpoint.json");
    let present = ckpt_path.exists();
    let mut trainer = match (present, resume) {
        (true, Resume::Required | Resume::IfPresent) => {
            let ck = read_checkpoint(&ckpt_path)?;
            if !same_run(&ck.params, params) {
                return Err(invalid(
                    "resume",
                    format!(
                        "the settings differ from those of {} (only the iteration budget may change); \
                         use another output folder for a new run",
                        ckpt_path.display()
                    ),
                ));
            }
            Trainer::resume(params.clone(), ck.state)?
        }
        (true, Resume::No) => {
            return Err(invalid(
                "out",
                format!(
                    "{} holds a run already: continue it with resume (--resume on the command line, \
                     resume=True in Python) or choose another output folder",
                    ckpt_path.display()
                ),
            ));
        }
        (false, Resume::Required) => {
            return Err(invalid(
                "resume",
                format!("no checkpoint at {} to continue (--resume / resume=True)", ckpt_path.display()),
            ));
        }
        (false, _) => Trainer::new(params.clone())?,
    };
    // Written by the binary that runs iterations (a finished run keeps the record of the
    // binary that produced it, so that re-summarising it does not overwrite that).
    if !trainer.finished() || !out.join("config.json").exists() {
        write_json(&out.join("config.json"), &RunConfig::new("meta-rl", &**params))?;
    }
    observe(Progress::Started { done: trainer.state().iteration, total: params.iterations })?;
    while !trainer.finished() {
        let (steps_before, wall_before) = (trainer.state().env_steps, trainer.state().wall_s);
        let s = trainer.step_with(remote.as_deref_mut())?;
        write_progress(&out.join("progress.csv"), &trainer.state().history)?;
        let ck = Checkpoint { params: (**params).clone(), state: trainer.state().clone() };
        let text = serde_json::to_string(&ck).expect("a checkpoint serialises");
        crate::atomic::write_bytes(&ckpt_path, text.as_bytes())?;
        let rate = (s.env_steps - steps_before) as f64 / (s.wall_s - wall_before).max(1e-9);
        observe(Progress::Iteration { stats: &s, env_steps_per_s: rate })?;
    }
    if let Some(d) = &trainer.state().diverged {
        observe(Progress::Diverged(d))?;
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

/// A run's history and, if the divergence guard stopped it, why.
#[derive(Clone, Debug)]
pub struct RunRecord {
    /// Every finished iteration.
    pub history: Vec<IterationStats>,
    /// Set when the run diverged.
    pub diverged: Option<Divergence>,
}

/// The record of the run in `dir` (from its checkpoint).
pub fn load_run(dir: &Path) -> Result<RunRecord> {
    let state = read_checkpoint(&dir.join("checkpoint.json"))?.state;
    Ok(RunRecord { history: state.history, diverged: state.diverged })
}

fn write_progress(path: &Path, history: &[IterationStats]) -> Result<()> {
    let k = history.first().map_or(0, |h| h.post_returns.len());
    let steps = history.iter().map(|h| h.diagnostics.outer_losses.len()).max().unwrap_or(0);
    crate::atomic::write_with(path, |out| {
        let mut w = csv::Writer::from_writer(out);
        let mut header = vec!["iteration".to_string(), "pre_return".into()];
        header.extend((1..=k).map(|i| format!("post_return_{i}")));
        header.extend(["env_steps".into(), "wall_s".into(), "outer_diag".into()]);
        header.extend([
            "inner_step_norm_mean".into(),
            "inner_step_norm_max".into(),
            "max_inner_ratio_dev".into(),
        ]);
        header.extend((1..=steps).map(|i| format!("outer_loss_{i}")));
        // Success rates (environments that report success) and the meta-test (runs that
        // evaluate): columns only when some iteration has them.
        let success = history.iter().any(|h| h.pre_success.is_some());
        let test = history.iter().any(|h| h.test.is_some());
        let test_success = history.iter().any(|h| h.test.as_ref().is_some_and(|t| t.pre_success.is_some()));
        if success {
            header.push("pre_success".into());
            header.extend((1..=k).map(|i| format!("post_success_{i}")));
        }
        if test {
            header.extend(["test_pre_return".into(), "test_post_return".into()]);
        }
        if test_success {
            header.extend(["test_pre_success".into(), "test_post_success".into()]);
        }
        w.write_record(&header).map_err(csv_io)?;
        for h in history {
            let d = &h.diagnostics;
            let mut rec = vec![h.iteration.to_string(), h.pre_return.to_string()];
            rec.extend(h.post_returns.iter().map(|x| x.to_string()));
            rec.extend([h.env_steps.to_string(), format!("{:.3}", h.wall_s), h.outer_diag.to_string()]);
            rec.extend(
                [d.inner_step_norm_mean, d.inner_step_norm_max, d.max_inner_ratio_dev].map(|x| x.to_string()),
            );
            // Runs saved before the diagnostics existed (or diverged mid-update) leave blanks.
            rec.extend((0..steps).map(|i| d.outer_losses.get(i).map_or(String::new(), |x| x.to_string())));
            let cell = |x: Option<f64>| x.map_or(String::new(), |v| v.to_string());
            if success {
                rec.push(cell(h.pre_success));
                rec.extend((0..k).map(|i| cell(h.post_success.get(i).copied())));
            }
            if test {
                rec.push(cell(h.test.as_ref().map(|t| t.pre_return)));
                rec.push(cell(h.test.as_ref().map(|t| t.post_return)));
            }
            if test_success {
                rec.push(cell(h.test.as_ref().and_then(|t| t.pre_success)));
                rec.push(cell(h.test.as_ref().and_then(|t| t.post_success)));
            }
            w.write_record(&rec).map_err(csv_io)?;
        }
        w.flush()
    })
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
    save_or_skip(&fig, stem).map(|_| ())
}

/// A grid of algorithms × seeds on one environment, as given (see [`GridSettings::validate`]).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct GridSettings {
    /// Settings of every run.
    pub run: RunSettings,
    /// Algorithms, in the order of the summary.
    pub algos: Vec<Algorithm>,
    /// Seeds.
    pub seeds: Vec<u64>,
    /// Iterations (1-based counts) at which the summary reports returns besides the final
    /// one; empty: a quarter, half and three quarters of the budget.
    pub at: Vec<usize>,
    /// Output folder (one sub-folder per algorithm and seed).
    pub out: PathBuf,
}

/// A validated grid: every run's settings checked before anything runs.
#[derive(Clone, Debug)]
pub struct Grid {
    settings: GridSettings,
    at: Vec<usize>,
    runs: Vec<ValidParams>,
}

impl GridSettings {
    /// Checks the grid: at least one algorithm and seed, no duplicates, report points in
    /// 1..=iterations, and every run's settings, on the built-in environment `run.env`.
    pub fn validate(self) -> Result<Grid> {
        let env = EnvSource::Builtin(self.run.env.clone());
        self.validate_in(env, None)
    }

    /// [`Self::validate`] with every run on the environment `env` and its meta-test on
    /// `test_env` (see [`RunSettings::params_in`]).
    pub fn validate_in(self, env: EnvSource, test_env: Option<EnvSource>) -> Result<Grid> {
        if self.algos.is_empty() {
            return Err(invalid("algos", "needs at least one algorithm"));
        }
        if self.seeds.is_empty() {
            return Err(invalid("seeds", "needs at least one seed"));
        }
        for (i, a) in self.algos.iter().enumerate() {
            if self.algos[..i].contains(a) {
                return Err(invalid("algos", format!("{a} is listed twice")));
            }
        }
        for (i, s) in self.seeds.iter().enumerate() {
            if self.seeds[..i].contains(s) {
                return Err(invalid("seeds", format!("seed {s} is listed twice")));
            }
        }
        let n = self.run.iterations;
        if let Some(bad) = self.at.iter().find(|&&a| a == 0 || a > n) {
            return Err(invalid("at", format!("{bad} is not an iteration count in 1..={n}")));
        }
        let mut at: Vec<usize> = if self.at.is_empty() {
            [n / 4, n / 2, 3 * n / 4].into_iter().filter(|&a| a >= 1).collect()
        } else {
            self.at.clone()
        };
        at.push(n);
        at.sort_unstable();
        at.dedup();
        let runs = self
            .algos
            .iter()
            .flat_map(|&a| self.seeds.iter().map(move |&s| (a, s)))
            .map(|(a, s)| self.run.params_in(a, s, env.clone(), test_env.clone()))
            .collect::<Result<Vec<_>>>()?;
        Ok(Grid { settings: self, at, runs })
    }
}

/// A grid's `config.json`: the grid as given, the iterations its summary reports, and per
/// run what the summary read (iterations reached, divergence, the commit of the binary that
/// last extended the run, from the run's own `config.json`).
#[derive(Serialize)]
struct GridRecord<'a> {
    grid: &'a GridSettings,
    report_points: &'a [usize],
    runs: Vec<GridRunRecord>,
}

#[derive(Serialize)]
struct GridRunRecord {
    algo: &'static str,
    seed: u64,
    /// Iterations in the run's checkpoint (may exceed the grid's budget).
    iterations: usize,
    /// 1-based iteration at which the divergence guard stopped the run.
    diverged_at: Option<usize>,
    commit: Option<String>,
}

/// The commit recorded in a run's `config.json` (none if it cannot be read).
fn run_commit(dir: &Path) -> Option<String> {
    let text = std::fs::read_to_string(dir.join("config.json")).ok()?;
    let v: serde_json::Value = serde_json::from_str(&text).ok()?;
    v.get("commit")?.as_str().map(str::to_owned)
}

/// What a grid reports while it goes.
#[derive(Clone, Copy, Debug)]
pub struct GridProgress<'a> {
    /// Index of the run (0-based) among [`Grid::runs`].
    pub run: usize,
    /// Number of runs.
    pub runs: usize,
    /// The run's settings.
    pub params: &'a ValidParams,
    /// The run's own progress.
    pub progress: Progress<'a>,
}

impl Grid {
    /// The settings as given.
    pub fn settings(&self) -> &GridSettings {
        &self.settings
    }
    /// Every run's settings, algorithm-major in the order given.
    pub fn runs(&self) -> &[ValidParams] {
        &self.runs
    }
    /// The iterations the summary reports (the final one included).
    pub fn report_points(&self) -> &[usize] {
        &self.at
    }
    /// The folder of a run.
    pub fn run_dir(&self, params: &Params) -> PathBuf {
        self.settings.out.join(params.algo.name()).join(format!("seed{}", params.seed))
    }

    /// Runs or resumes every run (finished ones are only read), `jobs` runs at a time in
    /// the order of [`Self::runs`], then writes the summary and the figure. Returns the
    /// summary rows.
    ///
    /// `jobs` = 1 runs them in turn on the calling thread's rayon pool. With `jobs` = J > 1,
    /// J worker threads take the runs one after the other, each run on a pool of its own
    /// with max(1, P / J) threads, P being the calling pool's size; the files are the same
    /// bit for bit (runs are independent, and a run's numbers do not depend on its thread
    /// count). `observe` may then be called from several threads at once. When a run fails,
    /// the others stop after their current iteration (its checkpoint written) and no new
    /// run starts; the error returned is the failed run's (the first one, if several).
    pub fn run(
        &self,
        jobs: usize,
        observe: &(dyn Fn(GridProgress) -> Result<()> + Sync),
    ) -> Result<Vec<SummaryRow>> {
        if jobs == 0 {
            return Err(invalid("jobs", "must be ≥ 1, got 0"));
        }
        crate::limits::check("jobs", jobs, crate::limits::MAX_THREADS, None)?;
        prepare_output_dir(&self.settings.out)?;
        let runs = self.runs.len();
        let one = |i: usize, stop: &dyn Fn() -> bool| -> Result<()> {
            let p = &self.runs[i];
            run(p, &self.run_dir(p), Resume::IfPresent, &mut |progress| {
                if stop() {
                    return Err(Error::Stopped("another run of the grid failed".into()));
                }
                observe(GridProgress { run: i, runs, params: p, progress })
            })
            .map(|_| ())
        };
        let jobs = jobs.min(runs);
        if jobs == 1 {
            for i in 0..runs {
                one(i, &|| false)?;
            }
            return self.summarise();
        }
        let threads = (rayon::current_num_threads() / jobs).max(1);
        let next = std::sync::atomic::AtomicUsize::new(0);
        let failed = std::sync::atomic::AtomicBool::new(false);
        // The failed runs' errors, by run index.
        let errors = std::sync::Mutex::new(Vec::<(usize, Error)>::new());
        let stop = || failed.load(std::sync::atomic::Ordering::SeqCst);
        // Every worker's pool is built before any run starts: a failure here belongs to no run.
        let pools = (0..jobs)
            .map(|_| {
                rayon::ThreadPoolBuilder::new()
                    .num_threads(threads)
                    .build()
                    .map_err(|e| invalid("jobs", format!("cannot start a run's thread pool: {e}")))
            })
            .collect::<Result<Vec<_>>>()?;
        std::thread::scope(|scope| {
            for pool in &pools {
                scope.spawn(|| {
                    let fail = |i: usize, e: Error| {
                        failed.store(true, std::sync::atomic::Ordering::SeqCst);
                        errors.lock().expect("not poisoned").push((i, e));
                    };
                    while !stop() {
                        let i = next.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                        if i >= runs {
                            break;
                        }
                        match pool.install(|| one(i, &stop)) {
                            Ok(()) => {}
                            // Stopped because another run failed: that run's error is reported.
                            Err(Error::Stopped(_)) if stop() && !crate::stop::requested() => break,
                            Err(e) => {
                                fail(i, e);
                                break;
                            }
                        }
                    }
                });
            }
        });
        let mut errors = errors.into_inner().expect("not poisoned");
        errors.sort_by_key(|(i, _)| *i);
        if let Some((_, e)) = errors.into_iter().next() {
            return Err(e);
        }
        self.summarise()
    }

    /// Reads every run's history from its checkpoint and writes `summary.csv`, `paired.csv`,
    /// `summary.md` and the figure; every run must have reached the iteration budget.
    pub fn summarise(&self) -> Result<Vec<SummaryRow>> {
        let n = self.settings.run.iterations;
        let mut records = Vec::with_capacity(self.runs.len());
        for p in &self.runs {
            let dir = self.run_dir(p);
            let r = load_run(&dir)?;
            let h = &r.history;
            if h.len() < n && r.diverged.is_none() {
                return Err(invalid(
                    "iterations",
                    format!(
                        "the run in {} has {} of {n} iterations: run the grid first",
                        dir.display(),
                        h.len()
                    ),
                ));
            }
            records.push(r);
        }
        let rows = summary_rows(&self.settings.algos, &self.runs, &records, &self.at, n);
        let out = &self.settings.out;
        write_csv(&out.join("summary.csv"), &rows)?;
        let paired = paired_differences(&self.settings.algos, &self.runs, &records, n);
        write_csv_or_header(&out.join("paired.csv"), &paired)?;
        let md = out.join("summary.md");
        let mut text = format!("{}\n{}", summary_markdown(&rows), paired_markdown(&paired));
        if super::success::has_data(&records) {
            let success = super::success::rows(&self.settings.algos, &self.runs, &records, &self.at);
            write_csv(&out.join("success.csv"), &success)?;
            text = format!("{text}\n{}", super::success::markdown(&success));
        }
        crate::atomic::write_bytes(&md, text.as_bytes())?;
        let runs = self
            .runs
            .iter()
            .zip(&records)
            .map(|(p, r)| GridRunRecord {
                algo: p.algo.name(),
                seed: p.seed,
                iterations: r.history.len(),
                diverged_at: r.diverged.as_ref().map(|d| d.iteration + 1),
                commit: run_commit(&self.run_dir(p)),
            })
            .collect();
        let grid = GridRecord { grid: &self.settings, report_points: &self.at, runs };
        write_json(&out.join("config.json"), &RunConfig::new("meta-rl compare", &grid))?;
        let series = self
            .settings
            .algos
            .iter()
            .map(|&algo| {
                let hs: Vec<&[IterationStats]> = self
                    .runs
                    .iter()
                    .zip(&records)
                    .filter(|(p, _)| p.algo == algo)
                    .map(|(_, r)| &r.history[..r.history.len().min(n)])
                    .collect();
                let (mut x, mut y, mut err) = (Vec::new(), Vec::new(), Vec::new());
                for i in 0..n {
                    // Runs that diverged drop out after their last iteration.
                    let v: Vec<f64> = hs.iter().filter_map(|h| h.get(i)).map(post_return).collect();
                    if v.is_empty() {
                        break;
                    }
                    let (m, _, se) = mean_std_se(&v);
                    x.push(i as f64);
                    y.push(m);
                    err.push(if se.is_finite() { se } else { 0.0 });
                }
                Series { name: algo.name().into(), x, y, err: Some(err) }
            })
            .collect();
        let env = &self.settings.run.env;
        let fig = Figure {
            title: format!("{env}: post-update return, mean ± s.e. over {} seeds", self.settings.seeds.len()),
            x_label: "iteration".into(),
            y_label: "average return after adaptation".into(),
            log_x: false,
            series,
        };
        save_or_skip(&fig, &out.join(self.figure_stem()))?;
        Ok(rows)
    }

    /// The figure's file stem: the paper's figure, 1(d) for the 2-D task, 2 for MuJoCo;
    /// `curves` for an environment outside the crate.
    pub fn figure_stem(&self) -> &'static str {
        match self.runs.first().map(ValidParams::env_source) {
            Some(EnvSource::Builtin(name)) if is_point_env(name) => "fig1d",
            Some(EnvSource::Builtin(_)) => "fig2",
            _ => "curves",
        }
    }
}

/// The return after the last inner step of an iteration.
fn post_return(h: &IterationStats) -> f64 {
    h.post_returns.last().copied().unwrap_or(h.pre_return)
}

/// One row of a grid's `summary.csv`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SummaryRow {
    /// Algorithm.
    pub algo: String,
    /// Iteration count (1-based) the row reports.
    pub iteration: usize,
    /// Whether this is the final iteration.
    pub is_final: bool,
    /// Number of seeds.
    pub seeds: usize,
    /// Mean across seeds of the return after the last inner step.
    pub post_return_mean: f64,
    /// Its standard error.
    pub post_return_se: f64,
    /// Mean across seeds of the pre-update return.
    pub pre_return_mean: f64,
    /// Its standard error.
    pub pre_return_se: f64,
    /// Mean across seeds of the largest drop of the post-update return below its running
    /// best up to this iteration (0 for a curve that never falls back): an instability
    /// measure, the paper's reading of Fig. 1(d).
    pub max_drop_mean: f64,
    /// Its standard error.
    pub max_drop_se: f64,
    /// Mean across seeds of a run's wall-clock time up to this iteration (seconds; summed
    /// over sittings for resumed runs).
    pub wall_s_mean: f64,
    /// Seeds whose run the divergence guard stopped before this iteration (they are not in
    /// the means; `seeds` counts the others).
    pub diverged: usize,
}

fn summary_rows(
    algos: &[Algorithm],
    runs: &[ValidParams],
    records: &[RunRecord],
    at: &[usize],
    n: usize,
) -> Vec<SummaryRow> {
    let mut rows = Vec::new();
    for &algo in algos {
        let all: Vec<&RunRecord> =
            runs.iter().zip(records).filter(|(p, _)| p.algo == algo).map(|(_, r)| r).collect();
        for &a in at {
            // Runs with data at iteration a (a diverged run ends at its diverging iteration).
            let hs: Vec<&Vec<IterationStats>> =
                all.iter().filter(|r| r.history.len() >= a).map(|r| &r.history).collect();
            let stat = |i: usize, f: &dyn Fn(&IterationStats) -> f64| {
                let v: Vec<f64> = hs.iter().map(|h| f(&h[i])).collect();
                let (m, _, se) = mean_std_se(&v);
                (m, se)
            };
            let (pm, pse) = stat(a - 1, &post_return);
            let (qm, qse) = stat(a - 1, &|h| h.pre_return);
            let drops: Vec<f64> = hs.iter().map(|h| max_drop(h[..a].iter().map(post_return))).collect();
            let (dm, _, dse) = mean_std_se(&drops);
            let (wm, _) = stat(a - 1, &|h| h.wall_s);
            rows.push(SummaryRow {
                algo: algo.name().into(),
                iteration: a,
                is_final: a == n,
                seeds: hs.len(),
                diverged: all.len() - hs.len(),
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
    rows
}

/// The summary as a Markdown table (as the experiment pages show it): one row per algorithm with the
/// post-update return (mean ± s.e. over seeds) at every reported iteration, then the max
/// drop and the pre-update return at the last one.
pub fn summary_markdown(rows: &[SummaryRow]) -> String {
    let mut iters: Vec<usize> = rows.iter().map(|r| r.iteration).collect();
    iters.sort_unstable();
    iters.dedup();
    let last = iters.last().copied().unwrap_or(0);
    let pm = |m: f64, se: f64| format!("{m:.1} ± {se:.1}");
    let mut out = String::from("| algorithm |");
    for i in &iters {
        out += &format!(" it. {i} |");
    }
    out += &format!(
        " max drop by it. {last} | pre-update, it. {last} | minutes per run | diverged by it. {last} |\n|---|"
    );
    out += &"---|".repeat(iters.len() + 4);
    out.push('\n');
    for a in first_seen(rows.iter().map(|r| r.algo.as_str())) {
        let cell = |i: usize| rows.iter().find(|r| r.algo == a && r.iteration == i);
        out += &format!("| {a} |");
        for &i in &iters {
            out +=
                &format!(" {} |", cell(i).map_or("–".into(), |r| pm(r.post_return_mean, r.post_return_se)));
        }
        match cell(last) {
            Some(r) => {
                out += &format!(
                    " {} | {} | {:.1} | {} of {} |\n",
                    pm(r.max_drop_mean, r.max_drop_se),
                    pm(r.pre_return_mean, r.pre_return_se),
                    r.wall_s_mean / 60.0,
                    r.diverged,
                    r.seeds + r.diverged
                )
            }
            None => out += " – | – | – | – |\n",
        }
    }
    out
}

/// Iterations over which [`paired_differences`] averages a seed's paired difference: the
/// last `PAIRED_WINDOW` of the budget (all of them for shorter grids).
pub const PAIRED_WINDOW: usize = 10;

/// One seed's paired difference between two algorithms of a grid (a row of `paired.csv`).
///
/// The tasks of an iteration are drawn from (seed, iteration) alone, so for one seed every
/// algorithm meets the same tasks at the same iteration: the difference of two runs'
/// post-update returns removes the tasks' share of the spread (the common ups and downs
/// of hard and easy task draws), which dominates the across-seed standard errors of the
/// summary on tasks such as the Ant ones. `diff` = mean over iterations
/// `from` … `to` (1-based, inclusive) of post(`algo`) − post(`against`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct PairedDiff {
    /// The algorithm whose return is taken first.
    pub algo: String,
    /// The algorithm it is compared with.
    pub against: String,
    /// The seed both runs share.
    pub seed: u64,
    /// First iteration (1-based) of the window.
    pub from: usize,
    /// Last iteration (1-based) of the window: the grid's budget.
    pub to: usize,
    /// Mean over the window of the post-update return difference.
    pub diff: f64,
}

/// Every ordered pair of distinct algorithms and every seed at which both runs reached `n`
/// iterations (a diverged run drops out of its pairs), averaged over the last
/// [`PAIRED_WINDOW`] iterations up to `n`: algorithm-major in the order of `algos`, then
/// `against` in that order, then seeds in the order of `runs`.
pub fn paired_differences(
    algos: &[Algorithm],
    runs: &[ValidParams],
    records: &[RunRecord],
    n: usize,
) -> Vec<PairedDiff> {
    let from = n.saturating_sub(PAIRED_WINDOW);
    let curve = |algo: Algorithm, seed: u64| {
        runs.iter()
            .zip(records)
            .find(|(p, _)| p.algo == algo && p.seed == seed)
            .filter(|(_, r)| n > 0 && r.history.len() >= n)
            .map(|(_, r)| &r.history[from..n])
    };
    let seeds = first_seen(runs.iter().map(|p| p.seed));
    let mut out = Vec::new();
    for &a in algos {
        for &b in algos.iter().filter(|&&b| b != a) {
            for &seed in &seeds {
                if let (Some(x), Some(y)) = (curve(a, seed), curve(b, seed)) {
                    let d: Vec<f64> = x.iter().zip(y).map(|(x, y)| post_return(x) - post_return(y)).collect();
                    out.push(PairedDiff {
                        algo: a.name().into(),
                        against: b.name().into(),
                        seed,
                        from: from + 1,
                        to: n,
                        diff: mean_std_se(&d).0,
                    });
                }
            }
        }
    }
    out
}

/// The paired differences as a Markdown matrix: row − column, mean ± s.e. over seeds of the
/// per-seed differences, with the number of seeds in which the row is ahead.
pub fn paired_markdown(rows: &[PairedDiff]) -> String {
    let algos = first_seen(rows.iter().flat_map(|r| [r.algo.as_str(), r.against.as_str()]));
    let Some(first) = rows.first() else { return String::new() };
    let mut out = format!(
        "Paired differences, row − column: post-update return averaged over iterations {}–{} of \
         the same seed (the same tasks), mean ± s.e. over seeds (seeds in which the row is ahead).\n\n\
         | | {} |\n|---|{}\n",
        first.from,
        first.to,
        algos.join(" | "),
        "---|".repeat(algos.len())
    );
    for a in &algos {
        out += &format!("| {a} |");
        for b in &algos {
            let d: Vec<f64> =
                rows.iter().filter(|r| r.algo == *a && r.against == *b).map(|r| r.diff).collect();
            out += &if a == b || d.is_empty() {
                " – |".to_string()
            } else {
                let (m, _, se) = mean_std_se(&d);
                let ahead = d.iter().filter(|&&x| x > 0.0).count();
                let se = if d.len() > 1 { format!("{se:.1}") } else { "–".into() };
                format!(" {m:.1} ± {se} ({ahead} of {}) |", d.len())
            };
        }
        out.push('\n');
    }
    out
}

/// Largest fall of `ys` below its running maximum (0 if it never falls).
pub fn max_drop(ys: impl Iterator<Item = f64>) -> f64 {
    let (mut best, mut drop) = (f64::NEG_INFINITY, 0.0f64);
    for y in ys {
        best = best.max(y);
        drop = drop.max(best - y);
    }
    drop
}

#[cfg(test)]
mod tests {
    use super::*;

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
            diverged: 0,
        };
        let md = summary_markdown(&[row("promp", 10, 1.0), row("promp", 20, 3.0), row("trpo-maml", 10, 2.0)]);
        let lines: Vec<&str> = md.lines().collect();
        assert_eq!(
            lines[0],
            "| algorithm | it. 10 | it. 20 | max drop by it. 20 | pre-update, it. 20 | minutes per run | diverged by it. 20 |"
        );
        assert_eq!(lines[1], "|---|---|---|---|---|---|---|");
        assert_eq!(lines[2], "| promp | 1.0 ± 0.2 | 3.0 ± 0.2 | 2.0 ± 0.1 | -1.0 ± 0.5 | 1.5 | 0 of 3 |");
        assert_eq!(lines[3], "| trpo-maml | 2.0 ± 0.2 | – | – | – | – | – |");
        assert_eq!(lines.len(), 4);
    }

    /// Iteration `i` of a test history with post-update return `post`.
    fn stats(i: usize, post: f64) -> IterationStats {
        IterationStats {
            iteration: i,
            pre_return: 0.0,
            post_returns: vec![post],
            env_steps: 10 * (i as u64 + 1),
            wall_s: i as f64,
            outer_diag: 0.0,
            diagnostics: Default::default(),
            pre_success: None,
            post_success: Vec::new(),
            test: None,
        }
    }

    #[test]
    fn diverged_runs_leave_the_means_and_are_counted() {
        let full = RunRecord { history: (0..3).map(|i| stats(i, 10.0 * i as f64)).collect(), diverged: None };
        let short = RunRecord {
            history: vec![stats(0, 4.0)],
            diverged: Some(Divergence { iteration: 0, cause: "outer loss 1e9".into() }),
        };
        let settings = RunSettings { iterations: 3, ..RunSettings::default() };
        let runs = vec![
            settings.params(Algorithm::Promp, 1).unwrap(),
            settings.params(Algorithm::Promp, 2).unwrap(),
        ];
        let rows = summary_rows(&[Algorithm::Promp], &runs, &[full, short], &[1, 3], 3);
        assert_eq!((rows[0].seeds, rows[0].diverged, rows[0].post_return_mean), (2, 0, 2.0));
        assert_eq!((rows[1].seeds, rows[1].diverged, rows[1].post_return_mean), (1, 1, 20.0));
        let md = summary_markdown(&rows);
        assert!(md.lines().nth(2).unwrap().ends_with("| 1 of 2 |"), "{md}");
    }

    #[test]
    fn paired_differences_cancel_the_tasks_and_drop_diverged_runs() {
        // Task difficulty shared by all algorithms of a seed at an iteration (large), plus
        // an algorithm effect (small): the paired difference is the effect alone.
        let task = |seed: u64, i: usize| 100.0 * ((seed as f64 * 7.3 + i as f64 * 1.9).sin());
        let effect = |algo: Algorithm| match algo {
            Algorithm::Promp => 2.0,
            Algorithm::TrpoMaml => 0.0,
            _ => -1.0,
        };
        let n = 14;
        let settings = RunSettings { iterations: n, ..RunSettings::default() };
        let algos = [Algorithm::TrpoMaml, Algorithm::Promp, Algorithm::TrpoDice];
        let (mut runs, mut records) = (Vec::new(), Vec::new());
        for &algo in &algos {
            for seed in [1u64, 2, 3] {
                runs.push(settings.params(algo, seed).unwrap());
                // ProMP's seed 3 diverged at iteration 5: it leaves its pairs.
                let len = if algo == Algorithm::Promp && seed == 3 { 5 } else { n + 3 };
                let history = (0..len).map(|i| stats(i, task(seed, i) + effect(algo) + i as f64)).collect();
                records.push(RunRecord { history, diverged: None });
            }
        }
        let rows = paired_differences(&algos, &runs, &records, n);
        // 6 ordered pairs; the 4 pairs with ProMP have 2 seeds, the other 2 have 3.
        assert_eq!(rows.len(), 4 * 2 + 2 * 3);
        for r in &rows {
            let a = algos.iter().find(|a| a.name() == r.algo).unwrap();
            let b = algos.iter().find(|b| b.name() == r.against).unwrap();
            assert!((r.diff - (effect(*a) - effect(*b))).abs() < 1e-9, "{r:?}");
            assert_eq!((r.from, r.to), (n - PAIRED_WINDOW + 1, n));
            assert!(!(r.seed == 3 && (r.algo == "promp" || r.against == "promp")));
        }
        assert_eq!(
            (rows[0].algo.as_str(), rows[0].against.as_str(), rows[0].seed),
            ("trpo-maml", "promp", 1)
        );
        let md = paired_markdown(&rows);
        let lines: Vec<&str> = md.lines().collect();
        assert_eq!(lines[2], "| | trpo-maml | promp | trpo-dice |");
        assert_eq!(lines[3], "|---|---|---|---|");
        assert_eq!(lines[4], "| trpo-maml | – | -2.0 ± 0.0 (0 of 2) | 1.0 ± 0.0 (3 of 3) |");
        assert_eq!(lines[5], "| promp | 2.0 ± 0.0 (2 of 2) | – | 3.0 ± 0.0 (2 of 2) |");
        assert_eq!(lines.len(), 7);
        // A window longer than the budget is the whole run; a single seed has no s.e.
        let short = paired_differences(
            &algos[..2],
            &runs[..1].iter().chain(&runs[3..4]).cloned().collect::<Vec<_>>(),
            &[records[0].clone(), records[3].clone()],
            3,
        );
        assert_eq!(short.len(), 2);
        assert_eq!((short[0].from, short[0].to), (1, 3));
        assert!(paired_markdown(&short).contains("| -2.0 ± – (0 of 1) |"));
        assert_eq!(paired_markdown(&[]), "");
        // A grid of one algorithm has no pairs: paired.csv is its header alone.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("paired.csv");
        write_csv_or_header::<PairedDiff>(&path, &[]).unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "algo,against,seed,from,to,diff\n");
        write_csv_or_header(&path, &short).unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap().lines().count(), 3);
    }

    #[test]
    fn max_drop_is_the_largest_fall_below_the_running_best() {
        assert_eq!(max_drop([1.0, 2.0, 3.0].into_iter()), 0.0);
        assert_eq!(max_drop([5.0, 1.0, 6.0, 4.0].into_iter()), 4.0);
        assert_eq!(max_drop([2.0, 9.0, 7.0, 1.0, 10.0].into_iter()), 8.0);
        assert_eq!(max_drop(std::iter::empty()), 0.0);
    }

    #[test]
    fn default_settings_are_the_command_line_defaults() {
        let s = RunSettings::default();
        assert_eq!(
            (s.env.as_str(), s.iterations, s.tasks, s.rollouts, s.horizon),
            ("point-corners", 500, 40, 20, 100)
        );
        assert_eq!(s.hidden, vec![64, 64]);
        assert_eq!(s.taypo_discount, TaylorDiscount::FromFirst);
        // Partial settings from a map (the Python face) fill the rest with the defaults.
        let p: RunSettings = serde_json::from_str(r#"{"iterations": 7}"#).unwrap();
        assert_eq!(RunSettings { iterations: 7, ..RunSettings::default() }, p);
        let bad = serde_json::from_str::<RunSettings>(r#"{"iteratons": 7}"#).unwrap_err().to_string();
        assert!(bad.contains("iteratons"), "{bad}");
    }

    /// Settings of a run small enough for a unit test: 3 tasks × 2 rollouts of 8 steps.
    fn tiny_settings(iterations: usize) -> RunSettings {
        RunSettings {
            iterations,
            tasks: 3,
            rollouts: 2,
            horizon: 8,
            hidden: vec![6],
            ..RunSettings::default()
        }
    }

    #[test]
    fn runs_saved_before_the_dice_critic_setting_resume_with_the_critic_they_used() {
        let dir = tempfile::tempdir().unwrap();
        let tiny = tiny_settings(1);
        for algo in [Algorithm::TrpoDice, Algorithm::Promp] {
            let out = dir.path().join(algo.name());
            let p = tiny.params(algo, 1).unwrap();
            assert_eq!(p.dice_critic.is_some(), algo == Algorithm::TrpoDice);
            run(&p, &out, Resume::No, &mut |_| Ok(())).unwrap();
            // Remove the setting from the checkpoint, as runs saved before it existed lack it.
            let path = out.join("checkpoint.json");
            let mut ck: serde_json::Value =
                serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
            ck["params"].as_object_mut().unwrap().remove("dice_critic");
            std::fs::write(&path, ck.to_string()).unwrap();
            let more = RunSettings { iterations: 2, ..tiny.clone() };
            let resume =
                |s: &RunSettings| run(&s.params(algo, 1).unwrap(), &out, Resume::Required, &mut |_| Ok(()));
            if algo == Algorithm::TrpoDice {
                // Such a run used the feature baseline: the default (time) is another run.
                let e = resume(&more).unwrap_err().to_string();
                assert!(e.contains("settings differ"), "{e}");
                let h = resume(&RunSettings { dice_critic: DiceCritic::Features, ..more }).unwrap();
                assert_eq!(h.len(), 2);
            } else {
                assert_eq!(resume(&more).unwrap().len(), 2);
            }
        }
    }

    fn grid(algos: Vec<Algorithm>, seeds: Vec<u64>, at: Vec<usize>) -> Result<Grid> {
        GridSettings {
            run: RunSettings { iterations: 10, ..RunSettings::default() },
            algos,
            seeds,
            at,
            out: "unused".into(),
        }
        .validate()
    }

    /// A run's files without the wall-clock fields (its progress and its checkpoint's state).
    fn run_files(dir: &Path) -> (String, serde_json::Value) {
        let progress = std::fs::read_to_string(dir.join("progress.csv")).unwrap();
        let wall = progress.lines().next().unwrap().split(',').position(|c| c == "wall_s").unwrap();
        let progress = progress
            .lines()
            .map(|l| {
                l.split(',')
                    .enumerate()
                    .filter(|(i, _)| *i != wall)
                    .map(|(_, c)| c)
                    .collect::<Vec<_>>()
                    .join(",")
            })
            .collect::<Vec<_>>()
            .join("\n");
        let mut ck: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(dir.join("checkpoint.json")).unwrap()).unwrap();
        let state = ck["state"].as_object_mut().unwrap();
        state.remove("wall_s");
        for h in state["history"].as_array_mut().unwrap() {
            h.as_object_mut().unwrap().remove("wall_s");
        }
        (progress, ck["state"].take())
    }

    #[test]
    fn grid_runs_at_a_time_give_the_files_of_runs_in_turn_and_report_a_failed_run() {
        let dir = tempfile::tempdir().unwrap();
        let tiny = tiny_settings(2);
        let at = |out: &str| GridSettings {
            run: tiny.clone(),
            algos: vec![Algorithm::Promp, Algorithm::TrpoMaml],
            seeds: vec![1, 2, 3],
            at: vec![1],
            out: dir.path().join(out),
        };
        let seen = std::sync::Mutex::new(Vec::new());
        let observe = |g: GridProgress| {
            if let Progress::Iteration { stats, .. } = g.progress {
                seen.lock().unwrap().push((g.run, stats.iteration));
            }
            Ok(())
        };
        let pool = rayon::ThreadPoolBuilder::new().num_threads(2).build().unwrap();
        let in_turn = pool.install(|| at("in_turn").validate().unwrap().run(1, &observe)).unwrap();
        let mut order = seen.lock().unwrap().drain(..).collect::<Vec<_>>();
        assert_eq!(order, (0..6).flat_map(|r| [(r, 0), (r, 1)]).collect::<Vec<_>>());
        for jobs in [2, 4, 9] {
            let grid = at(&format!("jobs{jobs}")).validate().unwrap();
            let rows = pool.install(|| grid.run(jobs, &observe)).unwrap();
            order = seen.lock().unwrap().drain(..).collect();
            order.sort_unstable();
            assert_eq!(order, (0..6).flat_map(|r| [(r, 0), (r, 1)]).collect::<Vec<_>>(), "jobs {jobs}");
            let strip = |r: &SummaryRow| (r.algo.clone(), r.iteration, r.post_return_mean, r.max_drop_mean);
            assert_eq!(
                rows.iter().map(strip).collect::<Vec<_>>(),
                in_turn.iter().map(strip).collect::<Vec<_>>()
            );
            for p in grid.runs() {
                let rel = Path::new(p.algo.name()).join(format!("seed{}", p.seed));
                assert_eq!(
                    run_files(&dir.path().join(format!("jobs{jobs}")).join(&rel)),
                    run_files(&dir.path().join("in_turn").join(&rel)),
                    "jobs {jobs}, {}",
                    rel.display()
                );
            }
        }
        // The grid's record: its settings and what the summary read of every run.
        let rec: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(dir.path().join("in_turn").join("config.json")).unwrap(),
        )
        .unwrap();
        assert_eq!(rec["command"], "meta-rl compare");
        assert_eq!(rec["settings"]["grid"]["seeds"], serde_json::json!([1, 2, 3]));
        assert_eq!(rec["settings"]["report_points"], serde_json::json!([1, 2]));
        let runs = rec["settings"]["runs"].as_array().unwrap();
        assert_eq!(runs.len(), 6);
        assert_eq!((runs[3]["algo"].as_str(), runs[3]["seed"].as_u64()), (Some("trpo-maml"), Some(1)));
        assert!(runs.iter().all(|r| r["iterations"] == 2 && r["diverged_at"].is_null()));
        assert!(runs.iter().all(|r| r["commit"] == rec["commit"]), "{rec}");
        // A run that fails by itself (its folder holds another run): its error comes back,
        // no summary is written, the runs that finished keep their files.
        let failing = at("failing");
        let other = RunSettings { tasks: 4, ..tiny.clone() }.params(Algorithm::TrpoMaml, 1).unwrap();
        let bad_dir = failing.out.join("trpo-maml").join("seed1");
        run(&other, &bad_dir, Resume::No, &mut |_| Ok(())).unwrap();
        let out = failing.out.clone();
        let e = pool.install(|| failing.validate().unwrap().run(2, &|_| Ok(()))).unwrap_err().to_string();
        assert!(e.contains("settings differ"), "{e}");
        assert!(!out.join("summary.csv").exists());
        assert!(out.join("promp").join("seed1").join("checkpoint.json").exists());
        assert!(
            at("zero")
                .validate()
                .unwrap()
                .run(0, &|_| Ok(()))
                .unwrap_err()
                .to_string()
                .contains("invalid jobs")
        );
    }

    #[test]
    fn grids_refuse_duplicates_and_report_points_out_of_range() {
        let msg = |r: Result<Grid>| r.unwrap_err().to_string();
        assert!(msg(grid(vec![Algorithm::Promp], vec![1, 1], vec![])).contains("seed 1 is listed twice"));
        assert!(
            msg(grid(vec![Algorithm::Promp, Algorithm::Promp], vec![1], vec![]))
                .contains("promp is listed twice")
        );
        assert!(msg(grid(vec![Algorithm::Promp], vec![1], vec![0])).contains("invalid at: 0"));
        assert!(msg(grid(vec![Algorithm::Promp], vec![1], vec![11])).contains("invalid at: 11"));
        assert!(msg(grid(vec![], vec![1], vec![])).contains("algos"));
        let g = grid(vec![Algorithm::Promp], vec![1, 2], vec![5]).unwrap();
        assert_eq!(g.report_points(), &[5, 10]);
        assert_eq!(g.runs().len(), 2);
    }
}
