//! Benchmark of the linear feature baseline's fit (docs/speed.md#baseline-fit): one task's
//! 2,000 steps (20 rollouts × 100) with the features of the 2-D task (f = 12), Ant
//! (f = 214) and Humanoid (f = 700), one thread: `fit_ridge` (blocked Gram matrix, compiled
//! per CPU level) against the plain `nalgebra` fit it replaced, which gives the same bits.

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use metagrad::meta::processing::fit_ridge;
use std::hint::black_box;

#[path = "../tests/support/plain_fit.rs"]
mod plain_fit;
use plain_fit::{plain_nalgebra_fit as plain_nalgebra, wave};

fn benches(c: &mut Criterion) {
    let n = 2000;
    let mut group = c.benchmark_group("baseline_fit");
    for (name, f) in [("point", 12), ("ant", 214), ("humanoid", 700)] {
        let feats: Vec<f64> = (0..n * f).map(wave).collect();
        let y: Vec<f64> = (0..n).map(|i| wave(3 * i + 1)).collect();
        assert_eq!(fit_ridge(&feats, f, &y, 1e-5).unwrap(), plain_nalgebra(&feats, f, &y, 1e-5));
        group.bench_function(BenchmarkId::new("fit_ridge", name), |b| {
            b.iter(|| fit_ridge(black_box(&feats), f, black_box(&y), 1e-5).unwrap())
        });
        group.bench_function(BenchmarkId::new("plain_nalgebra", name), |b| {
            b.iter(|| plain_nalgebra(black_box(&feats), f, black_box(&y), 1e-5))
        });
    }
    group.finish();
}

criterion_group! {
    name = group;
    config = Criterion::default().sample_size(10).measurement_time(std::time::Duration::from_secs(3)).warm_up_time(std::time::Duration::from_millis(500));
    targets = benches
}
criterion_main!(group);
