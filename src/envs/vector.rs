//! Many copies of one meta-task environment stepped as a batch, in parallel: the engine of
//! the Python package's Gymnasium-style vector environment (`metagrad.envs`).
//!
//! Conventions (those of Gymnasium 1.x's `VectorEnv`):
//! * [`VecEnv::step`] takes one action per copy, an n × act_dim row-major array in the env's
//!   own units ([`MetaEnv::action_bounds`]). Actions must be finite; values outside the
//!   bounds are passed on as Gymnasium does (the point envs clip them, MuJoCo clamps the
//!   controls, the control costs see them unclipped). It yields every copy's next
//!   observation, reward, whether the episode *terminated* (the env's `done`) and whether it
//!   was *truncated* (its step count reached `horizon`, as Gymnasium's `TimeLimit`; both can
//!   be true).
//! * Autoreset ([`Autoreset`]): `NextStep` (Gymnasium's default) resets a copy whose episode
//!   ended at the next call of `step`, ignoring that call's action for it and reporting
//!   reward 0, not terminated, not truncated and the new episode's first observation;
//!   `SameStep` resets it within the step that ends the episode, reporting the new episode's
//!   first observation and keeping the old episode's last one as its final observation;
//!   `Disabled` refuses to step a copy whose episode ended until [`VecEnv::reset`] resets it.
//! * Randomness: copy i owns a ChaCha8 generator that its resets draw from (the envs' steps
//!   are deterministic). [`VecEnv::reset`] with a seed s_i for copy i restarts that
//!   generator as `ChaCha8Rng::seed_from_u64(s_i)`; without one the copy continues its
//!   stream. The Python face passes s_i = seed + i for `reset(seed=seed)`, as Gymnasium's
//!   vector envs do, so copy i of a batch is bit-identical to a one-copy batch reset with
//!   seed + i.
//! * Copies share no state and are stepped in fixed chunks of [`CHUNK`] copies on the
//!   current rayon pool, so the results do not depend on the number of threads.

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;

use super::MetaEnv;
use crate::error::{Error, Result, invalid};

/// Copies per parallel work item.
pub const CHUNK: usize = 16;

/// What happens to a copy whose episode ended (terminated or truncated); module docs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Autoreset {
    /// Reset at the next step (Gymnasium's default).
    NextStep,
    /// Reset within the step that ends the episode; the last observation is kept apart.
    SameStep,
    /// No autoreset: stepping an ended copy is an error until it is reset.
    Disabled,
}

impl Autoreset {
    /// Names, as Gymnasium's `AutoresetMode` values.
    pub const NAMES: [&'static str; 3] = ["NextStep", "SameStep", "Disabled"];

    /// The mode's name (Gymnasium's `AutoresetMode` value).
    pub fn name(self) -> &'static str {
        match self {
            Self::NextStep => "NextStep",
            Self::SameStep => "SameStep",
            Self::Disabled => "Disabled",
        }
    }

    /// The mode called `name` (one of [`Autoreset::NAMES`]).
    ///
    /// # Errors
    /// An unknown name (field `autoreset_mode`).
    pub fn from_name(name: &str) -> Result<Self> {
        match name {
            "NextStep" => Ok(Self::NextStep),
            "SameStep" => Ok(Self::SameStep),
            "Disabled" => Ok(Self::Disabled),
            other => Err(invalid(
                "autoreset_mode",
                format!("unknown mode {other:?}; expected one of {}", Self::NAMES.join(", ")),
            )),
        }
    }
}

/// One environment copy with its generator and episode bookkeeping.
struct Slot {
    env: Box<dyn MetaEnv>,
    rng: ChaCha8Rng,
    /// Steps taken in the current episode.
    elapsed: usize,
    /// Whether the copy has been reset at least once.
    started: bool,
    /// Whether the episode ended at the last step and has not been reset since.
    ended: bool,
    reward: f64,
    terminated: bool,
    truncated: bool,
    /// Whether `SameStep` autoreset happened at the last step (the final observation is kept).
    has_final: bool,
}

impl Slot {
    fn reset(&mut self, seed: Option<u64>, obs: &mut [f64]) -> Result<()> {
        if let Some(s) = seed {
            self.rng = ChaCha8Rng::seed_from_u64(s);
        }
        self.env.reset(&mut self.rng, obs)?;
        self.elapsed = 0;
        self.started = true;
        self.ended = false;
        self.reward = 0.0;
        self.terminated = false;
        self.truncated = false;
        self.has_final = false;
        Ok(())
    }

    fn step(
        &mut self,
        action: &[f64],
        obs: &mut [f64],
        final_obs: &mut [f64],
        horizon: Option<usize>,
        mode: Autoreset,
    ) -> Result<()> {
        if self.ended && mode == Autoreset::NextStep {
            return self.reset(None, obs);
        }
        self.has_final = false;
        let s = self.env.step(action, obs)?;
        self.elapsed += 1;
        self.reward = s.reward;
        self.terminated = s.done;
        self.truncated = horizon.is_some_and(|h| self.elapsed >= h);
        self.ended = self.terminated || self.truncated;
        if self.ended && mode == Autoreset::SameStep {
            final_obs.copy_from_slice(obs);
            let (reward, terminated, truncated) = (self.reward, self.terminated, self.truncated);
            self.reset(None, obs)?;
            (self.reward, self.terminated, self.truncated, self.has_final) =
                (reward, terminated, truncated, true);
        }
        Ok(())
    }
}

/// The reason of an error, without its field (to re-attach it under another name).
fn reason(e: Error) -> String {
    match e {
        Error::Invalid { field, reason } => format!("{field}: {reason}"),
        other => other.to_string(),
    }
}

/// `num_envs` copies of one environment, stepped as a batch (module docs).
pub struct VecEnv {
    slots: Vec<Slot>,
    /// A spare copy on which tasks are validated before any copy changes.
    proto: Box<dyn MetaEnv>,
    obs_dim: usize,
    act_dim: usize,
    task_dim: usize,
    horizon: Option<usize>,
    autoreset: Autoreset,
    /// Current task of every copy, n × task_dim.
    tasks: Vec<f64>,
    obs: Vec<f64>,
    final_obs: Vec<f64>,
    rewards: Vec<f64>,
    terminated: Vec<bool>,
    truncated: Vec<bool>,
    has_final: Vec<bool>,
}

impl std::fmt::Debug for VecEnv {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VecEnv")
            .field("env", &self.proto.name())
            .field("num_envs", &self.slots.len())
            .field("horizon", &self.horizon)
            .field("autoreset", &self.autoreset)
            .finish_non_exhaustive()
    }
}

impl VecEnv {
    /// `num_envs` copies of `env` (with its current task), truncating episodes after
    /// `horizon` steps (`None`: never). Copy i's generator starts as
    /// `ChaCha8Rng::seed_from_u64(seed + i)` (wrapping). Call [`VecEnv::reset`] before stepping.
    ///
    /// # Errors
    /// Zero copies or more than [`crate::limits::MAX_VECTOR_ENVS`], a zero horizon, or an env
    /// without observations.
    pub fn new(
        env: &dyn MetaEnv,
        num_envs: usize,
        horizon: Option<usize>,
        autoreset: Autoreset,
        seed: u64,
    ) -> Result<Self> {
        if num_envs == 0 || num_envs > crate::limits::MAX_VECTOR_ENVS {
            return Err(invalid(
                "num_envs",
                format!("must be in 1..={}, got {num_envs}", crate::limits::MAX_VECTOR_ENVS),
            ));
        }
        if horizon == Some(0) {
            return Err(invalid("horizon", "must be at least 1 (or none), got 0"));
        }
        let mut proto = env.boxed_clone();
        // The trait's task getter is optional: an env without one gets a task set explicitly.
        let task = match proto.current_task() {
            Some(t) => t,
            None => {
                let t = proto.sample_tasks(1, &mut ChaCha8Rng::seed_from_u64(0)).pop().unwrap_or_default();
                proto.set_task(&t)?;
                t
            }
        };
        let (od, ad) = (proto.obs_dim(), proto.act_dim());
        if od == 0 {
            return Err(invalid("env", format!("{} has no observation (obs_dim 0)", proto.name())));
        }
        let slots = (0..num_envs)
            .map(|i| Slot {
                env: proto.boxed_clone(),
                rng: ChaCha8Rng::seed_from_u64(seed.wrapping_add(i as u64)),
                elapsed: 0,
                started: false,
                ended: false,
                reward: 0.0,
                terminated: false,
                truncated: false,
                has_final: false,
            })
            .collect();
        Ok(Self {
            slots,
            proto,
            obs_dim: od,
            act_dim: ad,
            task_dim: task.len(),
            horizon,
            autoreset,
            tasks: task.repeat(num_envs),
            obs: vec![0.0; num_envs * od],
            final_obs: vec![0.0; num_envs * od],
            rewards: vec![0.0; num_envs],
            terminated: vec![false; num_envs],
            truncated: vec![false; num_envs],
            has_final: vec![false; num_envs],
        })
    }

    /// Number of copies.
    pub fn num_envs(&self) -> usize {
        self.slots.len()
    }
    /// Observation dimension of one copy.
    pub fn obs_dim(&self) -> usize {
        self.obs_dim
    }
    /// Action dimension of one copy.
    pub fn act_dim(&self) -> usize {
        self.act_dim
    }
    /// Length of a task vector.
    pub fn task_dim(&self) -> usize {
        self.task_dim
    }
    /// Steps after which an episode is truncated (`None`: never).
    pub fn horizon(&self) -> Option<usize> {
        self.horizon
    }
    /// The autoreset mode.
    pub fn autoreset(&self) -> Autoreset {
        self.autoreset
    }
    /// A spare copy of the environment (name, bounds, task sampling); its state is not the
    /// copies'.
    pub fn prototype(&self) -> &dyn MetaEnv {
        self.proto.as_ref()
    }
    /// Observations of all copies (n × obs_dim, row-major) after the last reset or step.
    pub fn obs(&self) -> &[f64] {
        &self.obs
    }
    /// Rewards of the last step (0 for copies just reset).
    pub fn rewards(&self) -> &[f64] {
        &self.rewards
    }
    /// Termination flags of the last step.
    pub fn terminated(&self) -> &[bool] {
        &self.terminated
    }
    /// Truncation flags of the last step (time limit reached).
    pub fn truncated(&self) -> &[bool] {
        &self.truncated
    }
    /// With `SameStep` autoreset: which copies were reset by the last step, and their final
    /// observations (n × obs_dim; rows of other copies are stale).
    pub fn final_obs(&self) -> (&[bool], &[f64]) {
        (&self.has_final, &self.final_obs)
    }
    /// Current tasks of all copies (n × task_dim, row-major).
    pub fn tasks(&self) -> &[f64] {
        &self.tasks
    }

    /// Runs `f(copy index, slot, obs row, final-obs row, action row)` on every copy selected by
    /// `select` (all if `None`), in fixed chunks of [`CHUNK`] on the current rayon pool, then
    /// gathers the copies' rewards and flags. The error of the lowest copy index wins.
    fn for_each_copy<F>(&mut self, actions: Option<&[f64]>, select: Option<&[bool]>, f: F) -> Result<()>
    where
        F: Fn(usize, &mut Slot, &mut [f64], &mut [f64], &[f64]) -> Result<()> + Sync,
    {
        let (od, ad) = (self.obs_dim, self.act_dim);
        let errors: Vec<Option<(usize, Error)>> = self
            .slots
            .par_chunks_mut(CHUNK)
            .zip(self.obs.par_chunks_mut(CHUNK * od))
            .zip(self.final_obs.par_chunks_mut(CHUNK * od))
            .enumerate()
            .map(|(c, ((slots, obs), fin))| {
                for (j, slot) in slots.iter_mut().enumerate() {
                    let i = c * CHUNK + j;
                    if select.is_some_and(|m| !m[i]) {
                        continue;
                    }
                    let act = actions.map_or(&[][..], |a| &a[i * ad..(i + 1) * ad]);
                    let (o, fo) = (&mut obs[j * od..(j + 1) * od], &mut fin[j * od..(j + 1) * od]);
                    if let Err(e) = f(i, slot, o, fo, act) {
                        return Some((i, e));
                    }
                }
                None
            })
            .collect();
        for (i, s) in self.slots.iter().enumerate() {
            self.rewards[i] = s.reward;
            self.terminated[i] = s.terminated;
            self.truncated[i] = s.truncated;
            self.has_final[i] = s.has_final;
        }
        match errors.into_iter().flatten().next() {
            Some((i, e)) => Err(invalid(format!("copy {i}"), reason(e))),
            None => Ok(()),
        }
    }

    /// Reset the copies selected by `mask` (all if `None`), re-seeding copy i's generator with
    /// `seeds[i]` where given (module docs); other copies keep their state, observation,
    /// reward and flags.
    ///
    /// # Errors
    /// `seeds` or `mask` not of length `num_envs`, a mask selecting no copy, or an env error
    /// (naming the copy).
    pub fn reset(&mut self, seeds: Option<&[Option<u64>]>, mask: Option<&[bool]>) -> Result<()> {
        let n = self.num_envs();
        if let Some(s) = seeds
            && s.len() != n
        {
            return Err(invalid("seed", format!("expected {n} seeds (one per copy), got {}", s.len())));
        }
        if let Some(m) = mask {
            if m.len() != n {
                return Err(invalid("reset_mask", format!("expected shape ({n},), got ({},)", m.len())));
            }
            if !m.iter().any(|&b| b) {
                return Err(invalid("reset_mask", "must select at least one copy (all entries are False)"));
            }
        }
        self.for_each_copy(None, mask, |i, slot, obs, _, _| slot.reset(seeds.and_then(|s| s[i]), obs))
    }

    /// One step of every copy with `actions` (n × act_dim, row-major; module docs).
    ///
    /// # Errors
    /// Before any copy changes: `actions` of the wrong length or with a non-finite entry
    /// (named by its index), a copy never reset, or with `Disabled` autoreset a copy whose
    /// episode ended. An env error while stepping names the copy (copies before it in the
    /// same chunk and other chunks have stepped).
    pub fn step(&mut self, actions: &[f64]) -> Result<()> {
        let (n, ad) = (self.num_envs(), self.act_dim);
        if actions.len() != n * ad {
            return Err(invalid(
                "actions",
                format!("expected {n}×{ad} = {} values (num_envs × act_dim), got {}", n * ad, actions.len()),
            ));
        }
        if let Some(k) = actions.iter().position(|a| !a.is_finite()) {
            return Err(invalid(
                format!("actions[{}, {}]", k / ad, k % ad),
                format!("must be finite, got {}", actions[k]),
            ));
        }
        if let Some(i) = self.slots.iter().position(|s| !s.started) {
            return Err(invalid(format!("copy {i}"), "reset() must be called before step()"));
        }
        if self.autoreset == Autoreset::Disabled
            && let Some(i) = self.slots.iter().position(|s| s.ended)
        {
            return Err(invalid(
                format!("copy {i}"),
                "its episode ended (terminated or truncated) and autoreset is disabled: reset it first",
            ));
        }
        let (horizon, mode) = (self.horizon, self.autoreset);
        self.for_each_copy(Some(actions), None, |_, slot, obs, fin, act| {
            slot.step(act, obs, fin, horizon, mode)
        })
    }

    /// Set the tasks: one task (task_dim values) for every copy, or one per copy (n ×
    /// task_dim, row-major). Every task is validated before any copy changes. A direction or
    /// goal takes effect at once (the rewards); a randomised-parameter task re-initialises the
    /// physics state. Call [`VecEnv::reset`] afterwards to start episodes under the new tasks.
    ///
    /// # Errors
    /// A length that is neither, or a task the env refuses (naming its row).
    pub fn set_tasks(&mut self, tasks: &[f64]) -> Result<()> {
        let (n, td) = (self.num_envs(), self.task_dim);
        let per_copy = if tasks.len() == td {
            false
        } else if tasks.len() == n * td {
            true
        } else {
            return Err(invalid(
                "task",
                format!(
                    "expected {td} values (one task for all copies) or {n}×{td} (one per copy), got {}",
                    tasks.len()
                ),
            ));
        };
        let rows: Vec<&[f64]> = if td == 0 { vec![tasks; n] } else { tasks.chunks_exact(td).collect() };
        for (k, t) in rows.iter().enumerate() {
            if let Some(j) = t.iter().position(|v| !v.is_finite()) {
                let field = if per_copy { format!("task[{k}, {j}]") } else { format!("task[{j}]") };
                return Err(invalid(field, format!("must be finite, got {}", t[j])));
            }
            self.proto.set_task(t).map_err(|e| {
                invalid(if per_copy { format!("task[{k}]") } else { "task".into() }, reason(e))
            })?;
        }
        let rows = &rows;
        self.slots
            .par_chunks_mut(CHUNK)
            .enumerate()
            .map(|(c, slots)| {
                for (j, slot) in slots.iter_mut().enumerate() {
                    let i = c * CHUNK + j;
                    slot.env.set_task(rows[if per_copy { i } else { 0 }])?;
                }
                Ok(())
            })
            .collect::<Result<Vec<()>>>()?;
        self.tasks = if per_copy { tasks.to_vec() } else { tasks.repeat(n) };
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::envs::{PointEnv, Step};

    /// A point env that terminates after `after` steps of an episode.
    #[derive(Clone)]
    struct Ending(PointEnv, usize, usize);

    impl MetaEnv for Ending {
        fn name(&self) -> &str {
            "ending"
        }
        fn obs_dim(&self) -> usize {
            self.0.obs_dim()
        }
        fn act_dim(&self) -> usize {
            2
        }
        fn action_bounds(&self) -> (Vec<f64>, Vec<f64>) {
            self.0.action_bounds()
        }
        fn sample_tasks(&self, n: usize, rng: &mut ChaCha8Rng) -> Vec<Vec<f64>> {
            self.0.sample_tasks(n, rng)
        }
        fn set_task(&mut self, task: &[f64]) -> Result<()> {
            self.0.set_task(task)
        }
        fn reset(&mut self, rng: &mut ChaCha8Rng, obs: &mut [f64]) -> Result<()> {
            self.2 = 0;
            self.0.reset(rng, obs)
        }
        fn step(&mut self, action: &[f64], obs: &mut [f64]) -> Result<Step> {
            self.2 += 1;
            let s = self.0.step(action, obs)?;
            Ok(Step { done: self.2 >= self.1, ..s })
        }
        fn boxed_clone(&self) -> Box<dyn MetaEnv> {
            Box::new(self.clone())
        }
    }

    fn actions(n: usize, t: usize) -> Vec<f64> {
        (0..2 * n).map(|k| (((k * 7 + t * 13) % 11) as f64 - 5.0) * 0.03).collect()
    }

    fn run(v: &mut VecEnv, steps: usize) -> Vec<f64> {
        let n = v.num_envs();
        let mut out = v.obs().to_vec();
        for t in 0..steps {
            v.step(&actions(n, t)).unwrap();
            out.extend_from_slice(v.obs());
            out.extend_from_slice(v.rewards());
        }
        out
    }

    #[test]
    fn batch_equals_single_copies_and_ignores_thread_count() {
        let env = PointEnv::corners();
        let n = 37;
        let seeds: Vec<Option<u64>> = (0..n as u64).map(|i| Some(100 + i)).collect();
        let batch = |threads: usize| {
            let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
            pool.install(|| {
                let mut v = VecEnv::new(&env, n, Some(5), Autoreset::NextStep, 0).unwrap();
                v.set_tasks(&[-2.0, 2.0]).unwrap();
                v.reset(Some(&seeds), None).unwrap();
                run(&mut v, 12)
            })
        };
        let one = batch(1);
        assert_eq!(one, batch(3));
        // Copy i alone, reset with seed 100 + i, steps exactly as row i of the batch.
        let stride = n * 4 + n;
        for i in 0..n {
            let mut v = VecEnv::new(&env, 1, Some(5), Autoreset::NextStep, 9).unwrap();
            v.set_tasks(&[-2.0, 2.0]).unwrap();
            v.reset(Some(&[Some(100 + i as u64)]), None).unwrap();
            assert_eq!(v.obs(), &one[i * 4..(i + 1) * 4]);
            for t in 0..12 {
                v.step(&actions(n, t)[2 * i..2 * i + 2]).unwrap();
                let base = n * 4 + t * stride;
                assert_eq!(v.obs(), &one[base + i * 4..base + (i + 1) * 4], "copy {i} step {t}");
                assert_eq!(v.rewards()[0], one[base + n * 4 + i]);
            }
        }
    }

    #[test]
    fn next_step_autoreset_follows_gymnasium() {
        let env = Ending(PointEnv::corners_simple(), 3, 0);
        let mut v = VecEnv::new(&env, 2, Some(4), Autoreset::NextStep, 1).unwrap();
        v.reset(Some(&[Some(5), Some(6)]), None).unwrap();
        for _ in 0..2 {
            v.step(&[0.01; 4]).unwrap();
            assert_eq!(v.terminated(), [false, false]);
        }
        v.step(&[0.01; 4]).unwrap();
        assert_eq!((v.terminated(), v.truncated()), (&[true, true][..], &[false, false][..]));
        // The next step resets: reward 0, flags cleared, obs = a fresh reset from the stream,
        // the action ignored: what a second reset() of copies seeded alike gives.
        v.step(&[0.05; 4]).unwrap();
        assert_eq!((v.rewards(), v.terminated()), (&[0.0, 0.0][..], &[false, false][..]));
        assert_eq!(v.truncated(), [false, false]);
        let mut r = VecEnv::new(&env, 2, Some(4), Autoreset::NextStep, 1).unwrap();
        r.reset(Some(&[Some(5), Some(6)]), None).unwrap();
        let first = r.obs().to_vec();
        r.reset(None, None).unwrap();
        assert_ne!(r.obs(), &first[..]);
        assert_eq!(v.obs(), r.obs());
        // Truncation at the horizon (with a long-lived env), both flags possible.
        let mut w = VecEnv::new(&PointEnv::corners(), 1, Some(2), Autoreset::NextStep, 1).unwrap();
        w.reset(None, None).unwrap();
        w.step(&[0.0; 2]).unwrap();
        assert_eq!(w.truncated(), [false]);
        w.step(&[0.0; 2]).unwrap();
        assert_eq!((w.terminated(), w.truncated()), (&[false][..], &[true][..]));
    }

    #[test]
    fn same_step_and_disabled_modes() {
        let env = Ending(PointEnv::corners_simple(), 2, 0);
        let mut s = VecEnv::new(&env, 3, None, Autoreset::SameStep, 1).unwrap();
        let mut d = VecEnv::new(&env, 3, None, Autoreset::Disabled, 1).unwrap();
        let seeds = [Some(1), Some(2), Some(3)];
        s.reset(Some(&seeds), None).unwrap();
        d.reset(Some(&seeds), None).unwrap();
        for v in [&mut s, &mut d] {
            v.step(&[0.02; 6]).unwrap();
            v.step(&[0.02; 6]).unwrap();
            assert_eq!(v.terminated(), [true; 3]);
        }
        assert_eq!(s.final_obs().0, [true; 3]);
        assert_eq!(s.final_obs().1, d.obs(), "final observations are the disabled env's last ones");
        assert_ne!(s.obs(), d.obs());
        let msg = d.step(&[0.0; 6]).unwrap_err().to_string();
        assert!(msg.contains("copy 0") && msg.contains("autoreset is disabled"), "{msg}");
        d.reset(None, Some(&[true, false, true])).unwrap();
        assert!(d.step(&[0.0; 6]).unwrap_err().to_string().contains("copy 1"));
        d.reset(None, Some(&[false, true, false])).unwrap();
        d.step(&[0.0; 6]).unwrap();
        s.step(&[0.0; 6]).unwrap();
        assert_eq!(s.final_obs().0, [false; 3]);
    }

    #[test]
    fn bad_inputs_are_errors_before_any_change() {
        let env = PointEnv::corners();
        let mut v = VecEnv::new(&env, 2, None, Autoreset::NextStep, 0).unwrap();
        assert!(v.step(&[0.0; 4]).unwrap_err().to_string().contains("reset() must be called"));
        v.reset(Some(&[Some(1), Some(2)]), None).unwrap();
        let before = v.obs().to_vec();
        assert!(v.step(&[0.0; 3]).unwrap_err().to_string().contains("actions"));
        let msg = v.step(&[0.0, 0.0, 0.0, f64::NAN]).unwrap_err().to_string();
        assert!(msg.contains("actions[1, 1]") && msg.contains("NaN"), "{msg}");
        assert_eq!(v.obs(), before);
        assert!(v.reset(Some(&[Some(1)]), None).unwrap_err().to_string().contains("seed"));
        assert!(v.reset(None, Some(&[false, false])).unwrap_err().to_string().contains("reset_mask"));
        assert!(v.set_tasks(&[1.0, 2.0, 3.0]).unwrap_err().to_string().contains("task"));
        let msg = v.set_tasks(&[1.0, 1.0, f64::INFINITY, 0.0]).unwrap_err().to_string();
        assert!(msg.contains("task[1, 0]"), "{msg}");
        assert_eq!(v.tasks(), [2.0, 2.0, 2.0, 2.0], "refused tasks leave every copy's task");
        v.set_tasks(&[-2.0, -2.0, 2.0, -2.0]).unwrap();
        assert_eq!(v.tasks(), [-2.0, -2.0, 2.0, -2.0]);
        assert!(VecEnv::new(&env, 0, None, Autoreset::NextStep, 0).is_err());
        assert!(VecEnv::new(&env, 1, Some(0), Autoreset::NextStep, 0).is_err());
        assert!(Autoreset::from_name("next").unwrap_err().to_string().contains("autoreset_mode"));
        assert_eq!(Autoreset::NAMES.map(|m| Autoreset::from_name(m).unwrap().name()), Autoreset::NAMES);
    }
}
