//! Sampler throughput and Gaussian-MLP derivative costs.
//!
//! * `sampler/point-corners/{1,2}threads`: one ProMP-size sampling round on
//!   `point-corners` (40 tasks × 20 rollouts × horizon 100 = 80 000 env steps, with
//!   (64, 64) MLP policy inference), in a rayon pool of 1 and 2 threads; throughput is
//!   reported in env steps per second.
//! * `mlp/*`: obs 20, (64, 64), action 6 (≈ 5.9k parameters), batch 2000, one thread:
//!   forward pass (rows), gradient (vjp), forward-mode jvp, HVP of the log-likelihood
//!   curvature, and gradient + HVP together.

mod support;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use metagrad::envs::PointEnv;
use metagrad::meta::sampler::{Sampler, SamplerConfig, sample_tasks};
use metagrad::policy::{GaussianMlp, GaussianMlpConfig, Policy, ScoreRows};
use std::hint::black_box;
use support::Sampled;

fn bench_sampler(c: &mut Criterion) {
    let env = PointEnv::corners();
    let policy = GaussianMlp::new(4, 2, &GaussianMlpConfig::default(), 1).unwrap();
    let tasks = sample_tasks(&env, 40, 1, 0);
    let sampler = Sampler::new(SamplerConfig::default()).unwrap();
    let steps = 40 * 20 * 100;
    let mut group = c.benchmark_group("sampler");
    group.sample_size(10);
    group.throughput(Throughput::Elements(steps as u64));
    for threads in [1usize, 2] {
        let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
        group.bench_function(format!("point-corners/{threads}threads"), |b| {
            b.iter(|| pool.install(|| black_box(sampler.sample(&env, &tasks, &[&policy], 1, 0, 0).unwrap())))
        });
    }
    group.finish();
}

fn bench_mlp(c: &mut Criterion) {
    let (od, ad, n) = (20, 6, 2000);
    let policy = GaussianMlp::new(od, ad, &GaussianMlpConfig::default(), 2).unwrap();
    let mut sampled = Sampled::new(&policy, n, 1.0, 3);
    let w = sampled.uniform(n, -1.0, 1.0);
    let d = policy.num_params();
    let v = sampled.uniform(d, -1.0, 1.0);
    let Sampled { obs, actions, log_probs: logp, .. } = sampled;
    let rows = policy.rows(&obs, &actions, &logp).unwrap();
    let mut group = c.benchmark_group("mlp");
    group.sample_size(20);
    group.bench_function("forward_rows", |b| {
        b.iter(|| black_box(policy.rows(&obs, &actions, &logp).unwrap()))
    });
    group.bench_function("gradient_vjp", |b| {
        b.iter(|| {
            let mut g = vec![0.0; d];
            rows.vjp_add(&w, &mut g);
            black_box(g)
        })
    });
    group.bench_function("jvp", |b| {
        b.iter(|| {
            let mut out = vec![0.0; n];
            rows.jvp(&v, &mut out);
            black_box(out)
        })
    });
    group.bench_function("hvp", |b| {
        b.iter(|| {
            let mut h = vec![0.0; d];
            rows.curvature_hvp_add(&w, &v, &mut h);
            black_box(h)
        })
    });
    group.bench_function("forward_gradient_hvp", |b| {
        b.iter(|| {
            let r = policy.rows(&obs, &actions, &logp).unwrap();
            let mut g = vec![0.0; d];
            r.vjp_add(&w, &mut g);
            let mut h = vec![0.0; d];
            r.curvature_hvp_add(&w, &v, &mut h);
            black_box((g, h))
        })
    });
    group.bench_function("fused_gauss_newton_plus_curvature_hvp", |b| {
        b.iter(|| {
            let mut h = vec![0.0; d];
            rows.hessian_vector_add(
                &w,
                &v,
                |jv, c| c.iter_mut().zip(jv).for_each(|(c, x)| *c = 0.5 * x),
                &mut h,
            );
            black_box(h)
        })
    });
    group.bench_function("unfused_gauss_newton_plus_curvature_hvp", |b| {
        b.iter(|| {
            let mut jv = vec![0.0; n];
            rows.jvp(&v, &mut jv);
            jv.iter_mut().for_each(|x| *x *= 0.5);
            let mut h = vec![0.0; d];
            rows.vjp_add(&jv, &mut h);
            rows.curvature_hvp_add(&w, &v, &mut h);
            black_box(h)
        })
    });
    let batch = policy.batch(&obs).unwrap();
    group.bench_function("fisher_vector_product", |b| {
        b.iter(|| {
            let mut out = vec![0.0; d];
            batch.fisher_vector_product(&v, &mut out).unwrap();
            black_box(out)
        })
    });
    group.finish();
}

criterion_group!(benches, bench_sampler, bench_mlp);
criterion_main!(benches);
