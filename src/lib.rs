//! # metagrad
//!
//! Gradient, Hessian and meta-gradient estimators for value functions in reinforcement
//! learning, built by differentiating off-policy evaluation estimates (Tang et al.,
//! NeurIPS 2021, "Unifying Gradient Estimators for Meta-RL via Off-Policy Evaluation").
//!
//! * [`policy`]: differentiable policies and the [`policy::ScoreRows`] derivative products;
//! * [`envs`]: meta-RL task environments.

pub mod envs;
pub mod policy;
