//! Meta-gradients through K inner steps by Hessian-vector products (paper Alg. 1,
//! docs/theory.md#k-step-recursion), never forming a Hessian.
//!
//! For one task with inner-loop data D_0 … D_{K−1} (D_k sampled by the policy at the
//! k-th adapted parameters) the adaptation is
//!
//! θ_0 = θ,  θ_{k+1} = θ_k + η ∇V̂_in(θ_k; D_k),
//!
//! with the data (and the behaviour probabilities inside the ratios) held fixed, so the
//! ratios are re-evaluated at every θ_k. Its Jacobian is
//! J_K = ∂θ_K/∂θ = (I + ηĤ_{K−1}) ⋯ (I + ηĤ_0), Ĥ_k = ∇²V̂_in(θ_k; D_k) (symmetric). For an
//! outer objective L(θ) = L_out(θ_K) + Σ_k E_k(θ_k) (E_k: per-step terms such as E-MAML's
//! exploration term or ProMP's inner KL penalty) reverse accumulation gives
//!
//! v ← ∇L_out(θ_K);  for k = K−1 … 0: v ← v + ηĤ_k v + ∇E_k(θ_k);  ∇L(θ) = v,
//!
//! one HVP per inner step ([`vjp`]). Forward accumulation J_K u ([`jvp`]) costs the same;
//! TRPO's Fisher-vector product through the adaptation is J_Kᵀ F' J_K u. The first-order
//! variant ([`Order::First`], FMAML) sets ∂θ_{k+1}/∂θ_k = I, i.e. drops the HVPs.
//!
//! [`jvp`] and [`vjp`] work on [`BatchObjective`]s of any policy (the tabular end-to-end
//! test uses the softmax); [`adapt`], [`chain_rows`] and [`meta_gradient`] wire them to
//! the Gaussian MLP and per-task [`InnerRound`]s.

use serde::{Deserialize, Serialize};

use super::objectives::{InnerObjective, TaskData};
use crate::error::{Error, Result, invalid};
use crate::estimators::{BatchObjective, PreparedBatch};
use crate::policy::{GaussianMlp, GaussianMlpRows, Policy, ScoreRows};

/// Whether the meta-gradient differentiates through the inner gradients.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Order {
    /// ∂θ_{k+1}/∂θ_k = I (first-order MAML).
    First,
    /// ∂θ_{k+1}/∂θ_k = I + ηĤ_k.
    Second,
}

/// One inner step's data for one task with the inner objective's prepared inputs.
#[derive(Clone, Debug)]
pub struct InnerRound {
    /// The samples.
    pub data: TaskData,
    /// θ-independent estimator inputs.
    pub prepared: PreparedBatch,
}

impl InnerRound {
    /// Prepares `data` for `inner`.
    pub fn new(inner: &InnerObjective, data: TaskData) -> Result<Self> {
        let prepared = inner.prepare(&data)?;
        Ok(Self { data, prepared })
    }
}

/// θ + η∇V̂_in(θ; D) as a policy, with V̂_in(θ; D).
pub fn inner_step(
    inner: &InnerObjective,
    policy: &GaussianMlp,
    round: &InnerRound,
    eta: f64,
) -> Result<(f64, GaussianMlp)> {
    let (value, grad) = inner.value_and_gradient(policy, &round.data, &round.prepared)?;
    Ok((value, step_policy(policy, &grad, eta)?))
}

/// The adapted policies θ_0 = `policy`, θ_1, …, θ_K for fixed data (K = `rounds.len()`).
pub fn adapt(
    inner: &InnerObjective,
    policy: &GaussianMlp,
    rounds: &[InnerRound],
    eta: f64,
) -> Result<Vec<GaussianMlp>> {
    let mut out = Vec::with_capacity(rounds.len() + 1);
    out.push(policy.clone());
    for r in rounds {
        let (_, next) = inner_step(inner, out.last().expect("non-empty"), r, eta)?;
        out.push(next);
    }
    Ok(out)
}

/// The adaptation at fixed data with every step's rows kept: `rows[k]` holds π_{θ_k} on
/// D_k (and the backward pass of its inner gradient), `last` is θ_K. The same θ_k as
/// [`adapt`] bit for bit, with one forward pass per step for the adaptation, the
/// meta-gradient and any number of later Hessian-vector products.
pub struct AdaptedChain<'d> {
    /// π_{θ_k}'s rows on D_k, k = 0 … K−1.
    pub rows: Vec<GaussianMlpRows<'d>>,
    /// θ_K.
    pub last: GaussianMlp,
}

/// [`adapt`] keeping every step's rows ([`AdaptedChain`]).
pub fn adapt_chain<'d>(
    inner: &InnerObjective,
    policy: &GaussianMlp,
    rounds: &'d [InnerRound],
    eta: f64,
) -> Result<AdaptedChain<'d>> {
    let mut rows = Vec::with_capacity(rounds.len());
    let mut current = policy.clone();
    for round in rounds {
        let r = round.data.into_rows(current)?;
        let (_, g) = inner.objective(&round.data, &round.prepared, &r)?.gradient();
        current = step_policy(r.policy(), &g, eta)?;
        rows.push(r);
    }
    Ok(AdaptedChain { rows, last: current })
}

/// θ + η g as a policy (the inner step's update).
fn step_policy(policy: &GaussianMlp, g: &[f64], eta: f64) -> Result<GaussianMlp> {
    let theta: Vec<f64> = policy.params().iter().zip(g).map(|(t, g)| t + eta * g).collect();
    policy.with_params(&theta).map_err(|e| {
        Error::Diverged(format!("an inner step gave parameters that are not finite ({e}); lower --inner-lr"))
    })
}

/// Rows of every inner round at its adapted policy (`policies[k]` on D_k).
pub fn chain_rows<'a>(
    policies: &'a [GaussianMlp],
    rounds: &'a [InnerRound],
) -> Result<Vec<GaussianMlpRows<'a>>> {
    rounds.iter().zip(policies).map(|(r, p)| r.data.rows(p)).collect()
}

/// The inner objectives on those rows (Ĥ_k = their Hessians).
pub fn chain_objectives<'a>(
    inner: &InnerObjective,
    rows: &'a [GaussianMlpRows<'a>],
    rounds: &'a [InnerRound],
) -> Result<Vec<BatchObjective<'a, GaussianMlpRows<'a>>>> {
    rows.iter().zip(rounds).map(|(r, round)| inner.objective(&round.data, &round.prepared, r)).collect()
}

/// J_K u: u ← u + ηĤ_k u for k = 0 … K−1 (identity for [`Order::First`]).
pub fn jvp<R: ScoreRows>(objs: &[BatchObjective<'_, R>], eta: f64, order: Order, u: &[f64]) -> Vec<f64> {
    let mut u = u.to_vec();
    if order == Order::Second {
        for o in objs {
            let hu = o.hvp(&u);
            u.iter_mut().zip(&hu).for_each(|(a, b)| *a += eta * b);
        }
    }
    u
}

/// J_Kᵀ w plus per-step terms: w ← w + ηĤ_k w + `extras[k]` for k = K−1 … 0 (`extras` empty
/// or of length K; HVPs dropped for [`Order::First`]).
pub fn vjp<R: ScoreRows>(
    objs: &[BatchObjective<'_, R>],
    eta: f64,
    order: Order,
    w: &[f64],
    extras: &[Vec<f64>],
) -> Result<Vec<f64>> {
    if !extras.is_empty() && extras.len() != objs.len() {
        return Err(invalid(
            "extras",
            format!("expected 0 or {} per-step terms, got {}", objs.len(), extras.len()),
        ));
    }
    let (_, w) =
        accumulate_back(objs, eta, order, (0.0, w.to_vec()), |k| Ok(extras.get(k).map(|e| (0.0, e))))?;
    Ok(w)
}

/// The reverse recursion shared by [`vjp`] and [`meta_gradient_on_chain`]: from (L, w),
/// for k = K−1 … 0: w ← w + ηĤ_k w, then (L, w) ← (L + E_k, w + ∇E_k) with
/// (E_k, ∇E_k) = `extra(k)` when it gives one.
fn accumulate_back<R: ScoreRows, E: AsRef<[f64]>>(
    objs: &[BatchObjective<'_, R>],
    eta: f64,
    order: Order,
    (mut value, mut w): (f64, Vec<f64>),
    mut extra: impl FnMut(usize) -> Result<Option<(f64, E)>>,
) -> Result<(f64, Vec<f64>)> {
    for k in (0..objs.len()).rev() {
        if order == Order::Second {
            let hw = objs[k].hvp(&w);
            w.iter_mut().zip(&hw).for_each(|(a, b)| *a += eta * b);
        }
        if let Some((e, ge)) = extra(k)? {
            value += e;
            w.iter_mut().zip(ge.as_ref()).for_each(|(a, b)| *a += b);
        }
    }
    Ok((value, w))
}

/// An outer objective at θ_K: given π_{θ_K}, (L_out, ∇L_out).
pub type OuterTerm<'f> = dyn FnMut(&GaussianMlp) -> Result<(f64, Vec<f64>)> + 'f;

/// A per-step term E_k of the outer objective: given k and π_{θ_k}'s rows on D_k,
/// (E_k, ∇E_k), or `None`.
pub type StepTerm<'f> = dyn Fn(usize, &GaussianMlpRows<'_>) -> Result<Option<(f64, Vec<f64>)>> + 'f;

/// The meta-gradient of L(θ) = L_out(θ_K(θ)) + Σ_k E_k(θ_k(θ)) for one task at fixed data:
/// adapts and accumulates back in one recursion that keeps step k's rows alive from the
/// inner gradient to the HVP (one forward pass per inner step). `outer(π_{θ_K})` gives
/// (L_out, ∇L_out); `extra` the per-step terms. Returns (L, ∇L).
pub fn meta_gradient_with(
    inner: &InnerObjective,
    policy: &GaussianMlp,
    rounds: &[InnerRound],
    eta: f64,
    order: Order,
    outer: &mut OuterTerm<'_>,
    extra: &StepTerm<'_>,
) -> Result<(f64, Vec<f64>)> {
    let Some((round, rest)) = rounds.split_first() else {
        return outer(policy);
    };
    let k = 0;
    let rows = round.data.rows(policy)?;
    let obj = inner.objective(&round.data, &round.prepared, &rows)?;
    let (_, g_in) = obj.gradient();
    let next = step_policy(policy, &g_in, eta)?;
    let shifted = |j: usize, r: &GaussianMlpRows<'_>| extra(j + 1, r);
    let (mut value, mut v) = meta_gradient_with(inner, &next, rest, eta, order, outer, &shifted)?;
    if order == Order::Second {
        let hv = obj.hvp(&v);
        v.iter_mut().zip(&hv).for_each(|(a, b)| *a += eta * b);
    }
    if let Some((e, ge)) = extra(k, &rows)? {
        value += e;
        v.iter_mut().zip(&ge).for_each(|(a, b)| *a += b);
    }
    Ok((value, v))
}

/// [`meta_gradient_with`] without per-step terms: (L_out(θ_K), ∇_θ L_out(θ_K(θ))).
pub fn meta_gradient(
    inner: &InnerObjective,
    policy: &GaussianMlp,
    rounds: &[InnerRound],
    eta: f64,
    order: Order,
    mut outer: impl FnMut(&GaussianMlp) -> Result<(f64, Vec<f64>)>,
) -> Result<(f64, Vec<f64>)> {
    meta_gradient_with(inner, policy, rounds, eta, order, &mut outer, &|_, _| Ok(None))
}

/// [`meta_gradient_with`] on an adaptation already taken ([`adapt_chain`]; `objs[k]` the
/// inner objective on `chain.rows[k]`): the same value and meta-gradient bit for bit,
/// without repeating the adaptation's forward and backward passes.
pub fn meta_gradient_on_chain<'d>(
    objs: &[BatchObjective<'_, GaussianMlpRows<'d>>],
    chain: &AdaptedChain<'d>,
    eta: f64,
    order: Order,
    outer: &mut OuterTerm<'_>,
    extra: &StepTerm<'_>,
) -> Result<(f64, Vec<f64>)> {
    if objs.len() != chain.rows.len() {
        return Err(invalid(
            "objectives",
            format!("expected one per adapted step ({}), got {}", chain.rows.len(), objs.len()),
        ));
    }
    let start = outer(&chain.last)?;
    accumulate_back(objs, eta, order, start, |k| extra(k, &chain.rows[k]))
}

#[cfg(test)]
mod tests;
