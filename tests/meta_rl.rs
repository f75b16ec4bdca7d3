//! `metagrad meta-rl` end to end on tiny runs: resume equals an uninterrupted run,
//! results do not depend on the thread count, the grid writes its table and figure and
//! skips finished runs, and bad settings get clear errors.

use std::path::Path;
use std::process::{Command, Output};

fn metagrad(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_metagrad")).args(args).output().expect("binary runs")
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

const TINY: [&str; 14] = [
    "--tasks",
    "3",
    "--rollouts",
    "2",
    "--horizon",
    "12",
    "--hidden",
    "8,8",
    "--inner-steps",
    "2",
    "--env",
    "point-corners",
    "--inner-lr",
    "0.1",
];

/// `metagrad [global] meta-rl … [extra]` on the tiny settings; must succeed.
fn run(out: &Path, algo: &str, iterations: &str, global: &[&str], extra: &[&str]) -> Output {
    let mut args = vec![];
    args.extend_from_slice(global);
    args.extend_from_slice(&["meta-rl", "--algo", algo, "--seed", "3", "--iterations", iterations]);
    args.extend_from_slice(extra);
    args.extend_from_slice(&TINY);
    args.extend_from_slice(&["--out", out.to_str().unwrap()]);
    let o = metagrad(&args);
    assert!(o.status.success(), "{}", stderr(&o));
    o
}

/// θ from the checkpoint and the progress table without the wall-clock column.
fn outcome(dir: &Path) -> (Vec<f64>, Vec<String>) {
    let ck: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("checkpoint.json")).unwrap()).unwrap();
    let theta = ck["state"]["theta"].as_array().unwrap().iter().map(|x| x.as_f64().unwrap()).collect();
    let csv = std::fs::read_to_string(dir.join("progress.csv")).unwrap();
    let header: Vec<&str> = csv.lines().next().unwrap().split(',').collect();
    let wall = header.iter().position(|h| *h == "wall_s").unwrap();
    let rows = csv
        .lines()
        .map(|l| {
            l.split(',').enumerate().filter(|(i, _)| *i != wall).map(|(_, x)| x).collect::<Vec<_>>().join(",")
        })
        .collect();
    (theta, rows)
}

#[test]
fn resume_continues_exactly_and_threads_do_not_matter() {
    let dir = tempfile::tempdir().unwrap();
    for algo in ["promp-taypo2", "trpo-maml"] {
        let full = dir.path().join(format!("{algo}-full"));
        run(&full, algo, "3", &["--threads", "2"], &[]);
        let parts = dir.path().join(format!("{algo}-parts"));
        run(&parts, algo, "1", &["--threads", "1"], &[]);
        // Without --resume an existing run is not overwritten.
        let mut args = vec!["meta-rl", "--algo", algo, "--seed", "3", "--iterations", "3"];
        args.extend_from_slice(&TINY);
        args.extend_from_slice(&["--out", parts.to_str().unwrap()]);
        let o = metagrad(&args);
        assert!(!o.status.success() && stderr(&o).contains("--resume"), "{}", stderr(&o));
        // Resume with another thread count.
        run(&parts, algo, "3", &["--threads", "2"], &["--resume"]);
        let (ta, ra) = outcome(&full);
        let (tb, rb) = outcome(&parts);
        assert_eq!(ta, tb, "{algo}: θ differs between resumed and uninterrupted runs");
        assert_eq!(ra, rb, "{algo}: progress differs");
        assert_eq!(ra.len(), 4);
        assert!(full.join("learning_curve.png").exists() && full.join("learning_curve.svg").exists());
        assert!(full.join("config.json").exists());
    }
}

#[test]
fn resume_with_e_maml_matches_and_checks_settings() {
    let dir = tempfile::tempdir().unwrap();
    let full = dir.path().join("full");
    run(&full, "trpo-emaml", "2", &[], &[]);
    let part = dir.path().join("part");
    run(&part, "trpo-emaml", "1", &[], &[]);
    run(&part, "trpo-emaml", "2", &[], &["--resume"]);
    assert_eq!(outcome(&full), outcome(&part));
    // A resume with other settings is refused.
    let mut args = vec!["meta-rl", "--resume", "--algo", "trpo-emaml", "--seed", "4", "--iterations", "2"];
    args.extend_from_slice(&TINY);
    args.extend_from_slice(&["--out", part.to_str().unwrap()]);
    let o = metagrad(&args);
    assert!(!o.status.success() && stderr(&o).contains("settings differ"), "{}", stderr(&o));
}

#[test]
fn compare_runs_the_grid_and_skips_finished_runs() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("grid");
    let mut args =
        vec!["meta-rl", "compare", "--algos", "all", "--seeds", "1,2", "--iterations", "2", "--at", "1"];
    args.extend_from_slice(&TINY);
    args.extend_from_slice(&["--out", out.to_str().unwrap()]);
    let o = metagrad(&args);
    assert!(o.status.success(), "{}", stderr(&o));
    let summary = std::fs::read_to_string(out.join("summary.csv")).unwrap();
    assert!(summary.starts_with("algo,iteration,is_final,seeds,post_return_mean"), "{summary}");
    // 6 algorithms × (iteration 1, final iteration 2) + header.
    assert_eq!(summary.lines().count(), 13, "{summary}");
    for a in ["trpo-maml", "trpo-fmaml", "trpo-emaml", "trpo-dice", "promp", "promp-taypo2"] {
        assert!(summary.contains(&format!("{a},2,true,2,")), "{a}: {summary}");
        assert!(out.join(a).join("seed2").join("checkpoint.json").exists());
    }
    assert!(out.join("fig1d.png").exists() && out.join("fig1d.svg").exists());
    // The same numbers as a Markdown table: header, rule, one row per algorithm; then
    // the paired differences as a 6 × 6 matrix.
    let md = std::fs::read_to_string(out.join("summary.md")).unwrap();
    assert!(md.starts_with("| algorithm | it. 1 | it. 2 | max drop by it. 2 |"), "{md}");
    let lines: Vec<&str> = md.lines().collect();
    assert_eq!(lines.len(), 8 + 1 + 2 + 2 + 6, "{md}");
    assert!(lines[9].starts_with("Paired differences, row − column") && lines[9].contains("iterations 1–2"));
    assert_eq!(lines[11], "| | trpo-maml | trpo-fmaml | trpo-emaml | trpo-dice | promp | promp-taypo2 |");
    assert!(lines[13].starts_with("| trpo-maml | – | ") && lines[13].ends_with("of 2) |"), "{md}");
    // paired.csv: every ordered pair of algorithms × 2 seeds, antisymmetric, and each
    // difference that of the two runs' post-update returns over both iterations.
    let paired = std::fs::read_to_string(out.join("paired.csv")).unwrap();
    let mut lines = paired.lines();
    assert_eq!(lines.next(), Some("algo,against,seed,from,to,diff"));
    let rows: Vec<(String, String, String, f64)> = lines
        .map(|l| {
            let f: Vec<&str> = l.split(',').collect();
            assert_eq!((f[3], f[4]), ("1", "2"), "{l}");
            (f[0].into(), f[1].into(), f[2].into(), f[5].parse().unwrap())
        })
        .collect();
    assert_eq!(rows.len(), 6 * 5 * 2);
    let post = |algo: &str, seed: &str| -> Vec<f64> {
        let p =
            std::fs::read_to_string(out.join(algo).join(format!("seed{seed}")).join("progress.csv")).unwrap();
        // The return after the last inner step.
        let header: Vec<&str> = p.lines().next().unwrap().split(',').collect();
        let col = header.iter().rposition(|h| h.starts_with("post_return_")).unwrap();
        p.lines().skip(1).map(|l| l.split(',').nth(col).unwrap().parse().unwrap()).collect()
    };
    for (a, b, s, d) in &rows {
        let back = rows.iter().find(|r| (&r.0, &r.1, &r.2) == (b, a, s)).unwrap().3;
        assert!((d + back).abs() < 1e-12, "{a} {b} {s}");
        let (x, y) = (post(a, s), post(b, s));
        assert!((d - ((x[0] - y[0]) + (x[1] - y[1])) / 2.0).abs() < 1e-9, "{a} {b} {s}: {d}");
    }
    // The instability column: the largest fall below the running best, never negative.
    let header: Vec<&str> = summary.lines().next().unwrap().split(',').collect();
    let drop = header.iter().position(|h| *h == "max_drop_mean").expect("max_drop_mean column");
    for line in summary.lines().skip(1) {
        let v: f64 = line.split(',').nth(drop).unwrap().parse().unwrap();
        assert!(v >= 0.0 && v.is_finite(), "{line}");
    }
    // Re-running finds every run finished and reproduces the table.
    let t = std::time::Instant::now();
    let o = metagrad(&args);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(std::fs::read_to_string(out.join("summary.csv")).unwrap(), summary);
    assert!(t.elapsed().as_secs_f64() < 30.0);
}

#[test]
fn precision_is_recorded_and_f32_runs_track_f64_runs() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (dir.path().join("f32"), dir.path().join("f64"));
    run(&a, "trpo-maml", "1", &[], &[]);
    run(&b, "trpo-maml", "1", &[], &["--precision", "f64"]);
    let config = |d: &Path| -> serde_json::Value {
        serde_json::from_str(&std::fs::read_to_string(d.join("config.json")).unwrap()).unwrap()
    };
    let prec = |d: &Path| config(d).to_string().contains(r#""precision":"f32""#);
    assert!(prec(&a) && !prec(&b), "{}", config(&b));
    let ((ta, ra), (tb, rb)) = (outcome(&a), outcome(&b));
    // Same data up to single-precision rounding of the policy means: returns and the TRPO
    // step agree closely but not bit for bit.
    let returns =
        |r: &[String]| -> Vec<f64> { r[1].split(',').skip(1).take(3).map(|x| x.parse().unwrap()).collect() };
    for (x, y) in returns(&ra).iter().zip(returns(&rb)) {
        assert!((x - y).abs() <= 1e-4 * (1.0 + y.abs()), "returns {ra:?} vs {rb:?}");
    }
    let diff = ta.iter().zip(&tb).map(|(x, y)| (x - y).abs()).fold(0.0, f64::max);
    assert!(diff > 0.0 && diff < 1e-3, "max |θ_f32 − θ_f64| = {diff}");
    // A resume must not switch precision.
    let o = metagrad(
        &[
            &[
                "meta-rl",
                "--resume",
                "--algo",
                "trpo-maml",
                "--seed",
                "3",
                "--iterations",
                "2",
                "--precision",
                "f64",
            ][..],
            &TINY[..],
            &["--out", a.to_str().unwrap()][..],
        ]
        .concat(),
    );
    assert!(!o.status.success() && stderr(&o).contains("settings differ"), "{}", stderr(&o));
}

#[test]
fn bad_settings_are_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("x");
    let o_s = out.to_str().unwrap();
    let mut cases: Vec<(Vec<&str>, Vec<&str>)> = vec![
        (vec!["--algo", "maml++"], vec!["algo", "maml++"]),
        (vec!["--tasks", "0"], vec!["tasks", "0"]),
        (vec!["--inner-lr=-1"], vec!["inner-lr", "-1"]),
        (vec!["--gamma", "1.5"], vec!["gamma", "1.5"]),
        (vec!["--env", "nowhere"], vec!["env", "nowhere"]),
        (vec!["--max-kl", "0"], vec!["max_kl", "0"]),
        (vec!["--hidden", "64,0"], vec!["hidden"]),
        (vec!["--resume"], vec!["--resume", "no checkpoint"]),
        (vec!["--precision", "f16"], vec!["--precision", "f16", "f32", "f64"]),
        (vec!["--normalisation", "trajectories"], vec!["--normalisation", "samples", "paths"]),
        (vec!["--algo", "promp", "--ratio-guard", "0"], vec!["ratio-guard", "0"]),
        (vec!["--algo", "promp", "--ratio-guard", "inf"], vec!["ratio-guard", "inf"]),
    ];
    if cfg!(not(feature = "mujoco")) {
        // Without the engine, a MuJoCo task says how to get it.
        cases.push((vec!["--env", "half-cheetah-rand-direc"], vec!["mujoco"]));
    }
    for (extra, want) in cases {
        let mut args = vec!["meta-rl", "--iterations", "1", "--out", o_s];
        args.extend_from_slice(&extra);
        let o = metagrad(&args);
        let err = stderr(&o);
        assert!(!o.status.success(), "{extra:?} accepted");
        assert!(!err.contains("panicked"), "{extra:?} panicked: {err}");
        for w in want {
            assert!(err.contains(w), "{extra:?}: error {err:?} does not mention {w:?}");
        }
    }
    let o = metagrad(&["meta-rl", "compare", "--algos", "promp,foo", "--out", o_s]);
    assert!(!o.status.success() && stderr(&o).contains("foo"), "{}", stderr(&o));
}
