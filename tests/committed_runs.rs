//! The committed results reproduce bit for bit: the first iterations of meta-RL runs of
//! `runs/fig1d_paper` (one ProMP, one TRPO run), re-run from the settings their
//! `config.json` records, give the rows of their committed `progress.csv` in every column
//! the committed file has (the wall-clock column aside); the grid's recorded command-line settings convert into the same run
//! settings; the tabular study of `runs/tabular`, re-run from its recorded settings, gives
//! its committed `summary.csv`; the meta-RL re-runs also at the AVX2 level on an AVX-512
//! CPU. Run in the optimised test profile (≈ 40 s on two cores).

use std::path::{Path, PathBuf};

use metagrad::experiments::meta_rl::{self, Resume, RunSettings};
use metagrad::experiments::tabular_study::{StudyParams, write_results};
use metagrad::meta::algos::Params;
use serde_json::Value;

/// Iterations re-run per meta-RL run.
const ITERATIONS: usize = 2;

fn runs() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("runs")
}

fn read_json(path: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// The first `rows` rows of a progress file restricted to the named columns (in that order),
/// with the header; `None` keeps every column but `wall_s`. Returns the kept column names too.
fn progress_rows(path: &Path, rows: usize, columns: Option<&[String]>) -> (Vec<String>, Vec<Vec<String>>) {
    let text = std::fs::read_to_string(path).unwrap();
    let mut lines = text.lines();
    let header: Vec<String> = lines.next().unwrap().split(',').map(str::to_owned).collect();
    let names: Vec<String> = match columns {
        Some(c) => c.to_vec(),
        None => header.iter().filter(|c| *c != "wall_s").cloned().collect(),
    };
    let at: Vec<usize> = names
        .iter()
        .map(|n| {
            header.iter().position(|c| c == n).unwrap_or_else(|| panic!("{}: no column {n}", path.display()))
        })
        .collect();
    let table = std::iter::once(header.join(","))
        .chain(lines.take(rows).map(str::to_owned))
        .map(|l| {
            let cells: Vec<&str> = l.split(',').collect();
            at.iter().map(|&i| cells[i].to_owned()).collect()
        })
        .collect();
    (names, table)
}

/// Re-runs the first iterations of the committed run in `dir` from its recorded settings.
fn rerun(dir: &Path) {
    let settings = read_json(&dir.join("config.json"))["settings"].clone();
    let params: Params = serde_json::from_value(settings).unwrap();
    let params = Params { iterations: ITERATIONS, ..params.upgrade_legacy() }.validate().unwrap();
    let out = tempfile::tempdir().unwrap();
    meta_rl::run(&params, out.path(), Resume::No, &mut |_| Ok(())).unwrap();
    // Every column of the committed file (the wall clock aside): diagnostics recorded since
    // are appended after them in new files.
    let (columns, committed) = progress_rows(&dir.join("progress.csv"), ITERATIONS, None);
    let (_, rerun) = progress_rows(&out.path().join("progress.csv"), ITERATIONS, Some(&columns));
    assert_eq!(rerun, committed, "{}", dir.display());
}

#[test]
fn a_promp_run_of_fig1d_reproduces_its_first_iterations() {
    rerun(&runs().join("fig1d_paper/promp/seed4"));
}

#[test]
fn a_trpo_run_of_fig1d_reproduces_its_first_iterations() {
    rerun(&runs().join("fig1d_paper/trpo-fmaml/seed5"));
}

#[test]
fn the_grids_recorded_settings_give_its_runs_settings() {
    let grid = read_json(&runs().join("fig1d_paper/config.json"));
    let settings: RunSettings = serde_json::from_value(grid["settings"]["grid"]["run"].clone()).unwrap();
    for (algo, seed) in [("promp", 4), ("trpo-fmaml", 5), ("trpo-dice", 1)] {
        let dir = runs().join("fig1d_paper").join(algo).join(format!("seed{seed}"));
        let recorded: Params =
            serde_json::from_value(read_json(&dir.join("config.json"))["settings"].clone()).unwrap();
        // A finished run keeps the record of the sitting that started it: its iteration
        // budget may be below the grid's (the only setting a resume may change).
        let recorded = Params { iterations: settings.iterations, ..recorded.upgrade_legacy() };
        let params = settings.params(recorded.algo, seed).unwrap();
        assert_eq!(*params, recorded, "{algo} seed {seed}");
    }
}

#[test]
fn the_tabular_study_reproduces_its_summary() {
    let dir = runs().join("tabular");
    let study: StudyParams =
        serde_json::from_value(read_json(&dir.join("config.json"))["settings"].clone()).unwrap();
    let study = study.validate().unwrap();
    let output = study.run_all(&|| {}).unwrap();
    let out = tempfile::tempdir().unwrap();
    write_results(out.path(), &study, &output).unwrap();
    let read = |d: &Path| std::fs::read_to_string(d.join("summary.csv")).unwrap();
    assert_eq!(read(out.path()), read(&dir));
}

/// The committed runs were made on an AVX-512 CPU; they reproduce at the other CPU levels
/// too: the meta-RL re-runs above, repeated by this test binary in child processes under
/// each level strictly between baseline and this CPU's (`METAGRAD_CPU`, fixed once per
/// process). The baseline level computes the products' fused multiply-adds in software,
/// ≈ 35 times slower (3 minutes for the ProMP re-run): `METAGRAD_CPU=baseline cargo test
/// --test committed_runs` checks it, and `tests/cpu_levels.rs` compares baseline with the
/// other levels on short runs. The tabular study is float64 code outside the dispatched
/// loops, the same at every level.
#[test]
fn the_committed_meta_rl_runs_reproduce_at_the_middle_cpu_levels() {
    use metagrad::cpu::{ENV, Level};
    if std::env::var_os(ENV).is_some() {
        return; // a child of this test, or a run forced to one level: the tests above cover it
    }
    let tests = [
        "a_promp_run_of_fig1d_reproduces_its_first_iterations",
        "a_trpo_run_of_fig1d_reproduces_its_first_iterations",
    ];
    for level in Level::available().into_iter().filter(|l| Level::Baseline < *l && *l < Level::detected()) {
        let out = std::process::Command::new(std::env::current_exe().unwrap())
            .args(["--exact", "--test-threads", "1"])
            .args(tests)
            .env(ENV, level.name())
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "at level {level}:\n{stdout}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            stdout.contains(&format!("test result: ok. {} passed", tests.len())),
            "at level {level}:\n{stdout}"
        );
    }
}
