"""Env steps per second of a batch of HalfCheetah copies: metagrad's Rust vector env
(`metagrad.envs`, threads, GIL released) against Gymnasium's own `HalfCheetah-v5` in a
`SyncVectorEnv` and an `AsyncVectorEnv` (shared memory). A benchmark, not a test: one run,
printed as a Markdown table with ratios.

    .deps/venv/bin/python python/benches/bench_envs.py            # 800 copies, 2 threads

Every variant steps uniformly random actions (drawn before timing) from a seeded reset;
only the `step` calls are timed. The task is `half-cheetah-rand-direc`, direction +1, i.e.
HalfCheetah-v5's physics (MuJoCo 3.17.0, frame skip 5) with ProMP's reward; both sides use
a 1000-step time limit. Gymnasium's AsyncVectorEnv runs one process per copy, so it runs
fewer copies (`--async-copies`): 800 Python processes with MuJoCo do not fit the machine.
"""

from __future__ import annotations

import argparse
import os
import platform
import time

import gymnasium
import numpy as np
from gymnasium.vector import AsyncVectorEnv, SyncVectorEnv

from metagrad import envs


def steps_per_s(env, num_envs: int, steps: int, seed: int = 0) -> float:
    rng = np.random.default_rng(seed)
    low, high = env.single_action_space.low, env.single_action_space.high
    actions = [rng.uniform(low, high, (num_envs, low.size)).astype(np.float32) for _ in range(steps)]
    env.reset(seed=seed)
    env.step(actions[0])  # warm-up (page faults, worker start)
    t0 = time.perf_counter()
    for a in actions[1:]:
        env.step(a)
    return num_envs * (steps - 1) / (time.perf_counter() - t0)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--copies", type=int, default=800, help="copies of metagrad and SyncVectorEnv")
    p.add_argument("--threads", type=int, default=2, help="metagrad's worker threads")
    p.add_argument("--steps", type=int, default=200, help="batched steps of metagrad")
    p.add_argument("--sync-steps", type=int, default=40, help="batched steps of SyncVectorEnv")
    p.add_argument("--async-copies", default="2,32", help="AsyncVectorEnv sizes (one process each)")
    p.add_argument("--async-steps", type=int, default=400, help="batched steps of AsyncVectorEnv")
    args = p.parse_args()

    rows = []
    for threads in (args.threads, 1):
        env = envs.make_vec("half-cheetah-rand-direc", args.copies, horizon=1000, num_threads=threads)
        rows.append((f"metagrad, {threads} thread{'s' * (threads > 1)}", args.copies, args.steps,
                     steps_per_s(env, args.copies, args.steps)))
        env.close()
    make = lambda: gymnasium.make("HalfCheetah-v5")  # noqa: E731
    env = SyncVectorEnv([make] * args.copies)
    rows.append(("Gymnasium SyncVectorEnv", args.copies, args.sync_steps, steps_per_s(env, args.copies, args.sync_steps)))
    env.close()
    for n in (int(x) for x in args.async_copies.split(",") if x):
        env = AsyncVectorEnv([make] * n, shared_memory=True)
        rows.append((f"Gymnasium AsyncVectorEnv, {n} processes", n, args.async_steps,
                     steps_per_s(env, n, args.async_steps)))
        env.close()

    ours = rows[0][3]
    print(f"HalfCheetah env steps/s, one run; {platform.processor() or platform.machine()}, "
          f"{os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f} at the end\n")
    print(f"| implementation | copies | steps timed | env steps/s | {rows[0][0]} ÷ row |")
    print("|---|---:|---:|---:|---:|")
    for name, n, steps, rate in rows:
        print(f"| {name} | {n} | {steps - 1} | {rate:,.0f} | {ours / rate:.2f} |")


if __name__ == "__main__":
    main()
