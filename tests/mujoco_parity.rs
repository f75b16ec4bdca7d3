//! Parity of the MuJoCo meta-task environments with Gymnasium's v5 envs (the reference).
//!
//! Runs `tests/parity/gym_reference.py` in the project venv (`.deps/venv`, created by
//! `scripts/install-mujoco.sh`), then replays every recorded case here: same task, same initial
//! qpos/qvel, same actions, same frame skip. After each env step qpos, qvel and the observation
//! must equal Gymnasium's to 1e-9, and the reward too where the definitions coincide (every
//! step before Gymnasium reports termination: metagrad keeps the alive bonus on the terminal
//! step, as ProMP does, where Gymnasium v5 drops it). Termination flags must agree everywhere.
#![cfg(feature = "mujoco")]

use std::path::PathBuf;
use std::process::Command;

use metagrad::envs::MetaEnv;
use metagrad::envs::mujoco::{EnvKind, LocomotionEnv};
use serde::Deserialize;

const TOL: f64 = 1e-9;

#[derive(Deserialize)]
struct Reference {
    mujoco_version: String,
    gymnasium_version: String,
    cases: Vec<Case>,
}

#[derive(Deserialize)]
struct Case {
    env: String,
    gym_id: String,
    task: Vec<f64>,
    qpos0: Vec<f64>,
    qvel0: Vec<f64>,
    obs0: Vec<f64>,
    actions: Vec<Vec<f64>>,
    qpos: Vec<Vec<f64>>,
    qvel: Vec<Vec<f64>>,
    obs: Vec<Vec<f64>>,
    reward: Vec<f64>,
    terminated: Vec<bool>,
}

fn reference() -> Reference {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let python = root.join(".deps/venv/bin/python");
    assert!(python.is_file(), "{} not found: run scripts/install-mujoco.sh first", python.display());
    let out = tempfile::NamedTempFile::new().expect("temp file");
    let status = Command::new(&python)
        .arg(root.join("tests/parity/gym_reference.py"))
        .arg(out.path())
        .status()
        .expect("run gym_reference.py");
    assert!(status.success(), "gym_reference.py failed: {status}");
    let text = std::fs::read_to_string(out.path()).expect("read reference JSON");
    serde_json::from_str(&text).expect("parse reference JSON")
}

/// Asserts equality to [`TOL`]; returns the largest absolute difference.
fn assert_close(what: &str, case: &str, step: usize, ours: &[f64], theirs: &[f64]) -> f64 {
    assert_eq!(ours.len(), theirs.len(), "{case} step {step}: {what} length");
    for (i, (a, b)) in ours.iter().zip(theirs).enumerate() {
        assert!(
            (a - b).abs() <= TOL,
            "{case} step {step}: {what}[{i}] = {a}, Gymnasium {b} (diff {:e})",
            (a - b).abs()
        );
    }
    ours.iter().zip(theirs).fold(0.0f64, |m, (a, b)| m.max((a - b).abs()))
}

#[test]
fn parity_with_gymnasium_v5() {
    let reference = reference();
    assert_eq!(reference.mujoco_version, "3.17.0");
    assert_eq!(reference.gymnasium_version, "1.4.0");
    let mut covered = std::collections::BTreeSet::new();
    for case in &reference.cases {
        let label = format!("{} vs {} (task dim {})", case.env, case.gym_id, case.task.len());
        let kind = EnvKind::from_name(&case.env).expect("known env");
        let mut env = LocomotionEnv::new(kind).expect("load env");
        env.try_set_task(&case.task).expect("set task");
        env.reset_to(&case.qpos0, &case.qvel0).expect("set state");
        let mut max_diff = assert_close("obs", &label, 0, &env.observation(), &case.obs0);
        let mut obs = vec![0.0; env.obs_dim()];
        let mut gym_done = false;
        for (t, action) in case.actions.iter().enumerate() {
            let step = env.try_step(action, &mut obs).expect("step");
            let s = t + 1;
            max_diff = max_diff
                .max(assert_close("qpos", &label, s, env.sim().qpos(), &case.qpos[t]))
                .max(assert_close("qvel", &label, s, env.sim().qvel(), &case.qvel[t]))
                .max(assert_close("obs", &label, s, &obs, &case.obs[t]));
            assert_eq!(step.done, case.terminated[t], "{label} step {s}: termination");
            if !gym_done && !case.terminated[t] {
                max_diff = max_diff.max((step.reward - case.reward[t]).abs());
                assert!(
                    (step.reward - case.reward[t]).abs() <= TOL,
                    "{label} step {s}: reward {} vs Gymnasium {}",
                    step.reward,
                    case.reward[t]
                );
            }
            gym_done |= case.terminated[t];
        }
        eprintln!("{label}: {} steps, max |difference| {max_diff:e}", case.actions.len());
        covered.insert(case.env.clone());
    }
    assert_eq!(covered.len(), EnvKind::NAMES.len(), "every env has a case");
}
