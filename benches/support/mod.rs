//! What the benchmarks share (each bench target includes this module): the binary's
//! allocator, so that timings are the binary's, and synthetic inputs.

#![allow(dead_code)] // each bench uses a subset

use metagrad::policy::GaussianMlp;
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// The binary's allocator (src/main.rs).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// `n` observations uniform in [−`obs_scale`, `obs_scale`]^obs_dim with actions sampled
/// from `policy` and their log-probabilities; returns them with the generator, so that
/// callers can draw further inputs from the same stream.
pub struct Sampled {
    pub obs: Vec<f64>,
    pub actions: Vec<f64>,
    pub log_probs: Vec<f64>,
    pub rng: ChaCha8Rng,
}

impl Sampled {
    pub fn new(policy: &GaussianMlp, n: usize, obs_scale: f64, seed: u64) -> Self {
        let (od, ad) = (policy.obs_dim(), policy.act_dim());
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let obs: Vec<f64> = (0..n * od).map(|_| rng.random_range(-obs_scale..obs_scale)).collect();
        let mut actions = vec![0.0; n * ad];
        let mut log_probs = vec![0.0; n];
        policy.sample_batch(&obs, &mut rng, &mut actions, &mut log_probs).unwrap();
        Self { obs, actions, log_probs, rng }
    }

    /// `len` draws uniform in [lo, hi) from the stream.
    pub fn uniform(&mut self, len: usize, lo: f64, hi: f64) -> Vec<f64> {
        (0..len).map(|_| self.rng.random_range(lo..hi)).collect()
    }
}
