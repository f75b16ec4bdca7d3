"""Sampling across Ray workers inside one run (`metagrad.ray.train`) against the local
sampler, on the same cores, and the inputs of a projection to more workers. A benchmark,
not a test: one run, printed as Markdown.

    .deps/venv/bin/python python/benches/bench_ray_sampling.py          # both envs, promp

For each environment (the paper's setup: 40 tasks × 20 rollouts × horizon 100, one inner
step), in one process and one run:

1. **local**: `meta_rl.train(threads=2)`, the seconds of each iteration (from the run's
   history); the first iteration is dropped as a warm-up;
2. **ray**: the same run (same seed, so the same work) with `sampling_workers=2` actors of
   one CPU on an in-process Ray instance with 2 CPUs (loopback only, its own temp folder),
   the driver's update on 2 threads; the progress is checked to be the local run's bit for
   bit. The actors run at the driver's priority (`worker_niceness=0`; Ray's default, 15,
   would let the other work of a shared machine take their CPU, which is not an overhead
   of the distribution). The runs go local, ray, ray, local (so that a drift of the shared machine's load
   weighs on both alike); overhead = mean ray / mean local seconds per iteration − 1;
3. **inputs of the projection**, all measured here: the outer update and the driver's
   side of the sampling, per iteration, from the library's own timing (`METAGRAD_PROFILE`:
   "sampling" is, with workers, waiting for the parts plus decoding and ordering them, so
   decode = that − the pool's wait, measured by the pool); the sampling side of one task
   on one thread (`MetaRlTaskSampler(threads=1)`, in this process), the bytes of one
   task's part, Ray's round trip of an empty actor call, and the seconds per byte of a
   part fetched from an actor (`ray.get` of a bytes result of the size of half an
   iteration's parts).

The projection for W workers of one core each (printed, and labelled as such):
T(W) = update + call + ⌈tasks / W⌉ · task + tasks · bytes per task · seconds per byte +
decode. A task is the unit of work, so beyond W = tasks (40) more workers do not help.
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import re
import secrets
import shutil
import statistics
import tempfile
import time

os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"  # loopback only (before importing ray)
os.environ["RAY_USAGE_STATS_ENABLED"] = "0"
os.environ["RAY_AUTH_MODE"] = "token"
os.environ.setdefault("RAY_AUTH_TOKEN", secrets.token_hex(16))

import pandas as pd  # noqa: E402
import ray  # noqa: E402

from metagrad import _convert, _metagrad, meta_rl  # noqa: E402
from metagrad import ray as mray  # noqa: E402


@ray.remote(num_cpus=0)
class _Blob:
    """Returns `n` bytes (the transfer measurement) or nothing (the call measurement)."""

    def make(self, n: int) -> bytes:
        return bytes(n)

    def ping(self) -> None:
        return None


def per_iteration(history: pd.DataFrame) -> list:
    wall = history["wall_s"].tolist()
    return [b - a for a, b in zip(wall, wall[1:])]  # iteration 0 dropped (warm-up)


def profiled(tmp: str, f):
    """Runs `f()` with the library's per-iteration timing on (`METAGRAD_PROFILE`, written to
    stderr by the Rust side, captured here at the file descriptor); returns f's result and
    the (sampling, update) seconds of every iteration but the first."""
    path = f"{tmp}/profile.txt"
    os.environ["METAGRAD_PROFILE"] = "1"
    saved = os.dup(2)
    with open(path, "w") as log:
        os.dup2(log.fileno(), 2)
        try:
            result = f()
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            del os.environ["METAGRAD_PROFILE"]
    pattern = re.compile(r"iteration (\d+): sampling \+ inner steps ([0-9.]+) s, outer update ([0-9.]+) s")
    with open(path) as log:
        times = [(float(m[2]), float(m[3])) for m in pattern.finditer(log.read())]
    return result, times[1:]


def bench_env(env: str, algo: str, iterations: int, seed: int, tmp: str) -> dict:
    settings = dict(env=env, iterations=iterations)
    text = _convert.settings_json("bench", settings)
    t_local, t_ray, runs, updates, sampling_local, sampling_ray, decode = [], [], [], [], [], [], []
    pool_times = []
    for i, where in enumerate(["local", "ray", "ray", "local"]):
        out = f"{tmp}/{env}-{where}{i}"
        if where == "local":
            h, prof = profiled(tmp, lambda: meta_rl.train(algo=algo, seed=seed, out=out, threads=2, verbose=False,
                                                          **settings))
            t_local += per_iteration(h)
            sampling_local += [s for s, _ in prof]
        else:
            pool = mray._start_pool(ray, text, algo, seed, 2, 1, 0, niceness=0)
            try:
                h, prof = profiled(tmp, lambda: meta_rl.train(algo=algo, seed=seed, out=out, threads=2,
                                                              verbose=False, sampler=pool, **settings))
            finally:
                pool.stop()
            t_ray += per_iteration(h)
            pool_times += pool.times[1:]
            decode += [s - w for (s, _), w in zip(prof, pool.times[1:])]
            sampling_ray += [s for s, _ in prof]
        updates += [u for _, u in prof]
        runs.append(h.drop(columns="wall_s"))
    for h in runs[1:]:
        pd.testing.assert_frame_equal(h, runs[0], check_exact=True)  # the same run bit for bit
    pool_s = statistics.mean(pool_times)
    update, decode = statistics.mean(updates), statistics.mean(decode)
    sampling_local, sampling_ray = statistics.mean(sampling_local), statistics.mean(sampling_ray)

    # Inputs of the projection.
    theta = [float(x) for x in meta_rl_theta(f"{tmp}/{env}-local0")]
    one = _metagrad.MetaRlTaskSampler(text, algo, seed, 1)
    tasks = one.tasks
    n_probe = 4
    t0 = time.perf_counter()
    part = one.sample(theta, iterations, 0, n_probe)
    task_s = (time.perf_counter() - t0) / n_probe
    bytes_per_task = len(part) / n_probe
    blob = _Blob.remote()
    ray.get(blob.ping.remote())
    calls = []
    for _ in range(50):
        t0 = time.perf_counter()
        ray.get(blob.ping.remote())
        calls.append(time.perf_counter() - t0)
    call_s = statistics.median(calls)
    size = int(bytes_per_task * tasks / 2)
    ray.get(blob.make.remote(size))
    xfer = []
    for _ in range(5):
        t0 = time.perf_counter()
        ray.get(blob.make.remote(size))
        xfer.append(time.perf_counter() - t0)
    s_per_byte = max(statistics.median(xfer) - call_s, 0.0) / size
    ray.kill(blob)
    projection = {
        w: update + call_s + math.ceil(tasks / w) * task_s + tasks * bytes_per_task * s_per_byte + decode
        for w in (8, 32, 128)
    }
    return dict(
        env=env, local=t_local, ray=t_ray, pool_s=pool_s, task_s=task_s, bytes_per_task=bytes_per_task,
        sampling_local=sampling_local, sampling_ray=sampling_ray, update=update, call_s=call_s,
        s_per_byte=s_per_byte, decode=decode, projection=projection, tasks=tasks,
    )


def meta_rl_theta(run_dir: str) -> list:
    import json

    with open(f"{run_dir}/checkpoint.json") as f:
        return json.load(f)["state"]["theta"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--envs", default="half-cheetah-rand-direc,ant-rand-goal")
    parser.add_argument("--iterations", default="6,3", help="iterations per env (the first is a warm-up)")
    parser.add_argument("--algo", default="promp")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    envs = args.envs.split(",")
    iters = [int(x) for x in args.iterations.split(",")]
    tmp = tempfile.mkdtemp(prefix="mgbench", dir="/tmp")
    ray_tmp = f"{tmp}/ray"
    os.mkdir(ray_tmp)
    os.environ["RAY_TMPDIR"] = tmp
    os.environ.pop("RAY_ADDRESS", None)
    ray.init(address="local", num_cpus=2, include_dashboard=False, _node_ip_address="127.0.0.1",
             _temp_dir=ray_tmp, log_to_driver=False)
    try:
        results = [bench_env(e, args.algo, n, args.seed, tmp) for e, n in zip(envs, iters)]
    finally:
        ray.shutdown()
        shutil.rmtree(tmp, ignore_errors=True)
    print(f"# metagrad.ray.train vs local sampling ({args.algo}, seed {args.seed}; "
          f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, one run)\n")
    print("| env | local s/it | ray s/it (2 workers × 1 CPU) | overhead | local sampling s/it (2 threads) | "
          "ray sampling s/it (pool + decode) | sampling overhead | pool's wait s/it | driver decode s/it | "
          "update s/it |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in results:
        over = statistics.mean(r["ray"]) / statistics.mean(r["local"]) - 1
        print(f"| {r['env']} | {statistics.mean(r['local']):.2f} | {statistics.mean(r['ray']):.2f} | "
              f"{100 * over:+.1f} % | {r['sampling_local']:.2f} | {r['sampling_ray']:.2f} | "
              f"{100 * (r['sampling_ray'] / r['sampling_local'] - 1):+.1f} % | {r['pool_s']:.2f} | "
              f"{r['decode']:.3f} | {r['update']:.2f} |")
    print("\nper-iteration seconds:", {r["env"]: dict(local=[round(x, 2) for x in r["local"]],
                                                     ray=[round(x, 2) for x in r["ray"]]) for r in results})
    print("\n| env | one task, 1 thread | bytes per task | Ray call round trip | transfer | "
          "projected s/it, 8 workers | 32 workers | 128 workers |")
    print("|---|---|---|---|---|---|---|---|")
    for r in results:
        p = r["projection"]
        print(f"| {r['env']} | {r['task_s']:.3f} s | {r['bytes_per_task'] / 1e6:.2f} MB | "
              f"{1e3 * r['call_s']:.2f} ms | {1e-9 / max(r['s_per_byte'], 1e-30):.2f} GB/s | "
              f"{p[8]:.2f} | {p[32]:.2f} | {p[128]:.2f} |")


if __name__ == "__main__":
    main()
