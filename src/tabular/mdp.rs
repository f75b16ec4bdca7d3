//! Finite MDPs with deterministic rewards, a seeded random generator and a trajectory sampler.

use rand::RngExt;
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, Gamma};

use crate::error::{Result, ensure_finite, invalid};

/// Tolerance on probability rows summing to one.
pub const PROB_TOLERANCE: f64 = 1e-9;

/// A finite MDP: transitions P\[x\]\[a\]\[y\], rewards r\[x\]\[a\], discount γ, start state x_0.
#[derive(Clone, Debug, PartialEq)]
pub struct TabularMdp {
    n_states: usize,
    n_actions: usize,
    /// Row-major |X|×|A|×|X|.
    transitions: Vec<f64>,
    /// Row-major |X|×|A|.
    rewards: Vec<f64>,
    gamma: f64,
    start_state: usize,
}

/// One trajectory x_0, a_0, r_0, …, x_{T−1}, a_{T−1}, r_{T−1}, x_T.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Trajectory {
    /// x_0 … x_T (length T + 1).
    pub states: Vec<usize>,
    /// a_0 … a_{T−1}.
    pub actions: Vec<usize>,
    /// r_0 … r_{T−1}.
    pub rewards: Vec<f64>,
}

impl Trajectory {
    /// Number of transitions T.
    pub fn len(&self) -> usize {
        self.actions.len()
    }
    /// Whether the trajectory has no transition.
    pub fn is_empty(&self) -> bool {
        self.actions.is_empty()
    }
}

/// Checks that `row` is a probability vector, naming `field` otherwise.
pub fn check_probability_row(field: &dyn Fn() -> String, row: &[f64]) -> Result<()> {
    for (i, &p) in row.iter().enumerate() {
        ensure_finite(|| format!("{}[{i}]", field()), p)?;
        if p < 0.0 {
            return Err(invalid(format!("{}[{i}]", field()), format!("probability must be ≥ 0, got {p}")));
        }
    }
    let s: f64 = row.iter().sum();
    if (s - 1.0).abs() > PROB_TOLERANCE {
        return Err(invalid(field(), format!("probabilities must sum to 1 (±{PROB_TOLERANCE}), sum is {s}")));
    }
    Ok(())
}

/// Checks γ ∈ [0, 1).
pub fn check_gamma(gamma: f64) -> Result<()> {
    if !(0.0..1.0).contains(&gamma) {
        return Err(invalid("gamma", format!("must be in [0, 1), got {gamma}")));
    }
    Ok(())
}

impl TabularMdp {
    /// Builds and validates an MDP from flat row-major tables.
    pub fn new(
        n_states: usize,
        n_actions: usize,
        transitions: Vec<f64>,
        rewards: Vec<f64>,
        gamma: f64,
        start_state: usize,
    ) -> Result<Self> {
        if n_states == 0 {
            return Err(invalid("transitions", "needs at least one state"));
        }
        if n_actions == 0 {
            return Err(invalid("transitions", "needs at least one action"));
        }
        if transitions.len() != n_states * n_actions * n_states {
            return Err(invalid(
                "transitions",
                format!("expected {n_states}×{n_actions}×{n_states} entries, got {}", transitions.len()),
            ));
        }
        if rewards.len() != n_states * n_actions {
            return Err(invalid(
                "rewards",
                format!("expected {n_states}×{n_actions} entries, got {}", rewards.len()),
            ));
        }
        for x in 0..n_states {
            for a in 0..n_actions {
                let row = &transitions[(x * n_actions + a) * n_states..(x * n_actions + a + 1) * n_states];
                check_probability_row(&|| format!("transitions[{x}][{a}]"), row)?;
                ensure_finite(|| format!("rewards[{x}][{a}]"), rewards[x * n_actions + a])?;
            }
        }
        check_gamma(gamma)?;
        if start_state >= n_states {
            return Err(invalid(
                "start_state",
                format!("{start_state} is not a state index (|X| = {n_states})"),
            ));
        }
        Ok(Self { n_states, n_actions, transitions, rewards, gamma, start_state })
    }

    /// A random MDP (docs/theory.md#tabular-benchmark): P(·|x,a) ~ Dirichlet(α·1), r(x,a) ~ U[low,
    /// high).
    pub fn random(params: &RandomMdpParams, rng: &mut ChaCha8Rng) -> Self {
        let (ns, na) = (params.n_states, params.n_actions);
        let mut transitions = Vec::with_capacity(ns * na * ns);
        for _ in 0..ns * na {
            transitions.extend(sample_dirichlet(params.dirichlet, ns, rng));
        }
        let rewards = (0..ns * na)
            .map(|_| params.reward_low + (params.reward_high - params.reward_low) * rng.random::<f64>())
            .collect();
        Self {
            n_states: ns,
            n_actions: na,
            transitions,
            rewards,
            gamma: params.gamma,
            start_state: params.start_state,
        }
    }

    /// |X|.
    pub fn n_states(&self) -> usize {
        self.n_states
    }
    /// |A|.
    pub fn n_actions(&self) -> usize {
        self.n_actions
    }
    /// γ.
    pub fn gamma(&self) -> f64 {
        self.gamma
    }
    /// x_0.
    pub fn start_state(&self) -> usize {
        self.start_state
    }
    /// P(·|x, a).
    pub fn next_probs(&self, x: usize, a: usize) -> &[f64] {
        let i = (x * self.n_actions + a) * self.n_states;
        &self.transitions[i..i + self.n_states]
    }
    /// Row-major |X|×|A|×|X| transition table.
    pub fn transitions(&self) -> &[f64] {
        &self.transitions
    }
    /// r(x, a).
    pub fn reward(&self, x: usize, a: usize) -> f64 {
        self.rewards[x * self.n_actions + a]
    }
    /// Row-major |X|×|A| reward table.
    pub fn rewards(&self) -> &[f64] {
        &self.rewards
    }

    /// Samples a trajectory of `horizon` transitions from the start state under the
    /// policy table `policy` (row-major |X|×|A|).
    pub fn sample_trajectory(&self, policy: &[f64], horizon: usize, rng: &mut ChaCha8Rng) -> Trajectory {
        let na = self.n_actions;
        let mut states = Vec::with_capacity(horizon + 1);
        let mut actions = Vec::with_capacity(horizon);
        let mut rewards = Vec::with_capacity(horizon);
        let mut x = self.start_state;
        states.push(x);
        for _ in 0..horizon {
            let a = sample_categorical(&policy[x * na..(x + 1) * na], rng);
            rewards.push(self.reward(x, a));
            actions.push(a);
            x = sample_categorical(self.next_probs(x, a), rng);
            states.push(x);
        }
        Trajectory { states, actions, rewards }
    }
}

/// Settings of [`TabularMdp::random`]; defaults are the tabular benchmark's
/// (docs/theory.md#tabular-benchmark).
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct RandomMdpParams {
    /// |X|.
    pub n_states: usize,
    /// |A|.
    pub n_actions: usize,
    /// Dirichlet concentration α of each transition row.
    pub dirichlet: f64,
    /// Rewards are drawn from U[reward_low, reward_high).
    pub reward_low: f64,
    /// Upper reward bound.
    pub reward_high: f64,
    /// γ.
    pub gamma: f64,
    /// x_0.
    pub start_state: usize,
}

impl Default for RandomMdpParams {
    fn default() -> Self {
        Self {
            n_states: 20,
            n_actions: 5,
            dirichlet: 0.001,
            reward_low: 0.0,
            reward_high: 1.0,
            gamma: 0.8,
            start_state: 0,
        }
    }
}

impl RandomMdpParams {
    /// Validates every field.
    pub fn validate(&self) -> Result<()> {
        if self.n_states == 0 {
            return Err(invalid("states", "must be ≥ 1, got 0"));
        }
        if self.n_actions == 0 {
            return Err(invalid("actions", "must be ≥ 1, got 0"));
        }
        if !(self.dirichlet.is_finite() && self.dirichlet > 0.0) {
            return Err(invalid("dirichlet", format!("must be a finite number > 0, got {}", self.dirichlet)));
        }
        if !(self.reward_low.is_finite()
            && self.reward_high.is_finite()
            && self.reward_low <= self.reward_high)
        {
            return Err(invalid(
                "reward range",
                format!("needs finite low ≤ high, got [{}, {})", self.reward_low, self.reward_high),
            ));
        }
        check_gamma(self.gamma)?;
        if self.start_state >= self.n_states {
            return Err(invalid("start_state", format!("{} ≥ |X| = {}", self.start_state, self.n_states)));
        }
        Ok(())
    }
}

/// Index drawn from a probability vector by inversion.
pub fn sample_categorical(probs: &[f64], rng: &mut ChaCha8Rng) -> usize {
    let u: f64 = rng.random();
    let mut acc = 0.0;
    for (i, p) in probs.iter().enumerate() {
        acc += p;
        if u < acc {
            return i;
        }
    }
    // Rounding: the last index with positive probability.
    probs.iter().rposition(|&p| p > 0.0).unwrap_or(probs.len() - 1)
}

/// A draw from Dirichlet(α·1) of dimension `n`, stable for tiny α: for α < 1 each
/// Gamma(α) variate is drawn in log space as log Gamma(α+1) + log(U)/α.
pub fn sample_dirichlet(alpha: f64, n: usize, rng: &mut ChaCha8Rng) -> Vec<f64> {
    let logs: Vec<f64> = if alpha >= 1.0 {
        let g = Gamma::new(alpha, 1.0).expect("alpha > 0");
        (0..n).map(|_| g.sample(rng).ln()).collect()
    } else {
        let g = Gamma::new(alpha + 1.0, 1.0).expect("alpha > 0");
        (0..n)
            .map(|_| {
                let u: f64 = rng.random();
                g.sample(rng).ln() + (1.0 - u).ln() / alpha
            })
            .collect()
    };
    let m = logs.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
    let w: Vec<f64> = logs.iter().map(|l| (l - m).exp()).collect();
    let s: f64 = w.iter().sum();
    w.into_iter().map(|x| x / s).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn dirichlet_rows_are_distributions_even_for_tiny_alpha() {
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        for alpha in [1e-3, 0.5, 1.0, 3.0] {
            for _ in 0..100 {
                let p = sample_dirichlet(alpha, 20, &mut rng);
                assert!(p.iter().all(|x| x.is_finite() && *x >= 0.0));
                assert!((p.iter().sum::<f64>() - 1.0).abs() < 1e-12);
            }
        }
    }

    #[test]
    fn dirichlet_mean_is_uniform() {
        // E[p_i] = 1/n for a symmetric Dirichlet; check with a standard-error tolerance.
        let mut rng = ChaCha8Rng::seed_from_u64(2);
        let (n, draws) = (4, 20_000);
        let mut mean = vec![0.0; n];
        for _ in 0..draws {
            for (m, p) in mean.iter_mut().zip(sample_dirichlet(0.3, n, &mut rng)) {
                *m += p / draws as f64;
            }
        }
        // Var p_i = (1/n)(1−1/n)/(nα+1).
        let se = ((0.25 * 0.75) / (4.0 * 0.3 + 1.0) / draws as f64).sqrt();
        for m in mean {
            assert!((m - 0.25).abs() < 5.0 * se, "mean {m}");
        }
    }

    #[test]
    fn tiny_alpha_gives_near_deterministic_rows() {
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        let p = sample_dirichlet(1e-3, 20, &mut rng);
        assert!(p.iter().cloned().fold(0.0, f64::max) > 0.99);
    }

    #[test]
    fn new_rejects_bad_rows_and_gamma() {
        let ok_p = vec![0.5, 0.5, 1.0, 0.0, 0.0, 1.0, 0.3, 0.7];
        assert!(TabularMdp::new(2, 2, ok_p.clone(), vec![0.0; 4], 0.9, 0).is_ok());
        let mut bad = ok_p.clone();
        bad[0] = 0.6;
        let e = TabularMdp::new(2, 2, bad, vec![0.0; 4], 0.9, 0).unwrap_err().to_string();
        assert!(e.contains("transitions[0][0]") && e.contains("sum"), "{e}");
        let mut neg = ok_p.clone();
        neg[0] = -0.5;
        neg[1] = 1.5;
        let e = TabularMdp::new(2, 2, neg, vec![0.0; 4], 0.9, 0).unwrap_err().to_string();
        assert!(e.contains("transitions[0][0][0]") && e.contains("≥ 0"), "{e}");
        let e = TabularMdp::new(2, 2, ok_p.clone(), vec![0.0; 4], 1.0, 0).unwrap_err().to_string();
        assert!(e.contains("gamma"), "{e}");
        let e = TabularMdp::new(2, 2, ok_p.clone(), vec![f64::NAN, 0.0, 0.0, 0.0], 0.5, 0)
            .unwrap_err()
            .to_string();
        assert!(e.contains("rewards[0][0]") && e.contains("finite"), "{e}");
        let e = TabularMdp::new(2, 2, ok_p, vec![0.0; 4], 0.5, 2).unwrap_err().to_string();
        assert!(e.contains("start_state"), "{e}");
    }

    #[test]
    fn sampled_trajectories_follow_the_tables() {
        let mut rng = ChaCha8Rng::seed_from_u64(4);
        let mdp = TabularMdp::random(&RandomMdpParams::default(), &mut rng);
        let pi = vec![0.2; 20 * 5];
        let t = mdp.sample_trajectory(&pi, 20, &mut rng);
        assert_eq!((t.states.len(), t.actions.len(), t.rewards.len()), (21, 20, 20));
        assert_eq!(t.states[0], 0);
        for i in 0..20 {
            assert_eq!(t.rewards[i], mdp.reward(t.states[i], t.actions[i]));
            assert!(mdp.next_probs(t.states[i], t.actions[i])[t.states[i + 1]] > 0.0);
        }
    }
}
