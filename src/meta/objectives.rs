//! Inner objectives of the meta-RL algorithms as off-policy estimators
//! (docs/theory.md#inner-objectives).
//!
//! Every inner objective is an estimator of [`crate::estimators`] evaluated on one task's
//! samples through the Gaussian MLP's [`crate::policy::ScoreRows`]; value, gradient and
//! Hessian-vector product all come from the one chain rule,
//! [`crate::estimators::BatchObjective`]. With ρ_t = π_θ(a_t|x_t)/μ(a_t|x_t) (μ the policy
//! that sampled the data; ρ = 1 on-policy) and Â_t the processed advantages
//! ([`super::processing`]), per path:
//!
//! | kind | estimator | per-path value V̂ | algorithm |
//! |---|---|---|---|
//! | `maml` | naive score, γ^{t2−t1} convention | Σ_t Â_t log ρ_t | TRPO-MAML, FMAML, E-MAML |
//! | `lvc` | TayPO-1 | Σ_t (ρ_t − 1) Â_t | ProMP |
//! | `taypo2` | TayPO-2 | Σ_t (ρ_t−1)Â_t + Σ_{t1<t2} γ^{t2−t1}(ρ_{t1}−1)(ρ_{t2}−1)Â_{t2} | ProMP-TayPO-2 |
//! | `dr` | doubly robust, state critic | Σ_t γ^t (Π_{s≤t} ρ_s) δ_t, δ_t = r̃_t + γb̃_{t+1} − b̃_t | TRPO-DiCE |
//!
//! (constants dropped). The TayPO/naive-score signals are the advantages, pushed with
//! [`PreparedBatch::push_advantages`]; TayPO-K uses ProMP's γ^{t_k−t_1} convention
//! ([`TaylorDiscount::FromFirst`], a setting). DR reads rewards and a per-task linear
//! baseline b as its critic ([`DiceCritic`]: time-only or observation features; b at the
//! path's end x_T is 0, as the processing's GAE bootstraps); with `dr_normalise` (default)
//! rewards and critic are divided by the standard deviation σ_A of the task's advantages
//! under that critic (the processing's GAE advantages for the feature baseline, G_t − b_t
//! for the time critic; r̃ = r/σ_A, b̃ = b/σ_A), so that the on-policy DR gradient
//! Σ_t γ^t ∇log π_t (G_t − b_t)/σ_A has the scale of the normalised-advantage objectives
//! (DiCE has no normalisation of its own; without it the inner step would be σ_A times
//! larger). ProMP's own DiCE loss ([`DiceCritic::Promp`]) is run unnormalised, as ProMP does.
//!
//! **ProMP-TayPO-2 variants** (settings, off by default; docs/theory.md#taypo-2-variants):
//! the pair term weighted per path by W_1/W_2, its first-order weight over its pair weight
//! ([`Taylor2Pairs::Normalised`]), and ρ_t − 1 clipped to ±κ as PPO clips ratios
//! (`taypo2_ratio_clip`); see [`crate::estimators::Taylor2Shape`].
//!
//! **Normalisation** (a setting, [`Normalisation`]): the task objective is
//! V̂_in = (1/N_samples) Σ_paths V̂_path by default (ProMP's `reduce_mean` over all time
//! steps of the task batch), or the mean over paths (1/N_paths) Σ_paths V̂_path.
//!
//! **E-MAML** exploration term ([`exploration_term`]): R̄·(1/N) Σ_i log π_θ(a_i|x_i) over a
//! task's inner-loop samples, with R̄ the task's post-update return normalised across the
//! tasks of the iteration; as an estimator it is the naive score with the constant
//! signal R̄.

use serde::{Deserialize, Serialize};

use super::processing::{ProcessedSamples, discounted_returns, fit_time_baseline, gae};
use super::sampler::SampleBatch;
use crate::error::{Result, invalid};
use crate::estimators::{BatchObjective, Estimator, PathCritic, PreparedBatch, Taylor2Pairs, TaylorDiscount};
use crate::numeric::population_std;
use crate::policy::{GaussianMlp, GaussianMlpRows};

/// Which estimator is the inner objective.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum InnerKind {
    /// MAML's naive log-likelihood surrogate Σ Â log ρ.
    Maml,
    /// TayPO-1 = LVC (ProMP).
    Lvc,
    /// TayPO-2 (the paper's estimator).
    Taypo2,
    /// Doubly robust with the linear baseline as state critic (DiCE-style).
    Dr,
    /// Step-wise IS with TMAML's control variate, the same critic as DR's as its baselines
    /// (`tmaml`, docs/theory.md#tmaml).
    Tmaml,
    /// [`InnerKind::Tmaml`] without the biased Hessian term (`tmaml-past`).
    TmamlPast,
}

/// How a task's sum over paths is normalised.
#[cfg_attr(feature = "cli", derive(clap::ValueEnum))]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Normalisation {
    /// Divide by the number of samples (time steps) of the task (ProMP's mean).
    Samples,
    /// Divide by the number of paths of the task.
    Paths,
}

/// The critic of TRPO-DiCE's inner objective (setting `dice_critic`; docs/theory.md#algorithms).
/// The paper ran ProMP's code, whose DiCE critic is a *time-only* linear baseline; a feature baseline
/// over observations is a much stronger critic.
///
/// With time features φ(t) = [t/100, (t/100)², (t/100)³, 1] (t the step within its path;
/// ProMP's time features, with H = 100 as in the feature baseline of [`super::processing`])
/// and least squares with ridge 1e-5 over all steps of the task's batch:
#[cfg_attr(feature = "cli", derive(clap::ValueEnum))]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum DiceCritic {
    /// DR (docs/theory.md#doubly-robust) with the time-only critic V̂_t = φ(t)ᵀc fitted to the returns G_t: the
    /// paper's "DR estimate with ProMP's setup" (the default of `trpo-dice`).
    Time,
    /// DR with the per-task linear feature baseline b(x_t) (observations and time) as
    /// critic: the stronger critic (and the only one before this setting existed).
    Features,
    /// ProMP's own DiCE loss (Loaded-DiCE form): per path Σ_t P_t (γ^t r_t − b_t), with
    /// P_t = Π_{s≤t} ρ_s and b_t = φ(t)ᵀc fitted to γ^t r_t, without reward normalisation.
    /// It is the IS kernel (Σ_t γ^t P_t r̃_t) on r̃_t = r_t − γ^{−t} b_t; needs γ > 0.
    Promp,
}

impl DiceCritic {
    /// The command-line name.
    pub fn name(&self) -> &'static str {
        match self {
            DiceCritic::Time => "time",
            DiceCritic::Features => "features",
            DiceCritic::Promp => "promp",
        }
    }
}

/// The critic of DR objectives that did not record one (runs before the setting existed).
fn legacy_dice_critic() -> DiceCritic {
    DiceCritic::Features
}

/// An inner objective: kind and its settings.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct InnerObjective {
    /// The estimator.
    pub kind: InnerKind,
    /// Normalisation of the task sum.
    pub normalisation: Normalisation,
    /// Discount convention of TayPO-K and the naive score.
    pub discount: TaylorDiscount,
    /// γ.
    pub gamma: f64,
    /// DR and TMAML: divide rewards and critic by the task's advantage standard deviation (not for
    /// [`DiceCritic::Promp`], whose loss has no normalisation).
    pub dr_normalise: bool,
    /// DR and TMAML: the critic (TRPO-DiCE, TRPO-TMAML).
    #[serde(default = "legacy_dice_critic")]
    pub dice_critic: DiceCritic,
    /// TayPO-2: weighting of the pair term (the paper's discounted pairs by default).
    #[serde(default)]
    pub taypo2_pairs: Taylor2Pairs,
    /// TayPO-2: bound on |ρ_t − 1| (`None`: no clip). At θ_old the inner data are
    /// on-policy (ρ = 1), so the clip acts only during the outer steps.
    #[serde(default)]
    pub taypo2_ratio_clip: Option<f64>,
    /// TayPO-2: bound on |ρ_t − 1| in the pair term, in place of `taypo2_ratio_clip` there
    /// (`None`: the same as the first-order term's; ∞: none).
    #[serde(default, with = "super::unbounded::option")]
    pub taypo2_pair_clip: Option<f64>,
}

impl InnerObjective {
    /// An inner objective with the defaults: mean over samples, ProMP's γ^{t2−t1}
    /// convention, normalised DR.
    pub fn new(kind: InnerKind, gamma: f64) -> Self {
        Self {
            kind,
            normalisation: Normalisation::Samples,
            discount: TaylorDiscount::FromFirst,
            gamma,
            dr_normalise: true,
            dice_critic: DiceCritic::Time,
            taypo2_pairs: Taylor2Pairs::Discounted,
            taypo2_ratio_clip: None,
            taypo2_pair_clip: None,
        }
    }

    /// The estimator of the estimator core this objective is.
    pub fn estimator(&self) -> Estimator {
        match self.kind {
            InnerKind::Maml => Estimator::NaiveScore { discount: self.discount },
            InnerKind::Lvc => Estimator::TayPo { order: 1, discount: self.discount },
            InnerKind::Taypo2 => Estimator::TayPo { order: 2, discount: self.discount },
            InnerKind::Dr if self.dice_critic == DiceCritic::Promp => Estimator::Is,
            InnerKind::Dr => Estimator::Dr,
            InnerKind::Tmaml => Estimator::Tmaml { through_t: true },
            InnerKind::TmamlPast => Estimator::Tmaml { through_t: false },
        }
    }

    /// The θ-independent inputs for one task.
    pub fn prepare(&self, task: &TaskData) -> Result<PreparedBatch> {
        let mut b = PreparedBatch::new(self.estimator(), self.gamma);
        if self.kind == InnerKind::Taypo2 {
            b = b.with_taylor2(self.taypo2_pairs, self.taypo2_ratio_clip, self.taypo2_pair_clip)?;
        }
        match self.kind {
            InnerKind::Dr if self.dice_critic == DiceCritic::Promp => {
                if self.gamma <= 0.0 {
                    return Err(invalid("gamma", "the promp DiCE critic needs γ > 0 (it divides by γ^t)"));
                }
                // b_t fitted to γ^t r_t; the IS kernel weighs r̃_t = r_t − γ^{−t} b_t by γ^t P_t.
                let mut discounted = Vec::with_capacity(task.n_steps());
                for p in 0..task.n_paths() {
                    let steps = task.path_steps(p);
                    let mut g = 1.0;
                    for &r in &task.rewards[steps] {
                        discounted.push(g * r);
                        g *= self.gamma;
                    }
                }
                let b_fit = fit_time_baseline(&task.path_offsets, &discounted)?;
                let mut r = Vec::new();
                for p in 0..task.n_paths() {
                    let steps = task.path_steps(p);
                    r.clear();
                    let mut g = 1.0;
                    for i in steps {
                        r.push(task.rewards[i] - b_fit[i] / g);
                        g *= self.gamma;
                    }
                    b.push(&r, PathCritic::None)?;
                }
            }
            InnerKind::Dr | InnerKind::Tmaml | InnerKind::TmamlPast => {
                if self.kind != InnerKind::Dr && self.dice_critic == DiceCritic::Promp {
                    return Err(invalid("dice_critic", "tmaml takes a state critic (time or features)"));
                }
                // σ of the advantages under the critic in use (the processing's for the feature
                // baseline; G_t − V̂_t for the time critic), so that the on-policy gradient has
                // the scale of the normalised-advantage objectives whatever the critic.
                let (critic, sigma) = match self.dice_critic {
                    DiceCritic::Features => (task.baselines.clone(), task.adv_std),
                    _ => {
                        let mut returns = Vec::with_capacity(task.n_steps());
                        for p in 0..task.n_paths() {
                            returns.extend(discounted_returns(&task.rewards[task.path_steps(p)], self.gamma));
                        }
                        let fit = fit_time_baseline(&task.path_offsets, &returns)?;
                        let adv: Vec<f64> = returns.iter().zip(&fit).map(|(g, v)| g - v).collect();
                        (fit, population_std(&adv) + 1e-8)
                    }
                };
                let s = if self.dr_normalise { 1.0 / sigma } else { 1.0 };
                let (mut r, mut v) = (Vec::new(), Vec::new());
                for p in 0..task.n_paths() {
                    let steps = task.path_steps(p);
                    r.clear();
                    r.extend(task.rewards[steps.clone()].iter().map(|x| x * s));
                    v.clear();
                    v.extend(critic[steps].iter().map(|x| x * s));
                    v.push(0.0);
                    b.push(&r, PathCritic::State(&v))?;
                }
            }
            _ => {
                for p in 0..task.n_paths() {
                    b.push_advantages(&task.advantages[task.path_steps(p)])?;
                }
            }
        }
        Ok(b)
    }

    /// The normalising scale s of V̂_in = s Σ_paths V̂_path.
    pub fn scale(&self, task: &TaskData) -> f64 {
        match self.normalisation {
            Normalisation::Samples => 1.0 / task.n_steps().max(1) as f64,
            Normalisation::Paths => 1.0 / task.n_paths().max(1) as f64,
        }
    }

    /// The objective's derivatives at `policy` on rows already evaluated.
    pub fn objective<'a>(
        &self,
        task: &TaskData,
        prepared: &'a PreparedBatch,
        rows: &'a GaussianMlpRows<'a>,
    ) -> Result<BatchObjective<'a, GaussianMlpRows<'a>>> {
        Ok(BatchObjective::new(prepared, rows)?.with_scale(self.scale(task)))
    }

    /// V̂_in(θ) and ∇V̂_in(θ) at `policy`'s θ.
    pub fn value_and_gradient(
        &self,
        policy: &GaussianMlp,
        task: &TaskData,
        prepared: &PreparedBatch,
    ) -> Result<(f64, Vec<f64>)> {
        let rows = task.rows(policy)?;
        Ok(self.objective(task, prepared, &rows)?.gradient())
    }

    /// V̂_in(θ), ∇V̂_in(θ) and ∇²V̂_in(θ)·v.
    pub fn gradient_and_hvp(
        &self,
        policy: &GaussianMlp,
        task: &TaskData,
        prepared: &PreparedBatch,
        v: &[f64],
    ) -> Result<(f64, Vec<f64>, Vec<f64>)> {
        let rows = task.rows(policy)?;
        Ok(self.objective(task, prepared, &rows)?.gradient_and_hvp(v))
    }
}

/// One task's samples of one sampling round, with everything the objectives read.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TaskData {
    /// Observation dimension.
    pub obs_dim: usize,
    /// Action dimension.
    pub act_dim: usize,
    /// Observations, N×obs_dim.
    pub obs: Vec<f64>,
    /// Raw policy actions, N×act_dim.
    pub actions: Vec<f64>,
    /// log μ(a_i|x_i) of the policy that sampled the data.
    pub behaviour_log_probs: Vec<f64>,
    /// Means of the sampling policy, N×act_dim (for KL penalties and constraints).
    pub behaviour_mean: Vec<f64>,
    /// Log-std of the sampling policy.
    pub behaviour_log_std: Vec<f64>,
    /// Rewards.
    pub rewards: Vec<f64>,
    /// Processed advantages (normalised per task when so configured).
    pub advantages: Vec<f64>,
    /// Linear-baseline values b(x_t).
    pub baselines: Vec<f64>,
    /// σ_A + 1e-8: standard deviation of the unnormalised GAE advantages.
    pub adv_std: f64,
    /// Path offsets relative to the task's first step (n_paths + 1 entries).
    pub path_offsets: Vec<usize>,
    /// Mean undiscounted return over the task's paths.
    pub average_return: f64,
    /// Fraction of the task's paths that succeeded, for environments that report success.
    pub success_rate: Option<f64>,
}

impl TaskData {
    /// Task k of a sampled and processed batch; `behaviour` is the policy that sampled it
    /// (its means are stored for KL terms), `gamma`/`gae_lambda` those of the processing.
    pub fn from_batch(
        batch: &SampleBatch,
        processed: &ProcessedSamples,
        k: usize,
        behaviour: &GaussianMlp,
        gamma: f64,
        gae_lambda: f64,
    ) -> Result<Self> {
        if k >= batch.n_tasks() {
            return Err(invalid("task", format!("index {k} ≥ number of tasks {}", batch.n_tasks())));
        }
        let (obs, actions, logp) = batch.task_slices(k);
        let steps = batch.task_steps(k);
        let path_offsets = batch.task_local_path_offsets(k);
        let rewards = batch.rewards[steps.clone()].to_vec();
        let baselines = processed.baselines[steps.clone()].to_vec();
        // σ of the unnormalised advantages (the processing normalises by the same).
        let mut raw = Vec::with_capacity(rewards.len());
        for w in path_offsets.windows(2) {
            raw.extend(gae(&rewards[w[0]..w[1]], &baselines[w[0]..w[1]], 0.0, gamma, gae_lambda));
        }
        let adv_std = population_std(&raw) + 1e-8;
        Ok(Self {
            obs_dim: batch.obs_dim,
            act_dim: batch.act_dim,
            obs: obs.to_vec(),
            actions: actions.to_vec(),
            behaviour_log_probs: logp.to_vec(),
            behaviour_mean: behaviour.mean_batch(obs)?,
            behaviour_log_std: behaviour.log_std().to_vec(),
            rewards,
            advantages: processed.advantages[steps].to_vec(),
            baselines,
            adv_std,
            path_offsets,
            average_return: batch.task_average_return(k),
            success_rate: batch.task_success_rate(k),
        })
    }

    /// Number of samples.
    pub fn n_steps(&self) -> usize {
        self.rewards.len()
    }
    /// Number of paths.
    pub fn n_paths(&self) -> usize {
        self.path_offsets.len() - 1
    }
    /// Step range of path p.
    pub fn path_steps(&self, p: usize) -> std::ops::Range<usize> {
        self.path_offsets[p]..self.path_offsets[p + 1]
    }
    /// The policy's rows on these samples: ρ_i = π_θ(a_i|x_i)/μ(a_i|x_i).
    pub fn rows<'a>(&'a self, policy: &'a GaussianMlp) -> Result<GaussianMlpRows<'a>> {
        Ok(policy.rows(&self.obs, &self.actions, &self.behaviour_log_probs)?)
    }
    /// [`Self::rows`] holding `policy` itself (the rows borrow only the samples).
    pub fn into_rows(&self, policy: GaussianMlp) -> Result<GaussianMlpRows<'_>> {
        Ok(policy.into_rows(&self.obs, &self.actions, &self.behaviour_log_probs)?)
    }
    /// Mean KL(μ(·|x_i) ‖ π_θ(·|x_i)) over the samples at the rows' policy (reusing their
    /// forward pass), and (with `grad`) its gradient added into `grad`.
    pub fn kl_from_behaviour(&self, rows: &GaussianMlpRows<'_>, grad: Option<&mut [f64]>) -> Result<f64> {
        Ok(rows.mean_kl_from(&self.behaviour_mean, &self.behaviour_log_std, grad)?)
    }
}

/// E-MAML's exploration term on one task's inner-loop samples, at the rows' policy:
/// E(θ) = R̄ · (1/N) Σ_i log ρ_i (= R̄ · mean log π_θ + const), evaluated as the naive-score
/// estimator with constant signal R̄ (`weight`). Returns E and ∇E.
pub fn exploration_term(rows: &GaussianMlpRows<'_>, task: &TaskData, weight: f64) -> Result<(f64, Vec<f64>)> {
    if !weight.is_finite() {
        return Err(invalid("exploration weight", format!("must be finite, got {weight}")));
    }
    let mut b = PreparedBatch::new(Estimator::NaiveScore { discount: TaylorDiscount::FromFirst }, 1.0);
    let mut signal = Vec::new();
    for p in 0..task.n_paths() {
        signal.clear();
        signal.resize(task.path_steps(p).len(), weight);
        b.push_advantages(&signal)?;
    }
    Ok(BatchObjective::new(&b, rows)?.with_scale(1.0 / task.n_steps().max(1) as f64).gradient())
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::envs::PointEnv;
    use crate::meta::processing::{ProcessingConfig, process};
    use crate::meta::sampler::{Sampler, SamplerConfig};
    use crate::policy::{GaussianMlpConfig, Policy};
    use rand::{RngExt, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    /// A small policy and one round of samples from `tasks` tasks (short paths).
    pub(crate) fn small_setup(seed: u64, tasks: usize) -> (GaussianMlp, Vec<TaskData>) {
        let env = PointEnv::corners();
        let cfg = GaussianMlpConfig { hidden: vec![5, 4], init_log_std: -0.3, ..Default::default() };
        let mut policy = GaussianMlp::new(4, 2, &cfg, seed).unwrap();
        let mut rng = ChaCha8Rng::seed_from_u64(seed + 50);
        let theta: Vec<f64> = policy.params().iter().map(|t| t + 0.2 * rng.random_range(-1.0..1.0)).collect();
        policy.set_params(&theta).unwrap();
        // Goals near the start so that rewards (and advantages) are not all zero.
        let ts: Vec<Vec<f64>> =
            (0..tasks).map(|k| vec![0.3 + 0.2 * k as f64, -0.4 + 0.3 * k as f64]).collect();
        let s =
            Sampler::new(SamplerConfig { rollouts_per_task: 3, horizon: 7, ..Default::default() }).unwrap();
        let b = s.sample(&env, &ts, &[&policy], seed, 0, 0).unwrap();
        let pc = ProcessingConfig::default();
        let p = process(&b, &pc).unwrap();
        assert!(b.rewards.iter().filter(|r| **r > 0.0).count() > b.n_steps() / 2);
        let data = (0..tasks)
            .map(|k| TaskData::from_batch(&b, &p, k, &policy, pc.gamma, pc.gae_lambda).unwrap())
            .collect();
        (policy, data)
    }

    pub(crate) fn perturbed(p: &GaussianMlp, scale: f64, seed: u64) -> GaussianMlp {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let theta: Vec<f64> = p.params().iter().map(|t| t + scale * rng.random_range(-1.0..1.0)).collect();
        p.with_params(&theta).unwrap()
    }

    pub(crate) fn rand_vec(n: usize, seed: u64) -> Vec<f64> {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        (0..n).map(|_| rng.random_range(-1.0..1.0)).collect()
    }

    fn max_rel(a: &[f64], b: &[f64]) -> f64 {
        let scale = b.iter().map(|x| x.abs()).fold(0.0, f64::max).max(1e-8);
        a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, f64::max) / scale
    }

    #[test]
    fn gradient_and_hvp_match_finite_differences() {
        let (p0, data) = small_setup(4, 1);
        let task = &data[0];
        // Evaluate off-policy (θ ≠ μ) so that every term of the estimators is exercised.
        let policy = perturbed(&p0, 0.15, 9);
        let d = policy.num_params();
        let v = rand_vec(d, 3);
        let objectives = [InnerKind::Maml, InnerKind::Lvc, InnerKind::Taypo2]
            .map(|k| InnerObjective::new(k, 0.99))
            .into_iter()
            .chain(
                [DiceCritic::Time, DiceCritic::Features, DiceCritic::Promp]
                    .map(|c| InnerObjective { dice_critic: c, ..InnerObjective::new(InnerKind::Dr, 0.99) }),
            )
            .chain(
                [(InnerKind::Tmaml, DiceCritic::Time), (InnerKind::Tmaml, DiceCritic::Features)]
                    .into_iter()
                    .chain([(InnerKind::TmamlPast, DiceCritic::Time)])
                    .map(|(k, c)| InnerObjective { dice_critic: c, ..InnerObjective::new(k, 0.99) }),
            )
            .chain(
                [
                    (Taylor2Pairs::Normalised, None, None),
                    (Taylor2Pairs::Normalised, Some(0.3), None),
                    (Taylor2Pairs::Discounted, None, Some(0.3)),
                    (Taylor2Pairs::Discounted, Some(0.3), Some(f64::INFINITY)),
                ]
                .map(|(pairs, clip, pair_clip)| InnerObjective {
                    taypo2_pairs: pairs,
                    taypo2_ratio_clip: clip,
                    taypo2_pair_clip: pair_clip,
                    ..InnerObjective::new(InnerKind::Taypo2, 0.99)
                }),
            );
        // Off-policy enough that the clip of ±0.3 acts on some steps and not on others.
        let ratios = crate::policy::ScoreRows::values(&task.rows(&policy).unwrap()).to_vec();
        let outside = ratios.iter().filter(|r| (*r - 1.0).abs() > 0.3).count();
        assert!(outside > 0 && outside < ratios.len(), "{outside} of {} ratios clipped", ratios.len());
        for base in objectives {
            let kind = (
                base.kind,
                base.dice_critic,
                base.taypo2_pairs,
                base.taypo2_ratio_clip,
                base.taypo2_pair_clip,
            );
            for norm in [Normalisation::Samples, Normalisation::Paths] {
                let obj = InnerObjective { normalisation: norm, ..base };
                let prepared = obj.prepare(task).unwrap();
                let (val, grad, hv) = obj.gradient_and_hvp(&policy, task, &prepared, &v).unwrap();
                // The fused HVP path (used by the meta-gradients) agrees with the chain rule's.
                let rows = task.rows(&policy).unwrap();
                let hv_fused = obj.objective(task, &prepared, &rows).unwrap().hvp(&v);
                let e = max_rel(&hv_fused, &hv);
                assert!(e < 1e-12, "{kind:?} {norm:?}: fused HVP differs by {e}");
                let f = |th: &[f64]| {
                    obj.value_and_gradient(&policy.with_params(th).unwrap(), task, &prepared).unwrap()
                };
                assert!((f(policy.params()).0 - val).abs() < 1e-12);
                let h = 1e-5;
                let th = policy.params();
                let fd_grad: Vec<f64> = (0..d)
                    .map(|i| {
                        let mut a = th.to_vec();
                        a[i] += h;
                        let mut b = th.to_vec();
                        b[i] -= h;
                        (f(&a).0 - f(&b).0) / (2.0 * h)
                    })
                    .collect();
                let e = max_rel(&grad, &fd_grad);
                assert!(e < 1e-6, "{kind:?} {norm:?} gradient rel err {e}");
                let plus: Vec<f64> = th.iter().zip(&v).map(|(t, x)| t + h * x).collect();
                let minus: Vec<f64> = th.iter().zip(&v).map(|(t, x)| t - h * x).collect();
                let fd_hv: Vec<f64> =
                    f(&plus).1.iter().zip(&f(&minus).1).map(|(a, b)| (a - b) / (2.0 * h)).collect();
                let e = max_rel(&hv, &fd_hv);
                assert!(e < 1e-6, "{kind:?} {norm:?} HVP rel err {e}");
            }
        }
    }

    /// Least squares (ridge 1e-5, by SVD of the augmented system) of `y` on the time features
    /// [t/100, (t/100)², (t/100)³, 1] of each step: an independent check of the critic fits.
    fn time_fit(task: &TaskData, y: &[f64]) -> Vec<f64> {
        use nalgebra::{DMatrix, DVector};
        let m = task.n_steps();
        let mut a = DMatrix::zeros(m + 4, 4);
        let mut b = DVector::zeros(m + 4);
        for p in 0..task.n_paths() {
            for (t, i) in task.path_steps(p).enumerate() {
                let s = t as f64 / 100.0;
                for (j, f) in [s, s * s, s * s * s, 1.0].into_iter().enumerate() {
                    a[(i, j)] = f;
                }
                b[i] = y[i];
            }
        }
        for j in 0..4 {
            a[(m + j, j)] = 1e-5f64.sqrt();
        }
        let c = a.clone().svd(true, true).solve(&b, 1e-14).unwrap();
        (a.rows(0, m) * c).iter().copied().collect()
    }

    #[test]
    fn dice_critics_are_the_documented_estimates() {
        let (p0, data) = small_setup(6, 1);
        let task = &data[0];
        let policy = perturbed(&p0, 0.1, 2);
        let g = 0.99f64;
        // time: DR (the same kernel) with the critic V̂_t fitted to the returns, scaled by σ_A.
        let mut returns = Vec::new();
        for p in 0..task.n_paths() {
            returns.extend(crate::meta::processing::discounted_returns(&task.rewards[task.path_steps(p)], g));
        }
        let v_fit = time_fit(task, &returns);
        // σ of the advantages G_t − V̂_t under this critic.
        let adv: Vec<f64> = returns.iter().zip(&v_fit).map(|(g, v)| g - v).collect();
        let mean = adv.iter().sum::<f64>() / adv.len() as f64;
        let sigma = (adv.iter().map(|a| (a - mean).powi(2)).sum::<f64>() / adv.len() as f64).sqrt() + 1e-8;
        let time = InnerObjective::new(InnerKind::Dr, g);
        assert_eq!(time.dice_critic, DiceCritic::Time);
        let mut expected = PreparedBatch::new(Estimator::Dr, g);
        for p in 0..task.n_paths() {
            let st = task.path_steps(p);
            let r: Vec<f64> = task.rewards[st.clone()].iter().map(|x| x / sigma).collect();
            let mut v: Vec<f64> = v_fit[st].iter().map(|x| x / sigma).collect();
            v.push(0.0);
            expected.push(&r, PathCritic::State(&v)).unwrap();
        }
        let prepared = time.prepare(task).unwrap();
        assert_eq!(prepared.estimator, Estimator::Dr);
        assert!(
            max_rel(&prepared.signal, &expected.signal) < 1e-9 && max_rel(&prepared.v0, &expected.v0) < 1e-9
        );
        let rows = task.rows(&policy).unwrap();
        let (a, ga) = time.objective(task, &prepared, &rows).unwrap().gradient();
        let (b, gb) = time.objective(task, &expected, &rows).unwrap().gradient();
        assert!((a - b).abs() < 1e-9 * b.abs().max(1.0) && max_rel(&ga, &gb) < 1e-9);
        // promp: (1/N) Σ_paths Σ_t P_t (γ^t r_t − b_t), b fitted to γ^t r_t, no normalisation.
        let mut discounted = Vec::new();
        for p in 0..task.n_paths() {
            discounted.extend(
                task.rewards[task.path_steps(p)].iter().enumerate().map(|(t, r)| g.powi(t as i32) * r),
            );
        }
        let b_fit = time_fit(task, &discounted);
        let promp = InnerObjective { dice_critic: DiceCritic::Promp, ..time };
        let prepared = promp.prepare(task).unwrap();
        let (value, _) = promp.objective(task, &prepared, &rows).unwrap().gradient();
        let ratios = crate::policy::ScoreRows::values(&rows);
        let mut direct = 0.0;
        for p in 0..task.n_paths() {
            let mut prod = 1.0;
            for i in task.path_steps(p) {
                prod *= ratios[i];
                direct += prod * (discounted[i] - b_fit[i]);
            }
        }
        direct /= task.n_steps() as f64;
        assert!((value - direct).abs() < 1e-9 * direct.abs().max(1.0), "{value} vs {direct}");
        // γ = 0 cannot be divided by.
        let zero = InnerObjective { gamma: 0.0, ..promp };
        assert!(zero.prepare(task).unwrap_err().to_string().contains("γ > 0"));
    }

    #[test]
    fn on_policy_first_derivatives_agree_and_values_are_as_documented() {
        let (policy, data) = small_setup(5, 1);
        let task = &data[0];
        let grads: Vec<Vec<f64>> = [InnerKind::Maml, InnerKind::Lvc, InnerKind::Taypo2]
            .iter()
            .map(|&k| {
                let obj = InnerObjective::new(k, 0.99);
                let prep = obj.prepare(task).unwrap();
                let (v, g) = obj.value_and_gradient(&policy, task, &prep).unwrap();
                // On-policy: log ρ = 0 and ρ − 1 = 0, so every value is 0.
                assert!(v.abs() < 1e-12, "{k:?} value {v}");
                g
            })
            .collect();
        // On-policy all three give (1/N) Σ Â_t ∇log π_t.
        assert!(max_rel(&grads[0], &grads[1]) < 1e-12 && max_rel(&grads[0], &grads[2]) < 1e-12);
        // DR on-policy: (1/N) Σ_t γ^t ∇log π_t (G_t − b_t)/σ_A (telescoping, b_T = 0).
        let obj =
            InnerObjective { dice_critic: DiceCritic::Features, ..InnerObjective::new(InnerKind::Dr, 0.99) };
        let prep = obj.prepare(task).unwrap();
        let (_, g_dr) = obj.value_and_gradient(&policy, task, &prep).unwrap();
        let rows = task.rows(&policy).unwrap();
        let mut w = vec![0.0; task.n_steps()];
        for p in 0..task.n_paths() {
            let st = task.path_steps(p);
            let ret = crate::meta::processing::discounted_returns(&task.rewards[st.clone()], 0.99);
            for (t, i) in st.enumerate() {
                w[i] = 0.99f64.powi(t as i32) * (ret[t] - task.baselines[i])
                    / task.adv_std
                    / task.n_steps() as f64;
            }
        }
        let mut g = vec![0.0; policy.num_params()];
        crate::policy::ScoreRows::vjp_add(&rows, &w, &mut g);
        assert!(max_rel(&g_dr, &g) < 1e-10);
    }

    #[test]
    fn exploration_term_is_weighted_mean_log_likelihood() {
        let (p0, data) = small_setup(6, 1);
        let policy = perturbed(&p0, 0.1, 2);
        let task = &data[0];
        let (val, grad) = exploration_term(&task.rows(&policy).unwrap(), task, 0.7).unwrap();
        let lp = policy.log_prob_batch(&task.obs, &task.actions).unwrap();
        let expect = 0.7 * lp.iter().zip(&task.behaviour_log_probs).map(|(a, b)| a - b).sum::<f64>()
            / task.n_steps() as f64;
        assert!((val - expect).abs() < 1e-12);
        let h = 1e-6;
        let th = policy.params();
        for i in [0, 7, th.len() - 1] {
            let mut a = th.to_vec();
            a[i] += h;
            let mut b = th.to_vec();
            b[i] -= h;
            let e = |th: &[f64]| {
                let q = policy.with_params(th).unwrap();
                exploration_term(&task.rows(&q).unwrap(), task, 0.7).unwrap().0
            };
            let fd = (e(&a) - e(&b)) / (2.0 * h);
            assert!((fd - grad[i]).abs() < 1e-7 * (1.0 + fd.abs()));
        }
        assert!(
            exploration_term(&task.rows(&policy).unwrap(), task, f64::NAN)
                .unwrap_err()
                .to_string()
                .contains("exploration")
        );
    }

    #[test]
    fn push_advantages_rejects_wrong_estimators_and_bad_values() {
        let mut b = PreparedBatch::new(Estimator::Dr, 0.9);
        assert!(b.push_advantages(&[1.0]).unwrap_err().to_string().contains("dr"));
        let mut b =
            PreparedBatch::new(Estimator::TayPo { order: 2, discount: TaylorDiscount::FromFirst }, 0.9);
        let e = b.push_advantages(&[1.0, f64::NAN]).unwrap_err().to_string();
        assert!(e.contains("advantages[1]"), "{e}");
        b.push_advantages(&[1.0, 2.0]).unwrap();
        assert_eq!((b.len(), b.n_steps(), b.v0[0]), (1, 2, 0.0));
    }
}
