//! Benchmark of the linear feature baseline's fit (docs/speed.md#baseline-fit): one task's
//! 2,000 steps (20 rollouts × 100) with the features of the 2-D task (f = 12), Ant
//! (f = 214) and Humanoid (f = 700), one thread: `fit_ridge` (blocked Gram matrix, compiled
//! per CPU level) against the plain `nalgebra` fit it replaced, which gives the same bits.

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use metagrad::meta::processing::fit_ridge;
use nalgebra::{DMatrix, DVector};
use std::hint::black_box;

/// The fit as `nalgebra` alone computes it (Φ from rows, `tr_mul`, Cholesky).
fn plain_nalgebra(feats: &[f64], f: usize, y: &[f64], ridge: f64) -> Vec<f64> {
    let phi = DMatrix::from_row_slice(y.len(), f, feats);
    let (gram, rhs) = (phi.tr_mul(&phi), phi.tr_mul(&DVector::from_column_slice(y)));
    let ch = (&gram + DMatrix::identity(f, f) * ridge).cholesky().expect("positive definite");
    ch.solve(&rhs).iter().copied().collect()
}

fn benches(c: &mut Criterion) {
    let n = 2000;
    let wave = |i: usize| ((i * 7919 % 1009) as f64 / 504.5 - 1.0) * (1.0 + (i % 13) as f64);
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
