//! Meta-RL machinery around the estimators: parallel seeded sampling
//! ([`sampler`]), sample processing into returns and advantages ([`processing`]), the
//! outer optimisers' building blocks ([`optim`]: TRPO, PPO-clip, Adam), the inner
//! objectives as estimators ([`objectives`]: MAML, LVC, TayPO-2, DR, E-MAML's term),
//! K-step meta-gradients by Hessian-vector products ([`metagrad`]) and the six algorithms
//! with their trainer and checkpointable state ([`algos`]).
//!
//! Settings follow ProMP's code base, which the paper reuses (docs/theory.md#meta-rl-setup).
//!
//! # Wiring an inner objective (per task k)
//!
//! 1. `batch = sampler.sample(env, &tasks, &[&policy], seed, iteration, phase)`, then
//!    `proc = processing::process(&batch, &cfg)` for the advantages;
//! 2. `(obs, act, logp) = batch.task_slices(k)`, rows `policy.rows(obs, act, logp)`
//!    (ρ_i = π_θ/π_behaviour, u_i = log π_θ) and trajectories from
//!    `batch.task_local_path_offsets(k)`;
//! 3. an estimator V̂(ρ) gives ∂V̂/∂ρ (and its row-space second derivatives); with
//!    w_i = ρ_i ∂V̂/∂ρ_i, `rows.vjp_add(&w, g)` is the gradient and
//!    `rows.hessian_vector_add(&w2, v, |jv, c| …, out)` the Hessian-vector product, where
//!    w2 = ∂V̂/∂u and c = ∂²V̂/∂u∂uᵀ · (J v) (one fused pass; see
//!    [`crate::policy::GaussianMlpRows::hessian_vector_add`]);
//! 4. adapted parameters θ' = θ + η g give a new policy (`policy.with_params(&θ')`)
//!    for post-update sampling (one policy per task in `sample`, with a new `phase`).

pub mod algos;
pub mod metagrad;
pub mod objectives;
pub mod optim;
pub mod params;
pub mod processing;
pub mod sampler;
pub mod settings;
pub mod task_sampling;
pub mod unbounded;

pub use optim::{Adam, TrpoConfig, TrpoOutcome};
pub use processing::{ProcessedSamples, ProcessingConfig};
pub use sampler::{SampleBatch, Sampler, SamplerConfig};

#[cfg(test)]
mod tests {
    //! End-to-end check of the pieces together: sampler → processing → policy rows →
    //! TRPO, as plain (non-meta) policy optimisation on one fixed goal.
    use super::optim::{ratio_surrogate, trpo_step};
    use super::*;
    use crate::envs::PointEnv;
    use crate::policy::{GaussianMlp, GaussianMlpConfig, Policy, ScoreRows};

    #[test]
    fn trpo_improves_the_return_on_a_point_env() {
        let env = PointEnv::corners_simple();
        let cfg = GaussianMlpConfig { hidden: vec![16, 16], init_log_std: 0.0, ..Default::default() };
        let mut policy = GaussianMlp::new(2, 2, &cfg, 1).unwrap();
        let tasks = vec![vec![0.8, -0.6]; 4];
        let sampler =
            Sampler::new(SamplerConfig { rollouts_per_task: 10, horizon: 40, ..Default::default() }).unwrap();
        let proc_cfg = ProcessingConfig::default();
        let trpo = TrpoConfig { max_kl: 0.05, ..Default::default() };
        let mut first = None;
        let mut last = 0.0;
        for it in 0..15 {
            let b = sampler.sample(&env, &tasks, &[&policy], 7, it, 0).unwrap();
            last = b.average_return();
            first.get_or_insert(last);
            let p = processing::process(&b, &proc_cfg).unwrap();
            let rows = policy.rows(&b.obs, &b.actions, &b.log_probs).unwrap();
            let obj = ratio_surrogate(rows.values(), &p.advantages).unwrap();
            let mut grad = vec![0.0; policy.num_params()];
            rows.vjp_add(&obj.d_log, &mut grad);
            let batch = policy.batch(&b.obs).unwrap();
            let old_mean = batch.mean().to_vec();
            let old = policy.clone();
            let eval = |t: &[f64]| {
                let q = old.with_params(t).unwrap();
                let r = q.rows(&b.obs, &b.actions, &b.log_probs).unwrap();
                let loss = ratio_surrogate(r.values(), &p.advantages).unwrap().loss;
                let kl = q.batch(&b.obs).unwrap().mean_kl_from(&old_mean, old.log_std(), None).unwrap();
                (loss, kl)
            };
            let fvp = |v: &[f64], out: &mut [f64]| batch.fisher_vector_product(v, out).unwrap();
            let out = trpo_step(&trpo, old.params(), &grad, obj.loss, fvp, eval).unwrap();
            assert!(out.kl <= trpo.max_kl);
            policy.set_params(&out.theta).unwrap();
        }
        let first = first.unwrap();
        assert!(last > first + 5.0, "average return {first} → {last}");
    }
}
