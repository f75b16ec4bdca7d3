//! TRPO's outer step through the adaptation (docs/theory.md#algorithms).

use rayon::prelude::*;

use super::{OuterOutcome, Trainer, sum_scaled};
use crate::error::Result;
use crate::meta::metagrad::{self, chain_objectives};
use crate::meta::objectives::exploration_term;
use crate::meta::optim::{ratio_surrogate, trpo_step};
use crate::meta::task_sampling::TaskRounds;
use crate::policy::{GaussianMlpRows, Policy, ScoreRows};

impl Trainer {
    /// TRPO outer step. Reports the accepted step's KL (0 when rejected); a non-finite loss
    /// or gradient is a divergence (the step is not taken).
    pub(super) fn trpo_update(&mut self, data: &[TaskRounds]) -> Result<OuterOutcome> {
        let p = self.params.clone();
        let inner = p.inner();
        let (eta, order) = (p.inner_lr, p.algo.order());
        let weights = self.exploration_weights(data);
        let nt = data.len() as f64;
        let old = self.policy.clone();
        // The adaptation at θ_old (equal to the sampling policies), taken once: its rows
        // serve the meta-gradient and every Fisher-vector product of the CG solve.
        let chains: Vec<metagrad::AdaptedChain<'_>> = data
            .par_iter()
            .map(|d| metagrad::adapt_chain(&inner, &old, &d.rounds, eta))
            .collect::<Result<_>>()?;
        let chain_objs: Vec<Vec<_>> = data
            .iter()
            .zip(&chains)
            .map(|(d, c)| chain_objectives(&inner, &c.rows, &d.rounds))
            .collect::<Result<_>>()?;
        // Per-task loss (to minimise) at θ_K: −mean(ρ'Â') on the post-update rows.
        let outer_loss =
            |d: &TaskRounds, rows: &GaussianMlpRows<'_>, grad: bool| -> Result<(f64, Vec<f64>)> {
                let o = ratio_surrogate(rows.values(), &d.post.advantages)?;
                let mut g = Vec::new();
                if grad {
                    g = vec![0.0; rows.num_params()];
                    rows.vjp_add(&o.d_log, &mut g);
                }
                Ok((o.loss, g))
            };
        // E-MAML: −R̄·mean_{D_k} log π_{θ_k} per inner step.
        let explore = |d: &TaskRounds,
                       w: f64,
                       k: usize,
                       rows: &GaussianMlpRows<'_>|
         -> Result<Option<(f64, Vec<f64>)>> {
            if w == 0.0 {
                return Ok(None);
            }
            let (e, g) = exploration_term(rows, &d.rounds[k].data, w)?;
            Ok(Some((-e, g.iter().map(|x| -x).collect())))
        };
        let parts: Vec<(f64, Vec<f64>)> = data
            .par_iter()
            .zip(weights.par_iter())
            .zip(chains.par_iter().zip(chain_objs.par_iter()))
            .map(|((d, &w), (chain, objs))| {
                metagrad::meta_gradient_on_chain(
                    objs,
                    chain,
                    eta,
                    order,
                    &mut |last| outer_loss(d, &d.post.rows(last)?, true),
                    &|k, pol| explore(d, w, k, pol),
                )
            })
            .collect::<Result<_>>()?;
        let loss_before = parts.iter().map(|x| x.0).sum::<f64>() / nt;
        let grad = sum_scaled(&parts.iter().map(|x| x.1.clone()).collect::<Vec<_>>(), 1.0 / nt);
        let outcome = |diag: f64, diverged: Option<String>| OuterOutcome {
            diag,
            losses: Vec::new(),
            max_ratio_dev: 0.0,
            diverged,
            promp: None,
        };
        if !loss_before.is_finite() || grad.iter().any(|g| !g.is_finite()) {
            return Ok(outcome(
                0.0,
                Some(format!("the outer loss ({loss_before}) or its gradient is not finite")),
            ));
        }
        // Fisher-vector product through the adaptation: mean_t J_tᵀ F'_t J_t v.
        let post_batches: Vec<_> = data
            .iter()
            .zip(&chains)
            .map(|(d, c)| c.last.batch(&d.post.obs))
            .collect::<std::result::Result<_, _>>()?;
        // On a stop request the remaining CG products return 0 and the line search's trials
        // NaN, which ends `trpo_step` at once; the iteration is then dropped below.
        let fvp = |v: &[f64], out: &mut [f64]| {
            if crate::stop::requested() {
                out.fill(0.0);
                return;
            }
            let parts: Vec<Vec<f64>> = chain_objs
                .par_iter()
                .zip(post_batches.par_iter())
                .map(|(objs, batch)| {
                    let u = metagrad::jvp(objs, eta, order, v);
                    let mut fu = vec![0.0; u.len()];
                    batch.fisher_vector_product(&u, &mut fu).expect("lengths match");
                    metagrad::vjp(objs, eta, order, &fu, &[]).expect("no extras")
                })
                .collect();
            out.copy_from_slice(&sum_scaled(&parts, 1.0 / nt));
        };
        let eval = |theta: &[f64]| -> (f64, f64) {
            if crate::stop::requested() {
                return (f64::NAN, f64::NAN);
            }
            let Ok(q) = old.with_params(theta) else { return (f64::NAN, f64::NAN) };
            let res: Result<Vec<(f64, f64)>> = data
                .par_iter()
                .zip(weights.par_iter())
                .map(|(d, &w)| {
                    let chain = metagrad::adapt_chain(&inner, &q, &d.rounds, eta)?;
                    let post_rows = d.post.rows(&chain.last)?;
                    let mut loss = outer_loss(d, &post_rows, false)?.0;
                    if w != 0.0 {
                        for (k, rows) in chain.rows.iter().enumerate() {
                            if let Some((e, _)) = explore(d, w, k, rows)? {
                                loss += e;
                            }
                        }
                    }
                    let kl = d.post.kl_from_behaviour(&post_rows, None)?;
                    Ok((loss, kl))
                })
                .collect();
            match res {
                Ok(v) => (v.iter().map(|x| x.0).sum::<f64>() / nt, v.iter().map(|x| x.1).sum::<f64>() / nt),
                Err(_) => (f64::NAN, f64::NAN),
            }
        };
        let out = trpo_step(&p.trpo, old.params(), &grad, loss_before, fvp, eval)?;
        crate::stop::check()?;
        drop(chain_objs);
        self.policy.set_params(&out.theta)?;
        Ok(outcome(out.kl, None))
    }
}
