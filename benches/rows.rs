//! Benchmarks of the row interface (docs/speed.md#row-interface):
//! one task of the meta-RL setup, N = 20 trajectories × T = 100 steps, one thread —
//! what every engine call of the framework faces does: validation and preparation alone,
//! then value and row gradient, then one row HVP, for DR (state values), TayPO-1 and TayPO-2.

use criterion::{Criterion, criterion_group, criterion_main};
use metagrad::estimators::TaylorDiscount;
use metagrad::estimators::rows::{Padded, RowCritic, RowData, RowObjective, parse_estimator};
use std::hint::black_box;

fn benches(c: &mut Criterion) {
    let _ = rayon::ThreadPoolBuilder::new().num_threads(1).build_global();
    let (n, t) = (20, 100);
    let wave =
        |k: usize, a: f64, s: f64| -> Vec<f64> { (0..k).map(|i| a * ((i as f64) * s).sin()).collect() };
    let u = wave(n * t, 0.3, 0.37);
    let log_mu = wave(n * t, 0.3, 0.41);
    let rewards = wave(n * t, 1.0, 0.13);
    let values = wave(n * (t + 1), 2.0, 0.07);
    let w = wave(n * t, 1.0, 0.29);
    let data = RowData {
        u: Padded::new(&u, n, t),
        log_mu: Padded::new(&log_mu, n, t),
        rewards: Padded::new(&rewards, n, t),
        lengths: None,
        critic: RowCritic::State(Padded::new(&values, n, t + 1)),
    };
    for name in ["dr", "taypo-1", "taypo-2"] {
        let e = parse_estimator(name, 1.0, TaylorDiscount::Absolute).unwrap();
        c.bench_function(&format!("rows_{name}_prepare"), |b| {
            b.iter(|| RowObjective::new(e, 0.99, black_box(&data)).unwrap())
        });
        c.bench_function(&format!("rows_{name}_value_grad"), |b| {
            b.iter(|| RowObjective::new(e, 0.99, black_box(&data)).unwrap().gradient())
        });
        c.bench_function(&format!("rows_{name}_hvp"), |b| {
            b.iter(|| RowObjective::new(e, 0.99, black_box(&data)).unwrap().hvp(black_box(&w), None).unwrap())
        });
    }
}

criterion_group! {
    name = group;
    config = Criterion::default().sample_size(30).measurement_time(std::time::Duration::from_secs(2)).warm_up_time(std::time::Duration::from_millis(500));
    targets = benches
}
criterion_main!(group);
