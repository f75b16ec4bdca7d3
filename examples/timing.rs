//! Min-of-N timings, interleaved across operations, for a machine shared with other jobs
//! (contention only adds time, so the minimum is the most stable statistic).
//! Run: `cargo run --release --example timing [reps] [name filter]`.

use metagrad::envs::PointEnv;
use metagrad::meta::sampler::{Sampler, SamplerConfig, sample_tasks};
use metagrad::policy::{GaussianMlp, GaussianMlpConfig, Policy, ScoreRows};
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::hint::black_box;
use std::time::Instant;

fn main() {
    let (od, ad, n) = (20, 6, 2000);
    let policy = GaussianMlp::new(od, ad, &GaussianMlpConfig::default(), 2).unwrap();
    let mut rng = ChaCha8Rng::seed_from_u64(3);
    let obs: Vec<f64> = (0..n * od).map(|_| rng.random_range(-1.0..1.0)).collect();
    let mut actions = vec![0.0; n * ad];
    let mut logp = vec![0.0; n];
    policy.sample_batch(&obs, &mut rng, &mut actions, &mut logp).unwrap();
    let w: Vec<f64> = (0..n).map(|_| rng.random_range(-1.0..1.0)).collect();
    let d = policy.num_params();
    let v: Vec<f64> = (0..d).map(|_| rng.random_range(-1.0..1.0)).collect();
    let rows = policy.rows(&obs, &actions, &logp).unwrap();
    let batch = policy.batch(&obs).unwrap();

    let env = PointEnv::corners();
    let pp = GaussianMlp::new(4, 2, &GaussianMlpConfig::default(), 1).unwrap();
    let tasks = sample_tasks(&env, 40, 1, 0);
    let tiny = GaussianMlp::new(4, 2, &GaussianMlpConfig { hidden: vec![1], init_log_std: 0.0 }, 1).unwrap();
    let sampler = Sampler::new(SamplerConfig::default()).unwrap();
    let pool1 = rayon::ThreadPoolBuilder::new().num_threads(1).build().unwrap();
    let pool2 = rayon::ThreadPoolBuilder::new().num_threads(2).build().unwrap();

    // A ProMP-size one-step meta-gradient skeleton (the lead's estimator core replaces the
    // simple weights): per task, rows on 2000 pre-update samples, inner gradient, adapted
    // θ', rows on 2000 post-update samples at θ', outer gradient g', and (I + ηH) g' with
    // one fused HVP on the pre-update rows. 40 tasks over rayon.
    /// obs, actions, behaviour log-probs, advantages of one task.
    type TaskData = (Vec<f64>, Vec<f64>, Vec<f64>, Vec<f64>);
    let task_data: Vec<TaskData> = (0..40)
        .map(|_| {
            let o: Vec<f64> = (0..n * od).map(|_| rng.random_range(-1.0..1.0)).collect();
            let mut a = vec![0.0; n * ad];
            let mut l = vec![0.0; n];
            policy.sample_batch(&o, &mut rng, &mut a, &mut l).unwrap();
            let adv: Vec<f64> = (0..n).map(|_| rng.random_range(-1.0..1.0)).collect();
            (o, a, l, adv)
        })
        .collect();
    let meta_gradient = || {
        use rayon::prelude::*;
        let parts: Vec<Vec<f64>> = task_data
            .par_iter()
            .map(|(o, a, l, adv)| {
                let pre = policy.rows(o, a, l).unwrap();
                let w: Vec<f64> = adv.iter().map(|x| x / n as f64).collect();
                let mut g_in = vec![0.0; d];
                pre.vjp_add(&w, &mut g_in);
                let theta1: Vec<f64> = policy.params().iter().zip(&g_in).map(|(t, g)| t + 0.1 * g).collect();
                let adapted = policy.with_params(&theta1).unwrap();
                let post = adapted.rows(o, a, l).unwrap();
                let w_out: Vec<f64> = post.values().iter().zip(adv).map(|(r, x)| r * x / n as f64).collect();
                let mut g_out = vec![0.0; d];
                post.vjp_add(&w_out, &mut g_out);
                let mut hg = vec![0.0; d];
                pre.hessian_vector_add(
                    &w,
                    &g_out,
                    |jv, c| c.iter_mut().zip(jv).for_each(|(c, x)| *c = x / n as f64),
                    &mut hg,
                );
                g_out.iter().zip(&hg).map(|(g, h)| g + 0.1 * h).collect()
            })
            .collect();
        black_box(parts);
    };

    type Op<'a> = (&'a str, Box<dyn Fn() + 'a>);
    let ops: Vec<Op> = vec![
        ("mlp forward (rows)", Box::new(|| drop(black_box(policy.rows(&obs, &actions, &logp).unwrap())))),
        (
            "mlp gradient (vjp)",
            Box::new(|| {
                let mut g = vec![0.0; d];
                rows.vjp_add(&w, &mut g);
                black_box(g);
            }),
        ),
        (
            "mlp jvp",
            Box::new(|| {
                let mut o = vec![0.0; n];
                rows.jvp(&v, &mut o);
                black_box(o);
            }),
        ),
        (
            "mlp curvature hvp",
            Box::new(|| {
                let mut h = vec![0.0; d];
                rows.curvature_hvp_add(&w, &v, &mut h);
                black_box(h);
            }),
        ),
        (
            "mlp fused GN+curvature hvp",
            Box::new(|| {
                let mut h = vec![0.0; d];
                rows.hessian_vector_add(&w, &v, |jv, c| c.copy_from_slice(jv), &mut h);
                black_box(h);
            }),
        ),
        (
            "mlp unfused jvp+vjp+hvp",
            Box::new(|| {
                let mut jv = vec![0.0; n];
                rows.jvp(&v, &mut jv);
                let mut h = vec![0.0; d];
                rows.vjp_add(&jv, &mut h);
                rows.curvature_hvp_add(&w, &v, &mut h);
                black_box(h);
            }),
        ),
        (
            "mlp fisher-vector product",
            Box::new(|| {
                let mut o = vec![0.0; d];
                batch.fisher_vector_product(&v, &mut o).unwrap();
                black_box(o);
            }),
        ),
        (
            "sampler 80k steps, 1 thread",
            Box::new(|| {
                drop(black_box(pool1.install(|| sampler.sample(&env, &tasks, &[&pp], 1, 0, 0).unwrap())))
            }),
        ),
        (
            "sampler 80k steps, 1 thread, 4→1→2 policy (overhead)",
            Box::new(|| {
                drop(black_box(pool1.install(|| sampler.sample(&env, &tasks, &[&tiny], 1, 0, 0).unwrap())))
            }),
        ),
        (
            "sampler 80k steps, 2 threads",
            Box::new(|| {
                drop(black_box(pool2.install(|| sampler.sample(&env, &tasks, &[&pp], 1, 0, 0).unwrap())))
            }),
        ),
        ("meta-gradient skeleton, 1 thread", Box::new(|| pool1.install(meta_gradient))),
        ("meta-gradient skeleton, 2 threads", Box::new(|| pool2.install(meta_gradient))),
    ];
    let reps: usize = std::env::args().nth(1).and_then(|a| a.parse().ok()).unwrap_or(15);
    let filter = std::env::args().nth(2).unwrap_or_default();
    let ops: Vec<Op> = ops.into_iter().filter(|(name, _)| name.contains(&filter)).collect();
    let mut times = vec![Vec::new(); ops.len()];
    for _ in 0..reps {
        for (k, (_, f)) in ops.iter().enumerate() {
            let t = Instant::now();
            f();
            times[k].push(t.elapsed().as_secs_f64() * 1e3);
        }
    }
    for ((name, _), t) in ops.iter().zip(&mut times) {
        t.sort_by(|a, b| a.partial_cmp(b).unwrap());
        println!("{name:32} min {:8.3} ms   median {:8.3} ms", t[0], t[t.len() / 2]);
    }
}
