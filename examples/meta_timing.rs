//! Wall-clock and CPU time of the meta-RL hot paths, for a machine shared with other jobs:
//! the process CPU time (user + system, from /proc/self/stat) divided by the number of
//! worker threads estimates the wall time on otherwise idle cores (the 40 tasks split
//! evenly over the threads).
//!
//! Run: `cargo run --release --example meta_timing [iterations per algorithm] [reps]`.

use metagrad::meta::algos::{Algorithm, Params, Trainer};
use metagrad::meta::metagrad::{InnerRound, Order, meta_gradient};
use metagrad::meta::objectives::{InnerKind, InnerObjective, TaskData};
use metagrad::meta::optim::ratio_surrogate;
use metagrad::policy::{GaussianMlp, GaussianMlpConfig, Policy, ScoreRows};
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;
use std::hint::black_box;
use std::time::Instant;

/// Process CPU seconds (user + system).
fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the parenthesised command name; utime and stime are fields 14 and 15.
    let rest = stat.rsplit(')').next().unwrap_or("");
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|x| x.parse::<f64>().ok()).unwrap_or(0.0);
    (ticks(11) + ticks(12)) / 100.0
}

fn time<T>(label: &str, reps: usize, threads: usize, mut f: impl FnMut() -> T) {
    let (w0, c0) = (Instant::now(), cpu_seconds());
    for _ in 0..reps {
        black_box(f());
    }
    let wall = w0.elapsed().as_secs_f64() / reps as f64;
    let cpu = (cpu_seconds() - c0) / reps as f64;
    if reps == 0 {
        return;
    }
    println!(
        "{label:44} wall {:9.4} s   cpu {:9.4} s   cpu/threads {:9.4} s",
        wall,
        cpu,
        cpu / threads as f64
    );
}

fn task(policy: &GaussianMlp, seed: u64) -> TaskData {
    let (od, ad, n) = (20, 6, 2000);
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let obs: Vec<f64> = (0..n * od).map(|_| rng.random_range(-1.0..1.0)).collect();
    let mut actions = vec![0.0; n * ad];
    let mut logp = vec![0.0; n];
    policy.sample_batch(&obs, &mut rng, &mut actions, &mut logp).unwrap();
    TaskData {
        obs_dim: od,
        act_dim: ad,
        behaviour_mean: policy.mean_batch(&obs).unwrap(),
        behaviour_log_std: policy.log_std().to_vec(),
        obs,
        actions,
        behaviour_log_probs: logp,
        rewards: (0..n).map(|_| rng.random_range(0.0..1.0)).collect(),
        advantages: (0..n).map(|_| rng.random_range(-1.5..1.5)).collect(),
        baselines: (0..n).map(|_| rng.random_range(0.0..10.0)).collect(),
        adv_std: 3.0,
        path_offsets: (0..=20).map(|p| p * 100).collect(),
        average_return: 0.0,
    }
}

fn main() {
    let iters: usize = std::env::args().nth(1).and_then(|a| a.parse().ok()).unwrap_or(2);
    let reps: usize = std::env::args().nth(2).and_then(|a| a.parse().ok()).unwrap_or(5);
    let threads = rayon::current_num_threads();
    println!("{threads} worker threads");
    let policy = GaussianMlp::new(20, 6, &GaussianMlpConfig::default(), 2).unwrap();
    let tasks: Vec<(TaskData, TaskData)> =
        (0..40).map(|t| (task(&policy, 2 * t), task(&policy, 2 * t + 1))).collect();
    for kind in [InnerKind::Lvc, InnerKind::Taypo2] {
        let inner = InnerObjective::new(kind, 0.99);
        let rounds: Vec<(Vec<InnerRound>, &TaskData)> = tasks
            .iter()
            .map(|(pre, post)| (vec![InnerRound::new(&inner, pre.clone()).unwrap()], post))
            .collect();
        time(&format!("ProMP-size meta-gradient ({kind:?})"), reps, threads, || {
            rounds
                .par_iter()
                .map(|(r, post)| {
                    meta_gradient(&inner, &policy, r, 0.1, Order::Second, |p| {
                        let rows = post.rows(p)?;
                        let o = ratio_surrogate(rows.values(), &post.advantages)?;
                        let mut g = vec![0.0; p.num_params()];
                        rows.vjp_add(&o.d_log, &mut g);
                        Ok((o.loss, g))
                    })
                    .unwrap()
                    .1
                })
                .collect::<Vec<_>>()
        });
    }
    // Per-operation costs at the point env's size (4 → (64, 64) → 2, 2000 samples = one
    // task's round), one thread: what an iteration is made of.
    let pool1 = rayon::ThreadPoolBuilder::new().num_threads(1).build().unwrap();
    pool1.install(|| {
        let p = GaussianMlp::new(4, 2, &GaussianMlpConfig::default(), 3).unwrap();
        let mut rng = ChaCha8Rng::seed_from_u64(5);
        let n = 2000;
        let obs: Vec<f64> = (0..n * 4).map(|_| rng.random_range(-1.0..1.0)).collect();
        let mut actions = vec![0.0; n * 2];
        let mut logp = vec![0.0; n];
        p.sample_batch(&obs, &mut rng, &mut actions, &mut logp).unwrap();
        let d = TaskData {
            obs_dim: 4,
            act_dim: 2,
            behaviour_mean: p.mean_batch(&obs).unwrap(),
            behaviour_log_std: p.log_std().to_vec(),
            obs: obs.clone(),
            actions: actions.clone(),
            behaviour_log_probs: logp.clone(),
            rewards: vec![0.5; n],
            advantages: (0..n).map(|_| rng.random_range(-1.5..1.5)).collect(),
            baselines: vec![1.0; n],
            adv_std: 1.0,
            path_offsets: (0..=20).map(|k| k * 100).collect(),
            average_return: 0.0,
        };
        let inner = InnerObjective::new(InnerKind::Taypo2, 0.99);
        let prepared = inner.prepare(&d).unwrap();
        let v: Vec<f64> = (0..p.num_params()).map(|i| (i as f64).sin()).collect();
        let r = 500;
        time("point size: rows (forward pass)", r, 1, || d.rows(&p).unwrap().values()[0]);
        let rows = d.rows(&p).unwrap();
        let obj = inner.objective(&d, &prepared, &rows).unwrap();
        time("point size: row kernel pass (TayPO-2)", r, 1, || obj.row_gradient().0);
        time("point size: inner gradient (kernel + vjp)", r, 1, || obj.gradient().0);
        time("point size: fused HVP (TayPO-2)", r, 1, || obj.hvp(&v)[0]);
        let mut hv = vec![0.0; p.num_params()];
        let w = vec![0.001; n];
        time("point size: MLP fused pass only (R-fwd + R-bwd)", r, 1, || {
            rows.hessian_vector_add(&w, &v, |jv, c| c.copy_from_slice(jv), &mut hv)
        });
        time("point size: gradient_and_hvp (unfused)", r, 1, || obj.gradient_and_hvp(&v).0);
        let batch = p.batch(&obs).unwrap();
        let mut out = vec![0.0; p.num_params()];
        time("point size: Fisher-vector product", r, 1, || {
            batch.fisher_vector_product(&v, &mut out).unwrap()
        });
        let mut g = vec![0.0; p.num_params()];
        time("point size: KL + gradient from rows", r, 1, || {
            d.kl_from_behaviour(&rows, Some(&mut g)).unwrap()
        });
    });
    for algo in Algorithm::ALL {
        let params =
            Params { iterations: 1_000_000, ..Params::new("point-corners", algo) }.validate().unwrap();
        let mut trainer = Trainer::new(params).unwrap();
        time(&format!("point-corners iteration ({algo})"), iters, threads, || trainer.step().unwrap());
    }
}
