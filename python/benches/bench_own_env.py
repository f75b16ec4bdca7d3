"""Sampling a Python meta-task: environment steps per second of metagrad's sampler (its Rust
policy, the environment stepped in Python) against the same environment stepped in a bare
Python loop with random actions, and against learn2learn-style sampling (Gymnasium's
``AsyncVectorEnv`` with a PyTorch policy forward per step), one run, on

* Meta-World ML1 ``reach-v3`` (``metagrad.envs.metaworld``), and
* Gymnasium's ``HalfCheetah-v5`` wrapped as a direction meta-task (reward d·v_x − 0.1‖a‖²,
  d = ±1, Gymnasium's own control cost).

metagrad's figure is one sampling iteration of a run (``MetaRlTaskSampler.sample``: the
pre-update round, one inner step, the post-update round; the inner step and the advantage
processing are included, a few per cent of the time) divided into its environment steps.
Worker processes W = 0 steps the copies in this process; W ≥ 1 spreads them over W
processes. Run in the Meta-World environment (scripts/metaworld-env.sh); the PyTorch rows
need ``torch`` in it (skipped otherwise):

    .deps/venv-metaworld/bin/python python/benches/bench_own_env.py [--quick]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time

import gymnasium
import numpy as np

from metagrad import _convert, _metagrad, meta_rl
from metagrad.envs import metaworld as mw


class CheetahDirection(gymnasium.Wrapper):
    """HalfCheetah-v5 with a random direction d = ±1 per task: reward d·v_x + control cost."""

    def __init__(self):
        super().__init__(gymnasium.make("HalfCheetah-v5").unwrapped)
        self.direction = 1.0

    def sample_tasks(self, num_tasks):
        return [float(d) for d in self.np_random.choice([-1.0, 1.0], size=num_tasks)]

    def set_task(self, task):
        self.direction = float(task)

    def step(self, action):
        obs, _, term, trunc, info = self.env.step(action)
        return obs, self.direction * info["x_velocity"] + info["reward_ctrl"], term, trunc, info


def bare_loop(factory, steps: int, horizon: int) -> float:
    """Steps/s of one environment stepped with ``action_space.sample()``."""
    env = factory()
    env.set_task(env.sample_tasks(1)[0])
    env.reset(seed=0)
    t, n = 0, 0
    t0 = time.perf_counter()
    for _ in range(steps):
        _, _, term, trunc, _ = env.step(env.action_space.sample())
        t += 1
        if term or trunc or t >= horizon:
            env.reset()
            t = 0
        n += 1
    return n / (time.perf_counter() - t0)


def metagrad_sampler(factory, workers: int, tasks: int, rollouts: int, horizon: int, copies=None) -> float:
    """Steps/s of one sampling iteration (two rounds) of metagrad's sampler."""
    settings = dict(tasks=tasks, rollouts=rollouts, horizon=horizon, inner_steps=1, iterations=1)
    spec, _ = meta_rl._envs(factory, None, None, workers, copies, settings)
    text = _convert.settings_json("bench", settings)
    s = _metagrad.MetaRlTaskSampler(text, "promp", 1, 1, spec)
    theta = s.initial_theta()
    s.sample(theta, 0, 0, tasks)  # warm-up: workers started, every copy built
    t0 = time.perf_counter()
    s.sample(theta, 1, 0, tasks)
    dt = time.perf_counter() - t0
    del s
    return 2 * tasks * rollouts * horizon / dt


def learn2learn_style(factory, num_envs: int, steps: int, horizon: int) -> float:
    """Steps/s of ``AsyncVectorEnv`` (one process per copy) with a 64-64 tanh PyTorch policy
    forward per step (Gaussian actions), as learn2learn's samplers run."""
    import torch

    torch.set_num_threads(1)

    def make():
        env = factory()
        env.set_task(env.sample_tasks(1)[0])
        return gymnasium.wrappers.TimeLimit(env, horizon)

    venv = gymnasium.vector.AsyncVectorEnv([make for _ in range(num_envs)])
    od, ad = venv.single_observation_space.shape[0], venv.single_action_space.shape[0]
    net = torch.nn.Sequential(torch.nn.Linear(od, 64), torch.nn.Tanh(), torch.nn.Linear(64, 64), torch.nn.Tanh(),
                              torch.nn.Linear(64, ad))
    obs, _ = venv.reset(seed=0)
    low, high = venv.single_action_space.low, venv.single_action_space.high
    n = 0
    t0 = time.perf_counter()
    with torch.no_grad():
        for _ in range(steps // num_envs):
            mean = net(torch.as_tensor(obs, dtype=torch.float32))
            a = (mean + torch.randn_like(mean)).numpy()
            obs, _, _, _, _ = venv.step(np.clip(a, low, high))
            n += num_envs
    rate = n / (time.perf_counter() - t0)
    venv.close()
    return rate


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="small batches (a smoke run, not a measurement)")
    p.add_argument("--out", default=None, help="write the table as JSON here")
    p.add_argument("--rounds", type=int, default=3, help="rounds of every case in turn (median reported)")
    args = p.parse_args()
    envs = {
        "metaworld-ml1-reach-v3": (mw.ml1("reach-v3"), 500),
        "halfcheetah-v5-direction": (CheetahDirection, 200),
    }
    tasks, rollouts = (2, 2) if args.quick else (8, 10)
    rows = []
    try:
        import torch  # noqa: F401

        have_torch = True
    except ImportError:
        have_torch = False
    steps = 2000 if args.quick else 20000
    for name, (factory, horizon) in envs.items():
        cases = [("bare Python loop, random actions (1 process)", lambda: bare_loop(factory, steps, horizon))]
        for w in (0, 1, 2):
            label = "metagrad sampler, this process" if w == 0 else f"metagrad sampler, {w} worker process{'es' if w > 1 else ''}"
            cases.append((label, lambda w=w: metagrad_sampler(factory, w, tasks, rollouts, horizon)))
        if have_torch:
            for n in (2, 8):
                cases.append((f"AsyncVectorEnv ({n} processes) + PyTorch forward",
                              lambda n=n: learn2learn_style(factory, n, steps, horizon)))
        # Rounds of every case in turn (so that a change of the machine's load meets all of
        # them); the median of the rounds.
        got = {label: [] for label, _ in cases}
        for _ in range(args.rounds):
            for label, f in cases:
                got[label].append(f())
        rows += [(name, label, float(np.median(v))) for label, v in got.items()]
    bare = {n: r for n, l, r in rows if l.startswith("bare")}
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}")
    print("| environment | sampler | env steps/s | × bare loop |")
    print("|---|---|---:|---:|")
    for n, l, r in rows:
        print(f"| {n} | {l} | {r:,.0f} | {r / bare[n]:.2f} |")
    if args.out:
        with open(args.out, "w") as f:
            json.dump([dict(env=n, sampler=l, steps_per_s=r) for n, l, r in rows], f, indent=1)


if __name__ == "__main__":
    main()
