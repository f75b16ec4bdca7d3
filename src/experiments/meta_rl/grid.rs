//! Grids of meta-RL runs: algorithms × seeds on one environment, run side by side, then
//! summarised (`summary.csv`, `paired.csv`, `summary.md`, the figure).

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::report::{paired_differences, paired_markdown, post_return, summary_markdown, summary_rows};
use super::run::{Progress, Resume, load_run, run};
use super::{RunSettings, SummaryRow, success};
use crate::envs::EnvSource;
use crate::error::{Error, Result, invalid};
use crate::experiments::metrics::mean_std_se;
use crate::experiments::{RunConfig, prepare_output_dir, write_csv, write_csv_or_header, write_json};
use crate::meta::algos::{Algorithm, IterationStats, Params, ValidParams, is_point_env};
use crate::plot::{Figure, Series, save_or_skip};

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
        let flag = crate::stop::current();
        // Every worker's pool is built before any run starts: a failure here belongs to no run.
        let pools = (0..jobs)
            .map(|_| {
                // The runs' pools carry the caller's stop flag, if it has one of its own.
                match &flag {
                    Some(f) => f.pool(threads),
                    None => rayon::ThreadPoolBuilder::new()
                        .num_threads(threads)
                        .build()
                        .map_err(|e| invalid("jobs", format!("cannot start a run's thread pool: {e}"))),
                }
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
                            // Stopped because another run failed: that run's error is reported
                            // (asked on the pool, whose threads carry the caller's stop flag).
                            Err(Error::Stopped(_)) if stop() && !pool.install(crate::stop::requested) => {
                                break;
                            }
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
        if success::has_data(&records) {
            let success = success::rows(&self.settings.algos, &self.runs, &records, &self.at);
            write_csv(&out.join("success.csv"), &success)?;
            text = format!("{text}\n{}", success::markdown(&success));
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::experiments::meta_rl::RunSettings;

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
        let progress = super::super::run::tests::rows_without_wall(dir).join("\n");
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
        let tiny = RunSettings::tiny(2);
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
