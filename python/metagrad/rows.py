"""The row interface: any estimator as a function of per-step log-likelihoods.

Every estimator of metagrad depends on the policy parameters θ only through the
log-likelihoods of the taken actions, u[n, t] = log π_θ(a_t|x_t) of trajectory n, and — for
DR with an action-value critic — the critic means c[n, t] = Σ_b π_θ(b|x_t) Q̂(x_t, b). This
module evaluates an estimator on those *rows*, given as padded N×T numpy arrays, and returns
the mean estimate V̂ = (1/N) Σ_n V̂_n with its row gradient ∂V̂/∂u (N×T) and row
Hessian-vector products (∂²V̂/∂u²)·w. A policy that lives elsewhere (a JAX, PyTorch or numpy
network) maps them to its own parameters by its own chain rule:

    ∇_θ V̂ = Jᵀ g,    ∇²_θ V̂ · v = Jᵀ (H · (J v)) + Σ_i g_i ∇²u_i · v,   J = ∂u/∂θ.

:mod:`metagrad.jax` does exactly that inside JAX's autodiff.

Data layout (trajectory n has ``lengths[n]`` = T_n ≤ T steps; entries past it are ignored
and get zero derivatives):

* ``u``, ``log_mu``, ``rewards``: N×T — log π_θ(a_t|x_t), log μ(a_t|x_t), r_t;
* a critic (IS needs none): ``state_values`` N×(T+1), V̂(x_0) … V̂(x_{T_n}) (column T_n is the
  bootstrap value of the final state); or an action-value critic: ``q_taken`` N×T, Q̂(x_t, a_t),
  ``behaviour_means`` N×(T+1), Σ_b μ(b|x_t) Q̂(x_t, b), and ``critic_means`` N×(T+1),
  c_t = Σ_b π_θ(b|x_t) Q̂(x_t, b) (θ-dependent rows; DR needs them, TayPO and MAML do not
  read them).

V̂ depends on u and log μ only through u − log μ, so ∂V̂/∂log_mu = −∂V̂/∂u.
"""

from __future__ import annotations

from typing import NamedTuple, Optional, Union

import numpy as np

from . import _convert
from . import _metagrad

__all__ = ["RowDerivatives", "derivatives", "value"]


class RowDerivatives(NamedTuple):
    """Result of :func:`derivatives`."""

    value: Union[float, np.ndarray]
    """V̂ = (1/N) Σ_n V̂_n; with ``per_trajectory``, the (N,) estimates V̂_n."""
    grad_u: Optional[np.ndarray]
    """∂V̂/∂u, N×T (zero in padding)."""
    grad_c: Optional[np.ndarray]
    """∂V̂/∂c, N×(T+1), when ``critic_means`` were given (zero unless the estimator reads them)."""
    hvp_u: Optional[np.ndarray]
    """u part of (∂²V̂/∂(u, c)²)·(w_u, w_c), shaped like ``direction``."""
    hvp_c: Optional[np.ndarray]
    """c part of the HVP, when ``critic_means`` were given."""


def _critic_args(state_values, q_taken, behaviour_means, critic_means) -> dict:
    f = _convert.floats
    return dict(
        state_values=None if state_values is None else f("state_values", state_values, 2),
        q_taken=None if q_taken is None else f("q_taken", q_taken, 2),
        behaviour_means=None if behaviour_means is None else f("behaviour_means", behaviour_means, 2),
        critic_means=None if critic_means is None else f("critic_means", critic_means, 2),
    )


def _direction(name: str, x) -> tuple:
    """A direction as K×rows×cols and whether it was given as one 2-D array."""
    if x is None:
        return None, False
    a = np.asarray(x)
    if a.ndim == 2:
        return _convert.floats(name, a, 2)[None], True
    if a.ndim != 3:
        raise ValueError(f"invalid {name}: expected an N×T array, or K×N×T for K directions, got shape {a.shape}")
    return _convert.floats(name, a, 3), False


def derivatives(
    estimator: str,
    u,
    log_mu,
    rewards,
    *,
    gamma: float,
    lengths=None,
    state_values=None,
    q_taken=None,
    behaviour_means=None,
    critic_means=None,
    truncation: float = 1.0,
    discount: str = "absolute",
    gradient: bool = True,
    direction=None,
    direction_c=None,
    per_trajectory: bool = False,
) -> RowDerivatives:
    """Value, row gradient and row Hessian-vector products of one estimator.

    ``estimator`` is a command-line name: ``is``, ``dr``, ``dr-trunc`` (levels ρ̄ = c̄ =
    ``truncation``), ``taypo-K`` for any K ≥ 1, ``lvc`` (= taypo-1) or ``maml``;
    ``discount`` (``"absolute"``: γ^{t_k}, the paper's; ``"from-first"``: γ^{t_k − t_1},
    ProMP's) applies to ``taypo-K`` and ``maml``. Arrays are described in the module
    docstring; ``gamma`` ∈ [0, 1).

    With ``direction`` w (N×T, or K×N×T for K directions at once; and ``direction_c``,
    N×(T+1) or K×N×(T+1), for the critic-mean part), also returns the row HVPs
    (∂²V̂/∂(u, c)²)·(w, w_c), shaped like ``direction``. Without ``gradient``, ``grad_u`` and
    ``grad_c`` are ``None``. With ``per_trajectory``, ``value`` is the (N,) array of the
    per-trajectory estimates V̂_n (whose mean is V̂; one more pass of the engine), which a
    caller that stacks independent batches into one call needs to split the value.

    Bad input raises ``ValueError`` (``TypeError`` for a non-numeric dtype) naming the
    argument and the value: wrong shapes, lengths out of range, non-finite entries within a
    trajectory, a ratio exp(u − log_mu) that overflows, γ ∉ [0, 1), unknown estimator
    names, a missing critic (``critic_means`` for DR with an action-value critic).
    """
    f = _convert.floats
    if not isinstance(estimator, str):
        raise TypeError(f"invalid estimator: expected a name (str), got {estimator!r}")
    w, single = _direction("direction", direction)
    wc, single_c = _direction("direction_c", direction_c)
    if w is not None and wc is not None and single != single_c:
        raise ValueError(
            f"invalid direction_c: give it with as many dimensions as direction ({np.ndim(direction)}-D), "
            f"got {np.ndim(direction_c)}-D"
        )
    value, gu, gc, hu, hc = _metagrad.row_derivatives(
        estimator,
        f("u", u, 2),
        f("log_mu", log_mu, 2),
        f("rewards", rewards, 2),
        gamma=_convert.real("gamma", gamma),
        truncation=float(truncation),
        discount=str(discount),
        lengths=None if lengths is None else _convert.ints("lengths", lengths, 1),
        gradient=bool(gradient),
        direction=w,
        direction_c=wc,
        per_trajectory=bool(per_trajectory),
        **_critic_args(state_values, q_taken, behaviour_means, critic_means),
    )
    if single:
        hu = None if hu is None else hu[0]
        hc = None if hc is None else hc[0]
    return RowDerivatives(value, gu, gc, hu, hc)


def value(estimator: str, u, log_mu, rewards, *, gamma: float, **kwargs) -> float:
    """V̂ = (1/N) Σ_n V̂_n alone (arguments as in :func:`derivatives`)."""
    return derivatives(estimator, u, log_mu, rewards, gamma=gamma, **kwargs).value
