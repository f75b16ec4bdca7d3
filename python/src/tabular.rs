//! Tabular problems from numpy arrays: the estimators' value, gradient, Hessian and
//! Hessian-vector products, and the exact oracle — the library's [`Problem`] (the same
//! validation and code as `metagrad estimate`, so the same numbers bit for bit).

use metagrad::estimators::Estimator;
use metagrad::problem::{Problem, RawCritic, RawProblem, RawTrajectory};
use metagrad::tabular::oracle::Derivatives;
use numpy::{PyArray1, PyArrayMethods, PyReadonlyArray1, PyReadonlyArray2, PyReadonlyArray3};
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::PyDict;

use crate::errors::py_err;

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<TabularProblem>()
}

/// One estimator name (`is`, `dr`, `dr-trunc`, `taypo-K`, `lvc`, `maml`, `tmaml`, `tmaml-past`) with the
/// truncation level of `dr-trunc`.
pub fn parse_estimator(name: &str, truncation: f64) -> PyResult<Estimator> {
    let list = Estimator::parse_list(name, truncation).map_err(py_err)?;
    match list.as_slice() {
        [e] => Ok(*e),
        _ => Err(PyValueError::new_err(format!("invalid estimator: give one name, got {name:?}"))),
    }
}

fn rows(a: &PyReadonlyArray2<'_, f64>) -> Vec<Vec<f64>> {
    a.as_array().rows().into_iter().map(|r| r.to_vec()).collect()
}

/// A validated tabular problem (see `metagrad.TabularProblem` for the arguments).
#[pyclass(module = "metagrad._metagrad", frozen)]
pub struct TabularProblem {
    problem: Problem,
}

#[pymethods]
impl TabularProblem {
    #[new]
    #[pyo3(signature = (*, transitions, rewards, theta, behaviour, gamma, start_state, states, actions,
                        trajectory_rewards, lengths=None, state_values=None, action_values=None))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        transitions: PyReadonlyArray3<'_, f64>,
        rewards: PyReadonlyArray2<'_, f64>,
        theta: PyReadonlyArray2<'_, f64>,
        behaviour: PyReadonlyArray2<'_, f64>,
        gamma: f64,
        start_state: i64,
        states: PyReadonlyArray2<'_, i64>,
        actions: PyReadonlyArray2<'_, i64>,
        trajectory_rewards: PyReadonlyArray2<'_, f64>,
        lengths: Option<PyReadonlyArray1<'_, i64>>,
        state_values: Option<PyReadonlyArray1<'_, f64>>,
        action_values: Option<PyReadonlyArray2<'_, f64>>,
    ) -> PyResult<Self> {
        let (states, actions, traj_rewards) =
            (states.as_array(), actions.as_array(), trajectory_rewards.as_array());
        let (n, t_max) = actions.dim();
        let bad = |arg: &str, msg: String| Err(PyValueError::new_err(format!("invalid {arg}: {msg}")));
        if states.dim() != (n, t_max + 1) {
            return bad(
                "states",
                format!(
                    "expected shape ({n}, {}) (one more column than actions), got {:?}",
                    t_max + 1,
                    states.dim()
                ),
            );
        }
        if traj_rewards.dim() != (n, t_max) {
            return bad(
                "trajectory_rewards",
                format!("expected the shape of actions ({n}, {t_max}), got {:?}", traj_rewards.dim()),
            );
        }
        let lengths: Vec<usize> = match &lengths {
            None => vec![t_max; n],
            Some(l) => {
                let l = l.as_array();
                if l.len() != n {
                    return bad(
                        "lengths",
                        format!("expected {n} entries (one per trajectory), got {}", l.len()),
                    );
                }
                let mut out = Vec::with_capacity(n);
                for (i, &len) in l.iter().enumerate() {
                    if len < 0 || len as u64 > t_max as u64 {
                        return bad(&format!("lengths[{i}]"), format!("must be in 0..={t_max}, got {len}"));
                    }
                    out.push(len as usize);
                }
                out
            }
        };
        let trajectories = (0..n)
            .map(|i| {
                let len = lengths[i];
                RawTrajectory {
                    states: states.row(i).iter().take(len + 1).copied().collect(),
                    actions: actions.row(i).iter().take(len).copied().collect(),
                    rewards: traj_rewards.row(i).iter().take(len).copied().collect(),
                }
            })
            .collect();
        let transitions = transitions
            .as_array()
            .outer_iter()
            .map(|per_state| per_state.rows().into_iter().map(|r| r.to_vec()).collect())
            .collect();
        let critic = match (state_values, action_values) {
            (None, None) => None,
            (s, q) => Some(RawCritic {
                state_values: s.map(|s| s.as_array().to_vec()),
                action_values: q.as_ref().map(rows),
            }),
        };
        let raw = RawProblem {
            gamma,
            start_state,
            transitions,
            rewards: rows(&rewards),
            theta: rows(&theta),
            behaviour: rows(&behaviour),
            critic,
            trajectories,
        };
        Ok(Self { problem: Problem::from_raw(raw).map_err(py_err)? })
    }

    /// A problem from the JSON text of a `metagrad estimate` input file.
    #[staticmethod]
    fn from_json(text: &str) -> PyResult<Self> {
        Ok(Self { problem: Problem::parse(text, "the JSON text").map_err(py_err)? })
    }

    /// A problem from a `metagrad estimate` input file.
    #[staticmethod]
    fn load(path: std::path::PathBuf) -> PyResult<Self> {
        Ok(Self { problem: Problem::load(&path).map_err(py_err)? })
    }

    /// The problem as the JSON text of a `metagrad estimate` input file.
    fn to_json(&self) -> String {
        serde_json::to_string_pretty(&RawProblem::from_problem(&self.problem)).expect("a problem serialises")
    }

    #[getter]
    fn n_states(&self) -> usize {
        self.problem.mdp.n_states()
    }
    #[getter]
    fn n_actions(&self) -> usize {
        self.problem.mdp.n_actions()
    }
    #[getter]
    fn gamma(&self) -> f64 {
        self.problem.mdp.gamma()
    }
    #[getter]
    fn n_trajectories(&self) -> usize {
        self.problem.trajectories.len()
    }

    /// Mean estimate, gradient and (if `hessian`) Hessian of one estimator.
    #[pyo3(signature = (estimator, truncation=1.0, hessian=true))]
    fn estimate<'py>(
        &self,
        py: Python<'py>,
        estimator: &str,
        truncation: f64,
        hessian: bool,
    ) -> PyResult<Bound<'py, PyDict>> {
        let e = parse_estimator(estimator, truncation)?;
        self.problem.check_estimators(&[e]).map_err(py_err)?;
        let batch = metagrad::tabular::TabularBatch::new(
            &self.problem.trajectories,
            &self.problem.behaviour,
            self.problem.mdp.n_actions(),
        );
        let d = py
            .detach(|| {
                batch.estimate(
                    e,
                    self.problem.mdp.gamma(),
                    &self.problem.policy,
                    self.problem.critic.as_ref(),
                    hessian,
                )
            })
            .map_err(py_err)?;
        self.derivatives(py, d, hessian)
    }

    /// ∇²V̂·v of one estimator without forming the Hessian (`v` flat, index x·|A| + a).
    #[pyo3(signature = (estimator, v, truncation=1.0))]
    fn hvp<'py>(
        &self,
        py: Python<'py>,
        estimator: &str,
        v: PyReadonlyArray1<'_, f64>,
        truncation: f64,
    ) -> PyResult<Bound<'py, PyArray1<f64>>> {
        let e = parse_estimator(estimator, truncation)?;
        let v = v.as_array().to_vec();
        let hv = py.detach(|| self.problem.hvp(e, &v)).map_err(py_err)?;
        Ok(PyArray1::from_vec(py, hv))
    }

    /// The exact V^{π_θ}(x_0), gradient and Hessian of the infinite-horizon MDP.
    fn exact<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let d = py.detach(|| self.problem.exact());
        self.derivatives(py, d, true)
    }

    /// The exact finite-horizon J_T and its derivatives (bootstrapped by the critic, or 0).
    #[pyo3(signature = (horizon, bootstrap=true))]
    fn finite_horizon<'py>(
        &self,
        py: Python<'py>,
        horizon: usize,
        bootstrap: bool,
    ) -> PyResult<Bound<'py, PyDict>> {
        let d = py.detach(|| self.problem.finite_horizon(horizon, bootstrap)).map_err(py_err)?;
        self.derivatives(py, d, true)
    }
}

impl TabularProblem {
    /// {"value", "gradient" (|X|×|A|), "hessian" (D×D or None)}.
    fn derivatives<'py>(
        &self,
        py: Python<'py>,
        d: Derivatives,
        hessian: bool,
    ) -> PyResult<Bound<'py, PyDict>> {
        let (ns, na) = (self.problem.mdp.n_states(), self.problem.mdp.n_actions());
        let out = PyDict::new(py);
        out.set_item("value", d.value)?;
        out.set_item("gradient", PyArray1::from_vec(py, d.gradient).reshape([ns, na])?)?;
        if hessian {
            out.set_item("hessian", PyArray1::from_vec(py, d.hessian).reshape([ns * na, ns * na])?)?;
        } else {
            out.set_item("hessian", py.None())?;
        }
        Ok(out)
    }
}
