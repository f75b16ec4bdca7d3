//! Tests of the bias–variance decomposition and its report.

use super::estimate::*;
use super::report::*;
use crate::estimators::Estimator;
use crate::experiments::tabular_study::trials::TrialSetup;
use crate::experiments::tabular_study::{StudyParams, Sweep, ValidStudy};
use crate::rng::stream;
use crate::tabular::RandomMdpParams;
use crate::tabular::oracle;

/// A biasvar study: `estimators` at `eps`, M trajectories in chunks of `chunk`, on the
/// default MDPs or small ones (6 states × 3 actions, T = 10).
fn study(estimators: &str, eps: &[f64], m: usize, chunk: usize, small: bool) -> ValidStudy {
    let mut p = StudyParams {
        sweep: Sweep::Biasvar,
        eps: eps.to_vec(),
        n_sweep_eps: eps[0],
        trials: 1,
        seed: 5,
        estimators: Estimator::parse_list(estimators, 1.0).unwrap(),
        biasvar_trajectories: m,
        biasvar_chunk: chunk,
        ..StudyParams::default()
    };
    if small {
        p.mdp = RandomMdpParams { n_states: 6, n_actions: 3, ..p.mdp };
        p.horizon = 10;
    }
    p.validate().unwrap()
}

fn point(s: &ValidStudy, eps_index: usize) -> Vec<BiasVarRow> {
    let setup = TrialSetup::draw(s, 0);
    s.biasvar_point(&setup, 0, eps_index, s.eps[eps_index], &|| ()).unwrap()
}

fn find<'a>(rows: &'a [BiasVarRow], est: &str, q: Quantity, t: Target) -> &'a BiasVarRow {
    rows.iter().find(|r| r.estimator == est && r.quantity == q && r.target == t).unwrap()
}

#[test]
fn on_policy_hessian_bias_is_undetectable_for_dr_and_taypo2_but_not_taypo1() {
    // The default MDPs (D = 100), ε = 0, M = 40 000.
    let s = study("dr,taypo-1,taypo-2", &[0.0], 40_000, 1000, false);
    let rows = point(&s, 0);
    for est in ["dr", "taypo-2"] {
        let r = find(&rows, est, Quantity::Hessian, Target::FiniteHorizon);
        assert!(!r.bias_detectable && r.bias2().is_none(), "{est}: {}", r.bias2_text());
        assert!(r.bias2_bound > 0.0 && r.bias2_text().starts_with("not detectable"));
        // The gradient too (every estimator here is unbiased for ∇J_T on-policy).
        assert!(!find(&rows, est, Quantity::Gradient, Target::FiniteHorizon).bias_detectable);
    }
    // Negative control: TayPO-1 drops a second-order term, so its Hessian is biased
    // on-policy (by far more than the bound of the others).
    let t1 = find(&rows, "taypo-1", Quantity::Hessian, Target::FiniteHorizon);
    assert!(t1.bias_detectable, "{}", t1.bias2_text());
    let dr = find(&rows, "dr", Quantity::Hessian, Target::FiniteHorizon);
    assert!(t1.bias2_estimate - 3.0 * t1.bias2_se > dr.bias2_bound);
    assert!(!find(&rows, "taypo-1", Quantity::Gradient, Target::FiniteHorizon).bias_detectable);
}

#[test]
fn importance_sampling_variance_grows_with_eps() {
    // ε where the variance is small enough to estimate: on |A| = 3 actions E_μ[ρ²] per
    // step is 1 + 2ε², so the per-trajectory variance grows like (1 + 2ε²)^T (T = 10).
    let eps = [0.0, 0.3, 0.6];
    let s = study("is", &eps, 80_000, 1000, true);
    for q in [Quantity::Gradient, Quantity::Hessian] {
        let v: Vec<(f64, f64)> = (0..eps.len())
            .map(|e| {
                let r = find(&point(&s, e), "is", q, Target::FiniteHorizon).clone();
                (r.variance, r.variance_se)
            })
            .collect();
        for w in v.windows(2) {
            assert!(w[1].0 - w[0].0 > 3.0 * (w[0].1.hypot(w[1].1)), "{q:?}: {v:?}");
        }
    }
}

#[test]
fn monte_carlo_standard_error_falls_as_one_over_sqrt_m() {
    let (a, b) =
        (study("dr,taypo-1", &[0.0], 20_000, 250, true), study("dr,taypo-1", &[0.0], 80_000, 250, true));
    let (ra, rb) = (point(&a, 0), point(&b, 0));
    for q in [Quantity::Gradient, Quantity::Hessian] {
        let (x, y) = (find(&ra, "dr", q, Target::Value), find(&rb, "dr", q, Target::Value));
        // bias_se is σ/√M by definition; what is tested is that the σ² behind it, from
        // two independent runs of M and 4M trajectories, agrees within its s.e.
        let rel = (x.variance - y.variance).abs() / y.variance;
        assert!(rel < 3.0 * (x.variance_se.hypot(y.variance_se)) / y.variance, "{q:?}: {rel}");
    }
    // A detectable bias (TayPO-1's Hessian on-policy): its s.e. falls as 1/√M too.
    let (x, y) = (
        find(&ra, "taypo-1", Quantity::Hessian, Target::Value),
        find(&rb, "taypo-1", Quantity::Hessian, Target::Value),
    );
    assert!(x.bias_detectable && y.bias_detectable);
    let ratio = x.bias2_se / y.bias2_se;
    assert!((1.5..2.7).contains(&ratio), "bias² s.e. ratio {ratio}");
    assert!((x.bias2_estimate - y.bias2_estimate).abs() < 3.0 * x.bias2_se.hypot(y.bias2_se));
}

#[test]
fn decomposition_adds_up_to_the_measured_mse() {
    // bias² + σ²/N against the mean squared error of R independent N-trajectory
    // estimates, measured directly, within 3 combined standard errors.
    let s = study("dr,taypo-1", &[0.5], 40_000, 500, true);
    let setup = TrialSetup::draw(&s, 0);
    let rows = s.biasvar_point(&setup, 0, 0, 0.5, &|| ()).unwrap();
    let policy = setup.target(0.5);
    let exact = oracle::softmax_derivatives(&setup.mdp, &policy);
    for (n, reps) in [(5, 2000), (50, 400)] {
        let mut errs: Vec<[Vec<f64>; 2]> = vec![Default::default(); s.estimators.len()];
        for r in 0..reps {
            let data = setup.sample(n, s.horizon, &mut stream(99, &[n as u64, r as u64]));
            for (i, &e) in s.estimators.iter().enumerate() {
                let est = setup.estimate(e, &data, &policy).unwrap();
                let sq = |a: &[f64], b: &[f64]| a.iter().zip(b).map(|(x, y)| (x - y).powi(2)).sum::<f64>();
                errs[i][0].push(sq(&est.gradient, &exact.gradient));
                errs[i][1].push(sq(&est.hessian, &exact.hessian));
            }
        }
        for (i, e) in s.estimators.iter().enumerate() {
            for (q, quantity) in [Quantity::Gradient, Quantity::Hessian].into_iter().enumerate() {
                let (direct, direct_se) = mean_se(&errs[i][q]);
                let r = find(&rows, &e.name(), quantity, Target::Value);
                let predicted = r.bias2_estimate + r.variance / n as f64;
                let se = direct_se.hypot(r.bias2_se).hypot(r.variance_se / n as f64);
                assert!(
                    (direct - predicted).abs() < 3.0 * se,
                    "{e} {quantity:?} N = {n}: measured {direct} ± {direct_se}, predicted {predicted} ± {se}"
                );
            }
        }
    }
}

#[test]
fn results_do_not_depend_on_the_thread_count() {
    let s = study("is,taypo-2", &[0.0, 0.5], 8_000, 200, true);
    let run = |threads| {
        let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
        pool.install(|| s.run_biasvar(&|| ()).unwrap())
    };
    let one = run(1);
    assert_eq!(one, run(2));
    assert_eq!(one.len(), 2 * 2 * 2 * 2);
    let table = biasvar_table(&summarise_biasvar(&one), &s.n_grid);
    assert_eq!(table.columns.len(), 14 + 2 * s.n_grid.len());
    assert_eq!(table.rows.len(), one.len());
}

#[test]
fn crossings_interpolate_in_log_n() {
    assert!((first_crossing(&[(10.0, -1.0), (1000.0, 1.0)]).unwrap() - 100.0).abs() < 1e-9);
    assert_eq!(first_crossing(&[(10.0, 1.0), (100.0, 2.0)]), None);
    assert_eq!(first_crossing(&[(10.0, -1.0), (100.0, -0.5)]), None);
}
