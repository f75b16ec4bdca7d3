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
//! (forward-over-reverse); dense F blocks in closed form where the estimator has one,
//! otherwise from one dual pass per row. The policy supplies J-products and the rows'
//! curvature through [`ScoreRows`]. Trajectories are processed in fixed chunks in
//! parallel and combined in order, so results do not depend on the number of threads.

use std::ops::Range;

use num_dual::Dual64;
use rayon::prelude::*;

use super::{DENSE_HESSIAN_MAX_T, PreparedBatch, Scalar};
use crate::error::{Result, invalid};
use crate::policy::{RowBlocks, ScoreRows, SemiseparableBlocks};

/// Trajectories per parallel work item (fixed, for thread-count-independent results).
const CHUNK: usize = 64;

/// Chunks whose D×D Hessian parts are held at once by [`BatchObjective::hessian`] before
/// they are added in order (fixed, for thread-count-independent results).
const HESSIAN_GROUP: usize = 8;

/// A contiguous run of trajectories and the rows they own.
#[derive(Clone, Debug)]
struct Chunk {
    trajectories: Range<usize>,
    /// Ratio rows (global indices).
    ratio: Range<usize>,
    /// Critic-mean rows (global indices; empty without them).
    mean: Range<usize>,
}

/// Splits `v` into consecutive mutable pieces of the given lengths.
fn split_lengths<T>(mut v: &mut [T], lengths: impl Iterator<Item = usize>) -> Vec<&mut [T]> {
    let mut out = Vec::new();
    for len in lengths {
        let (head, tail) = std::mem::take(&mut v).split_at_mut(len);
        out.push(head);
        v = tail;
    }
    out
}

/// Maps `f` over `items` in order: in parallel on the current rayon pool when it has more
/// than one thread, sequentially otherwise (a one-thread pool would only add hand-offs).
fn map_ordered<I: Send, T: Send>(items: Vec<I>, f: impl Fn(I) -> T + Sync + Send) -> Vec<T> {
    if rayon::current_num_threads() <= 1 || items.len() <= 1 {
        items.into_iter().map(f).collect()
    } else {
        items.into_par_iter().map(f).collect()
    }
}

/// Derivatives of a batch objective through a policy's rows.
pub struct BatchObjective<'a, R: ScoreRows> {
    batch: &'a PreparedBatch,
    rows: &'a R,
    scale: f64,
    chunks: Vec<Chunk>,
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
        let n = batch.len();
        let chunks = (0..n.div_ceil(CHUNK))
            .map(|c| {
                let tr = c * CHUNK..((c + 1) * CHUNK).min(n);
                let ratio = batch.step_start[tr.start]..batch.step_start[tr.end];
                let mean = if batch.critic_means {
                    batch.mean_rows(tr.start).start..batch.mean_rows(tr.end - 1).end
                } else {
                    0..0
                };
                Chunk { trajectories: tr, ratio, mean }
            })
            .collect();
        Ok(Self { batch, rows, scale: 1.0 / n as f64, chunks })
    }

    /// Use f = `scale`·Σ_n V̂_n instead of the mean.
    pub fn with_scale(mut self, scale: f64) -> Self {
        self.scale = scale;
        self
    }

    /// Rows of trajectory n relative to its chunk: (ratio range, mean range).
    fn local_rows(&self, chunk: &Chunk, n: usize) -> (Range<usize>, Range<usize>) {
        let s = self.batch.steps(n);
        let ratio = s.start - chunk.ratio.start..s.end - chunk.ratio.start;
        let mean = if self.batch.critic_means {
            let m = self.batch.mean_rows(n);
            m.start - chunk.mean.start..m.end - chunk.mean.start
        } else {
            0..0
        };
        (ratio, mean)
    }

    /// Runs every trajectory's kernel on scalar rows built by `lift` (row value, global
    /// index) and hands each chunk's rows, gradients and values to `emit`. Chunks run in
    /// parallel; `emit` receives them in order through the returned vector.
    fn pass<S, T, L, E>(&self, chunks: &[Chunk], lift: L, emit: E) -> Vec<T>
    where
        S: Scalar + Send,
        T: Send,
        L: Fn(f64, usize) -> S + Sync,
        E: Fn(&Chunk, &[S], &[S], &[S], &[S], Vec<S>) -> T + Sync,
    {
        let vals = self.rows.values();
        map_ordered(chunks.iter().collect(), |chunk| {
            let lift_range = |r: &Range<usize>, base: usize| -> Vec<S> {
                (r.start..r.end).map(|i| lift(vals[base + i], base + i)).collect()
            };
            let ratios = lift_range(&chunk.ratio, 0);
            let means = lift_range(&chunk.mean, 0);
            let mut g_ratio = vec![S::zero(); ratios.len()];
            let mut g_mean = vec![S::zero(); means.len()];
            let mut values = Vec::with_capacity(chunk.trajectories.len());
            let mut scratch = Vec::new();
            for n in chunk.trajectories.clone() {
                let (r, m) = self.local_rows(chunk, n);
                let means_arg = self.batch.critic_means.then(|| (&means[m.clone()], &mut g_mean[m.clone()]));
                values.push(self.batch.kernel(
                    n,
                    &ratios[r.clone()],
                    means_arg,
                    &mut g_ratio[r],
                    &mut scratch,
                ));
            }
            emit(chunk, &ratios, &means, &g_ratio, &g_mean, values)
        })
    }

    /// Splits a row-space vector into each chunk's (ratio rows, critic-mean rows) pieces.
    fn output_pieces<'o>(&self, out: &'o mut [f64]) -> Vec<(&'o mut [f64], &'o mut [f64])> {
        let (ratio_out, mean_out) = out.split_at_mut(self.batch.n_steps());
        split_lengths(ratio_out, self.chunks.iter().map(|c| c.ratio.len()))
            .into_iter()
            .zip(split_lengths(mean_out, self.chunks.iter().map(|c| c.mean.len())))
            .collect()
    }

    /// Per-trajectory estimates V̂_n (unscaled).
    pub fn per_trajectory_values(&self) -> Vec<f64> {
        self.pass(&self.chunks, |v, _| v, |_, _, _, _, _, values: Vec<f64>| values).concat()
    }

    /// `scale`·Σ_n V̂_n and its row gradient times `scale`: one kernel pass in which the
    /// kernels read the rows in place and write straight into per-chunk pieces of the output
    /// (scaled there, in parallel). `scale` = 1 gives the unscaled gradient that the
    /// closed-form row HVP takes (multiplying by 1 is exact).
    fn scaled_row_gradient(&self, scale: f64) -> (f64, Vec<f64>) {
        let vals = self.rows.values();
        let mut row_grad = vec![0.0; self.rows.num_rows()];
        let items: Vec<_> = self.chunks.iter().zip(self.output_pieces(&mut row_grad)).collect();
        let sums: Vec<f64> = map_ordered(items, |(chunk, (g_ratio, g_mean))| {
            let mut scratch = Vec::new();
            let mut sum = 0.0;
            for n in chunk.trajectories.clone() {
                let (r, m) = self.local_rows(chunk, n);
                let ratios = &vals[chunk.ratio.start + r.start..chunk.ratio.start + r.end];
                let means = &vals[chunk.mean.start + m.start..chunk.mean.start + m.end];
                let means_arg = self.batch.critic_means.then(|| (means, &mut g_mean[m.clone()]));
                sum += self.batch.kernel(n, ratios, means_arg, &mut g_ratio[r], &mut scratch);
            }
            g_ratio.iter_mut().chain(g_mean.iter_mut()).for_each(|g| *g *= scale);
            sum
        });
        (sums.iter().sum::<f64>() * scale, row_grad)
    }

    /// f and the row gradient ∂f/∂u (the hot path of every gradient).
    pub fn row_gradient(&self) -> (f64, Vec<f64>) {
        self.scaled_row_gradient(self.scale)
    }

    /// The row-space product F·(Jv) in closed form (scaled), given the unscaled row gradient
    /// `g` (`scaled_row_gradient(1.0)`): no kernel pass.
    fn closed_row_hvp(&self, jv: &[f64], g: &[f64]) -> Vec<f64> {
        let mut row_fu = vec![0.0; self.rows.num_rows()];
        let items: Vec<_> = self.chunks.iter().zip(self.output_pieces(&mut row_fu)).collect();
        let vals = self.rows.values();
        map_ordered(items, |(chunk, (f_ratio, f_mean))| {
            for n in chunk.trajectories.clone() {
                let (r, m) = self.local_rows(chunk, n);
                let (rg, mg) = (
                    chunk.ratio.start + r.start..chunk.ratio.start + r.end,
                    chunk.mean.start + m.start..chunk.mean.start + m.end,
                );
                let means_hvp =
                    self.batch.critic_means.then(|| (&g[mg.clone()], &jv[mg], &mut f_mean[m.clone()]));
                self.batch.closed_form_row_hvp(
                    n,
                    &vals[rg.clone()],
                    &g[rg.clone()],
                    means_hvp,
                    &jv[rg],
                    &mut f_ratio[r],
                );
            }
            f_ratio.iter_mut().chain(f_mean.iter_mut()).for_each(|x| *x *= self.scale);
        });
        row_fu
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
        self.gradient_and_hvp_with(v, self.batch.has_closed_form_row_hvp())
    }

    /// [`Self::gradient_and_hvp`], with F·(Jv) in closed form (`closed`) or by dual passes.
    fn gradient_and_hvp_with(&self, v: &[f64], closed: bool) -> (f64, Vec<f64>, Vec<f64>) {
        let mut jv = vec![0.0; self.rows.num_rows()];
        self.rows.jvp(v, &mut jv);
        let (value, row_grad, row_fu) = self.row_derivatives(&jv, closed);
        let d = self.rows.num_params();
        let (mut grad, mut hv) = (vec![0.0; d], vec![0.0; d]);
        self.rows.gradient_and_hvp_add(&row_grad, &row_fu, v, &mut grad, &mut hv);
        (value, grad, hv)
    }

    /// f, the row gradient g = ∂f/∂u and the row-space product F·(Jv) for the row tangent
    /// `jv` = J v, with F·(Jv) in closed form (`closed`) or by dual passes.
    fn row_derivatives(&self, jv: &[f64], closed: bool) -> (f64, Vec<f64>, Vec<f64>) {
        let s = self.scale;
        if closed {
            // f64 kernels for g, then the O(T) closed-form F·(Jv).
            let (sum, mut row_grad) = self.scaled_row_gradient(1.0);
            let row_fu = self.closed_row_hvp(jv, &row_grad);
            row_grad.iter_mut().for_each(|g| *g *= s);
            return (sum * s, row_grad, row_fu);
        }
        let nr = self.rows.num_rows();
        let n_steps = self.batch.n_steps();
        // ℓ-space tangent: dρ = ρ·(Jv) for ratio rows, dc = (Jv) for critic-mean rows.
        let lift = |val: f64, i: usize| Dual64::new(val, if i < n_steps { val * jv[i] } else { jv[i] });
        let (mut row_grad, mut row_fu) = (vec![0.0; nr], vec![0.0; nr]);
        let items: Vec<_> = self
            .chunks
            .iter()
            .zip(self.output_pieces(&mut row_grad).into_iter().zip(self.output_pieces(&mut row_fu)))
            .collect();
        let vals = self.rows.values();
        let sums = map_ordered(items, |(chunk, ((g_ratio, g_mean), (f_ratio, f_mean)))| {
            let mut sum = 0.0;
            // Any estimator: forward-over-reverse on dual rows.
            let mut scratch = Vec::new();
            let ratios: Vec<Dual64> = chunk.ratio.clone().map(|i| lift(vals[i], i)).collect();
            let means: Vec<Dual64> = chunk.mean.clone().map(|i| lift(vals[i], i)).collect();
            let mut gr = vec![Dual64::from(0.0); ratios.len()];
            let mut gm = vec![Dual64::from(0.0); means.len()];
            for n in chunk.trajectories.clone() {
                let (r, m) = self.local_rows(chunk, n);
                let means_arg = self.batch.critic_means.then(|| (&means[m.clone()], &mut gm[m.clone()]));
                sum += self.batch.kernel(n, &ratios[r.clone()], means_arg, &mut gr[r], &mut scratch).re;
            }
            for (x, (g, f)) in gr.iter().chain(&gm).zip(
                g_ratio.iter_mut().chain(g_mean.iter_mut()).zip(f_ratio.iter_mut().chain(f_mean.iter_mut())),
            ) {
                *g = x.re * s;
                *f = x.eps * s;
            }
            sum
        });
        let value: f64 = sums.iter().sum();
        (value * s, row_grad, row_fu)
    }

    /// ∇²f·v. For policies with a fused pass ([`ScoreRows::has_fused_hvp`]), through
    /// [`ScoreRows::fused_hvp_add`]: one `f64`
    /// kernel pass for g, then F·(Jv) (closed form where the estimator has one, else dual
    /// passes) inside it. For the Gaussian MLP that is one forward-mode and one
    /// forward-over-reverse pass, instead of [`Self::gradient_and_hvp`]'s jvp, two vjps
    /// and curvature product.
    pub fn hvp(&self, v: &[f64]) -> Vec<f64> {
        if !self.rows.has_fused_hvp() {
            return self.gradient_and_hvp(v).2;
        }
        // One kernel pass: g for the plain part and, unscaled, for the closed-form F·(Jv).
        let closed = self.batch.has_closed_form_row_hvp();
        let (_, g) = self.scaled_row_gradient(1.0);
        let row_grad: Vec<f64> = g.iter().map(|x| x * self.scale).collect();
        let mut op = |jv: &[f64], c: &mut [f64]| {
            let fu = if closed { self.closed_row_hvp(jv, &g) } else { self.row_derivatives(jv, false).2 };
            c.copy_from_slice(&fu)
        };
        let mut hv = vec![0.0; self.rows.num_params()];
        self.rows.fused_hvp_add(&row_grad, v, &mut op, &mut hv);
        hv
    }

    /// Dense row Hessian of trajectory n by one dual pass per row (any estimator).
    fn dual_row_hessian(&self, n: usize, ratios: &[f64], means: &[f64], f: &mut [f64]) {
        let (t, m) = (ratios.len(), means.len());
        let k = t + m;
        let mut scratch = Vec::new();
        for j in 0..k {
            // Unit ℓ-space tangent on row j: dρ_j = ρ_j, or dc_j = 1.
            let r: Vec<Dual64> = ratios
                .iter()
                .enumerate()
                .map(|(a, &x)| Dual64::new(x, if a == j { x } else { 0.0 }))
                .collect();
            let c: Vec<Dual64> = means
                .iter()
                .enumerate()
                .map(|(a, &x)| Dual64::new(x, if a + t == j { 1.0 } else { 0.0 }))
                .collect();
            let mut gr = vec![Dual64::from(0.0); t];
            let mut gc = vec![Dual64::from(0.0); m];
            let means_arg = self.batch.critic_means.then(|| (&c[..], &mut gc[..]));
            self.batch.kernel(n, &r, means_arg, &mut gr, &mut scratch);
            for (a, x) in gr.iter().chain(&gc).enumerate() {
                f[a * k + j] = x.eps;
            }
        }
    }

    /// Dense row Hessian block of trajectory n (k×k, ratio rows then critic-mean rows).
    pub fn row_hessian_block(&self, n: usize) -> Vec<f64> {
        let chunk = &self.chunks[n / CHUNK];
        let (r, m) = self.local_rows(chunk, n);
        let vals = self.rows.values();
        let ratios = &vals[chunk.ratio.start + r.start..chunk.ratio.start + r.end];
        let means = &vals[chunk.mean.start + m.start..chunk.mean.start + m.end];
        let k = ratios.len() + means.len();
        let mut f = vec![0.0; k * k];
        self.row_hessian_into(n, ratios, means, &mut f);
        f
    }

    fn row_hessian_into(&self, n: usize, ratios: &[f64], means: &[f64], f: &mut [f64]) {
        let (mut gr, mut gc, mut scratch) = (vec![0.0; ratios.len()], vec![0.0; means.len()], Vec::new());
        let means_arg = self.batch.critic_means.then(|| (means, &mut gc[..]));
        self.batch.kernel(n, ratios, means_arg, &mut gr, &mut scratch);
        let gc_arg = self.batch.critic_means.then_some(&gc[..]);
        if !self.batch.closed_form_row_hessian(n, ratios, &gr, gc_arg, f) {
            self.dual_row_hessian(n, ratios, means, f);
        }
    }

    /// f, ∇f and the dense Hessian ∇²f = Jᵀ F J + Σ g_i ∇²u_i (row-major D×D).
    ///
    /// Row Hessians in semiseparable form where the estimator has one (IS, DR, truncated DR,
    /// TayPO-2, the naive score: O(T) per trajectory, and O(T·D) for the tabular softmax's
    /// JᵀFJ), dense k×k blocks otherwise (TayPO-K for K ≠ 2). Chunks are reduced in order,
    /// a fixed group (8 chunks) at a time, so memory is O(N·T + D²).
    ///
    /// Estimators without such a form (TayPO-K, K ≥ 3) on trajectories longer than
    /// [`DENSE_HESSIAN_MAX_T`] get their Hessian column by column from D Hessian-vector
    /// products instead of dense T×T blocks: time O(D·N·T·K), memory O(N·T + D²).
    pub fn hessian(&self) -> (f64, Vec<f64>, Vec<f64>) {
        let longest = (0..self.batch.len()).map(|n| self.batch.steps(n).len()).max().unwrap_or(0);
        if !self.batch.estimator.has_linear_hessian() && longest > DENSE_HESSIAN_MAX_T {
            self.hessian_by_hvps()
        } else {
            self.hessian_with(true)
        }
    }

    /// f, ∇f and the Hessian from D Hessian-vector products with the unit vectors (column
    /// j is ∇²f e_j), symmetrised: (H + Hᵀ)/2 removes the products' round-off asymmetry.
    fn hessian_by_hvps(&self) -> (f64, Vec<f64>, Vec<f64>) {
        let d = self.rows.num_params();
        let (value, grad) = self.gradient();
        let mut h = vec![0.0; d * d];
        let mut e = vec![0.0; d];
        for j in 0..d {
            e[j] = 1.0;
            let col = self.hvp(&e);
            e[j] = 0.0;
            for i in 0..d {
                h[i * d + j] = col[i];
            }
        }
        for i in 0..d {
            for j in 0..i {
                let m = 0.5 * (h[i * d + j] + h[j * d + i]);
                h[i * d + j] = m;
                h[j * d + i] = m;
            }
        }
        (value, grad, h)
    }

    /// [`Self::hessian`], with the semiseparable row Hessians (`structured`) or dense blocks.
    fn hessian_with(&self, structured: bool) -> (f64, Vec<f64>, Vec<f64>) {
        let d = self.rows.num_params();
        let s = self.scale;
        let (mut value, mut h) = (0.0, vec![0.0; d * d]);
        let mut chunk_grads = Vec::with_capacity(self.chunks.len());
        for group in self.chunks.chunks(HESSIAN_GROUP) {
            // One pass gives rows and their gradients; the row Hessians come from those.
            let parts: Vec<(Vec<f64>, Vec<f64>, f64)> = self.pass(
                group,
                |v, _| v,
                |chunk, ratios: &[f64], means: &[f64], gr: &[f64], gm: &[f64], values: Vec<f64>| {
                    let mut blocks = RowBlocks::new();
                    let mut semi = SemiseparableBlocks::new();
                    let (mut f, mut idx) = (Vec::new(), Vec::new());
                    for n in chunk.trajectories.clone() {
                        let (r, m) = self.local_rows(chunk, n);
                        let gc = self.batch.critic_means.then(|| &gm[m.clone()]);
                        let (rs, ms) = (&ratios[r.clone()], &means[m.clone()]);
                        let starts = (chunk.ratio.start + r.start, chunk.mean.start + m.start);
                        if structured
                            && self.batch.semiseparable_row_hessian(
                                n,
                                rs,
                                &gr[r.clone()],
                                gc,
                                starts,
                                s,
                                &mut semi,
                            )
                        {
                            continue;
                        }
                        let k = r.len() + m.len();
                        f.clear();
                        f.resize(k * k, 0.0);
                        if !self.batch.closed_form_row_hessian(n, rs, &gr[r.clone()], gc, &mut f) {
                            self.dual_row_hessian(n, rs, ms, &mut f);
                        }
                        f.iter_mut().for_each(|x| *x *= s);
                        idx.clear();
                        idx.extend(r.map(|i| chunk.ratio.start + i));
                        idx.extend(m.map(|i| chunk.mean.start + i));
                        blocks.push(&idx, &f);
                    }
                    let mut h = vec![0.0; d * d];
                    if !blocks.is_empty() {
                        self.rows.outer_add(&blocks, &mut h);
                    }
                    if !semi.is_empty() {
                        self.rows.semiseparable_outer_add(&semi, &mut h);
                    }
                    let grads = gr.iter().chain(gm).map(|g| g * s).collect();
                    (h, grads, values.iter().sum())
                },
            );
            for (ph, grads, v) in parts {
                h.iter_mut().zip(ph).for_each(|(a, b)| *a += b);
                chunk_grads.push(grads);
                value += v;
            }
        }
        // Chunk gradients hold ratio rows then mean rows; reorder to the global layout.
        let mut row_grad = Vec::with_capacity(self.rows.num_rows());
        for (p, c) in chunk_grads.iter().zip(&self.chunks) {
            row_grad.extend_from_slice(&p[..c.ratio.len()]);
        }
        for (p, c) in chunk_grads.iter().zip(&self.chunks) {
            row_grad.extend_from_slice(&p[c.ratio.len()..]);
        }
        let value = value * s;
        self.rows.curvature_hessian_add(&row_grad, &mut h);
        let mut grad = vec![0.0; d];
        self.rows.vjp_add(&row_grad, &mut grad);
        (value, grad, h)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::estimators::{Estimator, Taylor2Pairs, TaylorDiscount};
    use crate::policy::TabularSoftmax;
    use crate::tabular::{Critic, RandomMdpParams, TabularBatch, TabularMdp};
    use rand::{RngExt, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    #[test]
    fn hessians_from_hvps_equal_the_dense_blocks() {
        // TayPO-3 (dense row blocks) on a small tabular problem: the column-by-column
        // Hessian that long trajectories use equals the block-assembled one.
        let mut rng = ChaCha8Rng::seed_from_u64(11);
        let params = RandomMdpParams { n_states: 3, n_actions: 2, dirichlet: 1.0, ..Default::default() };
        let mdp = TabularMdp::random(&params, &mut rng);
        let theta: Vec<f64> = (0..6).map(|_| rng.random_range(-1.0..1.0)).collect();
        let policy = TabularSoftmax::new(3, 2, theta);
        let mu = vec![0.5; 6];
        let data: Vec<_> = (0..7).map(|_| mdp.sample_trajectory(&mu, 9, &mut rng)).collect();
        let critic = Critic::StateValues(vec![0.3, -0.2, 0.5]);
        for order in [3, 4] {
            let e = Estimator::TayPo { order, discount: TaylorDiscount::Absolute };
            let batch = TabularBatch::new(&data, &mu, 2);
            let prepared = batch.prepare(e, 0.9, Some(&critic)).unwrap();
            let rows = batch.rows(&policy, &prepared, Some(&critic));
            let obj = BatchObjective::new(&prepared, &rows).unwrap();
            let (v1, g1, h1) = obj.hessian_with(true);
            let (v2, g2, h2) = obj.hessian_by_hvps();
            assert_eq!((v1, &g1), (v2, &g2));
            let err = h1.iter().zip(&h2).map(|(a, b)| (a - b).abs()).fold(0.0, f64::max);
            let scale = h1.iter().map(|a| a.abs()).fold(0.0, f64::max);
            assert!(err <= 1e-12 * scale.max(1.0), "taypo-{order}: {err} (scale {scale})");
        }
    }

    #[test]
    fn semiseparable_hessians_equal_dense_blocks() {
        let mut rng = ChaCha8Rng::seed_from_u64(5);
        let params = RandomMdpParams { n_states: 4, n_actions: 3, dirichlet: 0.5, ..Default::default() };
        let mdp = TabularMdp::random(&params, &mut rng);
        let mu = vec![1.0 / 3.0; 12];
        // 70 trajectories (two chunks) of up to 9 steps, one empty.
        let mut trajs: Vec<_> = (0..70).map(|i| mdp.sample_trajectory(&mu, 1 + i % 9, &mut rng)).collect();
        trajs.push(mdp.sample_trajectory(&mu, 0, &mut rng));
        let theta: Vec<f64> = (0..12).map(|_| rng.random::<f64>() - 0.5).collect();
        let pol = TabularSoftmax::new(4, 3, theta);
        let sc = Critic::StateValues(vec![0.5, -0.2, 1.0, 0.3]);
        let ac = Critic::ActionValues((0..12).map(|i| i as f64 * 0.1 - 0.4).collect());
        let batch = TabularBatch::new(&trajs, &mu, 3);
        let abs = TaylorDiscount::Absolute;
        let cases = [
            (Estimator::Is, None),
            (Estimator::Dr, Some(&sc)),
            (Estimator::Dr, Some(&ac)),
            (Estimator::TruncatedDr { rho_bar: 1.0, c_bar: 1.0 }, Some(&sc)),
            (Estimator::TruncatedDr { rho_bar: 0.8, c_bar: 1.3 }, Some(&sc)),
            (Estimator::TayPo { order: 2, discount: abs }, Some(&sc)),
            (Estimator::TayPo { order: 2, discount: TaylorDiscount::FromFirst }, Some(&ac)),
            (Estimator::TayPo { order: 3, discount: abs }, Some(&sc)),
            (Estimator::TayPo { order: 1, discount: TaylorDiscount::FromFirst }, Some(&sc)),
            (Estimator::NaiveScore { discount: abs }, Some(&sc)),
        ];
        // TayPO-2 with its meta-RL shapes too (pair scale, ratio clip).
        let shaped = [
            None,
            Some((Taylor2Pairs::Normalised, None, None)),
            Some((Taylor2Pairs::Normalised, Some(0.3), None)),
            Some((Taylor2Pairs::Discounted, None, Some(0.3))),
            Some((Taylor2Pairs::Normalised, Some(0.3), Some(f64::INFINITY))),
        ];
        for ((est, critic), shape) in cases.into_iter().flat_map(|c| shaped.map(|s| (c, s))) {
            let two = matches!(est, Estimator::TayPo { order: 2, .. });
            if shape.is_some() && !two {
                continue;
            }
            let mut prepared = batch.prepare(est, 0.8, critic).unwrap();
            if let Some((pairs, clip, pair_clip)) = shape {
                prepared = prepared.with_taylor2(pairs, clip, pair_clip).unwrap();
            }
            let rows = batch.rows(&pol, &prepared, critic);
            let obj = BatchObjective::new(&prepared, &rows).unwrap();
            let (v1, g1, h1) = obj.hessian_with(true);
            let (v2, g2, h2) = obj.hessian_with(false);
            assert_eq!(v1, v2);
            assert_eq!(g1, g2);
            let scale = h2.iter().fold(0.0f64, |m, x| m.max(x.abs()));
            for (a, b) in h1.iter().zip(&h2) {
                assert!((a - b).abs() <= 1e-13 * (1.0 + scale), "{est}: {a} vs {b}");
            }
            // The default (dense expansion) of semiseparable_outer_add agrees too.
            let mut semi = SemiseparableBlocks::new();
            let n = 3;
            let chunk = &obj.chunks[0];
            let (r, m) = obj.local_rows(chunk, n);
            let vals = rows.values();
            let (_, row_grad) = obj.scaled_row_gradient(1.0);
            let gc = prepared
                .critic_means
                .then(|| &row_grad[prepared.n_steps() + m.start..prepared.n_steps() + m.end]);
            if prepared.semiseparable_row_hessian(
                n,
                &vals[r.clone()],
                &row_grad[r.clone()],
                gc,
                (r.start, prepared.n_steps() + m.start),
                1.0,
                &mut semi,
            ) && !semi.is_empty()
            {
                let b = semi.iter().next().unwrap();
                let (mut fast, mut slow) = (vec![0.0; 144], vec![0.0; 144]);
                rows.semiseparable_outer_add(&semi, &mut fast);
                let mut dense = RowBlocks::new();
                dense.push(b.rows, &b.dense());
                rows.outer_add(&dense, &mut slow);
                for (a, b) in fast.iter().zip(&slow) {
                    assert!((a - b).abs() < 1e-12, "{est}: {a} vs {b}");
                }
            }
        }
    }

    #[test]
    fn closed_form_row_hessians_equal_dual_passes() {
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        let params = RandomMdpParams { n_states: 4, n_actions: 3, dirichlet: 0.5, ..Default::default() };
        let mdp = TabularMdp::random(&params, &mut rng);
        let mu = vec![1.0 / 3.0; 12];
        let trajs: Vec<_> = (0..70).map(|_| mdp.sample_trajectory(&mu, 6, &mut rng)).collect();
        let theta: Vec<f64> = (0..12).map(|_| rng.random::<f64>() - 0.5).collect();
        let pol = TabularSoftmax::new(4, 3, theta);
        let sc = Critic::StateValues(vec![0.5, -0.2, 1.0, 0.3]);
        let ac = Critic::ActionValues((0..12).map(|i| i as f64 * 0.1).collect());
        let batch = TabularBatch::new(&trajs, &mu, 3);
        let cases = [
            (Estimator::Is, None),
            (Estimator::Dr, Some(&sc)),
            (Estimator::Dr, Some(&ac)),
            (Estimator::TayPo { order: 2, discount: TaylorDiscount::Absolute }, Some(&sc)),
            (Estimator::TayPo { order: 2, discount: TaylorDiscount::FromFirst }, Some(&ac)),
            (Estimator::NaiveScore { discount: TaylorDiscount::Absolute }, Some(&sc)),
        ];
        let shaped = [
            None,
            Some((Taylor2Pairs::Normalised, None, None)),
            Some((Taylor2Pairs::Discounted, Some(0.3), None)),
            Some((Taylor2Pairs::Discounted, None, Some(0.3))),
            Some((Taylor2Pairs::Discounted, Some(0.5), Some(0.2))),
        ];
        let mut clipped = 0;
        for ((est, critic), shape) in cases.into_iter().flat_map(|c| shaped.map(|s| (c, s))) {
            if shape.is_some() && !matches!(est, Estimator::TayPo { order: 2, .. }) {
                continue;
            }
            let mut prepared = batch.prepare(est, 0.8, critic).unwrap();
            if let Some((pairs, clip, pair_clip)) = shape {
                prepared = prepared.with_taylor2(pairs, clip, pair_clip).unwrap();
            }
            let rows = batch.rows(&pol, &prepared, critic);
            let obj = BatchObjective::new(&prepared, &rows).unwrap();
            if shape.is_some_and(|s| s.1.is_some()) {
                clipped +=
                    rows.values()[..prepared.n_steps()].iter().filter(|r| (*r - 1.0).abs() > 0.3).count();
            }
            for n in [0, 65] {
                let closed = obj.row_hessian_block(n);
                let chunk = &obj.chunks[n / CHUNK];
                let (r, m) = obj.local_rows(chunk, n);
                let vals = rows.values();
                let ratios = &vals[chunk.ratio.start + r.start..chunk.ratio.start + r.end];
                let means: Vec<f64> = m.map(|i| vals[chunk.mean.start + i]).collect();
                let mut dual = vec![0.0; closed.len()];
                obj.dual_row_hessian(n, ratios, &means, &mut dual);
                let err = closed.iter().zip(&dual).map(|(a, b)| (a - b).abs()).fold(0.0, f64::max);
                assert!(err < 1e-12, "{est}: closed form differs from dual passes by {err}");
            }
            // Closed-form row HVPs against forward-over-reverse dual passes.
            assert!(prepared.has_closed_form_row_hvp());
            let v: Vec<f64> = (0..12).map(|i| (i as f64 * 0.7).sin()).collect();
            let (a, ga, ha) = obj.gradient_and_hvp_with(&v, true);
            let (b, gb, hb) = obj.gradient_and_hvp_with(&v, false);
            assert!((a - b).abs() < 1e-13);
            for (x, y) in ga.iter().zip(&gb).chain(ha.iter().zip(&hb)) {
                assert!((x - y).abs() < 1e-12 * (1.0 + y.abs()), "{est}: closed-form HVP {x} vs dual {y}");
            }
        }
        // The clip was exercised (ratios both inside and outside ±0.3).
        assert!(clipped > 0, "no ratio outside the clip");
    }
}
