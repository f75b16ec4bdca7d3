"""metagrad.ray: meta-RL grids on Ray give the files of a local `meta-rl compare`, survive a
killed worker, a lost node, a killed sampling actor and a killed driver (also for grids
whose runs sample across actors), and report runs that fail by themselves.

Every Ray process binds 127.0.0.1 only: RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0 makes Ray take
the loopback address as the node's (it must be set before `ray` is imported, so it is set
here, for the whole test session), and every node is started with node_ip_address
127.0.0.1. Each test starts its own Ray instance or cluster in its own temporary folder
and stops it, also on failure; nothing else is touched (no `ray stop`). Token
authentication uses a random token in the environment (nothing is written to ~/.ray).
"""

import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"
os.environ["RAY_USAGE_STATS_ENABLED"] = "0"
os.environ["RAY_AUTH_MODE"] = "token"
os.environ.setdefault("RAY_AUTH_TOKEN", secrets.token_hex(16))

import pandas as pd  # noqa: E402
import pytest  # noqa: E402

ray = pytest.importorskip("ray")

from metagrad import meta_rl  # noqa: E402
from metagrad import ray as mray  # noqa: E402

TINY = dict(tasks=3, rollouts=2, horizon=12, hidden=[8, 8])
# Runs long enough (≈ 60 × 50 ms) to be killed mid-run.
SLOW = dict(tasks=6, rollouts=5, horizon=60, hidden=[16, 16])
SLOW_GRID = dict(algos=["promp"], seeds=[1, 2], iterations=60, at=[30], **SLOW)
WALL_CLOCK = {"wall_s", "wall_s_mean"}


@pytest.fixture
def ray_tmp(monkeypatch):
    """Ray's own temporary folder (short: Unix socket paths are limited to 107 bytes)."""
    tmp = tempfile.mkdtemp(prefix="mgray", dir="/tmp")
    monkeypatch.setenv("RAY_TMPDIR", tmp)  # Ray's default folder becomes <tmp>/ray
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    os.mkdir(f"{tmp}/ray")
    try:
        yield f"{tmp}/ray"
    finally:
        for _ in range(20):  # processes may still be closing their logs
            shutil.rmtree(tmp, ignore_errors=True)
            if not os.path.exists(tmp):
                break
            time.sleep(0.25)


@pytest.fixture
def local_ray(ray_tmp):
    """An in-process Ray instance with 2 CPUs on loopback."""
    ray.init(address="local", num_cpus=2, include_dashboard=False, _node_ip_address="127.0.0.1",
             _temp_dir=ray_tmp, log_to_driver=False)
    try:
        yield
    finally:
        ray.shutdown()


@pytest.fixture
def two_nodes(ray_tmp):
    """A two-node cluster on loopback (`ray.cluster_utils.Cluster`), one CPU per node, with
    fast node-failure detection; the test process is not connected to it."""
    from ray.cluster_utils import Cluster

    cluster = Cluster(
        initialize_head=True,
        head_node_args=dict(num_cpus=1, include_dashboard=False, node_ip_address="127.0.0.1", temp_dir=ray_tmp,
                            _system_config={"health_check_period_ms": 500, "health_check_failure_threshold": 4}),
    )
    try:
        cluster.add_node(num_cpus=1, node_ip_address="127.0.0.1")
        cluster.wait_for_nodes()
        yield cluster
    finally:
        ray.shutdown()
        cluster.shutdown()


@pytest.fixture(scope="module")
def slow_reference(tmp_path_factory):
    """SLOW_GRID run locally and uninterrupted by `meta_rl.compare`."""
    out = tmp_path_factory.mktemp("reference")
    meta_rl.compare(out=out, verbose=False, **SLOW_GRID)
    return out


def assert_same_csvs(ours: Path, reference: Path):
    """Every CSV of `reference` (summary and each run's progress) is in `ours`, equal bit for
    bit but for the wall-clock columns."""
    files = sorted(p.relative_to(reference) for p in reference.rglob("*.csv"))
    assert Path("summary.csv") in files and len(files) > 1
    for f in files:
        a = pd.read_csv(ours / f, float_precision="round_trip")
        b = pd.read_csv(reference / f, float_precision="round_trip")
        cols = [c for c in b.columns if c not in WALL_CLOCK]
        assert list(a.columns) == list(b.columns), f
        pd.testing.assert_frame_equal(a[cols], b[cols], check_exact=True, obj=str(f))


def histories(storage: Path) -> dict:
    """Every run's finished iterations, from its checkpoint, as written."""
    out = {}
    for ck in storage.glob("*/seed*/checkpoint.json"):
        try:
            out[ck.parent] = json.loads(ck.read_text())["state"]["history"]
        except (OSError, ValueError):
            pass
    return out


def wait_for(condition, what: str, timeout: float = 60):
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


def mid_run(storage: Path, total: int) -> bool:
    """Some run has finished ≥ 3 iterations and none has finished all of them... yet."""
    h = [len(x) for x in histories(storage).values()]
    return bool(h) and max(h) >= 3 and all(n < total for n in h)


def run_workers(raylet_pids) -> list:
    """Pids of the worker processes of these raylets that are running a grid run."""
    return worker_pids(raylet_pids, "ray::metagrad-run")


def worker_pids(raylet_pids, title: str) -> list:
    """Pids of the worker processes of these raylets whose title starts with `title`."""
    found = []
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            ppid = int((d / "stat").read_text().rsplit(")", 1)[1].split()[1])
            cmd = (d / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except (OSError, IndexError, ValueError):
            continue
        if ppid in raylet_pids and cmd.startswith(title):
            found.append(int(d.name))
    return found


def raylet_pid(node) -> int:
    return node.all_processes[ray._private.ray_constants.PROCESS_TYPE_RAYLET][0].process.pid


def assert_prefixes(before: dict, after: dict):
    """Iterations finished before a failure are kept as they were (wall-clock times
    included, so they were not recomputed)."""
    assert before
    for run, h in before.items():
        assert after[run][: len(h)] == h, run


def test_grid_equals_local_compare_and_resumes(cli, local_ray, tmp_path):
    grid = dict(algos=["promp", "trpo-fmaml"], seeds=[1, 2], iterations=2, at=[1], **TINY)
    result = mray.run_grid(storage=tmp_path / "ray", verbose=False, **grid)
    cli("meta-rl", "compare", "--algos", "promp,trpo-fmaml", "--seeds", "1,2", "--iterations", 2, "--at", 1,
        "--tasks", 3, "--rollouts", 2, "--horizon", 12, "--hidden", "8,8", "--out", tmp_path / "cli")
    assert result.failures == []
    assert_same_csvs(tmp_path / "ray", tmp_path / "cli")
    pd.testing.assert_frame_equal(result.summary, pd.read_csv(tmp_path / "ray" / "summary.csv"), check_dtype=False)
    for f in ["summary.md", "fig1d.png", "fig1d.svg", "promp/seed1/learning_curve.png"]:
        assert (tmp_path / "ray" / f).exists(), f
    assert not (tmp_path / "ray" / "failures.json").exists()
    # Again: every run is finished, so nothing runs (checkpoints untouched), same summary.
    stamps = {p: p.stat().st_mtime_ns for p in (tmp_path / "ray").rglob("checkpoint.json")}
    again = mray.run_grid(storage=tmp_path / "ray", verbose=False, **grid)
    assert stamps == {p: p.stat().st_mtime_ns for p in stamps}
    pd.testing.assert_frame_equal(again.summary.drop(columns="wall_s_mean"),
                                  result.summary.drop(columns="wall_s_mean"), check_exact=True)


def test_failed_runs_are_reported_not_retried(local_ray, tmp_path):
    storage = tmp_path / "grid"
    grid = dict(algos=["promp"], seeds=[1, 2], iterations=2, **TINY)
    with pytest.raises(ValueError, match="tasks"):  # bad settings: refused before anything runs
        mray.run_grid(storage=storage, verbose=False, **dict(grid, tasks=0))
    assert not storage.exists()
    # Seed 2's folder holds a run with other settings: that run fails by itself.
    meta_rl.train(algo="promp", seed=2, iterations=1, out=storage / "promp" / "seed2", verbose=False,
                  **dict(TINY, tasks=4))
    t0 = time.monotonic()
    result = mray.run_grid(storage=storage, verbose=False, max_retries=50, **grid)
    assert time.monotonic() - t0 < 30
    assert result.summary is None and not (storage / "summary.csv").exists()
    [f] = result.failures
    assert (f["algo"], f["seed"], f["kind"]) == ("promp", 2, "error")
    assert "ValueError" in f["error"] and "settings differ" in f["error"]
    assert json.loads((storage / "failures.json").read_text()) == result.failures
    assert len(pd.read_csv(storage / "promp" / "seed1" / "progress.csv")) == 2  # the other run finished
    # Fixed: the same call completes the grid and clears the report.
    shutil.rmtree(storage / "promp" / "seed2")
    result = mray.run_grid(storage=storage, verbose=False, **grid)
    assert result.failures == [] and len(result.summary) == 2
    assert not (storage / "failures.json").exists()


def test_killed_worker_and_lost_node_lose_nothing(two_nodes, slow_reference, tmp_path):
    storage = tmp_path / "grid"
    ray.init(address=two_nodes.address, log_to_driver=False)
    head, [other] = two_nodes.head_node, list(two_nodes.worker_nodes)
    result = []
    driver = threading.Thread(target=lambda: result.append(mray.run_grid(storage=storage, verbose=False, **SLOW_GRID)))
    driver.start()
    try:
        # SIGKILL the worker process running a run on the head node, mid-run.
        wait_for(lambda: mid_run(storage, 60) and run_workers({raylet_pid(head)}), "a run on the head node")
        [victim] = run_workers({raylet_pid(head)})
        os.kill(victim, signal.SIGKILL)
        before = histories(storage)
        # Then the other node dies with the other run (its retry, if any, included).
        wait_for(lambda: run_workers({raylet_pid(other)}), "a run on the other node")
        lost = histories(storage)
        two_nodes.remove_node(other, allow_graceful=False)
    finally:
        driver.join(timeout=180)
    assert not driver.is_alive(), "the grid did not finish within 180 s"
    [res] = result
    assert res.failures == []
    with pytest.raises(ProcessLookupError):
        os.kill(victim, 0)
    assert_same_csvs(storage, slow_reference)
    after = histories(storage)
    assert_prefixes(before, after)
    assert_prefixes(lost, after)


def test_killed_driver_then_the_same_command_continues(two_nodes, slow_reference, tmp_path):
    storage = tmp_path / "grid"
    cmd = [sys.executable, "-m", "metagrad.ray", "compare", "--address", two_nodes.address, "--algos", "promp",
           "--seeds", "1,2", "--iterations", "60", "--at", "30", "--out", str(storage), "--tasks", "6",
           "--rollouts", "5", "--horizon", "60", "--hidden", "16,16", "--quiet"]
    raylets = {raylet_pid(n) for n in two_nodes.list_all_nodes()}
    first = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        wait_for(lambda: mid_run(storage, 60), "the first iterations", timeout=90)
        first.send_signal(signal.SIGKILL)
        first.wait(timeout=30)
        # The driver's runs die with it (Ray ends a dead driver's job).
        wait_for(lambda: not run_workers(raylets), "the dead driver's runs to stop", timeout=60)
        before = histories(storage)
        assert any(len(h) < 60 for h in before.values())
    finally:
        if first.poll() is None:
            first.kill()
            first.wait()
    second = subprocess.run(cmd, capture_output=True, text=True, timeout=180)
    assert second.returncode == 0, second.stderr
    assert "| promp |" in second.stdout  # the summary table
    assert_same_csvs(storage, slow_reference)
    assert_prefixes(before, histories(storage))


def same_run(ours: Path, reference: Path):
    """Two run folders hold the same run bit for bit: progress (wall-clock aside), θ, the
    optimiser state and the environment steps."""
    a = pd.read_csv(ours / "progress.csv", float_precision="round_trip").drop(columns="wall_s")
    b = pd.read_csv(reference / "progress.csv", float_precision="round_trip").drop(columns="wall_s")
    pd.testing.assert_frame_equal(a, b, check_exact=True)
    sa, sb = (json.loads((d / "checkpoint.json").read_text())["state"] for d in (ours, reference))
    for s in (sa, sb):
        s.pop("wall_s")
        for h in s["history"]:
            h.pop("wall_s")
    assert sa == sb


DISTRIBUTED = dict(iterations=2, seed=4, **dict(TINY, tasks=5))


def test_distributed_sampling_equals_local_sampling(local_ray, tmp_path):
    # ProMP, and TRPO-E-MAML (its exploration weights couple the tasks: kept on the driver).
    for algo in ["promp", "trpo-emaml"]:
        meta_rl.train(algo=algo, out=tmp_path / algo / "local", verbose=False, **DISTRIBUTED)
        for workers in (1, 3):  # 3 actors of half a CPU each: tasks 0–0, 1–2, 3–4
            out = tmp_path / algo / f"workers{workers}"
            mray.train(algo=algo, out=out, sampling_workers=workers, num_cpus_per_worker=0.5, threads=1,
                       verbose=False, **DISTRIBUTED)
            same_run(out, tmp_path / algo / "local")
    # Bad settings are refused before any actor starts.
    with pytest.raises(ValueError, match="sampling_workers"):
        mray.train(out=tmp_path / "bad", sampling_workers=0, verbose=False, **DISTRIBUTED)
    with pytest.raises(ValueError, match="num_cpus_per_worker"):
        mray.train(out=tmp_path / "bad", num_cpus_per_worker=0, verbose=False, **DISTRIBUTED)
    with pytest.raises(ValueError, match="tasks"):
        mray.train(out=tmp_path / "bad", verbose=False, **dict(DISTRIBUTED, tasks=0))
    assert not (tmp_path / "bad").exists()


def test_distributed_sampling_across_nodes_survives_a_killed_actor(two_nodes, tmp_path):
    # One actor per node (one CPU each): the tasks of every iteration are sampled on both.
    run = dict(algo="promp", seed=2, iterations=60, **SLOW)
    meta_rl.train(out=tmp_path / "local", verbose=False, **run)
    ray.init(address=two_nodes.address, log_to_driver=False)
    # A grid's run with one actor needs 2 CPUs: on one node of this cluster, never.
    with pytest.raises(ValueError, match=r"on one node, but the cluster has 2 nodes \(CPUs: 1, 1\)"):
        mray.run_grid(storage=tmp_path / "grid", sampling_workers=1, placement_strategy="STRICT_PACK", verbose=False,
                      algos=["promp"], seeds=[1], iterations=1, **TINY)
    assert not (tmp_path / "grid").exists()
    head = raylet_pid(two_nodes.head_node)
    done = []
    driver = threading.Thread(target=lambda: done.append(
        mray.train(out=tmp_path / "ray", sampling_workers=2, threads=1, verbose=False, **run)))
    driver.start()
    try:
        def started() -> bool:
            h = histories_of(tmp_path / "ray")
            return 3 <= len(h) < 60 and bool(worker_pids({head}, "ray::_SamplingWorker"))
        wait_for(started, "a few iterations")
        [victim] = worker_pids({head}, "ray::_SamplingWorker")
        os.kill(victim, signal.SIGKILL)
    finally:
        driver.join(timeout=120)
    assert not driver.is_alive() and len(done) == 1, "the run did not finish within 120 s"
    with pytest.raises(ProcessLookupError):
        os.kill(victim, 0)
    same_run(tmp_path / "ray", tmp_path / "local")


def histories_of(run_dir: Path) -> list:
    try:
        return json.loads((run_dir / "checkpoint.json").read_text())["state"]["history"]
    except (OSError, ValueError):
        return []


def test_a_failing_sampler_pool_ends_the_run_with_its_error(tmp_path):
    """What a pool of sampling workers returns is checked; its own exceptions come through."""
    class Failing:
        def start(self, theta, iteration, tasks):
            pass

        def poll(self, timeout):
            raise RuntimeError("the workers are gone")

        def cancel(self):
            pass

    class Returns(Failing):
        def __init__(self, parts):
            self.parts = parts

        def poll(self, timeout):
            return self.parts

    tiny = dict(iterations=1, **TINY)
    with pytest.raises(RuntimeError, match="the workers are gone"):
        meta_rl.train(out=tmp_path / "a", verbose=False, sampler=Failing(), **tiny)
    with pytest.raises(ValueError, match="sampled data: truncated"):
        meta_rl.train(out=tmp_path / "b", verbose=False, sampler=Returns([b"xyz"]), **tiny)
    with pytest.raises(ValueError, match="task 0 is missing"):
        meta_rl.train(out=tmp_path / "c", verbose=False, sampler=Returns([]), **tiny)
    assert not (tmp_path / "a" / "checkpoint.json").exists()


def test_grid_with_sampling_workers_equals_local_compare(local_ray, tmp_path):
    grid = dict(algos=["promp", "trpo-emaml"], seeds=[1, 2], iterations=2, at=[1], **dict(TINY, tasks=5))
    meta_rl.compare(out=tmp_path / "local", verbose=False, **grid)
    # Each run's group (the run's CPU, two actors of half a CPU) takes the whole 2-CPU
    # instance, so the four runs take turns; without groups the runs would hold both CPUs
    # and wait for their actors forever.
    result = mray.run_grid(storage=tmp_path / "ray", sampling_workers=2, num_cpus_per_worker=0.5, verbose=False,
                           **grid)
    assert result.failures == []
    assert_same_csvs(tmp_path / "ray", tmp_path / "local")
    groups = ray.util.placement_group_table().values()
    assert sorted(g["name"] for g in groups) == sorted(
        f"metagrad-{a}-seed{s}" for a in grid["algos"] for s in grid["seeds"])
    assert all(len(g["bundles"]) == 3 and g["state"] == "REMOVED" for g in groups)
    sampled = [a for a in ray._private.state.actors().values() if a["ActorClassName"].endswith("_SamplingWorker")]
    assert len(sampled) == 8  # two per run
    # Groups that could never be placed, and bad settings, are refused before anything runs.
    bad = dict(storage=tmp_path / "bad", verbose=False, **grid)
    with pytest.raises(ValueError, match=r"needs 3 CPUs .* has 1 node \(CPUs: 2\): the runs could never start"):
        mray.run_grid(sampling_workers=2, **bad)
    with pytest.raises(ValueError, match="distinct nodes"):
        mray.run_grid(sampling_workers=1, num_cpus_per_worker=0.5, placement_strategy="STRICT_SPREAD", **bad)
    with pytest.raises(ValueError, match="placement_strategy"):
        mray.run_grid(sampling_workers=1, placement_strategy="pack", **bad)
    with pytest.raises(ValueError, match="sampling_workers"):
        mray.run_grid(sampling_workers=-1, **bad)
    with pytest.raises(ValueError, match="num_cpus_per_worker"):
        mray.run_grid(sampling_workers=1, num_cpus_per_worker=float("nan"), **bad)
    assert not (tmp_path / "bad").exists()


def test_sampling_grid_on_two_nodes_survives_a_killed_actor_and_a_killed_driver(two_nodes, slow_reference,
                                                                                  tmp_path):
    """A grid of distributed-sampling runs on the two-node cluster, more runs than fit at
    once: each run's group (its CPU on one node, its actor's half CPU on the other) leaves
    room for no second group, so the runs take turns. A sampling actor is SIGKILLed mid-run
    (restarted, its tasks sampled again), then the driver; the same command continues, and
    every file is the local `compare`'s bit for bit."""
    storage = tmp_path / "grid"
    cmd = [sys.executable, "-m", "metagrad.ray", "compare", "--address", two_nodes.address, "--algos", "promp",
           "--seeds", "1,2", "--iterations", "60", "--at", "30", "--out", str(storage), "--tasks", "6",
           "--rollouts", "5", "--horizon", "60", "--hidden", "16,16", "--sampling-workers", "1",
           "--num-cpus-per-worker", "0.5", "--quiet"]
    raylets = {raylet_pid(n) for n in two_nodes.list_all_nodes()}
    first = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        wait_for(lambda: mid_run(storage, 60) and worker_pids(raylets, "ray::_SamplingWorker"),
                 "a run sampling on its actor", timeout=120)
        # One run at a time: the second run's group waits for the first's.
        assert len(run_workers(raylets)) == 1
        [actor] = worker_pids(raylets, "ray::_SamplingWorker")
        os.kill(actor, signal.SIGKILL)
        progress = sum(len(h) for h in histories(storage).values())
        # The run goes on with the restarted actor; then its driver dies.
        wait_for(lambda: sum(len(h) for h in histories(storage).values()) >= progress + 3,
                 "iterations after the actor's restart", timeout=90)
        first.send_signal(signal.SIGKILL)
        first.wait(timeout=30)
        wait_for(lambda: not run_workers(raylets) and not worker_pids(raylets, "ray::_SamplingWorker"),
                 "the dead driver's runs and actors to stop", timeout=60)
        before = histories(storage)
        assert any(len(h) < 60 for h in before.values())
    finally:
        if first.poll() is None:
            first.kill()
            first.wait()
    with pytest.raises(ProcessLookupError):
        os.kill(actor, 0)
    second = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert second.returncode == 0, second.stderr
    assert "| promp |" in second.stdout
    assert_same_csvs(storage, slow_reference)
    assert_prefixes(before, histories(storage))


def test_a_user_env_on_ray_equals_the_local_run(local_ray, tmp_path):
    """A user's Gymnasium meta-task (the test suite's own) through Ray: sampled by actors,
    and as the runs of a grid, the local numbers bit for bit."""
    import meta_envs

    # The factory's module is the test suite's, not installed on the workers: Ray sends it
    # by value (a user ships theirs with `runtime_env={"py_modules": [...]}` or installs it).
    ray.cloudpickle.register_pickle_by_value(meta_envs)
    user = dict(env=meta_envs.point_goal_truncated, iterations=2, **dict(TINY, tasks=4, inner_steps=1))
    meta_rl.train(algo="promp", seed=3, out=tmp_path / "local", verbose=False, **user)
    mray.train(algo="promp", seed=3, out=tmp_path / "actors", sampling_workers=2, num_cpus_per_worker=0.5,
               threads=1, verbose=False, **user)
    same_run(tmp_path / "actors", tmp_path / "local")
    grid = dict(algos=["promp", "trpo-maml"], seeds=[1], at=[1], **user)
    meta_rl.compare(out=tmp_path / "grid-local", verbose=False, **grid)
    result = mray.run_grid(storage=tmp_path / "grid-ray", verbose=False, **grid)
    assert result.failures == []
    assert_same_csvs(tmp_path / "grid-ray", tmp_path / "grid-local")
