#!/usr/bin/env python3
"""JAX reference for `metagrad tabular --sweep eps` (paper Fig. 1 a-b; docs/theory.md#tabular-benchmark).

Same work as the Rust sweep, written the way one would in JAX: per trial a random MDP,
N trajectories from the uniform behaviour policy, a noisy state-value critic, the exact
V, grad V, Hessian V of the softmax policy (jax.grad / jax.hessian of the exact value),
and, per estimator, the gradient and Hessian of the MEAN estimate over the N trajectories
(jax.grad / jax.hessian of a vmapped estimator, under jax.jit). Reports the Pearson
correlation of the flattened exact and estimated derivatives, and the wall time of the
sweep with the XLA compile time reported separately.

The random draws are numpy's, not metagrad's: the numbers agree in distribution only.

Usage: .venv/bin/python tabular_eps_sweep.py [--trials 10] [--n 1000] [--seed 0]
"""

import argparse
import time

import jax

jax.config.update("jax_enable_x64", True)

import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

# --- settings (docs/theory.md#tabular-benchmark) ---------------------------------------
N_STATES, N_ACTIONS = 20, 5
GAMMA = 0.8
HORIZON = 20  # transitions from state 0
DIRICHLET_ALPHA = 0.001
EPS_GRID = (0.0, 0.2, 0.5, 0.8)
RHO_BAR = C_BAR = 1.0
ESTIMATORS = ("is", "dr", "dr-trunc", "taypo-1", "taypo-2")


# --- random problem --------------------------------------------------------------------
def dirichlet_rows(rng, alpha, shape, k):
    """Rows ~ Dirichlet(alpha * 1_k), computed in log space.

    With alpha = 0.001 the Gamma(alpha) draws underflow to 0 in floating point; use
    Gamma(alpha) = Gamma(alpha + 1) * U^(1/alpha), i.e. log g = log Gamma(alpha+1) + log(U)/alpha,
    and normalise with a softmax.
    """
    log_g = np.log(rng.gamma(alpha + 1.0, size=shape + (k,))) + np.log(
        rng.uniform(size=shape + (k,))
    ) / alpha
    log_g -= log_g.max(axis=-1, keepdims=True)
    g = np.exp(log_g)
    return g / g.sum(axis=-1, keepdims=True)


def value(pi, p, r, gamma):
    """Exact state values of policy pi (|X|x|A|) in the MDP (p: |X|x|A|x|X|, r: |X|x|A|)."""
    p_pi = jnp.einsum("sa,saj->sj", pi, p)
    r_pi = jnp.sum(pi * r, axis=1)
    return jnp.linalg.solve(jnp.eye(p.shape[0]) - gamma * p_pi, r_pi)


def exact_v0(theta, p, r):
    return value(jax.nn.softmax(theta, axis=1), p, r, GAMMA)[0]


def exact_derivatives(theta, p, r):
    return jax.grad(exact_v0)(theta, p, r), jax.hessian(exact_v0)(theta, p, r)


def sample_trajectories(rng, p, r, n):
    """n trajectories of HORIZON steps from state 0 under the uniform behaviour policy."""
    states = np.zeros((n, HORIZON + 1), dtype=np.int32)
    actions = rng.integers(N_ACTIONS, size=(n, HORIZON), dtype=np.int32)
    cum = np.cumsum(p, axis=2)
    cum[..., -1] = 1.0
    for t in range(HORIZON):
        x, a = states[:, t], actions[:, t]
        u = rng.uniform(size=n)
        nxt = (u[:, None] >= cum[x, a]).sum(axis=1)
        states[:, t + 1] = np.minimum(nxt, N_STATES - 1)
    rewards = r[states[:, :-1], actions]
    return states, actions, rewards


# --- estimators (docs/theory.md#estimators), one trajectory, functions of theta ---------------------------
# Closed (unrolled) forms of the recursions of docs/theory.md#estimators; algebraically identical:
#   DR:  v_t = V(x_t) + rho_t (r_t + g v_{t+1} - V(x_t)), v_T = V(x_T)
#        => v_0 = V(x_0) + sum_t g^t (prod_{s<=t} rho_s) delta_t, delta_t = r_t + g V(x_{t+1}) - V(x_t)
#   IS:  the same with V == 0.
#   truncated DR: v_0 = V(x_0) + sum_t g^t (prod_{s<t} c_s) rhobar_t delta_t,
#        rhobar_t = min(rho_t, RHO_BAR), c_s = min(rho_s, C_BAR); the derivative of min(rho, b)
#        is 1[rho <= b] d rho (the tie flows).
#   TayPO-2: V(x_0) + sum_t g^t d_t A_t + sum_{t1<t2} g^{t2} d_{t1} d_{t2} A_{t2},
#        d_t = rho_t - 1, A_t = G_t - V(x_t), G_t = r_t + g G_{t+1}, G_T = V(x_T).
DISC = GAMMA ** np.arange(HORIZON)


def ratios(theta, x, a, mu):
    pi = jax.nn.softmax(theta, axis=1)
    return pi[x[:-1], a] / mu[x[:-1], a]


def truncate(rho, bound):
    # where() routes the derivative of rho through at the tie rho == bound (docs/theory.md#truncated-dr); the
    # 1e-12 slack keeps on-policy ties (rho = 1 up to rounding) on the untruncated side.
    return jnp.where(rho <= bound * (1.0 + 1e-12), rho, bound)


def est_is(theta, x, a, r, mu, vhat):
    rho = ratios(theta, x, a, mu)
    return jnp.sum(DISC * jnp.cumprod(rho) * r)


def est_dr(theta, x, a, r, mu, vhat):
    rho = ratios(theta, x, a, mu)
    v = vhat[x]
    delta = r + GAMMA * v[1:] - v[:-1]
    return v[0] + jnp.sum(DISC * jnp.cumprod(rho) * delta)


def est_dr_trunc(theta, x, a, r, mu, vhat):
    rho = ratios(theta, x, a, mu)
    v = vhat[x]
    delta = r + GAMMA * v[1:] - v[:-1]
    c = truncate(rho, C_BAR)
    trace = jnp.concatenate([jnp.ones(1), jnp.cumprod(c)[:-1]])  # prod_{s<t} c_s
    return v[0] + jnp.sum(DISC * trace * truncate(rho, RHO_BAR) * delta)


def advantages(x, r, vhat):
    v = vhat[x]

    def step(g_next, r_t):
        g = r_t + GAMMA * g_next
        return g, g

    _, g = jax.lax.scan(step, v[-1], r, reverse=True)
    return g - v[:-1]


def est_taypo(order):
    def est(theta, x, a, r, mu, vhat):
        d = ratios(theta, x, a, mu) - 1.0
        w = DISC * d * advantages(x, r, vhat)  # g^t d_t A_t
        total = vhat[x[0]] + jnp.sum(w)
        if order >= 2:
            before = jnp.cumsum(d) - d  # sum_{s<t} d_s
            total = total + jnp.sum(w * before)
        return total

    return est


ESTIMATOR_FNS = {
    "is": est_is,
    "dr": est_dr,
    "dr-trunc": est_dr_trunc,
    "taypo-1": est_taypo(1),
    "taypo-2": est_taypo(2),
}


def mean_estimate(est):
    batched = jax.vmap(est, in_axes=(None, 0, 0, 0, None, None))

    def f(theta, xs, acts, rews, mu, vhat):
        return jnp.mean(batched(theta, xs, acts, rews, mu, vhat))

    return f


def derivatives(est):
    f = mean_estimate(est)

    def both(theta, xs, acts, rews, mu, vhat):
        return jax.grad(f)(theta, xs, acts, rews, mu, vhat), jax.hessian(f)(
            theta, xs, acts, rews, mu, vhat
        )

    return both


def pearson(u, v):
    u = np.ravel(u) - np.mean(u)
    v = np.ravel(v) - np.mean(v)
    den = np.sqrt(np.dot(u, u) * np.dot(v, v))
    return float(np.dot(u, v) / den) if den > 0 else float("nan")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--trials", type=int, default=10)
    ap.add_argument("--n", type=int, default=1000, help="trajectories per trial")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    t_start = time.perf_counter()

    # Compile once: shapes do not change across trials and eps values.
    f64, i32 = jnp.float64, jnp.int32
    s_theta = jax.ShapeDtypeStruct((N_STATES, N_ACTIONS), f64)
    s_p = jax.ShapeDtypeStruct((N_STATES, N_ACTIONS, N_STATES), f64)
    s_xs = jax.ShapeDtypeStruct((args.n, HORIZON + 1), i32)
    s_as = jax.ShapeDtypeStruct((args.n, HORIZON), i32)
    s_rs = jax.ShapeDtypeStruct((args.n, HORIZON), f64)
    s_vec = jax.ShapeDtypeStruct((N_STATES,), f64)
    t0 = time.perf_counter()
    exact_c = jax.jit(exact_derivatives).lower(s_theta, s_p, s_theta).compile()
    value_c = jax.jit(lambda pi, p, r: value(pi, p, r, GAMMA)).lower(s_theta, s_p, s_theta).compile()
    est_c = {
        name: jax.jit(derivatives(fn)).lower(s_theta, s_xs, s_as, s_rs, s_theta, s_vec).compile()
        for name, fn in ESTIMATOR_FNS.items()
    }
    compile_s = time.perf_counter() - t0

    rng = np.random.default_rng(args.seed)
    mu = np.full((N_STATES, N_ACTIONS), 1.0 / N_ACTIONS)
    corr = {(e, eps): ([], []) for e in ESTIMATORS for eps in EPS_GRID}
    t1 = time.perf_counter()
    for eps in EPS_GRID:
        for _ in range(args.trials):
            p = dirichlet_rows(rng, DIRICHLET_ALPHA, (N_STATES, N_ACTIONS), N_STATES)
            r = rng.uniform(size=(N_STATES, N_ACTIONS))
            pi_d = np.eye(N_ACTIONS)[rng.integers(N_ACTIONS, size=N_STATES)]
            theta = np.log(eps * pi_d + (1.0 - eps) * mu)
            v_mu = np.asarray(value_c(mu, p, r))
            vhat = v_mu + rng.standard_normal(N_STATES) * np.linalg.norm(v_mu) / N_STATES
            xs, acts, rews = sample_trajectories(rng, p, r, args.n)
            g_true, h_true = (np.asarray(z) for z in exact_c(theta, p, r))
            for name in ESTIMATORS:
                critic = np.zeros(N_STATES) if name == "is" else vhat
                g, h = est_c[name](theta, xs, acts, rews, mu, critic)
                g, h = np.asarray(g), np.asarray(h)
                corr[(name, eps)][0].append(pearson(g_true, g))
                corr[(name, eps)][1].append(pearson(h_true, h))
    sweep_s = time.perf_counter() - t1
    total_s = time.perf_counter() - t_start

    def cell(xs):
        xs = np.asarray(xs)
        se = xs.std(ddof=1) / np.sqrt(len(xs)) if len(xs) > 1 else float("nan")
        return f"{xs.mean():6.3f}±{se:5.3f}"

    print(
        f"JAX {jax.__version__} on {jax.devices()[0].platform}: |X|={N_STATES} |A|={N_ACTIONS} "
        f"gamma={GAMMA} T={HORIZON} N={args.n} trials={args.trials} seed={args.seed}"
    )
    print("Pearson correlation with the exact derivative, mean ± s.e. over trials")
    header = f"{'estimator':<10} {'eps':>4}  {'grad corr':>13}  {'hess corr':>13}"
    print(header)
    print("-" * len(header))
    for name in ESTIMATORS:
        for eps in EPS_GRID:
            gc, hc = corr[(name, eps)]
            print(f"{name:<10} {eps:>4.1f}  {cell(gc):>13}  {cell(hc):>13}")
    print(f"compile_seconds {compile_s:.3f}")
    print(f"sweep_seconds {sweep_s:.3f}  (excluding compile)")
    print(f"total_seconds {total_s:.3f}  (including compile)")


if __name__ == "__main__":
    main()
