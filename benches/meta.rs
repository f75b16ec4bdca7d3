//! Meta-RL benchmarks, on the current rayon pool (2 threads on the CI machine):
//!
//! * `promp_size_meta_gradient_{f64,f32}/*`: one second-order meta-gradient of ProMP's size: policy
//!   20 → (64, 64) → 6 (≈ 5.9k parameters), 40 tasks × 2000 pre-update and 2000
//!   post-update samples (20 paths × 100 steps each), one inner step; per task the inner
//!   gradient, the adapted policy's outer gradient (TRPO surrogate) and one HVP of the
//!   inner objective (target ≤ 300 ms on 2 cores);
//! * `mlp_point_n2000_{f64,f32}/*`: the MLP passes that dominate a meta-iteration (rows'
//!   forward pass, VJP, fused HVP, Fisher product) on the point env's network and 2000
//!   samples, one thread, in both precisions;
//! * `point_corners_iteration/*`: one full meta-iteration on `point-corners` with ProMP's
//!   settings (docs/theory.md#meta-rl-setup; 40 tasks × 20 rollouts × horizon 100, 3 inner steps):
//!   sampling of the
//!   4 rounds, inner adaptation and the outer update, for ProMP, ProMP-TayPO-2 and
//!   TRPO-MAML;
//! * `half_cheetah_rand_direc_iteration/*` (with `--features mujoco`): the same on
//!   HalfCheetahRandDirec (40 tasks × 20 rollouts × horizon 100, 1 inner step: 160k env
//!   steps per iteration).

mod support;

use criterion::{Criterion, criterion_group, criterion_main};
use metagrad::meta::algos::{Algorithm, Params, Trainer};
use metagrad::meta::metagrad::{InnerRound, Order, meta_gradient};
use metagrad::meta::objectives::{InnerKind, InnerObjective, TaskData};
use metagrad::meta::optim::ratio_surrogate;
use metagrad::policy::{GaussianMlp, GaussianMlpConfig, Policy, Precision, ScoreRows};
use rayon::prelude::*;
use std::hint::black_box;
use std::time::Duration;
use support::Sampled;

/// Synthetic task data of ProMP's size sampled from `policy`.
fn task(policy: &GaussianMlp, seed: u64) -> TaskData {
    let (od, ad, n) = (20, 6, 2000);
    let mut sampled = Sampled::new(policy, n, 1.0, seed);
    let rewards = sampled.uniform(n, 0.0, 1.0);
    let advantages = sampled.uniform(n, -1.5, 1.5);
    let baselines = sampled.uniform(n, 0.0, 10.0);
    let Sampled { obs, actions, log_probs: logp, .. } = sampled;
    TaskData {
        obs_dim: od,
        act_dim: ad,
        behaviour_mean: policy.mean_batch(&obs).unwrap(),
        behaviour_log_std: policy.log_std().to_vec(),
        obs,
        actions,
        behaviour_log_probs: logp,
        rewards,
        advantages,
        baselines,
        adv_std: 3.0,
        path_offsets: (0..=20).map(|p| p * 100).collect(),
        average_return: 0.0,
        success_rate: None,
    }
}

/// The MLP passes that dominate a meta-iteration, on the point env's network
/// (4 → (64, 64) → 2) and one task-round of 2000 samples, one thread: the forward pass
/// that builds the rows, a gradient (VJP), a fused HVP of the LVC objective and a Fisher
/// product.
fn mlp_passes(c: &mut Criterion) {
    for precision in [Precision::F64, Precision::F32] {
        mlp_passes_in(c, precision);
    }
}

fn mlp_passes_in(c: &mut Criterion, precision: Precision) {
    let cfg = GaussianMlpConfig { precision, ..Default::default() };
    let policy = GaussianMlp::new(4, 2, &cfg, 3).unwrap();
    let n = 2000;
    let mut sampled = Sampled::new(&policy, n, 2.0, 5);
    let w = sampled.uniform(n, -1.0, 1.0);
    let v = sampled.uniform(policy.num_params(), -1.0, 1.0);
    let Sampled { obs, actions, log_probs: logp, .. } = sampled;
    let rows = policy.rows(&obs, &actions, &logp).unwrap();
    let batch = policy.batch(&obs).unwrap();
    let mut out = vec![0.0; policy.num_params()];
    let mut g = c.benchmark_group(format!("mlp_point_n2000_{precision}"));
    g.sample_size(30).measurement_time(Duration::from_secs(3)).warm_up_time(Duration::from_secs(1));
    g.bench_function("rows_forward", |b| b.iter(|| black_box(policy.rows(&obs, &actions, &logp).unwrap())));
    g.bench_function("vjp", |b| b.iter(|| rows.vjp_add(black_box(&w), &mut out)));
    g.bench_function("fused_hvp", |b| {
        b.iter(|| rows.fused_hvp_add(black_box(&w), &v, &mut |jv, c| c.copy_from_slice(jv), &mut out))
    });
    g.bench_function("fisher_product", |b| {
        b.iter(|| batch.fisher_vector_product(black_box(&v), &mut out).unwrap())
    });
    g.finish();
}

fn benches(c: &mut Criterion) {
    for precision in [Precision::F64, Precision::F32] {
        promp_size_meta_gradient(c, precision);
    }
    meta_iterations(c, "point-corners", 30);
    #[cfg(feature = "mujoco")]
    meta_iterations(c, "half-cheetah-rand-direc", 60);
}

fn promp_size_meta_gradient(c: &mut Criterion, precision: Precision) {
    let cfg = GaussianMlpConfig { precision, ..Default::default() };
    let policy = GaussianMlp::new(20, 6, &cfg, 2).unwrap();
    assert_eq!(policy.num_params(), 20 * 64 + 64 + 64 * 64 + 64 + 64 * 6 + 6 + 6);
    let tasks: Vec<(TaskData, TaskData)> =
        (0..40).map(|t| (task(&policy, 2 * t), task(&policy, 2 * t + 1))).collect();
    let mut g = c.benchmark_group(format!("promp_size_meta_gradient_{precision}"));
    g.sample_size(10).measurement_time(Duration::from_secs(8)).warm_up_time(Duration::from_secs(1));
    for kind in [InnerKind::Lvc, InnerKind::Taypo2, InnerKind::Dr] {
        let inner = InnerObjective::new(kind, 0.99);
        let rounds: Vec<(Vec<InnerRound>, &TaskData)> = tasks
            .iter()
            .map(|(pre, post)| (vec![InnerRound::new(&inner, pre.clone()).unwrap()], post))
            .collect();
        g.bench_function(format!("{kind:?}").to_lowercase(), |b| {
            b.iter(|| {
                let parts: Vec<Vec<f64>> = rounds
                    .par_iter()
                    .map(|(r, post)| {
                        meta_gradient(&inner, &policy, r, 0.1, Order::Second, |p| {
                            let rows = post.rows(p)?;
                            let o = ratio_surrogate(rows.values(), &post.advantages)?;
                            let mut g = vec![0.0; p.num_params()];
                            rows.vjp_add(&o.d_log, &mut g);
                            Ok((o.loss, g))
                        })
                        .unwrap()
                        .1
                    })
                    .collect();
                black_box(parts)
            })
        });
    }
    g.finish();
}

/// One full meta-iteration (sampling of every round, adaptation, outer update) with the
/// defaults of `env` (the paper's setup), for ProMP, ProMP-TayPO-2 and TRPO-MAML.
fn meta_iterations(c: &mut Criterion, env: &str, seconds: u64) {
    let mut g = c.benchmark_group(format!("{}_iteration", env.replace('-', "_")));
    g.sample_size(10).measurement_time(Duration::from_secs(seconds)).warm_up_time(Duration::from_secs(1));
    for algo in [Algorithm::Promp, Algorithm::PrompTaypo2, Algorithm::TrpoMaml] {
        let params = Params { iterations: 1_000_000, ..Params::new(env, algo) }.validate().unwrap();
        let mut trainer = Trainer::new(params).unwrap();
        g.bench_function(algo.name(), |b| b.iter(|| black_box(trainer.step().unwrap().unwrap())));
    }
    g.finish();
}

criterion_group!(group, mlp_passes, benches);
criterion_main!(group);
