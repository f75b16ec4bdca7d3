"""Speed of metagrad.torch: the exact meta-gradient of a 40-task × 20-rollout × 100-step
batch (the meta-RL setup of docs/theory.md#meta-rl-setup) with a 64-64 tanh Gaussian policy through one inner
step, against the same meta-gradient by PyTorch double backward on the surrogates written
natively with DiCE's magic box.

Pairs (the same derivatives to all orders on these on-policy data, checked below):
DiCE with a baseline (Loaded DiCE) ≙ ``dr``; ProMP's LVC ≙ ``taypo-1``; plus ``taypo-2``
(metagrad only: the magic-box idiom has no TayPO-2). The outer objective is DR on the
post-update data (the same implementation as the inner one). Two ways of writing the
meta-gradient, each timed for both implementations:

* loop: per task, ``torch.autograd.grad(inner, params, create_graph=True)``, the outer
  objective at the adapted parameters, one backward of the summed meta-objective
  (learn2learn's way);
* vmap: ``torch.func.vmap(torch.func.grad(meta_objective))`` over the tasks (metagrad.torch
  sends each stage's 40 tasks to the engine as one call).

Run: .deps/venv/bin/python python/benches/bench_torch.py [--threads 2] [--repeats 7]
Prints a table (median and best of the repeats, interleaved, after one warm-up; the ratio
of the medians, and the median and quartiles of the per-round ratios) and where
metagrad.torch's time goes; then each meta-gradient's time less that of the same loop with
an objective linear in the rows (the network floor, timed in the same rounds): the
estimators' own share. A benchmark, not a test: one run, on a shared machine.
"""

import argparse
import os
import platform
import statistics
import time

import numpy as np
import torch
from torch import nn
from torch.func import functional_call, grad, vmap

import metagrad
import metagrad._faces as mfaces
import metagrad.envs
import metagrad.torch as mtorch

p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
p.add_argument("--threads", type=int, default=2, help="torch.set_num_threads (default 2)")
p.add_argument("--repeats", type=int, default=7)
p.add_argument("--tasks", type=int, default=40)
p.add_argument("--rollouts", type=int, default=20)
p.add_argument("--horizon", type=int, default=100)
p.add_argument("--hidden", type=int, default=64)
p.add_argument("--dtype", choices=["float32", "float64"], default="float32")
p.add_argument("--stub-host", action="store_true",
               help="replace metagrad.torch's host side (conversions and engine) by stubs returning zeros: "
                    "what the autograd.Function machinery alone costs (the meta-gradients are then wrong)")
args = p.parse_args()
torch.set_num_threads(args.threads)
torch.manual_seed(0)
DTYPE = getattr(torch, args.dtype)
torch.set_default_dtype(DTYPE)
K, R, H, ETA, GAMMA = args.tasks, args.rollouts, args.horizon, 0.1, 0.99


class Policy(nn.Module):
    def __init__(self, hidden):
        super().__init__()
        self.mean = nn.Sequential(nn.Linear(4, hidden), nn.Tanh(), nn.Linear(hidden, hidden), nn.Tanh(), nn.Linear(hidden, 2))
        self.log_std = nn.Parameter(torch.zeros(2))

    def forward(self, obs, actions=None):
        dist = torch.distributions.Normal(self.mean(obs), self.log_std.exp())
        return dist if actions is None else dist.log_prob(actions).sum(-1)


policy = Policy(args.hidden)
theta = {k: v.detach() for k, v in policy.named_parameters()}
log_pi = lambda params, obs, act: functional_call(policy, params, (obs, act))  # noqa: E731

# ---------------------------------------------------------------------------------------
# Data: K tasks of the point task, R rollouts of H steps each, all K·R copies in one env.

env = metagrad.envs.make("point-corners", num_envs=K * R, horizon=H)
env.set_task(np.repeat(env.sample_tasks(K, seed=1), R, axis=0))


def sample(params_per_task, seed):
    """Rollouts under per-task parameters (a dict of K-stacked tensors), as task batches."""
    obs = torch.as_tensor(env.reset(seed=seed)[0], dtype=DTYPE).reshape(K, R, 4)
    o, a, r = [obs], [], []
    with torch.no_grad():
        for _ in range(H):
            act = vmap(lambda p, x: functional_call(policy, p, (x,)).sample(), randomness="different")(params_per_task, o[-1])
            ob, rew, *_ = env.step((act.clamp(-10, 10) * 0.01).reshape(K * R, 2).numpy())
            o.append(torch.as_tensor(ob, dtype=DTYPE).reshape(K, R, 4)), a.append(act)
            r.append(torch.as_tensor(rew, dtype=DTYPE).reshape(K, R))
    obs, act, rew = torch.stack(o, 2), torch.stack(a, 2), torch.stack(r, 2)  # K×R×(H+1)×4, …
    ret = torch.zeros(K, R, H + 1)
    for t in reversed(range(H)):
        ret[..., t] = rew[..., t] + GAMMA * ret[..., t + 1]
    steps = (torch.arange(H + 1) / 100.0).expand(K, R, H + 1)[..., None]
    x = obs.clamp(-10, 10)
    feats = torch.cat([x, x**2, steps, steps**2, steps**3, torch.ones_like(steps)], -1)
    f, y = feats[:, :, :H].reshape(K, R * H, -1), ret[:, :, :H].reshape(K, R * H, 1)
    w = torch.linalg.solve(f.mT @ f + 1e-5 * torch.eye(f.shape[-1]), f.mT @ y)  # per-task baseline
    values = (feats @ w[:, None])[..., 0]
    values[..., H] = 0.0
    with torch.no_grad():
        log_mu = vmap(log_pi)(params_per_task, obs[:, :, :H], act)
    adv = ret[..., :H] - values[..., :H]  # Â_t = G_t − V(x_t), data for the native LVC surrogate
    return dict(obs=obs[:, :, :H].contiguous(), actions=act, rewards=rew, log_mu=log_mu, values=values, adv=adv)


def stacked(params):
    return {k: v.expand(K, *v.shape) for k, v in params.items()}


t0 = time.perf_counter()
pre = sample(stacked(theta), seed=0)
adapted = vmap(lambda d: {k: theta[k] + ETA * g for k, g in grad(lambda p: mtorch.estimator("dr", gamma=GAMMA)(
    log_pi(p, d["obs"], d["actions"]), d["log_mu"], d["rewards"], state_values=d["values"]))(theta).items()})(pre)
post = sample(adapted, seed=10_000)  # sampled under θ'(θ): on-policy at the evaluation point
sampling_s = time.perf_counter() - t0
task = lambda d, i: {k: v[i] for k, v in d.items()}  # noqa: E731
if args.stub_host:  # after sampling, which adapts with the real engine
    mtorch._host_value_grad = lambda static, x, c, *data: (  # noqa: E731
        torch.zeros(x.shape[:-2], dtype=x.dtype), torch.zeros_like(x), torch.zeros_like(c))
    mtorch._host_hvp = lambda static, x, c, wx, wc, *data: (torch.zeros_like(wx), torch.zeros_like(wc))  # noqa: E731


# ---------------------------------------------------------------------------------------
# Objectives: metagrad.torch, and the magic-box surrogates written natively.


def magic_box(x):
    return torch.exp(x - x.detach())


def native(name):
    def f(u, d):
        disc = GAMMA ** torch.arange(H, dtype=u.dtype)
        v, r = d["values"], d["rewards"]
        if name == "dr":  # DiCE with a baseline: V(x_0) + Σ_t γ^t □(Σ_{s≤t} log π_s) δ_t
            delta = r + GAMMA * v[..., 1:] - v[..., :-1]
            return (v[..., 0] + (disc * magic_box(u.cumsum(-1)) * delta).sum(-1)).mean()
        return (disc * magic_box(u) * d["adv"]).sum(-1).mean()  # LVC: Σ_t γ^t □(log π_t) Â_t

    return f


def linear(u, d):
    """The network floor: an objective linear in the rows, Σ_t u_t Â_t (the cheapest surrogate
    autograd can differentiate twice; not the same meta-gradient, only the network's work)."""
    return (u * d["adv"]).sum(-1).mean()


def exact(name):
    est = mtorch.estimator(name, gamma=GAMMA)
    return lambda u, d: est(u, d["log_mu"], d["rewards"], state_values=d["values"])


def objective(f):
    return lambda params, d: f(log_pi(params, d["obs"], d["actions"]), d)


def meta_loop(inner, outer):
    def run():
        params = {k: v.clone().requires_grad_() for k, v in theta.items()}
        total = 0.0
        for i in range(K):
            d_in, d_out = task(pre, i), task(post, i)
            g = torch.autograd.grad(inner(params, d_in), list(params.values()), create_graph=True)
            total = total + outer({k: p + ETA * gi for (k, p), gi in zip(params.items(), g)}, d_out)
        return torch.autograd.grad(total / K, list(params.values()))

    return run


def meta_vmap(inner, outer):
    def one(params, d_in, d_out):
        g = grad(inner)(params, d_in)
        return outer({k: params[k] + ETA * g[k] for k in params}, d_out)

    mg = vmap(grad(one), in_dims=(None, 0, 0))
    return lambda: [v.mean(0) for v in mg(theta, pre, post).values()]


# Where metagrad.torch's time goes: the engine (every call goes through _faces.call) and the
# host side around it (tensors → numpy → engine → tensors). Measured in a separate pass
# with the functions wrapped, so the wrappers do not slow the timed runs.
clock = {"engine": 0.0, "host": 0.0, "calls": 0}


def wrapped(module, name, key):
    real = getattr(module, name)

    def wrapper(*a, **kw):
        t = time.perf_counter()
        try:
            return real(*a, **kw)
        finally:
            clock[key] += time.perf_counter() - t
            clock["calls"] += key == "engine"

    return module, name, real, wrapper


WRAPPED = [wrapped(mfaces, "call", "engine"), wrapped(mtorch, "_host_value_grad", "host"),
           wrapped(mtorch, "_host_hvp", "host")]


def breakdown(run):
    """Median engine and host time of one kind of run, and its engine calls."""
    engine, host = [], []
    for module, name, _, wrapper in WRAPPED:
        setattr(module, name, wrapper)
    try:
        for _ in range(3):
            clock.update(engine=0.0, host=0.0, calls=0)
            run()
            engine.append(clock["engine"]), host.append(clock["host"])
    finally:
        for module, name, real, _ in WRAPPED:
            setattr(module, name, real)
    return med(engine), med(host), clock["calls"]


def measure(runs):
    """Times the runs interleaved (ABAB…, so that load from other processes on the shared
    machine hits all of them alike), after one warm-up each."""
    results = [dict(times=[], out=run()) for run in runs]
    for _ in range(args.repeats):
        for run, res in zip(runs, results):
            t = time.perf_counter()
            res["out"] = run()
            res["times"].append(time.perf_counter() - t)
    return results


med = statistics.median


def flat(grads):
    return torch.cat([g.reshape(-1) for g in grads])


rows = []
outer_exact, outer_native = objective(exact("dr")), objective(native("dr"))
for label, inner in [("DR ≙ DiCE + baseline", "dr"), ("TayPO-1 ≙ LVC (ProMP)", "taypo-1"), ("TayPO-2", "taypo-2")]:
    for style, make in [("loop", meta_loop), ("vmap", meta_vmap)]:
        runs = [make(objective(exact(inner)), outer_exact)]
        if inner != "taypo-2":
            runs.append(make(objective(native(inner)), outer_native))
        runs.append(make(objective(linear), objective(linear)))
        *res, floor = measure(runs)
        m = res[0]
        engine, host, calls = breakdown(runs[0])
        row = dict(label=label, style=style, t=med(m["times"]), best=min(m["times"]), engine=engine, host=host,
                   calls=calls, floor=med(floor["times"]))
        if len(res) > 1:
            n = res[1]
            diff = float((flat(m["out"]) - flat(n["out"])).abs().max() / flat(n["out"]).abs().max())
            # Per round: native and metagrad ran back to back, so their ratio is less exposed to
            # the machine's slow drifts than the ratio of the medians.
            per_round = sorted(tn / tm for tn, tm in zip(n["times"], m["times"]))
            row.update(t_n=med(n["times"]), best_n=min(n["times"]), diff=diff, rounds=per_round)
        rows.append(row)

print(f"metagrad {metagrad.__version__}, torch {torch.__version__}, Python {platform.python_version()}, "
      f"{platform.machine()}, {os.cpu_count()} cores, {torch.get_num_threads()} torch threads, {args.dtype}")
print(f"{K} tasks × {R} rollouts × {H} steps, {args.hidden}-{args.hidden} tanh Gaussian policy, one inner step "
      f"(η = {ETA}), outer DR; median (best) of {args.repeats} interleaved runs after a warm-up; "
      f"sampling took {sampling_s:.1f} s" + ("; HOST SIDE STUBBED (timing only, wrong meta-gradients)" if args.stub_host else ""))
print()
print("| inner objective | meta-gradient | metagrad.torch | engine (calls) | host side incl. engine "
      "| native double backward | native / metagrad: medians (per round: median; quartiles) | max rel. difference |")
print("|---|---|---|---|---|---|---|---|")
for r in rows:
    nat = f"{r['t_n']:.3f} s ({r['best_n']:.3f})" if "t_n" in r else "—"
    ratio = f"{r['t_n'] / r['t']:.2f}×" if "t_n" in r else "—"
    if "rounds" in r:
        q = r["rounds"]
        ratio += f" ({med(q):.2f}×; {q[len(q) // 4]:.2f}–{q[(3 * len(q)) // 4]:.2f})"
    d = f"{r['diff']:.1e}" if "diff" in r else "—"
    print(f"| {r['label']} | {r['style']} | {r['t']:.3f} s ({r['best']:.3f}) | {r['engine'] * 1e3:.1f} ms ({r['calls']}) "
          f"| {r['host'] * 1e3:.1f} ms | {nat} | {ratio} | {d} |")

# The estimators' share: each meta-gradient's median minus that of the same loop with the
# linear objective (the network's passes alone), timed in the same rounds.
print()
print("| inner objective | meta-gradient | network floor (linear objective) | estimator part: metagrad.torch | estimator part: native |")
print("|---|---|---|---|---|")
for r in rows:
    nat = f"{(r['t_n'] - r['floor']) * 1e3:.1f} ms" if "t_n" in r else "—"
    print(f"| {r['label']} | {r['style']} | {r['floor']:.3f} s | {(r['t'] - r['floor']) * 1e3:.1f} ms | {nat} |")
