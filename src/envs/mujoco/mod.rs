//! Locomotion meta-tasks on the real MuJoCo engine (feature `mujoco`).
//!
//! The engine (`libmujoco.so.3.17.0`) and the robots' model files (Gymnasium 1.4.0's XML
//! assets) are installed project-locally by `scripts/install-mujoco.sh` into `.deps/mujoco/`.
//! [`Sim`] wraps one model; [`LocomotionEnv`] implements [`crate::envs::MetaEnv`] for the seven
//! meta-tasks of notes §5 ([`EnvKind`]); [`make_env`] builds one by its command-line name.

mod locomotion;
mod sim;

use std::path::PathBuf;

pub use locomotion::{EnvKind, LocomotionEnv};
pub use sim::{PhysParams, Sim};

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
    let kind = EnvKind::from_name(name)?;
    Ok(Box::new(LocomotionEnv::new(kind)?))
}
