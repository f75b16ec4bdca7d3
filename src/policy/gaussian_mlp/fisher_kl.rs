//! The KL divergence between two [`GaussianMlp`] policies on a batch of observations, its
//! gradient, and the exact Fisher-vector products that TRPO needs.

use super::GaussianMlp;
use super::passes::{Pass, to_real, with_pass};
use crate::error::{SettingError, ensure};

/// A forward pass of a [`GaussianMlp`] over a batch of observations, for the KL divergence
/// to another policy and the Fisher-vector products that TRPO needs.
pub struct GaussianMlpBatch<'a> {
    pub(super) policy: &'a GaussianMlp,
    pub(super) n: usize,
    pub(super) act: Pass,
}

impl GaussianMlpBatch<'_> {
    /// Number of observations N.
    pub fn len(&self) -> usize {
        self.n
    }
    /// Whether the batch is empty.
    pub fn is_empty(&self) -> bool {
        self.n == 0
    }
    /// Means m(x_i), N×act_dim row-major.
    pub fn mean(&self) -> &[f64] {
        self.act.mean()
    }

    /// Mean over the batch of KL(π_old(·|x_i) ‖ π_θ(·|x_i)) where π_θ is this batch's policy
    /// and π_old has means `old_mean` (N×act_dim) and log-std `old_log_std`:
    ///
    /// KL = Σ_j [ s_j − s_old,j + (σ_old,j² + (m_old,j − m_j)²) / (2σ_j²) − ½ ].
    ///
    /// When `grad` is given, adds the gradient of that mean KL w.r.t. this policy's θ:
    /// ∂/∂m_j = (m_j − m_old,j)/σ_j², ∂/∂s_j = 1 − (σ_old,j² + (m_old,j − m_j)²)/σ_j², mapped
    /// through the network by backpropagation.
    pub fn mean_kl_from(
        &self,
        old_mean: &[f64],
        old_log_std: &[f64],
        grad: Option<&mut [f64]>,
    ) -> Result<f64, SettingError> {
        mean_kl_from(self.policy, &self.act, self.n, old_mean, old_log_std, grad)
    }

    /// Exact Fisher-vector product of the batch-mean Fisher information, equal to the
    /// Hessian of the mean KL(π_θ ‖ π_θ+δ) at δ = 0:
    ///
    /// F v = (1/N) Σ_i J_iᵀ M J_i v, with J_i the Jacobian of the outputs (m(x_i), s) and
    /// M = diag(e^{−2s}, 2) (mean block, log-std block), so
    /// F v = (1/N) Σ_i J_{m,i}ᵀ (e^{−2s} ⊙ J_{m,i} v) ⊕ 2 v_s.
    ///
    /// Writes (not adds) into `out`.
    pub fn fisher_vector_product(&self, v: &[f64], out: &mut [f64]) -> Result<(), SettingError> {
        let p = self.policy;
        let d = p.theta.len();
        ensure(v.len() == d, "v.len()", v.len(), "expected num_params")?;
        ensure(out.len() == d, "out.len()", out.len(), "expected num_params")?;
        out.iter_mut().for_each(|o| *o = 0.0);
        if self.n == 0 {
            return Ok(());
        }
        let ad = p.act_dim();
        let inv_var: Vec<f64> = p.log_std().iter().map(|s| (-2.0 * s).exp()).collect();
        let inv_n = 1.0 / self.n as f64;
        with_pass!(p, &self.act, |theta, act| {
            let mut g = p.forward_r(theta, act, self.n, &to_real(&v[..p.s_off])).mean;
            g.iter_mut().enumerate().for_each(|(i, x)| *x *= inv_n * inv_var[i % ad]);
            p.backward_add(theta, act, self.n, &g, out);
        });
        out[p.s_off..].iter_mut().zip(&v[p.s_off..]).for_each(|(o, vs)| *o = 2.0 * vs);
        Ok(())
    }
}

/// Mean KL(π_old ‖ π_θ) over a batch from a forward pass `act` (see
/// [`GaussianMlpBatch::mean_kl_from`]).
pub(super) fn mean_kl_from(
    p: &GaussianMlp,
    act: &Pass,
    n: usize,
    old_mean: &[f64],
    old_log_std: &[f64],
    grad: Option<&mut [f64]>,
) -> Result<f64, SettingError> {
    let ad = p.act_dim();
    ensure(old_mean.len() == n * ad, "old_mean.len()", old_mean.len(), "expected N·act_dim")?;
    ensure(old_log_std.len() == ad, "old_log_std.len()", old_log_std.len(), "expected act_dim")?;
    if n == 0 {
        return Ok(0.0);
    }
    let s = p.log_std();
    let inv_var: Vec<f64> = s.iter().map(|s| (-2.0 * s).exp()).collect();
    let old_var: Vec<f64> = old_log_std.iter().map(|s| (2.0 * s).exp()).collect();
    let inv_n = 1.0 / n as f64;
    let mut kl = 0.0;
    let mut g_mean = vec![0.0; n * ad];
    let mut g_s = vec![0.0; ad];
    for i in 0..n * ad {
        let j = i % ad;
        let diff = act.mean()[i] - old_mean[i];
        let num = old_var[j] + diff * diff;
        kl += s[j] - old_log_std[j] + 0.5 * num * inv_var[j] - 0.5;
        g_mean[i] = inv_n * diff * inv_var[j];
        g_s[j] += inv_n * (1.0 - num * inv_var[j]);
    }
    if let Some(out) = grad {
        ensure(out.len() == p.theta.len(), "grad.len()", out.len(), "expected num_params")?;
        with_pass!(p, act, |theta, a| p.backward_add(theta, a, n, &g_mean, out));
        out[p.s_off..].iter_mut().zip(&g_s).for_each(|(o, g)| *o += g);
    }
    Ok(kl * inv_n)
}
