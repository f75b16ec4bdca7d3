//! The command-line tool end to end: `estimate` on good and bad input, `tabular` outputs,
//! determinism across thread counts, and clear errors for bad flags.

use std::path::Path;
use std::process::{Command, Output};

use serde_json::{Value, json};

fn metagrad(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_metagrad")).args(args).output().expect("binary runs")
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// A small valid problem (3 states, 2 actions, 4 trajectories of 3 steps).
fn example(dir: &Path) -> Value {
    let path = dir.join("p.json");
    let o = metagrad(&[
        "example-problem",
        "--states",
        "3",
        "--actions",
        "2",
        "--horizon",
        "3",
        "--n",
        "4",
        "--output",
        path.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn estimate_with(dir: &Path, problem: &str, extra: &[&str]) -> Output {
    let path = dir.join("in.json");
    std::fs::write(&path, problem).unwrap();
    let mut args = vec!["estimate", "--input", path.to_str().unwrap()];
    args.extend_from_slice(extra);
    metagrad(&args)
}

/// Runs `estimate` on a modified problem and checks that it fails cleanly naming `want`.
fn rejects(dir: &Path, problem: &Value, extra: &[&str], want: &[&str]) {
    let o = estimate_with(dir, &problem.to_string(), extra);
    let err = stderr(&o);
    assert!(!o.status.success(), "accepted bad input; expected an error naming {want:?}");
    assert!(!err.contains("panicked"), "panicked: {err}");
    for w in want {
        assert!(err.contains(w), "error {err:?} does not mention {w:?}");
    }
}

#[test]
fn estimate_outputs_exact_and_all_estimates() {
    let dir = tempfile::tempdir().unwrap();
    let p = example(dir.path());
    let o = estimate_with(dir.path(), &p.to_string(), &["--estimators", "is,dr,taypo-3"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let out: Value = serde_json::from_slice(&o.stdout).unwrap();
    for name in ["is", "dr", "taypo-3"] {
        let e = &out["estimates"][name];
        assert!(e["value"].is_f64(), "{name}");
        assert_eq!(e["gradient"].as_array().unwrap().len(), 3);
        assert_eq!(e["gradient"][0].as_array().unwrap().len(), 2);
        assert_eq!(e["hessian"].as_array().unwrap().len(), 6);
        assert_eq!(e["hessian"][5].as_array().unwrap().len(), 6);
    }
    assert!(out["exact"]["value"].as_f64().unwrap().is_finite());
    // The numbers are the library's, in the documented layout (gradient |X|×|A| with
    // entry [x][a] = ∂/∂θ[x][a], Hessian D×D with index x·|A| + a), bit for bit.
    let lib = metagrad::problem::Problem::parse(&p.to_string(), "p.json").unwrap();
    let same = |json: &Value, d: &metagrad::tabular::oracle::Derivatives, what: &str| {
        assert_eq!(json["value"].as_f64().unwrap().to_bits(), d.value.to_bits(), "{what} value");
        for x in 0..3 {
            for a in 0..2 {
                let g = json["gradient"][x][a].as_f64().unwrap();
                assert_eq!(g.to_bits(), d.gradient[x * 2 + a].to_bits(), "{what} gradient[{x}][{a}]");
            }
        }
        for i in 0..6 {
            for j in 0..6 {
                let h = json["hessian"][i][j].as_f64().unwrap();
                assert_eq!(h.to_bits(), d.hessian[i * 6 + j].to_bits(), "{what} hessian[{i}][{j}]");
            }
        }
    };
    same(&out["exact"], &lib.exact(), "exact");
    for name in ["is", "dr", "taypo-3"] {
        same(&out["estimates"][name], &lib.estimate(name.parse().unwrap()).unwrap(), name);
    }
    // Written to a file when asked, identical to standard output.
    let file = dir.path().join("out.json");
    let o2 = estimate_with(
        dir.path(),
        &p.to_string(),
        &["--estimators", "is,dr,taypo-3", "--output", file.to_str().unwrap()],
    );
    assert!(o2.status.success());
    let from_file: Value = serde_json::from_str(&std::fs::read_to_string(file).unwrap()).unwrap();
    assert_eq!(from_file, out);
}

#[test]
fn estimate_rejects_bad_input_naming_the_field() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let good = example(d);
    let with = |f: &dyn Fn(&mut Value)| {
        let mut p = good.clone();
        f(&mut p);
        p
    };
    // Malformed JSON and missing fields.
    let o = estimate_with(d, "{\"gamma\": 0.8,", &[]);
    assert!(!o.status.success() && stderr(&o).contains("parse"), "{}", stderr(&o));
    rejects(d, &with(&|p| drop(p.as_object_mut().unwrap().remove("rewards"))), &[], &["rewards"]);
    // Ragged and mismatched shapes.
    rejects(
        d,
        &with(&|p| drop(p["transitions"][1][0].as_array_mut().unwrap().pop())),
        &[],
        &["transitions[1][0]"],
    );
    rejects(d, &with(&|p| drop(p["theta"][2].as_array_mut().unwrap().pop())), &[], &["theta[2]"]);
    rejects(d, &with(&|p| drop(p["behaviour"].as_array_mut().unwrap().pop())), &[], &["behaviour"]);
    // Probabilities: sums and signs.
    rejects(
        d,
        &with(&|p| p["transitions"][0][1] = json!([0.5, 0.4, 0.2])),
        &[],
        &["transitions[0][1]", "sum"],
    );
    rejects(d, &with(&|p| p["behaviour"][1] = json!([1.5, -0.5])), &[], &["behaviour[1][1]", "≥ 0"]);
    // Non-finite numbers (JSON cannot spell NaN; a huge literal overflows).
    rejects(d, &with(&|p| p["rewards"][0][0] = json!("NaN")), &[], &["rewards"]);
    let overflow = good.to_string().replacen("\"gamma\":0.8", "\"gamma\":1e999", 1);
    let o = estimate_with(d, &overflow, &[]);
    assert!(!o.status.success() && stderr(&o).contains("gamma"), "{}", stderr(&o));
    // Indices and lengths.
    rejects(
        d,
        &with(&|p| p["trajectories"][2]["states"][1] = json!(7)),
        &[],
        &["trajectories[2].states[1]", "7"],
    );
    rejects(
        d,
        &with(&|p| p["trajectories"][0]["actions"][0] = json!(-1)),
        &[],
        &["trajectories[0].actions[0]", "-1"],
    );
    rejects(
        d,
        &with(&|p| drop(p["trajectories"][1]["states"].as_array_mut().unwrap().pop())),
        &[],
        &["trajectories[1].states"],
    );
    rejects(
        d,
        &with(&|p| drop(p["trajectories"][3]["rewards"].as_array_mut().unwrap().pop())),
        &[],
        &["trajectories[3].rewards"],
    );
    rejects(d, &with(&|p| p["start_state"] = json!(3)), &[], &["start_state"]);
    rejects(d, &with(&|p| p["trajectories"] = json!([])), &[], &["trajectories"]);
    // μ(a|x) = 0 for a taken action.
    let zero_mu = with(&|p| {
        let x = p["trajectories"][0]["states"][0].as_u64().unwrap() as usize;
        let a = p["trajectories"][0]["actions"][0].as_u64().unwrap() as usize;
        let mut row = vec![0.0; 2];
        row[1 - a] = 1.0;
        p["behaviour"][x] = json!(row);
    });
    rejects(d, &zero_mu, &[], &["trajectories[0].actions[0]", "μ"]);
    // γ outside [0, 1).
    rejects(d, &with(&|p| p["gamma"] = json!(1.0)), &[], &["gamma"]);
    rejects(d, &with(&|p| p["gamma"] = json!(-0.1)), &[], &["gamma"]);
    // Estimators: unknown names, K < 1, critics.
    rejects(d, &good, &["--estimators", "dr,foo"], &["foo"]);
    rejects(d, &good, &["--estimators", "taypo-0"], &["taypo-0"]);
    rejects(d, &good, &["--estimators", "taypo-x"], &["taypo-x"]);
    let no_critic = with(&|p| drop(p.as_object_mut().unwrap().remove("critic")));
    rejects(d, &no_critic, &["--estimators", "dr"], &["critic", "dr"]);
    assert!(estimate_with(d, &no_critic.to_string(), &["--estimators", "is"]).status.success());
    let action = with(&|p| p["critic"] = json!({"action_values": [[0.1, 0.2], [0.3, 0.4], [0.5, 0.6]]}));
    rejects(d, &action, &["--estimators", "dr-trunc"], &["dr-trunc", "action_values"]);
    assert!(estimate_with(d, &action.to_string(), &["--estimators", "dr,taypo-2"]).status.success());
    rejects(d, &with(&|p| p["critic"] = json!({"state_values": [1.0, 2.0]})), &[], &["critic.state_values"]);
    rejects(d, &with(&|p| p["behavior_typo"] = json!(1)), &[], &["behavior_typo"]);
    // A missing input file.
    let o = metagrad(&["estimate", "--input", "/nonexistent/problem.json"]);
    assert!(!o.status.success() && stderr(&o).contains("/nonexistent/problem.json"));
}

fn read_csv(path: &Path) -> (Vec<String>, Vec<Vec<String>>) {
    let mut r = csv::Reader::from_path(path).unwrap();
    let header = r.headers().unwrap().iter().map(String::from).collect();
    let rows = r.records().map(|x| x.unwrap().iter().map(String::from).collect()).collect();
    (header, rows)
}

fn small_run(out: &Path, threads: &str) -> Output {
    metagrad(&[
        "tabular",
        "--threads",
        threads,
        "--trials",
        "2",
        "--n",
        "50",
        "--n-grid",
        "20,50",
        "--eps",
        "0,0.5",
        "--out",
        out.to_str().unwrap(),
    ])
}

#[test]
fn tabular_files_are_consistent_and_deterministic() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (dir.path().join("a"), dir.path().join("b"));
    let oa = small_run(&a, "1");
    assert!(oa.status.success(), "{}", stderr(&oa));
    let ob = small_run(&b, "2");
    assert!(ob.status.success(), "{}", stderr(&ob));
    for f in ["trials.csv", "summary.csv"] {
        assert_eq!(
            std::fs::read(a.join(f)).unwrap(),
            std::fs::read(b.join(f)).unwrap(),
            "{f} differs across thread counts"
        );
    }
    let (th, trials) = read_csv(&a.join("trials.csv"));
    assert_eq!(&th[..7], &["sweep", "estimator", "eps", "n", "trial", "grad_corr", "hess_corr"]);
    assert!(th.contains(&"metagrad_corr".to_string()));
    // 3 sweeps: eps (2 ε) + n (2 N) + meta (2 ε), × 2 trials × 5 estimators.
    assert_eq!(trials.len(), (2 + 2 + 2) * 2 * 5);
    let (sh, summary) = read_csv(&a.join("summary.csv"));
    assert_eq!(
        &sh[..9],
        &["sweep", "estimator", "eps", "n", "trials", "grad_mean", "grad_se", "hess_mean", "hess_se"]
    );
    assert!(sh.contains(&"metagrad_mean".to_string()) && sh.contains(&"metagrad_se".to_string()));
    assert_eq!(summary.len(), 6 * 5);
    // The summary's means are the trials' means.
    let col = |h: &[String], name: &str| h.iter().position(|c| c == name).unwrap();
    for s in &summary {
        let key = |r: &Vec<String>| (r[0].clone(), r[1].clone(), r[2].parse::<f64>().unwrap(), r[3].clone());
        let group: Vec<&Vec<String>> = trials.iter().filter(|t| key(t) == key(s)).collect();
        assert_eq!(group.len(), 2);
        for (metric, mean) in [("grad_corr", "grad_mean"), ("hess_corr", "hess_mean")] {
            let m: f64 = group.iter().map(|t| t[col(&th, metric)].parse::<f64>().unwrap()).sum::<f64>() / 2.0;
            let got: f64 = s[col(&sh, mean)].parse().unwrap();
            assert!((m - got).abs() < 1e-12, "{metric}");
            assert!((-1.0..=1.0).contains(&got));
        }
        let meta = &s[col(&sh, "metagrad_mean")];
        assert_eq!(s[0] == "meta", !meta.is_empty());
    }
    // config.json holds every setting and the seed, and round-trips.
    let cfg: Value = serde_json::from_str(&std::fs::read_to_string(a.join("config.json")).unwrap()).unwrap();
    assert_eq!(cfg["command"], "tabular");
    assert_eq!(cfg["version"], env!("CARGO_PKG_VERSION"));
    // The commit built from: 40 hex digits in a git checkout (CI clones one).
    let commit = cfg["commit"].as_str().unwrap();
    assert!(
        commit == "unknown" || (commit.len() == 40 && commit.chars().all(|c| c.is_ascii_hexdigit())),
        "{commit}"
    );
    assert_eq!(cfg["settings"]["seed"], 0);
    assert_eq!(cfg["settings"]["n"], 50);
    let back: metagrad::experiments::tabular_study::StudyParams =
        serde_json::from_value(cfg["settings"].clone()).unwrap();
    assert_eq!(back.n_grid, vec![20, 50]);
    assert_eq!(back.estimators.len(), 5);
    // Another seed gives other numbers.
    let c = dir.path().join("c");
    let oc = metagrad(&[
        "tabular",
        "--sweep",
        "eps",
        "--trials",
        "2",
        "--n",
        "50",
        "--eps",
        "0,0.5",
        "--seed",
        "7",
        "--out",
        c.to_str().unwrap(),
    ]);
    assert!(oc.status.success());
    assert_ne!(read_csv(&c.join("trials.csv")).1[0], trials[0]);
}

#[test]
fn tabular_biasvar_files_are_complete_and_deterministic() {
    let dir = tempfile::tempdir().unwrap();
    let run = |out: &Path, threads: &str| {
        let o = metagrad(&[
            "tabular",
            "--sweep",
            "biasvar",
            "--threads",
            threads,
            "--trials",
            "2",
            "--eps",
            "0,0.5",
            "--n-grid",
            "10,100",
            "--states",
            "6",
            "--actions",
            "3",
            "--horizon",
            "8",
            "--estimators",
            "is,taypo-1,taypo-2",
            "--biasvar-trajectories",
            "4000",
            "--biasvar-chunk",
            "100",
            "--out",
            out.to_str().unwrap(),
        ]);
        assert!(o.status.success(), "{}", stderr(&o));
        o
    };
    let (a, b) = (dir.path().join("a"), dir.path().join("b"));
    let printed = String::from_utf8_lossy(&run(&a, "1").stdout).to_string();
    run(&b, "2");
    let files = [
        "biasvar.csv",
        "biasvar_summary.csv",
        "biasvar_predictions.csv",
        "biasvar_crossover.csv",
        "summary.csv",
    ];
    for f in files {
        assert_eq!(
            std::fs::read(a.join(f)).unwrap(),
            std::fs::read(b.join(f)).unwrap(),
            "{f} differs across thread counts"
        );
    }
    for fig in
        ["biasvar_gradient", "biasvar_hessian", "biasvar_mse_vs_n", "biasvar_corr_vs_n", "fig1c_n_sweep"]
    {
        assert!(a.join(format!("{fig}.png")).exists() && a.join(format!("{fig}.svg")).exists(), "{fig}");
    }
    let (h, rows) = read_csv(&a.join("biasvar.csv"));
    assert_eq!(&h[..6], &["estimator", "eps", "quantity", "target", "trial", "trajectories"]);
    assert!(h.contains(&"mse_n10".to_string()) && h.contains(&"mse_n100".to_string()));
    assert_eq!(rows.len(), 2 * 2 * 3 * 2 * 2);
    // An empty bias² cell exactly when the bias is not detectable.
    let col = |name: &str| h.iter().position(|c| c == name).unwrap();
    for r in &rows {
        assert_eq!(r[col("bias2")].is_empty(), r[col("bias_detectable")] == "false");
    }
    assert!(printed.contains("not detectable") && printed.contains("taypo-2 overtakes taypo-1"), "{printed}");
    let (_, n_rows) = read_csv(&a.join("trials.csv"));
    assert!(n_rows.iter().all(|r| r[0] == "n"));
    // M must split into 20 groups of whole chunks.
    let r = metagrad(&[
        "tabular",
        "--sweep",
        "biasvar",
        "--biasvar-trajectories",
        "30000",
        "--out",
        a.to_str().unwrap(),
    ]);
    assert!(!r.status.success() && stderr(&r).contains("biasvar-trajectories"), "{}", stderr(&r));
}

#[test]
fn tabular_rejects_bad_flags() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("r");
    let o = out.to_str().unwrap();
    let cases: &[(&[&str], &str)] = &[
        (&["--eps", "0,1.5"], "eps"),
        (&["--n", "0"], "n"),
        (&["--n-grid", "10,0"], "n-grid"),
        (&["--estimators", "dr,nope"], "nope"),
        (&["--estimators", "taypo-0"], "taypo-0"),
        (&["--trials", "0"], "trials"),
        (&["--gamma", "1"], "gamma"),
        (&["--states", "0"], "states"),
        (&["--truncation=-1"], "truncation"),
    ];
    for (flags, want) in cases {
        let mut args = vec!["tabular", "--sweep", "eps", "--trials", "1", "--n", "5", "--out", o];
        args.extend_from_slice(flags);
        let r = metagrad(&args);
        let err = stderr(&r);
        assert!(!r.status.success(), "{flags:?} accepted");
        assert!(err.contains(want) && !err.contains("panicked"), "{flags:?}: {err}");
    }
    // An output "folder" that is a file.
    let file = dir.path().join("file");
    std::fs::write(&file, "x").unwrap();
    let r = metagrad(&[
        "tabular",
        "--sweep",
        "eps",
        "--trials",
        "1",
        "--n",
        "5",
        "--out",
        file.to_str().unwrap(),
    ]);
    assert!(!r.status.success() && stderr(&r).contains(file.to_str().unwrap()), "{}", stderr(&r));
}
