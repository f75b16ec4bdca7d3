//! # metagrad
//!
//! Gradient, Hessian and meta-gradient estimators for value functions in reinforcement
//! learning, built by differentiating off-policy evaluation estimates (Tang et al.,
//! NeurIPS 2021, "Unifying Gradient Estimators for Meta-RL via Off-Policy Evaluation").
//!
//! * [`estimators`]: IS, DR, truncated DR, TayPO-K kernels and the single chain rule;
//! * [`policy`]: differentiable policies and the [`policy::ScoreRows`] derivative products;
//! * [`tabular`]: tabular MDPs and the exact oracle (V, ∇V, ∇²V, finite-horizon J_T);
//! * [`envs`]: meta-RL task environments;
//! * [`meta`]: meta-RL sampling, sample processing and outer optimisers;
//! * [`experiments`]: the paper's studies and their result files;
//! * [`plot`]: PNG/SVG line plots with error bars;
//! * [`atomic`]: every file written to a temporary file and renamed into place;
//! * [`cpu`]: the instruction-set level of the hot loops (`METAGRAD_CPU`);
//! * [`limits`]: documented size limits, checked before allocation;
//! * [`stop`]: cooperative stop requests for long computations;
//! * `cli` (feature `cli`): the command-line tool `metagrad`.

// Index loops mirror the formulas (x, a, t subscripts); keep them.
#![allow(clippy::needless_range_loop)]

// The command line's modules name the library `metagrad::…`, as a dependent does.
extern crate self as metagrad;

pub mod atomic;
#[cfg(feature = "cli")]
pub mod cli;
pub mod cpu;
pub mod envs;
pub mod error;
pub mod estimators;
pub mod experiments;
pub mod limits;
pub mod meta;
mod numeric;
pub mod plot;
pub mod policy;
pub mod problem;
pub mod rng;
pub mod stop;
pub mod tabular;

pub use error::{Error, Result};
