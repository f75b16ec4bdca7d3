"""What the framework faces (:mod:`metagrad.jax`, :mod:`metagrad.torch`) share: the static
setting of one estimator call, its checks, and engine calls through :mod:`metagrad.rows` on
residuals with leading batch dimensions.

The residuals of a call are numpy arrays ``x, c, rewards, lengths, critic…`` with
x = u − log μ (N×T), c the critic means (N×(T+1), zeros when none were given), and the
critic arrays of :attr:`Spec.critic`. Each may carry leading batch dimensions (aligned from
the right, size 1 broadcasts).
"""

from __future__ import annotations

import functools
import math
from typing import NamedTuple

import numpy as np

from . import _metagrad
from . import rows as _rows


class Spec(NamedTuple):
    """Static settings of one estimator call (hashable)."""

    name: str
    gamma: float
    truncation: float
    discount: str
    critic: str  # "none", "state" or "action"
    has_c: bool  # critic means given

    def core_ndims(self) -> tuple:
        """Core (unbatched) ranks of the residual operands x, c, rewards, lengths, critic…"""
        return (2, 2, 2, 1) + {"none": (), "state": (2,), "action": (2, 2)}[self.critic]


class EstimatorBase:
    """Name and settings of an estimator, checked once (the faces subclass it)."""

    _face = "metagrad"

    def __init__(self, name: str, *, gamma: float, truncation: float = 1.0, discount: str = "absolute"):
        if not isinstance(name, str):
            raise TypeError(f"invalid estimator: expected a name (str), got {name!r}")
        self.name, self.gamma, self.truncation, self.discount = name, float(gamma), float(truncation), str(discount)
        check_setting(Spec(self.name, self.gamma, self.truncation, self.discount, "state", False))

    def __repr__(self) -> str:
        return (
            f"{self._face}.estimator({self.name!r}, gamma={self.gamma}, truncation={self.truncation}, "
            f"discount={self.discount!r})"
        )

    def spec(self, critic: str, has_c: bool) -> Spec:
        """The checked :class:`Spec` of a call with this critic kind."""
        spec = Spec(self.name, self.gamma, self.truncation, self.discount, critic, has_c)
        check_setting(spec)
        return spec


def critic_kind(state_values, q_taken, behaviour_means, critic_means) -> str:
    """``"state"``, ``"action"`` or ``"none"`` from which critic arguments were given;
    ``ValueError`` naming the argument for an inconsistent set."""
    if state_values is not None:
        if q_taken is not None or behaviour_means is not None or critic_means is not None:
            raise ValueError("invalid critic: give state_values or an action-value critic, not both")
        return "state"
    if q_taken is not None or behaviour_means is not None:
        if q_taken is None or behaviour_means is None:
            missing = "q_taken" if q_taken is None else "behaviour_means"
            raise ValueError(f"invalid {missing}: an action-value critic needs q_taken and behaviour_means")
        return "action"
    if critic_means is not None:
        raise ValueError("invalid critic_means: only with an action-value critic (q_taken, behaviour_means)")
    return "none"


@functools.lru_cache(maxsize=None)
def check_setting(spec: Spec) -> None:
    """Validates the estimator name, settings and critic kind once, on a 1×1 batch."""
    one, two = np.zeros((1, 1)), np.zeros((1, 2))
    kw = {}
    if spec.critic == "state":
        kw["state_values"] = two
    elif spec.critic == "action":
        kw.update(q_taken=one, behaviour_means=two, critic_means=two if spec.has_c else None)
    _rows.derivatives(
        spec.name, one, one, one, gamma=spec.gamma, truncation=spec.truncation, discount=spec.discount, **kw
    )


def _floats(a) -> np.ndarray:
    """`a` as an array the engine reads: float64 or float32 as it is, anything else as
    float64."""
    a = np.asarray(a)
    return a if a.dtype == np.float64 or a.dtype == np.float32 else a.astype(np.float64)


def call(
    spec: Spec,
    res: list,
    *,
    gradient: bool = True,
    direction=None,
    direction_c=None,
    per_trajectory=False,
    f32_out=False,
):
    """One engine call on unbatched residuals (x, c, rewards, lengths, critic…), shapes
    checked by the face (the engine checks the values); directions K×N×T and K×N×(T+1).
    Goes to the engine directly: :func:`metagrad.rows.derivatives` would check the types
    and ranks again, which costs more than the engine on small batches. The engine reads
    float32 arrays as they are and computes in float64; with ``f32_out`` its gradients and
    HVPs come back rounded to float32."""
    x, c, rewards, lengths, *critic = res
    critic_kw = {}
    if spec.critic == "state":
        critic_kw["state_values"] = _floats(critic[0])
    elif spec.critic == "action":
        critic_kw["q_taken"], critic_kw["behaviour_means"] = _floats(critic[0]), _floats(critic[1])
        if spec.has_c:
            critic_kw["critic_means"] = _floats(c)
    x = _floats(x)
    out = _metagrad.row_derivatives(
        spec.name,
        x,
        np.zeros_like(x),
        _floats(rewards),
        gamma=spec.gamma,
        truncation=spec.truncation,
        discount=spec.discount,
        lengths=np.ascontiguousarray(lengths, dtype=np.int64),
        gradient=gradient,
        direction=None if direction is None else _floats(direction),
        direction_c=None if direction_c is None else _floats(direction_c),
        per_trajectory=per_trajectory,
        f32_out=f32_out,
        **critic_kw,
    )
    return _rows.RowDerivatives(*out)


# ---------------------------------------------------------------------------------------
# Stacked calls: the batches of all leading indices as the trajectories of one engine call.
# V̂ is a mean over independent trajectories, so with B batches of N trajectories stacked,
# the engine's row gradient and HVPs of the (B·N)-mean are those of each batch's own mean
# divided by B (its Hessian is block diagonal across trajectories), and its per-trajectory
# values give each batch's value.


def _lead(a: np.ndarray, core: int) -> tuple:
    return a.shape[: a.ndim - core]


def _stack(a: np.ndarray, core: int, batch: tuple) -> np.ndarray:
    """`a` broadcast to `batch` leading dimensions, which are merged into its first core axis."""
    full = np.broadcast_to(a, batch + a.shape[a.ndim - core :])
    return full.reshape((-1,) + full.shape[len(batch) + 1 :])


def stacked_value_grad(spec: Spec, res: list) -> tuple:
    """(V̂, ∂V̂/∂x, ∂V̂/∂c) for every batch index of the residuals, from one engine call;
    shapes batch, batch + N×T, batch + N×(T+1). Zeros for ∂V̂/∂c when no critic means."""
    cores = spec.core_ndims()
    if all(a.ndim == k for a, k in zip(res, cores)):  # unbatched: no stacking
        r = call(spec, res, f32_out=res[0].dtype == np.float32)
        gc = np.zeros(res[1].shape) if r.grad_c is None else r.grad_c
        return np.asarray(r.value), r.grad_u, gc
    batch = tuple(np.broadcast_shapes(*(_lead(a, k) for a, k in zip(res, cores))))
    x, c = res[0], res[1]
    n, t = x.shape[-2:]
    size = math.prod(batch)
    if size == 0:
        return np.zeros(batch), np.zeros(batch + (n, t)), np.zeros(batch + (n, t + 1))
    stacked = [_stack(a, k, batch) for a, k in zip(res, cores)]
    r = call(spec, stacked, per_trajectory=size > 1)
    gc = np.zeros((size * n, t + 1)) if r.grad_c is None else r.grad_c
    if size == 1:
        value = np.full(batch, r.value)
        return value, r.grad_u.reshape(batch + (n, t)), gc.reshape(batch + (n, t + 1))
    value = r.value.reshape(batch + (n,)).sum(-1) * (1.0 / n)
    return value, r.grad_u.reshape(batch + (n, t)) * size, gc.reshape(batch + (n, t + 1)) * size


def stacked_hvp(spec: Spec, res: list, w: np.ndarray, wc: np.ndarray) -> tuple:
    """Row HVPs (∂²V̂/∂(x, c)²)·(w, w_c) for every batch index of residuals and directions,
    from one engine call: the batch dimensions along which the residuals vary are stacked
    as trajectories, the others (directions only) become the engine's K directions."""
    cores = spec.core_ndims()
    if w.ndim == 2 and wc.ndim == 2 and all(a.ndim == k for a, k in zip(res, cores)):  # unbatched
        r = call(
            spec,
            res,
            gradient=False,
            direction=w[None],
            direction_c=wc[None] if spec.has_c else None,
            f32_out=w.dtype == np.float32,
        )
        return r.hvp_u[0], np.zeros(wc.shape) if r.hvp_c is None else r.hvp_c[0]
    leads = [_lead(a, k) for a, k in zip(res, cores)]
    batch = tuple(np.broadcast_shapes(*leads, _lead(w, 2), _lead(wc, 2)))
    nb = len(batch)
    leads = [(1,) * (nb - len(lead)) + lead for lead in leads]
    varying = [i for i in range(nb) if any(lead[i] != 1 for lead in leads)]
    shared = [i for i in range(nb) if i not in varying]
    n, t = w.shape[-2:]
    vshape = tuple(batch[i] for i in varying)
    r_size, k_size = math.prod(vshape), math.prod(batch[i] for i in shared)
    if r_size * k_size == 0:
        return np.zeros(batch + (n, t)), np.zeros(batch + (n, t + 1))
    perm = shared + varying

    def directions(d, cols):
        full = np.broadcast_to(d, batch + (n, cols)).transpose(perm + [nb, nb + 1])
        return full.reshape(k_size, r_size * n, cols)

    def unstack(h, cols):
        h = h.reshape(tuple(batch[i] for i in perm) + (n, cols))
        h = h.transpose(list(np.argsort(perm)) + [nb, nb + 1])
        return h * r_size if r_size > 1 else h

    stacked = []
    for a, k, lead in zip(res, cores, leads):
        a = a.reshape(lead + a.shape[a.ndim - k :])
        a = a.reshape(tuple(lead[i] for i in varying) + a.shape[nb:])  # shared dims have size 1
        stacked.append(_stack(a, k, vshape))
    r = call(
        spec,
        stacked,
        gradient=False,
        direction=directions(w, t),
        direction_c=directions(wc, t + 1) if spec.has_c else None,
    )
    hu = unstack(r.hvp_u, t)
    hc = np.zeros(batch + (n, t + 1)) if r.hvp_c is None else unstack(r.hvp_c, t + 1)
    return hu, hc
