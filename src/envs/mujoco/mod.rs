//! Locomotion meta-tasks on the real MuJoCo engine (feature `mujoco`).
//!
//! The engine (`libmujoco.so.3.17.0` from the PyPI wheel `mujoco==3.17.0`) and the robots'
//! model files (the XML assets of the PyPI wheel `gymnasium==1.4.0`) are installed
//! project-locally by `scripts/install-mujoco.sh` into `.deps/mujoco/`; the build links the
//! engine through `mujoco-rs` 7.0.0 and embeds its directory as the run-time library path.
//!
//! ```text
//! scripts/install-mujoco.sh                  # idempotent; also creates .deps/venv
//! cargo build --release --features mujoco
//! cargo test --release --features mujoco --test mujoco_parity --test mujoco_envs
//! cargo bench --features mujoco --bench mujoco_envs
//! ```
//!
//! [`Sim`] wraps one model and steps it exactly as Gymnasium's `MujocoEnv` does;
//! [`LocomotionEnv`] implements [`crate::envs::MetaEnv`] for the eight meta-tasks of
//! docs/theory.md#environments
//! ([`EnvKind`]); [`make_env`] builds one by its command-line name. Conventions, where that
//! page leaves a choice:
//! * observations, reset noise and healthy conditions are Gymnasium v5's for the robot
//!   (Walker2d uses Gymnasium's `walker2d_v5.xml`, as Walker2d-v5 does);
//! * frame skips: 5 (HalfCheetah, Ant, Humanoid), 8 (Walker2DRandDirec, as ProMP), 4
//!   (Hopper/Walker2d random parameters, as Gymnasium v5);
//! * alive bonuses are paid on every step, the terminal one included (ProMP's convention);
//! * a random-parameter task scales the model's original body masses, inertias, dof damping
//!   and geom frictions per element, then calls `mj_setConst` so derived constants (subtree
//!   masses, inverse weights) match the new parameters;
//! * the forward velocity is measured as Gymnasium v5 does: `qpos[0]` for the planar robots,
//!   the torso body's `xpos` for Ant, the mass centre (`xipos`) for Humanoid.
//!
//! `$METAGRAD_MUJOCO_ASSETS` overrides the directory of the XML files. MuJoCo's model
//! warnings (e.g. the deprecated `settotalmass` of some of Gymnasium's XML files) are printed
//! to stderr once per process, not appended to a `MUJOCO_LOG.TXT` ([`warnings_seen`]).

mod locomotion;
mod sim;

use std::path::PathBuf;

pub use locomotion::{EnvKind, LocomotionEnv};
pub use sim::{PhysParams, Sim, warnings_seen};

use super::MetaEnv;

/// Environment variable naming a directory with the robots' XML files (overrides the default
/// `<repo>/.deps/mujoco/assets`).
pub const ASSETS_ENV_VAR: &str = "METAGRAD_MUJOCO_ASSETS";

/// How to install what the `mujoco` feature needs.
pub const INSTALL_HINT: &str = "run `scripts/install-mujoco.sh` from the repository root \
     (it installs MuJoCo 3.17.0 and Gymnasium 1.4.0's robot models into .deps/mujoco), \
     or set METAGRAD_MUJOCO_ASSETS to a directory holding Gymnasium's robot XML files";

/// Errors from loading models, building environments or invalid inputs.
#[derive(Debug, thiserror::Error)]
pub enum MujocoError {
    /// The environment name is not one of [`EnvKind::NAMES`].
    #[error("unknown MuJoCo environment `{name}`; known environments: {known}")]
    UnknownEnv {
        /// The name that was asked for.
        name: String,
        /// The known names, comma-separated.
        known: String,
    },
    /// A model file is missing (MuJoCo assets not installed).
    #[error("MuJoCo model file {} not found: {}", .0.display(), INSTALL_HINT)]
    AssetMissing(PathBuf),
    /// MuJoCo rejected a model file.
    #[error("MuJoCo could not load {}: {message}", path.display())]
    Load {
        /// The model file.
        path: PathBuf,
        /// MuJoCo's message.
        message: String,
    },
    /// An argument (task vector, action, state, parameter array, ...) is invalid.
    #[error("invalid {field}: {message}")]
    InvalidArgument {
        /// Which argument.
        field: &'static str,
        /// What is wrong with it.
        message: String,
    },
}

impl From<MujocoError> for crate::error::Error {
    fn from(e: MujocoError) -> Self {
        match e {
            MujocoError::InvalidArgument { field, message } => crate::error::invalid(field, message),
            other => crate::error::invalid("MuJoCo environment", other.to_string()),
        }
    }
}

/// The directory holding the robots' XML files: `$METAGRAD_MUJOCO_ASSETS` if set, else
/// `<repo>/.deps/mujoco/assets` (where `scripts/install-mujoco.sh` puts them).
pub fn assets_dir() -> PathBuf {
    match std::env::var_os(ASSETS_ENV_VAR) {
        Some(dir) if !dir.is_empty() => PathBuf::from(dir),
        _ => PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(".deps/mujoco/assets"),
    }
}

/// Build the meta-task environment called `name` (one of [`EnvKind::NAMES`], e.g.
/// `half-cheetah-rand-direc`).
///
/// # Errors
/// [`MujocoError::UnknownEnv`] for an unknown name; [`MujocoError::AssetMissing`] (with install
/// instructions) if the model files are not installed; [`MujocoError::Load`] if MuJoCo rejects
/// the model.
pub fn make_env(name: &str) -> Result<Box<dyn MetaEnv>, MujocoError> {
    make_env_in(name, &assets_dir())
}

/// [`make_env`] with the robots' XML files read from the directory `assets`.
///
/// # Errors
/// As [`make_env`].
pub fn make_env_in(name: &str, assets: &std::path::Path) -> Result<Box<dyn MetaEnv>, MujocoError> {
    let kind = EnvKind::from_name(name)?;
    Ok(Box::new(LocomotionEnv::new_in(kind, assets)?))
}
