//! A grid's summaries: returns per algorithm at the report points ([`SummaryRow`]), the
//! paired differences of two algorithms on the same seeds ([`PairedDiff`]), as CSV rows and
//! Markdown tables.

use serde::{Deserialize, Serialize};

use super::run::RunRecord;
use crate::experiments::first_seen;
use crate::experiments::metrics::mean_std_se;
use crate::meta::algos::{Algorithm, IterationStats, ValidParams};

/// The return after the last inner step of an iteration.
pub(super) fn post_return(h: &IterationStats) -> f64 {
    h.post_returns.last().copied().unwrap_or(h.pre_return)
}

/// One row of a grid's `summary.csv`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SummaryRow {
    /// Algorithm.
    pub algo: String,
    /// Iteration count (1-based) the row reports.
    pub iteration: usize,
    /// Whether this is the final iteration.
    pub is_final: bool,
    /// Number of seeds.
    pub seeds: usize,
    /// Mean across seeds of the return after the last inner step.
    pub post_return_mean: f64,
    /// Its standard error.
    pub post_return_se: f64,
    /// Mean across seeds of the pre-update return.
    pub pre_return_mean: f64,
    /// Its standard error.
    pub pre_return_se: f64,
    /// Mean across seeds of the largest drop of the post-update return below its running
    /// best up to this iteration (0 for a curve that never falls back): an instability
    /// measure, the paper's reading of Fig. 1(d).
    pub max_drop_mean: f64,
    /// Its standard error.
    pub max_drop_se: f64,
    /// Mean across seeds of a run's wall-clock time up to this iteration (seconds; summed
    /// over sittings for resumed runs).
    pub wall_s_mean: f64,
    /// Seeds whose run the divergence guard stopped before this iteration (they are not in
    /// the means; `seeds` counts the others).
    pub diverged: usize,
}

pub(super) fn summary_rows(
    algos: &[Algorithm],
    runs: &[ValidParams],
    records: &[RunRecord],
    at: &[usize],
    n: usize,
) -> Vec<SummaryRow> {
    let mut rows = Vec::new();
    for &algo in algos {
        let all: Vec<&RunRecord> =
            runs.iter().zip(records).filter(|(p, _)| p.algo == algo).map(|(_, r)| r).collect();
        for &a in at {
            // Runs with data at iteration a (a diverged run ends at its diverging iteration).
            let hs: Vec<&Vec<IterationStats>> =
                all.iter().filter(|r| r.history.len() >= a).map(|r| &r.history).collect();
            let stat = |i: usize, f: &dyn Fn(&IterationStats) -> f64| {
                let v: Vec<f64> = hs.iter().map(|h| f(&h[i])).collect();
                let (m, _, se) = mean_std_se(&v);
                (m, se)
            };
            let (pm, pse) = stat(a - 1, &post_return);
            let (qm, qse) = stat(a - 1, &|h| h.pre_return);
            let drops: Vec<f64> = hs.iter().map(|h| max_drop(h[..a].iter().map(post_return))).collect();
            let (dm, _, dse) = mean_std_se(&drops);
            let (wm, _) = stat(a - 1, &|h| h.wall_s);
            rows.push(SummaryRow {
                algo: algo.name().into(),
                iteration: a,
                is_final: a == n,
                seeds: hs.len(),
                diverged: all.len() - hs.len(),
                post_return_mean: pm,
                post_return_se: pse,
                pre_return_mean: qm,
                pre_return_se: qse,
                max_drop_mean: dm,
                max_drop_se: dse,
                wall_s_mean: wm,
            });
        }
    }
    rows
}

/// "mean ± s.e." of a value over `seeds` seeds with `digits` decimals: `± –` for one seed
/// (no standard error), `–` for none.
pub fn mean_se_text(seeds: usize, mean: f64, se: f64, digits: usize) -> String {
    match seeds {
        0 => "–".to_string(),
        1 => format!("{mean:.digits$} ± –"),
        _ => format!("{mean:.digits$} ± {se:.digits$}"),
    }
}

/// The summary as a Markdown table (as the experiment pages show it): one row per algorithm with the
/// post-update return (mean ± s.e. over seeds) at every reported iteration, then the max
/// drop and the pre-update return at the last one. A cell that rests on one seed has no
/// standard error (`± –`); one with no seed left (every run diverged before it) is `–`.
pub fn summary_markdown(rows: &[SummaryRow]) -> String {
    let mut iters: Vec<usize> = rows.iter().map(|r| r.iteration).collect();
    iters.sort_unstable();
    iters.dedup();
    let last = iters.last().copied().unwrap_or(0);
    let pm = |seeds: usize, m: f64, se: f64| mean_se_text(seeds, m, se, 1);
    let mut out = String::from("| algorithm |");
    for i in &iters {
        out += &format!(" it. {i} |");
    }
    out += &format!(
        " max drop by it. {last} | pre-update, it. {last} | minutes per run | diverged by it. {last} |\n|---|"
    );
    out += &"---|".repeat(iters.len() + 4);
    out.push('\n');
    for a in first_seen(rows.iter().map(|r| r.algo.as_str())) {
        let cell = |i: usize| rows.iter().find(|r| r.algo == a && r.iteration == i);
        out += &format!("| {a} |");
        for &i in &iters {
            out += &format!(
                " {} |",
                cell(i).map_or("–".into(), |r| pm(r.seeds, r.post_return_mean, r.post_return_se))
            );
        }
        match cell(last) {
            Some(r) => {
                let minutes =
                    if r.seeds == 0 { "–".to_string() } else { format!("{:.1}", r.wall_s_mean / 60.0) };
                out += &format!(
                    " {} | {} | {minutes} | {} of {} |\n",
                    pm(r.seeds, r.max_drop_mean, r.max_drop_se),
                    pm(r.seeds, r.pre_return_mean, r.pre_return_se),
                    r.diverged,
                    r.seeds + r.diverged
                )
            }
            None => out += " – | – | – | – |\n",
        }
    }
    out
}

/// Iterations over which [`paired_differences`] averages a seed's paired difference: the
/// last `PAIRED_WINDOW` of the budget (all of them for shorter grids).
pub const PAIRED_WINDOW: usize = 10;

/// One seed's paired difference between two algorithms of a grid (a row of `paired.csv`).
///
/// The tasks of an iteration are drawn from (seed, iteration) alone, so for one seed every
/// algorithm meets the same tasks at the same iteration: the difference of two runs'
/// post-update returns removes the tasks' share of the spread (the common ups and downs
/// of hard and easy task draws), which dominates the across-seed standard errors of the
/// summary on tasks such as the Ant ones. `diff` = mean over iterations
/// `from` … `to` (1-based, inclusive) of post(`algo`) − post(`against`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct PairedDiff {
    /// The algorithm whose return is taken first.
    pub algo: String,
    /// The algorithm it is compared with.
    pub against: String,
    /// The seed both runs share.
    pub seed: u64,
    /// First iteration (1-based) of the window.
    pub from: usize,
    /// Last iteration (1-based) of the window: the grid's budget.
    pub to: usize,
    /// Mean over the window of the post-update return difference.
    pub diff: f64,
}

/// Every ordered pair of distinct algorithms and every seed at which both runs reached `n`
/// iterations (a diverged run drops out of its pairs), averaged over the last
/// [`PAIRED_WINDOW`] iterations up to `n`: algorithm-major in the order of `algos`, then
/// `against` in that order, then seeds in the order of `runs`.
pub fn paired_differences(
    algos: &[Algorithm],
    runs: &[ValidParams],
    records: &[RunRecord],
    n: usize,
) -> Vec<PairedDiff> {
    let from = n.saturating_sub(PAIRED_WINDOW);
    let curve = |algo: Algorithm, seed: u64| {
        runs.iter()
            .zip(records)
            .find(|(p, _)| p.algo == algo && p.seed == seed)
            .filter(|(_, r)| n > 0 && r.history.len() >= n)
            .map(|(_, r)| &r.history[from..n])
    };
    let seeds = first_seen(runs.iter().map(|p| p.seed));
    let mut out = Vec::new();
    for &a in algos {
        for &b in algos.iter().filter(|&&b| b != a) {
            for &seed in &seeds {
                if let (Some(x), Some(y)) = (curve(a, seed), curve(b, seed)) {
                    let d: Vec<f64> = x.iter().zip(y).map(|(x, y)| post_return(x) - post_return(y)).collect();
                    out.push(PairedDiff {
                        algo: a.name().into(),
                        against: b.name().into(),
                        seed,
                        from: from + 1,
                        to: n,
                        diff: mean_std_se(&d).0,
                    });
                }
            }
        }
    }
    out
}

/// The paired differences as a Markdown matrix: row − column, mean ± s.e. over seeds of the
/// per-seed differences, with the number of seeds in which the row is ahead.
pub fn paired_markdown(rows: &[PairedDiff]) -> String {
    let algos = first_seen(rows.iter().flat_map(|r| [r.algo.as_str(), r.against.as_str()]));
    let Some(first) = rows.first() else { return String::new() };
    let mut out = format!(
        "Paired differences, row − column: post-update return averaged over iterations {}–{} of \
         the same seed (the same tasks), mean ± s.e. over seeds (seeds in which the row is ahead).\n\n\
         | | {} |\n|---|{}\n",
        first.from,
        first.to,
        algos.join(" | "),
        "---|".repeat(algos.len())
    );
    for a in &algos {
        out += &format!("| {a} |");
        for b in &algos {
            let d: Vec<f64> =
                rows.iter().filter(|r| r.algo == *a && r.against == *b).map(|r| r.diff).collect();
            out += &if a == b || d.is_empty() {
                " – |".to_string()
            } else {
                let (m, _, se) = mean_std_se(&d);
                let ahead = d.iter().filter(|&&x| x > 0.0).count();
                let se = if d.len() > 1 { format!("{se:.1}") } else { "–".into() };
                format!(" {m:.1} ± {se} ({ahead} of {}) |", d.len())
            };
        }
        out.push('\n');
    }
    out
}

/// Largest fall of `ys` below its running maximum (0 if it never falls).
pub fn max_drop(ys: impl Iterator<Item = f64>) -> f64 {
    let (mut best, mut drop) = (f64::NEG_INFINITY, 0.0f64);
    for y in ys {
        best = best.max(y);
        drop = drop.max(best - y);
    }
    drop
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::experiments::meta_rl::RunSettings;
    use crate::experiments::write_csv_or_header;
    use crate::meta::algos::Divergence;

    #[test]
    fn summary_markdown_has_one_row_per_algorithm() {
        let row = |algo: &str, iteration: usize, m: f64| SummaryRow {
            algo: algo.into(),
            iteration,
            is_final: iteration == 20,
            seeds: 3,
            post_return_mean: m,
            post_return_se: 0.25,
            pre_return_mean: -1.0,
            pre_return_se: 0.5,
            max_drop_mean: 2.0,
            max_drop_se: 0.125,
            wall_s_mean: 90.0,
            diverged: 0,
        };
        // One seed left at it. 20 has no standard error; none left (all diverged) is "–".
        let one = SummaryRow { seeds: 1, diverged: 2, ..row("e-maml", 20, 4.0) };
        let none = SummaryRow { seeds: 0, diverged: 3, post_return_mean: f64::NAN, ..row("dice", 20, 0.0) };
        let md = summary_markdown(&[
            row("promp", 10, 1.0),
            row("promp", 20, 3.0),
            row("trpo-maml", 10, 2.0),
            row("e-maml", 10, 5.0),
            one,
            row("dice", 10, 6.0),
            none,
        ]);
        let lines: Vec<&str> = md.lines().collect();
        assert_eq!(
            lines[0],
            "| algorithm | it. 10 | it. 20 | max drop by it. 20 | pre-update, it. 20 | minutes per run | diverged by it. 20 |"
        );
        assert_eq!(lines[1], "|---|---|---|---|---|---|---|");
        assert_eq!(lines[2], "| promp | 1.0 ± 0.2 | 3.0 ± 0.2 | 2.0 ± 0.1 | -1.0 ± 0.5 | 1.5 | 0 of 3 |");
        assert_eq!(lines[3], "| trpo-maml | 2.0 ± 0.2 | – | – | – | – | – |");
        assert_eq!(lines[4], "| e-maml | 5.0 ± 0.2 | 4.0 ± – | 2.0 ± – | -1.0 ± – | 1.5 | 2 of 3 |");
        assert_eq!(lines[5], "| dice | 6.0 ± 0.2 | – | – | – | – | 3 of 3 |");
        assert!(!md.contains("NaN"));
        assert_eq!(lines.len(), 6);
    }

    /// Iteration `i` of a test history with post-update return `post`.
    fn stats(i: usize, post: f64) -> IterationStats {
        IterationStats {
            iteration: i,
            pre_return: 0.0,
            post_returns: vec![post],
            env_steps: 10 * (i as u64 + 1),
            wall_s: i as f64,
            outer_diag: 0.0,
            diagnostics: Default::default(),
            pre_success: None,
            post_success: Vec::new(),
            test: None,
        }
    }

    #[test]
    fn diverged_runs_leave_the_means_and_are_counted() {
        let full = RunRecord { history: (0..3).map(|i| stats(i, 10.0 * i as f64)).collect(), diverged: None };
        let short = RunRecord {
            history: vec![stats(0, 4.0)],
            diverged: Some(Divergence { iteration: 0, cause: "outer loss 1e9".into() }),
        };
        let settings = RunSettings { iterations: 3, ..RunSettings::default() };
        let runs = vec![
            settings.params(Algorithm::Promp, 1).unwrap(),
            settings.params(Algorithm::Promp, 2).unwrap(),
        ];
        let rows = summary_rows(&[Algorithm::Promp], &runs, &[full, short], &[1, 3], 3);
        assert_eq!((rows[0].seeds, rows[0].diverged, rows[0].post_return_mean), (2, 0, 2.0));
        assert_eq!((rows[1].seeds, rows[1].diverged, rows[1].post_return_mean), (1, 1, 20.0));
        let md = summary_markdown(&rows);
        assert!(md.lines().nth(2).unwrap().ends_with("| 1 of 2 |"), "{md}");
    }

    #[test]
    fn paired_differences_cancel_the_tasks_and_drop_diverged_runs() {
        // Task difficulty shared by all algorithms of a seed at an iteration (large), plus
        // an algorithm effect (small): the paired difference is the effect alone.
        let task = |seed: u64, i: usize| 100.0 * ((seed as f64 * 7.3 + i as f64 * 1.9).sin());
        let effect = |algo: Algorithm| match algo {
            Algorithm::Promp => 2.0,
            Algorithm::TrpoMaml => 0.0,
            _ => -1.0,
        };
        let n = 14;
        let settings = RunSettings { iterations: n, ..RunSettings::default() };
        let algos = [Algorithm::TrpoMaml, Algorithm::Promp, Algorithm::TrpoDice];
        let (mut runs, mut records) = (Vec::new(), Vec::new());
        for &algo in &algos {
            for seed in [1u64, 2, 3] {
                runs.push(settings.params(algo, seed).unwrap());
                // ProMP's seed 3 diverged at iteration 5: it leaves its pairs.
                let len = if algo == Algorithm::Promp && seed == 3 { 5 } else { n + 3 };
                let history = (0..len).map(|i| stats(i, task(seed, i) + effect(algo) + i as f64)).collect();
                records.push(RunRecord { history, diverged: None });
            }
        }
        let rows = paired_differences(&algos, &runs, &records, n);
        // 6 ordered pairs; the 4 pairs with ProMP have 2 seeds, the other 2 have 3.
        assert_eq!(rows.len(), 4 * 2 + 2 * 3);
        for r in &rows {
            let a = algos.iter().find(|a| a.name() == r.algo).unwrap();
            let b = algos.iter().find(|b| b.name() == r.against).unwrap();
            assert!((r.diff - (effect(*a) - effect(*b))).abs() < 1e-9, "{r:?}");
            assert_eq!((r.from, r.to), (n - PAIRED_WINDOW + 1, n));
            assert!(!(r.seed == 3 && (r.algo == "promp" || r.against == "promp")));
        }
        assert_eq!(
            (rows[0].algo.as_str(), rows[0].against.as_str(), rows[0].seed),
            ("trpo-maml", "promp", 1)
        );
        let md = paired_markdown(&rows);
        let lines: Vec<&str> = md.lines().collect();
        assert_eq!(lines[2], "| | trpo-maml | promp | trpo-dice |");
        assert_eq!(lines[3], "|---|---|---|---|");
        assert_eq!(lines[4], "| trpo-maml | – | -2.0 ± 0.0 (0 of 2) | 1.0 ± 0.0 (3 of 3) |");
        assert_eq!(lines[5], "| promp | 2.0 ± 0.0 (2 of 2) | – | 3.0 ± 0.0 (2 of 2) |");
        assert_eq!(lines.len(), 7);
        // A window longer than the budget is the whole run; a single seed has no s.e.
        let short = paired_differences(
            &algos[..2],
            &runs[..1].iter().chain(&runs[3..4]).cloned().collect::<Vec<_>>(),
            &[records[0].clone(), records[3].clone()],
            3,
        );
        assert_eq!(short.len(), 2);
        assert_eq!((short[0].from, short[0].to), (1, 3));
        assert!(paired_markdown(&short).contains("| -2.0 ± – (0 of 1) |"));
        assert_eq!(paired_markdown(&[]), "");
        // A grid of one algorithm has no pairs: paired.csv is its header alone.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("paired.csv");
        write_csv_or_header::<PairedDiff>(&path, &[]).unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "algo,against,seed,from,to,diff\n");
        write_csv_or_header(&path, &short).unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap().lines().count(), 3);
    }

    #[test]
    fn max_drop_is_the_largest_fall_below_the_running_best() {
        assert_eq!(max_drop([1.0, 2.0, 3.0].into_iter()), 0.0);
        assert_eq!(max_drop([5.0, 1.0, 6.0, 4.0].into_iter()), 4.0);
        assert_eq!(max_drop([2.0, 9.0, 7.0, 1.0, 10.0].into_iter()), 8.0);
        assert_eq!(max_drop(std::iter::empty()), 0.0);
    }
}
