//! The study's summary over trials ([`SummaryRow`]) and its figures.

use serde::{Deserialize, Serialize};

use super::trials::TrialRow;
use crate::error::Result;
use crate::experiments::first_seen;
use crate::experiments::metrics::mean_std_se;

/// One row of `summary.csv`: mean and standard error over trials.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SummaryRow {
    /// Sweep.
    pub sweep: String,
    /// Estimator.
    pub estimator: String,
    /// ε.
    pub eps: f64,
    /// N.
    pub n: usize,
    /// Number of trials.
    pub trials: usize,
    /// Mean gradient correlation.
    pub grad_mean: f64,
    /// Its standard error.
    pub grad_se: f64,
    /// Mean Hessian correlation.
    pub hess_mean: f64,
    /// Its standard error.
    pub hess_se: f64,
    /// Mean meta-gradient correlation (meta sweep).
    pub metagrad_mean: Option<f64>,
    /// Its standard error.
    pub metagrad_se: Option<f64>,
    /// Mean with the exact inner step.
    pub metagrad_exact_step_mean: Option<f64>,
    /// Mean with ĝ' on the inner data.
    pub metagrad_shared_data_mean: Option<f64>,
    /// Mean relative error of the meta-gradient.
    pub metagrad_rel_err_mean: Option<f64>,
    /// Standard deviation of the gradient correlation.
    pub grad_std: f64,
    /// Standard deviation of the Hessian correlation.
    pub hess_std: f64,
}

/// Groups trial rows by (sweep, estimator, ε, N), in first-appearance order.
pub fn summarise(rows: &[TrialRow]) -> Vec<SummaryRow> {
    first_seen(rows.iter().map(|r| (r.sweep.clone(), r.estimator.clone(), r.eps, r.n)))
        .into_iter()
        .map(|(sweep, estimator, eps, n)| {
            let group: Vec<&TrialRow> = rows
                .iter()
                .filter(|r| r.sweep == sweep && r.estimator == estimator && r.eps == eps && r.n == n)
                .collect();
            let col = |f: &dyn Fn(&TrialRow) -> f64| group.iter().map(|r| f(r)).collect::<Vec<f64>>();
            let opt = |f: &dyn Fn(&TrialRow) -> Option<f64>| -> Option<Vec<f64>> {
                group.iter().map(|r| f(r)).collect()
            };
            let (gm, gsd, gse) = mean_std_se(&col(&|r| r.grad_corr));
            let (hm, hsd, hse) = mean_std_se(&col(&|r| r.hess_corr));
            let meta = opt(&|r| r.metagrad_corr).map(|v| mean_std_se(&v));
            SummaryRow {
                sweep,
                estimator,
                eps,
                n,
                trials: group.len(),
                grad_mean: gm,
                grad_se: gse,
                hess_mean: hm,
                hess_se: hse,
                metagrad_mean: meta.map(|m| m.0),
                metagrad_se: meta.map(|m| m.2),
                metagrad_exact_step_mean: opt(&|r| r.metagrad_exact_step_corr).map(|v| mean_std_se(&v).0),
                metagrad_shared_data_mean: opt(&|r| r.metagrad_shared_data_corr).map(|v| mean_std_se(&v).0),
                metagrad_rel_err_mean: opt(&|r| r.metagrad_rel_err).map(|v| mean_std_se(&v).0),
                grad_std: gsd,
                hess_std: hsd,
            }
        })
        .collect()
}

/// The study's figures from its summary: `fig1a_gradient`, `fig1b_hessian` (correlation vs
/// ε), `fig1c_n_sweep` (Hessian correlation vs N, log x) and `fig_meta_gradient`
/// (meta-gradient correlation vs ε), one line per estimator with standard-error bars,
/// each as PNG and SVG in `dir`. Figures whose sweep did not run are skipped.
pub fn plot_summary(summary: &[SummaryRow], dir: &std::path::Path) -> Result<Vec<String>> {
    use crate::plot::{Figure, Series, save_or_skip};
    type Pick = fn(&SummaryRow) -> Option<(f64, f64)>;
    let specs: [(&str, &str, &str, &str, bool, Pick); 4] = [
        (
            "fig1a_gradient",
            "eps",
            "Gradient estimates vs off-policyness (N fixed)",
            "off-policyness ε (π = ε π_d + (1 − ε) μ)",
            false,
            |r| Some((r.grad_mean, r.grad_se)),
        ),
        (
            "fig1b_hessian",
            "eps",
            "Hessian estimates vs off-policyness (N fixed)",
            "off-policyness ε (π = ε π_d + (1 − ε) μ)",
            false,
            |r| Some((r.hess_mean, r.hess_se)),
        ),
        ("fig1c_n_sweep", "n", "Hessian estimates vs sample size (ε fixed)", "trajectories N", true, |r| {
            Some((r.hess_mean, r.hess_se))
        }),
        (
            "fig_meta_gradient",
            "meta",
            "Meta-gradient estimates (I + ηĤ)ĝ' vs off-policyness",
            "ε",
            false,
            |r| r.metagrad_mean.zip(r.metagrad_se),
        ),
    ];
    let mut written = Vec::new();
    for (stem, sweep, title, x_label, log_x, pick) in specs {
        let rows: Vec<&SummaryRow> = summary.iter().filter(|r| r.sweep == sweep).collect();
        if rows.is_empty() {
            continue;
        }
        let names = first_seen(rows.iter().map(|r| r.estimator.as_str()));
        let series = names
            .iter()
            .map(|name| {
                let pts: Vec<(f64, f64, f64)> = rows
                    .iter()
                    .filter(|r| r.estimator == *name)
                    .filter_map(|r| {
                        pick(r).map(|(m, se)| (if sweep == "n" { r.n as f64 } else { r.eps }, m, se))
                    })
                    .collect();
                Series {
                    name: name.to_string(),
                    x: pts.iter().map(|p| p.0).collect(),
                    y: pts.iter().map(|p| p.1).collect(),
                    err: Some(pts.iter().map(|p| p.2).collect()),
                }
            })
            .collect();
        let fig = Figure {
            title: title.into(),
            x_label: x_label.into(),
            y_label: "correlation with the exact derivative".into(),
            log_x,
            series,
        };
        if save_or_skip(&fig, &dir.join(stem))? {
            written.push(stem.to_string());
        }
    }
    Ok(written)
}
