"""metagrad estimators inside PyTorch: exact gradients and Hessian-vector products of any
estimator for a policy written in PyTorch, by PyTorch's own autograd and ``torch.func``.

    import torch
    import metagrad.torch as mtorch

    v_hat = mtorch.estimator("taypo-2", gamma=0.99)
    u = policy.log_prob(obs, actions)                # N×T log π_θ(a_t|x_t), any torch network
    loss = -v_hat(u, log_mu, rewards, state_values=v, lengths=lengths)
    loss.backward()                                  # ∇_θ V̂ into the parameters' .grad
    g = torch.autograd.grad(v_hat(...), params, create_graph=True)   # differentiable ∇_θ V̂
    meta = torch.autograd.grad(outer(adapted(g)), params)             # exact second order

The estimator is a function of the rows u (and, for DR with an action-value critic, the
critic means c) only; :mod:`metagrad.rows` computes its value, row gradient g = ∂V̂/∂u and row
HVPs H·w in Rust. Here that function becomes three ``torch.autograd.Function`` classes of
x = u − log μ and c, each in the form ``torch.func`` accepts (``forward`` without ``ctx``,
``setup_context``, ``jvp`` and ``vmap`` rules):

* V̂(x, c), whose backward is g(x, c)·dV̂ and whose JVP is ⟨g, dx⟩ + ⟨∂V̂/∂c, dc⟩;
* g(x, c) (computed with the value, in the same engine call), itself differentiable: its
  backward and its JVP are the row HVP H·w;
* H(x, c)·w, linear in w and its own transpose (H is symmetric), so it can be
  differentiated in w again (``torch.autograd.functional.hvp`` does); its derivative in x
  (a third derivative of V̂) raises ``NotImplementedError`` when autograd would use it.

So autograd's chain rule through the user's network gives exact first and second
derivatives. Tested, in float64 against the estimators written natively in PyTorch:
``backward()``, ``torch.autograd.grad`` with ``create_graph=True`` followed by a second
``grad`` (how MAML code is written), ``torch.autograd.functional.hvp`` / ``vhp`` /
``hessian``, ``gradcheck`` and ``gradgradcheck``; ``torch.func.grad``, ``grad(grad)``,
``jvp(grad)`` (forward-over-reverse), ``hessian``, ``jacrev``, ``vmap`` of all of them (e.g.
over tasks: the batch goes to the engine as one call, its trajectories stacked, never as a
Python loop). Third derivatives raise ``NotImplementedError``.

Derivatives flow to ``u``, ``log_mu`` (V̂ depends on u − log_mu) and ``critic_means``;
rewards, lengths and critic values are data: passing one that requires grad (or, under
``torch.func.jvp``, carries a tangent) raises ``TypeError`` — ``.detach()`` it.

Precision and devices: the engine computes in float64 and casts its results to the dtype of
``u`` (float64 gives exact derivatives; float32 is accepted, with float32 rounding of the
inputs and results). Other arguments are converted to ``u``'s dtype. The engine runs on
the CPU: a tensor on another device (CUDA) raises ``ValueError`` naming the argument and its
device; move the rows with ``.cpu()`` yourself (and the result back with ``.to(device)``)
— nothing is moved implicitly.

Errors: shapes and names are checked when the estimator is called (``ValueError`` naming
the argument); values (non-finite entries, lengths out of range, overflowing ratios) are
checked by the engine (``ValueError`` naming the entry, e.g. ``u[1][3]``; under ``vmap``,
trajectory n of batch element b is entry b·N + n of the stacked batch).
"""

from __future__ import annotations

import functools
import inspect

import numpy as np
import torch
import torch.autograd.forward_ad as _forward_ad

from . import _faces

__all__ = ["estimator", "Estimator"]

_THIRD_ORDER = (
    "metagrad.torch: third derivatives of an estimator are not available (the engine "
    "provides the value, the gradient and Hessian-vector products in the rows)"
)
_DATA_GRAD = (
    "metagrad.torch: an estimator is differentiable in u, log_mu and critic_means only; "
    "rewards, lengths and critic values are data"
)


# ---------------------------------------------------------------------------------------
# Host side: tensors with leading batch dimensions → numpy → one engine call → tensors.


_NUMPY_DTYPE = {torch.float64: np.float64, torch.float32: np.float32, torch.float16: np.float16}


def _numpy(t: torch.Tensor) -> np.ndarray:
    """`t` as numpy for the engine: float64, float32 and int64 as views, other floats as
    float64, other integers as int64 (numpy's cast is cheaper than torch's on the small
    arrays of a task)."""
    t = t.detach()
    if t.dtype == torch.float64 or t.dtype == torch.float32 or t.dtype == torch.int64:
        return t.numpy()
    if t.dtype == torch.bfloat16:
        return t.to(torch.float64).numpy()
    return t.numpy().astype(np.float64 if t.is_floating_point() else np.int64)


def _to(a: np.ndarray, like: torch.Tensor) -> torch.Tensor:
    """`a` as a contiguous tensor of `like`'s dtype."""
    dtype = _NUMPY_DTYPE.get(like.dtype)
    a = np.asarray(a, dtype=dtype or np.float64)
    if not a.flags.c_contiguous:
        a = a.copy()
    t = torch.from_numpy(a)
    return t if dtype is not None else t.to(like.dtype)


class _Static:
    """The static settings of a call as one opaque argument of the Functions (a NamedTuple
    would be flattened, field by field, by torch.func at every call)."""

    __slots__ = ("spec",)

    def __init__(self, spec: _faces.Spec):
        self.spec = spec


@functools.lru_cache(maxsize=None)
def _static(spec: _faces.Spec) -> _Static:
    return _Static(spec)


def _critic_means(static: _Static, c: torch.Tensor):
    """c (or a direction's c part) for the engine: zeros of its shape when the call has no
    critic means (the engine does not read them then, so nothing needs converting)."""
    return _numpy(c) if static.spec.has_c else np.zeros(tuple(c.shape))


def _zeros_or(a: np.ndarray, like: torch.Tensor, has: bool) -> torch.Tensor:
    return _to(a, like) if has else torch.zeros(a.shape, dtype=like.dtype)


def _host_value_grad(static: _Static, x, c, *data):
    res = [_numpy(x), _critic_means(static, c)] + [_numpy(a) for a in data]
    v, gx, gc = _faces.stacked_value_grad(static.spec, res)
    return _to(np.asarray(v), x), _to(gx, x), _zeros_or(gc, x, static.spec.has_c)


def _host_hvp(static: _Static, x, c, wx, wc, *data):
    res = [_numpy(x), _critic_means(static, c)] + [_numpy(a) for a in data]
    hx, hc = _faces.stacked_hvp(static.spec, res, _numpy(wx), _critic_means(static, wc))
    return _to(hx, wx), _zeros_or(hc, wx, static.spec.has_c)


# ---------------------------------------------------------------------------------------
# Rules shared by the three Functions.


def _vmap(fn, info, in_dims, spec, *args):
    """A vmap rule: batch dimensions to the front (size 1 where an argument is not batched,
    which the host broadcasts), then the Function itself on the batched tensors."""
    moved = [a.unsqueeze(0) if d is None else a.movedim(d, 0) for a, d in zip(args, in_dims[1:])]
    out = fn.apply(spec, *moved)
    return out, (0,) * len(out)


def _check_data_tangents(tangents) -> None:
    """Refuses a non-zero tangent of a data argument. (``torch.func.jvp`` hands zero tangents
    to every floating input; a tangent batched by an enclosing ``vmap`` cannot be inspected
    and is taken as zero: the call-site check in :meth:`Estimator.__call__` covers it.)"""
    for t in tangents:
        if t is None:
            continue
        try:
            nonzero = bool(torch.count_nonzero(t))
        except RuntimeError:  # data-dependent control flow under vmap
            continue
        if nonzero:
            raise TypeError(_DATA_GRAD + " (a data argument has a non-zero tangent)")


def _third_order_used(ctx, indices) -> bool:
    """Whether autograd will use the gradient of this node's inputs `indices` (tensor
    inputs, counted after the spec): True if it runs the nodes that receive them (a true
    third derivative), False when only the direction's gradient is wanted (e.g. the
    double-backward trick of ``torch.autograd.functional.hvp``)."""
    edges = getattr(ctx, "next_functions", None)
    for i in indices:
        if not ctx.needs_input_grad[i + 1]:
            continue
        if edges is None:
            return True
        node = edges[i][0]
        if node is None:
            continue
        try:
            if torch._C._will_engine_execute_node(node):
                return True
        except RuntimeError:  # a leaf under autograd.grad: cannot tell, refuse
            return True
    return False


def _transforms_active() -> bool:
    """Whether a torch.func transform is active (its tensors are wrappers the host cannot
    read; the Functions' rules unwrap them)."""
    active = getattr(torch._C, "_are_functorch_transforms_active", None)
    return True if active is None else bool(active())


def _zeros_if_none(t, like):
    return torch.zeros_like(like) if t is None else t


def _scale(s: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
    """s (batch) times g (batch + N×T), s broadcast over the core dimensions."""
    return s * g if s.ndim == 0 else s.reshape(s.shape + (1, 1)) * g


class _RowHvp(torch.autograd.Function):
    """(hx, hc) = (∂²V̂/∂(x, c)²)·(wx, wc): linear in (wx, wc), self-transposed."""

    @staticmethod
    def forward(spec, x, c, wx, wc, *data):
        return _host_hvp(spec, x, c, wx, wc, *data)

    @staticmethod
    def setup_context(ctx, inputs, output):
        spec, x, c, wx, wc, *data = inputs
        ctx.spec = spec
        ctx.save_for_backward(x, c, *data)

    @staticmethod
    def backward(ctx, ghx, ghc):
        if _third_order_used(ctx, (0, 1)):
            raise NotImplementedError(_THIRD_ORDER)
        x, c, *data = ctx.saved_tensors
        needs = ctx.needs_input_grad
        if not (needs[3] or needs[4]):
            return (None,) * (5 + len(data))
        hx, hc = _RowHvp.apply(ctx.spec, x, c, ghx, ghc, *data)  # Hᵀ = H
        return (None, None, None, hx if needs[3] else None, hc if needs[4] else None) + (None,) * len(data)

    @staticmethod
    def jvp(ctx, _spec, dx, dc, dwx, dwc, *ddata):
        if dx is not None or dc is not None:
            raise NotImplementedError(_THIRD_ORDER)
        _check_data_tangents(ddata)
        x, c, *data = ctx.saved_tensors
        return _RowHvp.apply(ctx.spec, x, c, _zeros_if_none(dwx, x), _zeros_if_none(dwc, c), *data)

    @staticmethod
    def vmap(info, in_dims, spec, *args):
        return _vmap(_RowHvp, info, in_dims, spec, *args)


class _RowGrad(torch.autograd.Function):
    """(gx, gc) = ∂V̂/∂(x, c), computed with the value and passed in as (gx0, gc0); its
    derivatives are row HVPs."""

    @staticmethod
    def forward(spec, x, c, gx0, gc0, *data):
        return gx0.clone(), gc0.clone()

    @staticmethod
    def setup_context(ctx, inputs, output):
        spec, x, c, gx0, gc0, *data = inputs
        ctx.spec = spec
        ctx.save_for_backward(x, c, *data)
        ctx.save_for_forward(x, c, *data)

    @staticmethod
    def backward(ctx, wx, wc):
        x, c, *data = ctx.saved_tensors
        needs = ctx.needs_input_grad
        if not (needs[1] or needs[2]):
            return (None,) * (5 + len(data))
        wx, wc = _zeros_if_none(wx, x), _zeros_if_none(wc, c)
        if torch.is_grad_enabled() or _transforms_active():  # the HVP must be differentiable in w
            hx, hc = _RowHvp.apply(ctx.spec, x, c, wx, wc, *data)
        else:  # a plain backward (no graph): the engine directly, without a graph node
            hx, hc = _host_hvp(ctx.spec, x, c, wx, wc, *data)
        return (None, hx if needs[1] else None, hc if needs[2] else None, None, None) + (None,) * len(data)

    @staticmethod
    def jvp(ctx, _spec, dx, dc, _dgx0, _dgc0, *ddata):
        _check_data_tangents(ddata)
        x, c, *data = ctx.saved_tensors
        return _RowHvp.apply(ctx.spec, x, c, _zeros_if_none(dx, x), _zeros_if_none(dc, c), *data)

    @staticmethod
    def vmap(info, in_dims, spec, *args):
        return _vmap(_RowGrad, info, in_dims, spec, *args)


class _Value(torch.autograd.Function):
    """(V̂, gx0, gc0): the value, and the row gradient from the same engine call as
    non-differentiable outputs (which :class:`_RowGrad` makes differentiable)."""

    @staticmethod
    def forward(spec, x, c, *data):
        return _host_value_grad(spec, x, c, *data)

    @staticmethod
    def setup_context(ctx, inputs, output):
        spec, x, c, *data = inputs
        _, gx0, gc0 = output
        ctx.mark_non_differentiable(gx0, gc0)
        ctx.spec = spec
        ctx.save_for_backward(x, c, gx0, gc0, *data)
        ctx.save_for_forward(x, c, gx0, gc0, *data)

    @staticmethod
    def backward(ctx, gv, _gx0, _gc0):
        x, c, gx0, gc0, *data = ctx.saved_tensors
        needs = ctx.needs_input_grad
        if not (needs[1] or needs[2]):
            return (None,) * (3 + len(data))
        if torch.is_grad_enabled():  # create_graph: the gradient must be differentiable
            gx, gc = _RowGrad.apply(ctx.spec, x, c, gx0, gc0, *data)
        else:
            gx, gc = gx0, gc0
        return (None, _scale(gv, gx) if needs[1] else None, _scale(gv, gc) if needs[2] else None) + (None,) * len(
            data
        )

    @staticmethod
    def jvp(ctx, _spec, dx, dc, *ddata):
        _check_data_tangents(ddata)
        x, c, gx0, gc0, *data = ctx.saved_tensors
        gx, gc = _RowGrad.apply(ctx.spec, x, c, gx0, gc0, *data)
        dv = torch.zeros(gx.shape[:-2], dtype=gx.dtype)
        if dx is not None:
            dv = dv + (gx * dx).sum((-2, -1))
        if dc is not None:
            dv = dv + (gc * dc).sum((-2, -1))
        return dv, None, None

    @staticmethod
    def vmap(info, in_dims, spec, *args):
        return _vmap(_Value, info, in_dims, spec, *args)


# Function.apply binds its arguments to forward's signature at every call (to fill in
# defaults, which these forwards do not have), parameter by parameter in Python; a single
# var-positional parameter makes that binding trivial.
_ARGS = inspect.Signature([inspect.Parameter("args", inspect.Parameter.VAR_POSITIONAL)])
for _fn in (_RowHvp, _RowGrad, _Value):
    _fn.forward.__signature__ = _ARGS


# ---------------------------------------------------------------------------------------
# The user-facing estimator.


def _check_device(name: str, t: torch.Tensor) -> None:
    if t.device.type != "cpu":
        raise ValueError(
            f"invalid {name}: metagrad.torch computes on the CPU, got a tensor on {t.device}; "
            f"move the inputs with .cpu() (and the result back with .to(device))"
        )


def _as_tensor(name: str, x) -> torch.Tensor:
    if isinstance(x, torch.Tensor):
        t = x
    else:
        try:
            t = torch.as_tensor(np.asarray(x))
        except Exception as e:  # ragged lists, objects and the like
            raise ValueError(f"invalid {name}: not an array of numbers ({e})") from None
    _check_device(name, t)
    if t.dtype == torch.bool or t.is_complex():
        raise TypeError(f"invalid {name}: expected real numbers, got dtype {t.dtype}")
    return t


def _float_tensor(name: str, x, shape=None, dtype=None, data: bool = False) -> torch.Tensor:
    """`x` as a 2-D floating tensor of `shape` (and `dtype`)."""
    t = _as_tensor(name, x)
    if data and (t.requires_grad or _forward_ad.unpack_dual(t).tangent is not None):
        raise TypeError(f"invalid {name}: it requires grad; " + _DATA_GRAD + f" (pass {name}.detach())")
    if not t.is_floating_point():
        t = t.to(dtype or torch.get_default_dtype())
    if t.ndim != 2:
        raise ValueError(f"invalid {name}: expected a 2-D tensor (N×T or N×(T+1)), got shape {tuple(t.shape)}")
    if shape is not None and tuple(t.shape) != shape:
        raise ValueError(f"invalid {name}: expected shape {shape}, got {tuple(t.shape)}")
    return t if dtype is None else t.to(dtype)


class Estimator(_faces.EstimatorBase):
    """A metagrad estimator as a PyTorch function of the rows; see :func:`estimator`."""

    _face = "metagrad.torch"

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
    ) -> torch.Tensor:
        """The estimate V̂ = (1/N) Σ_n V̂_n, differentiable to second order.

        Args:
            u: N×T tensor, u[n, t] = log π_θ(a_t|x_t) of trajectory n (entries past its
                length are ignored and get zero derivatives).
            log_mu: N×T, log μ(a_t|x_t) of the behaviour policy (differentiable: V̂ depends
                on u − log_mu).
            rewards: N×T rewards r_t (data).
            lengths: (N,) integers T_n ≤ T, the trajectories' lengths (default: all T).
            state_values: N×(T+1) state-value critic V̂(x_0) … V̂(x_{T_n}) (data; column T_n
                is the bootstrap value of the final state). IS needs no critic.
            q_taken: N×T, Q̂(x_t, a_t) of an action-value critic (data).
            behaviour_means: N×(T+1), Σ_b μ(b|x_t) Q̂(x_t, b) (data).
            critic_means: N×(T+1), c_t = Σ_b π_θ(b|x_t) Q̂(x_t, b) (differentiable; DR with an
                action-value critic reads them, TayPO and MAML do not).

        Returns:
            A 0-dimensional tensor of ``u``'s dtype.

        Raises:
            ValueError: a shape, a device, or a value (from the engine) that is not valid,
                naming the argument.
            TypeError: a non-numeric dtype, or data (rewards, critic values) that require grad.
        """
        u = _float_tensor("u", u)
        n, t = u.shape
        x = u - _float_tensor("log_mu", log_mu, (n, t), u.dtype)
        rewards = _float_tensor("rewards", rewards, (n, t), u.dtype, data=True)
        if lengths is None:
            lengths = torch.full((n,), t, dtype=torch.int64)
        else:
            lengths = _as_tensor("lengths", lengths)
            if lengths.is_floating_point() or tuple(lengths.shape) != (n,):
                raise ValueError(
                    f"invalid lengths: expected {n} integers, got {lengths.dtype} of shape {tuple(lengths.shape)}"
                )
        kind = _faces.critic_kind(state_values, q_taken, behaviour_means, critic_means)
        data = []
        if kind == "state":
            data.append(_float_tensor("state_values", state_values, (n, t + 1), u.dtype, data=True))
        elif kind == "action":
            data.append(_float_tensor("q_taken", q_taken, (n, t), u.dtype, data=True))
            data.append(_float_tensor("behaviour_means", behaviour_means, (n, t + 1), u.dtype, data=True))
        has_c = critic_means is not None
        if has_c:
            # A copy: the Function's input is then never a leaf (see _third_order_used).
            c = _float_tensor("critic_means", critic_means, (n, t + 1), u.dtype).clone()
        else:
            c = torch.zeros((n, t + 1), dtype=u.dtype)
        static = _static(self.spec(kind, has_c))
        return _Value.apply(static, x, c, rewards, lengths, *data)[0]


def estimator(name: str, *, gamma: float, truncation: float = 1.0, discount: str = "absolute") -> Estimator:
    """The estimator ``name`` as a PyTorch function of the rows.

    Returns ``f(u, log_mu, rewards, *, lengths=None, state_values=None, q_taken=None,
    behaviour_means=None, critic_means=None)`` → V̂ (a 0-dimensional tensor) with exact
    first and second derivatives in ``u`` (and ``log_mu``, ``critic_means``) under autograd
    and ``torch.func`` (module docstring; arguments in :meth:`Estimator.__call__`).

    Args:
        name: ``is`` (step-wise importance sampling, ≙ DiCE), ``dr`` (doubly robust, ≙
            Loaded DiCE), ``dr-trunc`` (V-trace-style truncated DR), ``taypo-K`` for any
            K ≥ 1 (``lvc`` = ``taypo-1``), or ``maml`` (the naive score-function estimator).
        gamma: the discount γ ∈ [0, 1).
        truncation: ``dr-trunc``'s truncation levels ρ̄ = c̄ (> 0).
        discount: the Taylor discount of ``taypo-K`` and ``maml``: ``"absolute"`` (γ^{t_k},
            the paper's) or ``"from-first"`` (γ^{t_k − t_1}, ProMP's).

    Returns:
        An :class:`Estimator` (callable).

    Raises:
        ValueError: an unknown name or a setting out of range, naming it.
    """
    return Estimator(name, gamma=gamma, truncation=truncation, discount=discount)
