"""The row interface (metagrad.rows) and the JAX adapter (metagrad.jax).

* The adapter's value, gradient and Hessian-vector products equal JAX's autodiff of the same
  estimator written natively in JAX from the formulas of docs/theory.md#estimators (reference
  below; it does
  not call metagrad), to 1e-10 in float64: on the rows directly, through a small MLP policy,
  and for a reverse-over-reverse meta-gradient.
* The numpy row functions composed with the softmax Jacobian equal metagrad.TabularProblem.
* Bad input raises errors that name the argument.
"""

import pathlib
import re
import subprocess
import sys

import numpy as np
import pytest

import metagrad
import metagrad.rows as mrows
import face_reference

jax = pytest.importorskip("jax")
jax.config.update("jax_enable_x64", True)
import jax.numpy as jnp  # noqa: E402

import metagrad.jax as mjax  # noqa: E402

REPO = pathlib.Path(__file__).resolve().parents[2]
GAMMA = 0.9


close = face_reference.close
report = face_reference.report  # the module's error report (an autouse fixture)


# ---------------------------------------------------------------------------------------
# Reference: the estimators written out from their definitions (JAX operations).

OPS = face_reference.Ops(exp=jnp.exp, minimum=jnp.minimum, zero=lambda x: 0.0)


def reference(name, *, discount="absolute", trunc=1.0):
    return face_reference.reference(OPS, GAMMA, name, discount=discount, trunc=trunc)


# ---------------------------------------------------------------------------------------
# Data


def make_data(seed, n=6, t=6, lengths=None):
    rng = np.random.default_rng(seed)
    u = rng.uniform(-2.0, -0.2, (n, t))
    log_mu = u + rng.uniform(-0.6, 0.6, (n, t))
    if lengths is None:
        lengths = rng.integers(1, t + 1, n)
        lengths[0], lengths[-1] = t, 0 if n > 3 else t
    d = dict(
        u=u,
        log_mu=log_mu,
        rewards=rng.normal(size=(n, t)),
        lengths=np.asarray(lengths, dtype=np.int64),
        state_values=rng.normal(size=(n, t + 1)),
        q_taken=rng.normal(size=(n, t)),
        behaviour_means=rng.normal(size=(n, t + 1)),
        critic_means=rng.normal(size=(n, t + 1)),
        w=rng.normal(size=(n, t)),
        wc=rng.normal(size=(n, t + 1)),
    )
    return d


CASES = face_reference.CASES
critic_kwargs = face_reference.critic_kwargs


def mask(d, t_extra=0):
    """1 within each trajectory's length (t < T_n, or ≤ T_n with t_extra = 1), else 0."""
    n, t = d["u"].shape
    cols = np.arange(t + t_extra)
    return (cols[None, :] < d["lengths"][:, None] + t_extra).astype(float)


# ---------------------------------------------------------------------------------------
# Adapter vs native JAX, on the rows


@pytest.mark.parametrize("name,critic,discount", CASES)
def test_adapter_equals_native_jax_on_rows(name, critic, discount):
    d = make_data(1)
    trunc = 1.1
    ours = mjax.estimator(name, gamma=GAMMA, truncation=trunc, discount=discount)
    ref = reference(name, discount=discount, trunc=trunc)
    ck = critic_kwargs(d, critic, with_means=(name == "dr"))
    tag = f"{name}/{critic}/{discount}"
    # Padding of u holds garbage: it must be ignored.
    u = np.where(mask(d) > 0, d["u"], 1e3)

    def fa(u, log_mu=d["log_mu"], c=None):
        kw = dict(ck, critic_means=c) if c is not None else ck
        return ours(u, log_mu, d["rewards"], lengths=d["lengths"], **kw)

    def fr(u, log_mu=d["log_mu"], c=None):
        kw = dict(ck, critic_means=c) if c is not None else ck
        return ref(u, log_mu, d["rewards"], d["lengths"], **kw)

    close(f"value {tag}", fa(u), fr(u))
    close(f"grad u {tag}", jax.grad(fa)(u), jax.grad(fr)(u))
    assert np.all(np.asarray(jax.grad(fa)(u))[mask(d) == 0] == 0.0)
    close(f"grad log_mu {tag}", jax.grad(fa, 1)(u, d["log_mu"]), jax.grad(fr, 1)(u, d["log_mu"]))
    # Forward-over-reverse HVP.
    hvp = lambda f: jax.jvp(jax.grad(f), (u,), (d["w"],))[1]  # noqa: E731
    close(f"hvp fwd-over-rev {tag}", hvp(fa), hvp(fr))
    # Reverse-over-reverse: ∇_u ⟨∇f(u), w⟩ = H w.
    ror = lambda f: jax.grad(lambda u: jnp.vdot(jax.grad(f)(u), d["w"]))(u)  # noqa: E731
    close(f"hvp rev-over-rev {tag}", ror(fa), ror(fr))
    close(f"hessian {tag}", jax.hessian(fa)(u), jax.hessian(fr)(u))
    if name == "dr" and critic == "action":
        c = d["critic_means"]
        for i in (0, 1):
            for j in (0, 1):
                ha = jax.hessian(fa, argnums=(0, 2))(u, d["log_mu"], c)[i][j]
                hr = jax.hessian(fr, argnums=(0, 2))(u, d["log_mu"], c)[i][j]
                close(f"hessian (u, c) block {i}{j} {tag}", ha, hr)


def test_rows_numpy_equal_native_jax_with_several_directions():
    """metagrad.rows directly: gradient, and K HVPs at once in (u, c)."""
    d = make_data(2)
    ref = reference("dr")
    ck = critic_kwargs(d, "action")
    ws = np.stack([d["w"], -2 * d["w"], np.ones_like(d["w"])])
    wcs = np.stack([d["wc"], 0 * d["wc"], np.ones_like(d["wc"])])
    r = mrows.derivatives(
        "dr", d["u"], d["log_mu"], d["rewards"], gamma=GAMMA, lengths=d["lengths"], direction=ws, direction_c=wcs, **ck
    )
    f = lambda u, c: ref(u, d["log_mu"], d["rewards"], d["lengths"], **dict(ck, critic_means=c))  # noqa: E731
    args = (d["u"], d["critic_means"])
    close("rows value", r.value, f(*args))
    gu, gc = jax.grad(f, (0, 1))(*args)
    close("rows grad u", r.grad_u, gu)
    close("rows grad c", r.grad_c, gc)
    for k in range(3):
        _, (hu, hc) = jax.jvp(lambda u, c: jax.grad(f, (0, 1))(u, c), args, (ws[k], wcs[k]))
        close("rows hvp u (K directions)", r.hvp_u[k], hu)
        close("rows hvp c (K directions)", r.hvp_c[k], hc)


def test_adapter_detects_a_different_estimator():
    """Negative control: the comparison is sharp enough to tell TayPO-1 from TayPO-2."""
    d = make_data(3)
    kw = dict(lengths=d["lengths"], state_values=d["state_values"])
    f1 = lambda u: mjax.estimator("taypo-1", gamma=GAMMA)(u, d["log_mu"], d["rewards"], **kw)  # noqa: E731
    f2 = lambda u: reference("taypo-2")(u, d["log_mu"], d["rewards"], d["lengths"], d["state_values"])  # noqa: E731
    h1 = jax.jvp(jax.grad(f1), (d["u"],), (d["w"],))[1]
    h2 = jax.jvp(jax.grad(f2), (d["u"],), (d["w"],))[1]
    assert np.max(np.abs(h1 - h2)) > 1e-3


def test_transformations_jit_vmap_and_third_order():
    d = make_data(4)
    f = mjax.estimator("taypo-2", gamma=GAMMA)
    ref = reference("taypo-2")
    kw = dict(state_values=d["state_values"])

    def meta(est, u):  # reverse-over-reverse scalar
        fa = lambda u: est(u, d["log_mu"], d["rewards"], d["lengths"], **kw)  # noqa: E731
        return jnp.sum(jnp.tanh(jax.grad(fa)(u)))

    ours = lambda u: meta(lambda u, lm, r, L, **k: f(u, lm, r, lengths=L, **k), u)  # noqa: E731
    theirs = lambda u: meta(ref, u)  # noqa: E731
    batch = jnp.stack([d["u"], d["u"] + 0.1, d["u"] - 0.2])
    close("jit(grad(grad)) taypo-2", jax.jit(jax.grad(ours))(d["u"]), jax.grad(theirs)(d["u"]))
    close("vmap(grad(grad)) taypo-2", jax.vmap(jax.grad(ours))(batch), jax.vmap(jax.grad(theirs))(batch))
    close(
        "jit(vmap(hessian)) taypo-2",
        jax.jit(jax.vmap(jax.hessian(lambda u: f(u, d["log_mu"], d["rewards"], lengths=d["lengths"], **kw))))(batch),
        jax.vmap(jax.hessian(lambda u: ref(u, d["log_mu"], d["rewards"], d["lengths"], **kw)))(batch),
    )
    close(
        "jacrev(jacrev) taypo-2",
        jax.jacrev(jax.jacrev(lambda u: f(u, d["log_mu"], d["rewards"], lengths=d["lengths"], **kw)))(d["u"]),
        jax.hessian(lambda u: ref(u, d["log_mu"], d["rewards"], d["lengths"], **kw))(d["u"]),
    )
    fa = lambda u: f(u, d["log_mu"], d["rewards"], lengths=d["lengths"], **kw)  # noqa: E731
    fr = lambda u: ref(u, d["log_mu"], d["rewards"], d["lengths"], **kw)  # noqa: E731
    (va, ga), (vr, gr) = jax.value_and_grad(fa)(d["u"]), jax.value_and_grad(fr)(d["u"])
    close("value_and_grad taypo-2", np.array([va, *np.ravel(ga)]), np.array([vr, *np.ravel(gr)]))
    close("vjp taypo-2", jax.vjp(fa, d["u"])[1](2.0)[0], 2.0 * gr)
    close("linearize taypo-2", jax.linearize(fa, d["u"])[1](d["w"]), jax.jvp(fr, (d["u"],), (d["w"],))[1])
    with pytest.raises(NotImplementedError, match="third derivatives"):
        jax.grad(lambda u: jnp.sum(jax.grad(ours)(u)))(d["u"])
    with pytest.raises(TypeError, match="differentiable in u, log_mu and critic_means only"):
        jax.grad(lambda r: f(d["u"], d["log_mu"], r, lengths=d["lengths"], **kw))(d["rewards"])


# ---------------------------------------------------------------------------------------
# A small MLP policy θ → u, and a MAML-style meta-gradient


def mlp_setup(seed, n=5, t=6, n_actions=3, obs_dim=3, hidden=4):
    rng = np.random.default_rng(seed)
    sizes = [(obs_dim, hidden), (hidden,), (hidden, n_actions), (n_actions,)]
    theta = [jnp.asarray(rng.normal(scale=0.7, size=s)) for s in sizes]

    def logits(theta, obs):
        w1, b1, w2, b2 = theta
        return jnp.tanh(obs @ w1 + b1) @ w2 + b2

    def batch(seed):
        r = np.random.default_rng(seed)
        lengths = r.integers(2, t + 1, n)
        lengths[0] = t
        mu_probs = r.dirichlet(np.full(n_actions, 3.0), (n, t + 1))  # behaviour μ(·|x_t)
        actions = np.array([[r.choice(n_actions, p=mu_probs[i, k]) for k in range(t)] for i in range(n)])
        return dict(
            obs=r.normal(size=(n, t + 1, obs_dim)),
            actions=actions,
            log_mu=np.log(np.take_along_axis(mu_probs[:, :-1], actions[..., None], -1)[..., 0]),
            rewards=r.normal(size=(n, t)),
            lengths=lengths.astype(np.int64),
            state_values=r.normal(size=(n, t + 1)),
            q=r.normal(size=(n, t + 1, n_actions)),
            mu_probs=mu_probs,
        )

    def rows(theta, b):
        lg = logits(theta, b["obs"])  # N×(T+1)×A
        logp = jax.nn.log_softmax(lg, axis=-1)
        u = jnp.take_along_axis(logp[:, :-1], b["actions"][..., None], axis=-1)[..., 0]
        c = jnp.sum(jnp.exp(logp) * b["q"], axis=-1)  # Σ_b π(b|x_t) Q̂(x_t, b), N×(T+1)
        return u, c

    return theta, batch, rows


def objective(est, rows, b, critic):
    """V̂(θ) for an estimator callable with the metagrad.jax signature."""

    def f(theta):
        u, c = rows(theta, b)
        if critic == "state":
            return est(u, b["log_mu"], b["rewards"], b["lengths"], state_values=b["state_values"])
        q_taken = jnp.take_along_axis(b["q"][:, :-1], b["actions"][..., None], axis=-1)[..., 0]
        bm = jnp.sum(b["mu_probs"] * b["q"], axis=-1)
        return est(u, b["log_mu"], b["rewards"], b["lengths"], q_taken=q_taken, behaviour_means=bm, critic_means=c)

    return f


def adapter(name, **kw):
    e = mjax.estimator(name, gamma=GAMMA, **kw)
    return lambda u, lm, r, L, **k: e(u, lm, r, lengths=L, **k)


def flat(tree):
    return np.concatenate([np.ravel(x) for x in jax.tree_util.tree_leaves(tree)])


@pytest.mark.parametrize(
    "name,critic", [("dr", "state"), ("taypo-1", "state"), ("taypo-2", "state"), ("is", "state"), ("dr", "action")]
)
def test_mlp_policy_gradient_and_hvp(name, critic):
    theta, batch, rows = mlp_setup(5)
    b = batch(11)
    fa = objective(adapter(name), rows, b, critic)
    fr = objective(reference(name), rows, b, critic)
    v = jax.tree_util.tree_map(lambda x: jnp.cos(jnp.arange(x.size, dtype=float)).reshape(x.shape), theta)
    close(f"mlp value {name}/{critic}", fa(theta), fr(theta))
    close(f"mlp grad {name}/{critic}", flat(jax.grad(fa)(theta)), flat(jax.grad(fr)(theta)))
    hvp = lambda f: jax.jvp(jax.grad(f), (theta,), (v,))[1]  # noqa: E731
    close(f"mlp hvp fwd-over-rev {name}/{critic}", flat(hvp(fa)), flat(hvp(fr)))


@pytest.mark.parametrize("inner", ["taypo-2", "dr", "is"])
def test_mlp_maml_meta_gradient_reverse_over_reverse(inner):
    """θ' = θ + η ∇V̂_in(θ) on pre-update data, meta-gradient ∇_θ V̂_out(θ') on post-update
    data (DR), by jax.grad through jax.grad, and vmapped over two tasks."""
    theta, batch, rows = mlp_setup(6)
    eta = 0.5
    tasks = [(batch(20 + 2 * i), batch(21 + 2 * i)) for i in range(2)]

    def meta_objective(est_in, est_out, pre, post):
        f_in = objective(est_in, rows, pre, "state")
        f_out = objective(est_out, rows, post, "state")

        def m(theta):
            g = jax.grad(f_in)(theta)
            return f_out(jax.tree_util.tree_map(lambda p, q: p + eta * q, theta, g))

        return m

    for pre, post in tasks:
        ma = meta_objective(adapter(inner), adapter("dr"), pre, post)
        mr = meta_objective(reference(inner), reference("dr"), pre, post)
        close(f"maml meta-value {inner}", ma(theta), mr(theta))
        close(f"maml meta-gradient {inner}", flat(jax.grad(ma)(theta)), flat(jax.grad(mr)(theta)))
    # vmap over tasks (the data stacked), jitted.
    stack = lambda k: {key: np.stack([t[k][key] for t in tasks]) for key in tasks[0][k]}  # noqa: E731
    pre_s, post_s = stack(0), stack(1)

    def batched(est_in, est_out):
        def one(pre, post):
            return jax.grad(meta_objective(est_in, est_out, pre, post))(theta)

        return jax.vmap(one)(pre_s, post_s)

    # Per-task lengths differ and are traced under vmap; the reference runs task by task.
    ours = jax.jit(lambda: batched(adapter(inner), adapter("dr")))()
    for i, (pre, post) in enumerate(tasks):
        theirs = jax.grad(meta_objective(reference(inner), reference("dr"), pre, post))(theta)
        close(f"maml meta-gradient vmap+jit {inner}", flat(jax.tree_util.tree_map(lambda x: x[i], ours)), flat(theirs))


# ---------------------------------------------------------------------------------------
# numpy rows vs the tabular engine (softmax policy: J = ∂u/∂θ known in closed form)


def tabular_setup(seed, n_states=4, n_actions=3, n=7, t=5):
    rng = np.random.default_rng(seed)
    P = rng.dirichlet(np.ones(n_states), (n_states, n_actions))
    R = rng.uniform(size=(n_states, n_actions))
    theta = rng.normal(scale=0.5, size=(n_states, n_actions))
    mu = rng.dirichlet(np.ones(n_actions) * 3, n_states)
    lengths = rng.integers(1, t + 1, n)
    lengths[0] = t
    states = np.zeros((n, t + 1), np.int64)
    actions = np.zeros((n, t), np.int64)
    rewards = np.zeros((n, t))
    for i in range(n):
        x = 0
        states[i, 0] = x
        for s in range(lengths[i]):
            a = rng.choice(n_actions, p=mu[x])
            actions[i, s], rewards[i, s] = a, R[x, a]
            x = rng.choice(n_states, p=P[x, a])
            states[i, s + 1] = x
    sv = rng.normal(size=n_states)
    q = rng.normal(size=(n_states, n_actions))
    return dict(P=P, R=R, theta=theta, mu=mu, lengths=lengths, states=states, actions=actions, rewards=rewards, sv=sv, q=q)


@pytest.mark.parametrize("name,critic", [("is", None), ("dr", "state"), ("dr", "action"), ("taypo-2", "state"), ("taypo-3", "state"), ("dr-trunc", "state")])
def test_rows_compose_to_tabular_problem(name, critic):
    s = tabular_setup(8)
    ns, na = s["theta"].shape
    n, t = s["actions"].shape
    kw = {}
    if critic == "state":
        kw["state_values"] = s["sv"]
    elif critic == "action":
        kw["action_values"] = s["q"]
    prob = metagrad.TabularProblem(
        transitions=s["P"], rewards=s["R"], theta=s["theta"], behaviour=s["mu"], gamma=GAMMA, start_state=0,
        states=s["states"], actions=s["actions"], trajectory_rewards=s["rewards"], lengths=s["lengths"], **kw,
    )
    expected = prob.estimate(name, truncation=1.0)

    pi = np.exp(s["theta"]) / np.exp(s["theta"]).sum(1, keepdims=True)
    X, A = s["states"], s["actions"]
    u = np.log(pi[X[:, :-1], A])
    log_mu = np.log(s["mu"][X[:, :-1], A])
    row_kw = {}
    if critic == "state":
        row_kw["state_values"] = s["sv"][X]
    elif critic == "action":
        row_kw = dict(
            q_taken=s["q"][X[:, :-1], A],
            behaviour_means=(s["mu"] * s["q"]).sum(1)[X],
            critic_means=(pi * s["q"]).sum(1)[X],
        )
    D = ns * na
    has_c = critic == "action"
    # Jacobians of the rows w.r.t. θ (flat index x·|A| + a) and their curvatures.
    Ju = np.zeros((n, t, D))
    Jc = np.zeros((n, t + 1, D))
    for i in range(n):
        for k in range(t + 1):
            x = X[i, k]
            if k < t:
                Ju[i, k, x * na : (x + 1) * na] = np.eye(na)[A[i, k]] - pi[x]
            y = pi[x] * (s["q"][x] - (pi[x] * s["q"][x]).sum())
            Jc[i, k, x * na : (x + 1) * na] = y
    K = n * t + (n * (t + 1) if has_c else 0)
    dirs = np.eye(K)
    r = mrows.derivatives(
        name, u, log_mu, s["rewards"], gamma=GAMMA, lengths=s["lengths"], truncation=1.0,
        direction=dirs[:, : n * t].reshape(K, n, t),
        direction_c=dirs[:, n * t :].reshape(K, n, t + 1) if has_c else None,
        **row_kw,
    )
    close(f"tabular value {name}/{critic}", r.value, expected["value"], 1e-12)
    J = Ju.reshape(n * t, D)
    g = r.grad_u.reshape(-1)
    F = r.hvp_u.reshape(K, n * t).T  # rows u, columns all directions
    if has_c:
        J = np.vstack([J, Jc.reshape(n * (t + 1), D)])
        g = np.concatenate([g, r.grad_c.reshape(-1)])
        F = np.vstack([F, r.hvp_c.reshape(K, n * (t + 1)).T])
    grad = J.T @ g
    close(f"tabular gradient {name}/{critic}", grad.reshape(ns, na), expected["gradient"], 1e-12)
    # Row curvature: ∇²u = −(diag π_x − π_x π_xᵀ); ∇²c = diag y − yπᵀ − πyᵀ (block x).
    curv = np.zeros((D, D))
    for i in range(n):
        for k in range(t + 1):
            x = X[i, k]
            blk = slice(x * na, (x + 1) * na)
            if k < t:
                curv[blk, blk] -= r.grad_u[i, k] * (np.diag(pi[x]) - np.outer(pi[x], pi[x]))
            if has_c:
                y = pi[x] * (s["q"][x] - (pi[x] * s["q"][x]).sum())
                curv[blk, blk] += r.grad_c[i, k] * (np.diag(y) - np.outer(y, pi[x]) - np.outer(pi[x], y))
    hess = J.T @ F @ J + curv
    close(f"tabular hessian {name}/{critic}", hess, expected["hessian"], 1e-11)


# ---------------------------------------------------------------------------------------
# Errors


def test_errors_name_the_argument():
    d = make_data(9, n=3, t=4, lengths=[4, 2, 3])
    base = dict(gamma=GAMMA, lengths=d["lengths"], state_values=d["state_values"])
    args = (d["u"], d["log_mu"], d["rewards"])
    with pytest.raises(ValueError, match=r"invalid log_mu: expected shape \(3, 4\)"):
        mrows.derivatives("dr", d["u"], d["log_mu"][:, :3], d["rewards"], **base)
    with pytest.raises(ValueError, match=r"invalid state_values: expected shape \(3, 5\)"):
        mrows.derivatives("dr", *args, **dict(base, state_values=d["state_values"][:, :4]))
    u = d["u"].copy()
    u[1, 3] = np.nan  # padding (length 2): ignored
    mrows.derivatives("dr", u, d["log_mu"], d["rewards"], **base)
    u[1, 1] = np.nan
    with pytest.raises(ValueError, match=r"invalid u\[1\]\[1\]: must be finite, got NaN"):
        mrows.derivatives("dr", u, d["log_mu"], d["rewards"], **base)
    with pytest.raises(ValueError, match=r"invalid estimator: unknown estimator \"nope\""):
        mrows.derivatives("nope", *args, **base)
    with pytest.raises(ValueError, match="invalid estimator"):
        mrows.derivatives("taypo-0", *args, **base)
    with pytest.raises(ValueError, match=r"invalid gamma: must be in \[0, 1\), got 1"):
        mrows.derivatives("dr", *args, **dict(base, gamma=1.0))
    with pytest.raises(ValueError, match="invalid critic: estimator dr needs a critic"):
        mrows.derivatives("dr", *args, gamma=GAMMA)
    with pytest.raises(ValueError, match=r"invalid lengths\[2\]: must be in 0..=4, got 5"):
        mrows.derivatives("dr", *args, **dict(base, lengths=[4, 2, 5]))
    with pytest.raises(ValueError, match=r"invalid lengths\[0\]: must be in 0..=4, got -1"):
        mrows.derivatives("dr", *args, **dict(base, lengths=[-1, 2, 3]))
    with pytest.raises(ValueError, match="invalid truncation"):
        mrows.derivatives("dr-trunc", *args, **dict(base, truncation=0.0))
    with pytest.raises(ValueError, match="invalid discount"):
        mrows.derivatives("taypo-2", *args, **dict(base, discount="relative"))
    with pytest.raises(ValueError, match="invalid direction"):
        mrows.derivatives("dr", *args, **dict(base, direction=np.ones((3, 5))))
    with pytest.raises(ValueError, match=r"invalid direction: expected an N×T array, or K×N×T .* got shape \(12,\)"):
        mrows.derivatives("dr", *args, **dict(base, direction=np.ones(12)))
    with pytest.raises(ValueError, match="invalid critic_means"):
        mrows.derivatives(
            "dr", *args, gamma=GAMMA, q_taken=d["q_taken"], behaviour_means=d["behaviour_means"]
        )
    with pytest.raises(ValueError, match="invalid u"):
        mrows.derivatives("is", np.full((3, 4), 800.0), d["log_mu"], d["rewards"], gamma=GAMMA)
    with pytest.raises(TypeError, match="invalid rewards"):
        mrows.derivatives("is", d["u"], d["log_mu"], d["rewards"].astype(str), gamma=GAMMA)

    # The JAX adapter: names and settings when built, shapes when traced, values when run.
    with pytest.raises(ValueError, match="invalid estimator"):
        mjax.estimator("nope", gamma=GAMMA)
    with pytest.raises(ValueError, match="invalid gamma"):
        mjax.estimator("dr", gamma=-0.1)
    f = mjax.estimator("dr", gamma=GAMMA)
    with pytest.raises(ValueError, match=r"invalid rewards: expected shape \(3, 4\)"):
        f(d["u"], d["log_mu"], d["rewards"][:2], state_values=d["state_values"])
    with pytest.raises(ValueError, match="invalid critic: estimator dr needs a critic"):
        f(d["u"], d["log_mu"], d["rewards"])
    with pytest.raises(ValueError, match="invalid critic_means"):
        f(d["u"], d["log_mu"], d["rewards"], q_taken=d["q_taken"], behaviour_means=d["behaviour_means"])
    with pytest.raises(Exception, match=r"invalid u\[1\]\[1\]: must be finite"):
        jax.jit(lambda u: f(u, d["log_mu"], d["rewards"], state_values=d["state_values"]))(u).block_until_ready()


def test_example_runs():
    p = subprocess.run(
        [sys.executable, str(REPO / "python" / "examples" / "jax_taypo2_maml.py")],
        capture_output=True, text=True, timeout=600,
    )
    assert p.returncode == 0, p.stderr
    m = re.search(r"max \|difference\| .*: ([0-9.e+-]+)", p.stdout)
    assert "meta-gradient norm" in p.stdout and m, p.stdout
    assert float(m.group(1)) < 1e-10
