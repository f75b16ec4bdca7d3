//! Issue-4 benchmark: the whole default ε sweep of `metagrad tabular` (4 ε × 10 trials ×
//! 5 estimators with full Hessians, N = 1000), on all cores.

mod support;

use criterion::{Criterion, criterion_group, criterion_main};
use metagrad::experiments::tabular_study::{StudyParams, Sweep};

fn eps_sweep(c: &mut Criterion) {
    let study = StudyParams { sweep: Sweep::Eps, ..StudyParams::default() }.validate().unwrap();
    c.bench_function("tabular_default_eps_sweep", |b| b.iter(|| study.run(&|| ()).unwrap()));
}

criterion_group! {
    name = sweep;
    config = Criterion::default().sample_size(10).measurement_time(std::time::Duration::from_secs(6));
    targets = eps_sweep
}
criterion_main!(sweep);
