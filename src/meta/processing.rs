//! Sample processing (ProMP's sample processor, docs/theory.md#sample-processing): discounted
//! returns, a linear
//! feature baseline fitted per task, GAE(λ) and per-task advantage normalisation.
//!
//! For a path with rewards r_0 … r_{T−1}:
//!
//! * returns G_t = Σ_{k≥t} γ^{k−t} r_k;
//! * baseline b_t = φ(x_t, t)ᵀ c with features
//!   φ = [clip(x, ±10), clip(x, ±10)², t/100, (t/100)², (t/100)³, 1] (t the index within the
//!   path) and c = argmin ‖Φc − G‖² + λ_r ‖c‖², i.e. (ΦᵀΦ + λ_r I) c = ΦᵀG, fitted on all
//!   paths of a task and evaluated on the same paths (ProMP fits then predicts). λ_r = 1e-5;
//!   like ProMP, a failed solve retries with λ_r × 10, up to 5 times;
//! * GAE: δ_t = r_t + γ b_{t+1} − b_t with b_T = 0 (ProMP bootstraps every path end with
//!   0), A_t = Σ_{k≥t} (γλ)^{k−t} δ_k; with λ = 1, A_t = G_t − b_t;
//! * per task: A ← (A − mean(A)) / (std(A) + 1e-8) (population std).

use nalgebra::{DMatrix, DVector};

use super::sampler::SampleBatch;
use crate::error::{SettingError, ensure};
use crate::numeric::{dot_nalgebra_order, gram_nalgebra_order, mean, population_std};

/// Processing settings (defaults: γ = 0.99, λ = 1, ridge 1e-5, observation clip 10,
/// advantages normalised per task).
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ProcessingConfig {
    /// Discount γ ∈ [0, 1].
    pub gamma: f64,
    /// GAE λ ∈ [0, 1].
    pub gae_lambda: f64,
    /// Ridge λ_r ≥ 0 of the baseline fit.
    pub baseline_ridge: f64,
    /// Observations are clipped to ±obs_clip in the baseline features.
    pub obs_clip: f64,
    /// Normalise advantages per task.
    pub normalize_advantages: bool,
}

impl Default for ProcessingConfig {
    fn default() -> Self {
        Self {
            gamma: 0.99,
            gae_lambda: 1.0,
            baseline_ridge: 1e-5,
            obs_clip: 10.0,
            normalize_advantages: true,
        }
    }
}

impl ProcessingConfig {
    /// Checks every field; the error names the first invalid one.
    pub fn validate(&self) -> Result<(), SettingError> {
        ensure((0.0..=1.0).contains(&self.gamma), "gamma", self.gamma, "must be in [0, 1]")?;
        ensure((0.0..=1.0).contains(&self.gae_lambda), "gae_lambda", self.gae_lambda, "must be in [0, 1]")?;
        ensure(
            self.baseline_ridge.is_finite() && self.baseline_ridge >= 0.0,
            "baseline_ridge",
            self.baseline_ridge,
            "must be finite and ≥ 0",
        )?;
        ensure(
            self.obs_clip.is_finite() && self.obs_clip > 0.0,
            "obs_clip",
            self.obs_clip,
            "must be finite and > 0",
        )
    }
}

/// Per-step results of [`process`], aligned with the batch's steps.
#[derive(Clone, Debug, PartialEq)]
pub struct ProcessedSamples {
    /// Discounted returns G_t.
    pub returns: Vec<f64>,
    /// Baseline values b_t.
    pub baselines: Vec<f64>,
    /// Advantages (normalised per task if so configured).
    pub advantages: Vec<f64>,
    /// Baseline coefficients per task (feature order as in the module docs).
    pub baseline_coeffs: Vec<Vec<f64>>,
}

/// G_t = r_t + γ G_{t+1}, G_T = 0.
pub fn discounted_returns(rewards: &[f64], gamma: f64) -> Vec<f64> {
    let mut out = vec![0.0; rewards.len()];
    let mut acc = 0.0;
    for t in (0..rewards.len()).rev() {
        acc = rewards[t] + gamma * acc;
        out[t] = acc;
    }
    out
}

/// GAE: δ_t = r_t + γ v_{t+1} − v_t (v_T = `last_value`), A_t = δ_t + γλ A_{t+1}.
pub fn gae(rewards: &[f64], values: &[f64], last_value: f64, gamma: f64, lambda: f64) -> Vec<f64> {
    let t_len = rewards.len();
    let mut out = vec![0.0; t_len];
    let mut acc = 0.0;
    for t in (0..t_len).rev() {
        let next = if t + 1 < t_len { values[t + 1] } else { last_value };
        acc = rewards[t] + gamma * next - values[t] + gamma * lambda * acc;
        out[t] = acc;
    }
    out
}

/// Number of baseline features for observation dimension `obs_dim`: 2·obs_dim + 4.
pub fn num_features(obs_dim: usize) -> usize {
    2 * obs_dim + 4
}

/// Features φ(x, t) = [clip(x, ±c), clip(x, ±c)², t/100, (t/100)², (t/100)³, 1] into `out`.
pub fn features(obs: &[f64], t: usize, obs_clip: f64, out: &mut [f64]) {
    let od = obs.len();
    for (j, x) in obs.iter().enumerate() {
        let c = x.clamp(-obs_clip, obs_clip);
        out[j] = c;
        out[od + j] = c * c;
    }
    let s = t as f64 / 100.0;
    out[2 * od..2 * od + 4].copy_from_slice(&[s, s * s, s * s * s, 1.0]);
}

/// Fits c in (ΦᵀΦ + λ_r I) c = Φᵀy by Cholesky (rows of Φ: `feats`, n×f row-major),
/// retrying with λ_r × 10 up to 5 attempts as ProMP does.
pub fn fit_ridge(feats: &[f64], f: usize, y: &[f64], ridge: f64) -> Result<Vec<f64>, SettingError> {
    let n = y.len();
    ensure(feats.len() == n * f, "feats.len()", feats.len(), &format!("expected {}", n * f))?;
    // Φ's columns; ΦᵀΦ and ΦᵀG summed as nalgebra's `tr_mul` sums them (the same bits), by
    // the blocked kernel: the Gram matrix is the fit's cost (n × f² for f up to 700).
    let phi = DMatrix::from_row_slice(n, f, feats);
    let cols = phi.as_slice();
    let gram = DMatrix::from_vec(f, f, gram_nalgebra_order(n, f, cols));
    let rhs = DVector::from_iterator(f, (0..f).map(|c| dot_nalgebra_order(&cols[c * n..(c + 1) * n], y)));
    let mut reg = ridge;
    for _ in 0..5 {
        let a = &gram + DMatrix::identity(f, f) * reg;
        if let Some(ch) = a.cholesky() {
            let c = ch.solve(&rhs);
            if c.iter().all(|x| x.is_finite()) {
                return Ok(c.iter().copied().collect());
            }
        }
        reg = if reg > 0.0 { reg * 10.0 } else { 1e-5 };
    }
    Err(SettingError::new("baseline_ridge", ridge, "the baseline normal equations stayed singular"))
}

/// A time-only linear baseline (ProMP's time features φ(t) = [t/100, (t/100)², (t/100)³, 1],
/// t the step within its path), fitted by [`fit_ridge`] (ridge 1e-5) to `targets` over all
/// steps of the paths given by `path_offsets` (n_paths + 1 entries over `targets`), and
/// evaluated on them.
pub fn fit_time_baseline(path_offsets: &[usize], targets: &[f64]) -> Result<Vec<f64>, SettingError> {
    const F: usize = 4;
    ensure(
        path_offsets.last() == Some(&targets.len()),
        "path_offsets",
        format!("{:?}", path_offsets.last()),
        &format!("must end at the number of targets {}", targets.len()),
    )?;
    let mut feats = Vec::with_capacity(targets.len() * F);
    for w in path_offsets.windows(2) {
        for t in 0..w[1] - w[0] {
            let s = t as f64 / 100.0;
            feats.extend_from_slice(&[s, s * s, s * s * s, 1.0]);
        }
    }
    if targets.is_empty() {
        return Ok(Vec::new());
    }
    let c = fit_ridge(&feats, F, targets, 1e-5)?;
    Ok(feats.chunks(F).map(|f| f.iter().zip(&c).map(|(a, b)| a * b).sum()).collect())
}

/// Processes a batch (module docs). Errors for invalid settings.
pub fn process(batch: &SampleBatch, cfg: &ProcessingConfig) -> Result<ProcessedSamples, SettingError> {
    cfg.validate()?;
    batch.validate()?;
    let n = batch.n_steps();
    let od = batch.obs_dim;
    let nf = num_features(od);
    let mut returns = vec![0.0; n];
    for p in 0..batch.n_paths() {
        let r = batch.path_steps(p);
        returns[r.clone()].copy_from_slice(&discounted_returns(&batch.rewards[r], cfg.gamma));
    }
    let mut baselines = vec![0.0; n];
    let mut advantages = vec![0.0; n];
    let mut baseline_coeffs = Vec::with_capacity(batch.n_tasks());
    for k in 0..batch.n_tasks() {
        let steps = batch.task_steps(k);
        let mut feats = vec![0.0; steps.len() * nf];
        for (row, i) in steps.clone().enumerate() {
            features(
                &batch.obs[i * od..(i + 1) * od],
                batch.time_steps[i],
                cfg.obs_clip,
                &mut feats[row * nf..(row + 1) * nf],
            );
        }
        let coeffs = if steps.is_empty() {
            vec![0.0; nf]
        } else {
            fit_ridge(&feats, nf, &returns[steps.clone()], cfg.baseline_ridge)?
        };
        for (row, i) in steps.clone().enumerate() {
            baselines[i] = feats[row * nf..(row + 1) * nf].iter().zip(&coeffs).map(|(a, b)| a * b).sum();
        }
        for p in batch.task_paths(k) {
            let r = batch.path_steps(p);
            let a = gae(&batch.rewards[r.clone()], &baselines[r.clone()], 0.0, cfg.gamma, cfg.gae_lambda);
            advantages[r].copy_from_slice(&a);
        }
        if cfg.normalize_advantages && !steps.is_empty() {
            normalize(&mut advantages[steps]);
        }
        baseline_coeffs.push(coeffs);
    }
    Ok(ProcessedSamples { returns, baselines, advantages, baseline_coeffs })
}

/// x ← (x − mean) / (std + 1e-8), population std.
pub fn normalize(x: &mut [f64]) {
    let (m, sd) = (mean(x), population_std(x) + 1e-8);
    x.iter_mut().for_each(|v| *v = (*v - m) / sd);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::envs::PointEnv;
    use crate::meta::sampler::{Sampler, SamplerConfig};
    use crate::policy::{GaussianMlp, GaussianMlpConfig};

    #[test]
    fn returns_and_gae() {
        let r = [1.0, 2.0, 3.0];
        let g = discounted_returns(&r, 0.5);
        assert_eq!(g, vec![1.0 + 0.5 * (2.0 + 0.5 * 3.0), 2.0 + 1.5, 3.0]);
        let v = [0.3, -0.2, 0.7];
        // λ = 1: A = G − v (with last value 0)
        let a = gae(&r, &v, 0.0, 0.5, 1.0);
        for t in 0..3 {
            assert!((a[t] - (g[t] - v[t])).abs() < 1e-12);
        }
        // λ = 0: one-step TD errors
        let a0 = gae(&r, &v, 0.4, 0.5, 0.0);
        assert!((a0[2] - (3.0 + 0.5 * 0.4 - 0.7)).abs() < 1e-12);
        assert!((a0[0] - (1.0 + 0.5 * -0.2 - 0.3)).abs() < 1e-12);
    }

    #[test]
    fn baseline_matches_direct_least_squares() {
        let env = PointEnv::corners();
        let p = GaussianMlp::new(
            4,
            2,
            &GaussianMlpConfig { hidden: vec![8], init_log_std: 1.0, ..Default::default() },
            0,
        )
        .unwrap();
        // Goals near the start, so that rewards are not all zero within 30 steps.
        let tasks = vec![vec![0.5, 0.5], vec![-0.3, 1.0]];
        let s =
            Sampler::new(SamplerConfig { rollouts_per_task: 5, horizon: 30, ..Default::default() }).unwrap();
        let b = s.sample(&env, &tasks, &[&p], 3, 0, 0).unwrap();
        let cfg = ProcessingConfig::default();
        let out = process(&b, &cfg).unwrap();
        let nf = num_features(4);
        for k in 0..2 {
            let steps = b.task_steps(k);
            let m = steps.len();
            // Augmented least squares [Φ; √λ I] c ≈ [G; 0], solved by SVD.
            let mut a = DMatrix::zeros(m + nf, nf);
            let mut y = DVector::zeros(m + nf);
            let mut row = vec![0.0; nf];
            for (r, i) in steps.clone().enumerate() {
                features(&b.obs[i * 4..(i + 1) * 4], b.time_steps[i], 10.0, &mut row);
                for j in 0..nf {
                    a[(r, j)] = row[j];
                }
                y[r] = out.returns[i];
            }
            for j in 0..nf {
                a[(m + j, j)] = cfg.baseline_ridge.sqrt();
            }
            let c = a.clone().svd(true, true).solve(&y, 1e-14).unwrap();
            let pred = a.rows(0, m) * &c;
            for (r, i) in steps.clone().enumerate() {
                assert!((pred[r] - out.baselines[i]).abs() < 1e-6, "{} {}", pred[r], out.baselines[i]);
            }
            // normalised advantages: mean 0, std 1 per task
            let adv = &out.advantages[steps];
            let mean = adv.iter().sum::<f64>() / m as f64;
            let var = adv.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / m as f64;
            assert!(mean.abs() < 1e-10 && (var - 1.0).abs() < 1e-6, "{mean} {var}");
        }
        // Unnormalised, λ = 1: A = G − b.
        let raw = process(&b, &ProcessingConfig { normalize_advantages: false, ..cfg }).unwrap();
        for i in 0..b.n_steps() {
            assert!((raw.advantages[i] - (raw.returns[i] - raw.baselines[i])).abs() < 1e-9);
        }
    }

    #[test]
    fn invalid_settings_are_errors() {
        let e = ProcessingConfig { gamma: 1.5, ..Default::default() }.validate().unwrap_err();
        assert!(e.to_string().contains("gamma = 1.5"));
        let e = ProcessingConfig { baseline_ridge: -1.0, ..Default::default() }.validate().unwrap_err();
        assert!(e.to_string().contains("baseline_ridge = -1"));
    }
}
