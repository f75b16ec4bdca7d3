//! [`GaussianMlpRows`]: the [`ScoreRows`] of a [`GaussianMlp`] on a batch of taken actions.

use std::borrow::Cow;
use std::sync::Mutex;

use super::fisher_kl::mean_kl_from;
use super::passes::{Activations, CachedChain, Pass, PlainChain, to_real, with_pass};
use super::{GaussianMlp, RowOp};
use crate::error::{SettingError, ensure};
use crate::policy::mlp_kernels::{Real, mm_nn, mm_nt, mm_tn_add};
use crate::policy::{RowBlocks, ScoreRows};

/// [`ScoreRows`] of a [`GaussianMlp`] on a batch of N taken actions: row i holds
/// ρ_i = π_θ(a_i|x_i)/μ_i, and its derivatives are those of u_i = log π_θ(a_i|x_i)
/// (formulas in the module docs). Built by [`GaussianMlp::rows`].
///
/// Costs for N samples and D parameters: `jvp` one forward-mode pass, `vjp_add` one
/// backward pass, `curvature_hvp_add` one forward-mode and one forward-over-reverse pass
/// (≈ 2–3 gradients); `curvature_hessian_add` D of those (tests and small D only).
pub struct GaussianMlpRows<'a> {
    policy: Cow<'a, GaussianMlp>,
    obs: &'a [f64],
    n: usize,
    act: Pass,
    /// e_ij = (a_ij − m_ij) e^{−2 s_j}.
    e: Vec<f64>,
    /// q_ij = (a_ij − m_ij)² e^{−2 s_j} − 1.
    q: Vec<f64>,
    /// e^{−2 s_j}.
    inv_var: Vec<f64>,
    log_probs: Vec<f64>,
    values: Vec<f64>,
    /// Plain backward pass of the last HVP's or gradient's weights (reused while they
    /// repeat: the HVP after the gradient of an inner step, the conjugate-gradient loop of
    /// TRPO through an inner step).
    chain_cache: Mutex<Option<CachedChain>>,
}

impl<'a> GaussianMlpRows<'a> {
    pub(super) fn new(
        policy: Cow<'a, GaussianMlp>,
        obs: &'a [f64],
        actions: &[f64],
        behaviour_log_probs: &[f64],
    ) -> Result<Self, SettingError> {
        let n = policy.check_obs(obs)?;
        policy.check_actions(actions, n)?;
        ensure(
            behaviour_log_probs.len() == n,
            "behaviour_log_probs.len()",
            behaviour_log_probs.len(),
            &format!("expected N = {n}"),
        )?;
        let act = policy.forward(obs, n);
        let ad = policy.act_dim();
        let inv_var: Vec<f64> = policy.log_std().iter().map(|s| (-2.0 * s).exp()).collect();
        let mut e = vec![0.0; n * ad];
        let mut q = vec![0.0; n * ad];
        let mean = act.mean();
        for i in 0..n * ad {
            let diff = actions[i] - mean[i];
            e[i] = diff * inv_var[i % ad];
            q[i] = diff * e[i] - 1.0;
        }
        let log_probs = policy.log_prob_from_mean(act.mean(), actions);
        let values = log_probs.iter().zip(behaviour_log_probs).map(|(lp, lm)| (lp - lm).exp()).collect();
        Ok(GaussianMlpRows {
            policy,
            obs,
            n,
            act,
            e,
            q,
            inv_var,
            log_probs,
            values,
            chain_cache: Mutex::new(None),
        })
    }
}

impl GaussianMlpRows<'_> {
    /// log π_θ(a_i|x_i) of every row.
    pub fn log_probs(&self) -> &[f64] {
        &self.log_probs
    }
    /// The policy the rows were evaluated with.
    pub fn policy(&self) -> &GaussianMlp {
        &self.policy
    }

    /// [`super::GaussianMlpBatch::mean_kl_from`] on the rows' observations, reusing their forward
    /// pass (no second forward pass through the network).
    pub fn mean_kl_from(
        &self,
        old_mean: &[f64],
        old_log_std: &[f64],
        grad: Option<&mut [f64]>,
    ) -> Result<f64, SettingError> {
        mean_kl_from(&self.policy, &self.act, self.n, old_mean, old_log_std, grad)
    }

    /// Per-row gradients ∇u_r for the listed rows, as a k×D row-major matrix (one small
    /// backward pass over the sub-batch with per-sample weight accumulation).
    pub fn row_gradients(&self, rows: &[usize]) -> Vec<f64> {
        let p = &*self.policy;
        let d = p.theta.len();
        let ad = p.act_dim();
        let k = rows.len();
        let mut out = vec![0.0; k * d];
        if k == 0 {
            return out;
        }
        // Gather the sub-batch of observations and re-run the forward pass on it.
        let od = p.obs_dim();
        let mut sub_obs = Vec::with_capacity(k * od);
        for &r in rows {
            sub_obs.extend_from_slice(&self.obs[r * od..(r + 1) * od]);
        }
        // In f64 whatever the policy's precision (this path serves full Hessians).
        let act = p.forward_in(&p.theta, &sub_obs, k);
        let mut dz: Vec<f64> = Vec::with_capacity(k * ad);
        for &r in rows {
            dz.extend_from_slice(&self.e[r * ad..(r + 1) * ad]);
        }
        for (a, &r) in rows.iter().enumerate() {
            out[a * d + p.s_off..(a + 1) * d].copy_from_slice(&self.q[r * ad..(r + 1) * ad]);
        }
        for l in (0..p.n_layers()).rev() {
            let (fi, fo) = (p.sizes[l], p.sizes[l + 1]);
            let input = if l == 0 { &sub_obs[..] } else { &act.hidden[l - 1][..] };
            for a in 0..k {
                let g = &mut out[a * d..(a + 1) * d];
                let (x, dza) = (&input[a * fi..(a + 1) * fi], &dz[a * fo..(a + 1) * fo]);
                for (i, xi) in x.iter().enumerate() {
                    let row = &mut g[p.w_off[l] + i * fo..p.w_off[l] + (i + 1) * fo];
                    row.iter_mut().zip(dza).for_each(|(o, dd)| *o += xi * dd);
                }
                g[p.b_off[l]..p.b_off[l] + fo].iter_mut().zip(dza).for_each(|(o, dd)| *o += dd);
            }
            if l > 0 {
                let mut dh = vec![0.0; k * fi];
                mm_nt(k, fo, fi, &dz, p.weights(&p.theta, l), 0.0, &mut dh);
                dh.iter_mut().zip(&act.hidden[l - 1]).for_each(|(d, h)| *d *= 1.0 - h * h);
                dz = dh;
            }
        }
        out
    }

    /// Fused full Hessian-vector product of an estimator V̂(u(θ)) in one forward-mode and
    /// one forward-over-reverse pass:
    ///
    /// out += Jᵀ c + Σ_i w_i ∇²u_i v, where c = `row_op`(J v)
    ///
    /// (`row_op(jv, c)` receives J v and writes c, pre-zeroed, e.g. c = F J v with F the
    /// estimator's second derivatives in row space, so that with w = ∂V̂/∂u this is the
    /// Gauss–Newton plus curvature Hessian of V̂ applied to v). Equal to
    /// `jvp` → `row_op` → `vjp_add` → `curvature_hvp_add` but shares the forward-mode
    /// tangents and the backward pass (the R-backpropagation is linear in its output
    /// cotangent, so c ⊙ e is added to it): ≈ 2 passes fewer.
    pub fn hessian_vector_add(
        &self,
        w: &[f64],
        v: &[f64],
        mut row_op: impl FnMut(&[f64], &mut [f64]),
        out: &mut [f64],
    ) {
        self.hvp_impl(w, v, Some(&mut row_op), out);
    }

    pub(super) fn hvp_impl(&self, w: &[f64], v: &[f64], row_op: Option<&mut RowOp<'_>>, out: &mut [f64]) {
        let p = &*self.policy;
        let n = self.n;
        with_pass!(p, &self.act, |theta, act| {
            let vn = to_real(&v[..p.s_off]);
            let ract = p.forward_r(theta, act, n, &vn);
            let (rg, rgs) = self.hvp_cotangents(w, v, &ract.mean, row_op);
            self.with_chain(theta, act, w, |chain| {
                p.backward_r_add(theta, act, &ract, n, &vn, chain, &rg, out)
            });
            out[p.s_off..].iter_mut().zip(&rgs).for_each(|(o, x)| *o += x);
        });
    }

    /// Runs `f` on the plain backward pass of the cotangents w ⊙ e: the cached one when the
    /// cache holds the same weights (compared bit for bit), otherwise a new one, which is
    /// then cached. [`ScoreRows::vjp_add`] fills the cache too, so the HVP of an inner step
    /// (whose weights are those of the inner gradient just taken) reuses the gradient's pass.
    pub(super) fn with_chain<F: Real>(
        &self,
        theta: &[F],
        act: &Activations<F>,
        w: &[f64],
        f: impl FnOnce(&PlainChain<F>),
    ) {
        let n = self.n;
        let mut cache = self.chain_cache.lock().unwrap_or_else(|e| e.into_inner());
        let same = |c: &&CachedChain| c.w.iter().zip(&w[..n]).all(|(a, b)| a.to_bits() == b.to_bits());
        match cache.as_ref().filter(same).and_then(|c| c.chain.downcast_ref()) {
            Some(chain) => f(chain),
            None => {
                let chain = self.policy.plain_chain(theta, act, n, &self.weighted_e(w));
                f(&chain);
                *cache = Some(CachedChain { w: w[..n].to_vec(), chain: Box::new(chain) });
            }
        }
    }

    /// Output-space tangents of the HVP given the forward-mode tangents R{m} of the means:
    /// R{g} of the cotangents g = w ⊙ e (with the Gauss–Newton coefficients c = op(J v)
    /// added as c ⊙ e), and the log-std block of the result.
    pub(super) fn hvp_cotangents(
        &self,
        w: &[f64],
        v: &[f64],
        rmean: &[f64],
        row_op: Option<&mut RowOp<'_>>,
    ) -> (Vec<f64>, Vec<f64>) {
        let ad = self.policy.act_dim();
        let n = self.n;
        let vs = &v[self.policy.s_off..];
        // Row-space coefficients c of the Gauss–Newton part (zero without row_op).
        let mut c = vec![0.0; if row_op.is_some() { n } else { 0 }];
        if let Some(op) = row_op {
            let jv = self.jvp_from_tangents(rmean, vs);
            op(&jv, &mut c);
        }
        let mut rg = vec![0.0; n * ad];
        let mut rgs = vec![0.0; ad];
        for (i, &wi) in w.iter().enumerate().take(n) {
            let ci = c.get(i).copied().unwrap_or(0.0);
            for j in 0..ad {
                let k = i * ad + j;
                let (e, rm, q) = (self.e[k], rmean[k], self.q[k]);
                rg[k] = wi * (-self.inv_var[j] * rm - 2.0 * e * vs[j]) + ci * e;
                rgs[j] += wi * (-2.0 * e * rm - 2.0 * (q + 1.0) * vs[j]) + ci * q;
            }
        }
        (rg, rgs)
    }

    /// Output-space cotangents g_ij = w_i e_ij of Σ_i w_i u_i.
    pub(super) fn weighted_e(&self, w: &[f64]) -> Vec<f64> {
        let ad = self.policy.act_dim();
        self.e.iter().enumerate().map(|(k, e)| e * w[k / ad]).collect()
    }

    /// ∇u_i · v = Σ_j e_ij R{m_ij} + q_ij v_{s,j} from the mean tangents R{m}.
    fn jvp_from_tangents(&self, rmean: &[f64], vs: &[f64]) -> Vec<f64> {
        let ad = self.policy.act_dim();
        (0..self.n)
            .map(|i| {
                (0..ad).map(|j| self.e[i * ad + j] * rmean[i * ad + j] + self.q[i * ad + j] * vs[j]).sum()
            })
            .collect()
    }
}

impl ScoreRows for GaussianMlpRows<'_> {
    fn num_params(&self) -> usize {
        self.policy.theta.len()
    }
    fn num_rows(&self) -> usize {
        self.n
    }
    fn values(&self) -> &[f64] {
        &self.values
    }

    /// ∇u_i · v = Σ_j e_ij R{m_ij} + q_ij v_{s,j}.
    fn jvp(&self, v: &[f64], out: &mut [f64]) {
        let p = &*self.policy;
        let rm = with_pass!(p, &self.act, |theta, act| p
            .forward_r(theta, act, self.n, &to_real(&v[..p.s_off]))
            .mean);
        let jv = self.jvp_from_tangents(&rm, &v[p.s_off..]);
        out[..self.n].copy_from_slice(&jv);
    }

    /// Σ_i w_i ∇u_i: backpropagate g_ij = w_i e_ij; log-std part Σ_i w_i q_ij.
    fn vjp_add(&self, w: &[f64], out: &mut [f64]) {
        let p = &*self.policy;
        let ad = p.act_dim();
        let mut gs = vec![0.0; ad];
        for i in 0..self.n {
            for j in 0..ad {
                gs[j] += w[i] * self.q[i * ad + j];
            }
        }
        with_pass!(p, &self.act, |theta, act| self
            .with_chain(theta, act, w, |chain| p.backward_from_chain(act, self.n, chain, out)));
        out[p.s_off..].iter_mut().zip(&gs).for_each(|(o, x)| *o += x);
    }

    /// Σ_i w_i ∇²u_i v by forward-over-reverse: with R{m} the forward-mode tangent,
    /// R{g_ij} = w_i (−e^{−2s_j} R{m_ij} − 2 e_ij v_{s,j}) is backpropagated with the
    /// R-operator; the log-std part is Σ_i w_i (−2 e_ij R{m_ij} − 2 (q_ij + 1) v_{s,j}).
    fn curvature_hvp_add(&self, w: &[f64], v: &[f64], out: &mut [f64]) {
        self.hvp_impl(w, v, None, out);
    }

    /// One forward-mode and one forward-over-reverse pass
    /// ([`GaussianMlpRows::hessian_vector_add`]).
    fn has_fused_hvp(&self) -> bool {
        true
    }

    fn fused_hvp_add(&self, w: &[f64], v: &[f64], op: &mut dyn FnMut(&[f64], &mut [f64]), out: &mut [f64]) {
        self.hvp_impl(w, v, Some(op), out);
    }

    /// Dense Σ_i w_i ∇²u_i from D Hessian-vector products with the basis vectors.
    fn curvature_hessian_add(&self, w: &[f64], out: &mut [f64]) {
        let d = self.num_params();
        let mut basis = vec![0.0; d];
        let mut col = vec![0.0; d];
        for c in 0..d {
            basis[c] = 1.0;
            col.iter_mut().for_each(|x| *x = 0.0);
            self.curvature_hvp_add(w, &basis, &mut col);
            basis[c] = 0.0;
            // The Hessian is symmetric: column c is also row c.
            out[c * d..(c + 1) * d].iter_mut().zip(&col).for_each(|(o, x)| *o += x);
        }
    }

    /// Per-block per-row gradients from [`GaussianMlpRows::row_gradients`], then
    /// out += Gᵀ F G.
    fn outer_add(&self, blocks: &RowBlocks, out: &mut [f64]) {
        let d = self.num_params();
        for (rows, f) in blocks.iter() {
            let k = rows.len();
            let grads = self.row_gradients(rows);
            let mut fg = vec![0.0; k * d];
            mm_nn(k, k, d, f, &grads, 0.0, &mut fg);
            mm_tn_add(d, k, d, &grads, &fg, out);
        }
    }
}
