//! Hostile input, table-driven: every hostile-input case is a row
//! (arguments, input, expected exit code, words the error must contain). None may panic,
//! exhaust memory or exit 0 with a broken result.

use std::io::Write;
use std::path::Path;
use std::process::{Command, Output, Stdio};

use serde_json::{Value, json};

fn metagrad(args: &[&str], stdin: Option<&[u8]>) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_metagrad"))
        .args(args)
        .stdin(if stdin.is_some() { Stdio::piped() } else { Stdio::null() })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("binary runs");
    if let Some(bytes) = stdin {
        // The tool may refuse before reading everything: ignore a broken pipe.
        let _ = child.stdin.take().unwrap().write_all(bytes);
    }
    child.wait_with_output().unwrap()
}

/// A small valid problem (2 states, 2 actions, 3 trajectories of 4 steps).
fn problem(dir: &Path) -> Value {
    let path = dir.join("p.json");
    let p = path.to_str().unwrap();
    let args =
        ["example-problem", "--states", "2", "--actions", "2", "--horizon", "4", "--n", "3", "--output", p];
    let o = metagrad(&args, None);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// One row of the table: what to run and what must come back.
struct Case {
    name: &'static str,
    args: Vec<String>,
    stdin: Option<Vec<u8>>,
    /// Expected exit code.
    code: i32,
    /// Words the standard error must contain (exit ≠ 0).
    want: Vec<&'static str>,
}

fn case(name: &'static str, args: &[&str], code: i32, want: &[&'static str]) -> Case {
    Case { name, args: args.iter().map(|s| s.to_string()).collect(), stdin: None, code, want: want.to_vec() }
}

fn run_table(cases: Vec<Case>) {
    let mut failures = Vec::new();
    for c in cases {
        let args: Vec<&str> = c.args.iter().map(String::as_str).collect();
        let o = metagrad(&args, c.stdin.as_deref());
        let err = String::from_utf8_lossy(&o.stderr);
        let code = o.status.code();
        let mut problems = Vec::new();
        if code != Some(c.code) {
            problems.push(format!("exit {code:?}, expected {}", c.code));
        }
        if err.contains("panicked") || err.contains("memory allocation") {
            problems.push("crashed".into());
        }
        for w in &c.want {
            if !err.contains(w) {
                problems.push(format!("error does not mention {w:?}"));
            }
        }
        if c.code == 0 {
            let out = String::from_utf8_lossy(&o.stdout);
            if out.contains("null") {
                problems.push("output holds null".into());
            }
        }
        if !problems.is_empty() {
            failures.push(format!("{}: {} (stderr: {})", c.name, problems.join("; "), err.trim()));
        }
    }
    assert!(failures.is_empty(), "{} case(s) failed:\n{}", failures.len(), failures.join("\n"));
}

/// Writes `content` to `dir/name` and returns the path as a string.
fn file(dir: &Path, name: &str, content: &[u8]) -> String {
    let p = dir.join(name);
    std::fs::write(&p, content).unwrap();
    p.to_str().unwrap().to_string()
}

#[test]
fn estimate_refuses_hostile_problem_files() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let p = problem(d);
    let text = p.to_string();
    let good = file(d, "good.json", text.as_bytes());
    let mut big = p.clone();
    // A large declared shape in a small file (D = 3001 × 60000).
    let mut rows = vec![json!(vec![vec![0.5, 0.5]; 60000])];
    rows.extend(std::iter::repeat_n(json!([]), 3000));
    big["transitions"] = json!(rows);
    let big = file(d, "big.json", big.to_string().as_bytes());
    let mut huge_critic = p.clone();
    huge_critic["critic"] = json!({"state_values": [1e308, -1e308]});
    for t in huge_critic["trajectories"].as_array_mut().unwrap() {
        t["states"] = json!([0, 1, 0, 1, 0]);
    }
    let huge_critic = file(d, "huge_critic.json", huge_critic.to_string().as_bytes());
    let mut huge_rewards = p.clone();
    for t in huge_rewards["trajectories"].as_array_mut().unwrap() {
        t["rewards"] = json!(vec![1e308; 4]);
    }
    let huge_rewards = file(d, "huge_rewards.json", huge_rewards.to_string().as_bytes());
    let trailing = file(d, "trailing.json", format!("{text} trailing garbage {{").as_bytes());
    let twice = file(d, "twice.json", format!("{text}\n{text}").as_bytes());
    let nul = file(d, "nul.json", format!("{text}\0").as_bytes());
    let array = file(d, "array.json", format!("[{text}]").as_bytes());
    let empty = file(d, "empty.json", b"  \n");
    let binary = file(d, "binary.json", b"{\xff\xfe}");
    let folder = d.to_str().unwrap().to_string();
    let e = |name, extra: &[&str], code, want: &[&'static str]| {
        let mut args = vec!["estimate"];
        args.extend_from_slice(extra);
        case(name, &args, code, want)
    };
    let mut cases = vec![
        e(
            "declared shape too large",
            &["--input", &big],
            2,
            &["transitions", "3001 × 60000", "--max-params"],
        ),
        e(
            "taypo-K with K = u64::MAX",
            &["--input", &good, "--estimators", "taypo-18446744073709551615"],
            0,
            &[],
        ),
        e("taypo-K with K = 10^9", &["--input", &good, "--estimators", "taypo-1000000000"], 0, &[]),
        e(
            "critic 1e308",
            &["--input", &huge_critic, "--estimators", "dr"],
            2,
            &["estimator dr", "not finite"],
        ),
        e(
            "rewards 1e308",
            &["--input", &huge_rewards, "--estimators", "is"],
            2,
            &["estimator is", "not finite"],
        ),
        e("trailing garbage", &["--input", &trailing], 2, &["trailing", "one JSON document"]),
        e("file concatenated with itself", &["--input", &twice], 2, &["one JSON document"]),
        e("NUL byte after the document", &["--input", &nul], 2, &["one JSON document"]),
        e("top-level array", &["--input", &array], 2, &["top level must be a JSON object"]),
        e("empty file", &["--input", &empty], 2, &["empty"]),
        e("not UTF-8", &["--input", &binary], 2, &["UTF-8"]),
        e("folder as input", &["--input", &folder], 2, &["folder"]),
        e("missing file said once", &["--input", "/nonexistent/p.json"], 2, &["No such file"]),
        e(
            "too many parameters",
            &["--input", &good, "--max-params", "3"],
            2,
            &["D = |X|·|A|", "--max-params"],
        ),
        e("too many steps", &["--input", &good, "--max-steps", "11"], 2, &["12", "--max-steps"]),
        e("output into a folder", &["--input", &good, "--output", &folder], 2, &["cannot write"]),
        case(
            "--threads 10^9",
            &["--threads", "1000000000", "estimate", "--input", &good],
            2,
            &["--threads", "1024"],
        ),
    ];
    #[cfg(unix)]
    cases.push(e(
        "/dev/zero",
        &["--input", "/dev/zero", "--max-input-mb", "1"],
        2,
        &["limit", "--max-input-mb"],
    ));
    let mut stdin = e("--input - reads standard input", &["--input", "-"], 0, &[]);
    stdin.stdin = Some(text.clone().into_bytes());
    cases.push(stdin);
    let mut stdin_bad =
        e("--input - with trailing content", &["--input", "-"], 2, &["standard input", "one JSON"]);
    stdin_bad.stdin = Some(format!("{text}]").into_bytes());
    cases.push(stdin_bad);
    run_table(cases);

    // Errors say each thing once.
    let o = metagrad(&["estimate", "--input", "/nonexistent/p.json"], None);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(err.matches("No such file").count(), 1, "{err}");
    let o = metagrad(&["estimate", "--input", &good, "--output", &folder], None);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.matches("os error").count() <= 1, "{err}");

    // TayPO-K with K > T equals TayPO-T (T = 4 here).
    let out = |k: &str| -> Value {
        let o = metagrad(&["estimate", "--input", &good, "--estimators", k], None);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        serde_json::from_slice::<Value>(&o.stdout).unwrap()["estimates"][k].clone()
    };
    assert_eq!(out("taypo-4"), out("taypo-18446744073709551615"));
}

#[test]
fn flags_refuse_sizes_above_their_limits() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("o");
    let out = out.to_str().unwrap();
    let max = "18446744073709551615";
    let t = |name, flag: &str, value: &str, want: &[&'static str]| {
        case(name, &["tabular", flag, value, "--out", out], 2, want)
    };
    let m = |name, flag: &str, value: &str, want: &[&'static str]| {
        case(name, &["meta-rl", flag, value, "--out", out], 2, want)
    };
    run_table(vec![
        t("tabular --states max", "--states", max, &["states", "overflows", "--max-params"]),
        t("tabular --actions max", "--actions", max, &["states", "overflows"]),
        t("tabular --n max", "--n", max, &["invalid n", "overflows", "--max-steps"]),
        t("tabular --n-grid max", "--n-grid", max, &["n-grid", "overflows"]),
        t("tabular --horizon max", "--horizon", max, &["overflows"]),
        t("tabular --trials 1e9", "--trials", "1000000000", &["trials", "1000000000", "100000"]),
        t("tabular --n 1e9", "--n", "1000000000", &["invalid n", "20000000000", "--max-steps"]),
        t("tabular --horizon 1e9", "--horizon", "1000000000", &["--max-steps"]),
        t("tabular --states 100000", "--states", "100000", &["500000", "--max-params"]),
        t("tabular 1 state × 3000 actions", "--actions", "3000", &["3000", "--max-params"]),
        m("meta-rl --tasks max", "--tasks", max, &["steps per iteration", "overflows"]),
        m("meta-rl --horizon max", "--horizon", max, &["overflows"]),
        m("meta-rl --inner-steps max", "--inner-steps", max, &["overflows"]),
        m("meta-rl --hidden max", "--hidden", max, &["hidden", "parameters"]),
        m("meta-rl --rollouts 1e9", "--rollouts", "1000000000", &["--max-steps-per-iteration"]),
        m("meta-rl --tasks 1e9", "--tasks", "1000000000", &["--max-steps-per-iteration"]),
        m("meta-rl --horizon 1e9", "--horizon", "1000000000", &["--max-steps-per-iteration"]),
        m("meta-rl --hidden 100000,100000", "--hidden", "100000,100000", &["hidden", "1000000"]),
        m("meta-rl --adam-lr 1e308", "--adam-lr", "1e308", &["adam-lr", "1e308"]),
        m("meta-rl --promp-steps max", "--promp-steps", max, &["invalid promp-steps", max, "10000"]),
        case(
            "meta-rl --test-tasks max",
            &["meta-rl", "--test-every", "1", "--test-tasks", max, "--out", out],
            2,
            &["invalid test-tasks", "overflows"],
        ),
        case(
            "meta-rl --test-episodes max",
            &["meta-rl", "--test-every", "1", "--test-episodes", max, "--out", out],
            2,
            &["invalid test-episodes", "overflows", "--max-steps-per-iteration"],
        ),
        case("--threads 10^9", &["--threads", "1000000000", "tabular", "--out", out], 2, &["--threads"]),
    ]);
}

/// Files in `dir` (recursively) whose names mark a temporary file.
fn leftovers(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(leftovers(&p));
        } else if p.file_name().unwrap().to_string_lossy().contains(".tmp") {
            out.push(p.display().to_string());
        }
    }
    out
}

#[test]
fn checkpoints_are_validated_like_user_input() {
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("run");
    let run_s = run.to_str().unwrap();
    let small = ["--tasks", "2", "--rollouts", "2", "--horizon", "5", "--hidden", "4", "--algo", "promp"];
    let mut args = vec!["meta-rl", "--iterations", "1", "--out", run_s];
    args.extend_from_slice(&small);
    let o = metagrad(&args, None);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(leftovers(dir.path()).is_empty(), "{:?}", leftovers(dir.path()));
    let good: Value =
        serde_json::from_str(&std::fs::read_to_string(run.join("checkpoint.json")).unwrap()).unwrap();
    type Tamper = fn(&mut Value);
    let tampers: [(&str, Tamper, &[&'static str]); 8] = [
        (
            "iteration disagrees with the history",
            |c| c["state"]["iteration"] = json!(5),
            &["checkpoint iteration", "5", "1 iterations"],
        ),
        (
            "Adam m of the wrong length",
            |c| {
                c["state"]["adam"]["m"].as_array_mut().unwrap().pop();
            },
            &["checkpoint adam.m", "expected"],
        ),
        (
            "negative learning rate",
            |c| c["state"]["adam"]["cfg"]["lr"] = json!(-0.001),
            &["checkpoint adam.lr", "-0.001"],
        ),
        (
            "wrapped step counter",
            |c| c["state"]["adam"]["t"] = json!(u64::MAX),
            &["checkpoint adam.t", "18446744073709551615"],
        ),
        (
            "history out of order",
            |c| c["state"]["history"][0]["iteration"] = json!(3),
            &["history[0].iteration"],
        ),
        (
            "theta too short",
            |c| {
                c["state"]["theta"].as_array_mut().unwrap().pop();
            },
            &["checkpoint theta", "entries"],
        ),
        ("env steps disagree", |c| c["state"]["env_steps"] = json!(7), &["checkpoint env_steps"]),
        ("negative wall time", |c| c["state"]["wall_s"] = json!(-1.0), &["checkpoint wall_s"]),
    ];
    let mut cases = Vec::new();
    for (i, (name, tamper, want)) in tampers.into_iter().enumerate() {
        let d = dir.path().join(format!("t{i}"));
        std::fs::create_dir(&d).unwrap();
        let mut c = good.clone();
        tamper(&mut c);
        std::fs::write(d.join("checkpoint.json"), c.to_string()).unwrap();
        let d = d.to_str().unwrap().to_string();
        let mut args = vec!["meta-rl", "--iterations", "2", "--resume", "--out", &d];
        args.extend_from_slice(&small);
        cases.push(case(name, &args, 2, want));
    }
    let trailing = dir.path().join("trailing");
    std::fs::create_dir(&trailing).unwrap();
    std::fs::write(trailing.join("checkpoint.json"), format!("{good} {{")).unwrap();
    let t = trailing.to_str().unwrap().to_string();
    let mut args = vec!["meta-rl", "--iterations", "2", "--resume", "--out", &t];
    args.extend_from_slice(&small);
    cases.push(case("checkpoint with trailing content", &args, 2, &["checkpoint"]));
    run_table(cases);
    // The untouched checkpoint resumes.
    let mut args = vec!["meta-rl", "--iterations", "2", "--resume", "--out", run_s];
    args.extend_from_slice(&small);
    let o = metagrad(&args, None);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
}

#[test]
fn figures_that_cannot_be_drawn_are_skipped_after_the_tables() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("eps");
    let args = [
        "tabular",
        "--eps=5e-324",
        "--sweep",
        "eps",
        "--trials",
        "2",
        "--n",
        "20",
        "--out",
        out.to_str().unwrap(),
    ];
    let o = metagrad(&args, None);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{err}");
    assert!(err.contains("warning: skipped"), "{err}");
    for f in ["trials.csv", "summary.csv", "config.json"] {
        assert!(std::fs::metadata(out.join(f)).unwrap().len() > 0, "{f}");
    }
    assert!(leftovers(dir.path()).is_empty(), "{:?}", leftovers(dir.path()));
    // An output file is replaced whole: a failed estimate keeps the previous content.
    let p = problem(dir.path());
    let mut bad = p.clone();
    bad["critic"] = json!({"state_values": [1e308, -1e308]});
    for t in bad["trajectories"].as_array_mut().unwrap() {
        t["states"] = json!([0, 1, 0, 1, 0]);
    }
    let input = file(dir.path(), "bad.json", bad.to_string().as_bytes());
    let output = file(dir.path(), "result.json", b"previous");
    let o = metagrad(&["estimate", "--input", &input, "--estimators", "dr", "--output", &output], None);
    assert_eq!(o.status.code(), Some(2));
    assert_eq!(std::fs::read(&output).unwrap(), b"previous");
    assert!(leftovers(dir.path()).is_empty(), "{:?}", leftovers(dir.path()));
}
