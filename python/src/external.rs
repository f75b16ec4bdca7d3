//! A user's Gymnasium meta-task (Python) as the library's external environment
//! ([`metagrad::envs::external`]): [`PyExternal`] wraps a `metagrad._env_pool.Spec` (the
//! environment checked once, its description) and opens `Pool`s, each a [`PyBatch`] whose
//! calls — draw tasks, start, step, reset a batch of copies — enter Python once per batch.
//! A Python exception becomes the library's error with its message (which names the
//! environment, the method and the value); the run then stops with its last checkpoint.

use metagrad::envs::{BatchEnv, EnvInfo, ExternalEnv, StepOut};
use numpy::{PyArray2, PyArrayMethods, PyReadonlyArray1, PyReadonlyArray2};
use pyo3::prelude::*;

/// The library's error for a failed call of the environment `name`.
fn env_err(name: &str, e: PyErr) -> metagrad::Error {
    let msg = Python::attach(|py| e.value(py).to_string());
    // The pool's messages start with `env '<name>':` already.
    if msg.starts_with("env ") {
        metagrad::error::invalid("env", msg.trim_start_matches("env ").to_string())
    } else {
        metagrad::error::invalid(format!("env {name:?}"), msg)
    }
}

/// A Python meta-task (a `metagrad._env_pool.Spec`).
pub struct PyExternal {
    spec: Py<PyAny>,
    info: EnvInfo,
}

impl PyExternal {
    /// Reads the description of `spec`.
    pub fn new(spec: &Bound<'_, PyAny>) -> PyResult<Self> {
        let d = spec.call_method0("info")?;
        let settings: String = d.get_item("settings")?.extract()?;
        let info = EnvInfo {
            name: d.get_item("name")?.extract()?,
            obs_dim: d.get_item("obs_dim")?.extract()?,
            act_dim: d.get_item("act_dim")?.extract()?,
            action_low: d.get_item("action_low")?.extract()?,
            action_high: d.get_item("action_high")?.extract()?,
            reports_success: d.get_item("reports_success")?.extract()?,
            settings: serde_json::from_str(&settings).map_err(|e| {
                pyo3::exceptions::PyValueError::new_err(format!("invalid env settings (not JSON): {e}"))
            })?,
        };
        Ok(Self { spec: spec.clone().unbind(), info })
    }
}

impl ExternalEnv for PyExternal {
    fn info(&self) -> &EnvInfo {
        &self.info
    }

    fn open(&self) -> metagrad::Result<Box<dyn BatchEnv>> {
        let pool = Python::attach(|py| -> PyResult<(Py<PyAny>, usize)> {
            let pool = self.spec.call_method0(py, "open")?;
            let max: usize = pool.call_method0(py, "max_copies")?.extract(py)?;
            Ok((pool, max))
        });
        let (pool, max) = pool.map_err(|e| env_err(&self.info.name, e))?;
        Ok(Box::new(PyBatch { pool, info: self.info.clone(), max }))
    }
}

/// An open `metagrad._env_pool.Pool`.
struct PyBatch {
    pool: Py<PyAny>,
    info: EnvInfo,
    /// `max_copies` of the pool (0: no limit).
    max: usize,
}

/// Copies the rows of a `rows × width` float64 array into `out` at `rows_at` (or in order).
fn put_rows(a: &Bound<'_, PyAny>, width: usize, rows_at: Option<&[usize]>, out: &mut [f64]) -> PyResult<()> {
    let a: PyReadonlyArray2<'_, f64> = a.extract()?;
    let a = a.as_array();
    let n = rows_at.map_or(out.len() / width.max(1), <[usize]>::len);
    if a.shape() != [n, width] {
        return Err(pyo3::exceptions::PyValueError::new_err(format!(
            "the pool returned observations of shape {:?}, expected [{n}, {width}]",
            a.shape()
        )));
    }
    for (i, row) in a.outer_iter().enumerate() {
        let r = rows_at.map_or(i, |at| at[i]);
        for (o, x) in out[r * width..(r + 1) * width].iter_mut().zip(row.iter()) {
            *o = *x;
        }
    }
    Ok(())
}

fn put<T: Copy + numpy::Element>(a: &Bound<'_, PyAny>, out: &mut [T]) -> PyResult<()> {
    let a: PyReadonlyArray1<'_, T> = a.extract()?;
    let s = a.as_slice()?;
    if s.len() != out.len() {
        return Err(pyo3::exceptions::PyValueError::new_err(format!(
            "the pool returned {} values, expected {}",
            s.len(),
            out.len()
        )));
    }
    out.copy_from_slice(s);
    Ok(())
}

impl BatchEnv for PyBatch {
    fn info(&self) -> &EnvInfo {
        &self.info
    }

    fn draw_tasks(&mut self, n: usize, seed: u64) -> metagrad::Result<()> {
        Python::attach(|py| self.pool.call_method1(py, "draw_tasks", (n, seed)).map(|_| ()))
            .map_err(|e| env_err(&self.info.name, e))
    }

    fn start(&mut self, tasks: &[usize], seeds: &[u64], obs: &mut [f64]) -> metagrad::Result<()> {
        Python::attach(|py| {
            let a = self.pool.call_method1(py, "start", (tasks.to_vec(), seeds.to_vec()))?;
            put_rows(a.bind(py), self.info.obs_dim, None, obs)
        })
        .map_err(|e| env_err(&self.info.name, e))
    }

    fn reset(&mut self, copies: &[usize], seeds: &[u64], obs: &mut [f64]) -> metagrad::Result<()> {
        Python::attach(|py| {
            let a = self.pool.call_method1(py, "reset", (copies.to_vec(), seeds.to_vec()))?;
            put_rows(a.bind(py), self.info.obs_dim, Some(copies), obs)
        })
        .map_err(|e| env_err(&self.info.name, e))
    }

    fn step(&mut self, actions: &[f64], out: StepOut<'_>) -> metagrad::Result<()> {
        let (ad, n) = (self.info.act_dim, out.rewards.len());
        Python::attach(|py| {
            let a = numpy::PyArray1::from_slice(py, actions).reshape([n, ad])?;
            let a: Bound<'_, PyArray2<f64>> = a;
            let r = self.pool.call_method1(py, "step", (a,))?;
            let r = r.bind(py);
            put_rows(&r.get_item(0)?, self.info.obs_dim, None, out.obs)?;
            put(&r.get_item(1)?, out.rewards)?;
            put(&r.get_item(2)?, out.terminated)?;
            put(&r.get_item(3)?, out.truncated)?;
            put(&r.get_item(4)?, out.success)
        })
        .map_err(|e| env_err(&self.info.name, e))
    }

    fn max_copies(&self) -> usize {
        if self.max == 0 { usize::MAX } else { self.max }
    }
}

impl Drop for PyBatch {
    /// Closes the pool (its worker processes end).
    fn drop(&mut self) {
        Python::attach(|py| {
            if let Err(e) = self.pool.call_method0(py, "close") {
                e.print(py);
            }
        });
    }
}
