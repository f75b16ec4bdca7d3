//! Meta-RL task environments.
//!
//! A [`MetaEnv`] is a family of MDPs indexed by a task vector g (a goal, a direction, or
//! physical-parameter multipliers). Sampling tasks, setting a task, resetting and stepping
//! take explicit random-number generators, so every draw flows from the user's seed.

pub mod point;

pub use point::PointEnv;

use rand_chacha::ChaCha8Rng;

use crate::error::Result;

#[cfg(feature = "mujoco")]
pub mod mujoco;

/// Build a MuJoCo locomotion meta-task by name (e.g. `half-cheetah-rand-direc`).
///
/// # Errors
/// Without the `mujoco` feature: an error saying how to build with it. With it: the errors of
/// `mujoco::make_env` (unknown name, MuJoCo assets not installed).
pub fn make_mujoco_env(name: &str) -> anyhow::Result<Box<dyn MetaEnv>> {
    #[cfg(feature = "mujoco")]
    {
        Ok(mujoco::make_env(name)?)
    }
    #[cfg(not(feature = "mujoco"))]
    {
        anyhow::bail!(
            "environment `{name}` needs MuJoCo, but metagrad was built without the `mujoco` \
             feature: run `scripts/install-mujoco.sh`, then build with `cargo build --release \
             --features mujoco`"
        )
    }
}

/// What one environment step returns.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Step {
    /// Reward r(x_t, a_t, g).
    pub reward: f64,
    /// Whether the episode terminated (a terminal state was reached).
    pub done: bool,
}

/// A distribution of tasks over one environment.
///
/// Actions passed to [`MetaEnv::step`] are in the environment's own units, within
/// [`MetaEnv::action_bounds`]; the sampler maps policy outputs onto those bounds.
pub trait MetaEnv: Send {
    /// Environment name as used on the command line.
    fn name(&self) -> &str;
    /// Observation dimension.
    fn obs_dim(&self) -> usize;
    /// Action dimension.
    fn act_dim(&self) -> usize;
    /// Lower and upper action bounds (each of length `act_dim`).
    fn action_bounds(&self) -> (Vec<f64>, Vec<f64>);
    /// Draw `n` task vectors.
    fn sample_tasks(&self, n: usize, rng: &mut ChaCha8Rng) -> Vec<Vec<f64>>;
    /// Switch to task `task` (as returned by [`MetaEnv::sample_tasks`]).
    ///
    /// # Errors
    /// A task of the wrong length or with invalid entries (the env keeps its previous task).
    fn set_task(&mut self, task: &[f64]) -> Result<()>;
    /// Start an episode; writes the first observation into `obs`.
    ///
    /// # Errors
    /// An `obs` buffer that is not `obs_dim` long.
    fn reset(&mut self, rng: &mut ChaCha8Rng, obs: &mut [f64]) -> Result<()>;
    /// Apply `action`; writes the next observation into `obs`.
    ///
    /// # Errors
    /// Buffers of the wrong length or an action the env refuses (the state is left
    /// unchanged), or a simulator failure.
    fn step(&mut self, action: &[f64], obs: &mut [f64]) -> Result<Step>;
    /// An independent copy (same task), for parallel sampling.
    fn boxed_clone(&self) -> Box<dyn MetaEnv>;
}
