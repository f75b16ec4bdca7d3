"""The magic-box idiom against metagrad.torch's exact estimators, on the point task.

Meta-RL code in PyTorch writes its objectives as surrogates that autograd differentiates
twice: DiCE's magic box □(x) = exp(x − stop_gradient(x)) (value 1, derivative □(x)∇x). Each
line below pairs such a surrogate with the metagrad estimator that replaces it, and reports
the relative difference ‖a − b‖/‖b‖ of their gradients and Hessian-vector products in θ (a 4→H→H→2 tanh Gaussian policy, float64):

* DiCE, Σ_t γ^t □(Σ_{s≤t} log π_s) r_t ↔ ``is``: the same to all orders on-policy;
* DiCE with a baseline, V(x_0) + Σ_t γ^t □(Σ_{s≤t} log π_s) δ_t ↔ ``dr``: the same; and
  ``taypo-2``, whose first and second derivatives are DR's on-policy: the same too;
* ProMP's LVC, Σ_t γ^t □(log π_t) Â_t ↔ ``taypo-1``: the same, and against ``taypo-2``
  the same gradient but another Hessian (LVC drops the cross terms t₁ < t₂);
* the MAML score, Σ_t γ^t log π_t Â_t ↔ ``dr``: the same gradient, another Hessian;
* DiCE off-policy (the data reused after θ moved, as ProMP's outer steps do) ↔ ``is`` with
  log μ = log π_old: the magic box still evaluates to 1, so the importance weights are lost
  and already the gradients differ.

Run: .deps/venv/bin/python python/examples/torch_magic_box.py [--quick]
"""

import argparse

import torch
from torch import nn
from torch.func import functional_call

import metagrad.envs
import metagrad.torch as mtorch

args = argparse.ArgumentParser(description=__doc__.splitlines()[0])
args.add_argument("--quick", action="store_true", help="a small problem (the test suite's)")
args = args.parse_args()
ROLLOUTS, H, HIDDEN = (10, 20, 16) if args.quick else (20, 100, 64)
GAMMA = 0.99
torch.manual_seed(0)
torch.set_default_dtype(torch.float64)

mean = nn.Sequential(nn.Linear(4, HIDDEN), nn.Tanh(), nn.Linear(HIDDEN, HIDDEN), nn.Tanh(), nn.Linear(HIDDEN, 2))
theta0 = torch.cat([p.detach().reshape(-1) for p in mean.parameters()] + [torch.zeros(2)])  # + log-std
shapes = [p.shape for p in mean.parameters()]


def log_pi(theta, obs, act):
    params, i = {}, 0
    for (name, _), s in zip(mean.named_parameters(), shapes):
        params[name], i = theta[i : i + s.numel()].reshape(s), i + s.numel()
    dist = torch.distributions.Normal(functional_call(mean, params, (obs,)), theta[i:].exp())
    return dist.log_prob(act).sum(-1)


# On-policy data from π_θ0 on one task; a state critic V from a linear fit to the returns.
env = metagrad.envs.make("point-corners", num_envs=ROLLOUTS, horizon=H)
env.set_task(env.sample_tasks(1, seed=3)[0])
o = [torch.as_tensor(env.reset(seed=7)[0])]
a, r = [], []
with torch.no_grad():
    for _ in range(H):
        act = torch.distributions.Normal(mean(o[-1]), theta0[-2:].exp()).sample()
        obs, rew, *_ = env.step((act.clamp(-10, 10) * 0.01).numpy())
        o.append(torch.as_tensor(obs)), a.append(act), r.append(torch.as_tensor(rew))
obs, act, rew = torch.stack(o[:-1], 1), torch.stack(a, 1), torch.stack(r, 1)
final = torch.stack(o, 1)
ret = torch.zeros(ROLLOUTS, H + 1)
for t in reversed(range(H)):
    ret[:, t] = rew[:, t] + GAMMA * ret[:, t + 1]
feats = torch.cat([final.clamp(-10, 10), torch.ones(ROLLOUTS, H + 1, 1)], -1)
w = torch.linalg.lstsq(feats[:, :H].reshape(-1, 5), ret[:, :H].reshape(-1, 1)).solution
values = (feats @ w)[..., 0]
values[:, H] = 0.0
log_mu = log_pi(theta0, obs, act).detach()
disc = GAMMA ** torch.arange(H, dtype=torch.float64)
delta = rew + GAMMA * values[:, 1:] - values[:, :-1]  # TD errors
adv = ret[:, :H] - values[:, :H]  # Â_t = G_t − V(x_t)


def magic_box(x):
    return torch.exp(x - x.detach())


surrogates = {  # the magic-box idiom, as written in PyTorch meta-RL code
    "DiCE": lambda u: (disc * magic_box(u.cumsum(1)) * rew).sum(1).mean(),
    "DiCE + baseline": lambda u: (values[:, 0] + (disc * magic_box(u.cumsum(1)) * delta).sum(1)).mean(),
    "LVC (ProMP)": lambda u: (disc * magic_box(u) * adv).sum(1).mean(),
    "MAML score": lambda u: (disc * u * adv).sum(1).mean(),
}
exact = {name: mtorch.estimator(name, gamma=GAMMA) for name in ("is", "dr", "taypo-1", "taypo-2")}


def derivatives(f, theta, v):
    th = theta.clone().requires_grad_()
    val = f(log_pi(th, obs, act))
    g = torch.autograd.grad(val, th, create_graph=True)[0]
    return val.detach(), g.detach(), torch.autograd.grad((g * v).sum(), th)[0]


def rel(a, b):
    return float(torch.linalg.norm(a - b) / torch.linalg.norm(b))


v = torch.randn(theta0.numel())
theta1 = theta0 + 0.05 * torch.randn(theta0.numel())  # θ moved: the data are now off-policy
pairs = [
    ("DiCE", "is", theta0),
    ("DiCE + baseline", "dr", theta0),
    ("DiCE + baseline", "taypo-2", theta0),
    ("LVC (ProMP)", "taypo-1", theta0),
    ("LVC (ProMP)", "taypo-2", theta0),
    ("MAML score", "dr", theta0),
    ("DiCE", "is", theta1),
]
print(f"{ROLLOUTS} rollouts × {H} steps, {HIDDEN}-{HIDDEN} tanh policy, θ: {theta0.numel()} parameters")
print(f"{'surrogate':16s} {'metagrad':9s} {'data':11s} {'gradient':>9s} {'HVP':>9s}")
for sur, name, theta in pairs:
    s = derivatives(surrogates[sur], theta, v)
    e = derivatives(lambda u: exact[name](u, log_mu, rew, state_values=values), theta, v)
    data = "on-policy" if theta is theta0 else "off-policy"
    print(f"{sur:16s} {name:9s} {data:11s} {rel(s[1], e[1]):9.1e} {rel(s[2], e[2]):9.1e}")
