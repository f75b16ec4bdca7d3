//! Unit tests of the MuJoCo meta-task environments: task sampling, reward terms, termination,
//! parameter randomisation, determinism and error handling.
#![cfg(feature = "mujoco")]

use metagrad::envs::MetaEnv;
use metagrad::envs::mujoco::{EnvKind, LocomotionEnv, MujocoError, Sim, make_env};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

fn env(kind: EnvKind) -> LocomotionEnv {
    LocomotionEnv::new(kind).expect("load env (run scripts/install-mujoco.sh)")
}

fn rng(seed: u64) -> ChaCha8Rng {
    ChaCha8Rng::seed_from_u64(seed)
}

#[test]
fn dimensions_match_gymnasium_v5() {
    let want = [
        (EnvKind::HalfCheetahRandDirec, 17, 6),
        (EnvKind::AntRandDirec, 105, 8),
        (EnvKind::AntRandGoal, 105, 8),
        (EnvKind::Walker2DRandDirec, 17, 6),
        (EnvKind::HopperRandParams, 11, 3),
        (EnvKind::Walker2DRandParams, 17, 6),
        (EnvKind::HumanoidRandDirec2D, 348, 17),
        (EnvKind::AntRandDirec2D, 105, 8),
    ];
    for (kind, obs, act) in want {
        let e = env(kind);
        assert_eq!((e.obs_dim(), e.act_dim()), (obs, act), "{}", kind.name());
        let (lo, hi) = e.action_bounds();
        assert_eq!((lo.len(), hi.len()), (act, act));
        assert!(lo.iter().zip(&hi).all(|(l, h)| l < h));
        assert_eq!(e.name(), kind.name());
    }
}

#[test]
fn task_sampling_is_seeded_and_in_range() {
    for kind in EnvKind::ALL {
        let e = env(kind);
        let a = e.sample_tasks(400, &mut rng(7));
        assert_eq!(a, e.sample_tasks(400, &mut rng(7)), "{}: seeded", kind.name());
        assert_ne!(a, e.sample_tasks(400, &mut rng(8)), "{}: seed matters", kind.name());
        assert!(a.iter().all(|t| t.len() == e.task_dim()));
        match kind {
            EnvKind::HalfCheetahRandDirec | EnvKind::AntRandDirec | EnvKind::Walker2DRandDirec => {
                let plus = a.iter().filter(|t| t[0] == 1.0).count();
                assert!(a.iter().all(|t| t[0] == 1.0 || t[0] == -1.0));
                assert!((150..250).contains(&plus), "balanced directions: {plus}/400");
            }
            EnvKind::AntRandGoal => {
                assert!(a.iter().all(|t| t[0].hypot(t[1]) <= 3.0));
                // Uniform in the disk of radius 3: E[r^2] = 4.5, E[x] = E[y] = 0.
                let r2 = a.iter().map(|t| t[0] * t[0] + t[1] * t[1]).sum::<f64>() / 400.0;
                assert!((r2 - 4.5).abs() < 0.5, "mean r^2 {r2}");
                let mx = a.iter().map(|t| t[0]).sum::<f64>() / 400.0;
                assert!(mx.abs() < 0.3, "mean x {mx}");
            }
            EnvKind::HumanoidRandDirec2D | EnvKind::AntRandDirec2D => {
                assert!(a.iter().all(|t| (t[0].hypot(t[1]) - 1.0).abs() < 1e-12));
                for quadrant in [(1.0, 1.0), (1.0, -1.0), (-1.0, 1.0), (-1.0, -1.0)] {
                    let n = a.iter().filter(|t| t[0] * quadrant.0 > 0.0 && t[1] * quadrant.1 > 0.0).count();
                    assert!((60..140).contains(&n), "quadrant {quadrant:?}: {n}/400");
                }
            }
            EnvKind::HopperRandParams | EnvKind::Walker2DRandParams => {
                let all: Vec<f64> = a.iter().flatten().copied().collect();
                assert!(all.iter().all(|u| (-3.0..=3.0).contains(u)));
                let mean = all.iter().sum::<f64>() / all.len() as f64;
                let var = all.iter().map(|u| (u - mean).powi(2)).sum::<f64>() / all.len() as f64;
                assert!(mean.abs() < 0.05 && (var - 3.0).abs() < 0.1, "U(-3,3): {mean} {var}");
            }
        }
    }
}

/// Reset, then one step with `action`; returns (x-ish position before, after, reward, done).
fn one_step(e: &mut LocomotionEnv, seed: u64, action: &[f64]) -> (Vec<f64>, Vec<f64>, f64, bool) {
    let mut obs = vec![0.0; e.obs_dim()];
    e.reset(&mut rng(seed), &mut obs).unwrap();
    let before = e.sim().qpos().to_vec();
    let s = e.step(action, &mut obs).unwrap();
    (before, e.sim().qpos().to_vec(), s.reward, s.done)
}

#[test]
fn half_cheetah_reward_terms() {
    let mut e = env(EnvKind::HalfCheetahRandDirec);
    let a = [0.5, -0.3, 0.2, 0.9, -1.0, 0.1];
    let a2: f64 = a.iter().map(|v| v * v).sum();
    let dt = e.sim().dt();
    assert!((dt - 0.05).abs() < 1e-15);
    e.try_set_task(&[1.0]).unwrap();
    let (q0, q1, r_plus, done) = one_step(&mut e, 3, &a);
    assert!(!done);
    e.try_set_task(&[-1.0]).unwrap();
    let (_, _, r_minus, _) = one_step(&mut e, 3, &a);
    let vx = (q1[0] - q0[0]) / dt;
    assert!((r_plus - (vx - 0.05 * a2)).abs() < 1e-12);
    assert!((r_minus - (-vx - 0.05 * a2)).abs() < 1e-12);
}

#[test]
fn ant_reward_terms_and_goal() {
    let a = [0.3; 8];
    let a2 = 8.0 * 0.09;
    let mut e = env(EnvKind::AntRandDirec);
    let (_, _, r_plus, _) = one_step(&mut e, 5, &a);
    let contact = e.ant_contact_cost();
    e.try_set_task(&[-1.0]).unwrap();
    let (_, _, r_minus, _) = one_step(&mut e, 5, &a);
    // r(+1) + r(-1) = 2·(1 − 0.5‖a‖² − contact); contact uses clipped forces.
    assert!(((r_plus + r_minus) / 2.0 - (1.0 - 0.5 * a2 - contact)).abs() < 1e-12);
    assert!(contact >= 0.0 && contact <= 5e-4 * 6.0 * e.sim().nbody() as f64);

    let mut g = env(EnvKind::AntRandGoal);
    g.try_set_task(&[1.0, -2.0]).unwrap();
    let (_, _, r, _) = one_step(&mut g, 5, &a);
    let torso = g.sim().body_xpos(1).unwrap();
    let want = -((torso[0] - 1.0).abs() + (torso[1] + 2.0).abs()) - 0.1 * a2 - g.ant_contact_cost();
    assert!((r - want).abs() < 1e-12, "{r} vs {want}");
}

#[test]
fn ant_2d_direction_reward_terms() {
    // Direction (1, 0) is AntRandDirec's +1, bit for bit, over a whole rollout.
    let mut flat = env(EnvKind::AntRandDirec2D);
    flat.try_set_task(&[1.0, 0.0]).unwrap();
    assert_eq!(rollout(&mut flat, 12, 40), rollout(&mut env(EnvKind::AntRandDirec), 12, 40));
    // Any unit direction: d · (torso xy displacement) / dt − 0.5‖a‖² − contact + 1.
    let a = [0.3, -0.2, 0.5, 0.1, -0.4, 0.2, 0.0, 0.6];
    let a2: f64 = a.iter().map(|v| v * v).sum();
    let mut progress = Vec::new();
    for d in [[0.6, 0.8], [-0.8, 0.6], [0.0, -1.0]] {
        let mut e = env(EnvKind::AntRandDirec2D);
        e.try_set_task(&d).unwrap();
        let mut obs = vec![0.0; e.obs_dim()];
        e.reset(&mut rng(4), &mut obs).unwrap();
        let p0 = e.sim().body_xpos(1).unwrap();
        let s = e.step(&a, &mut obs).unwrap();
        let p1 = e.sim().body_xpos(1).unwrap();
        let v = (d[0] * (p1[0] - p0[0]) + d[1] * (p1[1] - p0[1])) / e.sim().dt();
        let want = v - 0.5 * a2 - e.ant_contact_cost() + 1.0;
        assert!((s.reward - want).abs() < 1e-12, "{d:?}: {} vs {want}", s.reward);
        progress.push(v);
    }
    // The directions see different progress from the same state: the reward reads d.
    assert!(progress.iter().any(|v| (v - progress[0]).abs() > 1e-3), "{progress:?}");
}

#[test]
fn walker_hopper_humanoid_reward_terms() {
    let mut w = env(EnvKind::Walker2DRandDirec);
    let a = [0.1, 0.2, -0.3, 0.4, -0.5, 0.6];
    let a2: f64 = a.iter().map(|v| v * v).sum();
    assert_eq!(w.sim().frame_skip(), 8);
    w.try_set_task(&[-1.0]).unwrap();
    let (q0, q1, r, _) = one_step(&mut w, 9, &a);
    let want = -(q1[0] - q0[0]) / w.sim().dt() + 1.0 - 1e-3 * a2;
    assert!((r - want).abs() < 1e-12);

    let mut h = env(EnvKind::HopperRandParams);
    let (q0, q1, r, _) = one_step(&mut h, 9, &[0.1, 0.2, 0.3]);
    let want = (q1[0] - q0[0]) / h.sim().dt() + 1.0 - 1e-3 * 0.14;
    assert!((r - want).abs() < 1e-12);

    let mut hu = env(EnvKind::HumanoidRandDirec2D);
    let d = [0.6, 0.8];
    hu.try_set_task(&d).unwrap();
    let mut obs = vec![0.0; hu.obs_dim()];
    hu.reset(&mut rng(2), &mut obs).unwrap();
    let c0 = hu.sim().mass_center();
    let a = [0.2; 17];
    let s = hu.step(&a, &mut obs).unwrap();
    let c1 = hu.sim().mass_center();
    let dt = hu.sim().dt();
    let v = (d[0] * (c1[0] - c0[0]) + d[1] * (c1[1] - c0[1])) / dt;
    let want = 0.25 * v - 0.1 * 17.0 * 0.04 - hu.humanoid_contact_cost() + 5.0;
    assert!((s.reward - want).abs() < 1e-12, "{} vs {want}", s.reward);
    assert!(hu.humanoid_contact_cost() <= 10.0);
}

/// Put `e` in its initial pose with qpos[i] = v, step once with zero action.
fn done_after_setting(kind: EnvKind, i: usize, v: f64) -> bool {
    let mut e = env(kind);
    let mut q = e.sim().init_qpos().to_vec();
    q[i] = v;
    let qv = e.sim().init_qvel().to_vec();
    e.reset_to(&q, &qv).unwrap();
    let mut obs = vec![0.0; e.obs_dim()];
    e.step(&vec![0.0; e.act_dim()], &mut obs).unwrap().done
}

#[test]
fn termination_rules() {
    // Planar robots: qpos[1] is the height, qpos[2] the torso angle.
    assert!(!done_after_setting(EnvKind::Walker2DRandDirec, 2, 0.0));
    assert!(done_after_setting(EnvKind::Walker2DRandDirec, 2, 1.2));
    assert!(done_after_setting(EnvKind::Walker2DRandParams, 1, 0.5));
    assert!(!done_after_setting(EnvKind::HopperRandParams, 2, 0.0));
    assert!(done_after_setting(EnvKind::HopperRandParams, 2, 0.3));
    assert!(done_after_setting(EnvKind::HopperRandParams, 1, 0.6));
    // Free-floating robots: qpos[2] is the torso height.
    assert!(done_after_setting(EnvKind::AntRandDirec, 2, 1.5));
    assert!(done_after_setting(EnvKind::AntRandGoal, 2, 1.3));
    assert!(!done_after_setting(EnvKind::AntRandDirec, 2, 0.6));
    assert!(done_after_setting(EnvKind::AntRandDirec2D, 2, 1.5));
    assert!(!done_after_setting(EnvKind::AntRandDirec2D, 2, 0.6));
    assert!(done_after_setting(EnvKind::HumanoidRandDirec2D, 2, 0.7));
    assert!(!done_after_setting(EnvKind::HumanoidRandDirec2D, 2, 1.4));
    // HalfCheetah never terminates, even upside down.
    assert!(!done_after_setting(EnvKind::HalfCheetahRandDirec, 2, 3.0));
}

fn rollout(e: &mut dyn MetaEnv, seed: u64, steps: usize) -> Vec<f64> {
    let mut obs = vec![0.0; e.obs_dim()];
    let mut r = rng(seed);
    e.reset(&mut r, &mut obs).unwrap();
    let mut trace = obs.clone();
    for t in 0..steps {
        let a: Vec<f64> = (0..e.act_dim()).map(|i| ((t * 7 + i) as f64).sin() * 0.8).collect();
        let s = e.step(&a, &mut obs).unwrap();
        trace.extend_from_slice(&obs);
        trace.push(s.reward);
    }
    trace
}

#[test]
fn parameter_randomisation_is_applied_and_restored() {
    for kind in [EnvKind::HopperRandParams, EnvKind::Walker2DRandParams] {
        let fresh = rollout(&mut env(kind), 4, 30);
        let mut e = env(kind);
        let original = e.original_params().clone();
        let tasks = e.sample_tasks(2, &mut rng(11));
        e.try_set_task(&tasks[0]).unwrap();
        let p0 = e.sim().params();
        assert_ne!(p0.body_mass, original.body_mass);
        assert_ne!(p0.dof_damping, original.dof_damping);
        // mass_i = original_i · 1.5^u_i
        for ((m0, m), u) in original.body_mass.iter().zip(&p0.body_mass).zip(&tasks[0]) {
            let want = m0 * 1.5f64.powf(*u);
            assert!((m - want).abs() <= 1e-12 * want.abs().max(1.0));
        }
        let perturbed = rollout(&mut e, 4, 30);
        assert_ne!(perturbed, fresh, "{}: physics changed", kind.name());
        // Switching tasks scales the originals (no compounding).
        e.try_set_task(&tasks[1]).unwrap();
        e.try_set_task(&tasks[0]).unwrap();
        assert_eq!(e.sim().params(), p0);
        // The all-zero task restores the model exactly.
        e.try_set_task(&vec![0.0; e.task_dim()]).unwrap();
        assert_eq!(e.sim().params(), original);
        assert_eq!(rollout(&mut e, 4, 30), fresh, "{}: restored", kind.name());
    }
}

#[test]
fn deterministic_across_clones_and_threads() {
    for kind in EnvKind::ALL {
        let mut e = env(kind);
        let task = e.sample_tasks(1, &mut rng(1)).remove(0);
        e.try_set_task(&task).unwrap();
        let a = rollout(&mut e, 21, 20);
        assert_eq!(a, rollout(&mut e, 21, 20), "{}: same seed", kind.name());
        let clones: Vec<Box<dyn MetaEnv>> = (0..2).map(|_| e.boxed_clone()).collect();
        let traces: Vec<Vec<f64>> = std::thread::scope(|s| {
            let handles: Vec<_> =
                clones.into_iter().map(|mut c| s.spawn(move || rollout(c.as_mut(), 21, 20))).collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        assert!(traces.iter().all(|t| *t == a), "{}: threads", kind.name());
    }
}

#[test]
fn clear_errors_for_bad_input() {
    let err = make_env("cheetah").err().expect("unknown name").to_string();
    assert!(err.contains("cheetah") && err.contains("half-cheetah-rand-direc"), "{err}");
    assert!(make_env("ant-rand-goal").is_ok());
    let missing = Sim::load_path(std::path::Path::new("/nonexistent/ant.xml"), 5).unwrap_err();
    assert!(matches!(missing, MujocoError::AssetMissing(_)));
    assert!(missing.to_string().contains("scripts/install-mujoco.sh"), "{missing}");
    assert!(Sim::load("ant.xml", 0).unwrap_err().to_string().contains("frame_skip"));

    let mut e = env(EnvKind::HalfCheetahRandDirec);
    for bad in [vec![], vec![0.5], vec![1.0, 1.0], vec![f64::NAN]] {
        let msg = e.try_set_task(&bad).unwrap_err().to_string();
        assert!(msg.contains("task"), "{msg}");
    }
    e.try_set_task(&[-1.0]).unwrap();
    // Through the trait: refused with the crate's error type, previous task kept.
    let msg = e.set_task(&[2.0]).unwrap_err().to_string();
    assert!(msg.contains("task") && msg.contains("direction"), "{msg}");
    let (_, _, r, _) = one_step(&mut e, 1, &[0.0; 6]);
    let mut f = env(EnvKind::HalfCheetahRandDirec);
    f.try_set_task(&[-1.0]).unwrap();
    assert_eq!(r, one_step(&mut f, 1, &[0.0; 6]).2);

    let mut obs = vec![0.0; e.obs_dim()];
    let before = e.sim().qpos().to_vec();
    let msg = e.step(&[0.0; 5], &mut obs).unwrap_err().to_string();
    assert!(msg.contains("action"), "{msg}");
    assert_eq!(e.sim().qpos(), &before[..], "a refused step leaves the state");
    let msg = e.reset(&mut rng(1), &mut [0.0; 3]).unwrap_err().to_string();
    assert!(msg.contains("obs"), "{msg}");
    let err = e.try_step(&[0.0; 6], &mut [0.0; 3]).unwrap_err().to_string();
    assert!(err.contains("obs"), "{err}");

    let mut p = env(EnvKind::HopperRandParams);
    let mut t = vec![0.0; p.task_dim()];
    t[3] = 3.5;
    let msg = p.try_set_task(&t).unwrap_err().to_string();
    assert!(msg.contains("exponent 3"), "{msg}");
    let mut h = env(EnvKind::HumanoidRandDirec2D);
    assert!(h.try_set_task(&[1.0, 1.0]).is_err());
    let mut a2d = env(EnvKind::AntRandDirec2D);
    for bad in [vec![1.0], vec![0.0, 0.0], vec![f64::NAN, 1.0], vec![0.6, 0.8, 0.0]] {
        let msg = a2d.try_set_task(&bad).unwrap_err().to_string();
        assert!(msg.contains("task"), "{msg}");
    }
    assert_eq!(a2d.current_task(), Some(vec![1.0, 0.0]), "refused tasks keep the previous one");
    let mut g = env(EnvKind::AntRandGoal);
    assert!(g.try_set_task(&[f64::INFINITY, 0.0]).is_err());
    assert!(e.reset_to(&[0.0; 3], &[0.0; 9]).unwrap_err().to_string().contains("qpos"));
}

#[test]
fn reset_noise_matches_gymnasium_v5_scales() {
    // (kind, qpos half-width, qvel: Some(half-width) uniform, None = 0.1·N(0,1))
    let cases = [
        (EnvKind::HalfCheetahRandDirec, 0.1, None),
        (EnvKind::AntRandDirec, 0.1, None),
        (EnvKind::AntRandDirec2D, 0.1, None),
        (EnvKind::Walker2DRandDirec, 5e-3, Some(5e-3)),
        (EnvKind::HopperRandParams, 5e-3, Some(5e-3)),
        (EnvKind::HumanoidRandDirec2D, 1e-2, Some(1e-2)),
    ];
    for (kind, qs, vs) in cases {
        let mut e = env(kind);
        let mut obs = vec![0.0; e.obs_dim()];
        let mut r = rng(17);
        let (mut dq, mut dv) = (Vec::new(), Vec::new());
        for _ in 0..200 {
            e.reset(&mut r, &mut obs).unwrap();
            let s = e.sim();
            dq.extend(s.qpos().iter().zip(s.init_qpos()).map(|(a, b)| a - b));
            dv.extend(s.qvel().iter().zip(s.init_qvel()).map(|(a, b)| a - b));
        }
        assert!(dq.iter().all(|d| d.abs() <= qs), "{}: qpos noise", kind.name());
        let max = dq.iter().fold(0.0f64, |m, d| m.max(d.abs()));
        assert!(max > 0.9 * qs, "{}: qpos noise spans its range", kind.name());
        let sd = (dv.iter().map(|d| d * d).sum::<f64>() / dv.len() as f64).sqrt();
        match vs {
            Some(w) => {
                assert!(dv.iter().all(|d| d.abs() <= w), "{}: qvel noise", kind.name());
                let want = w / 3f64.sqrt();
                assert!((sd - want).abs() < 0.1 * want, "{}: qvel sd {sd}", kind.name());
            }
            None => assert!((sd - 0.1).abs() < 0.01, "{}: qvel sd {sd}", kind.name()),
        }
    }
}

#[test]
fn mujoco_warnings_go_through_our_handler_once() {
    // Gymnasium's half_cheetah.xml uses the deprecated `settotalmass`: MuJoCo warns at every
    // load. The project's handler records it (printing it once) instead of MuJoCo's default
    // handler, which prints every time and appends to MUJOCO_LOG.TXT in the working directory.
    let _a = env(EnvKind::HalfCheetahRandDirec);
    let _b = env(EnvKind::HalfCheetahRandDirec);
    let seen = metagrad::envs::mujoco::warnings_seen();
    let hits = seen.iter().filter(|w| w.contains("settotalmass")).count();
    assert_eq!(hits, 1, "{seen:?}");
}
