//! Meta-RL runs and grids: the library's [`RunSettings`] from keyword arguments, run with
//! the GIL released and stoppable by Ctrl-C (the run keeps its last checkpoint, so the same
//! call with `resume=True` continues it bit-identically, as the command line does).
//! `threads` runs a call on its own pool of that many worker threads (the command line's
//! `--threads`; results do not depend on it), e.g. one per CPU a Ray task reserved.
//!
//! Sampling across workers ([`metagrad::meta::task_sampling`]): `MetaRlTaskSampler` is a
//! worker's sampler (one run's environment, built once; `sample` returns a range of tasks
//! in the library's exact binary form), and `meta_rl_train(..., sampler=pool)` has every
//! iteration's tasks sampled by `pool`, a Python object with `start(theta, iteration,
//! tasks)`, `poll(timeout)` (`None` until every part is back, then the list of parts as
//! `bytes`) and `cancel()` (`metagrad.ray`'s pool of Ray actors). The library decodes,
//! checks and orders the parts; the run is the local run bit for bit.

use std::path::PathBuf;
use std::sync::Mutex;

use metagrad::experiments::meta_rl::{self, Grid, GridSettings, Progress, Resume, RunSettings};
use metagrad::meta::algos::{Algorithm, IterationStats, ValidParams};
use metagrad::meta::task_sampling::{RemoteSampling, TaskSampler};
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict};

use metagrad::envs::EnvSource;

use crate::errors::{parse_settings, py_err};
use crate::external::PyExternal;
use crate::interrupt::run_stoppable;

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(meta_rl_defaults, m)?)?;
    m.add_function(wrap_pyfunction!(meta_rl_train, m)?)?;
    m.add_function(wrap_pyfunction!(meta_rl_compare, m)?)?;
    m.add_function(wrap_pyfunction!(meta_rl_summarise, m)?)?;
    m.add_function(wrap_pyfunction!(meta_rl_params, m)?)?;
    m.add_function(wrap_pyfunction!(meta_rl_grid_runs, m)?)?;
    m.add_class::<MetaRlTaskSampler>()?;
    Ok(())
}

/// A run's progress, carried from the worker thread to the caller's.
enum Event {
    Started { run: usize, runs: usize, algo: Algorithm, seed: u64, done: usize, total: usize },
    // Boxed: an iteration's statistics (with the ProMP diagnostics) dwarf the other events.
    Iteration { run: usize, runs: usize, algo: Algorithm, seed: u64, stats: Box<IterationStats>, rate: f64 },
    Diverged { run: usize, runs: usize, algo: Algorithm, seed: u64, iteration: usize, cause: String },
}

impl Event {
    fn new(run: usize, runs: usize, p: &ValidParams, progress: Progress) -> Self {
        let (algo, seed) = (p.algo, p.seed);
        match progress {
            Progress::Started { done, total } => Event::Started { run, runs, algo, seed, done, total },
            Progress::Diverged(d) => {
                Event::Diverged { run, runs, algo, seed, iteration: d.iteration, cause: d.cause.clone() }
            }
            Progress::Iteration { stats, env_steps_per_s } => Event::Iteration {
                run,
                runs,
                algo,
                seed,
                stats: Box::new(stats.clone()),
                rate: env_steps_per_s,
            },
        }
    }

    /// The event as a dict: `kind` ("started", "iteration" or "diverged"), `run`, `runs`, `algo`,
    /// `seed`, then `done`/`total`, the iteration's statistics and `env_steps_per_s`, or
    /// (kind "diverged") the diverging `iteration` and its `cause`.
    fn to_dict<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let d = PyDict::new(py);
        let (run, runs, algo, seed) = match self {
            Event::Started { run, runs, algo, seed, done, total } => {
                d.set_item("kind", "started")?;
                d.set_item("done", done)?;
                d.set_item("total", total)?;
                (run, runs, algo, seed)
            }
            Event::Diverged { run, runs, algo, seed, iteration, cause } => {
                d.set_item("kind", "diverged")?;
                d.set_item("iteration", iteration)?;
                d.set_item("cause", cause)?;
                (run, runs, algo, seed)
            }
            Event::Iteration { run, runs, algo, seed, stats, rate } => {
                d.set_item("kind", "iteration")?;
                d.set_item("iteration", stats.iteration)?;
                d.set_item("pre_return", stats.pre_return)?;
                d.set_item("post_returns", stats.post_returns.clone())?;
                d.set_item("env_steps", stats.env_steps)?;
                d.set_item("wall_s", stats.wall_s)?;
                d.set_item("outer_diag", stats.outer_diag)?;
                d.set_item("env_steps_per_s", rate)?;
                (run, runs, algo, seed)
            }
        };
        d.set_item("run", run)?;
        d.set_item("runs", runs)?;
        d.set_item("algo", algo.name())?;
        d.set_item("seed", seed)?;
        Ok(d)
    }
}

fn settings(function: &str, json: &str) -> PyResult<RunSettings> {
    parse_settings(function, json)
}

/// The run's environment and the meta-test's: built-in (`env` of the settings) unless a
/// Python meta-task (`metagrad._env_pool.Spec`) is given.
struct Envs {
    env: Option<EnvSource>,
    test: Option<EnvSource>,
}

impl Envs {
    fn new(env: Option<&Bound<'_, PyAny>>, test: Option<&Bound<'_, PyAny>>) -> PyResult<Self> {
        let wrap = |s: &Bound<'_, PyAny>| -> PyResult<EnvSource> {
            Ok(EnvSource::External(std::sync::Arc::new(PyExternal::new(s)?)))
        };
        Ok(Self { env: env.map(wrap).transpose()?, test: test.map(wrap).transpose()? })
    }

    fn env(&self, s: &RunSettings) -> EnvSource {
        self.env.clone().unwrap_or_else(|| EnvSource::Builtin(s.env.clone()))
    }

    fn params(&self, s: &RunSettings, algo: Algorithm, seed: u64) -> PyResult<ValidParams> {
        s.params_in(algo, seed, self.env(s), self.test.clone()).map_err(py_err)
    }
}

fn forward(progress: &Option<Py<PyAny>>) -> impl FnMut(Python<'_>, Event) -> PyResult<()> + '_ {
    move |py, e| match progress {
        Some(f) => f.call1(py, (e.to_dict(py)?,)).map(|_| ()),
        None => Ok(()),
    }
}

/// Checks `threads` as the command line checks `--threads` (None: as many as rayon's global
/// pool).
fn check_threads(threads: Option<usize>) -> PyResult<()> {
    let Some(t) = threads else { return Ok(()) };
    if t == 0 {
        return Err(pyo3::exceptions::PyValueError::new_err(
            "invalid threads: must be at least 1 (or None), got 0",
        ));
    }
    metagrad::limits::check("threads", t, metagrad::limits::MAX_THREADS, None).map_err(py_err)
}

/// A pool of `threads` workers (checked by [`check_threads`]), or none: rayon's global pool.
fn pool(threads: Option<usize>) -> PyResult<Option<rayon::ThreadPool>> {
    check_threads(threads)?;
    let Some(t) = threads else { return Ok(None) };
    let pool = rayon::ThreadPoolBuilder::new().num_threads(t).build();
    pool.map(Some)
        .map_err(|e| pyo3::exceptions::PyRuntimeError::new_err(format!("cannot start the thread pool: {e}")))
}

/// Runs `f` on `pool` (or on the calling thread, with rayon's global pool).
fn on<T: Send>(pool: &Option<rayon::ThreadPool>, f: impl FnOnce() -> T + Send) -> T {
    match pool {
        Some(p) => p.install(f),
        None => f(),
    }
}

/// The default settings as JSON (the command line's defaults).
#[pyfunction]
fn meta_rl_defaults() -> String {
    serde_json::to_string(&RunSettings::default()).expect("settings serialise")
}

/// The validated settings of one run as JSON (what `config.json` records).
#[pyfunction]
#[pyo3(signature = (settings_json, algo, seed, env=None, test_env=None))]
fn meta_rl_params(
    settings_json: &str,
    algo: &str,
    seed: u64,
    env: Option<Bound<'_, PyAny>>,
    test_env: Option<Bound<'_, PyAny>>,
) -> PyResult<String> {
    let algo = Algorithm::parse(algo).map_err(py_err)?;
    let envs = Envs::new(env.as_ref(), test_env.as_ref())?;
    let p = envs.params(&settings("meta_rl.train", settings_json)?, algo, seed)?;
    Ok(serde_json::to_string(&*p).expect("params serialise"))
}

/// A pool of sampling workers in Python (see the module docs): the library's
/// [`RemoteSampling`]. A Python exception of the pool ends the run; it is kept here and
/// raised as it was.
struct PoolSampling {
    pool: Py<PyAny>,
    error: Option<PyErr>,
}

impl PoolSampling {
    fn parts(
        &self,
        py: Python<'_>,
        theta: &[f64],
        iteration: u64,
        tasks: usize,
    ) -> PyResult<Option<Vec<Vec<u8>>>> {
        self.pool.call_method1(py, "start", (theta.to_vec(), iteration, tasks))?;
        loop {
            if metagrad::stop::requested() {
                self.pool.call_method0(py, "cancel")?;
                return Ok(None);
            }
            let done = self.pool.call_method1(py, "poll", (0.05,))?;
            if !done.is_none(py) {
                let parts: Vec<Bound<'_, PyBytes>> = done.extract(py)?;
                return Ok(Some(parts.iter().map(|b| b.as_bytes().to_vec()).collect()));
            }
        }
    }
}

impl RemoteSampling for PoolSampling {
    fn sample(&mut self, theta: &[f64], iteration: u64, tasks: usize) -> metagrad::Result<Vec<Vec<u8>>> {
        match Python::attach(|py| self.parts(py, theta, iteration, tasks)) {
            Ok(Some(parts)) => Ok(parts),
            Ok(None) => Err(metagrad::Error::Stopped("a stop was requested (interrupted)".into())),
            Err(e) => {
                let msg = e.to_string();
                self.error = Some(e);
                Err(metagrad::error::invalid("sampler", format!("the sampling workers failed: {msg}")))
            }
        }
    }
}

/// One run's sampler in a sampling worker: the run's environment (built once) and sampler.
#[pyclass(module = "metagrad._metagrad", frozen)]
struct MetaRlTaskSampler {
    inner: Mutex<TaskSampler>,
    pool: Option<rayon::ThreadPool>,
    tasks: usize,
}

#[pymethods]
impl MetaRlTaskSampler {
    /// The sampler of the run (`settings_json`, `algo`, `seed`), as `meta_rl_train` validates
    /// it; `threads` as there.
    #[new]
    #[pyo3(signature = (settings_json, algo, seed, threads=None, env=None))]
    fn new(
        py: Python<'_>,
        settings_json: &str,
        algo: &str,
        seed: u64,
        threads: Option<usize>,
        env: Option<Bound<'_, PyAny>>,
    ) -> PyResult<Self> {
        let algo = Algorithm::parse(algo).map_err(py_err)?;
        let envs = Envs::new(env.as_ref(), None)?;
        let params = envs.params(&settings("meta_rl.train", settings_json)?, algo, seed)?;
        let tasks = params.tasks;
        let sampler = py.detach(|| TaskSampler::new(params)).map_err(py_err)?;
        Ok(Self { inner: Mutex::new(sampler), pool: pool(threads)?, tasks })
    }

    /// Tasks `start..end` of `iteration` sampled with θ = `theta`, in the library's exact
    /// binary form (GIL released).
    fn sample<'py>(
        &self,
        py: Python<'py>,
        theta: Vec<f64>,
        iteration: u64,
        start: usize,
        end: usize,
    ) -> PyResult<Bound<'py, PyBytes>> {
        let bytes = py
            .detach(|| {
                let mut guard = self.inner.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
                let s: &mut TaskSampler = &mut guard;
                on(&self.pool, || s.sample_encoded(&theta, iteration, start..end))
            })
            .map_err(py_err)?;
        Ok(PyBytes::new(py, &bytes))
    }

    /// Tasks per iteration.
    #[getter]
    fn tasks(&self) -> usize {
        self.tasks
    }

    /// The run's initial θ (the policy its seed initialises).
    fn initial_theta(&self) -> PyResult<Vec<f64>> {
        let guard = self.inner.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        guard.initial_policy().map(|p| metagrad::policy::Policy::params(&p).to_vec()).map_err(py_err)
    }
}

/// One run (see `metagrad.meta_rl.train`); `resume` is "no", "required" or "if-present"
/// (the library's [`Resume`]); `sampler`: a pool of sampling workers (module docs), or
/// none to sample here. Returns the history as JSON records.
#[pyfunction]
#[pyo3(signature = (settings_json, algo, seed, out, resume="no", progress=None, threads=None, sampler=None, env=None, test_env=None))]
#[allow(clippy::too_many_arguments)]
fn meta_rl_train(
    py: Python<'_>,
    settings_json: &str,
    algo: &str,
    seed: u64,
    out: PathBuf,
    resume: &str,
    progress: Option<Py<PyAny>>,
    threads: Option<usize>,
    sampler: Option<Py<PyAny>>,
    env: Option<Bound<'_, PyAny>>,
    test_env: Option<Bound<'_, PyAny>>,
) -> PyResult<String> {
    let algo = Algorithm::parse(algo).map_err(py_err)?;
    let envs = Envs::new(env.as_ref(), test_env.as_ref())?;
    let params = envs.params(&settings("meta_rl.train", settings_json)?, algo, seed)?;
    let resume = match resume {
        "no" => Resume::No,
        "required" => Resume::Required,
        "if-present" => Resume::IfPresent,
        other => {
            return Err(pyo3::exceptions::PyValueError::new_err(format!(
                "invalid resume: {other:?} (expected False, True or \"if-present\")"
            )));
        }
    };
    check_threads(threads)?;
    let mut remote = sampler.map(|pool| PoolSampling { pool, error: None });
    let history = run_stoppable(
        py,
        threads,
        |events| {
            let remote = remote.as_mut().map(|r| r as &mut dyn RemoteSampling);
            meta_rl::run_with(&params, &out, resume, remote, &mut |p| {
                events.send(Event::new(0, 1, &params, p));
                Ok(())
            })
        },
        forward(&progress),
    );
    if let Some(e) = remote.and_then(|r| r.error) {
        return Err(e);
    }
    Ok(serde_json::to_string(&history?).expect("history serialises"))
}

fn grid(
    settings_json: &str,
    algos: &str,
    seeds: Vec<u64>,
    at: Vec<usize>,
    out: PathBuf,
    envs: &Envs,
) -> PyResult<Grid> {
    let run = settings("meta_rl.compare", settings_json)?;
    let env = envs.env(&run);
    GridSettings { run, algos: Algorithm::parse_list(algos).map_err(py_err)?, seeds, at, out }
        .validate_in(env, envs.test.clone())
        .map_err(py_err)
}

/// A grid (see `metagrad.meta_rl.compare`). Returns the summary as JSON records.
#[pyfunction]
#[pyo3(signature = (settings_json, algos, seeds, at, out, progress=None, threads=None, jobs=1, env=None, test_env=None))]
#[allow(clippy::too_many_arguments)]
fn meta_rl_compare(
    py: Python<'_>,
    settings_json: &str,
    algos: &str,
    seeds: Vec<u64>,
    at: Vec<usize>,
    out: PathBuf,
    progress: Option<Py<PyAny>>,
    threads: Option<usize>,
    jobs: usize,
    env: Option<Bound<'_, PyAny>>,
    test_env: Option<Bound<'_, PyAny>>,
) -> PyResult<String> {
    let envs = Envs::new(env.as_ref(), test_env.as_ref())?;
    let grid = grid(settings_json, algos, seeds, at, out, &envs)?;
    check_threads(threads)?;
    let rows = run_stoppable(
        py,
        threads,
        |events| {
            grid.run(jobs, &|g| {
                events.send(Event::new(g.run, g.runs, g.params, g.progress));
                Ok(())
            })
        },
        forward(&progress),
    )?;
    Ok(serde_json::to_string(&rows).expect("rows serialise"))
}

/// Writes a grid's summary and figure from its runs' checkpoints (every run finished),
/// as `compare` does after running them. Returns the summary as JSON records.
#[pyfunction]
#[pyo3(signature = (settings_json, algos, seeds, at, out, env=None, test_env=None))]
#[allow(clippy::too_many_arguments)]
fn meta_rl_summarise(
    py: Python<'_>,
    settings_json: &str,
    algos: &str,
    seeds: Vec<u64>,
    at: Vec<usize>,
    out: PathBuf,
    env: Option<Bound<'_, PyAny>>,
    test_env: Option<Bound<'_, PyAny>>,
) -> PyResult<String> {
    let envs = Envs::new(env.as_ref(), test_env.as_ref())?;
    let grid = grid(settings_json, algos, seeds, at, out, &envs)?;
    let rows = py.detach(|| grid.summarise()).map_err(py_err)?;
    Ok(serde_json::to_string(&rows).expect("rows serialise"))
}

/// A validated grid's runs, in the order of [`Grid::runs`] (algorithm-major), as JSON
/// records `{"algo", "seed", "out"}` with each run's folder ([`Grid::run_dir`]): what a
/// scheduler (`metagrad.ray`) runs as independent `meta_rl_train(..., resume="if-present")`
/// calls before [`meta_rl_summarise`].
#[pyfunction]
#[pyo3(signature = (settings_json, algos, seeds, at, out, env=None, test_env=None))]
fn meta_rl_grid_runs(
    settings_json: &str,
    algos: &str,
    seeds: Vec<u64>,
    at: Vec<usize>,
    out: PathBuf,
    env: Option<Bound<'_, PyAny>>,
    test_env: Option<Bound<'_, PyAny>>,
) -> PyResult<String> {
    let envs = Envs::new(env.as_ref(), test_env.as_ref())?;
    let grid = grid(settings_json, algos, seeds, at, out, &envs)?;
    let runs: Vec<serde_json::Value> = grid
        .runs()
        .iter()
        .map(|p| serde_json::json!({"algo": p.algo.name(), "seed": p.seed, "out": grid.run_dir(p)}))
        .collect();
    Ok(serde_json::to_string(&runs).expect("runs serialise"))
}
