//! Vectorised meta-task environments: the library's [`VecEnv`] (many copies of one env,
//! stepped in parallel with the GIL released) behind `metagrad.envs`, whose Python class adds
//! Gymnasium's spaces and API. Arrays arrive here as float64 of checked shapes (the Python
//! layer converts dtypes); the library validates values and names what is wrong.

use std::path::PathBuf;
use std::sync::{Mutex, MutexGuard, PoisonError};

use metagrad::envs::{Autoreset, NAMES, VecEnv, make_env};
use metagrad::meta::sampler::sample_tasks;
use numpy::{PyArray1, PyArray2, PyArrayMethods, PyReadonlyArray1, PyReadonlyArray2, PyUntypedArrayMethods};
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;

use crate::errors::py_err;

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<PyVecEnv>()?;
    m.add("ENV_NAMES", NAMES.to_vec())?;
    Ok(())
}

/// Copies of one meta-task env (see `metagrad.envs.MetaVectorEnv` for the arguments).
#[pyclass(module = "metagrad._metagrad", name = "VecEnv", frozen)]
pub struct PyVecEnv {
    inner: Mutex<VecEnv>,
    /// A pool of `num_threads` workers, or none for rayon's global pool (all cores).
    pool: Option<rayon::ThreadPool>,
    name: String,
    num_envs: usize,
    obs_dim: usize,
    act_dim: usize,
    task_dim: usize,
    horizon: Option<usize>,
    bounds: (Vec<f64>, Vec<f64>),
}

/// The array returned for an n×d buffer.
fn matrix<'py>(py: Python<'py>, data: &[f64], d: usize) -> PyResult<Bound<'py, PyArray2<f64>>> {
    PyArray1::from_slice(py, data).reshape([data.len() / d.max(1), d])
}

impl PyVecEnv {
    fn lock(&self) -> MutexGuard<'_, VecEnv> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Runs `f` on the env with the GIL released, in this env's thread pool.
    fn run<T: Send>(&self, py: Python<'_>, f: impl FnOnce(&mut VecEnv) -> T + Send) -> T {
        py.detach(|| {
            let mut guard = self.lock();
            let env: &mut VecEnv = &mut guard;
            match &self.pool {
                Some(pool) => pool.install(|| f(env)),
                None => f(env),
            }
        })
    }

    fn check_shape(&self, field: &str, got: &[usize], want: [usize; 2]) -> PyResult<()> {
        if got == want {
            Ok(())
        } else {
            Err(PyValueError::new_err(format!("invalid {field}: expected shape {want:?}, got {got:?}")))
        }
    }
}

#[pymethods]
impl PyVecEnv {
    #[new]
    #[pyo3(signature = (name, num_envs, horizon, autoreset_mode, seed, assets_dir=None, num_threads=None))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        py: Python<'_>,
        name: &str,
        num_envs: usize,
        horizon: Option<usize>,
        autoreset_mode: &str,
        seed: u64,
        assets_dir: Option<PathBuf>,
        num_threads: Option<usize>,
    ) -> PyResult<Self> {
        let mode = Autoreset::from_name(autoreset_mode).map_err(py_err)?;
        if num_threads == Some(0) {
            return Err(PyValueError::new_err("invalid num_threads: must be at least 1 (or None), got 0"));
        }
        let pool = num_threads
            .map(|t| rayon::ThreadPoolBuilder::new().num_threads(t).build())
            .transpose()
            .map_err(|e| PyValueError::new_err(format!("invalid num_threads: {e}")))?;
        let env = py.detach(|| {
            let proto = make_env(name, assets_dir.as_deref())?;
            VecEnv::new(proto.as_ref(), num_envs, horizon, mode, seed)
        });
        let env = env.map_err(py_err)?;
        let p = env.prototype();
        Ok(Self {
            name: p.name().to_string(),
            bounds: p.action_bounds(),
            num_envs,
            obs_dim: env.obs_dim(),
            act_dim: env.act_dim(),
            task_dim: env.task_dim(),
            horizon,
            inner: Mutex::new(env),
            pool,
        })
    }

    /// Resets the copies selected by `mask` (all if None), re-seeding copy i with `seeds[i]`
    /// where given; returns all observations (n × obs_dim).
    #[pyo3(signature = (seeds=None, mask=None))]
    fn reset<'py>(
        &self,
        py: Python<'py>,
        seeds: Option<Vec<Option<u64>>>,
        mask: Option<PyReadonlyArray1<'py, bool>>,
    ) -> PyResult<Bound<'py, PyArray2<f64>>> {
        let mask = mask.map(|m| m.as_array().to_vec());
        let obs = self.run(py, |env| {
            env.reset(seeds.as_deref(), mask.as_deref())?;
            Ok::<_, metagrad::Error>(env.obs().to_vec())
        });
        matrix(py, &obs.map_err(py_err)?, self.obs_dim)
    }

    /// One step of every copy: (obs, rewards, terminated, truncated, final) with `final` None,
    /// or with SameStep autoreset (mask of copies reset in this step, their final observations).
    #[allow(clippy::type_complexity)]
    fn step<'py>(
        &self,
        py: Python<'py>,
        actions: PyReadonlyArray2<'py, f64>,
    ) -> PyResult<(
        Bound<'py, PyArray2<f64>>,
        Bound<'py, PyArray1<f64>>,
        Bound<'py, PyArray1<bool>>,
        Bound<'py, PyArray1<bool>>,
        Option<(Bound<'py, PyArray1<bool>>, Bound<'py, PyArray2<f64>>)>,
    )> {
        self.check_shape("actions", actions.shape(), [self.num_envs, self.act_dim])?;
        let actions = actions.as_array().iter().copied().collect::<Vec<f64>>();
        let out = self.run(py, |env| {
            env.step(&actions)?;
            let fin = (env.autoreset() == Autoreset::SameStep)
                .then(|| (env.final_obs().0.to_vec(), env.final_obs().1.to_vec()));
            Ok::<_, metagrad::Error>((
                env.obs().to_vec(),
                env.rewards().to_vec(),
                env.terminated().to_vec(),
                env.truncated().to_vec(),
                fin,
            ))
        });
        let (obs, rewards, terminated, truncated, fin) = out.map_err(py_err)?;
        let fin = match fin {
            Some((mask, obs)) => Some((PyArray1::from_vec(py, mask), matrix(py, &obs, self.obs_dim)?)),
            None => None,
        };
        Ok((
            matrix(py, &obs, self.obs_dim)?,
            PyArray1::from_vec(py, rewards),
            PyArray1::from_vec(py, terminated),
            PyArray1::from_vec(py, truncated),
            fin,
        ))
    }

    /// Sets one task for all copies (`tasks` of shape (1, task_dim)) or one per copy
    /// ((num_envs, task_dim)); all are validated before any copy changes.
    fn set_tasks(&self, py: Python<'_>, tasks: PyReadonlyArray2<'_, f64>) -> PyResult<()> {
        let rows = tasks.shape()[0];
        let want = if rows == 1 { 1 } else { self.num_envs };
        self.check_shape("task", tasks.shape(), [want, self.task_dim])?;
        let flat = tasks.as_array().iter().copied().collect::<Vec<f64>>();
        self.run(py, |env| env.set_tasks(&flat)).map_err(py_err)
    }

    /// The copies' current tasks (num_envs × task_dim).
    fn tasks<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyArray2<f64>>> {
        let tasks = self.lock().tasks().to_vec();
        matrix(py, &tasks, self.task_dim)
    }

    /// `n` tasks drawn as `metagrad meta-rl --seed seed` draws those of meta-iteration
    /// `iteration` (n × task_dim).
    fn sample_tasks<'py>(
        &self,
        py: Python<'py>,
        n: usize,
        seed: u64,
        iteration: u64,
    ) -> PyResult<Bound<'py, PyArray2<f64>>> {
        let tasks = self.run(py, |env| sample_tasks(env.prototype(), n, seed, iteration).concat());
        matrix(py, &tasks, self.task_dim)
    }

    #[getter]
    fn name(&self) -> &str {
        &self.name
    }
    #[getter]
    fn num_envs(&self) -> usize {
        self.num_envs
    }
    #[getter]
    fn obs_dim(&self) -> usize {
        self.obs_dim
    }
    #[getter]
    fn act_dim(&self) -> usize {
        self.act_dim
    }
    #[getter]
    fn task_dim(&self) -> usize {
        self.task_dim
    }
    #[getter]
    fn horizon(&self) -> Option<usize> {
        self.horizon
    }
    /// (low, high) action bounds of one copy, in the env's units.
    #[getter]
    fn action_bounds(&self) -> (Vec<f64>, Vec<f64>) {
        self.bounds.clone()
    }
}
