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

use rand::SeedableRng;
use rand::{Rng, RngExt};
use rand_chacha::ChaCha8Rng;
use rand_distr::StandardNormal;
use serde::{Deserialize, Serialize};
use std::borrow::Cow;
use std::sync::Mutex;

use super::mlp_kernels::{Buf, Real, add_row, col_sums_add, mm_nn, mm_nt, mm_tn_add};
use super::{Policy, RowBlocks, ScoreRows, check_params};
use crate::error::{SettingError, ensure};

/// A row-space linear map c = op(J v) (see [`GaussianMlpRows::hessian_vector_add`]).
type RowOp<'f> = dyn FnMut(&[f64], &mut [f64]) + 'f;

/// ½ ln 2π.
const HALF_LN_2PI: f64 = 0.918_938_533_204_672_8;

/// Floating-point type of a [`GaussianMlp`]'s network passes (see the module docs).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize, clap::ValueEnum)]
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

/// One batched forward pass in the working precision: the observations, the hidden
/// post-tanh activations h_1…h_{L−1} (each N×n_l, row-major) and the means (N×act_dim,
/// in f64). The same type holds the R-operator tangents of a forward-mode pass.
#[derive(Clone, Debug)]
struct Activations<F: Real> {
    input: Vec<F>,
    hidden: Vec<Buf<F>>,
    mean: Vec<f64>,
}

/// The plain backward pass of one set of output cotangents (see
/// [`GaussianMlp::plain_chain`]).
struct PlainChain<F: Real> {
    /// (D_l, D_l W_lᵀ) for l = L−1 … 0 (the second is empty for the first layer).
    layers: Vec<(Buf<F>, Buf<F>)>,
}

/// [`PlainChain`] of the last estimator weights w seen by an HVP of a [`GaussianMlpRows`],
/// in the rows' precision.
struct CachedChain {
    w: Vec<f64>,
    chain: Box<dyn std::any::Any + Send>,
}

/// A forward pass in either precision.
#[derive(Clone, Debug)]
enum Pass {
    F64(Activations<f64>),
    F32(Activations<f32>),
}

impl Pass {
    fn mean(&self) -> &[f64] {
        match self {
            Pass::F64(a) => &a.mean,
            Pass::F32(a) => &a.mean,
        }
    }
}

/// Runs `$body` with `$theta` (the policy's network weights) and `$act` (the pass's
/// activations) in the pass's precision.
macro_rules! with_pass {
    ($p:expr, $pass:expr, |$theta:ident, $act:ident| $body:expr) => {
        match $pass {
            Pass::F64($act) => {
                let $theta: &[f64] = &$p.theta;
                $body
            }
            Pass::F32($act) => {
                let $theta: &[f32] = &$p.theta32;
                $body
            }
        }
    };
}

fn to_real<F: Real>(x: &[f64]) -> Vec<F> {
    x.iter().map(|&v| F::from_f64(v)).collect()
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

    /// Batched forward pass (obs: N×obs_dim row-major) in the policy's precision.
    fn forward(&self, obs: &[f64], n: usize) -> Pass {
        match self.precision {
            Precision::F64 => Pass::F64(self.forward_in(&self.theta, obs, n)),
            Precision::F32 => Pass::F32(self.forward_in(&self.theta32, obs, n)),
        }
    }

    /// Batched forward pass with network weights `theta` in precision F.
    fn forward_in<F: Real>(&self, theta: &[F], obs: &[f64], n: usize) -> Activations<F> {
        let nl = self.n_layers();
        let input: Vec<F> = to_real(obs);
        let mut hidden: Vec<Buf<F>> = Vec::with_capacity(nl - 1);
        let mut mean = Vec::new();
        for l in 0..nl {
            let (fi, fo) = (self.sizes[l], self.sizes[l + 1]);
            let x = if l == 0 { &input } else { &hidden[l - 1][..] };
            // Written in full by the β = 0 product.
            let mut z = Buf::scratch(n * fo);
            mm_nn(n, fi, fo, x, self.weights(theta, l), F::ZERO, &mut z);
            add_row(&mut z, self.biases(theta, l));
            if l + 1 < nl {
                F::tanh_inplace(&mut z);
                hidden.push(z);
            } else {
                mean = z.iter().map(|x| x.to_f64()).collect();
            }
        }
        Activations { input, hidden, mean }
    }

    /// Forward-mode tangents along v (network part of v only, in precision F): R{h_l} for
    /// hidden layers and R{m}. R{z_l} = R{h_{l−1}} W_l + h_{l−1} V_l + V_{b,l},
    /// R{h_l} = (1 − h_l²) ⊙ R{z_l}.
    fn forward_r<F: Real>(&self, theta: &[F], act: &Activations<F>, n: usize, v: &[F]) -> Activations<F> {
        let nl = self.n_layers();
        let mut hidden: Vec<Buf<F>> = Vec::with_capacity(nl - 1);
        let mut mean = Vec::new();
        for l in 0..nl {
            let (fi, fo) = (self.sizes[l], self.sizes[l + 1]);
            let input = if l == 0 { &act.input[..] } else { &act.hidden[l - 1][..] };
            // Written in full by the β = 0 product.
            let mut rz = Buf::scratch(n * fo);
            mm_nn(n, fi, fo, input, self.weights(v, l), F::ZERO, &mut rz);
            if l > 0 {
                mm_nn(n, fi, fo, &hidden[l - 1], self.weights(theta, l), F::ONE, &mut rz);
            }
            add_row(&mut rz, self.biases(v, l));
            if l + 1 < nl {
                rz.iter_mut().zip(&act.hidden[l]).for_each(|(r, h)| *r *= F::ONE - *h * *h);
                hidden.push(rz);
            } else {
                mean = rz.iter().map(|x| x.to_f64()).collect();
            }
        }
        Activations { input: Vec::new(), hidden, mean }
    }

    /// Adds a network-part gradient accumulated in precision F to the f64 `out`.
    fn add_net_grad<F: Real>(&self, grad: &[F], out: &mut [f64]) {
        out[..self.s_off].iter_mut().zip(grad).for_each(|(o, g)| *o += g.to_f64());
    }

    /// Backpropagation: out[net part] += Σ_i J_{m,i}ᵀ g_i for output-space cotangents
    /// `g_mean` (N×act_dim). The log-std block of `out` is not touched.
    fn backward_add<F: Real>(
        &self,
        theta: &[F],
        act: &Activations<F>,
        n: usize,
        g_mean: &[f64],
        out: &mut [f64],
    ) {
        self.backward_from_chain(act, n, &self.plain_chain(theta, act, n, g_mean), out);
    }

    /// [`Self::backward_add`] from the plain backward pass of its cotangents.
    fn backward_from_chain<F: Real>(
        &self,
        act: &Activations<F>,
        n: usize,
        chain: &PlainChain<F>,
        out: &mut [f64],
    ) {
        let mut grad = vec![F::ZERO; self.s_off];
        for (l, (dz, _)) in (0..self.n_layers()).rev().zip(&chain.layers) {
            let (fi, fo) = (self.sizes[l], self.sizes[l + 1]);
            let input = if l == 0 { &act.input[..] } else { &act.hidden[l - 1][..] };
            mm_tn_add(fi, n, fo, input, dz, &mut grad[self.w_off[l]..self.w_off[l] + fi * fo]);
            col_sums_add(dz, fo, &mut grad[self.b_off[l]..self.b_off[l] + fo]);
        }
        self.add_net_grad(&grad, out);
    }

    /// The cotangents of the plain backward pass for output cotangents `g_mean`: per layer
    /// l (output layer first), D_l (cotangent of z_l) and, for l > 0, D_l W_lᵀ (the
    /// cotangent of h_{l−1} before the tanh derivative). They depend on `g_mean` only, so
    /// a loop of HVPs at fixed estimator weights computes them once.
    fn plain_chain<F: Real>(
        &self,
        theta: &[F],
        act: &Activations<F>,
        n: usize,
        g_mean: &[f64],
    ) -> PlainChain<F> {
        let mut layers = Vec::with_capacity(self.n_layers());
        let mut dz: Buf<F> = to_real(g_mean).into();
        for l in (0..self.n_layers()).rev() {
            let (fi, fo) = (self.sizes[l], self.sizes[l + 1]);
            if l > 0 {
                // Both written in full (β = 0 product, element-wise map).
                let (mut dh, mut next) = (Buf::scratch(n * fi), Buf::scratch(n * fi));
                mm_nt(n, fo, fi, &dz, self.weights(theta, l), F::ZERO, &mut dh);
                for ((x, d), h) in next.iter_mut().zip(dh.iter()).zip(act.hidden[l - 1].iter()) {
                    *x = *d * (F::ONE - *h * *h);
                }
                layers.push((dz, dh));
                dz = next;
            } else {
                layers.push((dz, Buf::default()));
                break;
            }
        }
        PlainChain { layers }
    }

    /// Pearlmutter's R-operator applied to [`Self::backward_add`]: out[net part] +=
    /// R{Σ_i J_{m,i}ᵀ g_i} along v, given the plain backward pass of the cotangents g
    /// ([`Self::plain_chain`]) and their directional derivatives `rg_mean`. With D_l the
    /// cotangent of z_l:
    /// R{dW_l} = R{h_{l−1}}ᵀ D_l + h_{l−1}ᵀ R{D_l}, R{db_l} = Σ_i R{D_l},
    /// R{D_{l−1}} = (R{D_l} W_lᵀ + D_l V_lᵀ) ⊙ (1 − h²) − 2 (D_l W_lᵀ) ⊙ h ⊙ R{h}.
    #[allow(clippy::too_many_arguments)]
    fn backward_r_add<F: Real>(
        &self,
        theta: &[F],
        act: &Activations<F>,
        ract: &Activations<F>,
        n: usize,
        v: &[F],
        plain: &PlainChain<F>,
        rg_mean: &[f64],
        out: &mut [f64],
    ) {
        let mut grad = vec![F::ZERO; self.s_off];
        let mut rdz: Buf<F> = to_real(rg_mean).into();
        for (l, (dz, dh)) in (0..self.n_layers()).rev().zip(&plain.layers) {
            let (fi, fo) = (self.sizes[l], self.sizes[l + 1]);
            let input = if l == 0 { &act.input[..] } else { &act.hidden[l - 1][..] };
            let ow = &mut grad[self.w_off[l]..self.w_off[l] + fi * fo];
            mm_tn_add(fi, n, fo, input, &rdz, ow);
            if l > 0 {
                mm_tn_add(fi, n, fo, &ract.hidden[l - 1], dz, ow);
            }
            col_sums_add(&rdz, fo, &mut grad[self.b_off[l]..self.b_off[l] + fo]);
            if l > 0 {
                // Written in full by the β = 0 product.
                let mut rdh = Buf::scratch(n * fi);
                mm_nt(n, fo, fi, &rdz, self.weights(theta, l), F::ZERO, &mut rdh);
                mm_nt(n, fo, fi, dz, self.weights(v, l), F::ONE, &mut rdh);
                let (h, rh) = (&act.hidden[l - 1], &ract.hidden[l - 1]);
                for (((rd, d), h), rh) in rdh.iter_mut().zip(dh).zip(h).zip(rh) {
                    let g = F::ONE - *h * *h;
                    *rd = *rd * g - F::TWO * *d * *h * *rh;
                }
                rdz = rdh;
            }
        }
        self.add_net_grad(&grad, out);
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

/// A forward pass of a [`GaussianMlp`] over a batch of observations, for the KL divergence
/// to another policy and the Fisher-vector products that TRPO needs.
pub struct GaussianMlpBatch<'a> {
    policy: &'a GaussianMlp,
    n: usize,
    act: Pass,
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
fn mean_kl_from(
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
    fn new(
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

    /// [`GaussianMlpBatch::mean_kl_from`] on the rows' observations, reusing their forward
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

    fn hvp_impl(&self, w: &[f64], v: &[f64], row_op: Option<&mut RowOp<'_>>, out: &mut [f64]) {
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
    fn with_chain<F: Real>(
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
    fn hvp_cotangents(
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
    fn weighted_e(&self, w: &[f64]) -> Vec<f64> {
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

#[cfg(test)]
mod tests {
    use super::*;

    /// θ + h v.
    fn along(theta: &[f64], v: &[f64], h: f64) -> Vec<f64> {
        theta.iter().zip(v).map(|(t, v)| t + h * v).collect()
    }

    fn small_policy(seed: u64) -> GaussianMlp {
        let cfg = GaussianMlpConfig { hidden: vec![5, 4], init_log_std: 0.0, ..Default::default() };
        let mut p = GaussianMlp::new(3, 2, &cfg, seed).unwrap();
        // Random biases and log-std so that every derivative path is exercised.
        let mut rng = ChaCha8Rng::seed_from_u64(seed + 100);
        let theta: Vec<f64> = p.params().iter().map(|t| t + 0.3 * rng.random_range(-1.0..1.0)).collect();
        p.set_params(&theta).unwrap();
        p
    }

    fn data(p: &GaussianMlp, n: usize, seed: u64) -> (Vec<f64>, Vec<f64>, Vec<f64>) {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let obs: Vec<f64> = (0..n * p.obs_dim()).map(|_| rng.random_range(-1.5..1.5)).collect();
        let actions: Vec<f64> = (0..n * p.act_dim()).map(|_| rng.random_range(-2.0..2.0)).collect();
        let behaviour: Vec<f64> = (0..n).map(|_| rng.random_range(-3.0..-1.0)).collect();
        (obs, actions, behaviour)
    }

    fn rand_vec(n: usize, seed: u64) -> Vec<f64> {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        (0..n).map(|_| rng.random_range(-1.0..1.0)).collect()
    }

    /// Σ_i w_i log π_θ(a_i|x_i).
    fn weighted_loglik(p: &GaussianMlp, theta: &[f64], obs: &[f64], actions: &[f64], w: &[f64]) -> f64 {
        let q = p.with_params(theta).unwrap();
        q.log_prob_batch(obs, actions).unwrap().iter().zip(w).map(|(l, w)| l * w).sum()
    }

    fn fd_grad(f: impl Fn(&[f64]) -> f64, theta: &[f64], h: f64) -> Vec<f64> {
        let mut t = theta.to_vec();
        (0..theta.len())
            .map(|k| {
                t[k] = theta[k] + h;
                let fp = f(&t);
                t[k] = theta[k] - h;
                let fm = f(&t);
                t[k] = theta[k];
                (fp - fm) / (2.0 * h)
            })
            .collect()
    }

    fn max_abs_diff(a: &[f64], b: &[f64]) -> f64 {
        a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, f64::max)
    }

    /// The passes' results, as f64 bits: rows (values, log-probs), a gradient, a fused HVP
    /// taken after it (the gradient's cached backward pass) and one taken alone, a Fisher
    /// product and a KL gradient.
    fn pass_results(p: &GaussianMlp, obs: &[f64], actions: &[f64], behaviour: &[f64]) -> Vec<u64> {
        let (d, n) = (p.num_params(), behaviour.len());
        let (w, v) = (rand_vec(n, 31), rand_vec(d, 32));
        let op = |jv: &[f64], c: &mut [f64]| c.iter_mut().zip(jv).for_each(|(c, x)| *c = 0.3 * x);
        let rows = p.rows(obs, actions, behaviour).unwrap();
        let mut out: Vec<f64> = rows.values().iter().chain(rows.log_probs()).copied().collect();
        let (mut g, mut hv, mut hv_alone) = (vec![0.0; d], vec![0.0; d], vec![0.0; d]);
        rows.vjp_add(&w, &mut g);
        rows.hessian_vector_add(&w, &v, op, &mut hv);
        p.rows(obs, actions, behaviour).unwrap().hessian_vector_add(&w, &v, op, &mut hv_alone);
        let batch = p.batch(obs).unwrap();
        let mut fv = vec![0.0; d];
        batch.fisher_vector_product(&v, &mut fv).unwrap();
        let mut kl_grad = vec![0.0; d];
        let old_mean: Vec<f64> = batch.mean().iter().map(|m| m + 0.1).collect();
        out.push(batch.mean_kl_from(&old_mean, &vec![0.2; p.act_dim()], Some(&mut kl_grad)).unwrap());
        out.extend(g.iter().chain(&hv).chain(&hv_alone).chain(&fv).chain(&kl_grad));
        out.iter().map(|x| x.to_bits()).collect()
    }

    /// Work buffers taken from the per-thread pool hold whatever an earlier pass left (here
    /// NaN): every pass overwrites them before reading, so the results are those of a fresh
    /// thread's buffers bit for bit; and an HVP reusing the backward pass cached by the
    /// gradient equals one computing its own.
    #[test]
    fn reused_work_buffers_and_cached_passes_leave_results_unchanged() {
        for precision in [Precision::F32, Precision::F64] {
            let cfg = GaussianMlpConfig { hidden: vec![16, 16], init_log_std: -0.2, precision };
            let p = GaussianMlp::new(3, 2, &cfg, 41).unwrap();
            let (obs, actions, behaviour) = data(&p, 700, 42);
            // 700 × 16 entries: above the size from which buffers are pooled.
            let fresh = std::thread::scope(|s| {
                s.spawn(|| pass_results(&p, &obs, &actions, &behaviour)).join().unwrap()
            });
            let poisoned = std::thread::scope(|s| {
                s.spawn(|| {
                    fn poison<F: Real>(nan: F) {
                        let bufs: Vec<Buf<F>> = (0..40)
                            .map(|i| {
                                let mut b = Buf::scratch(700 * 16 + i);
                                b.iter_mut().for_each(|x| *x = nan);
                                b
                            })
                            .collect();
                        drop(bufs);
                    }
                    poison(f32::NAN);
                    poison(f64::NAN);
                    pass_results(&p, &obs, &actions, &behaviour)
                })
                .join()
                .unwrap()
            });
            assert_eq!(fresh, poisoned, "{precision}");
            // The HVP after the gradient (cached pass) and the one alone agree.
            let d = p.num_params();
            let at = |k: usize| &fresh[fresh.len() - (5 - k) * d..fresh.len() - (4 - k) * d];
            assert_eq!(at(1), at(2), "{precision}");
            assert!(fresh.iter().all(|b| f64::from_bits(*b).is_finite()));
        }
    }

    #[test]
    fn f32_passes_agree_with_f64_to_single_precision() {
        let p64 = GaussianMlp::new(4, 3, &GaussianMlpConfig::default(), 21).unwrap();
        let mut rng = ChaCha8Rng::seed_from_u64(22);
        let theta: Vec<f64> = p64.params().iter().map(|t| t + 0.1 * rng.random_range(-1.0..1.0)).collect();
        let p64 = p64.with_params(&theta).unwrap();
        let p32 = p64.with_precision(Precision::F32);
        assert_eq!((p32.precision(), p32.params()), (Precision::F32, p64.params()));
        let n = 300;
        let (obs, actions, behaviour) = data(&p64, n, 23);
        let (w, v) = (rand_vec(n, 24), rand_vec(p64.num_params(), 25));
        let rel = |a: &[f64], b: &[f64]| {
            let scale = b.iter().map(|x| x.abs()).fold(0.0, f64::max);
            max_abs_diff(a, b) / scale
        };
        let (r64, r32) =
            (p64.rows(&obs, &actions, &behaviour).unwrap(), p32.rows(&obs, &actions, &behaviour).unwrap());
        assert!(rel(r32.log_probs(), r64.log_probs()) < 1e-5);
        let d = p64.num_params();
        let (mut g64, mut g32) = (vec![0.0; d], vec![0.0; d]);
        r64.vjp_add(&w, &mut g64);
        r32.vjp_add(&w, &mut g32);
        assert!(rel(&g32, &g64) < 1e-5, "vjp {}", rel(&g32, &g64));
        let (mut j64, mut j32) = (vec![0.0; n], vec![0.0; n]);
        r64.jvp(&v, &mut j64);
        r32.jvp(&v, &mut j32);
        assert!(rel(&j32, &j64) < 1e-5, "jvp {}", rel(&j32, &j64));
        let (mut h64, mut h32) = (vec![0.0; d], vec![0.0; d]);
        r64.hessian_vector_add(&w, &v, |jv, c| c.copy_from_slice(jv), &mut h64);
        r32.hessian_vector_add(&w, &v, |jv, c| c.copy_from_slice(jv), &mut h32);
        assert!(rel(&h32, &h64) < 1e-5, "hvp {}", rel(&h32, &h64));
        let (mut f64_, mut f32_) = (vec![0.0; d], vec![0.0; d]);
        p64.batch(&obs).unwrap().fisher_vector_product(&v, &mut f64_).unwrap();
        p32.batch(&obs).unwrap().fisher_vector_product(&v, &mut f32_).unwrap();
        assert!(rel(&f32_, &f64_) < 1e-5, "fisher {}", rel(&f32_, &f64_));
        // The f32 passes are not the f64 ones (the switch is live).
        assert!(g32 != g64 && h32 != h64);
    }

    #[test]
    fn cached_backward_chain_gives_the_same_bits_as_a_fresh_pass() {
        for precision in [Precision::F64, Precision::F32] {
            let p = small_policy(31).with_precision(precision);
            let (obs, actions, behaviour) = data(&p, 9, 32);
            let rows = p.rows(&obs, &actions, &behaviour).unwrap();
            let d = p.num_params();
            // Alternate weights so that the cache is hit, missed and refilled.
            for (k, wseed) in [40, 40, 41, 40, 40].into_iter().enumerate() {
                let (w, v) = (rand_vec(9, wseed), rand_vec(d, 50 + k as u64));
                let mut cached = vec![0.0; d];
                rows.curvature_hvp_add(&w, &v, &mut cached);
                let mut fresh = vec![0.0; d];
                p.rows(&obs, &actions, &behaviour).unwrap().curvature_hvp_add(&w, &v, &mut fresh);
                assert_eq!(cached, fresh, "{precision} call {k}");
            }
        }
    }

    #[test]
    fn init_layout_and_validation() {
        let p = GaussianMlp::new(20, 6, &GaussianMlpConfig::default(), 1).unwrap();
        assert_eq!(p.num_params(), 20 * 64 + 64 + 64 * 64 + 64 + 64 * 6 + 6 + 6);
        assert!(p.log_std().iter().all(|&s| s == 0.0));
        // biases zero, weights within the Xavier bound
        let b0 = p.biases(p.params(), 0);
        assert!(b0.iter().all(|&b| b == 0.0));
        let bound = (6.0f64 / 84.0).sqrt();
        assert!(p.weights(p.params(), 0).iter().all(|w| w.abs() <= bound));
        assert_eq!(p, GaussianMlp::new(20, 6, &GaussianMlpConfig::default(), 1).unwrap());
        let err = GaussianMlp::new(0, 2, &GaussianMlpConfig::default(), 0).unwrap_err();
        assert!(err.to_string().contains("obs_dim = 0"), "{err}");
        let bad = GaussianMlpConfig { hidden: vec![4, 0], init_log_std: 0.0, ..Default::default() };
        assert!(GaussianMlp::new(2, 2, &bad, 0).unwrap_err().to_string().contains("hidden"));
        let nan = GaussianMlpConfig { hidden: vec![], init_log_std: f64::NAN, ..Default::default() };
        assert!(GaussianMlp::new(2, 2, &nan, 0).unwrap_err().to_string().contains("init_log_std"));
        let mut q = p.clone();
        assert!(q.set_params(&[0.0; 3]).unwrap_err().to_string().contains("theta.len() = 3"));
        assert!(p.rows(&[0.0; 7], &[], &[]).err().unwrap().to_string().contains("obs.len() = 7"));
        // Through the Policy trait: the same checks, and an f32 policy's working copy follows θ.
        let f32cfg = GaussianMlpConfig { precision: Precision::F32, ..Default::default() };
        let mut r = GaussianMlp::new(20, 6, &f32cfg, 1).unwrap();
        let shifted: Vec<f64> = r.params().iter().map(|t| t + 0.01).collect();
        let obs = vec![0.5; 20];
        Policy::set_params(&mut r, &shifted).unwrap();
        assert_eq!(r.mean_batch(&obs).unwrap(), r.with_params(&shifted).unwrap().mean_batch(&obs).unwrap());
        assert_ne!(r.mean_batch(&obs).unwrap(), q.mean_batch(&obs).unwrap());
        let mut nan = shifted.clone();
        nan[4] = f64::NAN;
        assert!(Policy::set_params(&mut r, &nan).unwrap_err().to_string().contains("θ[4]"));
        assert_eq!(r.params(), &shifted[..], "a refused θ leaves the parameters");
    }

    #[test]
    fn log_prob_matches_gaussian_density_and_values_are_ratios() {
        let p = small_policy(3);
        let (obs, actions, behaviour) = data(&p, 6, 4);
        let mean = p.mean_batch(&obs).unwrap();
        let lp = p.log_prob_batch(&obs, &actions).unwrap();
        for i in 0..6 {
            let mut dens = 1.0;
            for j in 0..2 {
                let sd = p.log_std()[j].exp();
                let z = (actions[i * 2 + j] - mean[i * 2 + j]) / sd;
                dens *= (-0.5 * z * z).exp() / (sd * (2.0 * std::f64::consts::PI).sqrt());
            }
            assert!((lp[i] - dens.ln()).abs() < 1e-12);
        }
        let rows = p.rows(&obs, &actions, &behaviour).unwrap();
        for i in 0..6 {
            assert!((rows.values()[i] - (lp[i] - behaviour[i]).exp()).abs() < 1e-12);
        }
    }

    #[test]
    fn vjp_matches_finite_differences() {
        let p = small_policy(5);
        let (obs, actions, behaviour) = data(&p, 7, 6);
        let w = rand_vec(7, 7);
        let rows = p.rows(&obs, &actions, &behaviour).unwrap();
        let mut g = vec![0.0; p.num_params()];
        rows.vjp_add(&w, &mut g);
        let fd = fd_grad(|t| weighted_loglik(&p, t, &obs, &actions, &w), p.params(), 1e-6);
        assert!(max_abs_diff(&g, &fd) < 1e-7, "{}", max_abs_diff(&g, &fd));
    }

    #[test]
    fn jvp_matches_finite_differences_and_adjoint_identity() {
        let p = small_policy(8);
        let (obs, actions, behaviour) = data(&p, 5, 9);
        let rows = p.rows(&obs, &actions, &behaviour).unwrap();
        let v = rand_vec(p.num_params(), 10);
        let mut jv = vec![0.0; 5];
        rows.jvp(&v, &mut jv);
        let h = 1e-6;
        let tp = along(p.params(), &v, h);
        let tm = along(p.params(), &v, -h);
        let lp = p.with_params(&tp).unwrap().log_prob_batch(&obs, &actions).unwrap();
        let lm = p.with_params(&tm).unwrap().log_prob_batch(&obs, &actions).unwrap();
        for i in 0..5 {
            assert!((jv[i] - (lp[i] - lm[i]) / (2.0 * h)).abs() < 1e-7);
        }
        // ⟨w, J v⟩ = ⟨Jᵀ w, v⟩
        let w = rand_vec(5, 11);
        let mut jtw = vec![0.0; p.num_params()];
        rows.vjp_add(&w, &mut jtw);
        let lhs: f64 = w.iter().zip(&jv).map(|(a, b)| a * b).sum();
        let rhs: f64 = jtw.iter().zip(&v).map(|(a, b)| a * b).sum();
        assert!((lhs - rhs).abs() < 1e-12 * (1.0 + lhs.abs()));
        // per-row gradients agree with the vjp of unit weights
        let sel = [4usize, 1, 1];
        let g = rows.row_gradients(&sel);
        for (a, &r) in sel.iter().enumerate() {
            let mut e = vec![0.0; 5];
            e[r] = 1.0;
            let mut gr = vec![0.0; p.num_params()];
            rows.vjp_add(&e, &mut gr);
            let d = p.num_params();
            assert!(max_abs_diff(&g[a * d..(a + 1) * d], &gr) < 1e-12);
        }
    }

    #[test]
    fn hvp_matches_finite_differences_of_gradient() {
        let p = small_policy(12);
        let (obs, actions, behaviour) = data(&p, 8, 13);
        let w = rand_vec(8, 14);
        let v = rand_vec(p.num_params(), 15);
        let rows = p.rows(&obs, &actions, &behaviour).unwrap();
        let mut hv = vec![0.0; p.num_params()];
        rows.curvature_hvp_add(&w, &v, &mut hv);
        let h = 1e-5;
        let grad_at = |t: &[f64]| {
            let q = p.with_params(t).unwrap();
            let r = q.rows(&obs, &actions, &behaviour).unwrap();
            let mut g = vec![0.0; p.num_params()];
            r.vjp_add(&w, &mut g);
            g
        };
        let tp = along(p.params(), &v, h);
        let tm = along(p.params(), &v, -h);
        let (gp, gm) = (grad_at(&tp), grad_at(&tm));
        let fd: Vec<f64> = gp.iter().zip(&gm).map(|(a, b)| (a - b) / (2.0 * h)).collect();
        assert!(max_abs_diff(&hv, &fd) < 1e-7, "{}", max_abs_diff(&hv, &fd));
    }

    #[test]
    fn fused_hessian_vector_product_matches_composition() {
        let p = small_policy(61);
        let (obs, actions, behaviour) = data(&p, 7, 62);
        let rows = p.rows(&obs, &actions, &behaviour).unwrap();
        let (w, v) = (rand_vec(7, 63), rand_vec(p.num_params(), 64));
        // A row-space operator coupling rows: c = F (J v) with a random dense F.
        let f = rand_vec(49, 65);
        let op = |jv: &[f64], c: &mut [f64]| {
            for a in 0..7 {
                c[a] = (0..7).map(|b| f[a * 7 + b] * jv[b]).sum();
            }
        };
        let d = p.num_params();
        let mut fused = vec![0.0; d];
        rows.hessian_vector_add(&w, &v, op, &mut fused);
        let mut jv = vec![0.0; 7];
        rows.jvp(&v, &mut jv);
        let mut c = vec![0.0; 7];
        op(&jv, &mut c);
        let mut composed = vec![0.0; d];
        rows.vjp_add(&c, &mut composed);
        rows.curvature_hvp_add(&w, &v, &mut composed);
        assert!(max_abs_diff(&fused, &composed) < 1e-12);
    }

    /// Σ_i w_i log π_θ(a_i|x_i) in hyper-dual arithmetic, θ_k = θ_k + ε₁ v_k + ε₂ u_k:
    /// `.eps1` is ∇f·v and `.eps1eps2` is uᵀ∇²f v, exact to rounding (num-dual oracle).
    fn hyperdual_loglik(
        p: &GaussianMlp,
        v: &[f64],
        u: &[f64],
        obs: &[f64],
        actions: &[f64],
        w: &[f64],
    ) -> num_dual::HyperDual64 {
        use num_dual::{DualNum, HyperDual64 as H};
        let th: Vec<H> = (0..p.num_params()).map(|k| H::new(p.params()[k], v[k], u[k], 0.0)).collect();
        let (od, ad) = (p.obs_dim(), p.act_dim());
        let mut total = H::from_re(0.0);
        for i in 0..w.len() {
            let mut h: Vec<H> = obs[i * od..(i + 1) * od].iter().map(|&x| H::from_re(x)).collect();
            for l in 0..p.n_layers() {
                let (fi, fo) = (p.sizes[l], p.sizes[l + 1]);
                let mut z: Vec<H> = (0..fo).map(|j| th[p.b_off[l] + j]).collect();
                for (a, ha) in h.iter().enumerate().take(fi) {
                    for (j, zj) in z.iter_mut().enumerate() {
                        *zj += *ha * th[p.w_off[l] + a * fo + j];
                    }
                }
                h = if l + 1 < p.n_layers() { z.iter().map(|x| x.tanh()).collect() } else { z };
            }
            let mut lp = H::from_re(0.0);
            for j in 0..ad {
                let s = th[p.s_off + j];
                let diff = H::from_re(actions[i * ad + j]) - h[j];
                lp += diff * diff * (s * H::from_re(-2.0)).exp() * H::from_re(-0.5)
                    - s
                    - H::from_re(HALF_LN_2PI);
            }
            total += lp * H::from_re(w[i]);
        }
        total
    }

    #[test]
    fn jvp_and_hvp_match_hyperdual_oracle_to_rounding() {
        for seed in 0..4 {
            let p = small_policy(70 + seed);
            let (obs, actions, behaviour) = data(&p, 6, 80 + seed);
            let rows = p.rows(&obs, &actions, &behaviour).unwrap();
            let w = rand_vec(6, 90 + seed);
            let (v, u) = (rand_vec(p.num_params(), 100 + seed), rand_vec(p.num_params(), 110 + seed));
            let oracle = hyperdual_loglik(&p, &v, &u, &obs, &actions, &w);
            let mut jv = vec![0.0; 6];
            rows.jvp(&v, &mut jv);
            let wjv: f64 = w.iter().zip(&jv).map(|(a, b)| a * b).sum();
            assert!((wjv - oracle.eps1).abs() < 1e-12 * (1.0 + oracle.eps1.abs()), "{wjv} {}", oracle.eps1);
            let mut hv = vec![0.0; p.num_params()];
            rows.curvature_hvp_add(&w, &v, &mut hv);
            let uhv: f64 = u.iter().zip(&hv).map(|(a, b)| a * b).sum();
            assert!(
                (uhv - oracle.eps1eps2).abs() < 1e-12 * (1.0 + oracle.eps1eps2.abs()),
                "{uhv} {}",
                oracle.eps1eps2
            );
            // symmetry: uᵀHv = vᵀHu
            let mut hu = vec![0.0; p.num_params()];
            rows.curvature_hvp_add(&w, &u, &mut hu);
            let vhu: f64 = v.iter().zip(&hu).map(|(a, b)| a * b).sum();
            assert!((uhv - vhu).abs() < 1e-12 * (1.0 + uhv.abs()));
        }
    }

    #[test]
    fn dense_hessian_matches_second_differences_and_is_symmetric() {
        let cfg = GaussianMlpConfig { hidden: vec![3], init_log_std: 0.2, ..Default::default() };
        let p = GaussianMlp::new(2, 2, &cfg, 21).unwrap();
        let (obs, actions, behaviour) = data(&p, 4, 22);
        let w = rand_vec(4, 23);
        let rows = p.rows(&obs, &actions, &behaviour).unwrap();
        let d = p.num_params();
        let mut hess = vec![0.0; d * d];
        rows.curvature_hessian_add(&w, &mut hess);
        let f = |t: &[f64]| weighted_loglik(&p, t, &obs, &actions, &w);
        let h = 1e-4;
        let mut t = p.params().to_vec();
        let mut worst: f64 = 0.0;
        for a in 0..d {
            for b in 0..d {
                assert!((hess[a * d + b] - hess[b * d + a]).abs() < 1e-10);
                let th = p.params();
                let mut val = 0.0;
                for (sa, sb, sign) in
                    [(1.0, 1.0, 1.0), (1.0, -1.0, -1.0), (-1.0, 1.0, -1.0), (-1.0, -1.0, 1.0)]
                {
                    t[a] += sa * h;
                    t[b] += sb * h;
                    val += sign * f(&t);
                    t[a] = th[a];
                    t[b] = th[b];
                }
                worst = worst.max((hess[a * d + b] - val / (4.0 * h * h)).abs());
            }
        }
        assert!(worst < 1e-5, "{worst}");
    }

    #[test]
    fn outer_add_matches_default_dense_implementation() {
        let p = small_policy(31);
        let (obs, actions, behaviour) = data(&p, 6, 32);
        let rows = p.rows(&obs, &actions, &behaviour).unwrap();
        let mut blocks = RowBlocks::new();
        blocks.push(&[0, 2, 3], &rand_vec(9, 33));
        blocks.push(&[5, 1], &rand_vec(4, 34));
        let d = p.num_params();
        let mut fast = vec![0.0; d * d];
        rows.outer_add(&blocks, &mut fast);
        // Reference: out += Σ_ab f_ab g_a g_bᵀ from vjp gradients.
        let mut slow = vec![0.0; d * d];
        for (rs, f) in blocks.iter() {
            let k = rs.len();
            let grads: Vec<Vec<f64>> = rs
                .iter()
                .map(|&r| {
                    let mut e = vec![0.0; 6];
                    e[r] = 1.0;
                    let mut g = vec![0.0; d];
                    rows.vjp_add(&e, &mut g);
                    g
                })
                .collect();
            for a in 0..k {
                for b in 0..k {
                    for i in 0..d {
                        for j in 0..d {
                            slow[i * d + j] += f[a * k + b] * grads[a][i] * grads[b][j];
                        }
                    }
                }
            }
        }
        assert!(max_abs_diff(&fast, &slow) < 1e-10);
    }

    #[test]
    fn kl_gradient_and_fisher_vector_product() {
        let p = small_policy(41);
        let (obs, _, _) = data(&p, 9, 42);
        let old = p.with_params(&p.params().iter().map(|t| t + 0.05).collect::<Vec<_>>()).unwrap();
        let old_mean = old.mean_batch(&obs).unwrap();
        let kl_at = |t: &[f64]| {
            let q = p.with_params(t).unwrap();
            q.batch(&obs).unwrap().mean_kl_from(&old_mean, old.log_std(), None).unwrap()
        };
        // KL vs Monte-Carlo-free closed form check: KL(old‖old) = 0.
        assert!(kl_at(old.params()).abs() < 1e-14);
        let batch = p.batch(&obs).unwrap();
        let mut g = vec![0.0; p.num_params()];
        let kl = batch.mean_kl_from(&old_mean, old.log_std(), Some(&mut g)).unwrap();
        assert!(kl > 0.0);
        let fd = fd_grad(kl_at, p.params(), 1e-6);
        assert!(max_abs_diff(&g, &fd) < 1e-8, "{}", max_abs_diff(&g, &fd));
        // Fisher-vector product = Hessian of KL(π_θ ‖ π_θ') in θ' at θ' = θ.
        let v = rand_vec(p.num_params(), 43);
        let mut fv = vec![0.0; p.num_params()];
        batch.fisher_vector_product(&v, &mut fv).unwrap();
        let mean0 = batch.mean().to_vec();
        let kl_self = |t: &[f64]| {
            let q = p.with_params(t).unwrap();
            q.batch(&obs).unwrap().mean_kl_from(&mean0, p.log_std(), None).unwrap()
        };
        let h = 1e-4;
        let tp = along(p.params(), &v, h);
        let tm = along(p.params(), &v, -h);
        // vᵀ F v from second differences along v.
        let vfv_fd = (kl_self(&tp) + kl_self(&tm) - 2.0 * kl_self(p.params())) / (h * h);
        let vfv: f64 = v.iter().zip(&fv).map(|(a, b)| a * b).sum();
        assert!((vfv - vfv_fd).abs() < 1e-5 * (1.0 + vfv.abs()), "{vfv} {vfv_fd}");
        // Full vector: gradient of KL(π_θ ‖ π_θ+hv) w.r.t. θ' at θ + hv, divided by h.
        let q = p.with_params(&tp).unwrap();
        let mut gq = vec![0.0; p.num_params()];
        q.batch(&obs).unwrap().mean_kl_from(&mean0, p.log_std(), Some(&mut gq)).unwrap();
        let fd_fv: Vec<f64> = gq.iter().map(|x| x / h).collect();
        assert!(max_abs_diff(&fv, &fd_fv) < 1e-3 * (1.0 + fv.iter().fold(0.0f64, |m, x| m.max(x.abs()))));
    }

    #[test]
    fn sampling_is_seeded_and_log_probs_match() {
        let p = small_policy(51);
        let (obs, _, _) = data(&p, 4, 52);
        let mut a1 = vec![0.0; 8];
        let mut l1 = vec![0.0; 4];
        p.sample_batch(&obs, &mut ChaCha8Rng::seed_from_u64(9), &mut a1, &mut l1).unwrap();
        let mut a2 = vec![0.0; 8];
        let mut l2 = vec![0.0; 4];
        p.sample_batch(&obs, &mut ChaCha8Rng::seed_from_u64(9), &mut a2, &mut l2).unwrap();
        assert_eq!(a1, a2);
        let lp = p.log_prob_batch(&obs, &a1).unwrap();
        assert!(max_abs_diff(&lp, &l1) < 1e-12);
    }
}
