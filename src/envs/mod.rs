//! Meta-RL task environments.
//!
//! A [`MetaEnv`] is a family of MDPs indexed by a task vector g (a goal, a direction, or
//! physical-parameter multipliers). Sampling tasks, setting a task, resetting and stepping
//! take explicit random-number generators, so every draw flows from the user's seed.

pub mod external;
pub mod point;
pub mod vector;

pub use external::{BatchEnv, EnvInfo, EnvSource, ExternalEnv, StepOut};
pub use point::PointEnv;
pub use vector::{Autoreset, VecEnv};

use std::path::Path;

use rand_chacha::ChaCha8Rng;

use crate::error::{Result, invalid};

#[cfg(feature = "mujoco")]
pub mod mujoco;

/// Builds a MuJoCo locomotion meta-task by name (e.g. `half-cheetah-rand-direc`).
///
/// # Errors
/// As [`make_env`].
#[deprecated(since = "0.3.0", note = "use `make_env(name, None)`, the one factory of built-in environments")]
pub fn make_mujoco_env(name: &str) -> anyhow::Result<Box<dyn MetaEnv>> {
    Ok(make_env(name, None)?)
}

/// [`make_mujoco_env`] with the robots' XML files read from the directory `assets`.
///
/// # Errors
/// As [`make_env`].
#[deprecated(
    since = "0.3.0",
    note = "use `make_env(name, assets)`, the one factory of built-in environments"
)]
pub fn make_mujoco_env_in(name: &str, assets: Option<&Path>) -> anyhow::Result<Box<dyn MetaEnv>> {
    Ok(make_env(name, assets)?)
}

/// A MuJoCo meta-task of [`NAMES`], its robot read from `assets` (default:
/// `mujoco::assets_dir()`); without the `mujoco` feature, an error saying how to build with it.
fn mujoco_env(name: &str, assets: Option<&Path>) -> anyhow::Result<Box<dyn MetaEnv>> {
    #[cfg(feature = "mujoco")]
    {
        Ok(match assets {
            Some(dir) => mujoco::make_env_in(name, dir)?,
            None => mujoco::make_env(name)?,
        })
    }
    #[cfg(not(feature = "mujoco"))]
    {
        let _ = assets;
        anyhow::bail!(
            "environment `{name}` needs MuJoCo, but metagrad was built without the `mujoco` \
             feature: run `scripts/install-mujoco.sh`, then build with `cargo build --release \
             --features mujoco`"
        )
    }
}

/// Names of all environments: the two point envs, then the eight MuJoCo meta-tasks (which
/// need the `mujoco` feature).
pub const NAMES: [&str; 10] = [
    "point-corners",
    "point-corners-simple",
    "half-cheetah-rand-direc",
    "ant-rand-direc",
    "ant-rand-goal",
    "walker2d-rand-direc",
    "hopper-rand-params",
    "walker2d-rand-params",
    "humanoid-rand-direc-2d",
    "ant-rand-direc-2d",
];

/// The environment called `name` (one of [`NAMES`]): the one factory of the built-in
/// environments (the command line, Python and [`EnvSource::Builtin`] build through it).
/// MuJoCo robots are loaded from `mujoco_assets` if given (default: the installed assets).
///
/// # Errors
/// An unknown name (field `env`, listing the known ones, in every build); a MuJoCo task in a
/// build without the `mujoco` feature (saying how to build with it), or MuJoCo's own errors
/// (assets not installed), under field `env`.
pub fn make_env(name: &str, mujoco_assets: Option<&Path>) -> Result<Box<dyn MetaEnv>> {
    if name.starts_with("point-") {
        return Ok(Box::new(PointEnv::from_name(name)?));
    }
    if !NAMES.contains(&name) {
        return Err(invalid("env", format!("unknown environment {name:?}; known: {}", NAMES.join(", "))));
    }
    mujoco_env(name, mujoco_assets).map_err(|e| invalid("env", format!("{name:?}: {e:#}")))
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
///
/// Your own environment: implement this trait and train on it with
/// [`EnvSource::native`] (`RunSettings::params_in(algo, seed, EnvSource::native(name,
/// make), None)`, then `Trainer::new` or `experiments::meta_rl::run`). The example
/// `examples/own_env.rs` does it for a small task distribution
/// (`cargo run --release --example own_env`). Every random draw comes from the generators
/// the engine passes, so a run is reproducible by its seed; `set_task` must fully set the
/// task (copies are reused across tasks) and `boxed_clone` give an independent copy.
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
    /// The current task vector, if the env reports it (the envs of this crate do).
    fn current_task(&self) -> Option<Vec<f64>> {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_build_their_envs_or_say_why_not() {
        assert_eq!(make_env("point-corners", None).unwrap().name(), "point-corners");
        let msg = make_env("HalfCheetah-v5", None).err().unwrap().to_string();
        assert!(
            msg.contains("env") && msg.contains("HalfCheetah-v5") && msg.contains("ant-rand-goal"),
            "{msg}"
        );
        #[cfg(feature = "mujoco")]
        assert_eq!(NAMES[2..], mujoco::EnvKind::NAMES);
        #[cfg(not(feature = "mujoco"))]
        assert!(make_env(NAMES[2], None).err().unwrap().to_string().contains("--features mujoco"));
        // The deprecated MuJoCo factory is the same factory: an unknown name is unknown.
        #[allow(deprecated)]
        let msg = make_mujoco_env("nope").err().unwrap().to_string();
        assert!(msg.contains("unknown environment") && msg.contains("point-corners"), "{msg}");
    }
}
