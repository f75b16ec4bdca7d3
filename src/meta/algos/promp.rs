//! ProMP's outer steps: PPO-clip with the inner KL penalty, by Adam, through the adaptation
//! (docs/theory.md#algorithms).

use rayon::prelude::*;

use super::{OuterOutcome, Trainer, sum_scaled};
use crate::error::Result;
use crate::meta::metagrad::{self, Order};
use crate::meta::optim::ppo_clip_objective;
use crate::meta::task_sampling::TaskRounds;
use crate::policy::{GaussianMlp, GaussianMlpRows, Policy, ScoreRows};

impl Trainer {
    /// ProMP's outer steps. Reports the last outer loss, each step's loss and the largest
    /// |ρ − 1| on the inner data; a loss that is not finite or exceeds the divergence
    /// threshold (or a non-finite gradient, or with a ratio guard a max |ρ − 1| above it)
    /// ends the update without applying it (θ and Adam's state stay as they were before the
    /// iteration).
    pub(super) fn promp_update(&mut self, data: &[TaskRounds]) -> Result<OuterOutcome> {
        let p = self.params.clone();
        let inner = p.inner();
        let eta = p.inner_lr;
        let nt = data.len() as f64;
        let mut theta = self.policy.params().to_vec();
        let adam_before = self.state.adam.clone();
        let mut last_loss = 0.0;
        let mut losses = Vec::with_capacity(p.promp_steps);
        // max |ρ − 1| as the bits of a non-negative f64 (their order is the numbers' order).
        let max_dev = std::sync::atomic::AtomicU64::new(0);
        for _ in 0..p.promp_steps {
            crate::stop::check()?;
            let q = self.policy.with_params(&theta)?;
            let ppo = |d: &TaskRounds, last: &GaussianMlp| -> Result<(f64, Vec<f64>)> {
                let rows = d.post.rows(last)?;
                let o = ppo_clip_objective(rows.values(), &d.post.advantages, p.ppo_clip)?;
                let mut g = vec![0.0; last.num_params()];
                rows.vjp_add(&o.d_log, &mut g);
                Ok((o.loss, g))
            };
            // c_KL·KL(π_{θ_k^old} ‖ π_{θ_k}) on D_k.
            let kl_term =
                |d: &TaskRounds, k: usize, rows: &GaussianMlpRows<'_>| -> Result<Option<(f64, Vec<f64>)>> {
                    let dev = rows
                        .values()
                        .iter()
                        .map(|r| (r - 1.0).abs())
                        .fold(0.0, |m: f64, x| if x.is_nan() { f64::INFINITY } else { m.max(x) });
                    max_dev.fetch_max(dev.to_bits(), std::sync::atomic::Ordering::Relaxed);
                    if p.kl_coeff == 0.0 {
                        return Ok(None);
                    }
                    let mut g = vec![0.0; rows.num_params()];
                    let kl = d.rounds[k].data.kl_from_behaviour(rows, Some(&mut g))?;
                    g.iter_mut().for_each(|x| *x *= p.kl_coeff);
                    Ok(Some((p.kl_coeff * kl, g)))
                };
            let parts: Vec<(f64, Vec<f64>)> = data
                .par_iter()
                .map(|d| {
                    metagrad::meta_gradient_with(
                        &inner,
                        &q,
                        &d.rounds,
                        eta,
                        Order::Second,
                        &mut |last| ppo(d, last),
                        &|k, pol| kl_term(d, k, pol),
                    )
                })
                .collect::<Result<_>>()?;
            last_loss = parts.iter().map(|x| x.0).sum::<f64>() / nt;
            losses.push(last_loss);
            let grad = sum_scaled(&parts.iter().map(|x| x.1.clone()).collect::<Vec<_>>(), 1.0 / nt);
            let diverged = if !last_loss.is_finite() || last_loss > p.divergence_threshold {
                Some(format!(
                    "outer loss {last_loss} at Adam step {} (divergence threshold {})",
                    losses.len(),
                    p.divergence_threshold
                ))
            } else if grad.iter().any(|g| !g.is_finite()) {
                Some(format!("non-finite gradient at Adam step {}", losses.len()))
            } else {
                let dev = f64::from_bits(max_dev.load(std::sync::atomic::Ordering::Relaxed));
                p.ratio_guard.filter(|&g| dev > g).map(|g| {
                    format!(
                        "max |ρ − 1| on the inner data {dev} at Adam step {} (ratio guard {g})",
                        losses.len()
                    )
                })
            };
            if diverged.is_some() {
                self.state.adam = adam_before;
                return Ok(OuterOutcome {
                    diag: last_loss,
                    losses,
                    max_ratio_dev: f64::from_bits(max_dev.into_inner()),
                    diverged,
                });
            }
            self.state.adam.as_mut().expect("ProMP has Adam").step(&mut theta, &grad)?;
        }
        self.policy.set_params(&theta)?;
        Ok(OuterOutcome {
            diag: last_loss,
            losses,
            max_ratio_dev: f64::from_bits(max_dev.into_inner()),
            diverged: None,
        })
    }
}
