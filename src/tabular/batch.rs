//! Tabular trajectories laid out for the estimators: rows for the softmax policy and the
//! θ-independent inputs for each estimator.

use super::Trajectory;
use crate::error::Result;
use crate::estimators::{BatchObjective, Estimator, PathCritic, PreparedBatch};
use crate::policy::{SoftmaxRows, TabularSoftmax};
use crate::tabular::oracle::Derivatives;

/// A tabular critic.
#[derive(Clone, Debug, PartialEq)]
pub enum Critic {
    /// V̂(x) per state.
    StateValues(Vec<f64>),
    /// Q̂(x, a), row-major |X|×|A|.
    ActionValues(Vec<f64>),
}

/// Trajectories flattened for the estimators, with the behaviour probabilities of the
/// taken actions.
#[derive(Clone, Debug)]
pub struct TabularBatch<'a> {
    trajectories: &'a [Trajectory],
    /// μ as a row-major |X|×|A| table.
    behaviour: &'a [f64],
    n_actions: usize,
    step_states: Vec<usize>,
    /// state·|A| + action per step.
    step_flat: Vec<usize>,
    /// 1/μ(a_t|x_t) per step.
    step_inv_behaviour: Vec<f64>,
    path_states: Vec<usize>,
}

impl<'a> TabularBatch<'a> {
    /// Lays out validated trajectories (see [`crate::problem`] for validation).
    pub fn new(trajectories: &'a [Trajectory], behaviour: &'a [f64], n_actions: usize) -> Self {
        let mut b = Self {
            trajectories,
            behaviour,
            n_actions,
            step_states: Vec::new(),
            step_flat: Vec::new(),
            step_inv_behaviour: Vec::new(),
            path_states: Vec::new(),
        };
        for tr in trajectories {
            for (&x, &a) in tr.states.iter().zip(&tr.actions) {
                b.step_states.push(x);
                b.step_flat.push(x * n_actions + a);
                b.step_inv_behaviour.push(1.0 / behaviour[x * n_actions + a]);
            }
            b.path_states.extend_from_slice(&tr.states);
        }
        b
    }

    /// The θ-independent inputs of `estimator` (critic values looked up per state).
    pub fn prepare(
        &self,
        estimator: Estimator,
        gamma: f64,
        critic: Option<&Critic>,
    ) -> Result<PreparedBatch> {
        let na = self.n_actions;
        let mut prepared = PreparedBatch::new(estimator, gamma);
        let (mut v, mut taken, mut mean) = (Vec::new(), Vec::new(), Vec::new());
        for tr in self.trajectories {
            let path_critic =
                match critic {
                    None => PathCritic::None,
                    Some(Critic::StateValues(values)) => {
                        v.clear();
                        v.extend(tr.states.iter().map(|&x| values[x]));
                        PathCritic::State(&v)
                    }
                    Some(Critic::ActionValues(q)) => {
                        taken.clear();
                        taken.extend(tr.states.iter().zip(&tr.actions).map(|(&x, &a)| q[x * na + a]));
                        mean.clear();
                        mean.extend(tr.states.iter().map(|&x| {
                            (0..na).map(|b| self.behaviour[x * na + b] * q[x * na + b]).sum::<f64>()
                        }));
                        PathCritic::Action { taken: &taken, behaviour_mean: &mean }
                    }
                };
            prepared.push(&tr.rewards, path_critic)?;
        }
        Ok(prepared)
    }

    /// The softmax policy's rows for `prepared` (critic-mean rows when it needs them).
    pub fn rows(
        &'a self,
        policy: &'a TabularSoftmax,
        prepared: &PreparedBatch,
        critic: Option<&'a Critic>,
    ) -> SoftmaxRows<'a> {
        let q = match critic {
            Some(Critic::ActionValues(q)) if prepared.critic_means => Some(q.as_slice()),
            _ => None,
        };
        policy.rows(&self.step_states, &self.step_flat, &self.step_inv_behaviour, &self.path_states, q)
    }

    /// Mean estimate over the batch with its gradient, and the Hessian when `hessian`.
    pub fn estimate(
        &self,
        estimator: Estimator,
        gamma: f64,
        policy: &TabularSoftmax,
        critic: Option<&Critic>,
        hessian: bool,
    ) -> Result<Derivatives> {
        let prepared = self.prepare(estimator, gamma, critic)?;
        let rows = self.rows(policy, &prepared, critic);
        let objective = BatchObjective::new(&prepared, &rows)?;
        Ok(if hessian {
            let (value, gradient, hessian) = objective.hessian();
            Derivatives { value, gradient, hessian }
        } else {
            let (value, gradient) = objective.gradient();
            Derivatives { value, gradient, hessian: Vec::new() }
        })
    }
}
