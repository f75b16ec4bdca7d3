//! Tabular softmax policy π_θ(a|x) = exp θ(x,a) / Σ_b exp θ(x,b), θ ∈ R^{|X|×|A|}.
//!
//! Derivatives (docs/theory.md#softmax-derivatives), with π_x the probability vector of state x and
//! L_x = I − π_x 1ᵀ acting on the |A| logits of state x only:
//!
//! * ∇ log π(a|x) = L_x e_a = e_a − π_x (block x), and ∇² log π(a|x) = −(diag π_x − π_x π_xᵀ);
//! * for c(x) = Σ_b π(b|x) q_b with y = π_x ⊙ (q − c):
//!   ∇c = y = L_x (π_x ⊙ q) and ∇²c = diag y − y π_xᵀ − π_x yᵀ.
//!
//! Every row touches only the |A| logits of its state, and the Gauss–Newton part JᵀFJ of
//! a Hessian factors as L Z Lᵀ with Z accumulated in the one-hot basis: one addition per
//! pair of ratio rows, one block projection per call.

use super::{Policy, RowBlocks, ScoreRows, SemiseparableBlocks, check_params};
use crate::cpu::multiversion;
use crate::error::SettingError;

/// Softmax policy over a finite state and action space.
#[derive(Clone, Debug, PartialEq)]
pub struct TabularSoftmax {
    n_states: usize,
    n_actions: usize,
    theta: Vec<f64>,
    probs: Vec<f64>,
}

impl TabularSoftmax {
    /// A policy with logits `theta` (row-major |X|×|A|). Panics on a length mismatch;
    /// validated inputs come from [`crate::problem`].
    pub fn new(n_states: usize, n_actions: usize, theta: Vec<f64>) -> Self {
        assert_eq!(theta.len(), n_states * n_actions, "theta must be |X|×|A|");
        let mut p = Self { n_states, n_actions, theta, probs: vec![0.0; n_states * n_actions] };
        p.refresh();
        p
    }

    /// The policy with θ = log π for a table of strictly positive probabilities.
    pub fn from_probs(n_states: usize, n_actions: usize, probs: &[f64]) -> Self {
        Self::new(n_states, n_actions, probs.iter().map(|p| p.ln()).collect())
    }

    fn refresh(&mut self) {
        let na = self.n_actions;
        for (th, pr) in self.theta.chunks(na).zip(self.probs.chunks_mut(na)) {
            let m = th.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
            let mut z = 0.0;
            for (p, t) in pr.iter_mut().zip(th) {
                *p = (t - m).exp();
                z += *p;
            }
            pr.iter_mut().for_each(|p| *p /= z);
        }
    }

    /// Number of states |X|.
    pub fn n_states(&self) -> usize {
        self.n_states
    }
    /// Number of actions |A|.
    pub fn n_actions(&self) -> usize {
        self.n_actions
    }
    /// π as a row-major |X|×|A| table.
    pub fn probs(&self) -> &[f64] {
        &self.probs
    }
    /// π(a|x).
    pub fn prob(&self, x: usize, a: usize) -> f64 {
        self.probs[x * self.n_actions + a]
    }
    /// π(·|x).
    pub fn probs_at(&self, x: usize) -> &[f64] {
        &self.probs[x * self.n_actions..(x + 1) * self.n_actions]
    }

    /// Rows for a batch: one likelihood-ratio row per step i, in state `states[i]` with
    /// flat index `flat[i]` = state·|A| + action of the taken action and inverse behaviour
    /// probability `inv_behaviour[i]` = 1/μ_i; then, when `critic` (an |X|×|A| action-value
    /// table) is given, one critic-mean row per entry of `mean_states`.
    pub fn rows<'a>(
        &'a self,
        states: &'a [usize],
        flat: &'a [usize],
        inv_behaviour: &[f64],
        mean_states: &'a [usize],
        critic: Option<&'a [f64]>,
    ) -> SoftmaxRows<'a> {
        assert_eq!(states.len(), flat.len());
        assert_eq!(states.len(), inv_behaviour.len());
        let na = self.n_actions;
        let mut values = Vec::with_capacity(states.len() + mean_states.len());
        values.extend(flat.iter().zip(inv_behaviour).map(|(&i, &inv)| self.probs[i] * inv));
        // Per-state critic means c_x and advantage-weighted probabilities y = π ⊙ (q − c).
        let mut mean_y = Vec::new();
        let mean_states = match critic {
            Some(q) => {
                assert_eq!(q.len(), self.probs.len(), "critic must be |X|×|A|");
                let mut mean_c = vec![0.0; self.n_states];
                mean_y = vec![0.0; self.probs.len()];
                for x in 0..self.n_states {
                    let (pi, qx) = (self.probs_at(x), &q[x * na..(x + 1) * na]);
                    let c: f64 = pi.iter().zip(qx).map(|(p, q)| p * q).sum();
                    mean_c[x] = c;
                    for b in 0..na {
                        mean_y[x * na + b] = pi[b] * (qx[b] - c);
                    }
                }
                values.extend(mean_states.iter().map(|&x| mean_c[x]));
                mean_states
            }
            None => &[],
        };
        SoftmaxRows { policy: self, states, flat, mean_states, mean_y, values }
    }
}

impl Policy for TabularSoftmax {
    fn num_params(&self) -> usize {
        self.theta.len()
    }
    fn params(&self) -> &[f64] {
        &self.theta
    }
    fn set_params(&mut self, theta: &[f64]) -> Result<(), SettingError> {
        check_params(self.theta.len(), theta)?;
        self.theta.copy_from_slice(theta);
        self.refresh();
        Ok(())
    }
}

/// Per-state ratio-row weights, per-(state, action) ratio-row weights, per-state
/// critic-mean-row weights.
type WeightSums = (Vec<f64>, Vec<f64>, Vec<f64>);

/// [`ScoreRows`] of a [`TabularSoftmax`] on a batch of steps (see [`TabularSoftmax::rows`]).
pub struct SoftmaxRows<'a> {
    policy: &'a TabularSoftmax,
    states: &'a [usize],
    /// state·|A| + action per ratio row.
    flat: &'a [usize],
    mean_states: &'a [usize],
    /// y = π ⊙ (q − c) per state (|X|×|A|), empty without a critic.
    mean_y: Vec<f64>,
    values: Vec<f64>,
}

impl SoftmaxRows<'_> {
    fn n_ratio(&self) -> usize {
        self.states.len()
    }
    /// Per-state sums of the weights of ratio rows (`w_state`) and of critic-mean rows
    /// (`c_state`), and per-(state, action) sums of ratio-row weights (`w_sa`).
    /// Σ_i w_i ∇u_i from the weight sums.
    fn vjp_from_sums(&self, (w_state, w_sa, c_state): &WeightSums, out: &mut [f64]) {
        let na = self.policy.n_actions;
        for x in 0..self.policy.n_states {
            let pi = self.policy.probs_at(x);
            for b in 0..na {
                let i = x * na + b;
                out[i] += w_sa[i] - w_state[x] * pi[b];
                if !self.mean_y.is_empty() {
                    out[i] += c_state[x] * self.mean_y[i];
                }
            }
        }
    }

    /// Σ_i w_i ∇²u_i v from the weight sums.
    fn curvature_hvp_from_sums(&self, (w_state, _, c_state): &WeightSums, v: &[f64], out: &mut [f64]) {
        let na = self.policy.n_actions;
        for x in 0..self.policy.n_states {
            let (pi, vx) = (self.policy.probs_at(x), &v[x * na..(x + 1) * na]);
            let pv: f64 = pi.iter().zip(vx).map(|(p, v)| p * v).sum();
            let ox = &mut out[x * na..(x + 1) * na];
            if w_state[x] != 0.0 {
                // −W (diag π − ππᵀ) v
                for b in 0..na {
                    ox[b] -= w_state[x] * pi[b] * (vx[b] - pv);
                }
            }
            if !self.mean_y.is_empty() && c_state[x] != 0.0 {
                // C (diag y − yπᵀ − πyᵀ) v
                let y = &self.mean_y[x * na..(x + 1) * na];
                let yv: f64 = y.iter().zip(vx).map(|(y, v)| y * v).sum();
                for b in 0..na {
                    ox[b] += c_state[x] * (y[b] * vx[b] - y[b] * pv - pi[b] * yv);
                }
            }
        }
    }

    fn weight_sums(&self, w: &[f64]) -> WeightSums {
        let (ns, na) = (self.policy.n_states, self.policy.n_actions);
        let mut w_sa = vec![0.0; ns * na];
        let nr = self.n_ratio();
        for (&i, &wi) in self.flat.iter().zip(&w[..nr]) {
            w_sa[i] += wi;
        }
        let w_state = w_sa.chunks(na).map(|c| c.iter().sum()).collect();
        let mut c_state = vec![0.0; ns];
        for (&x, &wi) in self.mean_states.iter().zip(&w[nr..]) {
            c_state[x] += wi;
        }
        (w_state, w_sa, c_state)
    }
}

impl ScoreRows for SoftmaxRows<'_> {
    fn num_params(&self) -> usize {
        self.policy.theta.len()
    }
    fn num_rows(&self) -> usize {
        self.values.len()
    }
    fn values(&self) -> &[f64] {
        &self.values
    }

    fn jvp(&self, v: &[f64], out: &mut [f64]) {
        let (ns, na) = (self.policy.n_states, self.policy.n_actions);
        // π_x · v_x per state, and y_x · v_x for critic rows.
        let pv: Vec<f64> = (0..ns)
            .map(|x| self.policy.probs_at(x).iter().zip(&v[x * na..(x + 1) * na]).map(|(p, v)| p * v).sum())
            .collect();
        let nr = self.n_ratio();
        for (o, (&x, &i)) in out[..nr].iter_mut().zip(self.states.iter().zip(self.flat)) {
            *o = v[i] - pv[x];
        }
        if !self.mean_states.is_empty() {
            let yv: Vec<f64> = (0..ns)
                .map(|x| {
                    self.mean_y[x * na..(x + 1) * na]
                        .iter()
                        .zip(&v[x * na..(x + 1) * na])
                        .map(|(y, v)| y * v)
                        .sum()
                })
                .collect();
            for (o, &x) in out[nr..].iter_mut().zip(self.mean_states) {
                *o = yv[x];
            }
        }
    }

    fn vjp_add(&self, w: &[f64], out: &mut [f64]) {
        self.vjp_from_sums(&self.weight_sums(w), out);
    }

    fn curvature_hvp_add(&self, w: &[f64], v: &[f64], out: &mut [f64]) {
        self.curvature_hvp_from_sums(&self.weight_sums(w), v, out);
    }

    fn gradient_and_hvp_add(&self, g: &[f64], f: &[f64], v: &[f64], grad: &mut [f64], hv: &mut [f64]) {
        let sums_g = self.weight_sums(g);
        self.vjp_from_sums(&sums_g, grad);
        self.vjp_from_sums(&self.weight_sums(f), hv);
        self.curvature_hvp_from_sums(&sums_g, v, hv);
    }

    fn curvature_hessian_add(&self, w: &[f64], out: &mut [f64]) {
        let na = self.policy.n_actions;
        let d = self.num_params();
        let (w_state, _, c_state) = self.weight_sums(w);
        for x in 0..self.policy.n_states {
            let pi = self.policy.probs_at(x);
            let y = (!self.mean_y.is_empty()).then(|| &self.mean_y[x * na..(x + 1) * na]);
            for b in 0..na {
                for b2 in 0..na {
                    let diag = if b == b2 { 1.0 } else { 0.0 };
                    let mut h = -w_state[x] * (diag * pi[b] - pi[b] * pi[b2]);
                    if let Some(y) = y {
                        h += c_state[x] * (diag * y[b] - y[b] * pi[b2] - pi[b] * y[b2]);
                    }
                    out[(x * na + b) * d + x * na + b2] += h;
                }
            }
        }
    }

    fn outer_add(&self, blocks: &RowBlocks, out: &mut [f64]) {
        let (ns, na) = (self.policy.n_states, self.policy.n_actions);
        let d = ns * na;
        let nr = self.n_ratio();
        // y-vector of a row in the one-hot basis: e_a for ratio rows, π ⊙ q for critic rows
        // (so that ∇u = L_x y). Critic rows: π⊙q = y' + c π, and L_x π = 0, so y' works too.
        let mut z = vec![0.0; d * d];
        let mut dense_y = vec![0.0; na];
        let mut flat = Vec::new();
        for (rows, f) in blocks.iter() {
            let k = rows.len();
            if rows.iter().all(|&r| r < nr) {
                // Ratio rows only: y = e_a, one addition per pair.
                flat.clear();
                flat.extend(rows.iter().map(|&r| self.flat[r]));
                for (a, &ia) in flat.iter().enumerate() {
                    let zrow = &mut z[ia * d..(ia + 1) * d];
                    for (&ib, &fab) in flat.iter().zip(&f[a * k..(a + 1) * k]) {
                        zrow[ib] += fab;
                    }
                }
                continue;
            }
            for (a, &ra) in rows.iter().enumerate() {
                for (b, &rb) in rows.iter().enumerate() {
                    let fab = f[a * k + b];
                    if fab == 0.0 {
                        continue;
                    }
                    let (xa, ya) = self.one_hot_y(ra, nr, &mut dense_y);
                    let ya = ya.to_vec();
                    let (xb, yb) = self.one_hot_y(rb, nr, &mut dense_y);
                    for (i, yi) in ya.iter().enumerate() {
                        if *yi == 0.0 {
                            continue;
                        }
                        let at = (xa * na + i) * d + xb * na;
                        z[at..at + na].iter_mut().zip(yb).for_each(|(zz, yj)| *zz += fab * yi * yj);
                    }
                }
            }
        }
        self.add_lzl(&z, out);
    }

    /// O(k·D) per block: in the one-hot basis (∇u_r = L_x y_r), with
    /// S_i = Σ_{j<i} β^{i−j} v_j y_j (S_{i+1} = β(S_i + v_i y_i)),
    /// Z = Σ_i [diag_i y_i y_iᵀ + u_i (S_i y_iᵀ + y_i S_iᵀ)], then out += L Z Lᵀ. A one-hot y
    /// touches one row and one column of Z per step.
    fn semiseparable_outer_add(&self, blocks: &SemiseparableBlocks, out: &mut [f64]) {
        let d = self.num_params();
        let mut z = vec![0.0; d * d];
        semiseparable_z_at(crate::cpu::level(), self, blocks, &mut z);
        self.add_lzl(&z, out);
    }
}

multiversion! {
    /// Z of [`ScoreRows::semiseparable_outer_add`] (the tabular study's hot loop), compiled
    /// per CPU level ([`crate::cpu`]): the same operations in the same order on every level.
    fn semiseparable_z_at(level: Level, rows: &SoftmaxRows<'_>, blocks: &SemiseparableBlocks, z: &mut [f64]) {
        let na = rows.policy.n_actions;
        let d = rows.num_params();
        let nr = rows.n_ratio();
        let mut s = vec![0.0; d];
        let mut dense_y = vec![0.0; na];
        for b in blocks.iter() {
            s.iter_mut().for_each(|x| *x = 0.0);
            for (i, &r) in b.rows.iter().enumerate() {
                let (x, y) = rows.one_hot_y(r, nr, &mut dense_y);
                let base = x * na;
                let (diag, u) = (b.diag[i], b.u[i]);
                for (a, &ya) in y.iter().enumerate() {
                    if ya == 0.0 {
                        continue;
                    }
                    let p = base + a;
                    if u != 0.0 {
                        // Z[p, :] += u y_a S and Z[:, p] += u y_a S.
                        let c = u * ya;
                        z[p * d..(p + 1) * d].iter_mut().zip(&s).for_each(|(zz, sv)| *zz += c * sv);
                        for (q, sv) in s.iter().enumerate() {
                            z[q * d + p] += c * sv;
                        }
                    }
                    if diag != 0.0 {
                        for (a2, &ya2) in y.iter().enumerate() {
                            z[p * d + base + a2] += diag * ya * ya2;
                        }
                    }
                }
                let v = b.v[i];
                if b.beta != 1.0 {
                    s.iter_mut().for_each(|x| *x *= b.beta);
                }
                if v != 0.0 {
                    for (a, &ya) in y.iter().enumerate() {
                        s[base + a] += b.beta * v * ya;
                    }
                }
            }
        }
    }
}

impl SoftmaxRows<'_> {
    /// out += L Z Lᵀ for a D×D matrix Z in the one-hot basis, with (L_x u)_b = u_b − π_b Σ u.
    fn add_lzl(&self, z: &[f64], out: &mut [f64]) {
        let (ns, na) = (self.policy.n_states, self.policy.n_actions);
        let d = ns * na;
        let mut blk = vec![0.0; na * na];
        for xa in 0..ns {
            for xb in 0..ns {
                let (pa, pb) = (self.policy.probs_at(xa), self.policy.probs_at(xb));
                let mut any = false;
                for i in 0..na {
                    let zrow = &z[(xa * na + i) * d + xb * na..(xa * na + i) * d + xb * na + na];
                    // right-multiply by Lᵀ: (Z Lᵀ)_{i,j} = Z_ij − (Σ_k Z_ik) π_j
                    let s: f64 = zrow.iter().sum();
                    for j in 0..na {
                        blk[i * na + j] = zrow[j] - s * pb[j];
                        any |= zrow[j] != 0.0;
                    }
                }
                if !any {
                    continue;
                }
                // left-multiply by L: (L M)_{i,j} = M_ij − π_i Σ_k M_kj
                for j in 0..na {
                    let s: f64 = (0..na).map(|i| blk[i * na + j]).sum();
                    for i in 0..na {
                        out[(xa * na + i) * d + xb * na + j] += blk[i * na + j] - pa[i] * s;
                    }
                }
            }
        }
    }
}

impl SoftmaxRows<'_> {
    /// State and one-hot-basis y-vector of row `r` (see `outer_add`).
    fn one_hot_y<'b>(&'b self, r: usize, nr: usize, scratch: &'b mut [f64]) -> (usize, &'b [f64]) {
        let na = self.policy.n_actions;
        if r < nr {
            scratch.iter_mut().for_each(|s| *s = 0.0);
            scratch[self.flat[r] - self.states[r] * na] = 1.0;
            (self.states[r], scratch)
        } else {
            let x = self.mean_states[r - nr];
            (x, &self.mean_y[x * na..(x + 1) * na])
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn set_params_refuses_bad_lengths_and_non_finite_entries() {
        let mut p = TabularSoftmax::new(2, 3, vec![0.0; 6]);
        assert!(p.set_params(&[0.0; 5]).unwrap_err().to_string().contains("theta.len() = 5"));
        assert!(
            p.set_params(&[0.0, 0.0, f64::INFINITY, 0.0, 0.0, 0.0]).unwrap_err().to_string().contains("θ[2]")
        );
        assert_eq!(p.params(), &[0.0; 6]);
        p.set_params(&[1.0, 0.0, 0.0, 0.0, 0.0, 0.0]).unwrap();
        assert_eq!(p.params()[0], 1.0);
    }
}
