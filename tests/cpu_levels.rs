//! Every CPU level of this machine (`METAGRAD_CPU`) gives the same numbers, in one build:
//! short `meta-rl` runs in float32 (the default) and float64, a MuJoCo run with the
//! `mujoco` feature, and the tabular study, each run under every level, write the same
//! files bit for bit (wall-clock columns aside). `--version` names the level; a bad value
//! is an error naming the valid ones.

use std::path::Path;
use std::process::{Command, Output};

use metagrad::cpu::Level;

fn metagrad(level: Option<&str>, args: &[&str]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_metagrad"));
    cmd.args(args).env_remove("METAGRAD_CPU");
    if let Some(l) = level {
        cmd.env("METAGRAD_CPU", l);
    }
    cmd.output().expect("binary runs")
}

fn ok(o: Output) -> Output {
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    o
}

/// A CSV file without its wall-clock columns.
fn csv_without_wall(path: &Path) -> Vec<String> {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let header: Vec<&str> = text.lines().next().unwrap().split(',').collect();
    let keep: Vec<usize> = (0..header.len()).filter(|&i| !header[i].starts_with("wall_s")).collect();
    text.lines()
        .map(|l| {
            let cells: Vec<&str> = l.split(',').collect();
            keep.iter().map(|&i| cells[i]).collect::<Vec<_>>().join(",")
        })
        .collect()
}

/// Runs `args` (plus `--out <dir>`) under every level of this CPU and checks that `files`
/// are the same (and `config.json` records the level).
fn same_on_every_level(args: &[&str], files: &[&str]) {
    let dir = tempfile::tempdir().unwrap();
    let mut first: Option<Vec<Vec<String>>> = None;
    for level in Level::available() {
        let out = dir.path().join(level.name());
        let mut all = args.to_vec();
        all.extend_from_slice(&["--out", out.to_str().unwrap()]);
        ok(metagrad(Some(level.name()), &all));
        let cfg: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(out.join("config.json")).unwrap()).unwrap();
        assert_eq!(cfg["cpu_level"], level.name());
        let got: Vec<Vec<String>> = files.iter().map(|f| csv_without_wall(&out.join(f))).collect();
        match &first {
            None => first = Some(got),
            Some(want) => {
                for (f, (g, w)) in files.iter().zip(got.iter().zip(want)) {
                    assert!(g.len() > 1, "{f} is empty");
                    assert_eq!(g, w, "{f} differs at level {level} from the baseline's ({args:?})");
                }
            }
        }
    }
}

const META: [&str; 17] = [
    "meta-rl",
    "--algo",
    "promp",
    "--seed",
    "2",
    "--iterations",
    "2",
    "--tasks",
    "4",
    "--rollouts",
    "5",
    "--horizon",
    "40",
    "--hidden",
    "64,64",
    "--inner-steps",
    "2",
];

#[test]
fn meta_rl_in_float32_is_the_same_on_every_level() {
    // 64-wide layers over 4 × 5 × 40 = 800 samples: the wide products' tiles and loops.
    same_on_every_level(&META, &["progress.csv"]);
    let trpo: Vec<&str> = META.iter().map(|a| if *a == "promp" { "trpo-maml" } else { a }).collect();
    same_on_every_level(&trpo, &["progress.csv"]);
}

#[test]
fn meta_rl_in_float64_is_the_same_on_every_level() {
    let mut args = META.to_vec();
    args.extend_from_slice(&["--precision", "f64"]);
    same_on_every_level(&args, &["progress.csv"]);
}

#[cfg(feature = "mujoco")]
#[test]
fn a_mujoco_meta_rl_run_is_the_same_on_every_level() {
    let args = [
        "meta-rl",
        "--env",
        "half-cheetah-rand-direc",
        "--algo",
        "promp",
        "--iterations",
        "1",
        "--tasks",
        "2",
        "--rollouts",
        "2",
        "--horizon",
        "30",
    ];
    same_on_every_level(&args, &["progress.csv"]);
}

#[test]
fn the_tabular_study_is_the_same_on_every_level() {
    let args = ["tabular", "--trials", "2", "--n", "50", "--n-grid", "20,50", "--eps", "0,0.5"];
    same_on_every_level(&args, &["trials.csv", "summary.csv"]);
}

#[test]
fn version_names_the_level_and_bad_values_are_errors() {
    let v = String::from_utf8(ok(metagrad(None, &["--version"])).stdout).unwrap();
    let detected = Level::detected().name();
    assert!(v.starts_with(&format!("metagrad {} (commit ", env!("CARGO_PKG_VERSION"))), "{v}");
    assert!(v.trim_end().ends_with(&format!("CPU level {detected})")), "{v}");
    let v = String::from_utf8(ok(metagrad(Some("baseline"), &["--version"])).stdout).unwrap();
    assert!(v.trim_end().ends_with("CPU level baseline)"), "{v}");
    // Above the CPU's: capped, with a note (on a CPU below AVX-512).
    let o = ok(metagrad(Some("avx512"), &["--version"]));
    assert!(String::from_utf8_lossy(&o.stdout).contains(&format!("CPU level {detected})")));
    let note = String::from_utf8_lossy(&o.stderr);
    assert_eq!(
        note.contains("METAGRAD_CPU=avx512 is above this CPU's level"),
        detected != "avx512",
        "{note}"
    );
    let o = metagrad(Some("avx9000"), &["tabular", "--trials", "1"]);
    assert_eq!(o.status.code(), Some(2));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("METAGRAD_CPU=\"avx9000\"") && err.contains("baseline, avx2, avx512"), "{err}");
}
