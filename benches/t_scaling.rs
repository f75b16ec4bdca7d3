//! Scaling in the trajectory length T: one trajectory of T = 100, 1 000, 10 000, 100 000
//! steps on the default tabular MDP (D = 100), one thread; value and gradient, HVP and full
//! Hessian of every estimator. Time and memory grow linearly in T (semiseparable row
//! Hessians); TayPO-3's full Hessian uses dense T×T row blocks and is measured up to
//! T = 1 000 (its documented limit, `DENSE_HESSIAN_MAX_T`).

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use metagrad::estimators::{BatchObjective, DENSE_HESSIAN_MAX_T, Estimator};
use metagrad::experiments::tabular_study::{StudyParams, TrialSetup};
use metagrad::rng::stream;
use metagrad::tabular::TabularBatch;
use std::hint::black_box;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn benches(c: &mut Criterion) {
    let _ = rayon::ThreadPoolBuilder::new().num_threads(1).build_global();
    let study = StudyParams::default().validate().unwrap();
    let setup = TrialSetup::draw(&study, 0);
    let policy = setup.target(0.5);
    let v: Vec<f64> = (0..100).map(|i| (i as f64 * 0.37).sin()).collect();
    let lengths: Vec<usize> = match std::env::var("T_SCALING_MAX") {
        Ok(m) => [100, 1_000, 10_000, 100_000].into_iter().filter(|&t| t <= m.parse().unwrap()).collect(),
        Err(_) => vec![100, 1_000, 10_000, 100_000],
    };
    for name in ["is", "dr", "dr-trunc", "taypo-1", "taypo-2", "taypo-3", "maml"] {
        let est: Estimator = name.parse().unwrap();
        let mut group = c.benchmark_group(name);
        for &t in &lengths {
            let data = setup.sample(1, t, &mut stream(0, &[1]));
            let batch = TabularBatch::new(&data, &setup.behaviour, 5);
            let prepared = batch.prepare(est, 0.8, Some(&setup.critic)).unwrap();
            let rows = batch.rows(&policy, &prepared, Some(&setup.critic));
            let obj = BatchObjective::new(&prepared, &rows).unwrap();
            group.bench_with_input(BenchmarkId::new("gradient", t), &t, |b, _| b.iter(|| obj.gradient()));
            group.bench_with_input(BenchmarkId::new("hvp", t), &t, |b, _| b.iter(|| obj.hvp(black_box(&v))));
            if est.has_linear_hessian() || t <= DENSE_HESSIAN_MAX_T {
                group.bench_with_input(BenchmarkId::new("hessian", t), &t, |b, _| b.iter(|| obj.hessian()));
            }
        }
        group.finish();
    }
}

criterion_group! {
    name = group;
    config = Criterion::default().sample_size(10).measurement_time(std::time::Duration::from_secs(1)).warm_up_time(std::time::Duration::from_millis(200));
    targets = benches
}
criterion_main!(group);
