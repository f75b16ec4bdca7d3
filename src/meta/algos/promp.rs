//! ProMP's outer steps: PPO-clip with the inner KL penalty, by Adam, through the adaptation
//! (docs/theory.md#algorithms).

use std::sync::atomic::{AtomicU64, Ordering};

use rayon::prelude::*;

use super::{OuterOutcome, PrompDiagnostics, Trainer, sum_scaled};
use crate::error::{Error, Result};
use crate::meta::metagrad::{self, Order};
use crate::meta::optim::ppo_clip_objective;
use crate::meta::task_sampling::TaskRounds;
use crate::numeric::mean;
use crate::policy::{GaussianMlp, GaussianMlpRows, Policy, ScoreRows};

/// The largest |ρ − 1| over `ratios` (∞ when one is NaN).
fn max_dev(ratios: &[f64]) -> f64 {
    ratios
        .iter()
        .map(|r| (r - 1.0).abs())
        .fold(0.0, |m: f64, x| if x.is_nan() { f64::INFINITY } else { m.max(x) })
}

/// ‖a − b‖.
fn distance(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| (x - y) * (x - y)).sum::<f64>().sqrt()
}

/// What one task's meta-gradient at one Adam step gives.
pub(super) struct TaskPart {
    /// The task's outer loss.
    pub(super) loss: f64,
    /// Its gradient.
    pub(super) grad: Vec<f64>,
    /// Mean KL(π_{θ_k^old} ‖ π_{θ_k(θ)}) on D_k, k = 0 … K−1.
    pub(super) kls: Vec<f64>,
    /// Fraction of the post-update ratios outside [1 − ε, 1 + ε].
    pub(super) clip_fraction: f64,
    /// θ_K(θ).
    pub(super) adapted: Vec<f64>,
}

impl Trainer {
    /// ProMP's outer loss at `q`'s θ on each task, with its gradient and diagnostics:
    /// PPO-clip(ρ'(θ_K(θ)), Â'; ε) + c_KL w Σ_k KL(π_{θ_k^old} ‖ π_{θ_k(θ)}) on D_k, with
    /// w = 1 (`inner_kl_average` sum) or 1/K (mean). `max_devs[k]` (the bits of a
    /// non-negative f64) is raised to the largest |ρ − 1| seen on D_k.
    pub(super) fn promp_objective(
        &self,
        data: &[TaskRounds],
        q: &GaussianMlp,
        max_devs: &[AtomicU64],
    ) -> Result<Vec<TaskPart>> {
        let p = &self.params;
        let inner = p.inner();
        let k_steps = p.k();
        let kl_weight = p.kl_coeff * p.inner_kl_average.weight(k_steps);
        data.par_iter()
            .map(|d| {
                let kls: Vec<AtomicU64> = (0..k_steps).map(|_| AtomicU64::new(0)).collect();
                let mut post: Option<(f64, Vec<f64>)> = None;
                let mut ppo = |last: &GaussianMlp| -> Result<(f64, Vec<f64>)> {
                    let rows = d.post.rows(last)?;
                    let ratios = rows.values();
                    let o = ppo_clip_objective(ratios, &d.post.advantages, p.ppo_clip)?;
                    let outside = ratios.iter().filter(|r| (*r - 1.0).abs() > p.ppo_clip).count();
                    post = Some((outside as f64 / ratios.len().max(1) as f64, last.params().to_vec()));
                    let mut g = vec![0.0; last.num_params()];
                    rows.vjp_add(&o.d_log, &mut g);
                    Ok((o.loss, g))
                };
                // c_KL w KL(π_{θ_k^old} ‖ π_{θ_k}) on D_k.
                let kl_term = |k: usize, rows: &GaussianMlpRows<'_>| -> Result<Option<(f64, Vec<f64>)>> {
                    max_devs[k].fetch_max(max_dev(rows.values()).to_bits(), Ordering::Relaxed);
                    if kl_weight == 0.0 {
                        let kl = d.rounds[k].data.kl_from_behaviour(rows, None)?;
                        kls[k].store(kl.to_bits(), Ordering::Relaxed);
                        return Ok(None);
                    }
                    let mut g = vec![0.0; rows.num_params()];
                    let kl = d.rounds[k].data.kl_from_behaviour(rows, Some(&mut g))?;
                    kls[k].store(kl.to_bits(), Ordering::Relaxed);
                    g.iter_mut().for_each(|x| *x *= kl_weight);
                    Ok(Some((kl_weight * kl, g)))
                };
                let (loss, grad) = metagrad::meta_gradient_with(
                    &inner,
                    q,
                    &d.rounds,
                    p.inner_lr,
                    Order::Second,
                    &mut ppo,
                    &kl_term,
                )?;
                let (clip_fraction, adapted) = post.expect("the outer term was evaluated");
                let kls = kls.iter().map(|x| f64::from_bits(x.load(Ordering::Relaxed))).collect();
                Ok(TaskPart { loss, grad, kls, clip_fraction, adapted })
            })
            .collect()
    }

    /// ProMP's outer steps. Reports the last outer loss, each step's loss, the largest
    /// |ρ − 1| on the inner data and the [`PrompDiagnostics`]; a loss that is not finite or
    /// exceeds the divergence threshold (or a non-finite gradient, or with a ratio guard a
    /// max |ρ − 1| above it) ends the update without applying it (θ and Adam's state stay as
    /// they were before the iteration); so does an adaptation at θ_j whose inner step gives
    /// parameters that are not finite.
    ///
    /// The loss at θ is mean_tasks[PPO-clip(ρ'(θ_K(θ)), Â'; ε) + c_KL w Σ_k KL_k(θ_k(θ))] with
    /// w = 1 (`inner_kl_average` sum) or 1/K (mean). With a `log_std_floor` F, every Adam step
    /// is followed by s_j ← max(s_j, F) on θ's log-std entries.
    pub(super) fn promp_update(&mut self, data: &[TaskRounds]) -> Result<OuterOutcome> {
        let p = self.params.clone();
        let k_steps = p.k();
        let nt = data.len() as f64;
        let theta0 = self.policy.params().to_vec();
        let mut theta = theta0.clone();
        let adam_before = self.state.adam.clone();
        let mut last_loss = 0.0;
        let mut losses = Vec::with_capacity(p.promp_steps);
        // max |ρ − 1| per inner round, as the bits of non-negative f64s (their order is the
        // numbers' order).
        let max_devs: Vec<AtomicU64> = (0..k_steps).map(|_| AtomicU64::new(0)).collect();
        let mut diag = PrompDiagnostics::default();
        let mut adapted_at_start: Vec<Vec<f64>> = Vec::new();
        for step in 0..p.promp_steps {
            crate::stop::check()?;
            let q = self.policy.with_params(&theta)?;
            let parts = match self.promp_objective(data, &q, &max_devs) {
                Ok(parts) => parts,
                // The adaptation at θ_j went non-finite: a divergence like a non-finite loss.
                Err(Error::Diverged(cause)) => {
                    self.state.adam = adam_before;
                    let cause = format!("Adam step {}: {cause}", losses.len() + 1);
                    return Ok(stopped(diag, read_devs(&max_devs), f64::NAN, losses, cause));
                }
                Err(e) => return Err(e),
            };
            last_loss = parts.iter().map(|x| x.loss).sum::<f64>() / nt;
            losses.push(last_loss);
            // The diagnostics of the latest evaluated step (θ_j before its update).
            diag.inner_kl = (0..k_steps).map(|k| parts.iter().map(|x| x.kls[k]).sum::<f64>() / nt).collect();
            diag.clip_fraction = mean(&parts.iter().map(|x| x.clip_fraction).collect::<Vec<_>>());
            if step == 0 {
                adapted_at_start = parts.iter().map(|x| x.adapted.clone()).collect();
            } else {
                let moved = distance(&theta, &theta0);
                let shifts: Vec<f64> =
                    parts.iter().zip(&adapted_at_start).map(|(x, a)| distance(&x.adapted, a)).collect();
                diag.adaptation_gain = (moved > 0.0).then(|| mean(&shifts) / moved);
            }
            let grad = sum_scaled(&parts.iter().map(|x| x.grad.clone()).collect::<Vec<_>>(), 1.0 / nt);
            let dev = read_devs(&max_devs).into_iter().fold(0.0, f64::max);
            let diverged = if !last_loss.is_finite() || last_loss > p.divergence_threshold {
                Some(format!(
                    "outer loss {last_loss} at Adam step {} (divergence threshold {})",
                    losses.len(),
                    p.divergence_threshold
                ))
            } else if grad.iter().any(|g| !g.is_finite()) {
                Some(format!("non-finite gradient at Adam step {}", losses.len()))
            } else {
                p.ratio_guard.filter(|&g| dev > g).map(|g| {
                    format!(
                        "max |ρ − 1| on the inner data {dev} at Adam step {} (ratio guard {g})",
                        losses.len()
                    )
                })
            };
            if let Some(cause) = diverged {
                self.state.adam = adam_before;
                return Ok(stopped(diag, read_devs(&max_devs), last_loss, losses, cause));
            }
            self.state.adam.as_mut().expect("ProMP has Adam").step(&mut theta, &grad)?;
            if let Some(floor) = p.log_std_floor {
                let at = self.policy.log_std_offset();
                theta[at..].iter_mut().for_each(|s| *s = s.max(floor));
            }
        }
        self.policy.set_params(&theta)?;
        diag.inner_ratio_dev = read_devs(&max_devs);
        diag.outer_step_norm = distance(&theta, &theta0);
        diag.outer_step_max = theta.iter().zip(&theta0).map(|(a, b)| (a - b).abs()).fold(0.0, f64::max);
        let max_ratio_dev = diag.inner_ratio_dev.iter().copied().fold(0.0, f64::max);
        Ok(OuterOutcome { diag: last_loss, losses, max_ratio_dev, diverged: None, promp: Some(diag) })
    }
}

/// The largest |ρ − 1| per inner round, from their bits (see `promp_update`).
fn read_devs(max_devs: &[AtomicU64]) -> Vec<f64> {
    max_devs.iter().map(|x| f64::from_bits(x.load(Ordering::Relaxed))).collect()
}

/// The outcome of an update stopped as diverged at an Adam step (not applied).
fn stopped(
    mut diag: PrompDiagnostics,
    inner_ratio_dev: Vec<f64>,
    loss: f64,
    losses: Vec<f64>,
    cause: String,
) -> OuterOutcome {
    let max_ratio_dev = inner_ratio_dev.iter().copied().fold(0.0, f64::max);
    diag.inner_ratio_dev = inner_ratio_dev;
    OuterOutcome { diag: loss, losses, max_ratio_dev, diverged: Some(cause), promp: Some(diag) }
}
