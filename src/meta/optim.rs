//! Outer-loop optimiser pieces over flat parameter vectors (docs/theory.md#algorithms).
//!
//! * TRPO (TRPO-MAML, TRPO-FMAML, TRPO-E-MAML, TRPO-DiCE): natural-gradient direction by
//!   conjugate gradient on Fisher-vector products, step scaled to the KL radius, then a
//!   backtracking line search ([`trpo_step`]).
//! * ProMP: the PPO-clip surrogate ([`ppo_clip_objective`]) and Adam ([`Adam`]).
//!
//! Objectives are written as losses to *minimise* (ProMP/rllab convention). Row-space
//! objectives return their derivatives w.r.t. the likelihood ratios ρ_i (the
//! [`crate::policy::ScoreRows`] values) and w.r.t. u_i = log π_θ(a_i|x_i)
//! (∂L/∂u_i = ρ_i ∂L/∂ρ_i), so that `rows.vjp_add(&d_log, grad)` gives the parameter gradient.

use crate::error::{SettingError, ensure};
use crate::numeric::dot;

/// TRPO settings (defaults: ProMP's max mean KL 0.01, 10 CG iterations, damping 1e-5,
/// backtracking ratio 0.8, at most 15 line-search trials).
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct TrpoConfig {
    /// δ: bound on the mean KL of an accepted step.
    pub max_kl: f64,
    /// Conjugate-gradient iterations.
    pub cg_iters: usize,
    /// Damping ε: CG solves (F + εI) s = g.
    pub cg_damping: f64,
    /// CG stops early once rᵀr falls below this.
    pub cg_residual_tol: f64,
    /// Line-search shrink factor in (0, 1).
    pub backtrack_ratio: f64,
    /// Number of line-search trials (step fractions ratio⁰ … ratio^{n−1}).
    pub max_backtracks: usize,
}

impl Default for TrpoConfig {
    fn default() -> Self {
        Self {
            max_kl: 0.01,
            cg_iters: 10,
            cg_damping: 1e-5,
            cg_residual_tol: 1e-10,
            backtrack_ratio: 0.8,
            max_backtracks: 15,
        }
    }
}

impl TrpoConfig {
    /// Checks every field; the error names the first invalid one.
    pub fn validate(&self) -> Result<(), SettingError> {
        ensure(
            self.max_kl.is_finite() && self.max_kl > 0.0,
            "max_kl",
            self.max_kl,
            "must be finite and > 0",
        )?;
        ensure(self.cg_iters > 0, "cg_iters", self.cg_iters, "must be positive")?;
        ensure(
            self.cg_damping.is_finite() && self.cg_damping >= 0.0,
            "cg_damping",
            self.cg_damping,
            "must be ≥ 0",
        )?;
        ensure(
            self.cg_residual_tol.is_finite() && self.cg_residual_tol >= 0.0,
            "cg_residual_tol",
            self.cg_residual_tol,
            "must be ≥ 0",
        )?;
        ensure(
            self.backtrack_ratio > 0.0 && self.backtrack_ratio < 1.0,
            "backtrack_ratio",
            self.backtrack_ratio,
            "must be in (0, 1)",
        )?;
        ensure(self.max_backtracks > 0, "max_backtracks", self.max_backtracks, "must be positive")
    }
}

/// Conjugate gradient for A x = b from x = 0, A symmetric positive definite given by
/// `apply(v, out)` (out = A v): at most `iters` iterations, stopping once rᵀr < `tol`.
pub fn conjugate_gradient(
    mut apply: impl FnMut(&[f64], &mut [f64]),
    b: &[f64],
    iters: usize,
    tol: f64,
) -> Vec<f64> {
    let d = b.len();
    let mut x = vec![0.0; d];
    let mut r = b.to_vec();
    let mut p = b.to_vec();
    let mut z = vec![0.0; d];
    let mut rr = dot(&r, &r);
    for _ in 0..iters {
        if rr < tol {
            break;
        }
        apply(&p, &mut z);
        let pz = dot(&p, &z);
        if pz <= 0.0 || !pz.is_finite() {
            break;
        }
        let alpha = rr / pz;
        x.iter_mut().zip(&p).for_each(|(xi, pi)| *xi += alpha * pi);
        r.iter_mut().zip(&z).for_each(|(ri, zi)| *ri -= alpha * zi);
        let rr_new = dot(&r, &r);
        let beta = rr_new / rr;
        rr = rr_new;
        p.iter_mut().zip(&r).for_each(|(pi, ri)| *pi = ri + beta * *pi);
    }
    x
}

/// Result of one [`trpo_step`].
#[derive(Clone, Debug, PartialEq)]
pub struct TrpoOutcome {
    /// New parameters (the old ones when no trial was accepted).
    pub theta: Vec<f64>,
    /// Whether a line-search trial was accepted.
    pub accepted: bool,
    /// Index n of the accepted trial (fraction ratioⁿ of the full step), or the number of
    /// trials when none was accepted.
    pub backtracks: usize,
    /// Loss at the returned parameters.
    pub loss: f64,
    /// Mean KL at the returned parameters (0 when rejected).
    pub kl: f64,
    /// β of the full step θ − β s.
    pub step_size: f64,
}

/// One TRPO update of θ for a loss L to minimise (rllab/ProMP's conjugate-gradient
/// optimiser):
///
/// 1. s = CG((F + εI), g) with `fvp(v, out)` writing F v and g = ∇L(θ) (`grad`);
/// 2. full step θ − β s with β = √(2δ / (sᵀ(F + εI)s + 1e-8));
/// 3. trials θ_n = θ − ratioⁿ β s for n = 0 … max_backtracks−1; `eval(θ_n)` returns
///    (L(θ_n), mean KL(π_θ ‖ π_θn)); the first trial with finite values, L(θ_n) <
///    `loss_before` and KL ≤ δ is accepted, otherwise θ is kept.
pub fn trpo_step(
    cfg: &TrpoConfig,
    theta: &[f64],
    grad: &[f64],
    loss_before: f64,
    mut fvp: impl FnMut(&[f64], &mut [f64]),
    mut eval: impl FnMut(&[f64]) -> (f64, f64),
) -> Result<TrpoOutcome, SettingError> {
    cfg.validate()?;
    ensure(
        grad.len() == theta.len(),
        "grad.len()",
        grad.len(),
        &format!("expected θ's length {}", theta.len()),
    )?;
    let reject = |n: usize, step_size: f64| TrpoOutcome {
        theta: theta.to_vec(),
        accepted: false,
        backtracks: n,
        loss: loss_before,
        kl: 0.0,
        step_size,
    };
    if !grad.iter().all(|g| g.is_finite()) || grad.iter().all(|&g| g == 0.0) {
        return Ok(reject(0, 0.0));
    }
    let damping = cfg.cg_damping;
    let mut damped = |v: &[f64], out: &mut [f64]| {
        fvp(v, out);
        out.iter_mut().zip(v).for_each(|(o, x)| *o += damping * x);
    };
    let s = conjugate_gradient(&mut damped, grad, cfg.cg_iters, cfg.cg_residual_tol);
    let mut fs = vec![0.0; s.len()];
    damped(&s, &mut fs);
    let beta = (2.0 * cfg.max_kl / (dot(&s, &fs) + 1e-8)).sqrt();
    if !beta.is_finite() {
        return Ok(reject(0, beta));
    }
    let mut trial = vec![0.0; theta.len()];
    let mut frac = 1.0;
    for n in 0..cfg.max_backtracks {
        trial.iter_mut().zip(theta.iter().zip(&s)).for_each(|(t, (th, si))| *t = th - frac * beta * si);
        let (loss, kl) = eval(&trial);
        if loss.is_finite() && kl.is_finite() && loss < loss_before && kl <= cfg.max_kl {
            return Ok(TrpoOutcome {
                theta: trial,
                accepted: true,
                backtracks: n,
                loss,
                kl,
                step_size: beta,
            });
        }
        frac *= cfg.backtrack_ratio;
    }
    Ok(reject(cfg.max_backtracks, beta))
}

/// A row-space objective: its value and derivatives w.r.t. the ratio rows.
#[derive(Clone, Debug, PartialEq)]
pub struct RowObjective {
    /// The loss value.
    pub loss: f64,
    /// ∂L/∂ρ_i.
    pub d_ratio: Vec<f64>,
    /// ∂L/∂u_i = ρ_i ∂L/∂ρ_i with u_i = log π_θ(a_i|x_i) (weights for `vjp_add`).
    pub d_log: Vec<f64>,
}

/// TRPO's surrogate loss L = −mean_i[ρ_i Â_i]; ∂L/∂ρ_i = −Â_i / N.
pub fn ratio_surrogate(ratios: &[f64], advantages: &[f64]) -> Result<RowObjective, SettingError> {
    ensure(advantages.len() == ratios.len(), "advantages.len()", advantages.len(), "expected one per ratio")?;
    let n = ratios.len().max(1) as f64;
    let loss = -ratios.iter().zip(advantages).map(|(r, a)| r * a).sum::<f64>() / n;
    let d_ratio: Vec<f64> = advantages.iter().map(|a| -a / n).collect();
    let d_log = d_ratio.iter().zip(ratios).map(|(d, r)| d * r).collect();
    Ok(RowObjective { loss, d_ratio, d_log })
}

/// PPO-clip loss (ProMP's outer objective without its KL penalty):
/// L = −mean_i min(ρ_i Â_i, clip(ρ_i, 1 − ε, 1 + ε) Â_i).
///
/// ∂L/∂ρ_i = −Â_i/N where the unclipped term is the minimum (ρ_i Â_i ≤ clip(ρ_i) Â_i,
/// which includes every ρ_i inside [1 − ε, 1 + ε]) and 0 where the clipped constant is.
pub fn ppo_clip_objective(
    ratios: &[f64],
    advantages: &[f64],
    clip_eps: f64,
) -> Result<RowObjective, SettingError> {
    ensure(advantages.len() == ratios.len(), "advantages.len()", advantages.len(), "expected one per ratio")?;
    ensure(clip_eps.is_finite() && clip_eps > 0.0, "clip_eps", clip_eps, "must be finite and > 0")?;
    let n = ratios.len().max(1) as f64;
    let mut loss = 0.0;
    let mut d_ratio = Vec::with_capacity(ratios.len());
    for (&r, &a) in ratios.iter().zip(advantages) {
        let unclipped = r * a;
        let clipped = r.clamp(1.0 - clip_eps, 1.0 + clip_eps) * a;
        if unclipped <= clipped {
            loss -= unclipped;
            d_ratio.push(-a / n);
        } else {
            loss -= clipped;
            d_ratio.push(0.0);
        }
    }
    let d_log = d_ratio.iter().zip(ratios).map(|(d, r)| d * r).collect();
    Ok(RowObjective { loss: loss / n, d_ratio, d_log })
}

/// Adam settings (defaults: ProMP's learning rate 1e-3, β₁ = 0.9, β₂ = 0.999, ε = 1e-8).
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct AdamConfig {
    /// Learning rate α.
    pub lr: f64,
    /// β₁.
    pub beta1: f64,
    /// β₂.
    pub beta2: f64,
    /// ε.
    pub eps: f64,
}

impl Default for AdamConfig {
    fn default() -> Self {
        Self { lr: 1e-3, beta1: 0.9, beta2: 0.999, eps: 1e-8 }
    }
}

/// Adam minimiser over a flat parameter vector, in TensorFlow's formulation (ProMP uses
/// `tf.train.AdamOptimizer`): m ← β₁m + (1−β₁)g, v ← β₂v + (1−β₂)g²,
/// θ ← θ − α √(1−β₂ᵗ)/(1−β₁ᵗ) · m / (√v + ε).
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Adam {
    cfg: AdamConfig,
    m: Vec<f64>,
    v: Vec<f64>,
    t: u64,
}

impl Adam {
    /// An optimiser for `dim` parameters; errors name invalid settings.
    pub fn new(dim: usize, cfg: AdamConfig) -> Result<Self, SettingError> {
        ensure(cfg.lr.is_finite() && cfg.lr > 0.0, "lr", cfg.lr, "must be finite and > 0")?;
        ensure((0.0..1.0).contains(&cfg.beta1), "beta1", cfg.beta1, "must be in [0, 1)")?;
        ensure((0.0..1.0).contains(&cfg.beta2), "beta2", cfg.beta2, "must be in [0, 1)")?;
        ensure(cfg.eps.is_finite() && cfg.eps > 0.0, "eps", cfg.eps, "must be finite and > 0")?;
        Ok(Self { cfg, m: vec![0.0; dim], v: vec![0.0; dim], t: 0 })
    }

    /// Number of steps taken.
    pub fn steps(&self) -> u64 {
        self.t
    }

    /// Largest step count accepted (the bias corrections use β^t with t as `i32`; they are
    /// 1 to double precision long before).
    pub const MAX_STEPS: u64 = i32::MAX as u64;

    /// The settings.
    pub fn config(&self) -> &AdamConfig {
        &self.cfg
    }

    /// The same state (moments and step count) under other settings, checked as
    /// [`Adam::new`] checks them: a run continued with another learning rate or ε.
    pub fn with_config(self, cfg: AdamConfig) -> Result<Self, SettingError> {
        Adam::new(self.m.len(), cfg.clone())?;
        Ok(Self { cfg, ..self })
    }

    /// Checks a deserialised optimiser (e.g. from a checkpoint) as [`Adam::new`] checks its
    /// settings: `lr` = `expected_lr`, ε = `expected_eps`, β₁, β₂ in [0, 1); m and v of `dim`
    /// finite entries, v ≥ 0; step count ≤ [`Adam::MAX_STEPS`]. Errors name the field as
    /// `adam.<name>`.
    pub fn check(&self, dim: usize, expected_lr: f64, expected_eps: f64) -> Result<(), SettingError> {
        let c = &self.cfg;
        ensure(c.lr.is_finite() && c.lr > 0.0, "adam.lr", c.lr, "must be finite and > 0")?;
        ensure(
            c.lr == expected_lr,
            "adam.lr",
            c.lr,
            &format!("differs from the run's --adam-lr {expected_lr}"),
        )?;
        ensure((0.0..1.0).contains(&c.beta1), "adam.beta1", c.beta1, "must be in [0, 1)")?;
        ensure((0.0..1.0).contains(&c.beta2), "adam.beta2", c.beta2, "must be in [0, 1)")?;
        ensure(c.eps.is_finite() && c.eps > 0.0, "adam.eps", c.eps, "must be finite and > 0")?;
        ensure(
            c.eps == expected_eps,
            "adam.eps",
            c.eps,
            &format!("differs from the run's --adam-eps {expected_eps}"),
        )?;
        ensure(
            self.m.len() == dim,
            "adam.m",
            format!("{} entries", self.m.len()),
            &format!("expected {dim} (one per policy parameter)"),
        )?;
        ensure(
            self.v.len() == dim,
            "adam.v",
            format!("{} entries", self.v.len()),
            &format!("expected {dim} (one per policy parameter)"),
        )?;
        if let Some(i) = self.m.iter().position(|x| !x.is_finite()) {
            return Err(SettingError::new("adam.m", format!("m[{i}] = {}", self.m[i]), "must be finite"));
        }
        if let Some(i) = self.v.iter().position(|x| !(x.is_finite() && *x >= 0.0)) {
            return Err(SettingError::new(
                "adam.v",
                format!("v[{i}] = {}", self.v[i]),
                "must be finite and ≥ 0",
            ));
        }
        ensure(
            self.t <= Self::MAX_STEPS,
            "adam.t",
            self.t,
            &format!("the step count must be ≤ {}", Self::MAX_STEPS),
        )
    }

    /// One step on `theta` with the loss gradient `grad`.
    pub fn step(&mut self, theta: &mut [f64], grad: &[f64]) -> Result<(), SettingError> {
        let d = self.m.len();
        ensure(theta.len() == d, "theta.len()", theta.len(), &format!("expected {d}"))?;
        ensure(grad.len() == d, "grad.len()", grad.len(), &format!("expected {d}"))?;
        self.t = self.t.saturating_add(1);
        let c = &self.cfg;
        let t = i32::try_from(self.t).unwrap_or(i32::MAX);
        let lr_t = c.lr * (1.0 - c.beta2.powi(t)).sqrt() / (1.0 - c.beta1.powi(t));
        for i in 0..d {
            self.m[i] = c.beta1 * self.m[i] + (1.0 - c.beta1) * grad[i];
            self.v[i] = c.beta2 * self.v[i] + (1.0 - c.beta2) * grad[i] * grad[i];
            theta[i] -= lr_t * self.m[i] / (self.v[i].sqrt() + c.eps);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::{GaussianMlp, GaussianMlpConfig, Policy, ScoreRows};
    use rand::{RngExt, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    #[test]
    fn cg_solves_spd_system() {
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let d = 6;
        let b: Vec<f64> = (0..d * d).map(|_| rng.random_range(-1.0..1.0)).collect();
        // A = BᵀB + I
        let mut a = vec![0.0; d * d];
        for i in 0..d {
            for j in 0..d {
                a[i * d + j] =
                    (0..d).map(|k| b[k * d + i] * b[k * d + j]).sum::<f64>() + if i == j { 1.0 } else { 0.0 };
            }
        }
        let rhs: Vec<f64> = (0..d).map(|_| rng.random_range(-1.0..1.0)).collect();
        let apply = |v: &[f64], out: &mut [f64]| {
            for i in 0..d {
                out[i] = (0..d).map(|j| a[i * d + j] * v[j]).sum();
            }
        };
        let x = conjugate_gradient(apply, &rhs, 10, 1e-20);
        let mut ax = vec![0.0; d];
        apply(&x, &mut ax);
        for i in 0..d {
            assert!((ax[i] - rhs[i]).abs() < 1e-9);
        }
    }

    /// TRPO on the Gaussian MLP: −mean[ρ Â] with the exact Fisher and KL.
    fn trpo_run(max_kl: f64, fisher_scale: f64) -> (TrpoOutcome, f64) {
        let cfg = GaussianMlpConfig { hidden: vec![16, 16], init_log_std: 0.0, ..Default::default() };
        let old = GaussianMlp::new(3, 2, &cfg, 7).unwrap();
        let mut rng = ChaCha8Rng::seed_from_u64(8);
        let n = 200;
        let obs: Vec<f64> = (0..n * 3).map(|_| rng.random_range(-1.0..1.0)).collect();
        let mut actions = vec![0.0; n * 2];
        let mut logp = vec![0.0; n];
        old.sample_batch(&obs, &mut rng, &mut actions, &mut logp).unwrap();
        let adv: Vec<f64> = (0..n).map(|i| actions[2 * i] - 0.5 * actions[2 * i + 1] + obs[3 * i]).collect();
        let old_mean = old.mean_batch(&obs).unwrap();
        let rows = old.rows(&obs, &actions, &logp).unwrap();
        let obj = ratio_surrogate(rows.values(), &adv).unwrap();
        let mut grad = vec![0.0; old.num_params()];
        rows.vjp_add(&obj.d_log, &mut grad);
        let batch = old.batch(&obs).unwrap();
        let fvp = |v: &[f64], out: &mut [f64]| {
            batch.fisher_vector_product(v, out).unwrap();
            out.iter_mut().for_each(|o| *o *= fisher_scale);
        };
        let eval = |t: &[f64]| {
            let p = old.with_params(t).unwrap();
            let r = p.rows(&obs, &actions, &logp).unwrap();
            let loss = ratio_surrogate(r.values(), &adv).unwrap().loss;
            let kl = p.batch(&obs).unwrap().mean_kl_from(&old_mean, old.log_std(), None).unwrap();
            (loss, kl)
        };
        let tc = TrpoConfig { max_kl, ..Default::default() };
        let out = trpo_step(&tc, old.params(), &grad, obj.loss, fvp, eval).unwrap();
        if out.accepted {
            // the reported KL/loss are those of the returned θ
            let (l, k) = eval(&out.theta);
            assert!((l - out.loss).abs() < 1e-12 && (k - out.kl).abs() < 1e-12);
        }
        (out, obj.loss)
    }

    #[test]
    fn trpo_accepted_steps_satisfy_the_kl_bound() {
        for (max_kl, scale) in [(0.01, 1.0), (0.001, 1.0), (0.01, 0.05), (0.05, 0.2)] {
            let (out, before) = trpo_run(max_kl, scale);
            assert!(out.accepted, "max_kl {max_kl} scale {scale}");
            assert!(out.kl <= max_kl && out.loss < before);
            if scale == 1.0 {
                // exact Fisher: the quadratic KL model is close, few backtracks are needed
                assert!(out.backtracks <= 3);
                assert!(out.kl > 0.4 * max_kl);
            } else {
                // a too-small Fisher overshoots: the line search must shrink the step
                assert!(out.backtracks > 0);
            }
        }
        // hopeless overshoot: rejected after 15 trials, θ unchanged
        let (out, before) = trpo_run(0.01, 1e-9);
        assert!(!out.accepted && out.backtracks == 15 && out.loss == before);
    }

    #[test]
    fn ppo_clip_values_and_gradient() {
        let ratios = [0.5, 1.0, 1.2, 1.5, 0.6, 1.5];
        let adv = [1.0, -2.0, 3.0, 1.0, -1.0, -1.0];
        let o = ppo_clip_objective(&ratios, &adv, 0.3).unwrap();
        // terms: min(0.5, 0.7)=0.5; −2; 3.6; min(1.5,1.3)=1.3 (clipped); min(−0.6,−0.7)=−0.7 (clipped); min(−1.5,−1.3)=−1.5
        let expect = -(0.5 - 2.0 + 3.6 + 1.3 - 0.7 - 1.5) / 6.0;
        assert!((o.loss - expect).abs() < 1e-12);
        let n = 6.0;
        assert_eq!(o.d_ratio, vec![-1.0 / n, 2.0 / n, -3.0 / n, 0.0, 0.0, 1.0 / n]);
        // finite differences in ρ away from kinks
        for i in 0..6 {
            let h = 1e-7;
            let mut rp = ratios;
            rp[i] += h;
            let mut rm = ratios;
            rm[i] -= h;
            let fd = (ppo_clip_objective(&rp, &adv, 0.3).unwrap().loss
                - ppo_clip_objective(&rm, &adv, 0.3).unwrap().loss)
                / (2.0 * h);
            assert!((fd - o.d_ratio[i]).abs() < 1e-6);
            assert!((o.d_log[i] - ratios[i] * o.d_ratio[i]).abs() < 1e-15);
        }
        assert!(ppo_clip_objective(&ratios, &adv, -0.1).unwrap_err().to_string().contains("clip_eps = -0.1"));
    }

    #[test]
    fn adam_matches_hand_computation_and_minimises() {
        let mut adam = Adam::new(2, AdamConfig::default()).unwrap();
        let mut th = vec![1.0, -1.0];
        adam.step(&mut th, &[0.5, -2.0]).unwrap();
        // first step moves each coordinate by ≈ lr·sign(g)
        assert!((th[0] - (1.0 - 1e-3)).abs() < 1e-9 && (th[1] - (-1.0 + 1e-3)).abs() < 1e-9);
        // Three steps with gradients of changing sign and size, against TensorFlow's form
        // written out with the constants (β₁ = 0.9, β₂ = 0.999; a large ε = 0.1 so that
        // its place, outside the bias correction, matters: Kingma & Ba's m̂/(√v̂ + ε)
        // differs here by ≈ 1e-2 relative).
        let cfg = AdamConfig { lr: 0.01, eps: 0.1, ..Default::default() };
        let mut adam = Adam::new(2, cfg).unwrap();
        let grads = [[0.5, -2.0], [-1.5, 0.25], [2.0, 1.0]];
        let (mut th, mut want) = (vec![1.0, -1.0], [1.0f64, -1.0]);
        let (mut m, mut v) = ([0.0f64; 2], [0.0f64; 2]);
        for (t, g) in grads.iter().enumerate() {
            adam.step(&mut th, g).unwrap();
            let t = t as i32 + 1;
            let lr_t = 0.01 * (1.0 - 0.999f64.powi(t)).sqrt() / (1.0 - 0.9f64.powi(t));
            for i in 0..2 {
                m[i] = 0.9 * m[i] + 0.1 * g[i];
                v[i] = 0.999 * v[i] + 0.001 * g[i] * g[i];
                want[i] -= lr_t * m[i] / (v[i].sqrt() + 0.1);
                let kingma =
                    0.01 * (m[i] / (1.0 - 0.9f64.powi(t))) / ((v[i] / (1.0 - 0.999f64.powi(t))).sqrt() + 0.1);
                assert!((kingma - lr_t * m[i] / (v[i].sqrt() + 0.1)).abs() > 1e-3 * kingma.abs());
            }
            for i in 0..2 {
                assert!(
                    (th[i] - want[i]).abs() <= 1e-15 * want[i].abs(),
                    "step {t}: {} vs {}",
                    th[i],
                    want[i]
                );
            }
        }
        assert_eq!(adam.steps(), 3);
        let mut adam = Adam::new(1, AdamConfig { lr: 0.05, ..Default::default() }).unwrap();
        let mut x = vec![3.0];
        for _ in 0..2000 {
            let g = vec![2.0 * (x[0] - 1.0)];
            adam.step(&mut x, &g).unwrap();
        }
        assert!((x[0] - 1.0).abs() < 1e-3);
        assert!(
            Adam::new(1, AdamConfig { beta2: 1.0, ..Default::default() })
                .unwrap_err()
                .to_string()
                .contains("beta2 = 1")
        );
        assert!(adam.step(&mut [0.0; 2], &[0.0; 2]).unwrap_err().to_string().contains("theta.len() = 2"));
    }

    #[test]
    fn trpo_config_validation() {
        let e = TrpoConfig { backtrack_ratio: 1.0, ..Default::default() }.validate().unwrap_err();
        assert!(e.to_string().contains("backtrack_ratio = 1"));
    }
}
