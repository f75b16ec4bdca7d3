//! Single-thread throughput of the MuJoCo meta-task environments: raw `mj_step` calls per
//! second (the simulation ceiling) and environment steps per second (frame skip, reward,
//! observation and resets on termination included), per robot.
//!
//! Run: `cargo bench --features mujoco --bench mujoco_envs`.

use std::hint::black_box;
use std::time::Duration;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use metagrad::envs::MetaEnv;
use metagrad::envs::mujoco::{EnvKind, LocomotionEnv};
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// Environment steps per measured batch (one episode of the paper's horizon).
const BATCH: usize = 100;

fn actions(env: &LocomotionEnv, rng: &mut ChaCha8Rng) -> Vec<Vec<f64>> {
    let (lo, hi) = env.action_bounds();
    (0..BATCH).map(|_| lo.iter().zip(&hi).map(|(l, h)| rng.random_range(*l..*h)).collect()).collect()
}

fn bench(c: &mut Criterion) {
    let mut group = c.benchmark_group("mujoco");
    group.sample_size(20).warm_up_time(Duration::from_millis(500)).measurement_time(Duration::from_secs(3));
    for kind in EnvKind::ALL {
        let mut env = LocomotionEnv::new(kind).expect("run scripts/install-mujoco.sh");
        let mut rng = ChaCha8Rng::seed_from_u64(0);
        let task = env.sample_tasks(1, &mut rng).remove(0);
        env.set_task(&task);
        let acts = actions(&env, &mut rng);
        let mut obs = vec![0.0; env.obs_dim()];
        let frame_skip = env.sim().frame_skip();

        // Raw physics along the same kind of trajectories: per environment step set the
        // controls and call mj_step frame_skip times (no reward, observation or cfrc_ext),
        // resetting when the robot becomes unhealthy. Counts mj_step calls.
        group.throughput(Throughput::Elements((BATCH * frame_skip) as u64));
        let mut raw = env.clone();
        let mut raw_rng = rng.clone();
        group.bench_function(format!("mj_step/{}", kind.name()), |b| {
            b.iter(|| {
                raw.reset(&mut raw_rng, &mut obs);
                for a in &acts {
                    let sim = raw.sim_mut();
                    sim.set_ctrl(a).expect("action length");
                    for _ in 0..frame_skip {
                        sim.raw_step();
                    }
                    if !raw.is_healthy() {
                        raw.reset(&mut raw_rng, &mut obs);
                    }
                }
                black_box(raw.sim().qpos()[0])
            })
        });

        // Environment steps: one 100-step episode, resetting on termination.
        group.throughput(Throughput::Elements(BATCH as u64));
        group.bench_function(format!("env_step/{}", kind.name()), |b| {
            b.iter(|| {
                env.reset(&mut rng, &mut obs);
                let mut ret = 0.0;
                for a in &acts {
                    let s = env.step(a, &mut obs);
                    ret += s.reward;
                    if s.done {
                        env.reset(&mut rng, &mut obs);
                    }
                }
                black_box(ret)
            })
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
