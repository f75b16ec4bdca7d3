"""The PyTorch face (metagrad.torch).

* Value, gradient, Hessian and Hessian-vector products equal autograd of the same estimator
  written natively in PyTorch from the formulas of docs/theory.md#estimators (reference below; it does not
  call metagrad), to 1e-10 in float64: on the rows directly, through a small softmax
  (tabular) and a small MLP policy, by every route autograd and torch.func offer.
* gradcheck and gradgradcheck (finite differences) in float64.
* MAML meta-gradients through one and three inner steps equal the paper's
  (I + ηĤ)ĝ' products built from metagrad.rows (numpy) and the policy's own Jacobians, and
  vmap over tasks equals the loop over tasks, in a number of engine calls that does not
  grow with the number of tasks.
* Bad input raises errors that name the argument; third derivatives raise.
"""

import itertools
import pathlib
import re
import subprocess
import sys

import numpy as np
import pytest

import metagrad._faces as mfaces
import metagrad.rows as mrows
import face_reference

torch = pytest.importorskip("torch")
import torch.func as tf  # noqa: E402

import metagrad.torch as mtorch  # noqa: E402

REPO = pathlib.Path(__file__).resolve().parents[2]
GAMMA = 0.9
F64 = torch.float64


close = face_reference.close
report = face_reference.report  # the module's error report (an autouse fixture)


def grad0(out, inp) -> "torch.Tensor":
    """d out / d inp, zero when out does not depend on inp (e.g. the Hessian of MAML's
    estimator, linear in the rows)."""
    if not out.requires_grad:
        return torch.zeros_like(inp)
    return torch.autograd.grad(out, inp, materialize_grads=True)[0]


def t64(a) -> "torch.Tensor":
    return torch.as_tensor(np.asarray(a), dtype=F64)


# ---------------------------------------------------------------------------------------
# Reference: the estimators written out from their definitions (PyTorch operations).

OPS = face_reference.Ops(
    exp=torch.exp, minimum=lambda a, b: torch.clamp(a, max=b), zero=lambda x: torch.zeros((), dtype=x.dtype)
)


def reference(name, *, discount="absolute", trunc=1.0):
    return face_reference.reference(OPS, GAMMA, name, discount=discount, trunc=trunc)


# ---------------------------------------------------------------------------------------
# Data


def make_data(seed, n=5, t=5, lengths=None):
    rng = np.random.default_rng(seed)
    u = rng.uniform(-2.0, -0.2, (n, t))
    if lengths is None:
        lengths = rng.integers(1, t + 1, n)
        lengths[0], lengths[-1] = t, 0
    d = dict(
        u=u,
        log_mu=u + rng.uniform(-0.6, 0.6, (n, t)),
        rewards=rng.normal(size=(n, t)),
        lengths=np.asarray(lengths, dtype=np.int64),
        state_values=rng.normal(size=(n, t + 1)),
        q_taken=rng.normal(size=(n, t)),
        behaviour_means=rng.normal(size=(n, t + 1)),
        critic_means=rng.normal(size=(n, t + 1)),
        w=rng.normal(size=(n, t)),
        wc=rng.normal(size=(n, t + 1)),
    )
    return {k: (v if k == "lengths" else t64(v)) for k, v in d.items()}


CASES = face_reference.CASES
critic_kwargs = face_reference.critic_kwargs


def valid(d) -> "torch.Tensor":
    n, t = d["u"].shape
    return torch.arange(t)[None, :] < torch.as_tensor(d["lengths"])[:, None]


# ---------------------------------------------------------------------------------------
# On the rows: every estimator, every route to first and second derivatives


@pytest.mark.parametrize("name,critic,discount", CASES)
def test_rows_equal_native_torch(name, critic, discount):
    d = make_data(1)
    trunc = 1.1
    ours = mtorch.estimator(name, gamma=GAMMA, truncation=trunc, discount=discount)
    ref = reference(name, discount=discount, trunc=trunc)
    ck = critic_kwargs(d, critic)
    tag = f"{name}/{critic}/{discount}"
    u = torch.where(valid(d), d["u"], torch.full_like(d["u"], 1e3))  # padding: garbage, ignored
    w = d["w"]

    def fa(u, log_mu=d["log_mu"], c=d["critic_means"]):
        kw = dict(ck, critic_means=c) if "critic_means" in ck else ck
        return ours(u, log_mu, d["rewards"], lengths=d["lengths"], **kw)

    def fr(u, log_mu=d["log_mu"], c=d["critic_means"]):
        kw = dict(ck, critic_means=c) if "critic_means" in ck else ck
        return ref(u, log_mu, d["rewards"], d["lengths"], **kw)

    close(f"value {tag}", fa(u), fr(u))
    assert fa(u).shape == () and fa(u).dtype == F64
    # Reference derivatives by plain autograd on the native estimator.
    ur = u.clone().requires_grad_()
    gr = torch.autograd.grad(fr(ur), ur, create_graph=True)[0]
    hvr = grad0((gr * w).sum(), ur)
    hess_r = torch.autograd.functional.hessian(fr, u)

    # backward()
    ua = u.clone().requires_grad_()
    fa(ua).backward()
    close(f"backward {tag}", ua.grad, gr)
    assert torch.all(ua.grad[~valid(d)] == 0.0)
    # grad(create_graph) then grad: reverse-over-reverse HVP
    ga = torch.autograd.grad(fa(ua), ua, create_graph=True)[0]
    close(f"grad(create_graph) {tag}", ga, gr)
    close(f"grad of grad {tag}", torch.autograd.grad((ga * w).sum(), ua)[0], hvr)
    # torch.autograd.functional
    close(f"functional.hvp {tag}", torch.autograd.functional.hvp(fa, u, w)[1], hvr)
    close(f"functional.vhp {tag}", torch.autograd.functional.vhp(fa, u, w)[1], hvr)
    close(f"functional.hessian {tag}", torch.autograd.functional.hessian(fa, u), hess_r)
    # torch.func
    close(f"func.grad {tag}", tf.grad(fa)(u), gr)
    close(f"func.jvp(grad) {tag}", tf.jvp(tf.grad(fa), (u,), (w,))[1], hvr)
    close(f"func.grad(grad) {tag}", tf.grad(lambda u: (tf.grad(fa)(u) * w).sum())(u), hvr)
    close(f"func.hessian {tag}", tf.hessian(fa)(u), hess_r)
    close(f"func.jacrev(jacrev) {tag}", tf.jacrev(tf.jacrev(fa))(u), hess_r)
    close(f"func.jvp {tag}", tf.jvp(fa, (u,), (w,))[1], (gr * w).sum())
    # log_mu: V̂ depends on u − log_mu
    lm = d["log_mu"].clone().requires_grad_()
    close(f"grad log_mu {tag}", torch.autograd.grad(fa(u, lm), lm)[0], -gr)
    if "critic_means" in ck:
        c = d["critic_means"]
        both_a = lambda u, c: fa(u, d["log_mu"], c)  # noqa: E731
        both_r = lambda u, c: fr(u, d["log_mu"], c)  # noqa: E731
        ha, hr = tf.hessian(both_a, argnums=(0, 1))(u, c), tf.hessian(both_r, argnums=(0, 1))(u, c)
        for i, j in itertools.product((0, 1), (0, 1)):
            close(f"hessian (u, c) block {i}{j} {tag}", ha[i][j], hr[i][j])
        wc = d["wc"]
        hv_a = torch.autograd.functional.hvp(both_a, (u, c), (w, wc))[1]
        hv_r = torch.autograd.functional.hvp(both_r, (u, c), (w, wc))[1]
        close(f"functional.hvp (u, c) {tag}", torch.cat([h.reshape(-1) for h in hv_a]), torch.cat([h.reshape(-1) for h in hv_r]))


@pytest.mark.parametrize("name,critic", [("is", "none"), ("dr", "action"), ("taypo-2", "state"), ("dr-trunc", "state")])
def test_gradcheck_and_gradgradcheck(name, critic):
    d = make_data(2, n=3, t=4)
    f = mtorch.estimator(name, gamma=GAMMA, truncation=1.1)
    ck = critic_kwargs(d, critic)
    if "critic_means" in ck:
        c = ck.pop("critic_means")
        inputs = (d["u"].clone().requires_grad_(), d["log_mu"].clone().requires_grad_(), c.clone().requires_grad_())

        def fn(u, lm, c):
            return f(u, lm, d["rewards"], lengths=d["lengths"], critic_means=c, **ck)
    else:
        inputs = (d["u"].clone().requires_grad_(), d["log_mu"].clone().requires_grad_())

        def fn(u, lm):
            return f(u, lm, d["rewards"], lengths=d["lengths"], **ck)

    assert torch.autograd.gradcheck(fn, inputs)
    assert torch.autograd.gradgradcheck(fn, inputs)


def test_the_checks_detect_a_wrong_hessian(monkeypatch):
    """Negative controls: the reference is sharp enough to tell TayPO-1 from TayPO-2, and with
    the engine's HVP swapped for TayPO-1's (gradient still TayPO-2's), gradcheck passes but
    gradgradcheck and the reference comparison fail."""
    d = make_data(3, n=3, t=4)
    kw = dict(lengths=d["lengths"], state_values=d["state_values"])
    f1 = lambda u: mtorch.estimator("taypo-1", gamma=GAMMA)(u, d["log_mu"], d["rewards"], **kw)  # noqa: E731
    f2 = lambda u: mtorch.estimator("taypo-2", gamma=GAMMA)(u, d["log_mu"], d["rewards"], **kw)  # noqa: E731
    r2 = lambda u: reference("taypo-2")(u, d["log_mu"], d["rewards"], d["lengths"], d["state_values"])  # noqa: E731
    hvp = lambda f: tf.jvp(tf.grad(f), (d["u"],), (d["w"],))[1]  # noqa: E731
    assert torch.max(torch.abs(hvp(f1) - hvp(r2))) > 1e-3
    real = mfaces.stacked_hvp
    monkeypatch.setattr(mfaces, "stacked_hvp", lambda spec, *a: real(spec._replace(name="taypo-1"), *a))
    u = d["u"].clone().requires_grad_()
    assert torch.autograd.gradcheck(f2, (u,))
    assert not torch.autograd.gradgradcheck(f2, (u,), raise_exception=False)
    assert torch.max(torch.abs(hvp(f2) - hvp(r2))) > 1e-3


# ---------------------------------------------------------------------------------------
# Policies θ → rows: a tabular softmax and a small MLP


def softmax_setup(seed, n=5, t=5, n_states=4, n_actions=3):
    rng = np.random.default_rng(seed)
    theta = t64(rng.normal(scale=0.5, size=n_states * n_actions))

    def batch(seed):
        r = np.random.default_rng(seed)
        lengths = r.integers(2, t + 1, n)
        lengths[0] = t
        mu = r.dirichlet(np.full(n_actions, 3.0), n_states)
        states = r.integers(0, n_states, (n, t + 1))
        actions = np.array([[r.choice(n_actions, p=mu[states[i, k]]) for k in range(t)] for i in range(n)])
        q = r.normal(size=(n_states, n_actions))
        return dict(
            states=torch.as_tensor(states), actions=torch.as_tensor(actions),
            log_mu=t64(np.log(mu[states[:, :-1], actions])), rewards=t64(r.normal(size=(n, t))),
            lengths=lengths.astype(np.int64), state_values=t64(r.normal(size=(n_states,))[states]),
            q=t64(q[states]), mu_probs=t64(mu[states]),
        )

    def log_probs(theta, b):
        return torch.log_softmax(theta.reshape(n_states, n_actions), -1)[b["states"]]  # N×(T+1)×A

    return theta, batch, log_probs


def mlp_setup(seed, n=5, t=5, n_actions=3, obs_dim=3, hidden=4):
    rng = np.random.default_rng(seed)
    shapes = [(obs_dim, hidden), (hidden,), (hidden, n_actions), (n_actions,)]
    theta = t64(rng.normal(scale=0.7, size=sum(int(np.prod(s)) for s in shapes)))

    def unflatten(theta):
        out, i = [], 0
        for s in shapes:
            k = int(np.prod(s))
            out.append(theta[i : i + k].reshape(s))
            i += k
        return out

    def batch(seed):
        r = np.random.default_rng(seed)
        lengths = r.integers(2, t + 1, n)
        lengths[0] = t
        mu_probs = r.dirichlet(np.full(n_actions, 3.0), (n, t + 1))
        actions = np.array([[r.choice(n_actions, p=mu_probs[i, k]) for k in range(t)] for i in range(n)])
        return dict(
            obs=t64(r.normal(size=(n, t + 1, obs_dim))), actions=torch.as_tensor(actions),
            log_mu=t64(np.log(np.take_along_axis(mu_probs[:, :-1], actions[..., None], -1)[..., 0])),
            rewards=t64(r.normal(size=(n, t))), lengths=lengths.astype(np.int64),
            state_values=t64(r.normal(size=(n, t + 1))), q=t64(r.normal(size=(n, t + 1, n_actions))),
            mu_probs=t64(mu_probs),
        )

    def log_probs(theta, b):
        w1, b1, w2, b2 = unflatten(theta)
        return torch.log_softmax(torch.tanh(b["obs"] @ w1 + b1) @ w2 + b2, -1)  # N×(T+1)×A

    return theta, batch, log_probs


def rows_of(log_probs):
    def rows(theta, b):
        logp = log_probs(theta, b)
        u = torch.gather(logp[:, :-1], -1, b["actions"][..., None])[..., 0]
        c = (torch.exp(logp) * b["q"]).sum(-1)  # Σ_b π(b|x_t) Q̂(x_t, b), N×(T+1)
        return u, c

    return rows


def objective(est, rows, b, critic):
    """V̂(θ) for an estimator with the reference's positional signature."""

    def f(theta):
        u, c = rows(theta, b)
        if critic == "state":
            return est(u, b["log_mu"], b["rewards"], b["lengths"], state_values=b["state_values"])
        if critic == "none":
            return est(u, b["log_mu"], b["rewards"], b["lengths"])
        q_taken = torch.gather(b["q"][:, :-1], -1, b["actions"][..., None])[..., 0]
        bm = (b["mu_probs"] * b["q"]).sum(-1)
        return est(u, b["log_mu"], b["rewards"], b["lengths"], q_taken=q_taken, behaviour_means=bm, critic_means=c)

    return f


def adapter(name, **kw):
    e = mtorch.estimator(name, gamma=GAMMA, **kw)
    return lambda u, lm, r, L, **k: e(u, lm, r, lengths=L, **k)


POLICIES = {"softmax": softmax_setup, "mlp": mlp_setup}


@pytest.mark.parametrize("policy", sorted(POLICIES))
@pytest.mark.parametrize("name,critic,discount", CASES)
def test_policy_value_gradient_hessian_hvp(policy, name, critic, discount):
    theta, batch, log_probs = POLICIES[policy](5)
    b = batch(11)
    rows = rows_of(log_probs)
    fa = objective(adapter(name, discount=discount, truncation=1.1), rows, b, critic)
    fr = objective(reference(name, discount=discount, trunc=1.1), rows, b, critic)
    tag = f"{policy} {name}/{critic}/{discount}"
    v = torch.cos(torch.arange(theta.numel(), dtype=F64))
    close(f"{tag} value", fa(theta), fr(theta))
    th = theta.clone().requires_grad_()
    g_ref = torch.autograd.grad(fr(th), th, create_graph=True)[0]
    hv_ref = grad0((g_ref * v).sum(), th)
    g = torch.autograd.grad(fa(th), th, create_graph=True)[0]
    close(f"{tag} gradient", g, g_ref)
    close(f"{tag} hvp (grad of grad)", torch.autograd.grad((g * v).sum(), th)[0], hv_ref)
    close(f"{tag} hvp (func.jvp(grad))", tf.jvp(tf.grad(fa), (theta,), (v,))[1], hv_ref)
    close(f"{tag} hessian", torch.autograd.functional.hessian(fa, theta), torch.autograd.functional.hessian(fr, theta))


# ---------------------------------------------------------------------------------------
# MAML meta-gradients against the paper's (I + ηĤ)ĝ', built from metagrad.rows


def rows_estimates(name, rows, b, theta):
    """ĝ(θ) and v ↦ Ĥ(θ)·v of an estimator on batch b (state critic), from metagrad.rows in
    numpy and the policy's own derivatives: ĝ = Jᵀg, Ĥv = Jᵀ(H_rows·Jv) + ∇²⟨g, u(θ)⟩·v."""
    u_of = lambda th: rows(th, b)[0]  # noqa: E731
    u = u_of(theta).detach()
    args = (name, u.numpy(), b["log_mu"].numpy(), b["rewards"].numpy())
    kw = dict(gamma=GAMMA, lengths=b["lengths"], state_values=b["state_values"].numpy())
    g_rows = t64(mrows.derivatives(*args, **kw).grad_u)
    _, vjp = tf.vjp(u_of, theta)
    grad = vjp(g_rows)[0]

    def hvp(v):
        ju = tf.jvp(u_of, (theta,), (v,))[1]
        h_rows = t64(mrows.derivatives(*args, **kw, direction=ju.numpy()).hvp_u)
        curvature = tf.jvp(tf.grad(lambda th: (g_rows * u_of(th)).sum()), (theta,), (v,))[1]
        return vjp(h_rows)[0] + curvature

    return grad, hvp


def paper_meta_gradient(inner, outer, rows, pre, post, theta, eta, steps):
    """(I + ηĤ_in(θ_0)) ⋯ (I + ηĤ_in(θ_{K−1})) ĝ_out(θ_K), θ_{k+1} = θ_k + η ĝ_in(θ_k)."""
    thetas, hvps = [theta], []
    for _ in range(steps):
        g, hvp = rows_estimates(inner, rows, pre, thetas[-1])
        thetas.append(thetas[-1] + eta * g)
        hvps.append(hvp)
    m = rows_estimates(outer, rows, post, thetas[-1])[0]
    for hvp in reversed(hvps):
        m = m + eta * hvp(m)
    return m


def maml_meta_objective(inner, outer, rows, pre, post, eta, steps):
    """V̂_out(θ_K) as MAML code writes it: autograd.grad(create_graph=True) per inner step."""
    f_in = lambda est: objective(est, rows, pre, "state")  # noqa: E731

    def m(theta):
        th = theta
        for _ in range(steps):
            th = th + eta * torch.autograd.grad(f_in(inner)(th), th, create_graph=True)[0]
        return objective(outer, rows, post, "state")(th)

    return m


@pytest.mark.parametrize(
    "inner,steps", [("taypo-2", 1), ("dr", 1), ("is", 1), ("taypo-1", 1), ("taypo-2", 3), ("dr", 3)]
)
def test_maml_meta_gradient_equals_paper_form(inner, steps):
    theta, batch, log_probs = mlp_setup(6)
    rows = rows_of(log_probs)
    pre, post = batch(20), batch(21)
    eta = 0.5
    th = theta.clone().requires_grad_()
    ours = torch.autograd.grad(
        maml_meta_objective(adapter(inner), adapter("dr"), rows, pre, post, eta, steps)(th), th
    )[0]
    paper = paper_meta_gradient(inner, "dr", rows, pre, post, theta, eta, steps)
    close(f"maml {steps} step(s) {inner}: autograd vs (I + ηĤ)ĝ'", ours, paper)
    native = torch.autograd.grad(
        maml_meta_objective(reference(inner), reference("dr"), rows, pre, post, eta, steps)(th), th
    )[0]
    close(f"maml {steps} step(s) {inner}: autograd vs native", ours, native)
    # first-order MAML would differ: the Hessian term matters at this step size
    assert torch.max(torch.abs(ours - rows_estimates("dr", rows, post, theta)[0])) > 1e-3


def stack(tasks, k):
    return {key: torch.stack([t[k][key] for t in tasks]) for key in tasks[0][k]}


def func_meta_gradient(inner, rows, eta, steps):
    """∇_θ V̂_out(θ_K) with torch.func only (grad inside grad), for vmap over tasks."""

    def meta(theta, pre, post):
        th = theta
        for _ in range(steps):
            th = th + eta * tf.grad(objective(inner, rows, pre, "state"))(th)
        return objective(adapter("dr"), rows, post, "state")(th)

    return tf.grad(meta)


@pytest.mark.parametrize("steps", [1, 3])
def test_vmap_over_tasks_equals_loop_in_one_engine_call_per_stage(steps, monkeypatch):
    theta, batch, log_probs = mlp_setup(7)
    rows = rows_of(log_probs)
    eta = 0.3
    tasks = [(batch(40 + 2 * i), batch(41 + 2 * i)) for i in range(4)]
    for tk in tasks:
        tk[0]["lengths"] = torch.as_tensor(tk[0]["lengths"])
        tk[1]["lengths"] = torch.as_tensor(tk[1]["lengths"])
    mg = func_meta_gradient(adapter("taypo-2"), rows, eta, steps)
    calls = []
    real_call = mfaces.call
    monkeypatch.setattr(mfaces, "call", lambda *a, **k: calls.append(1) or real_call(*a, **k))

    def batched(k):
        pre, post = stack(tasks[:k], 0), stack(tasks[:k], 1)
        calls.clear()
        out = tf.vmap(mg, in_dims=(None, 0, 0))(theta, pre, post)
        return out, len(calls)

    ours, n4 = batched(4)
    _, n2 = batched(2)
    assert n4 == n2, f"engine calls grow with the number of tasks: {n2} for 2 tasks, {n4} for 4"
    loop_calls = []
    for i, (pre, post) in enumerate(tasks):
        calls.clear()
        one = mg(theta, pre, post)
        loop_calls.append(len(calls))
        close(f"vmap over tasks = loop, {steps} step(s)", ours[i], one, 1e-12)
    paper = paper_meta_gradient("taypo-2", "dr", rows, tasks[0][0], tasks[0][1], theta, eta, steps)
    close(f"vmap over tasks = paper form, {steps} step(s)", ours[0], paper)
    assert n4 == loop_calls[0], (n4, loop_calls)


def test_vmap_over_rows_with_shared_and_batched_arguments():
    """vmap of value, gradient, Hessian and HVP with some arguments batched and others shared
    (broadcast), nested vmap, and vmap over the HVP direction only (K directions at once)."""
    d = make_data(8)
    f = mtorch.estimator("dr", gamma=GAMMA)
    ref = reference("dr")
    ck = critic_kwargs(d, "action")
    us = torch.stack([d["u"], d["u"] + 0.1, d["u"] - 0.2])
    rs = torch.stack([d["rewards"], 2 * d["rewards"], -d["rewards"]])
    fa = lambda u, r, c: f(u, d["log_mu"], r, lengths=d["lengths"], **dict(ck, critic_means=c))  # noqa: E731
    fr = lambda u, r, c: ref(u, d["log_mu"], r, d["lengths"], **dict(ck, critic_means=c))  # noqa: E731
    c = d["critic_means"]
    for i in range(3):
        close("vmap value (u, rewards batched)", tf.vmap(fa, (0, 0, None))(us, rs, c)[i], fr(us[i], rs[i], c))
        close("vmap value (rewards batched)", tf.vmap(fa, (None, 0, None))(d["u"], rs, c)[i], fr(d["u"], rs[i], c))
        close(
            "vmap grad (u batched, c shared)",
            tf.vmap(tf.grad(fa, argnums=(0, 2)), (0, None, None))(us, d["rewards"], c)[1][i],
            tf.grad(fr, argnums=2)(us[i], d["rewards"], c),
        )
        close(
            "vmap hessian (rewards batched)",
            tf.vmap(tf.hessian(fa), (None, 0, None))(d["u"], rs, c)[i],
            tf.hessian(fr)(d["u"], rs[i], c),
        )
    ws = torch.stack([d["w"], -d["w"], torch.ones_like(d["w"])])
    hv = tf.vmap(lambda w: tf.jvp(lambda u: tf.grad(fa)(u, d["rewards"], c), (d["u"],), (w,))[1])(ws)
    for i in range(3):
        hr = tf.jvp(lambda u: tf.grad(fr)(u, d["rewards"], c), (d["u"],), (ws[i],))[1]
        close("vmap over directions", hv[i], hr)
    nested = tf.vmap(tf.vmap(tf.grad(fa), (0, None, None)), (None, 0, None))(us, rs, c)
    for i, j in itertools.product(range(3), range(3)):
        close("nested vmap grad", nested[j, i], tf.grad(fr)(us[i], rs[j], c))
    # autograd (not torch.func) through a vmap whose u is shared: gradients summed over the batch
    u = d["u"].clone().requires_grad_()
    g = torch.autograd.grad(tf.vmap(fa, (None, 0, None))(u, rs, c).sum(), u, create_graph=True)[0]
    g_ref = torch.autograd.grad(sum(fr(u, rs[i], c) for i in range(3)), u, create_graph=True)[0]
    close("autograd through vmap, u shared: gradient", g, g_ref)
    close("autograd through vmap, u shared: hvp", torch.autograd.grad((g * d["w"]).sum(), u)[0],
          torch.autograd.grad((g_ref * d["w"]).sum(), u)[0])


# ---------------------------------------------------------------------------------------
# Precision, third order, errors


def test_float32_is_accepted_and_cast_back():
    d = make_data(9)
    f = mtorch.estimator("taypo-2", gamma=GAMMA)
    kw = dict(lengths=d["lengths"], state_values=d["state_values"])
    u32 = d["u"].float().requires_grad_()
    v32 = f(u32, d["log_mu"].float(), d["rewards"].float(), **kw)
    assert v32.dtype == torch.float32
    g32 = torch.autograd.grad(v32, u32, create_graph=True)[0]
    h32 = torch.autograd.grad((g32 * d["w"].float()).sum(), u32)[0]
    assert g32.dtype == h32.dtype == torch.float32
    u64 = d["u"].clone().requires_grad_()
    v64 = f(u64, d["log_mu"], d["rewards"], **kw)
    g64 = torch.autograd.grad(v64, u64, create_graph=True)[0]
    h64 = torch.autograd.grad((g64 * d["w"]).sum(), u64)[0]
    close("float32 value", v32.double(), v64, 1e-5)
    close("float32 gradient", g32.double(), g64, 1e-5)
    close("float32 hvp", h32.double(), h64, 1e-5)
    # Bit for bit: the engine in float64 on the float32 inputs, its results rounded to float32.
    x = (u32 - d["log_mu"].float()).detach().double().numpy()
    ref = mrows.derivatives("taypo-2", x, np.zeros_like(x), d["rewards"].float().double().numpy(), gamma=GAMMA,
                            lengths=np.asarray(d["lengths"]), state_values=d["state_values"].float().double().numpy(),
                            direction=d["w"].float().double().numpy())
    assert v32.item() == np.float32(ref.value)
    assert np.array_equal(g32.detach().numpy(), ref.grad_u.astype(np.float32))
    assert np.array_equal(h32.numpy(), ref.hvp_u.astype(np.float32))


def test_third_order_raises():
    d = make_data(10)
    f = mtorch.estimator("taypo-2", gamma=GAMMA)
    F = lambda u: f(u, d["log_mu"], d["rewards"], lengths=d["lengths"], state_values=d["state_values"])  # noqa: E731
    u = d["u"].clone().requires_grad_()
    g = torch.autograd.grad(F(u), u, create_graph=True)[0]
    hv = torch.autograd.grad((g * d["w"]).sum(), u, create_graph=True)[0]
    with pytest.raises(NotImplementedError, match="third derivatives"):
        torch.autograd.grad(hv.sum(), u)
    with pytest.raises(NotImplementedError, match="third derivatives"):
        hv.sum().backward()
    hvp = lambda u: (tf.grad(lambda u: (tf.grad(F)(u) * d["w"]).sum())(u) * d["w"]).sum()  # noqa: E731
    with pytest.raises(NotImplementedError, match="third derivatives"):
        tf.grad(hvp)(d["u"])
    with pytest.raises(NotImplementedError, match="third derivatives"):
        tf.jvp(lambda u: tf.jvp(tf.grad(F), (u,), (d["w"],))[1], (d["u"],), (d["w"],))
    # Differentiating the HVP in its direction only is second order (functional.hvp does it).
    w = d["w"].clone().requires_grad_()
    hw = torch.autograd.grad((g * w).sum(), u, create_graph=True)[0]
    close("HVP differentiated in the direction", torch.autograd.grad((hw * d["w"]).sum(), w)[0], hv)


def test_errors_name_the_argument():
    d = make_data(11, n=3, t=4, lengths=[4, 2, 3])
    u, lm, r, sv = d["u"], d["log_mu"], d["rewards"], d["state_values"]
    with pytest.raises(ValueError, match="invalid estimator"):
        mtorch.estimator("nope", gamma=GAMMA)
    with pytest.raises(TypeError, match="invalid estimator"):
        mtorch.estimator(3, gamma=GAMMA)
    with pytest.raises(ValueError, match=r"invalid gamma: must be in \[0, 1\), got 1"):
        mtorch.estimator("dr", gamma=1.0)
    with pytest.raises(ValueError, match="invalid discount"):
        mtorch.estimator("taypo-2", gamma=GAMMA, discount="relative")
    f = mtorch.estimator("dr", gamma=GAMMA)
    assert repr(f) == "metagrad.torch.estimator('dr', gamma=0.9, truncation=1.0, discount='absolute')"
    with pytest.raises(ValueError, match=r"invalid rewards: expected shape \(3, 4\), got \(2, 4\)"):
        f(u, lm, r[:2], state_values=sv)
    with pytest.raises(ValueError, match=r"invalid u: expected a 2-D tensor .* got shape \(12,\)"):
        f(u.reshape(-1), lm, r, state_values=sv)
    with pytest.raises(ValueError, match=r"invalid state_values: expected shape \(3, 5\)"):
        f(u, lm, r, state_values=sv[:, :4])
    with pytest.raises(ValueError, match="invalid critic: estimator dr needs a critic"):
        f(u, lm, r)
    with pytest.raises(ValueError, match="invalid critic: give state_values or an action-value critic, not both"):
        f(u, lm, r, state_values=sv, q_taken=d["q_taken"], behaviour_means=d["behaviour_means"])
    with pytest.raises(ValueError, match="invalid behaviour_means: an action-value critic needs"):
        f(u, lm, r, q_taken=d["q_taken"])
    with pytest.raises(ValueError, match="invalid critic_means"):
        f(u, lm, r, q_taken=d["q_taken"], behaviour_means=d["behaviour_means"])
    with pytest.raises(ValueError, match="invalid critic_means: only with an action-value critic"):
        f(u, lm, r, critic_means=d["critic_means"])
    with pytest.raises(ValueError, match=r"invalid lengths: expected 3 integers"):
        f(u, lm, r, state_values=sv, lengths=[4.0, 2.0, 3.0])
    with pytest.raises(ValueError, match=r"invalid lengths\[2\]: must be in 0..=4, got 5"):
        f(u, lm, r, state_values=sv, lengths=[4, 2, 5])
    bad = u.clone()
    bad[1, 3] = float("nan")  # padding (length 2): ignored
    f(bad, lm, r, state_values=sv, lengths=d["lengths"])
    bad[1, 1] = float("nan")
    with pytest.raises(ValueError, match=r"invalid u\[1\]\[1\]: must be finite, got NaN"):
        f(bad, lm, r, state_values=sv, lengths=d["lengths"])
    with pytest.raises(ValueError, match=r"invalid u\[0\]\[0\]: .*likelihood ratio"):
        mtorch.estimator("is", gamma=GAMMA)(torch.full((3, 4), 800.0, dtype=F64), lm, r)
    with pytest.raises(TypeError, match="invalid rewards: expected real numbers, got dtype torch.bool"):
        f(u, lm, r > 0, state_values=sv)
    with pytest.raises(ValueError, match="invalid rewards: not an array of numbers"):
        f(u, lm, [[1.0, 2.0], [3.0]], state_values=sv)
    # Data that would receive a gradient.
    for arg in ("rewards", "state_values"):
        kw = dict(rewards=r, state_values=sv)
        kw[arg] = kw[arg].clone().requires_grad_()
        with pytest.raises(TypeError, match=f"invalid {arg}: it requires grad.*differentiable in u, log_mu and critic_means only"):
            f(u, lm, kw["rewards"], state_values=kw["state_values"])
    with pytest.raises(TypeError, match="invalid rewards: it requires grad"):
        tf.grad(lambda r: f(u, lm, r, state_values=sv))(r)
    with pytest.raises(TypeError, match="invalid rewards: it requires grad"):
        tf.jvp(lambda r: f(u, lm, r, state_values=sv), (r,), (torch.ones_like(r),))
    with pytest.raises(TypeError, match="differentiable in u, log_mu and critic_means only"):
        tf.jvp(lambda r: tf.grad(lambda u: f(u, lm, r, state_values=sv))(u), (r,), (torch.ones_like(r),))
    # Tensors on another device (a meta tensor stands in for CUDA, which the test machine lacks).
    with pytest.raises(ValueError, match="invalid u: metagrad.torch computes on the CPU, got a tensor on meta"):
        f(torch.empty((3, 4), device="meta"), lm, r, state_values=sv)
    with pytest.raises(ValueError, match="invalid state_values: metagrad.torch computes on the CPU"):
        f(u, lm, r, state_values=sv.to("meta"))


def test_inputs_as_numpy_and_lists():
    d = make_data(12, n=3, t=4)
    f = mtorch.estimator("taypo-2", gamma=GAMMA)
    kw = dict(lengths=list(d["lengths"]), state_values=d["state_values"].numpy())
    v = f(d["u"], d["log_mu"].numpy(), d["rewards"].tolist(), **kw)
    r = mrows.derivatives("taypo-2", d["u"].numpy(), d["log_mu"].numpy(), d["rewards"].numpy(), gamma=GAMMA,
                          lengths=d["lengths"], state_values=d["state_values"].numpy())
    assert v.item() == r.value  # one engine call, same numbers bit for bit


def test_example_runs():
    p = subprocess.run(
        [sys.executable, str(REPO / "python" / "examples" / "torch_maml_point.py"), "--quick"],
        capture_output=True, text=True, timeout=600,
    )
    assert p.returncode == 0, p.stderr
    m = re.search(r"max \|difference\| .*: ([0-9.e+-]+)", p.stdout)
    assert "meta-gradient norm" in p.stdout and m, p.stdout
    assert float(m.group(1)) < 1e-9


def test_magic_box_example_runs():
    p = subprocess.run(
        [sys.executable, str(REPO / "python" / "examples" / "torch_magic_box.py"), "--quick"],
        capture_output=True, text=True, timeout=600,
    )
    assert p.returncode == 0, p.stderr
    rows = {}
    for line in p.stdout.splitlines():
        m = re.match(r"(.+?)\s{2,}(\S+)\s+(on-policy|off-policy)\s+(\S+)\s+(\S+)$", line)
        if m:
            rows[(m.group(1).strip(), m.group(2), m.group(3))] = (float(m.group(4)), float(m.group(5)))
    same = [("DiCE", "is"), ("DiCE + baseline", "dr"), ("DiCE + baseline", "taypo-2"), ("LVC (ProMP)", "taypo-1")]
    for sur, name in same:
        assert max(rows[(sur, name, "on-policy")]) < 1e-12, (sur, name, rows)
    for sur, name in [("LVC (ProMP)", "taypo-2"), ("MAML score", "dr")]:
        grad_diff, hvp_diff = rows[(sur, name, "on-policy")]
        assert grad_diff < 1e-12 and hvp_diff > 0.1, (sur, name, rows)
    assert min(rows[("DiCE", "is", "off-policy")]) > 0.01, rows


def test_docs_example_runs():
    """The 15-line example of docs/guides/pytorch.md runs and gives the meta-gradient of the
    parameters' shapes."""
    text = (REPO / "docs" / "guides" / "pytorch.md").read_text()
    code = re.search(r"```python\n(.*?)```", text, re.S).group(1)
    dtype = torch.get_default_dtype()
    scope: dict = {}
    try:
        exec(compile(code, "docs/guides/pytorch.md", "exec"), scope)
    finally:
        torch.set_default_dtype(dtype)
    assert [g.shape for g in scope["meta_grad"]] == [p.shape for p in scope["params"].values()]
    assert all(torch.isfinite(g).all() for g in scope["meta_grad"])
