//! Every meta-RL algorithm runs on the MuJoCo meta-tasks (feature `mujoco`), on tiny
//! settings: one meta-iteration each, finite returns, the expected number of env steps,
//! parameters that moved, and a resumed trainer that retraces the uninterrupted one.
#![cfg(feature = "mujoco")]

use metagrad::envs::mujoco::EnvKind;
use metagrad::meta::algos::{Algorithm, Params, Trainer, ValidParams};
use metagrad::policy::Policy;

fn tiny(env: &str, algo: Algorithm) -> ValidParams {
    Params {
        tasks: 2,
        rollouts: 2,
        horizon: 8,
        hidden: vec![8],
        iterations: 2,
        seed: 5,
        ..Params::new(env, algo)
    }
    .validate()
    .unwrap()
}

fn check_one_iteration(env: &str, algo: Algorithm) {
    let mut t = Trainer::new(tiny(env, algo)).unwrap();
    let theta0 = t.policy().params().to_vec();
    let s = t.step().unwrap().unwrap();
    let k = t.params().k();
    assert_eq!(s.post_returns.len(), k, "{env} {algo}");
    assert!(s.pre_return.is_finite() && s.post_returns.iter().all(|r| r.is_finite()), "{env} {algo}: {s:?}");
    // (K + 1) sampling rounds of tasks × rollouts × horizon steps.
    assert_eq!(s.env_steps, ((k + 1) * 2 * 2 * 8) as u64, "{env} {algo}");
    assert_ne!(t.policy().params(), &theta0[..], "{env} {algo}: the outer step did nothing");
}

#[test]
fn all_six_algorithms_run_on_half_cheetah_and_ant_rand_goal() {
    for env in [EnvKind::HalfCheetahRandDirec, EnvKind::AntRandGoal] {
        for algo in Algorithm::PAPER {
            check_one_iteration(env.name(), algo);
        }
    }
}

#[test]
fn every_mujoco_env_runs_a_second_order_algorithm() {
    for env in EnvKind::ALL {
        check_one_iteration(env.name(), Algorithm::PrompTaypo2);
    }
}

#[test]
fn resumed_mujoco_trainer_retraces_the_uninterrupted_one() {
    let p = tiny(EnvKind::HopperRandParams.name(), Algorithm::TrpoMaml);
    let mut full = Trainer::new(p.clone()).unwrap();
    let a: Vec<_> = (0..2).map(|_| full.step().unwrap().unwrap()).collect();
    let mut part = Trainer::new(p.clone()).unwrap();
    part.step().unwrap().unwrap();
    let mut resumed = Trainer::resume(p, part.state().clone()).unwrap();
    let b = resumed.step().unwrap().unwrap();
    assert_eq!(full.policy().params(), resumed.policy().params());
    assert_eq!((a[1].pre_return, &a[1].post_returns), (b.pre_return, &b.post_returns));
}
