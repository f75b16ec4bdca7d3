//! The chain rule from row derivatives to parameter derivatives, for every estimator and
//! every policy.
//!
//! A batch objective is f(θ) = s Σ_n V̂_n(u_n(θ)), with u_n the rows of trajectory n and s
//! a scale (1/N for the mean). With g = ∂f/∂u, F = ∂²f/∂u² (block-diagonal over
//! trajectories) and J = ∂u/∂θ:
//!
//! * ∇f = Jᵀ g;
//! * ∇²f v = Jᵀ (F (J v)) + Σ_i g_i ∇²u_i v;
//! * ∇²f = Jᵀ F J + Σ_i g_i ∇²u_i.
//!
//! g comes from the kernels with `f64`; F·(Jv) from the same kernels with dual-number rows
//! (forward-over-reverse); dense F blocks from one dual pass per row. The policy supplies
//! J-products and the rows' curvature through [`ScoreRows`]. Trajectories are processed in
//! fixed chunks in parallel and reduced in order, so results do not depend on the number
//! of threads.

use num_dual::Dual64;
use rayon::prelude::*;

use super::PreparedBatch;
use crate::error::{Result, invalid};
use crate::policy::{RowBlocks, ScoreRows};

/// Trajectories per parallel work item (fixed, for thread-count-independent results).
const CHUNK: usize = 64;

/// A chunk's per-trajectory values and (row, ∂f/∂u) pairs.
type ChunkGradient = (Vec<f64>, Vec<(usize, f64)>);
/// A chunk's summed value and (row, ∂f/∂u, (F·Jv)_row) triples.
type ChunkDirectional = (f64, Vec<(usize, f64, f64)>);

/// Derivatives of a batch objective through a policy's rows.
pub struct BatchObjective<'a, R: ScoreRows> {
    batch: &'a PreparedBatch,
    rows: &'a R,
    scale: f64,
}

impl<'a, R: ScoreRows> BatchObjective<'a, R> {
    /// The mean of V̂ over the batch's trajectories (scale 1/N).
    pub fn new(batch: &'a PreparedBatch, rows: &'a R) -> Result<Self> {
        if rows.num_rows() != batch.n_rows() {
            return Err(invalid(
                "rows",
                format!("the policy provides {} rows, the batch needs {}", rows.num_rows(), batch.n_rows()),
            ));
        }
        if batch.is_empty() {
            return Err(invalid("trajectories", "need at least one trajectory"));
        }
        Ok(Self { batch, rows, scale: 1.0 / batch.len() as f64 })
    }

    /// Use f = `scale`·Σ_n V̂_n instead of the mean.
    pub fn with_scale(mut self, scale: f64) -> Self {
        self.scale = scale;
        self
    }

    fn chunks(&self) -> Vec<std::ops::Range<usize>> {
        let n = self.batch.len();
        (0..n.div_ceil(CHUNK)).map(|c| c * CHUNK..((c + 1) * CHUNK).min(n)).collect()
    }

    /// Row indices of trajectory n: ratio rows then critic-mean rows.
    fn row_indices(&self, n: usize) -> Vec<usize> {
        let mut idx: Vec<usize> = self.batch.steps(n).collect();
        if self.batch.critic_means {
            idx.extend(self.batch.mean_rows(n));
        }
        idx
    }

    /// Runs the kernel of trajectory n on rows `u` (ratio rows then mean rows).
    fn kernel<S: super::Scalar>(&self, n: usize, u: &[S], grad: &mut [S], scratch: &mut Vec<S>) -> S {
        let t = self.batch.steps(n).len();
        let (ratios, means) = u.split_at(t);
        self.batch.kernel(n, ratios, self.batch.critic_means.then_some(means), grad, scratch)
    }

    /// Per-trajectory estimates V̂_n (unscaled).
    pub fn per_trajectory_values(&self) -> Vec<f64> {
        self.row_pass(|_, _, _| ()).0
    }

    /// Runs every trajectory's kernel with f64 rows; calls `visit(n, rows, grad)`.
    fn row_pass<F>(&self, visit: F) -> (Vec<f64>, Vec<f64>)
    where
        F: Fn(usize, &[usize], &[f64]) + Sync,
    {
        let vals = self.rows.values();
        let parts: Vec<ChunkGradient> = self
            .chunks()
            .into_par_iter()
            .map(|range| {
                let (mut values, mut grads) = (Vec::with_capacity(range.len()), Vec::new());
                let (mut u, mut g, mut scratch) = (Vec::new(), Vec::new(), Vec::new());
                for n in range {
                    let idx = self.row_indices(n);
                    u.clear();
                    u.extend(idx.iter().map(|&i| vals[i]));
                    g.clear();
                    g.resize(idx.len(), 0.0);
                    values.push(self.kernel(n, &u, &mut g, &mut scratch));
                    visit(n, &idx, &g);
                    grads.extend(idx.iter().zip(&g).map(|(&i, &gi)| (i, gi)));
                }
                (values, grads)
            })
            .collect();
        let mut values = Vec::with_capacity(self.batch.len());
        let mut row_grad = vec![0.0; self.rows.num_rows()];
        for (v, g) in parts {
            values.extend(v);
            for (i, gi) in g {
                row_grad[i] = gi * self.scale;
            }
        }
        (values, row_grad)
    }

    /// f and ∂f/∂u (the row gradient).
    pub fn row_gradient(&self) -> (f64, Vec<f64>) {
        let (values, row_grad) = self.row_pass(|_, _, _| ());
        (values.iter().sum::<f64>() * self.scale, row_grad)
    }

    /// f and ∇_θ f = Jᵀ g.
    pub fn gradient(&self) -> (f64, Vec<f64>) {
        let (value, row_grad) = self.row_gradient();
        let mut grad = vec![0.0; self.rows.num_params()];
        self.rows.vjp_add(&row_grad, &mut grad);
        (value, grad)
    }

    /// f, ∇f and the Hessian-vector product ∇²f·v = Jᵀ F J v + Σ g_i ∇²u_i v.
    pub fn gradient_and_hvp(&self, v: &[f64]) -> (f64, Vec<f64>, Vec<f64>) {
        let vals = self.rows.values();
        let mut jv = vec![0.0; self.rows.num_rows()];
        self.rows.jvp(v, &mut jv);
        let n_steps = self.batch.n_steps();
        let parts: Vec<ChunkDirectional> = self
            .chunks()
            .into_par_iter()
            .map(|range| {
                let mut value = 0.0;
                let mut out = Vec::new();
                let (mut u, mut g, mut scratch) = (Vec::new(), Vec::new(), Vec::new());
                for n in range {
                    let idx = self.row_indices(n);
                    u.clear();
                    // ℓ-space tangent: dρ = ρ·(Jv), dc = (Jv).
                    u.extend(idx.iter().map(|&i| {
                        let tangent = if i < n_steps { vals[i] * jv[i] } else { jv[i] };
                        Dual64::new(vals[i], tangent)
                    }));
                    g.clear();
                    g.resize(idx.len(), Dual64::from(0.0));
                    value += self.kernel(n, &u, &mut g, &mut scratch).re;
                    out.extend(idx.iter().zip(&g).map(|(&i, gi)| (i, gi.re, gi.eps)));
                }
                (value, out)
            })
            .collect();
        let mut value = 0.0;
        let mut row_grad = vec![0.0; self.rows.num_rows()];
        let mut row_fu = vec![0.0; self.rows.num_rows()];
        for (val, g) in parts {
            value += val;
            for (i, gi, fi) in g {
                row_grad[i] = gi * self.scale;
                row_fu[i] = fi * self.scale;
            }
        }
        let d = self.rows.num_params();
        let mut grad = vec![0.0; d];
        self.rows.vjp_add(&row_grad, &mut grad);
        let mut hv = vec![0.0; d];
        self.rows.vjp_add(&row_fu, &mut hv);
        self.rows.curvature_hvp_add(&row_grad, v, &mut hv);
        (value * self.scale, grad, hv)
    }

    /// ∇²f·v.
    pub fn hvp(&self, v: &[f64]) -> Vec<f64> {
        self.gradient_and_hvp(v).2
    }

    /// Dense row-space second derivatives of trajectory n (k×k, k = its row count), one
    /// dual pass per row.
    pub fn row_hessian_block(&self, n: usize) -> Vec<f64> {
        let vals = self.rows.values();
        let idx = self.row_indices(n);
        let k = idx.len();
        let n_steps = self.batch.n_steps();
        let mut f = vec![0.0; k * k];
        let (mut u, mut g, mut scratch) = (Vec::new(), Vec::new(), Vec::new());
        for j in 0..k {
            u.clear();
            u.extend(idx.iter().enumerate().map(|(a, &i)| {
                let tangent = if a != j {
                    0.0
                } else if i < n_steps {
                    vals[i]
                } else {
                    1.0
                };
                Dual64::new(vals[i], tangent)
            }));
            g.clear();
            g.resize(k, Dual64::from(0.0));
            self.kernel(n, &u, &mut g, &mut scratch);
            for a in 0..k {
                f[a * k + j] = g[a].eps;
            }
        }
        f
    }

    /// f, ∇f and the dense Hessian ∇²f = Jᵀ F J + Σ g_i ∇²u_i (row-major D×D).
    pub fn hessian(&self) -> (f64, Vec<f64>, Vec<f64>) {
        let d = self.rows.num_params();
        let parts: Vec<Vec<f64>> = self
            .chunks()
            .into_par_iter()
            .map(|range| {
                let mut blocks = RowBlocks::new();
                for n in range {
                    let mut f = self.row_hessian_block(n);
                    f.iter_mut().for_each(|x| *x *= self.scale);
                    blocks.push(&self.row_indices(n), &f);
                }
                let mut h = vec![0.0; d * d];
                self.rows.outer_add(&blocks, &mut h);
                h
            })
            .collect();
        let mut h = vec![0.0; d * d];
        for p in parts {
            h.iter_mut().zip(p).for_each(|(a, b)| *a += b);
        }
        let (value, row_grad) = self.row_gradient();
        self.rows.curvature_hessian_add(&row_grad, &mut h);
        let mut grad = vec![0.0; d];
        self.rows.vjp_add(&row_grad, &mut grad);
        (value, grad, h)
    }
}
