//! Meta-task environments that live outside the crate — a user's Gymnasium environment in
//! Python, Meta-World — stepped by the sampler as batches of copies.
//!
//! A [`MetaEnv`] of this crate is cloned and stepped one copy at a time on
//! the sampler's threads. An environment outside the crate is reached through a foreign
//! call whose cost is paid once per call, and its tasks are opaque objects of its own
//! language. So the contract here is batched and task-indexed:
//!
//! * [`ExternalEnv`] describes the environment ([`EnvInfo`]) and opens [`BatchEnv`]s, one per
//!   sampler (a run's trainer, a sampling worker);
//! * [`BatchEnv::draw_tasks`] draws the tasks of a sampling round from a seed; they stay on
//!   the environment's side and are addressed by their index in the round;
//! * [`BatchEnv::start`] puts copy c on task `tasks[c]` and resets it with seed `seeds[c]`,
//!   [`BatchEnv::step`] steps every started copy at once, [`BatchEnv::reset`] restarts the
//!   copies whose episode ended.
//!
//! # Determinism
//!
//! The engine passes every seed explicitly: the tasks of a round come from the seed given to
//! `draw_tasks`, and each episode of each copy from the seed of its reset. An implementation
//! must make a copy's trajectory a function of (task, reset seed, actions) alone — whatever
//! copy, process or machine steps it — and the drawn tasks a function of the seed alone.
//! Then the sampler's output does not depend on how many copies step at once, nor on how
//! many worker processes step them ([`crate::meta::sampler`]).

use std::fmt;
use std::sync::Arc;

use super::MetaEnv;
use crate::error::{Result, invalid};

/// What the engine needs to know of an external environment before it steps it.
#[derive(Clone, Debug, PartialEq)]
pub struct EnvInfo {
    /// Name recorded in a run's settings (and checked when the run is resumed).
    pub name: String,
    /// Observation dimension (a flat Box space).
    pub obs_dim: usize,
    /// Action dimension (a flat Box space).
    pub act_dim: usize,
    /// Lower action bounds (`act_dim` finite entries).
    pub action_low: Vec<f64>,
    /// Upper action bounds (`act_dim` finite entries, each ≥ its lower bound).
    pub action_high: Vec<f64>,
    /// Whether steps report success (Meta-World's `info["success"]`): the sampler then
    /// records, per path, whether it succeeded at any step.
    pub reports_success: bool,
    /// The environment's own settings (e.g. a benchmark's task name and reward version),
    /// recorded in a run's settings as `env_config`; `Null` if it has none.
    pub settings: serde_json::Value,
}

impl EnvInfo {
    /// Checks the dimensions and the bounds; errors name the environment and the field.
    ///
    /// # Errors
    /// An empty name, zero dimensions, bounds of the wrong length, non-finite bounds or a
    /// lower bound above its upper bound.
    pub fn validate(&self) -> Result<()> {
        let field = |f: &str| format!("env {:?} {f}", self.name);
        if self.name.trim().is_empty() {
            return Err(invalid("env name", "must not be empty"));
        }
        if self.obs_dim == 0 {
            return Err(invalid(field("observation space"), "must have at least one dimension, got 0"));
        }
        if self.act_dim == 0 {
            return Err(invalid(field("action space"), "must have at least one dimension, got 0"));
        }
        for (what, b) in [("low", &self.action_low), ("high", &self.action_high)] {
            if b.len() != self.act_dim {
                return Err(invalid(
                    field(&format!("action space {what}")),
                    format!("has {} entries, expected act_dim = {}", b.len(), self.act_dim),
                ));
            }
            if let Some(x) = b.iter().find(|x| !x.is_finite()) {
                return Err(invalid(
                    field(&format!("action space {what}")),
                    format!(
                        "must be finite (policy actions are mapped linearly onto the bounds), got {x} in {b:?}"
                    ),
                ));
            }
        }
        if let Some(j) = (0..self.act_dim).find(|&j| self.action_low[j] > self.action_high[j]) {
            return Err(invalid(
                field("action space"),
                format!("low[{j}] = {} exceeds high[{j}] = {}", self.action_low[j], self.action_high[j]),
            ));
        }
        Ok(())
    }
}

/// Where [`BatchEnv::step`] writes its results: one entry (or row) per started copy.
#[derive(Debug)]
pub struct StepOut<'a> {
    /// Next observations, copies × obs_dim.
    pub obs: &'a mut [f64],
    /// Rewards.
    pub rewards: &'a mut [f64],
    /// Whether the episode reached a terminal state.
    pub terminated: &'a mut [bool],
    /// Whether the episode was cut by the environment (e.g. its own time limit).
    pub truncated: &'a mut [bool],
    /// Whether the step reports success (false when the env does not report it).
    pub success: &'a mut [bool],
}

/// Copies of an external meta-task environment, stepped as a batch (module docs).
pub trait BatchEnv: Send {
    /// The environment's description (as its [`ExternalEnv::info`]).
    fn info(&self) -> &EnvInfo;
    /// Draws the `n` tasks of a sampling round from `seed`; they become tasks `0..n`,
    /// replacing those of the previous round.
    ///
    /// # Errors
    /// The environment's own (e.g. its task sampler raised, returned the wrong number of
    /// tasks, or tasks that cannot be sent to a worker).
    fn draw_tasks(&mut self, n: usize, seed: u64) -> Result<()>;
    /// Starts `tasks.len()` copies: copy c switches to task `tasks[c]` of the round and
    /// resets with seed `seeds[c]`, writing its first observation into row c of `obs`
    /// (copies × obs_dim). Copies of an earlier start are discarded.
    ///
    /// # Errors
    /// A task index outside the round, or the environment's own.
    fn start(&mut self, tasks: &[usize], seeds: &[u64], obs: &mut [f64]) -> Result<()>;
    /// Resets copies `copies` (their episode ended; they keep their task) with `seeds`,
    /// writing their first observations into their rows of `obs` (copies × obs_dim); other
    /// rows are left as they are.
    ///
    /// # Errors
    /// The environment's own.
    fn reset(&mut self, copies: &[usize], seeds: &[u64], obs: &mut [f64]) -> Result<()>;
    /// Steps every started copy with its row of `actions` (copies × act_dim, within the
    /// action bounds).
    ///
    /// # Errors
    /// The environment's own (an exception, an observation of the wrong shape).
    fn step(&mut self, actions: &[f64], out: StepOut<'_>) -> Result<()>;
    /// The most copies worth starting at once (e.g. what the environment's worker
    /// processes hold); the sampler starts the copies of as many whole tasks as fit, and at
    /// least one task's.
    fn max_copies(&self) -> usize;
}

/// An environment outside the crate: its description, and a factory of [`BatchEnv`]s.
pub trait ExternalEnv: Send + Sync {
    /// The environment's description.
    fn info(&self) -> &EnvInfo;
    /// A new batch of copies (e.g. starts worker processes), owned by one sampler.
    ///
    /// # Errors
    /// The environment's own (its factory raised, a worker could not start).
    fn open(&self) -> Result<Box<dyn BatchEnv>>;
}

/// Builds a Rust [`MetaEnv`] (a user's own, see [`EnvSource::Native`]).
pub type MakeEnv = Arc<dyn Fn() -> Result<Box<dyn MetaEnv>> + Send + Sync>;

/// Where a run's environment comes from.
#[derive(Clone)]
pub enum EnvSource {
    /// An environment of this crate, by name (one of [`super::NAMES`]).
    Builtin(String),
    /// A [`MetaEnv`] written in Rust outside this crate (a user's own): its name, recorded
    /// in the run's settings, and a function that builds it (called once per sampler).
    Native {
        /// The environment's name (not one of [`super::NAMES`]).
        name: String,
        /// Builds the environment.
        make: MakeEnv,
    },
    /// An environment outside the crate's language (e.g. Python), stepped in batches.
    External(Arc<dyn ExternalEnv>),
}

impl fmt::Debug for EnvSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Builtin(name) => f.debug_tuple("Builtin").field(name).finish(),
            Self::Native { name, .. } => f.debug_tuple("Native").field(name).finish(),
            Self::External(env) => f.debug_tuple("External").field(&env.info().name).finish(),
        }
    }
}

impl EnvSource {
    /// A user's own Rust environment called `name`, built by `make`.
    pub fn native(
        name: impl Into<String>,
        make: impl Fn() -> Result<Box<dyn MetaEnv>> + Send + Sync + 'static,
    ) -> Self {
        Self::Native { name: name.into(), make: Arc::new(make) }
    }

    /// The environment's name.
    pub fn name(&self) -> &str {
        match self {
            Self::Builtin(name) | Self::Native { name, .. } => name,
            Self::External(env) => &env.info().name,
        }
    }

    /// A Rust environment of this source (built-in or native), built here; `None` for an
    /// external one.
    ///
    /// # Errors
    /// An unknown built-in name, or the builder's error.
    pub fn build_native(&self) -> Result<Option<Box<dyn MetaEnv>>> {
        match self {
            Self::Builtin(name) => super::make_env(name, None).map(Some),
            Self::Native { make, .. } => make().map(Some),
            Self::External(_) => Ok(None),
        }
    }
}
