//! The row interface: estimators on per-step log-likelihoods u = log π_θ(a_t|x_t), for any
//! policy and autodiff framework — the library's [`RowObjective`] on padded numpy arrays.

use std::borrow::Cow;

use metagrad::estimators::BatchObjective;
use metagrad::estimators::TaylorDiscount;
use metagrad::estimators::rows::{Padded, RowCritic, RowData, RowObjective, parse_estimator};
use numpy::ndarray::{Array, Array2, Array3, Dimension, Ix2, Ix3};
use numpy::{
    IntoPyArray, PyArray, PyArray1, PyArrayMethods, PyReadonlyArray, PyReadonlyArray1, PyUntypedArrayMethods,
};
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;

use crate::errors::py_err;

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(row_derivatives, m)?)
}

fn bad(field: &str, msg: impl std::fmt::Display) -> PyErr {
    PyValueError::new_err(format!("invalid {field}: {msg}"))
}

/// The entries of an array in row-major order as f64 (borrowed when f64 and contiguous).
fn entries<'a, D: Dimension>(a: &'a PyReadonlyArray<'_, f64, D>) -> Cow<'a, [f64]> {
    match a.as_slice() {
        Ok(s) => Cow::Borrowed(s),
        Err(_) => Cow::Owned(a.as_array().iter().copied().collect()),
    }
}

/// Float arrays of either precision: the engine computes in f64, and reads f32 arrays (a
/// framework's float32 tensors) without a conversion pass in Python. Extracted by dtype
/// (a failed typed extraction would build an error message per array).
macro_rules! floats {
    ($name:ident, $dim:ty, $extract:ident) => {
        enum $name<'py> {
            F64(PyReadonlyArray<'py, f64, $dim>),
            F32(PyReadonlyArray<'py, f32, $dim>),
        }

        impl $name<'_> {
            /// The entries in row-major order as f64, and the shape.
            fn flat(&self) -> (Cow<'_, [f64]>, Vec<usize>) {
                match self {
                    Self::F64(a) => (entries(a), a.shape().to_vec()),
                    Self::F32(a) => {
                        let wide: Vec<f64> = match a.as_slice() {
                            Ok(s) => s.iter().map(|&x| f64::from(x)).collect(),
                            Err(_) => a.as_array().iter().map(|&x| f64::from(x)).collect(),
                        };
                        (Cow::Owned(wide), a.shape().to_vec())
                    }
                }
            }
        }

        fn $extract<'py>(obj: &Bound<'py, PyAny>) -> PyResult<$name<'py>> {
            if let Ok(a) = obj.cast::<PyArray<f32, $dim>>() {
                return Ok($name::F32(a.readonly()));
            }
            Ok($name::F64(obj.extract()?))
        }
    };
}
floats!(Floats2, Ix2, floats2);
floats!(Floats3, Ix3, floats3);

fn flat<'a>(a: &'a Floats2<'_>) -> (Cow<'a, [f64]>, [usize; 2]) {
    let (v, s) = a.flat();
    (v, [s[0], s[1]])
}

fn flat3<'a>(a: &'a Floats3<'_>) -> (Cow<'a, [f64]>, [usize; 3]) {
    let (v, s) = a.flat();
    (v, [s[0], s[1], s[2]])
}

/// An output array in f64, or rounded to f32 when the caller asked for it.
fn out_array<'py, D: Dimension>(py: Python<'py>, a: Array<f64, D>, f32_out: bool) -> Bound<'py, PyAny> {
    if f32_out { a.mapv(|x| x as f32).into_pyarray(py).into_any() } else { a.into_pyarray(py).into_any() }
}

fn parse_discount(discount: &str) -> PyResult<TaylorDiscount> {
    match discount.trim().to_ascii_lowercase().replace('_', "-").as_str() {
        "absolute" => Ok(TaylorDiscount::Absolute),
        "from-first" => Ok(TaylorDiscount::FromFirst),
        _ => Err(bad("discount", format!("expected \"absolute\" or \"from-first\", got {discount:?}"))),
    }
}

type Out<'py> = (
    Value<'py>,
    Option<Bound<'py, PyAny>>,
    Option<Bound<'py, PyAny>>,
    Option<Bound<'py, PyAny>>,
    Option<Bound<'py, PyAny>>,
);

/// The mean estimate V̂, or (with `per_trajectory`) the N estimates V̂_n whose mean it is.
#[derive(IntoPyObject)]
enum Value<'py> {
    Mean(f64),
    PerTrajectory(Bound<'py, PyArray1<f64>>),
}

/// Value, row gradient and row HVPs of one estimator on padded N×T arrays (see
/// `metagrad.rows.derivatives`). `direction` is K×N×T (`direction_c` K×N×(T+1)); returns
/// (value, ∂V̂/∂u, ∂V̂/∂c or None, HVPs in u K×N×T or None, HVPs in c or None). With
/// `per_trajectory`, the value is the (N,) array of per-trajectory estimates V̂_n (one
/// more kernel pass): what a caller that stacks independent batches (tasks) into one call
/// needs to split the value by batch. Float arrays may be f64 or f32 (read as f64); the
/// gradient and HVP arrays are f64, or rounded to f32 with `f32_out`.
#[pyfunction]
#[pyo3(signature = (estimator, u, log_mu, rewards, *, gamma, truncation=1.0, discount="absolute",
                    lengths=None, state_values=None, q_taken=None, behaviour_means=None,
                    critic_means=None, gradient=true, direction=None, direction_c=None,
                    per_trajectory=false, f32_out=false))]
#[allow(clippy::too_many_arguments)]
fn row_derivatives<'py>(
    py: Python<'py>,
    estimator: &str,
    u: &Bound<'py, PyAny>,
    log_mu: &Bound<'py, PyAny>,
    rewards: &Bound<'py, PyAny>,
    gamma: f64,
    truncation: f64,
    discount: &str,
    lengths: Option<PyReadonlyArray1<'_, i64>>,
    state_values: Option<&Bound<'py, PyAny>>,
    q_taken: Option<&Bound<'py, PyAny>>,
    behaviour_means: Option<&Bound<'py, PyAny>>,
    critic_means: Option<&Bound<'py, PyAny>>,
    gradient: bool,
    direction: Option<&Bound<'py, PyAny>>,
    direction_c: Option<&Bound<'py, PyAny>>,
    per_trajectory: bool,
    f32_out: bool,
) -> PyResult<Out<'py>> {
    let e = parse_estimator(estimator, truncation, parse_discount(discount)?).map_err(py_err)?;
    let (u, log_mu, rewards) = (floats2(u)?, floats2(log_mu)?, floats2(rewards)?);
    let opt2 = |a: Option<&Bound<'py, PyAny>>| a.map(floats2).transpose();
    let opt3 = |a: Option<&Bound<'py, PyAny>>| a.map(floats3).transpose();
    let (state_values, q_taken) = (opt2(state_values)?, opt2(q_taken)?);
    let (behaviour_means, critic_means) = (opt2(behaviour_means)?, opt2(critic_means)?);
    let (direction, direction_c) = (opt3(direction)?, opt3(direction_c)?);
    let (u, shape) = flat(&u);
    let [n, t] = shape;
    let (log_mu, mu_shape) = flat(&log_mu);
    let (rewards, r_shape) = flat(&rewards);
    let lengths: Option<Vec<usize>> = match &lengths {
        None => None,
        Some(l) => {
            let l = l.as_array();
            let mut out = Vec::with_capacity(l.len());
            for (i, &len) in l.iter().enumerate() {
                if len < 0 {
                    return Err(bad(&format!("lengths[{i}]"), format!("must be in 0..={t}, got {len}")));
                }
                out.push(len as usize);
            }
            Some(out)
        }
    };
    let sv = state_values.as_ref().map(flat);
    let qt = q_taken.as_ref().map(flat);
    let bm = behaviour_means.as_ref().map(flat);
    let cm = critic_means.as_ref().map(flat);
    let critic = match (&sv, &qt, &bm) {
        (None, None, None) => RowCritic::None,
        (Some(v), None, None) => RowCritic::State(Padded { values: &v.0, shape: v.1 }),
        (None, Some(q), Some(b)) => RowCritic::Action {
            taken: Padded { values: &q.0, shape: q.1 },
            behaviour_means: Padded { values: &b.0, shape: b.1 },
            critic_means: cm.as_ref().map(|c| Padded { values: &c.0, shape: c.1 }),
        },
        (Some(_), _, _) => {
            return Err(bad(
                "critic",
                "give state_values or an action-value critic (q_taken, behaviour_means), not both",
            ));
        }
        (None, Some(_), None) => {
            return Err(bad("behaviour_means", "q_taken needs behaviour_means (N×(T+1))"));
        }
        (None, None, Some(_)) => return Err(bad("q_taken", "behaviour_means needs q_taken (N×T)")),
    };
    if cm.is_some() && !matches!(critic, RowCritic::Action { .. }) {
        return Err(bad("critic_means", "only with an action-value critic (q_taken, behaviour_means)"));
    }
    let dirs = direction.as_ref().map(flat3);
    let dirs_c = direction_c.as_ref().map(flat3);
    let k = match (&dirs, &dirs_c) {
        (None, None) => 0,
        (Some(d), _) => {
            if d.1[1..] != [n, t] {
                return Err(bad(
                    "direction",
                    format!("expected shape (N, T) = ({n}, {t}) per direction, got {:?}", &d.1[1..]),
                ));
            }
            d.1[0]
        }
        (None, Some(_)) => return Err(bad("direction_c", "given without direction (the u part)")),
    };
    if let Some(dc) = &dirs_c
        && dc.1 != [k, n, t + 1]
    {
        return Err(bad(
            "direction_c",
            format!("expected shape ({k}, {n}, {}) (K×N×(T+1)), got {:?}", t + 1, dc.1),
        ));
    }
    let data = RowData {
        u: Padded { values: &u, shape },
        log_mu: Padded { values: &log_mu, shape: mu_shape },
        rewards: Padded { values: &rewards, shape: r_shape },
        lengths: lengths.as_deref(),
        critic,
    };
    let result = py.detach(|| -> metagrad::Result<_> {
        let obj = RowObjective::new(e, gamma, &data)?;
        let g = if gradient || k == 0 { Some(obj.gradient()) } else { None };
        let mut hv_u = Vec::with_capacity(k * n * t);
        let mut hv_c = Vec::new();
        let mut value = g.as_ref().map(|g| g.value);
        for j in 0..k {
            let wu = &dirs.as_ref().expect("k > 0").0[j * n * t..(j + 1) * n * t];
            let wc = dirs_c.as_ref().map(|d| &d.0[j * n * (t + 1)..(j + 1) * n * (t + 1)]);
            let (gj, h) = obj.gradient_and_hvp(wu, wc)?;
            value.get_or_insert(gj.value);
            hv_u.extend_from_slice(&h.u);
            if let Some(c) = h.c {
                hv_c.extend_from_slice(&c);
            }
        }
        let has_c = obj.has_critic_means();
        let per_traj = if per_trajectory {
            Some(BatchObjective::new(obj.prepared(), obj.rows())?.per_trajectory_values())
        } else {
            None
        };
        Ok((value.expect("a gradient or an HVP was computed"), per_traj, g, hv_u, hv_c, has_c))
    });
    let (value, per_traj, g, hv_u, hv_c, has_c) = result.map_err(py_err)?;
    let value = match per_traj {
        Some(v) => Value::PerTrajectory(v.into_pyarray(py)),
        None => Value::Mean(value),
    };
    let arr2 = |v: Vec<f64>, cols: usize| {
        out_array(py, Array2::from_shape_vec((n, cols), v).expect("shape"), f32_out)
    };
    let arr3 = |v: Vec<f64>, cols: usize| {
        out_array(py, Array3::from_shape_vec((k, n, cols), v).expect("shape"), f32_out)
    };
    let (grad_u, grad_c) = match g.filter(|_| gradient) {
        Some(g) => (Some(arr2(g.u, t)), g.c.map(|c| arr2(c, t + 1))),
        None => (None, None),
    };
    let (hvp_u, hvp_c) = if k > 0 || dirs.is_some() {
        (Some(arr3(hv_u, t)), has_c.then(|| arr3(hv_c, t + 1)))
    } else {
        (None, None)
    };
    Ok((value, grad_u, grad_c, hvp_u, hvp_c))
}
