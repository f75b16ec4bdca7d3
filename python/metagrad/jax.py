"""metagrad estimators inside JAX: exact gradients and Hessian-vector products of any
estimator for a policy written in JAX, by JAX's own ``grad``, ``jvp``, ``hessian``, ``vmap``.

    import jax
    import metagrad.jax as mjax
    jax.config.update("jax_enable_x64", True)

    v_hat = mjax.estimator("taypo-2", gamma=0.99)
    def objective(theta):
        u = log_policy(theta, obs)[actions]          # N×T log π_θ(a_t|x_t), any JAX network
        return v_hat(u, log_mu, rewards, state_values=v, lengths=lengths)
    g = jax.grad(objective)(theta)                   # ∇_θ V̂
    hv = jax.jvp(jax.grad(objective), (theta,), (v,))[1]   # ∇²_θ V̂ · v

The estimator is a function of the rows u (and, for DR with an action-value critic, the
critic means c) only; :mod:`metagrad.rows` computes its value, row gradient g = ∂V̂/∂u and row
HVPs H·w in Rust. Here that function becomes a JAX primitive of u:

* ``V̂(u)`` is a ``jax.custom_jvp`` function whose JVP is ⟨g(u), du⟩ (+ ⟨∂V̂/∂c, dc⟩);
* ``g(u)`` (a ``jax.pure_callback``) is itself a ``jax.custom_jvp`` function whose JVP is
  H(u)·du, a JAX primitive (``metagrad_row_hvp``) that is linear in du, its own transpose
  (H is symmetric), and batched by calling Rust once for the whole batch, its trajectories
  stacked and the directions that share them given together.

So JAX's chain rule through the user's network gives exact first and second derivatives.
(``jax.custom_derivatives.linear_call`` would also make the HVP transposable, but it has no
batching rule in JAX 0.10, so ``jax.hessian`` and ``vmap`` of second derivatives would fail;
the primitive has all three rules.)

Transformations (tested, in float64): ``grad``, ``value_and_grad``, ``vjp``, ``jvp``,
``linearize``; second order — forward-over-reverse (``jax.jvp(jax.grad(f))``), reverse-over-
reverse (``jax.grad`` of a function that calls ``jax.grad``, as MAML code is written),
``jax.hessian``, ``jacrev(jacrev(f))``; ``jit`` and ``vmap`` (e.g. over tasks) of all of
them. Third derivatives raise ``NotImplementedError``. Derivatives flow through ``u``,
``log_mu`` (V̂ depends on u − log_mu) and ``critic_means``; rewards, lengths and critic
values are data: differentiating with respect to them raises ``TypeError`` (wrap them in
``jax.lax.stop_gradient`` if they depend on the variables being differentiated).

Enable float64 (``jax.config.update("jax_enable_x64", True)``) for exact results: the engine
computes in float64 and casts its results to the dtype of ``u``.

Errors: shapes and names are checked when the function is traced (``ValueError`` naming
the argument); values (non-finite entries, lengths out of range, overflowing ratios) are
checked by the engine when it runs — eagerly a ``ValueError``, under ``jit`` a JAX runtime
error carrying the same message.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
from jax.custom_derivatives import SymbolicZero
from jax.extend.core import Primitive
from jax.interpreters import ad, batching, mlir

from . import _faces

__all__ = ["estimator", "Estimator"]


_Spec = _faces.Spec


# ---------------------------------------------------------------------------------------
# Host side: numpy arrays with any leading batch dimensions (size 1 = broadcast), every batch
# element's trajectories stacked into one engine call (metagrad._faces).

_lead = _faces._lead


def _host_value_grad(spec: _Spec, *res):
    res = [np.asarray(a) for a in res]
    dtype = res[0].dtype
    v, gx, gc = _faces.stacked_value_grad(spec, res)
    return np.asarray(v, dtype), np.asarray(gx, dtype), np.asarray(gc, dtype)


def _host_hvp(spec: _Spec, *args):
    """H·(w, w_c) for every batch element, from one engine call (the batch dimensions along
    which only the directions vary become the engine's directions)."""
    args = [np.asarray(a) for a in args]
    res, (w, wc) = args[:-2], args[-2:]
    hx, hc = _faces.stacked_hvp(spec, res, w, wc)
    return np.asarray(hx, w.dtype), np.asarray(hc, w.dtype)


# ---------------------------------------------------------------------------------------
# The row-HVP primitive: linear in (w, w_c), self-transposed, batched by leading dimensions.

_row_hvp_p = Primitive("metagrad_row_hvp")
_row_hvp_p.multiple_results = True


def _hvp_out_avals(args, spec):
    cores = spec.core_ndims() + (2, 2)
    batch = np.broadcast_shapes(*(_lead(a, k) for a, k in zip(args, cores)))
    w, wc = args[-2:]
    return (
        jax.core.ShapedArray(batch + tuple(w.shape[-2:]), w.dtype),
        jax.core.ShapedArray(batch + tuple(wc.shape[-2:]), wc.dtype),
    )


def _hvp_impl(*args, spec):
    shapes = tuple(jax.ShapeDtypeStruct(a.shape, a.dtype) for a in _hvp_out_avals(args, spec))
    return jax.pure_callback(functools.partial(_host_hvp, spec), shapes, *args)


def _hvp_jvp(primals, tangents, *, spec):
    if any(type(t) is not ad.Zero for t in tangents[:-2]):
        raise NotImplementedError(
            "metagrad.jax: third derivatives of an estimator are not available (the engine "
            "provides the value, the gradient and Hessian-vector products in the rows)"
        )
    out = _row_hvp_p.bind(*primals, spec=spec)
    dw, dwc = (ad.instantiate_zeros(t) for t in tangents[-2:])
    return out, _row_hvp_p.bind(*primals[:-2], dw, dwc, spec=spec)


def _sum_to(x, shape):
    """Sums the broadcast leading dimensions of `x` back to `shape` (same rank)."""
    axes = tuple(i for i, (a, b) in enumerate(zip(x.shape, shape)) if b == 1 and a != 1)
    return jnp.sum(x, axis=axes, keepdims=True) if axes else x


def _hvp_transpose(cts, *args, spec):
    res, lin = args[:-2], args[-2:]
    if any(ad.is_undefined_primal(a) for a in res):
        raise NotImplementedError("metagrad.jax: the row HVP is linear only in its direction")
    avals = _hvp_out_avals([a.aval if ad.is_undefined_primal(a) else a for a in args], spec)
    cts = [ad.instantiate_zeros(ct) if type(ct) is ad.Zero else ct for ct in cts]
    cts = [ct if type(ct) is not ad.Zero else jnp.zeros(a.shape, a.dtype) for ct, a in zip(cts, avals)]
    hx, hc = _row_hvp_p.bind(*res, *cts, spec=spec)  # H is symmetric: Hᵀ = H
    out = []
    for r, a in zip((hx, hc), lin):
        out.append(_sum_to(r, a.aval.shape) if ad.is_undefined_primal(a) else None)
    return [None] * len(res) + out


def _hvp_batch(args, dims, *, spec):
    moved = [
        jnp.expand_dims(a, 0) if d is None else jnp.moveaxis(a, d, 0)
        for a, d in zip(args, dims)
    ]
    return _row_hvp_p.bind(*moved, spec=spec), (0, 0)


_row_hvp_p.def_impl(_hvp_impl)
_row_hvp_p.def_abstract_eval(lambda *args, spec: _hvp_out_avals(args, spec))
mlir.register_lowering(_row_hvp_p, mlir.lower_fun(_hvp_impl, multiple_results=True))
ad.primitive_jvps[_row_hvp_p] = _hvp_jvp
ad.primitive_transposes[_row_hvp_p] = _hvp_transpose
batching.primitive_batchers[_row_hvp_p] = _hvp_batch


# ---------------------------------------------------------------------------------------
# The estimator as nested custom_jvp functions of x = u − log μ and c.


def _zero(t) -> bool:
    return isinstance(t, SymbolicZero)


def _check_constant_tangents(tangents) -> None:
    if not all(_zero(t) for t in tangents):
        raise TypeError(
            "metagrad.jax: an estimator is differentiable in u, log_mu and critic_means only; "
            "rewards, lengths and critic values are data (wrap them in jax.lax.stop_gradient)"
        )


@functools.lru_cache(maxsize=None)
def _core(spec: _Spec):
    """V̂(x, c, data…) for one static setting, with exact first and second derivatives."""

    @jax.custom_jvp
    def value_grad(x, c, *data):
        shapes = (
            jax.ShapeDtypeStruct((), x.dtype),
            jax.ShapeDtypeStruct(x.shape, x.dtype),
            jax.ShapeDtypeStruct(c.shape, x.dtype),
        )
        return jax.pure_callback(
            functools.partial(_host_value_grad, spec), shapes, x, c, *data, vmap_method="expand_dims"
        )

    @functools.partial(value_grad.defjvp, symbolic_zeros=True)
    def value_grad_jvp(primals, tangents):
        x, c, *data = primals
        dx, dc, *ddata = tangents
        _check_constant_tangents(ddata)
        v, gx, gc = value_grad(x, c, *data)
        dx = jnp.zeros_like(x) if _zero(dx) else dx
        dc = jnp.zeros_like(c) if _zero(dc) else dc
        hx, hc = _row_hvp_p.bind(x, c, *data, dx, dc, spec=spec)
        dv = jnp.sum(gx * dx) + jnp.sum(gc * dc)
        return (v, gx, gc), (dv, hx, hc)

    @jax.custom_jvp
    def value(x, c, *data):
        shape = jax.ShapeDtypeStruct((), x.dtype)
        host = lambda *a: _host_value_grad(spec, *a)[0]  # noqa: E731
        return jax.pure_callback(host, shape, x, c, *data, vmap_method="expand_dims")

    @functools.partial(value.defjvp, symbolic_zeros=True)
    def value_jvp(primals, tangents):
        x, c, *data = primals
        dx, dc, *ddata = tangents
        _check_constant_tangents(ddata)
        v, gx, gc = value_grad(x, c, *data)
        dv = jnp.zeros((), x.dtype)
        if not _zero(dx):
            dv = dv + jnp.sum(gx * dx)
        if not _zero(dc):
            dv = dv + jnp.sum(gc * dc)
        return v, dv

    return value


def _float_array(name: str, x, shape=None, dtype=None):
    """`x` as a 2-D float array of `shape`. The copy makes every operand a value of the current
    trace (vmap over raw numpy inputs inside jit otherwise hands custom_jvp non-canonical
    constants)."""
    a = jnp.asarray(x)
    if not jnp.issubdtype(a.dtype, jnp.floating):
        a = a.astype(jnp.result_type(float))
    if a.ndim != 2:
        raise ValueError(f"invalid {name}: expected a 2-D array (N×T or N×(T+1)), got shape {a.shape}")
    if shape is not None and a.shape != shape:
        raise ValueError(f"invalid {name}: expected shape {shape}, got {a.shape}")
    return jnp.array(a, dtype=dtype or a.dtype, copy=True)


class Estimator(_faces.EstimatorBase):
    """A metagrad estimator as a JAX function of the rows; see :func:`estimator`."""

    _face = "metagrad.jax"

    def __call__(
        self,
        u,
        log_mu,
        rewards,
        *,
        lengths=None,
        state_values=None,
        q_taken=None,
        behaviour_means=None,
        critic_means=None,
    ):
        """V̂ = (1/N) Σ_n V̂_n (a scalar) for padded N×T rows ``u`` = log π_θ(a_t|x_t),
        ``log_mu``, ``rewards``; ``lengths`` (N,) integers; a critic: ``state_values``
        N×(T+1), or ``q_taken`` N×T, ``behaviour_means`` N×(T+1) and ``critic_means``
        N×(T+1) (DR reads them; differentiable). See :mod:`metagrad.rows` for the layout."""
        u = _float_array("u", u)
        n, t = u.shape
        x = u - _float_array("log_mu", log_mu, (n, t), u.dtype)
        rewards = _float_array("rewards", rewards, (n, t), u.dtype)
        if lengths is None:
            lengths = jnp.full((n,), t, dtype=jnp.int32)
        else:
            lengths = jnp.asarray(lengths)
            if not jnp.issubdtype(lengths.dtype, jnp.integer) or lengths.shape != (n,):
                raise ValueError(f"invalid lengths: expected {n} integers, got {lengths.dtype} of shape {lengths.shape}")
            lengths = jnp.array(lengths, copy=True)
        kind = _faces.critic_kind(state_values, q_taken, behaviour_means, critic_means)
        data = []
        if kind == "state":
            data.append(_float_array("state_values", state_values, (n, t + 1), u.dtype))
        elif kind == "action":
            data.append(_float_array("q_taken", q_taken, (n, t), u.dtype))
            data.append(_float_array("behaviour_means", behaviour_means, (n, t + 1), u.dtype))
        has_c = critic_means is not None
        c = _float_array("critic_means", critic_means, (n, t + 1), u.dtype) if has_c else jnp.zeros((n, t + 1), u.dtype)
        spec = self.spec(kind, has_c)
        return _core(spec)(x, c, rewards, lengths, *data)


def estimator(name: str, *, gamma: float, truncation: float = 1.0, discount: str = "absolute") -> Estimator:
    """The estimator ``name`` (``is``, ``dr``, ``dr-trunc``, ``taypo-K``, ``lvc``, ``maml``) as
    a JAX function ``f(u, log_mu, rewards, *, lengths=None, state_values=None, q_taken=None,
    behaviour_means=None, critic_means=None)`` → V̂ (scalar), with exact first and second
    derivatives in ``u`` (and ``log_mu``, ``critic_means``) under JAX's transformations
    (module docstring). ``truncation`` is ``dr-trunc``'s ρ̄ = c̄; ``discount`` (``"absolute"``
    or ``"from-first"``) is the Taylor discount of ``taypo-K`` and ``maml``. A bad name or
    setting raises ``ValueError`` here."""
    return Estimator(name, gamma=gamma, truncation=truncation, discount=discount)
