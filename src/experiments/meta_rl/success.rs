//! A grid's success rates and meta-test results (environments that report success, runs
//! with a meta-test): `success.csv` and a Markdown table, beside the return summary of
//! [`super`]. Written only when some run has such data, so the files of other
//! grids are unchanged.

use serde::Serialize;

use super::RunRecord;
use super::report::mean_se_text;
use crate::experiments::metrics::mean_std_se;
use crate::meta::algos::{Algorithm, IterationStats, ValidParams};

/// One algorithm at one reported iteration (a row of `success.csv`): means ± standard
/// errors over the seeds whose runs reached it. Success rates are fractions of episodes
/// (an episode succeeds when some step reports success); `NaN` where no run has the value.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct SuccessRow {
    /// Algorithm.
    pub algo: String,
    /// Iteration count (1-based) the row reports.
    pub iteration: usize,
    /// Seeds in the means.
    pub seeds: usize,
    /// Pre-update success rate on the meta-training tasks.
    pub pre_success_mean: f64,
    /// Its standard error.
    pub pre_success_se: f64,
    /// Success rate after the last inner step on the meta-training tasks.
    pub post_success_mean: f64,
    /// Its standard error.
    pub post_success_se: f64,
    /// The iteration count (1-based) of the last meta-test up to this one (0: none).
    pub test_iteration: usize,
    /// Meta-test: success rate before adaptation.
    pub test_pre_success_mean: f64,
    /// Its standard error.
    pub test_pre_success_se: f64,
    /// Meta-test: success rate of the evaluation episodes after adaptation.
    pub test_post_success_mean: f64,
    /// Its standard error.
    pub test_post_success_se: f64,
    /// Meta-test: mean return of the evaluation episodes after adaptation.
    pub test_post_return_mean: f64,
    /// Its standard error.
    pub test_post_return_se: f64,
}

/// Whether any run has success rates or meta-test results.
pub fn has_data(records: &[RunRecord]) -> bool {
    records.iter().flat_map(|r| &r.history).any(|h| h.pre_success.is_some() || h.test.is_some())
}

fn mean_se(v: &[f64]) -> (f64, f64) {
    if v.is_empty() {
        return (f64::NAN, f64::NAN);
    }
    let (m, _, se) = mean_std_se(v);
    (m, if se.is_finite() { se } else { 0.0 })
}

/// The rows: every algorithm at every report point `at`, over the runs that reached it.
pub fn rows(
    algos: &[Algorithm],
    runs: &[ValidParams],
    records: &[RunRecord],
    at: &[usize],
) -> Vec<SuccessRow> {
    let mut out = Vec::new();
    for &algo in algos {
        let all: Vec<&[IterationStats]> = runs
            .iter()
            .zip(records)
            .filter(|(p, _)| p.algo == algo)
            .map(|(_, r)| r.history.as_slice())
            .collect();
        for &a in at {
            let hs: Vec<&[IterationStats]> = all.iter().copied().filter(|h| h.len() >= a).collect();
            let at_a = |f: &dyn Fn(&IterationStats) -> Option<f64>| -> (f64, f64) {
                mean_se(&hs.iter().filter_map(|h| f(&h[a - 1])).collect::<Vec<_>>())
            };
            let (pre_m, pre_se) = at_a(&|h| h.pre_success);
            let (post_m, post_se) = at_a(&|h| h.post_success.last().copied());
            // The last meta-test up to iteration a (the same iteration in every run).
            let test_i = hs.first().and_then(|h| h[..a].iter().rposition(|s| s.test.is_some()));
            let at_test = |f: &dyn Fn(&IterationStats) -> Option<f64>| -> (f64, f64) {
                test_i.map_or((f64::NAN, f64::NAN), |i| {
                    mean_se(&hs.iter().filter_map(|h| f(&h[i])).collect::<Vec<_>>())
                })
            };
            let (tpre_m, tpre_se) = at_test(&|h| h.test.as_ref().and_then(|t| t.pre_success));
            let (tpost_m, tpost_se) = at_test(&|h| h.test.as_ref().and_then(|t| t.post_success));
            let (tret_m, tret_se) = at_test(&|h| h.test.as_ref().map(|t| t.post_return));
            out.push(SuccessRow {
                algo: algo.name().into(),
                iteration: a,
                seeds: hs.len(),
                pre_success_mean: pre_m,
                pre_success_se: pre_se,
                post_success_mean: post_m,
                post_success_se: post_se,
                test_iteration: test_i.map_or(0, |i| i + 1),
                test_pre_success_mean: tpre_m,
                test_pre_success_se: tpre_se,
                test_post_success_mean: tpost_m,
                test_post_success_se: tpost_se,
                test_post_return_mean: tret_m,
                test_post_return_se: tret_se,
            });
        }
    }
    out
}

/// The rows of the last report point as a Markdown table: success in per cent before and
/// after adaptation on the meta-training tasks and in the meta-test.
pub fn markdown(rows: &[SuccessRow]) -> String {
    let Some(last) = rows.iter().map(|r| r.iteration).max() else { return String::new() };
    // "–" where no run has the value; `scale` 100 for the rates in per cent.
    let cell = |seeds: usize, m: f64, se: f64, scale: f64| {
        if m.is_nan() { "–".to_string() } else { mean_se_text(seeds, scale * m, scale * se, 1) }
    };
    let pct = |seeds: usize, m: f64, se: f64| cell(seeds, m, se, 100.0);
    let test_at = rows.iter().filter(|r| r.iteration == last).map(|r| r.test_iteration).max().unwrap_or(0);
    let mut out = format!(
        "Success rates (%) at iteration {last}, mean ± s.e. over seeds (meta-test at iteration {test_at}):\n\n\
         | algorithm | seeds | meta-train, pre | meta-train, post | meta-test, pre | meta-test, post | meta-test return, post |\n\
         |---|---|---|---|---|---|---|\n"
    );
    for r in rows.iter().filter(|r| r.iteration == last) {
        out += &format!(
            "| {} | {} | {} | {} | {} | {} | {} |\n",
            r.algo,
            r.seeds,
            pct(r.seeds, r.pre_success_mean, r.pre_success_se),
            pct(r.seeds, r.post_success_mean, r.post_success_se),
            pct(r.seeds, r.test_pre_success_mean, r.test_pre_success_se),
            pct(r.seeds, r.test_post_success_mean, r.test_post_success_se),
            cell(r.seeds, r.test_post_return_mean, r.test_post_return_se, 1.0)
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The last report point's rows only; per cent with one decimal; no standard error for
    /// one seed; "–" where no run has the value.
    #[test]
    fn markdown_shows_the_last_point_in_per_cent() {
        let row = |algo: &str, iteration: usize, seeds: usize| SuccessRow {
            algo: algo.into(),
            iteration,
            seeds,
            pre_success_mean: 0.25,
            pre_success_se: 0.05,
            post_success_mean: 0.5,
            post_success_se: 0.1,
            test_iteration: iteration,
            test_pre_success_mean: f64::NAN,
            test_pre_success_se: f64::NAN,
            test_post_success_mean: 0.75,
            test_post_success_se: 0.0,
            test_post_return_mean: 12.5,
            test_post_return_se: 0.0,
        };
        let md = markdown(&[row("promp", 10, 3), row("promp", 20, 3), row("trpo-maml", 20, 1)]);
        let lines: Vec<&str> = md.lines().collect();
        assert!(lines[0].starts_with("Success rates (%) at iteration 20,"), "{md}");
        assert_eq!(lines[4], "| promp | 3 | 25.0 ± 5.0 | 50.0 ± 10.0 | – | 75.0 ± 0.0 | 12.5 ± 0.0 |");
        assert_eq!(lines[5], "| trpo-maml | 1 | 25.0 ± – | 50.0 ± – | – | 75.0 ± – | 12.5 ± – |");
        assert_eq!(lines.len(), 6);
        assert_eq!(markdown(&[]), "");
    }
}
