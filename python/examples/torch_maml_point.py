"""A learn2learn-style MAML meta-update in plain PyTorch on the point task, with the TayPO-2
inner objective from metagrad.torch (ProMP-TayPO-2's inner step).

Per task: pre-update rollouts with π_θ, an inner step θ' = θ + η∇V̂_TayPO-2(θ) written as
learn2learn writes it (``torch.autograd.grad(..., create_graph=True)``), post-update rollouts
with π_θ', the outer objective V̂_DR(θ') on them; the meta-gradient ∇_θ V̂_DR(θ'(θ)) by
autograd through the inner step, then one Adam step on θ. The meta-gradient of every task
is checked against the paper's Alg. 1, (I + ηĤ_in) ĝ', built from the engine's own row
derivatives (``metagrad.rows``: ĝ, H·w in Rust) and the policy's Jacobian-vector products
(``torch.func``).

Run: .deps/venv/bin/python python/examples/torch_maml_point.py [--quick]
"""

import argparse

import numpy as np
import torch
from torch import nn
from torch.func import functional_call, grad, jvp, vjp

import metagrad.envs
import metagrad.rows as mrows
import metagrad.torch as mtorch

args = argparse.ArgumentParser(description=__doc__.splitlines()[0])
args.add_argument("--quick", action="store_true", help="a small problem (the test suite's)")
args = args.parse_args()
TASKS, ROLLOUTS, H, HIDDEN = (2, 5, 20, 16) if args.quick else (8, 20, 100, 64)
ETA, GAMMA, ACT_SCALE = 0.1, 0.99, 0.01  # actions in [−10, 10] ↦ the env's [−0.1, 0.1]
torch.manual_seed(0)
torch.set_default_dtype(torch.float64)


class Policy(nn.Module):
    """Gaussian MLP (tanh), state-independent log-std: ProMP's policy."""

    def __init__(self, obs_dim, act_dim, hidden):
        super().__init__()
        self.mean = nn.Sequential(
            nn.Linear(obs_dim, hidden), nn.Tanh(), nn.Linear(hidden, hidden), nn.Tanh(), nn.Linear(hidden, act_dim)
        )
        self.log_std = nn.Parameter(torch.zeros(act_dim))

    def forward(self, obs, actions=None):  # π(·|o), or log π(a|o) summed over action dimensions
        dist = torch.distributions.Normal(self.mean(obs), self.log_std.exp())
        return dist if actions is None else dist.log_prob(actions).sum(-1)


env = metagrad.envs.make("point-corners", num_envs=ROLLOUTS, horizon=H)
policy = Policy(4, 2, HIDDEN)
theta = {k: v.detach() for k, v in policy.named_parameters()}
log_pi = lambda params, obs, act: functional_call(policy, params, (obs, act))  # noqa: E731


def rollouts(params, task, seed):
    """ROLLOUTS paths of H steps under π_params: obs (R, H+1, 4), actions, rewards, log μ,
    and a linear feature baseline fitted to the discounted returns as the state critic."""
    env.set_task(task)
    obs, _ = env.reset(seed=seed)
    o, a, r = [torch.as_tensor(obs)], [], []
    with torch.no_grad():
        for _ in range(H):
            act = functional_call(policy, params, (o[-1],)).sample()
            obs, rew, *_ = env.step((act.clamp(-10, 10) * ACT_SCALE).numpy())
            o.append(torch.as_tensor(obs)), a.append(act), r.append(torch.as_tensor(rew))
    obs, act, rew = torch.stack(o, 1), torch.stack(a, 1), torch.stack(r, 1)
    ret = torch.zeros(ROLLOUTS, H + 1)
    for t in reversed(range(H)):
        ret[:, t] = rew[:, t] + GAMMA * ret[:, t + 1]
    steps = torch.arange(H + 1).expand(ROLLOUTS, H + 1)[..., None] / 100.0
    x = obs.clamp(-10, 10)
    feats = torch.cat([x, x**2, steps, steps**2, steps**3, torch.ones_like(steps)], -1)
    f, y = feats[:, :H].reshape(-1, feats.shape[-1]), ret[:, :H].reshape(-1)
    w = torch.linalg.solve(f.T @ f + 1e-5 * torch.eye(f.shape[1]), f.T @ y)
    values = feats @ w
    values[:, H] = 0.0  # truncated at the horizon: no bootstrap
    with torch.no_grad():
        log_mu = log_pi(params, obs[:, :-1], act)
    return dict(obs=obs[:, :-1], actions=act, rewards=rew, log_mu=log_mu, values=values)


taypo2, dr = mtorch.estimator("taypo-2", gamma=GAMMA), mtorch.estimator("dr", gamma=GAMMA)


def inner_objective(params, d):
    return taypo2(log_pi(params, d["obs"], d["actions"]), d["log_mu"], d["rewards"], state_values=d["values"])


def outer_objective(params, d):
    return dr(log_pi(params, d["obs"], d["actions"]), d["log_mu"], d["rewards"], state_values=d["values"])


def adapt(params, d):  # learn2learn's MAML step: one differentiable gradient step
    grads = torch.autograd.grad(inner_objective(params, d), list(params.values()), create_graph=True)
    return {k: p + ETA * g for (k, p), g in zip(params.items(), grads)}


# Meta-batch: tasks, pre-update data under θ, adapted θ', post-update data under θ'.
tasks = env.sample_tasks(TASKS, seed=1)
params = {k: v.clone().requires_grad_() for k, v in theta.items()}
data = []
for i, task in enumerate(tasks):
    pre = rollouts(theta, task, seed=100 + i)
    adapted = {k: v.detach() for k, v in adapt(params, pre).items()}
    data.append((pre, rollouts(adapted, task, seed=200 + i)))
per_task = []
for pre, post in data:
    v_out = outer_objective(adapt(params, pre), post)
    per_task.append(torch.autograd.grad(v_out, list(params.values())))

# The same meta-gradient by the paper's Alg. 1 from the engine's row derivatives.
names, shapes = list(theta), [v.shape for v in theta.values()]
flat0 = torch.cat([v.reshape(-1) for v in theta.values()])


def unflat(flat):
    out, i = {}, 0
    for k, s in zip(names, shapes):
        out[k] = flat[i : i + s.numel()].reshape(s)
        i += s.numel()
    return out


def engine(name, flat, d):
    """ĝ(θ) = Jᵀg and v ↦ Ĥ(θ)v = Jᵀ(H_rows·Jv) + ∇²⟨g, u(θ)⟩·v, with g and H_rows·w from
    metagrad.rows (numpy, the Rust engine) and J = ∂u/∂θ from torch.func."""
    u_of = lambda f: log_pi(unflat(f), d["obs"], d["actions"])  # noqa: E731
    rows = (name, u_of(flat).detach().numpy(), d["log_mu"].numpy(), d["rewards"].numpy())
    kw = dict(gamma=GAMMA, state_values=d["values"].numpy())
    g_rows = torch.as_tensor(mrows.derivatives(*rows, **kw).grad_u)
    pullback = vjp(u_of, flat)[1]

    def hvp(v):
        h_rows = torch.as_tensor(mrows.derivatives(*rows, **kw, direction=jvp(u_of, (flat,), (v,))[1].numpy()).hvp_u)
        return pullback(h_rows)[0] + jvp(grad(lambda f: (g_rows * u_of(f)).sum()), (flat,), (v,))[1]

    return pullback(g_rows)[0], hvp


diff = 0.0
for (pre, post), ours in zip(data, per_task):
    g_in, _ = engine("taypo-2", flat0, pre)
    g_out, _ = engine("dr", flat0 + ETA * g_in, post)
    alg1 = g_out + ETA * engine("taypo-2", flat0, pre)[1](g_out)
    diff = max(diff, float((torch.cat([g.reshape(-1) for g in ours]) - alg1).abs().max()))

# The meta-update: Adam on −mean_tasks V̂_out(θ'), gradients as computed above.
meta_grad = [torch.stack(gs).mean(0) for gs in zip(*per_task)]
optimizer = torch.optim.Adam(policy.parameters(), lr=1e-3)
for p, g in zip(policy.parameters(), meta_grad):
    p.grad = -g
optimizer.step()
norm = float(torch.sqrt(sum((g**2).sum() for g in meta_grad)))
print(f"{TASKS} tasks × {ROLLOUTS} rollouts × {H} steps, {HIDDEN}-{HIDDEN} tanh policy")
print(f"meta-gradient norm {norm:.6f}")
print(f"max |difference| autograd vs (I + eta H) g' over tasks: {diff:.2e}")
