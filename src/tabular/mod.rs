//! Tabular MDPs, trajectories laid out for the estimators, and the exact oracle.

pub mod batch;
pub mod mdp;
pub mod oracle;

pub use batch::{Critic, TabularBatch};
pub use mdp::{RandomMdpParams, TabularMdp, Trajectory};
