//! The whole default ε sweep of `metagrad tabular` (4 ε × 10 trials ×
//! 5 estimators with full Hessians, N = 1000), on all cores; and one
//! (trial, ε) point of the default biasvar sweep (M = 100 000 trajectories, 5 estimators
//! with full Hessians); the default sweep has 10 trials × 4 ε = 40 such points (plus the
//! N sweep, ≈ 1 % of the time).

mod support;

use criterion::{Criterion, criterion_group, criterion_main};
use metagrad::experiments::tabular_study::{StudyParams, Sweep, TrialSetup};

fn eps_sweep(c: &mut Criterion) {
    let study = StudyParams { sweep: Sweep::Eps, ..StudyParams::default() }.validate().unwrap();
    c.bench_function("tabular_default_eps_sweep", |b| b.iter(|| study.run(&|| ()).unwrap()));
}

fn biasvar_point(c: &mut Criterion) {
    let study = StudyParams { sweep: Sweep::Biasvar, ..StudyParams::default() }.validate().unwrap();
    let setup = TrialSetup::draw(&study, 0);
    c.bench_function("tabular_default_biasvar_point", |b| {
        b.iter(|| study.biasvar_point(&setup, 0, 2, 0.5, &|| ()).unwrap())
    });
}

criterion_group! {
    name = sweep;
    config = Criterion::default().sample_size(10).measurement_time(std::time::Duration::from_secs(6));
    targets = eps_sweep, biasvar_point
}
criterion_main!(sweep);
