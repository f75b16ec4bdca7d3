//! Gaussian MLP policy with a state-independent learnable log-std (ProMP's policy).
//!
//! # Model
//!
//! With layer sizes n_0 = obs_dim, n_1 … n_{L−1} (hidden), n_L = act_dim:
//!
//! * h_0 = x, z_l = h_{l−1} W_l + b_l, h_l = tanh(z_l) for l < L, m(x) = z_L (linear output);
//! * π_θ(a|x) = Π_j N(a_j; m_j(x), σ_j²), σ_j = exp(s_j), s learnable and state-independent;
//! * log π_θ(a|x) = Σ_j [ −½ (a_j − m_j)² e^{−2 s_j} − s_j − ½ ln 2π ].
//!
//! # Parameter layout (flat θ)
//!
//! For l = 1..L in order: W_l as a row-major n_{l−1}×n_l matrix, then b_l (n_l entries);
//! finally the log-std s (act_dim entries). Initialisation: Xavier-uniform weights
//! W ~ U[−β, β], β = √(6 / (n_{l−1} + n_l)); zero biases; s = `init_log_std` (default 0).
//!
//! # Derivatives used by [`GaussianMlpRows`]
//!
//! Per sample, in the output space (m, s), with e_j = (a_j − m_j) e^{−2 s_j} and
//! q_j = (a_j − m_j)² e^{−2 s_j} − 1:
//!
//! * ∂ log π / ∂m_j = e_j, ∂ log π / ∂s_j = q_j;
//! * ∂² / ∂m_j² = −e^{−2 s_j}, ∂² / ∂m_j ∂s_j = −2 e_j, ∂² / ∂s_j² = −2 (q_j + 1)
//!   (all blocks are diagonal in j).
//!
//! Products with the network Jacobian are exact: forward mode (the R-operator
//! R{·} = d/dε (·)(θ + εv) propagated through the layers) for Jacobian-vector products,
//! backpropagation for vector-Jacobian products, and Pearlmutter's R-operator applied to
//! backpropagation (forward-over-reverse) for Hessian-vector products. The batched matrix
//! products and tanh are in [`super::mlp_kernels`] (gemm for wide layers, row loops for
//! thin ones; a branch-free vectorisable tanh per precision; work buffers reused from a
//! per-thread pool); derivatives use 1 − h² of the computed h.
//!
//! # Precision
//!
//! The passes run in f64 or f32 ([`Precision`], chosen per policy). The interface is f64
//! throughout (θ, observations, actions, cotangents, results); in f32 mode the weights,
//! activations and their tangents are f32 and the per-sample output-space quantities
//! (means, log-probabilities, e, q) are formed in f64 from the f32 means. f64 is exact to
//! ≈1e-15 and is what the derivative tests check against finite differences and
//! identities; f32 halves the memory traffic and doubles the SIMD width of the matrix
//! products (`benches/meta.rs`, `mlp_point_n2000`), agrees with f64 to ≈1e-6 relative
//! (tested), and is what ProMP's and MAML's reference implementations use for the policy.
//!
//! # Files
//!
//! The network passes (forward, forward-mode, backward and forward-over-reverse) are in
//! `passes`; the rows of a batch of taken actions ([`GaussianMlpRows`]) in `rows`; the
//! KL divergence and Fisher-vector products of a batch ([`GaussianMlpBatch`]) in `fisher_kl`.

mod fisher_kl;
mod passes;
mod rows;
#[cfg(test)]
mod tests;

pub use fisher_kl::GaussianMlpBatch;
pub use rows::GaussianMlpRows;

use rand::SeedableRng;
use rand::{Rng, RngExt};
use rand_chacha::ChaCha8Rng;
use rand_distr::StandardNormal;
use serde::{Deserialize, Serialize};
use std::borrow::Cow;

use super::{Policy, check_params};
use crate::error::{SettingError, ensure};

/// A row-space linear map c = op(J v) (see [`GaussianMlpRows::hessian_vector_add`]).
type RowOp<'f> = dyn FnMut(&[f64], &mut [f64]) + 'f;

/// ½ ln 2π.
use passes::{Pass, to_real};

const HALF_LN_2PI: f64 = 0.918_938_533_204_672_8;

/// Floating-point type of a [`GaussianMlp`]'s network passes (see the module docs).
#[cfg_attr(feature = "cli", derive(clap::ValueEnum))]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Precision {
    /// Double precision: exact derivatives to ≈1e-15 (tests, tabular-size problems).
    #[default]
    F64,
    /// Single precision network passes (≈1e-6 relative), about twice as fast.
    F32,
}

impl std::fmt::Display for Precision {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Precision::F64 => "f64",
            Precision::F32 => "f32",
        })
    }
}

/// Architecture and initialisation settings of a [`GaussianMlp`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct GaussianMlpConfig {
    /// Hidden layer widths (default (64, 64)); may be empty (a linear policy).
    pub hidden: Vec<usize>,
    /// Initial value of every log-std entry (default 0).
    pub init_log_std: f64,
    /// Floating-point type of the network passes (default f64).
    #[serde(default)]
    pub precision: Precision,
}

impl Default for GaussianMlpConfig {
    fn default() -> Self {
        Self { hidden: vec![64, 64], init_log_std: 0.0, precision: Precision::F64 }
    }
}

/// Gaussian policy with an MLP mean (tanh hidden layers, linear output) and a
/// state-independent log-std. See the module docs for the model and parameter layout.
#[derive(Clone, Debug, PartialEq)]
pub struct GaussianMlp {
    /// Layer sizes [obs_dim, hidden…, act_dim].
    sizes: Vec<usize>,
    /// Offset of W_l in θ (one per layer).
    w_off: Vec<usize>,
    /// Offset of b_l in θ (one per layer).
    b_off: Vec<usize>,
    /// Offset of the log-std in θ.
    s_off: usize,
    theta: Vec<f64>,
    precision: Precision,
    /// The network part of θ in f32 (empty in f64 mode).
    theta32: Vec<f32>,
}

impl GaussianMlp {
    /// A freshly initialised policy (Xavier-uniform weights, zero biases, log-std
    /// `config.init_log_std`) drawn from `ChaCha8Rng::seed_from_u64(seed)`.
    ///
    /// Errors name the offending field: zero `obs_dim`/`act_dim`, a zero hidden width, or
    /// a non-finite `init_log_std`.
    pub fn new(
        obs_dim: usize,
        act_dim: usize,
        config: &GaussianMlpConfig,
        seed: u64,
    ) -> Result<Self, SettingError> {
        ensure(obs_dim > 0, "obs_dim", obs_dim, "must be positive")?;
        ensure(act_dim > 0, "act_dim", act_dim, "must be positive")?;
        for &h in &config.hidden {
            ensure(h > 0, "hidden", format!("{:?}", config.hidden), "every hidden width must be positive")?;
        }
        ensure(config.init_log_std.is_finite(), "init_log_std", config.init_log_std, "must be finite")?;
        let mut sizes = vec![obs_dim];
        sizes.extend_from_slice(&config.hidden);
        sizes.push(act_dim);
        let (mut w_off, mut b_off, mut d) = (Vec::new(), Vec::new(), 0);
        for l in 0..sizes.len() - 1 {
            w_off.push(d);
            d += sizes[l] * sizes[l + 1];
            b_off.push(d);
            d += sizes[l + 1];
        }
        let s_off = d;
        d += act_dim;
        let mut theta = vec![0.0; d];
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        for l in 0..sizes.len() - 1 {
            let (fi, fo) = (sizes[l], sizes[l + 1]);
            let beta = (6.0 / (fi + fo) as f64).sqrt();
            for w in &mut theta[w_off[l]..w_off[l] + fi * fo] {
                *w = rng.random_range(-beta..beta);
            }
        }
        theta[s_off..].iter_mut().for_each(|s| *s = config.init_log_std);
        let mut p =
            Self { sizes, w_off, b_off, s_off, theta, precision: config.precision, theta32: Vec::new() };
        p.sync_working_params();
        Ok(p)
    }

    /// Observation dimension.
    pub fn obs_dim(&self) -> usize {
        self.sizes[0]
    }
    /// Action dimension.
    pub fn act_dim(&self) -> usize {
        *self.sizes.last().expect("sizes has at least two entries")
    }
    /// Layer sizes [obs_dim, hidden…, act_dim].
    pub fn layer_sizes(&self) -> &[usize] {
        &self.sizes
    }
    /// Floating-point type of the network passes.
    pub fn precision(&self) -> Precision {
        self.precision
    }
    /// The log-std s (act_dim entries).
    pub fn log_std(&self) -> &[f64] {
        &self.theta[self.s_off..]
    }
    /// Offset of the log-std block in θ (the network parameters are θ[..offset]).
    pub fn log_std_offset(&self) -> usize {
        self.s_off
    }
    fn n_layers(&self) -> usize {
        self.sizes.len() - 1
    }
    fn weights<'t, F>(&self, theta: &'t [F], l: usize) -> &'t [F] {
        &theta[self.w_off[l]..self.w_off[l] + self.sizes[l] * self.sizes[l + 1]]
    }
    fn biases<'t, F>(&self, theta: &'t [F], l: usize) -> &'t [F] {
        &theta[self.b_off[l]..self.b_off[l] + self.sizes[l + 1]]
    }
    /// Refreshes the f32 copy of the network weights after θ changed.
    fn sync_working_params(&mut self) {
        self.theta32 = match self.precision {
            Precision::F64 => Vec::new(),
            Precision::F32 => to_real(&self.theta[..self.s_off]),
        };
    }

    /// A copy of this policy with parameters `theta` (errors as [`Policy::set_params`]).
    pub fn with_params(&self, theta: &[f64]) -> Result<Self, SettingError> {
        let mut p = self.clone();
        p.set_params(theta)?;
        Ok(p)
    }

    /// A copy of this policy whose passes run in `precision` (same θ).
    pub fn with_precision(&self, precision: Precision) -> Self {
        let mut p = self.clone();
        p.precision = precision;
        p.sync_working_params();
        p
    }

    /// Checks that `obs` holds `n` observations and returns n.
    fn check_obs(&self, obs: &[f64]) -> Result<usize, SettingError> {
        let od = self.obs_dim();
        ensure(
            obs.len().is_multiple_of(od),
            "obs.len()",
            obs.len(),
            &format!("must be a multiple of obs_dim = {od}"),
        )?;
        Ok(obs.len() / od)
    }

    fn check_actions(&self, actions: &[f64], n: usize) -> Result<(), SettingError> {
        let ad = self.act_dim();
        ensure(
            actions.len() == n * ad,
            "actions.len()",
            actions.len(),
            &format!("expected N·act_dim = {}", n * ad),
        )
    }

    /// Means m(x_i) for a batch (obs: N×obs_dim row-major); returns N×act_dim.
    pub fn mean_batch(&self, obs: &[f64]) -> Result<Vec<f64>, SettingError> {
        let n = self.check_obs(obs)?;
        Ok(self.forward_mean(obs, n))
    }

    fn forward_mean(&self, obs: &[f64], n: usize) -> Vec<f64> {
        match self.forward(obs, n) {
            Pass::F64(a) => a.mean,
            Pass::F32(a) => a.mean,
        }
    }

    /// log π_θ(a_i|x_i) for a batch (obs N×obs_dim, actions N×act_dim, row-major).
    pub fn log_prob_batch(&self, obs: &[f64], actions: &[f64]) -> Result<Vec<f64>, SettingError> {
        let n = self.check_obs(obs)?;
        self.check_actions(actions, n)?;
        let mean = self.forward_mean(obs, n);
        Ok(self.log_prob_from_mean(&mean, actions))
    }

    fn log_prob_from_mean(&self, mean: &[f64], actions: &[f64]) -> Vec<f64> {
        let ad = self.act_dim();
        let s = self.log_std();
        let const_term: f64 = s.iter().sum::<f64>() + ad as f64 * HALF_LN_2PI;
        let inv_var: Vec<f64> = s.iter().map(|s| (-2.0 * s).exp()).collect();
        mean.chunks_exact(ad)
            .zip(actions.chunks_exact(ad))
            .map(|(m, a)| {
                let quad: f64 = (0..ad).map(|j| (a[j] - m[j]) * (a[j] - m[j]) * inv_var[j]).sum();
                -0.5 * quad - const_term
            })
            .collect()
    }

    /// Draws a_i = m(x_i) + σ ⊙ ε_i, ε_i ~ N(0, I), for every observation of the batch.
    /// Writes the actions (N×act_dim) and their log-probabilities (N) into the outputs.
    /// The draws take ε for row 0 first, dimension by dimension, then row 1, and so on.
    pub fn sample_batch<R: Rng>(
        &self,
        obs: &[f64],
        rng: &mut R,
        actions: &mut [f64],
        log_probs: &mut [f64],
    ) -> Result<(), SettingError> {
        let n = self.check_obs(obs)?;
        self.check_actions(actions, n)?;
        ensure(log_probs.len() == n, "log_probs.len()", log_probs.len(), &format!("expected N = {n}"))?;
        let mean = self.forward_mean(obs, n);
        let ad = self.act_dim();
        let s = self.log_std();
        let const_term: f64 = s.iter().sum::<f64>() + ad as f64 * HALF_LN_2PI;
        for i in 0..n {
            let mut quad = 0.0;
            for j in 0..ad {
                let eps: f64 = rng.sample(StandardNormal);
                actions[i * ad + j] = mean[i * ad + j] + s[j].exp() * eps;
                quad += eps * eps;
            }
            log_probs[i] = -0.5 * quad - const_term;
        }
        Ok(())
    }

    /// Rows for a batch of taken actions: ρ_i = π_θ(a_i|x_i) / μ_i with
    /// `behaviour_log_probs[i]` = log μ_i. Validates all lengths.
    pub fn rows<'a>(
        &'a self,
        obs: &'a [f64],
        actions: &[f64],
        behaviour_log_probs: &[f64],
    ) -> Result<GaussianMlpRows<'a>, SettingError> {
        GaussianMlpRows::new(Cow::Borrowed(self), obs, actions, behaviour_log_probs)
    }

    /// [`Self::rows`] holding the policy itself: the rows borrow only the observations, so
    /// a chain of adapted policies can keep every step's rows (and their cached backward
    /// pass) without a second forward pass.
    pub fn into_rows<'a>(
        self,
        obs: &'a [f64],
        actions: &[f64],
        behaviour_log_probs: &[f64],
    ) -> Result<GaussianMlpRows<'a>, SettingError> {
        GaussianMlpRows::new(Cow::Owned(self), obs, actions, behaviour_log_probs)
    }

    /// Forward pass over a batch kept for repeated KL / Fisher-vector products (TRPO).
    pub fn batch<'a>(&'a self, obs: &'a [f64]) -> Result<GaussianMlpBatch<'a>, SettingError> {
        let n = self.check_obs(obs)?;
        let act = self.forward(obs, n);
        Ok(GaussianMlpBatch { policy: self, n, act })
    }
}

impl Policy for GaussianMlp {
    fn num_params(&self) -> usize {
        self.theta.len()
    }
    fn params(&self) -> &[f64] {
        &self.theta
    }
    /// Replace θ (and the f32 working copy), with an error (not a panic) on a length
    /// mismatch or non-finite entries.
    fn set_params(&mut self, theta: &[f64]) -> Result<(), SettingError> {
        check_params(self.theta.len(), theta)?;
        self.theta.copy_from_slice(theta);
        self.sync_working_params();
        Ok(())
    }
}
