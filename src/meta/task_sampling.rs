//! The sampling side of a meta-iteration, task by task, so that the tasks of one iteration
//! can be sampled by several workers (processes or machines) and give the local run's bits.
//!
//! For each task of iteration i, the sampling side is: D_0 sampled with π_θ, then for
//! k = 0 … K−1 the inner step θ_{k+1} = θ_k + η∇V̂_in(θ_k; D_k) and D_{k+1} sampled with
//! π_{θ_{k+1}} (docs/theory.md#k-step-recursion; [`super::algos`]). Everything a task's side draws
//! comes from (seed, i, round, task, rollout) ([`super::sampler::rollout_seed`], with the task's index
//! in the whole iteration), its processing (returns, baseline, GAE, advantage
//! normalisation) and its inner steps read that task's data only, and the tasks of the
//! iteration are drawn from (seed, i) alone. So [`TaskSampler::sample`] on any split of
//! `0..tasks` into ranges gives, range by range, exactly the tasks of the local run, and the
//! iteration's only cross-task quantities — the mean return and the number of steps of
//! each round — are summed on the driver in task order (`round_returns`), as the local
//! sampler sums them. The outer update (and E-MAML's cross-task weights) stay on the
//! driver.
//!
//! # Transfer
//!
//! [`TaskSampler::sample_encoded`] writes a range's tasks in an exact binary form: a header
//! (magic `MGTS`, the format version as 4 little-endian bytes), then, in `postcard`'s
//! encoding of serde's data model (every f64 as its 8 bytes, so values travel bit for bit),
//! the seed, the iteration, a hash of θ's bits and the tasks, each with its global index,
//! ‖θ_K − θ‖ and its K + 1 rounds' [`TaskData`] — or, when the range's sampling diverged (an
//! inner step gave parameters that are not finite), its cause, which the driver turns into
//! the run's divergence. [`TaskSampler::decode`] checks the header
//! against the iteration and θ asked for, every index and length against the run's settings
//! and the environment (serde preallocates at most 1 MiB for a length prefix, so memory
//! grows only with the bytes actually read), and recomputes each inner round's θ-independent estimator inputs
//! ([`InnerRound::new`], a deterministic function of the data), so the driver's rounds are
//! those the worker used. A [`RemoteSampling`] implementation (the Python package's Ray
//! actors) returns such parts, in any order and split; [`TaskSampler::assemble`] puts them
//! in task order and checks that every task is there exactly once.

use std::borrow::Cow;
use std::ops::Range;

use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use std::sync::{Mutex, PoisonError};

use super::metagrad::{self, InnerRound};
use super::objectives::TaskData;
use super::params::{MetaTest, TestStats, ValidParams};
use super::processing::process;
use super::sampler::{SampleBatch, Sampler, SamplerConfig, sample_tasks, task_seed};
use crate::envs::{BatchEnv, EnvSource, MetaEnv};
use crate::error::{Error, Result, invalid};
use crate::policy::{GaussianMlp, GaussianMlpConfig, Policy};

/// One task's sampling side of one iteration: its K inner rounds (data and prepared
/// estimator inputs, with their behaviour policies θ_0 … θ_{K−1}) and its post-update data.
#[derive(Clone, Debug)]
pub struct TaskRounds {
    /// Index of the task in its iteration (0-based).
    pub(crate) task: usize,
    /// The inner rounds D_0 … D_{K−1}.
    pub(crate) rounds: Vec<InnerRound>,
    /// The post-update data D_K.
    pub(crate) post: TaskData,
    /// ‖θ_K − θ‖ of the adaptation that sampled the post-update data.
    pub(crate) step_norm: f64,
}

impl TaskRounds {
    /// Index of the task in its iteration.
    pub fn task(&self) -> usize {
        self.task
    }
    /// The data of round k (k = K: the post-update data).
    pub fn data(&self, k: usize) -> &TaskData {
        if k == self.rounds.len() { &self.post } else { &self.rounds[k].data }
    }
    /// Number of rounds, K + 1.
    pub fn n_rounds(&self) -> usize {
        self.rounds.len() + 1
    }
}

/// Samples the tasks of meta-iterations for one run's settings: the run's environment
/// (built once), its sampler and a policy of its shape. The trainer's own sampler, and a
/// sampling worker's.
pub struct TaskSampler {
    params: ValidParams,
    env: Envs,
    sampler: Sampler,
    policy: GaussianMlp,
}

/// A sampler's environment: a built-in one, or copies of an external one (opened once;
/// behind a lock, since stepping it needs `&mut`).
enum Envs {
    Builtin(Box<dyn MetaEnv>),
    External(Mutex<Box<dyn BatchEnv>>),
}

impl Envs {
    fn open(source: &EnvSource) -> Result<Self> {
        Ok(match source {
            EnvSource::External(e) => Envs::External(Mutex::new(e.open()?)),
            native => Envs::Builtin(native.build_native()?.expect("a Rust environment")),
        })
    }

    fn dims(&self) -> (usize, usize) {
        match self {
            Envs::Builtin(e) => (e.obs_dim(), e.act_dim()),
            Envs::External(e) => {
                let g = e.lock().unwrap_or_else(PoisonError::into_inner);
                (g.info().obs_dim, g.info().act_dim)
            }
        }
    }

    /// Sampling rounds of one iteration on this environment: its tasks are drawn once, from
    /// (seed, iteration), then each round samples tasks `tasks` of them.
    fn rounds(&self, n_tasks: usize, seed: u64, iteration: u64) -> Result<Rounds<'_>> {
        Ok(match self {
            Envs::Builtin(e) => {
                Rounds::Builtin(e.as_ref(), sample_tasks(e.as_ref(), n_tasks, seed, iteration))
            }
            Envs::External(e) => {
                let mut g = e.lock().unwrap_or_else(PoisonError::into_inner);
                g.draw_tasks(n_tasks, task_seed(seed, iteration))?;
                Rounds::External(g)
            }
        })
    }
}

/// The drawn tasks of one iteration on a sampler's environment.
enum Rounds<'a> {
    Builtin(&'a dyn MetaEnv, Vec<Vec<f64>>),
    External(std::sync::MutexGuard<'a, Box<dyn BatchEnv>>),
}

impl Rounds<'_> {
    /// Tasks `tasks` of the iteration sampled with `policies` (one, or one per task) in
    /// round `phase`.
    fn sample(
        &mut self,
        sampler: &Sampler,
        tasks: Range<usize>,
        policies: &[&GaussianMlp],
        seed: u64,
        iteration: u64,
        phase: u64,
    ) -> Result<SampleBatch> {
        match self {
            Rounds::Builtin(env, drawn) => sampler.sample_from(
                *env,
                &drawn[tasks.clone()],
                policies,
                seed,
                iteration,
                phase,
                tasks.start,
            ),
            Rounds::External(env) => {
                sampler.sample_external(&mut ***env, tasks, policies, seed, iteration, phase)
            }
        }
    }
}

/// The policy a run starts from (initialised from its seed).
fn initial_policy(params: &ValidParams, (obs_dim, act_dim): (usize, usize)) -> Result<GaussianMlp> {
    let cfg = GaussianMlpConfig {
        hidden: params.hidden.clone(),
        init_log_std: params.init_log_std,
        precision: params.precision,
    };
    Ok(GaussianMlp::new(obs_dim, act_dim, &cfg, crate::rng::derive_seed(params.seed, &[7]))?)
}

/// Hash of θ's bits (FNV-1a, 64 bits), recorded in a part's header.
fn theta_hash(theta: &[f64]) -> u64 {
    theta
        .iter()
        .flat_map(|x| x.to_bits().to_le_bytes())
        .fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3))
}

const MAGIC: &[u8; 4] = b"MGTS";
/// Seed path of the meta-test's stream under the run's seed.
const TEST_STREAM: u64 = 0x7e57;
/// Version of the parts' format (3: serde's data model in postcard's encoding).
const VERSION: u32 = 3;

impl TaskSampler {
    /// A sampler for the run `params` (builds its environment).
    pub fn new(params: ValidParams) -> Result<Self> {
        let source = params.env_source().clone();
        Self::on(params, &source)
    }

    /// A sampler for the run `params` on the environment `source` (e.g. the run's meta-test
    /// environment), opened here.
    pub(crate) fn on(params: ValidParams, source: &EnvSource) -> Result<Self> {
        let env = Envs::open(source)?;
        let policy = initial_policy(&params, env.dims())?;
        let sampler = Sampler::new(SamplerConfig {
            rollouts_per_task: params.rollouts,
            horizon: params.horizon,
            ..Default::default()
        })?;
        Ok(Self { params, env, sampler, policy })
    }

    /// The settings.
    pub fn params(&self) -> &ValidParams {
        &self.params
    }

    /// The run's initial policy.
    pub fn initial_policy(&self) -> Result<GaussianMlp> {
        initial_policy(&self.params, self.env.dims())
    }

    /// Tasks `tasks` (indices in the iteration, within `0..params.tasks`) of `iteration`
    /// sampled with the policy of parameters `theta`: each task's pre-update rounds, inner
    /// steps and post-update round, exactly as in the local run.
    pub fn sample(&mut self, theta: &[f64], iteration: u64, tasks: Range<usize>) -> Result<Vec<TaskRounds>> {
        let dim = self.policy.num_params();
        if theta.len() != dim {
            return Err(invalid(
                "theta",
                format!("has {} entries, the policy has {dim} parameters", theta.len()),
            ));
        }
        self.policy.set_params(theta).map_err(|e| invalid("theta", e.to_string()))?;
        let policy = self.policy.clone();
        self.sample_with(&policy, iteration, tasks)
    }

    /// [`Self::sample`] written in the exact binary form of the module docs. A range whose
    /// sampling diverged (an inner step gave parameters that are not finite) is written as
    /// such, so that the driver marks the run diverged ([`Self::decode`] returns
    /// [`Error::Diverged`]), as it does for its own sampling.
    pub fn sample_encoded(&mut self, theta: &[f64], iteration: u64, tasks: Range<usize>) -> Result<Vec<u8>> {
        match self.sample(theta, iteration, tasks) {
            Ok(data) => Ok(self.encode(theta, iteration, &data)),
            Err(Error::Diverged(cause)) => Ok(self.write(theta, iteration, Err(cause))),
            Err(e) => Err(e),
        }
    }

    /// Tasks `tasks` of `iteration` sampled with `policy` (θ).
    pub(crate) fn sample_with(
        &self,
        policy: &GaussianMlp,
        iteration: u64,
        tasks: Range<usize>,
    ) -> Result<Vec<TaskRounds>> {
        let p = &self.params;
        if tasks.start > tasks.end || tasks.end > p.tasks {
            return Err(invalid(
                "tasks",
                format!("range {}..{} is not within the iteration's 0..{}", tasks.start, tasks.end, p.tasks),
            ));
        }
        let n = tasks.len();
        if n == 0 {
            return Ok(Vec::new());
        }
        let mut rounds = self.env.rounds(p.tasks, p.seed, iteration)?;
        self.adapt(&mut rounds, policy, tasks, p.seed, iteration, &self.sampler)
    }

    /// The K inner rounds of tasks `tasks` of `rounds` (sampled with `self.sampler`, from
    /// `seed`), starting from `policy`, then the post-update round sampled by `post`.
    fn adapt(
        &self,
        rounds: &mut Rounds<'_>,
        policy: &GaussianMlp,
        tasks: Range<usize>,
        seed: u64,
        iteration: u64,
        post_sampler: &Sampler,
    ) -> Result<Vec<TaskRounds>> {
        let p = &self.params;
        let n = tasks.len();
        let (k_steps, inner, pc) = (p.k(), p.inner(), p.processing());
        let mut policies: Vec<GaussianMlp> = vec![policy.clone(); n];
        let mut per_task: Vec<Vec<InnerRound>> = (0..n).map(|_| Vec::with_capacity(k_steps)).collect();
        let mut post = Vec::new();
        for k in 0..=k_steps {
            let refs: Vec<&GaussianMlp> = if k == 0 { vec![policy] } else { policies.iter().collect() };
            let sampler = if k == k_steps { post_sampler } else { &self.sampler };
            let batch = rounds.sample(sampler, tasks.clone(), &refs, seed, iteration, k as u64)?;
            let proc = process(&batch, &pc)?;
            let data: Vec<TaskData> = (0..n)
                .into_par_iter()
                .map(|t| TaskData::from_batch(&batch, &proc, t, &policies[t], pc.gamma, pc.gae_lambda))
                .collect::<Result<_>>()?;
            if k == k_steps {
                post = data;
                break;
            }
            let stepped: Vec<(InnerRound, GaussianMlp)> = data
                .into_par_iter()
                .zip(policies.par_iter())
                .map(|(d, pol)| {
                    let round = InnerRound::new(&inner, d)?;
                    let (_, next) = metagrad::inner_step(&inner, pol, &round, p.inner_lr)?;
                    Ok((round, next))
                })
                .collect::<Result<_>>()?;
            for (t, (round, next)) in stepped.into_iter().enumerate() {
                per_task[t].push(round);
                policies[t] = next;
            }
        }
        let theta = policy.params();
        Ok(per_task
            .into_iter()
            .zip(post)
            .zip(&policies)
            .enumerate()
            .map(|(t, ((rounds, post), adapted))| {
                let step_norm =
                    adapted.params().iter().zip(theta).map(|(a, b)| (a - b) * (a - b)).sum::<f64>().sqrt();
                TaskRounds { task: tasks.start + t, rounds, post, step_norm }
            })
            .collect())
    }

    /// The meta-test of the policy `policy` after `iteration` ([`MetaTest`]): `m.tasks`
    /// fresh tasks of this sampler's environment (the run's test environment), drawn from a
    /// stream of the run's seed of their own, adapted as in training, then `m.episodes`
    /// evaluation episodes per task with the adapted policies.
    pub(crate) fn evaluate(&self, policy: &GaussianMlp, iteration: u64, m: &MetaTest) -> Result<TestStats> {
        let seed = crate::rng::derive_seed(self.params.seed, &[TEST_STREAM]);
        let eval = Sampler::new(SamplerConfig {
            rollouts_per_task: m.episodes,
            horizon: self.params.horizon,
            ..Default::default()
        })?;
        let mut rounds = self.env.rounds(m.tasks, seed, iteration)?;
        let data = self.adapt(&mut rounds, policy, 0..m.tasks, seed, iteration, &eval)?;
        let (pre, post) = (0, self.params.k());
        let (returns, _) = round_returns(&data, post + 1);
        let success = round_success(&data, post + 1);
        Ok(TestStats {
            pre_return: returns[pre],
            post_return: returns[post],
            pre_success: success.as_ref().map(|s| s[pre]),
            post_success: success.as_ref().map(|s| s[post]),
        })
    }

    /// `data` (sampled with θ = `theta` in `iteration`) in the binary form of the module docs.
    pub fn encode(&self, theta: &[f64], iteration: u64, data: &[TaskRounds]) -> Vec<u8> {
        let tasks = data
            .iter()
            .map(|d| PartTask {
                task: d.task as u64,
                step_norm: d.step_norm,
                rounds: (0..d.n_rounds()).map(|k| Cow::Borrowed(d.data(k))).collect(),
            })
            .collect();
        self.write(theta, iteration, Ok(tasks))
    }

    /// A part: the header, then the tasks or why their sampling diverged.
    fn write(
        &self,
        theta: &[f64],
        iteration: u64,
        tasks: std::result::Result<Vec<PartTask<'_>>, String>,
    ) -> Vec<u8> {
        let part = Part { seed: self.params.seed, iteration, theta_hash: theta_hash(theta), tasks };
        let mut bytes = Vec::from(*MAGIC);
        bytes.extend_from_slice(&VERSION.to_le_bytes());
        postcard::to_extend(&part, bytes).expect("a part serialises")
    }

    /// Reads a part written by [`Self::encode`] for this run, `iteration` and θ = `theta`:
    /// checks it (errors name what does not fit) and prepares each inner round's estimator
    /// inputs.
    pub fn decode(&self, theta: &[f64], iteration: u64, bytes: &[u8]) -> Result<Vec<TaskRounds>> {
        let p = &self.params;
        let bad = |why: String| invalid("sampled data", why);
        if bytes.len() >= 4 && &bytes[..4] != MAGIC {
            return Err(bad("not a part of sampled tasks (no MGTS header)".into()));
        }
        if bytes.len() < 8 {
            return Err(bad(format!("truncated: {} bytes, shorter than the header", bytes.len())));
        }
        let version = u32::from_le_bytes(bytes[4..8].try_into().expect("4 bytes"));
        if version != VERSION {
            return Err(bad(format!("format version {version}, expected {VERSION}")));
        }
        let (part, rest): (Part<'static>, &[u8]) =
            postcard::take_from_bytes(&bytes[8..]).map_err(|e| match e {
                postcard::Error::DeserializeUnexpectedEnd => {
                    bad(format!("truncated: the part ends early, at {} bytes", bytes.len()))
                }
                e => bad(format!("cannot be read: {e}")),
            })?;
        if !rest.is_empty() {
            return Err(bad(format!("{} bytes left over", rest.len())));
        }
        if (part.seed, part.iteration) != (p.seed, iteration) {
            return Err(bad(format!(
                "is of seed {}, iteration {}; expected seed {}, iteration {iteration}",
                part.seed, part.iteration, p.seed
            )));
        }
        if part.theta_hash != theta_hash(theta) {
            return Err(bad(format!("iteration {} was sampled with another θ", part.iteration)));
        }
        let tasks = part.tasks.map_err(|cause| Error::Diverged(format!("sampling worker: {cause}")))?;
        if tasks.len() > p.tasks {
            return Err(bad(format!("number of tasks {} exceeds {}", tasks.len(), p.tasks)));
        }
        let dims = self.env.dims();
        let inner = p.inner();
        tasks
            .into_par_iter()
            .map(|t| {
                if t.task >= p.tasks as u64 {
                    return Err(bad(format!("task index {} ≥ tasks {}", t.task, p.tasks)));
                }
                if t.rounds.len() != p.k() + 1 {
                    return Err(bad(format!(
                        "task {} has {} rounds, expected K + 1 = {}",
                        t.task,
                        t.rounds.len(),
                        p.k() + 1
                    )));
                }
                let mut data = t.rounds.into_iter().map(Cow::into_owned).collect::<Vec<_>>();
                for d in &data {
                    check_task_data(d, dims)?;
                }
                let post = data.pop().expect("K + 1 ≥ 1 rounds");
                let rounds = data.into_iter().map(|d| InnerRound::new(&inner, d)).collect::<Result<_>>()?;
                Ok(TaskRounds { task: t.task as usize, rounds, post, step_norm: t.step_norm })
            })
            .collect()
    }

    /// Parts of an iteration (from [`Self::decode`], any split and order) in task order;
    /// every task of the iteration must be there exactly once.
    pub fn assemble(&self, parts: Vec<Vec<TaskRounds>>) -> Result<Vec<TaskRounds>> {
        let n = self.params.tasks;
        let mut slots: Vec<Option<TaskRounds>> = (0..n).map(|_| None).collect();
        for d in parts.into_iter().flatten() {
            let t = d.task;
            if t >= n {
                return Err(invalid("sampled data", format!("task index {t} ≥ tasks {n}")));
            }
            if slots[t].replace(d).is_some() {
                return Err(invalid("sampled data", format!("task {t} was returned twice")));
            }
        }
        slots
            .into_iter()
            .enumerate()
            .map(|(t, d)| d.ok_or_else(|| invalid("sampled data", format!("task {t} is missing"))))
            .collect()
    }
}

/// Mean return of every round (over all paths of all tasks, as the local sampler's
/// [`super::SampleBatch::average_return`], summed in task order) and the environment steps of
/// the iteration.
pub(crate) fn round_returns(data: &[TaskRounds], rounds: usize) -> (Vec<f64>, u64) {
    let mut steps = 0u64;
    let returns = (0..rounds)
        .map(|k| {
            let paths: usize = data.iter().map(|d| d.data(k).n_paths()).sum();
            steps += data.iter().map(|d| d.data(k).n_steps() as u64).sum::<u64>();
            if paths == 0 {
                return 0.0;
            }
            data.iter().flat_map(|d| d.data(k).rewards.iter()).sum::<f64>() / paths as f64
        })
        .collect();
    (returns, steps)
}

/// Success rate of every round (successful paths over all paths of all tasks), if the
/// environment reports success.
pub(crate) fn round_success(data: &[TaskRounds], rounds: usize) -> Option<Vec<f64>> {
    if data.is_empty() || data.iter().any(|d| (0..rounds).any(|k| d.data(k).success_rate.is_none())) {
        return None;
    }
    Some(
        (0..rounds)
            .map(|k| {
                let (mut hits, mut paths) = (0.0, 0usize);
                for d in data {
                    let (rate, n) = (d.data(k).success_rate.unwrap_or(0.0), d.data(k).n_paths());
                    hits += (rate * n as f64).round();
                    paths += n;
                }
                if paths == 0 { 0.0 } else { hits / paths as f64 }
            })
            .collect(),
    )
}

/// Where the tasks of an iteration are sampled when not by the trainer itself: e.g. by
/// workers in other processes, each running [`TaskSampler::sample_encoded`] on a range of
/// tasks.
pub trait RemoteSampling {
    /// Every task of `iteration` (`tasks` of them) sampled with θ = `theta`, as parts
    /// written by [`TaskSampler::encode`] that together hold each task once (any split,
    /// any order). An error ends the run (its last checkpoint stays).
    fn sample(&mut self, theta: &[f64], iteration: u64, tasks: usize) -> Result<Vec<Vec<u8>>>;
}

/// A part of an iteration's sampled tasks after its header ([`TaskSampler::encode`]).
#[derive(Serialize, Deserialize)]
struct Part<'a> {
    seed: u64,
    iteration: u64,
    /// [`theta_hash`] of the θ the tasks were sampled with.
    theta_hash: u64,
    /// The tasks, or why their sampling diverged.
    tasks: std::result::Result<Vec<PartTask<'a>>, String>,
}

/// One task of a [`Part`]: its index in the iteration, ‖θ_K − θ‖ and its K + 1 rounds.
#[derive(Serialize, Deserialize)]
struct PartTask<'a> {
    task: u64,
    step_norm: f64,
    rounds: Vec<Cow<'a, TaskData>>,
}

/// Checks the lengths of a decoded round against its step count and the environment's
/// dimensions `(obs_dim, act_dim)`.
fn check_task_data(d: &TaskData, (od, ad): (usize, usize)) -> Result<()> {
    let bad = |why: String| Err(invalid("sampled data", why));
    if (d.obs_dim, d.act_dim) != (od, ad) {
        return bad(format!("dimensions {}×{}, the environment's are {od}×{ad}", d.obs_dim, d.act_dim));
    }
    let n = d.rewards.len();
    let offsets = &d.path_offsets;
    if offsets.first() != Some(&0) || offsets.last() != Some(&n) || offsets.windows(2).any(|w| w[0] > w[1]) {
        return bad(format!("path offsets {offsets:?} are not 0 ≤ … ≤ {n}"));
    }
    for (field, len, want) in [
        ("observations", d.obs.len(), n.checked_mul(od)),
        ("actions", d.actions.len(), n.checked_mul(ad)),
        ("behaviour log-probabilities", d.behaviour_log_probs.len(), Some(n)),
        ("behaviour means", d.behaviour_mean.len(), n.checked_mul(ad)),
        ("behaviour log-std", d.behaviour_log_std.len(), Some(ad)),
        ("advantages", d.advantages.len(), Some(n)),
        ("baselines", d.baselines.len(), Some(n)),
    ] {
        if Some(len) != want {
            return bad(format!("{len} {field} for {n} steps"));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::meta::algos::{Algorithm, Params, Trainer};
    use crate::meta::params::ValidParams;

    fn tiny(algo: Algorithm) -> ValidParams {
        Params {
            tasks: 5,
            rollouts: 2,
            horizon: 12,
            hidden: vec![8],
            inner_steps: Some(2),
            iterations: 2,
            ..Params::new("point-corners", algo)
        }
        .validate()
        .unwrap()
    }

    /// Workers in the same process: each samples its ranges with its own sampler; the parts
    /// come back last range first.
    struct Workers {
        samplers: Vec<TaskSampler>,
        ranges: Vec<Range<usize>>,
    }

    impl RemoteSampling for Workers {
        fn sample(&mut self, theta: &[f64], iteration: u64, _tasks: usize) -> Result<Vec<Vec<u8>>> {
            let n = self.samplers.len();
            let mut parts: Vec<Vec<u8>> = self
                .ranges
                .iter()
                .enumerate()
                .map(|(i, r)| self.samplers[i % n].sample_encoded(theta, iteration, r.clone()))
                .collect::<Result<_>>()?;
            parts.reverse();
            Ok(parts)
        }
    }

    #[test]
    fn remote_sampling_gives_the_local_run_bit_for_bit_for_every_split() {
        for algo in Algorithm::KNOWN {
            let p = tiny(algo);
            let mut local = Trainer::new(p.clone()).unwrap();
            let mut want = Vec::new();
            while !local.finished() {
                want.push(local.step().unwrap().unwrap());
            }
            let splits: [&[(usize, usize)]; 3] =
                [&[(0, 5)], &[(0, 2), (2, 3), (3, 5)], &[(4, 5), (0, 1), (1, 4), (5, 5)]];
            for ranges in splits {
                let samplers = (0..2).map(|_| TaskSampler::new(p.clone()).unwrap()).collect();
                let mut workers = Workers { samplers, ranges: ranges.iter().map(|&(a, b)| a..b).collect() };
                let mut t = Trainer::new(p.clone()).unwrap();
                let mut got = Vec::new();
                while !t.finished() {
                    got.push(t.step_with(Some(&mut workers)).unwrap().unwrap());
                }
                for (a, b) in got.iter().zip(&want) {
                    let strip = |s: &crate::meta::algos::IterationStats| {
                        let mut s = s.clone();
                        s.wall_s = 0.0;
                        serde_json::to_string(&s).unwrap()
                    };
                    assert_eq!(strip(a), strip(b), "{algo}, ranges {ranges:?}");
                }
                let bits = |x: &[f64]| x.iter().map(|v| v.to_bits()).collect::<Vec<_>>();
                assert_eq!(bits(t.policy().params()), bits(local.policy().params()), "{algo} {ranges:?}");
                assert_eq!(t.state().adam, local.state().adam);
            }
        }
    }

    #[test]
    fn a_worker_whose_sampling_diverged_marks_the_run_diverged() {
        // θ + ηg overflows at the first inner step (raw advantages, the largest η).
        let p = Params {
            horizon: 100,
            inner_lr: f64::MAX,
            normalize_advantages: false,
            ..(*tiny(Algorithm::Promp)).clone()
        }
        .validate()
        .unwrap();
        let mut s = TaskSampler::new(p.clone()).unwrap();
        let theta = s.initial_policy().unwrap().params().to_vec();
        let part = s.sample_encoded(&theta, 0, 0..5).unwrap();
        let e = s.decode(&theta, 0, &part).unwrap_err();
        assert!(matches!(&e, Error::Diverged(c) if c.contains("not finite")), "{e}");
        let samplers = vec![TaskSampler::new(p.clone()).unwrap()];
        let mut workers = Workers { samplers, ranges: vec![0..2, 2..5] };
        let mut t = Trainer::new(p).unwrap();
        assert!(t.step_with(Some(&mut workers)).unwrap().is_none());
        let d = t.state().diverged.clone().expect("diverged");
        assert!(d.iteration == 0 && d.cause.contains("sampling worker"), "{d:?}");
        assert!(t.finished() && t.state().history.is_empty());
    }

    #[test]
    fn parts_encode_exactly_and_bad_parts_are_refused() {
        let p = tiny(Algorithm::Promp);
        let mut s = TaskSampler::new(p.clone()).unwrap();
        let theta = s.initial_policy().unwrap().params().to_vec();
        let whole = s.sample(&theta, 3, 0..5).unwrap();
        let bytes = s.encode(&theta, 3, &whole);
        let back = s.decode(&theta, 3, &bytes).unwrap();
        assert_eq!(s.encode(&theta, 3, &back), bytes);
        for (a, b) in whole.iter().zip(&back) {
            for k in 0..a.n_rounds() {
                assert_eq!(a.data(k), b.data(k));
            }
        }
        // A part holding tasks 1..3 has the whole round's bits of those tasks.
        let part = s.sample_encoded(&theta, 3, 1..3).unwrap();
        assert_eq!(s.encode(&theta, 3, &whole[1..3]), part);
        let msg = |r: Result<Vec<TaskRounds>>| r.unwrap_err().to_string();
        assert!(msg(s.decode(&theta, 4, &bytes)).contains("iteration 3; expected seed 1, iteration 4"));
        let mut other = theta.clone();
        other[0] += 1.0;
        assert!(msg(s.decode(&other, 3, &bytes)).contains("another θ"));
        assert!(msg(s.decode(&theta, 3, &bytes[..bytes.len() - 1])).contains("truncated"));
        assert!(msg(s.decode(&theta, 3, b"nope")).contains("MGTS"));
        // Lengths that do not fit the steps or the environment are refused.
        let mut short = whole.clone();
        short[0].post.obs.pop();
        let e = msg(s.decode(&theta, 3, &s.encode(&theta, 3, &short)));
        assert!(e.contains("invalid sampled data") && e.contains("observations for"), "{e}");
        let mut offsets = whole.clone();
        offsets[1].post.path_offsets[0] = 1;
        assert!(msg(s.decode(&theta, 3, &s.encode(&theta, 3, &offsets))).contains("path offsets"));
        let mut longer = bytes.clone();
        longer.push(0);
        assert!(msg(s.decode(&theta, 3, &longer)).contains("1 bytes left over"));
        let k3 =
            TaskSampler::new(Params { inner_steps: Some(3), ..(*p).clone() }.validate().unwrap()).unwrap();
        assert!(msg(k3.decode(&theta, 3, &bytes)).contains("expected K + 1 = 4"));
        let part = s.decode(&theta, 3, &part).unwrap();
        let e = s.assemble(vec![part.clone(), part.clone()]).unwrap_err().to_string();
        assert!(e.contains("task 1 was returned twice"), "{e}");
        assert!(s.assemble(vec![part]).unwrap_err().to_string().contains("task 0 is missing"));
        assert!(s.sample(&theta, 3, 4..6).unwrap_err().to_string().contains("range 4..6"));
        assert!(s.sample(&theta[1..], 3, 0..1).unwrap_err().to_string().contains("invalid theta"));
    }
}
