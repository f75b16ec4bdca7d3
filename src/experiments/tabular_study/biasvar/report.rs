//! The decomposition's report: means over trials, the N sweep it predicts, crossovers,
//! the CSV tables and the figures.

use serde::Serialize;
use serde_json::{Value, json};

use super::estimate::{BiasVarRow, Quantity, Target};
use crate::error::Result;
use crate::experiments::tabular_study::params::ValidStudy;
use crate::experiments::tabular_study::summary::SummaryRow;
use crate::experiments::{csv_io, write_csv};

/// Means over trials of the per-trial rows, per (estimator, ε, quantity, target) in
/// first-appearance order. Monte-Carlo standard errors combine as √(Σ s_t²)/trials; the
/// mean bias² is detectable when it exceeds twice its standard error.
pub fn summarise_biasvar(rows: &[BiasVarRow]) -> Vec<BiasVarRow> {
    let mut out: Vec<BiasVarRow> = Vec::new();
    let mut counts: Vec<usize> = Vec::new();
    let same = |a: &BiasVarRow, b: &BiasVarRow| {
        a.estimator == b.estimator && a.eps == b.eps && a.quantity == b.quantity && a.target == b.target
    };
    for r in rows {
        if let Some(i) = out.iter().position(|o| same(o, r)) {
            let o = &mut out[i];
            counts[i] += 1;
            o.detectable_trials += r.detectable_trials;
            o.bias2_estimate += r.bias2_estimate;
            o.bias2_se += r.bias2_se.powi(2);
            o.bias_se += r.bias_se.powi(2);
            o.variance += r.variance;
            o.variance_se += r.variance_se.powi(2);
            o.mse.iter_mut().zip(&r.mse).for_each(|(a, b)| *a += b);
            o.corr_model.terms.extend_from_slice(&r.corr_model.terms);
        } else {
            let mut o = r.clone();
            o.trial = None;
            o.bias2_se = r.bias2_se.powi(2);
            o.bias_se = r.bias_se.powi(2);
            o.variance_se = r.variance_se.powi(2);
            out.push(o);
            counts.push(1);
        }
    }
    for (o, &k) in out.iter_mut().zip(&counts) {
        let k = k as f64;
        o.bias2_estimate /= k;
        o.bias2_se = o.bias2_se.sqrt() / k;
        o.bias_se = o.bias_se.sqrt() / k;
        o.variance /= k;
        o.variance_se = o.variance_se.sqrt() / k;
        o.mse.iter_mut().for_each(|m| *m /= k);
        o.bias_detectable = o.bias2_estimate > 2.0 * o.bias2_se;
        o.bias2_bound = o.bias2_estimate.max(0.0) + 2.0 * o.bias2_se;
    }
    out
}

/// A table with named columns whose set depends on the settings (one MSE column per N),
/// written as CSV or handed out as JSON records.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Table {
    /// Column names.
    pub columns: Vec<String>,
    /// Rows of JSON values (`null` is an empty CSV cell).
    pub rows: Vec<Vec<Value>>,
}

impl Table {
    /// Writes the table as CSV (atomically).
    pub fn write_csv(&self, path: &std::path::Path) -> Result<()> {
        let cell = |v: &Value| match v {
            Value::Null => String::new(),
            Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        crate::atomic::write_with(path, |out| {
            let mut w = csv::Writer::from_writer(out);
            w.write_record(&self.columns).map_err(csv_io)?;
            for r in &self.rows {
                w.write_record(r.iter().map(cell)).map_err(csv_io)?;
            }
            w.flush()
        })
    }

    /// The rows as a JSON list of objects.
    pub fn to_json(&self) -> String {
        let records: Vec<serde_json::Map<String, Value>> =
            self.rows.iter().map(|r| self.columns.iter().cloned().zip(r.iter().cloned()).collect()).collect();
        serde_json::to_string(&records).expect("records serialise")
    }
}

/// A finite number as JSON, `null` otherwise.
fn num(x: f64) -> Value {
    serde_json::Number::from_f64(x).map_or(Value::Null, Value::Number)
}

/// `biasvar.csv` (per trial) or `biasvar_summary.csv` (means over trials): estimator, ε,
/// quantity, target, (trial or detectable_trials) bias² (empty when not detectable), its estimate, s.e. and
/// bound, the bias vector's RMS error, variance per trajectory with its s.e., then
/// `mse_n<N>` and `corr_n<N>` per N of the grid.
pub fn biasvar_table(rows: &[BiasVarRow], n_grid: &[usize]) -> Table {
    let per_trial = rows.first().is_some_and(|r| r.trial.is_some());
    let mut columns: Vec<String> = ["estimator", "eps", "quantity", "target"].map(String::from).to_vec();
    if per_trial {
        columns.push("trial".into());
    } else {
        columns.push("detectable_trials".into());
    }
    columns.extend(
        [
            "trajectories",
            "bias2",
            "bias2_estimate",
            "bias2_se",
            "bias2_bound",
            "bias_detectable",
            "bias_se",
            "variance",
            "variance_se",
        ]
        .map(String::from),
    );
    columns.extend(n_grid.iter().map(|n| format!("mse_n{n}")));
    columns.extend(n_grid.iter().map(|n| format!("corr_n{n}")));
    let rows = rows
        .iter()
        .map(|r| {
            let mut v =
                vec![json!(r.estimator), num(r.eps), json!(r.quantity.name()), json!(r.target.name())];
            v.push(match r.trial {
                Some(t) => json!(t),
                None => json!(r.detectable_trials),
            });
            v.extend([
                json!(r.trajectories),
                r.bias2().map_or(Value::Null, num),
                num(r.bias2_estimate),
                num(r.bias2_se),
                num(r.bias2_bound),
                json!(r.bias_detectable),
                num(r.bias_se),
                num(r.variance),
                num(r.variance_se),
            ]);
            v.extend(r.mse.iter().map(|&m| num(m)));
            v.extend(n_grid.iter().map(|&n| num(r.predicted_corr(n as f64))));
            v
        })
        .collect();
    Table { columns, rows }
}

/// Where TayPO-2 overtakes TayPO-1 (Fig. 1 c), predicted from the decomposition and
/// observed in the N sweep.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Crossover {
    /// Gradient or Hessian.
    pub quantity: Quantity,
    /// `mse` (bias² + σ²/N against V, mean over trials: N* = (σ₂² − σ₁²)/(bias₁² − bias₂²)) or
    /// `corr` (the mean predicted correlation; observed: the N sweep's mean correlation).
    pub criterion: String,
    /// Predicted N* (`None`: no crossover).
    pub predicted_n: Option<f64>,
    /// Observed N* (log-linear interpolation between grid points; `None`: not in the grid
    /// or not observable for this criterion).
    pub observed_n: Option<f64>,
}

/// One row of `biasvar_predictions.csv`: at ε = the N sweep's ε, against V, mean over
/// trials.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Prediction {
    /// Gradient or Hessian.
    pub quantity: Quantity,
    /// Estimator.
    pub estimator: String,
    /// N.
    pub n: usize,
    /// Predicted MSE, bias² + σ²/N.
    pub mse: f64,
    /// Predicted correlation.
    pub predicted_corr: f64,
    /// Observed mean correlation in the N sweep.
    pub observed_corr: Option<f64>,
    /// Its standard error over trials.
    pub observed_se: Option<f64>,
}

/// First N where `diff(N)` turns from ≤ 0 to > 0 on the points `(n, diff)`, interpolated
/// linearly in log N.
pub(super) fn first_crossing(points: &[(f64, f64)]) -> Option<f64> {
    points.windows(2).find(|w| w[0].1 <= 0.0 && w[1].1 > 0.0).map(|w| {
        let (l0, l1) = (w[0].0.ln(), w[1].0.ln());
        let t = if w[1].1 == w[0].1 { 0.0 } else { -w[0].1 / (w[1].1 - w[0].1) };
        (l0 + t * (l1 - l0)).exp()
    })
}

/// Predictions at each N of the grid, and the TayPO-2 / TayPO-1 crossover, from the
/// summary rows at ε = `eps` against V and the N sweep's `n_summary`.
pub fn predictions(
    summary: &[BiasVarRow],
    n_summary: &[SummaryRow],
    eps: f64,
    n_grid: &[usize],
) -> (Vec<Prediction>, Vec<Crossover>) {
    let at = |q: Quantity| {
        summary.iter().filter(move |r| r.eps == eps && r.target == Target::Value && r.quantity == q)
    };
    let observed = |q: Quantity, est: &str, n: usize| {
        n_summary.iter().find(|s| s.sweep == "n" && s.estimator == est && s.n == n).map(|s| match q {
            Quantity::Gradient => (s.grad_mean, s.grad_se),
            Quantity::Hessian => (s.hess_mean, s.hess_se),
        })
    };
    let mut preds = Vec::new();
    let mut cross = Vec::new();
    for q in [Quantity::Gradient, Quantity::Hessian] {
        for r in at(q) {
            for (i, &n) in n_grid.iter().enumerate() {
                let obs = observed(q, &r.estimator, n);
                preds.push(Prediction {
                    quantity: q,
                    estimator: r.estimator.clone(),
                    n,
                    mse: r.mse[i],
                    predicted_corr: r.predicted_corr(n as f64),
                    observed_corr: obs.map(|o| o.0),
                    observed_se: obs.map(|o| o.1),
                });
            }
        }
        let find = |name: &str| at(q).find(|r| r.estimator == name);
        let (Some(t1), Some(t2)) = (find("taypo-1"), find("taypo-2")) else { continue };
        let mse_n = {
            let (db, dv) = (t1.bias2_estimate - t2.bias2_estimate, t2.variance - t1.variance);
            (db > 0.0 && dv > 0.0).then(|| dv / db)
        };
        let dense: Vec<(f64, f64)> = (0..=280)
            .map(|i| {
                let n = 10f64.powf(i as f64 / 40.0);
                (n, t2.predicted_corr(n) - t1.predicted_corr(n))
            })
            .collect();
        let obs: Option<Vec<(f64, f64)>> = n_grid
            .iter()
            .map(|&n| Some((n as f64, observed(q, "taypo-2", n)?.0 - observed(q, "taypo-1", n)?.0)))
            .collect();
        cross.push(Crossover { quantity: q, criterion: "mse".into(), predicted_n: mse_n, observed_n: None });
        cross.push(Crossover {
            quantity: q,
            criterion: "corr".into(),
            predicted_n: first_crossing(&dense),
            observed_n: obs.and_then(|o| first_crossing(&o)),
        });
    }
    (preds, cross)
}

/// Everything the biasvar sweep produces.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct BiasVarOutput {
    /// Per trial.
    pub rows: Vec<BiasVarRow>,
    /// Means over trials.
    pub summary: Vec<BiasVarRow>,
    /// Predicted vs observed at each N of the N sweep.
    pub predictions: Vec<Prediction>,
    /// TayPO-2 / TayPO-1 crossovers.
    pub crossovers: Vec<Crossover>,
}

impl BiasVarOutput {
    /// Summarises `rows` and predicts the N sweep summarised in `n_summary`.
    pub fn new(study: &ValidStudy, rows: Vec<BiasVarRow>, n_summary: &[SummaryRow]) -> Self {
        let summary = summarise_biasvar(&rows);
        let (predictions, crossovers) = predictions(&summary, n_summary, study.n_sweep_eps, &study.n_grid);
        Self { rows, summary, predictions, crossovers }
    }

    /// Writes `biasvar.csv`, `biasvar_summary.csv`, `biasvar_predictions.csv`,
    /// `biasvar_crossover.csv` and the figures of [`Self::plot`] to `dir`; returns the
    /// figures' stems.
    pub fn write(&self, dir: &std::path::Path, study: &ValidStudy) -> Result<Vec<String>> {
        biasvar_table(&self.rows, &study.n_grid).write_csv(&dir.join("biasvar.csv"))?;
        biasvar_table(&self.summary, &study.n_grid).write_csv(&dir.join("biasvar_summary.csv"))?;
        write_csv(&dir.join("biasvar_predictions.csv"), &self.predictions)?;
        write_csv(&dir.join("biasvar_crossover.csv"), &self.crossovers)?;
        self.plot(dir, study.n_sweep_eps)
    }

    /// Figures (PNG and SVG): `biasvar_gradient` and `biasvar_hessian` (log₁₀ bias² against
    /// log₁₀ variance per trajectory, against V, mean over trials, one point per ε along
    /// each estimator's line; a bias that is not detectable is drawn at its bound),
    /// `biasvar_mse_vs_n` (Hessian MSE against N at the N sweep's ε, with the
    /// TayPO-2 / TayPO-1 crossover marked) and `biasvar_corr_vs_n` (predicted against
    /// observed Hessian correlation, Fig. 1 c).
    pub fn plot(&self, dir: &std::path::Path, n_eps: f64) -> Result<Vec<String>> {
        use crate::plot::{Figure, Series, save_or_skip};
        let mut written = Vec::new();
        let mut save = |fig: Figure, stem: &str| -> Result<()> {
            if save_or_skip(&fig, &dir.join(stem))? {
                written.push(stem.to_string());
            }
            Ok(())
        };
        let names = |rows: &mut dyn Iterator<Item = &str>| {
            let mut v: Vec<String> = Vec::new();
            for n in rows {
                if !v.iter().any(|x| x == n) {
                    v.push(n.to_string());
                }
            }
            v
        };
        let estimators = names(&mut self.summary.iter().map(|r| r.estimator.as_str()));
        for q in [Quantity::Gradient, Quantity::Hessian] {
            let series = estimators
                .iter()
                .map(|name| {
                    let pts: Vec<&BiasVarRow> = self
                        .summary
                        .iter()
                        .filter(|r| &r.estimator == name && r.quantity == q && r.target == Target::Value)
                        .collect();
                    Series {
                        name: name.clone(),
                        x: pts.iter().map(|r| r.variance.log10()).collect(),
                        y: pts.iter().map(|r| r.bias2().unwrap_or(r.bias2_bound).log10()).collect(),
                        err: None,
                    }
                })
                .collect();
            let fig = Figure {
                title: format!(
                    "{} bias² vs variance against ∇{}V, one point per ε (undetectable: at the bound)",
                    if q == Quantity::Hessian { "Hessian" } else { "Gradient" },
                    if q == Quantity::Hessian { "²" } else { "" }
                ),
                x_label: "log₁₀ variance per trajectory tr Var(ĥ)".into(),
                y_label: "log₁₀ bias² ‖E ĥ − h‖²".into(),
                log_x: false,
                series,
            };
            save(fig, &format!("biasvar_{}", q.name()))?;
        }
        let at_n =
            |r: &&BiasVarRow| r.eps == n_eps && r.quantity == Quantity::Hessian && r.target == Target::Value;
        let rows: Vec<&BiasVarRow> = self.summary.iter().filter(at_n).collect();
        let ns: Vec<f64> =
            self.predictions.iter().filter(|p| p.quantity == Quantity::Hessian).map(|p| p.n as f64).collect();
        let mut ns_sorted = ns.clone();
        ns_sorted.sort_by(f64::total_cmp);
        ns_sorted.dedup();
        let (lo, hi) = (ns_sorted.first().copied().unwrap_or(1.0), ns_sorted.last().copied().unwrap_or(1.0));
        let dense: Vec<f64> = (0..=12).map(|i| lo * (hi / lo).powf(i as f64 / 12.0)).collect();
        let mut series: Vec<Series> = rows
            .iter()
            .map(|r| Series {
                name: r.estimator.clone(),
                x: dense.clone(),
                y: dense.iter().map(|n| (r.bias2_estimate + r.variance / n).log10()).collect(),
                err: None,
            })
            .collect();
        let cross = self.crossovers.iter().find(|c| c.quantity == Quantity::Hessian && c.criterion == "mse");
        if let Some(n_star) = cross.and_then(|c| c.predicted_n) {
            let ys: Vec<f64> =
                series.iter().flat_map(|s| s.y.iter().copied()).filter(|y| y.is_finite()).collect();
            let (y0, y1) =
                ys.iter().fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), &y| (a.min(y), b.max(y)));
            series.push(Series {
                name: format!("taypo-2 overtakes taypo-1: N* ≈ {n_star:.0}"),
                x: vec![n_star, n_star],
                y: vec![y0, y1],
                err: None,
            });
        }
        if !rows.is_empty() {
            save(
                Figure {
                    title: format!("Hessian MSE = bias² + σ²/N against ∇²V (ε = {n_eps})"),
                    x_label: "trajectories N".into(),
                    y_label: "log₁₀ MSE".into(),
                    log_x: true,
                    series,
                },
                "biasvar_mse_vs_n",
            )?;
        }
        let mut series = Vec::new();
        for name in &estimators {
            let pts: Vec<&Prediction> = self
                .predictions
                .iter()
                .filter(|p| p.quantity == Quantity::Hessian && &p.estimator == name)
                .collect();
            if pts.is_empty() {
                continue;
            }
            series.push(Series {
                name: format!("{name} predicted"),
                x: pts.iter().map(|p| p.n as f64).collect(),
                y: pts.iter().map(|p| p.predicted_corr).collect(),
                err: None,
            });
            if pts.iter().all(|p| p.observed_corr.is_some()) {
                series.push(Series {
                    name: format!("{name} observed"),
                    x: pts.iter().map(|p| p.n as f64).collect(),
                    y: pts.iter().map(|p| p.observed_corr.unwrap_or(f64::NAN)).collect(),
                    err: Some(pts.iter().map(|p| p.observed_se.unwrap_or(0.0)).collect()),
                });
            }
        }
        if !series.is_empty() {
            save(
                Figure {
                    title: format!(
                        "Hessian correlation: predicted from bias and variance vs observed (ε = {n_eps})"
                    ),
                    x_label: "trajectories N".into(),
                    y_label: "correlation with ∇²V".into(),
                    log_x: true,
                    series,
                },
                "biasvar_corr_vs_n",
            )?;
        }
        Ok(written)
    }
}
