//! The JSON problem format of `metagrad estimate`, validated once at the boundary.
//!
//! ```text
//! { "gamma": 0.8, "start_state": 0,
//!   "transitions": [[[...]]],          // |X|×|A|×|X|, each row sums to 1
//!   "rewards": [[...]],                // |X|×|A|
//!   "theta": [[...]],                  // |X|×|A| softmax logits of π
//!   "behaviour": [[...]],              // |X|×|A| μ, each row sums to 1
//!   "critic": {"state_values": [...]} or {"action_values": [[...]]},   // optional
//!   "trajectories": [ {"states": [x_0,…,x_T], "actions": [a_0,…,a_{T-1}],
//!                      "rewards": [r_0,…,r_{T-1}]}, … ] }
//! ```
//!
//! [`RawProblem`] mirrors the file; [`Problem::from_raw`] checks every field (shapes,
//! probabilities, finiteness, index ranges, μ > 0 on taken actions) and names the first
//! offending one with its value.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result, ensure_finite, invalid};
use crate::estimators::{BatchObjective, Estimator};
use crate::limits::Limits;
use crate::policy::TabularSoftmax;
use crate::tabular::mdp::check_probability_row;
use crate::tabular::oracle::{self, Derivatives};
use crate::tabular::{Critic, TabularBatch, TabularMdp, Trajectory};

/// The critic as written in the file.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawCritic {
    /// V̂(x) per state.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub state_values: Option<Vec<f64>>,
    /// Q̂(x, a), |X|×|A|.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub action_values: Option<Vec<Vec<f64>>>,
}

/// A trajectory as written in the file (indices checked later).
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawTrajectory {
    /// x_0 … x_T.
    pub states: Vec<i64>,
    /// a_0 … a_{T−1}.
    pub actions: Vec<i64>,
    /// r_0 … r_{T−1}.
    pub rewards: Vec<f64>,
}

/// The problem file as parsed, before validation.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawProblem {
    /// γ ∈ [0, 1).
    pub gamma: f64,
    /// x_0.
    pub start_state: i64,
    /// P\[x\]\[a\]\[y\].
    pub transitions: Vec<Vec<Vec<f64>>>,
    /// r\[x\]\[a\].
    pub rewards: Vec<Vec<f64>>,
    /// Softmax logits θ\[x\]\[a\] of π.
    pub theta: Vec<Vec<f64>>,
    /// μ\[x\]\[a\].
    #[serde(alias = "behavior")]
    pub behaviour: Vec<Vec<f64>>,
    /// Optional critic.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub critic: Option<RawCritic>,
    /// Data from μ.
    pub trajectories: Vec<RawTrajectory>,
}

/// A validated problem.
#[derive(Clone, Debug)]
pub struct Problem {
    /// The MDP (for the exact oracle).
    pub mdp: TabularMdp,
    /// π_θ.
    pub policy: TabularSoftmax,
    /// μ, row-major |X|×|A|.
    pub behaviour: Vec<f64>,
    /// The critic, if any.
    pub critic: Option<Critic>,
    /// The trajectories.
    pub trajectories: Vec<Trajectory>,
}

/// Checks a |X|×|A| table and flattens it.
fn table(field: &str, rows: &[Vec<f64>], ns: usize, na: usize) -> Result<Vec<f64>> {
    if rows.len() != ns {
        return Err(invalid(field, format!("expected {ns} rows (one per state), got {}", rows.len())));
    }
    let mut flat = Vec::with_capacity(ns * na);
    for (x, row) in rows.iter().enumerate() {
        if row.len() != na {
            return Err(invalid(
                format!("{field}[{x}]"),
                format!("expected {na} entries (one per action), got {}", row.len()),
            ));
        }
        for (a, &v) in row.iter().enumerate() {
            ensure_finite(|| format!("{field}[{x}][{a}]"), v)?;
        }
        flat.extend_from_slice(row);
    }
    Ok(flat)
}

fn index(field: impl Fn() -> String, value: i64, bound: usize, what: &str) -> Result<usize> {
    if value < 0 || value as u64 >= bound as u64 {
        return Err(invalid(
            field(),
            format!("{value} is not a {what} index (valid: 0..{})", bound as i64 - 1),
        ));
    }
    Ok(value as usize)
}

impl RawProblem {
    /// The file form of a problem.
    pub fn from_problem(p: &Problem) -> Self {
        let (ns, na) = (p.mdp.n_states(), p.mdp.n_actions());
        let rows = |flat: &[f64]| flat.chunks(na).map(<[f64]>::to_vec).collect::<Vec<_>>();
        let transitions =
            (0..ns).map(|x| (0..na).map(|a| p.mdp.next_probs(x, a).to_vec()).collect()).collect();
        use crate::policy::Policy;
        Self {
            gamma: p.mdp.gamma(),
            start_state: p.mdp.start_state() as i64,
            transitions,
            rewards: rows(p.mdp.rewards()),
            theta: rows(p.policy.params()),
            behaviour: rows(&p.behaviour),
            critic: p.critic.as_ref().map(|c| match c {
                Critic::StateValues(v) => RawCritic { state_values: Some(v.clone()), action_values: None },
                Critic::ActionValues(q) => RawCritic { state_values: None, action_values: Some(rows(q)) },
            }),
            trajectories: p
                .trajectories
                .iter()
                .map(|t| RawTrajectory {
                    states: t.states.iter().map(|&x| x as i64).collect(),
                    actions: t.actions.iter().map(|&a| a as i64).collect(),
                    rewards: t.rewards.clone(),
                })
                .collect(),
        }
    }
}

impl Problem {
    /// Reads and validates a problem file (`-` = standard input) with the default
    /// [`Limits`].
    pub fn load(path: &Path) -> Result<Self> {
        Self::load_with(path, &Limits::default())
    }

    /// Reads and validates a problem file (`-` = standard input), refusing more than
    /// `limits.max_input_bytes` bytes and sizes above `limits`.
    pub fn load_with(path: &Path, limits: &Limits) -> Result<Self> {
        let text = crate::limits::read_bounded(path, limits.max_input_bytes)?;
        let source =
            if path.as_os_str() == "-" { "standard input".to_string() } else { path.display().to_string() };
        Self::parse_with(&text, &source, limits)
    }

    /// Parses and validates problem JSON; `source` names it in errors.
    pub fn parse(text: &str, source: &str) -> Result<Self> {
        Self::parse_with(text, source, &Limits::default())
    }

    /// [`Problem::parse`] with explicit limits. The text must hold exactly one JSON object:
    /// another top-level value (an array is not a problem) and anything but whitespace after
    /// the document are errors.
    pub fn parse_with(text: &str, source: &str, limits: &Limits) -> Result<Self> {
        match text.trim_start_matches([' ', '\t', '\n', '\r']).chars().next() {
            Some('{') => {}
            None => return Err(invalid(source, "is empty; expected a JSON object (the problem)")),
            Some(c) => {
                return Err(invalid(
                    source,
                    format!("the top level must be a JSON object (the problem), found {c:?}"),
                ));
            }
        }
        let de = &mut serde_json::Deserializer::from_str(text);
        let at = |path: String| {
            if path == "." || path.is_empty() {
                source.to_string()
            } else {
                format!("{source} at field `{path}`")
            }
        };
        let raw: RawProblem = serde_path_to_error::deserialize(&mut *de).map_err(|e| {
            let path = e.path().to_string();
            Error::Parse { context: at(path), source: e.into_inner() }
        })?;
        de.end().map_err(|e| Error::Parse {
            context: format!("{source} (one JSON document per file; content follows it)"),
            source: e,
        })?;
        Self::from_raw_with(raw, limits)
    }

    /// Validates a parsed problem with the default [`Limits`].
    pub fn from_raw(raw: RawProblem) -> Result<Self> {
        Self::from_raw_with(raw, &Limits::default())
    }

    /// Validates a parsed problem. Every shape is checked, against `limits` too, before
    /// anything is allocated for it: D = |X|·|A| ≤ `max_params`, Σ_n T_n ≤ `max_steps`.
    pub fn from_raw_with(raw: RawProblem, limits: &Limits) -> Result<Self> {
        let ns = raw.transitions.len();
        if ns == 0 {
            return Err(invalid("transitions", "needs at least one state"));
        }
        let na = raw.transitions[0].len();
        if na == 0 {
            return Err(invalid("transitions[0]", "needs at least one action"));
        }
        crate::limits::product(
            "transitions",
            "parameters D = |X|·|A|",
            &[ns, na],
            limits.max_params,
            Some("--max-params"),
        )?;
        for (x, per_action) in raw.transitions.iter().enumerate() {
            if per_action.len() != na {
                return Err(invalid(
                    format!("transitions[{x}]"),
                    format!("expected {na} actions, got {}", per_action.len()),
                ));
            }
            for (a, row) in per_action.iter().enumerate() {
                if row.len() != ns {
                    return Err(invalid(
                        format!("transitions[{x}][{a}]"),
                        format!("expected {ns} next-state probabilities, got {}", row.len()),
                    ));
                }
            }
        }
        let mut steps = 0usize;
        for tr in &raw.trajectories {
            steps = steps.saturating_add(tr.actions.len());
        }
        crate::limits::check("trajectories (total steps)", steps, limits.max_steps, Some("--max-steps"))?;
        // Shapes checked: |X|²·|A| ≤ |X|·max_params entries.
        let transitions: Vec<f64> = raw.transitions.iter().flatten().flatten().copied().collect();
        let rewards = table("rewards", &raw.rewards, ns, na)?;
        ensure_finite(|| "gamma".into(), raw.gamma)?;
        let start = index(|| "start_state".into(), raw.start_state, ns, "state")?;
        let mdp = TabularMdp::new(ns, na, transitions, rewards, raw.gamma, start)?;
        let theta = table("theta", &raw.theta, ns, na)?;
        let behaviour = table("behaviour", &raw.behaviour, ns, na)?;
        for x in 0..ns {
            check_probability_row(&|| format!("behaviour[{x}]"), &behaviour[x * na..(x + 1) * na])?;
        }
        let critic = match raw.critic {
            None => None,
            Some(RawCritic { state_values: Some(_), action_values: Some(_) }) => {
                return Err(invalid("critic", "give either state_values or action_values, not both"));
            }
            Some(RawCritic { state_values: None, action_values: None }) => {
                return Err(invalid("critic", "needs state_values or action_values"));
            }
            Some(RawCritic { state_values: Some(v), .. }) => {
                if v.len() != ns {
                    return Err(invalid(
                        "critic.state_values",
                        format!("expected {ns} values, got {}", v.len()),
                    ));
                }
                for (x, &value) in v.iter().enumerate() {
                    ensure_finite(|| format!("critic.state_values[{x}]"), value)?;
                }
                Some(Critic::StateValues(v))
            }
            Some(RawCritic { action_values: Some(q), .. }) => {
                Some(Critic::ActionValues(table("critic.action_values", &q, ns, na)?))
            }
        };
        if raw.trajectories.is_empty() {
            return Err(invalid("trajectories", "need at least one trajectory"));
        }
        let mut trajectories = Vec::with_capacity(raw.trajectories.len());
        for (n, tr) in raw.trajectories.iter().enumerate() {
            let f = |what: &str| format!("trajectories[{n}].{what}");
            if tr.states.len() != tr.actions.len() + 1 {
                return Err(invalid(
                    f("states"),
                    format!(
                        "must have one more entry than actions (x_0…x_T): {} states, {} actions",
                        tr.states.len(),
                        tr.actions.len()
                    ),
                ));
            }
            if tr.rewards.len() != tr.actions.len() {
                return Err(invalid(
                    f("rewards"),
                    format!(
                        "must have one entry per action: {} rewards, {} actions",
                        tr.rewards.len(),
                        tr.actions.len()
                    ),
                ));
            }
            let states = tr
                .states
                .iter()
                .enumerate()
                .map(|(t, &x)| index(|| format!("{}[{t}]", f("states")), x, ns, "state"))
                .collect::<Result<Vec<_>>>()?;
            let actions = tr
                .actions
                .iter()
                .enumerate()
                .map(|(t, &a)| index(|| format!("{}[{t}]", f("actions")), a, na, "action"))
                .collect::<Result<Vec<_>>>()?;
            for (t, &r) in tr.rewards.iter().enumerate() {
                ensure_finite(|| format!("{}[{t}]", f("rewards")), r)?;
            }
            for (t, (&x, &a)) in states.iter().zip(&actions).enumerate() {
                if behaviour[x * na + a] <= 0.0 {
                    return Err(invalid(
                        format!("{}[{t}]", f("actions")),
                        format!(
                            "action {a} taken in state {x} has behaviour probability μ({a}|{x}) = 0; its importance ratio is undefined"
                        ),
                    ));
                }
            }
            trajectories.push(Trajectory { states, actions, rewards: tr.rewards.clone() });
        }
        Ok(Self { policy: TabularSoftmax::new(ns, na, theta), mdp, behaviour, critic, trajectories })
    }

    /// Checks that every estimator can run on this problem (critic present and of the
    /// right kind), before any work is done.
    pub fn check_estimators(&self, estimators: &[Estimator]) -> Result<()> {
        for e in estimators {
            match (e, &self.critic) {
                (Estimator::Is, _) => {}
                (_, None) => {
                    return Err(invalid(
                        "critic",
                        format!(
                            "estimator {e} needs a critic (state_values or action_values); only `is` works without one"
                        ),
                    ));
                }
                (Estimator::TruncatedDr { .. }, Some(Critic::ActionValues(_))) => {
                    return Err(invalid(
                        "critic",
                        "dr-trunc is defined for a state-value critic (state_values), not action_values",
                    ));
                }
                (Estimator::Tmaml { .. }, Some(Critic::ActionValues(_))) => {
                    return Err(invalid(
                        "critic",
                        "tmaml is defined for a state-value critic (state_values), not action_values",
                    ));
                }
                _ => {}
            }
        }
        Ok(())
    }

    /// The exact V^{π_θ}(x_0), gradient and Hessian.
    pub fn exact(&self) -> Derivatives {
        oracle::softmax_derivatives(&self.mdp, &self.policy)
    }

    /// Checks a direction `v` for [`Problem::hvp`]: D = |X|·|A| finite entries.
    fn check_direction(&self, v: &[f64]) -> Result<()> {
        let d = self.mdp.n_states() * self.mdp.n_actions();
        if v.len() != d {
            return Err(invalid(
                "v",
                format!("expected {d} entries (|X|·|A|, index x·|A| + a), got {}", v.len()),
            ));
        }
        for (i, &x) in v.iter().enumerate() {
            ensure_finite(|| format!("v[{i}]"), x)?;
        }
        Ok(())
    }

    /// The Hessian-vector product ∇²V̂·v of one estimator's mean over the trajectories,
    /// without forming the Hessian (v and the result indexed x·|A| + a).
    pub fn hvp(&self, estimator: Estimator, v: &[f64]) -> Result<Vec<f64>> {
        self.check_estimators(&[estimator])?;
        self.check_direction(v)?;
        let batch = TabularBatch::new(&self.trajectories, &self.behaviour, self.mdp.n_actions());
        let prepared = batch.prepare(estimator, self.mdp.gamma(), self.critic.as_ref())?;
        let rows = batch.rows(&self.policy, &prepared, self.critic.as_ref());
        let hv = BatchObjective::new(&prepared, &rows)?.hvp(v);
        if let Some(i) = hv.iter().position(|x| !x.is_finite()) {
            return Err(invalid(
                format!("estimator {estimator}"),
                format!(
                    "the Hessian-vector product is not finite (entry {i} = {}): the inputs' magnitudes overflow float64",
                    hv[i]
                ),
            ));
        }
        Ok(hv)
    }

    /// The exact finite-horizon value J_T of the problem's MDP from x_0 and its derivatives
    /// (docs/theory.md#finite-horizon-value): bootstrapped at x_T by the problem's critic when
    /// `bootstrap` (what DR
    /// and TayPO estimate without bias), by 0 otherwise (IS's target).
    pub fn finite_horizon(&self, horizon: usize, bootstrap: bool) -> Result<Derivatives> {
        let b = match (&self.critic, bootstrap) {
            (_, false) => oracle::Bootstrap::Zero,
            (Some(Critic::StateValues(v)), true) => oracle::Bootstrap::StateValues(v),
            (Some(Critic::ActionValues(q)), true) => oracle::Bootstrap::ActionValues(q),
            (None, true) => {
                return Err(invalid("critic", "bootstrapping J_T needs a critic; use bootstrap = false"));
            }
        };
        // Closed form for a state critic or none (dual numbers for an action critic).
        Ok(oracle::finite_horizon_softmax_derivatives(&self.mdp, &self.policy, horizon, b))
    }

    /// Mean estimate, gradient and Hessian of one estimator over the trajectories.
    /// A result that is not finite (finite inputs whose magnitudes overflow) is an error
    /// naming the estimator.
    pub fn estimate(&self, estimator: Estimator) -> Result<Derivatives> {
        let na = self.mdp.n_actions();
        let d = TabularBatch::new(&self.trajectories, &self.behaviour, na).estimate(
            estimator,
            self.mdp.gamma(),
            &self.policy,
            self.critic.as_ref(),
            true,
        )?;
        d.ensure_finite(&format!("estimator {estimator}"))?;
        Ok(d)
    }
}
