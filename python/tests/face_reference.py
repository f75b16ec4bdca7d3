"""What the face tests (JAX in test_rows.py, PyTorch in test_torch.py) share: the
estimators of docs/theory.md#estimators written out from their definitions (O(T^K) where
that is the definition), per trajectory of static length L, then the mean over
trajectories — in any array framework, given its few operations (:class:`Ops`) — which the
tests differentiate natively and compare with the engine's derivatives; the cases they
run; and the closeness check with its report of the largest errors."""

import itertools
from typing import Callable, NamedTuple

import numpy as np
import pytest

TOL = 1e-10
MAX_ERR: dict = {}


def _numpy(a) -> np.ndarray:
    return a.detach().numpy() if hasattr(a, "detach") else np.asarray(a)


def close(name: str, a, b, tol: float = TOL) -> None:
    """|a − b| ≤ tol·(1 + |b|) entrywise (arrays of any framework); records the largest
    absolute error per check."""
    a, b = _numpy(a), _numpy(b)
    assert a.shape == b.shape, f"{name}: shape {a.shape} vs {b.shape}"
    err = float(np.max(np.abs(a - b), initial=0.0))
    MAX_ERR[name] = max(MAX_ERR.get(name, 0.0), err)
    assert np.all(np.abs(a - b) <= tol * (1 + np.abs(b))), f"{name}: max abs error {err:.3e}"


@pytest.fixture(scope="module", autouse=True)
def report():
    """Prints the largest error of every check after a module's tests (with -s)."""
    yield
    if MAX_ERR:
        print("\nmax abs error by check:")
        for k, v in sorted(MAX_ERR.items()):
            print(f"  {k:55s} {v:.2e}")
    MAX_ERR.clear()


#: (estimator, critic, discount): the cases every face is tested on.
CASES = [
    # (estimator, critic, discount)
    ("is", "none", "absolute"),
    ("dr", "state", "absolute"),
    ("dr", "action", "absolute"),
    ("taypo-1", "state", "absolute"),
    ("taypo-2", "state", "absolute"),
    ("taypo-2", "state", "from-first"),
    ("taypo-2", "action", "absolute"),
    ("taypo-3", "state", "absolute"),
    ("lvc", "state", "absolute"),
    ("dr-trunc", "state", "absolute"),
    ("maml", "state", "absolute"),
    ("maml", "action", "absolute"),
]


def critic_kwargs(d, critic, with_means=True):
    """The critic arguments of test data `d` for a critic kind ("none", "state", "action")."""
    if critic == "state":
        return dict(state_values=d["state_values"])
    if critic == "action":
        kw = dict(q_taken=d["q_taken"], behaviour_means=d["behaviour_means"])
        if with_means:
            kw["critic_means"] = d["critic_means"]
        return kw
    return {}


class Ops(NamedTuple):
    """The framework operations the references use."""

    exp: Callable  # element-wise e^x of a scalar entry
    minimum: Callable  # min(a, b) of a scalar entry and a float
    zero: Callable  # a zero scalar of x's type, from x


def ref_trajectory(ops, gamma, name, k, discount, x, r, L, sv=None, qt=None, bm=None, c=None, trunc=1.0):
    """V̂_n of one trajectory from its residuals x = u − log μ (its first L entries)."""
    g = gamma
    rho = [ops.exp(x[t]) for t in range(L)]
    if name == "is":
        total, p = ops.zero(x), 1.0
        for t in range(L):
            p = p * rho[t]
            total = total + g**t * p * r[t]
        return total
    if name == "dr" and sv is not None:
        v = sv[L]
        for t in reversed(range(L)):
            v = sv[t] + rho[t] * (r[t] + g * v - sv[t])
        return v
    if name == "dr":  # action-value critic, c_t = Σ_b π(b|x_t) Q̂(x_t, b)
        v = c[L]
        for t in reversed(range(L)):
            v = c[t] + rho[t] * (r[t] + g * v - qt[t])
        return v
    if name == "dr-trunc":
        v = sv[L]
        for t in reversed(range(L)):
            m = ops.minimum(rho[t], trunc)
            v = sv[t] + m * (r[t] + g * sv[t + 1] - sv[t]) + g * m * (v - sv[t + 1])
        return v
    # TayPO-K and the naive score function: advantages Â_t and the zeroth-order term.
    if sv is not None:
        adv, ret = [None] * L, sv[L]
        for t in reversed(range(L)):
            ret = r[t] + g * ret
            adv[t] = ret - sv[t]
        v0 = sv[0]
    else:
        adv = [qt[t] - bm[t] for t in range(L)]
        v0 = bm[0]
    if name == "maml":
        return v0 + sum((g**t * adv[t] * x[t] for t in range(L)), ops.zero(x))
    total = v0
    for order in range(1, k + 1):
        for idx in itertools.combinations(range(L), order):
            w = g ** idx[-1] if discount == "absolute" else g ** (idx[-1] - idx[0])
            prod = 1.0
            for i in idx:
                prod = prod * (rho[i] - 1.0)
            total = total + w * prod * adv[idx[-1]]
    return total


def reference(ops, gamma, name, *, discount="absolute", trunc=1.0):
    """V̂(u, log_mu, rewards, lengths (static), critic…) = the mean of :func:`ref_trajectory`."""
    name = "taypo-1" if name == "lvc" else name
    base, k = (name.split("-")[0], int(name.split("-")[1])) if name.startswith("taypo-") else (name, 0)

    def f(u, log_mu, rewards, lengths, state_values=None, q_taken=None, behaviour_means=None, critic_means=None):
        x = u - log_mu
        vals = []
        for n, L in enumerate(np.asarray(lengths)):
            pick = lambda a: None if a is None else a[n]  # noqa: E731
            vals.append(
                ref_trajectory(
                    ops, gamma, base, k, discount, x[n], rewards[n], int(L),
                    pick(state_values), pick(q_taken), pick(behaviour_means), pick(critic_means), trunc,
                )
            )
        return sum(vals) / len(vals)

    return f
