"""MAML-style meta-gradient in JAX with a TayPO-2 inner objective through metagrad.jax.
Run: .deps/venv/bin/python python/examples/jax_taypo2_maml.py"""
import jax
import jax.numpy as jnp
import numpy as np
import metagrad.jax as mjax

jax.config.update("jax_enable_x64", True)
TASKS, N, T, A, OBS, ETA = 4, 20, 10, 4, 6, 0.1
rng = np.random.default_rng(0)
tmap, leaves = jax.tree_util.tree_map, jax.tree_util.tree_leaves

def batch():  # per task: N paths of T steps from a uniform behaviour policy μ
    return dict(obs=rng.normal(size=(TASKS, N, T, OBS)), actions=rng.integers(0, A, (TASKS, N, T)),
                log_mu=np.full((TASKS, N, T), -np.log(A)), rewards=rng.normal(size=(TASKS, N, T)),
                values=np.zeros((TASKS, N, T + 1)))

def log_pi(theta, b):  # any JAX policy; here an MLP. u[n, t] = log π_θ(a_t|x_t)
    logp = jax.nn.log_softmax(jnp.tanh(b["obs"] @ theta["w1"]) @ theta["w2"])
    return jnp.take_along_axis(logp, b["actions"][..., None], -1)[..., 0]

taypo2, dr = mjax.estimator("taypo-2", gamma=0.99), mjax.estimator("dr", gamma=0.99)
inner = lambda th, b: taypo2(log_pi(th, b), b["log_mu"], b["rewards"], state_values=b["values"])  # noqa: E731
outer = lambda th, b: dr(log_pi(th, b), b["log_mu"], b["rewards"], state_values=b["values"])  # noqa: E731
adapt = lambda th, b: tmap(lambda p, g: p + ETA * g, th, jax.grad(inner)(th, b))  # θ' = θ + η∇V̂_in  # noqa: E731
meta_objective = lambda th, pre, post: outer(adapt(th, pre), post)  # noqa: E731

theta = {"w1": 0.3 * rng.normal(size=(OBS, 16)), "w2": 0.3 * rng.normal(size=(16, A))}
pre, post = batch(), batch()
per_task = jax.jit(jax.vmap(jax.grad(meta_objective), in_axes=(None, 0, 0)))(theta, pre, post)
meta_grad = tmap(lambda g: g.mean(0), per_task)  # reverse-over-reverse, vmapped over tasks
# Task 0 by the paper's Alg. 1: (I + η Ĥ_in) ĝ' with Ĥ_in·ĝ' a forward-over-reverse HVP.
pre0, post0 = tmap(lambda x: x[0], pre), tmap(lambda x: x[0], post)
g_out = jax.grad(outer)(adapt(theta, pre0), post0)
hv = jax.jvp(lambda th: jax.grad(inner)(th, pre0), (theta,), (g_out,))[1]
alg1 = tmap(lambda g, h: g + ETA * h, g_out, hv)
diff = max(float(jnp.max(jnp.abs(a[0] - b))) for a, b in zip(leaves(per_task), leaves(alg1)))
print(f"meta-gradient norm {float(jnp.sqrt(sum(jnp.sum(g**2) for g in leaves(meta_grad)))):.6f}")
print(f"max |difference| task 0 vs (I + eta H) g': {diff:.2e}")
