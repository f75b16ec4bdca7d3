//! Benchmarks of the estimators (docs/speed.md#estimators) on D = 100 (|X| = 20, |A| = 5),
//! N = 1000, T = 20, one thread:
//! oracle Hessian; gradient, HVP and full Hessian of the mean DR and TayPO-2 estimates.

mod support;

use criterion::{Criterion, criterion_group, criterion_main};
use metagrad::estimators::{BatchObjective, Estimator};
use metagrad::experiments::tabular_study::{StudyParams, TrialSetup};
use metagrad::rng::stream;
use metagrad::tabular::{TabularBatch, oracle};
use std::hint::black_box;

fn benches(c: &mut Criterion) {
    // One thread, as the targets are stated.
    let _ = rayon::ThreadPoolBuilder::new().num_threads(1).build_global();
    let study = StudyParams::default().validate().unwrap();
    let setup = TrialSetup::draw(&study, 0);
    let policy = setup.target(0.5);
    let data = setup.sample(1000, 20, &mut stream(0, &[1]));
    let batch = TabularBatch::new(&data, &setup.behaviour, 5);
    let v: Vec<f64> = (0..100).map(|i| (i as f64 * 0.37).sin()).collect();

    c.bench_function("oracle_hessian", |b| {
        b.iter(|| oracle::softmax_derivatives(black_box(&setup.mdp), &policy))
    });
    for name in ["dr", "taypo-2"] {
        let est: Estimator = name.parse().unwrap();
        let prepared = batch.prepare(est, 0.8, Some(&setup.critic)).unwrap();
        {
            c.bench_function(&format!("{name}_gradient_of_mean"), |b| {
                b.iter(|| {
                    let rows = batch.rows(&policy, &prepared, Some(&setup.critic));
                    BatchObjective::new(&prepared, &rows).unwrap().gradient()
                })
            });
            c.bench_function(&format!("{name}_hvp_of_mean"), |b| {
                b.iter(|| {
                    let rows = batch.rows(&policy, &prepared, Some(&setup.critic));
                    BatchObjective::new(&prepared, &rows).unwrap().hvp(black_box(&v))
                })
            });
            c.bench_function(&format!("{name}_hessian_of_mean"), |b| {
                b.iter(|| {
                    let rows = batch.rows(&policy, &prepared, Some(&setup.critic));
                    BatchObjective::new(&prepared, &rows).unwrap().hessian()
                })
            });
        }
    }
}

criterion_group! {
    name = group;
    config = Criterion::default().sample_size(30).measurement_time(std::time::Duration::from_secs(2)).warm_up_time(std::time::Duration::from_millis(500));
    targets = benches
}
criterion_main!(group);
