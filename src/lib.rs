//! # metagrad
//!
//! Gradient, Hessian and meta-gradient estimators for value functions in reinforcement
//! learning, built by differentiating off-policy evaluation estimates (Tang et al.,
//! NeurIPS 2021, "Unifying Gradient Estimators for Meta-RL via Off-Policy Evaluation").
//!
//! * [`policy`]: differentiable policies and the [`policy::ScoreRows`] derivative products;
//! * [`envs`]: meta-RL task environments;
//! * [`meta`]: meta-RL sampling, sample processing and outer optimisers;
//! * [`error`]: setting errors.

pub mod envs;
pub mod error;
pub mod meta;
pub mod policy;
