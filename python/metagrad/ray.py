"""Meta-RL grids on a Ray cluster: ``metagrad meta-rl compare`` with every (algorithm,
seed) run a Ray task.

Each task calls the library's run function on one run folder of the grid, continuing the
run from its checkpoint if the folder holds one (``meta_rl.train(...,
resume="if-present")``); runs write a checkpoint after every iteration (atomically), and a
resumed run continues exactly as an uninterrupted one. So:

* a worker process or node that dies mid-run is a *system* failure: Ray retries the task
  (up to ``max_retries`` times) and the run continues from its last finished iteration;
* a driver that dies takes its tasks with it; the same call (or command) continues the
  grid, finished runs are only read;
* a run that fails for a reason of its own (an exception: a conflicting checkpoint in its
  folder, an unreadable file, ...) is not retried: it is reported in the result's
  ``failures`` and in ``<storage>/failures.json``, the other runs go on, and no summary
  is written until every run has finished (re-run the same call after fixing the cause).

Then the driver writes the summary with the library's own function (``summary.csv``,
``summary.md``, the figure), so the files are those of ``meta-rl compare``: for the same
seeds every CSV is identical to a local run's, wall-clock columns aside.

``storage`` must be a folder that every node and the driver see at the same path (a
shared filesystem). Ray is an optional dependency (``pip install "metagrad[ray]"``);
``import metagrad`` does not import it.

Command line: ``python -m metagrad.ray compare --address ADDR --algos promp,promp-taypo2
--seeds 1,2,3 --iterations 500 --out /shared/runs/fig1d`` (``--help`` lists every flag;
the run settings are ``metagrad meta-rl compare``'s).

**Sampling across workers inside one run** (:func:`train`, ``python -m metagrad.ray train
--sampling-workers N``): the tasks of every iteration are spread over N Ray actors, each
holding the run's environment (built once) and doing whole tasks' sampling side
(pre-update rollouts, inner adaptation, post-update rollouts); the driver runs the outer
update. Task i of iteration t draws from (seed, t, round, i) whatever worker samples it,
the actors return their tasks in the library's exact binary form, and the library checks
and orders them, so the run is the local run bit for bit for any number or placement of
workers. An actor that dies is restarted and its tasks sampled again (``max_restarts``).
:func:`run_grid` does the same for every run of a grid (``sampling_workers``), each run
with its actors in one placement group, so that runs and actors never wait on each other.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from typing import Callable, Iterable, List, NamedTuple, Optional, Union

from contextlib import contextmanager

from . import _convert, _metagrad, meta_rl

__all__ = ["GridResult", "run_grid", "train", "main"]


class GridResult(NamedTuple):
    """What :func:`run_grid` returns."""

    #: The summary table (``summary.csv``) as a DataFrame, or ``None`` if a run failed.
    summary: Optional["pandas.DataFrame"]  # noqa: F821
    #: Failed runs: dicts ``{"algo", "seed", "out", "kind", "error"}``, ``kind`` being
    #: ``"error"`` (the run's own exception, not retried) or ``"system"`` (its worker or
    #: node died more than ``max_retries`` times); empty when every run finished.
    failures: List[dict]


def _env_split(env, settings: dict):
    """``settings`` without the environment arguments of a factory (``test_env``,
    ``env_name``, ``env_workers``, ``env_copies``), and those arguments with the factory as
    one picklable tuple for Ray workers (``None`` for a built-in environment's name)."""
    settings = dict(settings)
    keys = (("test_env", None), ("env_name", None), ("env_workers", 0), ("env_copies", None))
    args = tuple(settings.pop(k, d) for k, d in keys)
    if isinstance(env, str):
        if any(a not in (None, 0) for a in args):
            meta_rl._envs(env, *args, {})  # raises the error that explains why
        return dict(settings, env=env), None
    return settings, (env,) + args


def _env_specs(env_def, settings: dict, with_test: bool = True):
    """The engine's specs of an environment definition from :func:`_env_split` (built in
    the process that uses them; ``settings["env"]`` set to the environment's name)."""
    if env_def is None:
        return None, None
    env, test_env, name, workers, copies = env_def
    return meta_rl._envs(env, test_env if with_test else None, name, workers, copies, settings)


def _run_one(settings_json: str, algo: str, seed: int, out: str, threads: int, sampling=None, env_def=None) -> int:
    """One grid run, in a Ray worker: start it, or continue it from its checkpoint, its
    tasks sampled here or, with ``sampling = (placement group, workers, CPUs per worker,
    max restarts)``, by that many actors in bundles 1.. of the run's placement group; on
    the environment ``env_def`` (see :func:`_env_split`) if given. Returns the number of
    finished iterations."""
    pool = None
    spec, test_spec = _env_specs(env_def, {})
    if sampling is not None:
        import ray

        group, workers, cpus, restarts = sampling
        pool = _start_pool(ray, settings_json, algo, seed, workers, cpus, restarts, None, group, env_def)
    try:
        hist = _metagrad.meta_rl_train(settings_json, algo, seed, out, "if-present", None, threads, pool, spec,
                                       test_spec)
    finally:
        if pool is not None:
            pool.stop()
    return len(json.loads(hist))


def _write_json_atomically(path: str, value) -> None:
    tmp = f"{os.path.dirname(path)}/.{os.path.basename(path)}.tmp-{os.getpid()}"
    with open(tmp, "w") as f:
        json.dump(value, f, indent=2)
        f.write("\n")
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


@contextmanager
def _connected(address: Optional[str], verbose: bool):
    """Ray, connected: this process's connection if Ray is initialised (``address`` must
    then be ``None``), else one made here and closed on exit."""
    import ray

    if ray.is_initialized():
        if address is not None:
            raise ValueError("Ray is already initialised in this process: leave address=None to use that connection")
        yield ray
        return
    ray.init(address=address, log_to_driver=verbose)
    try:
        yield ray
    finally:
        ray.shutdown()


def _whole(name: str, value, least: int) -> int:
    """``value`` as a whole number ≥ ``least`` (``ValueError`` naming ``name`` otherwise, so
    that the command line reports it as bad input)."""
    try:
        return _convert.whole(name, value, least)
    except TypeError as e:
        raise ValueError(str(e)) from None


def run_grid(
    *,
    env: Union[str, Callable, None] = None,
    algos: Union[str, Iterable[str]] = "all",
    seeds: Iterable[int] = (1, 2, 3),
    iterations: Optional[int] = None,
    at: Iterable[int] = (),
    storage: str = "results/meta-rl-compare",
    address: Optional[str] = None,
    num_cpus_per_run: int = 1,
    sampling_workers: int = 0,
    num_cpus_per_worker: float = 1,
    placement_strategy: str = "PACK",
    max_retries: int = 3,
    verbose: bool = True,
    **settings,
) -> GridResult:
    """Runs or resumes a grid of algorithms × seeds on a Ray cluster, as
    :func:`metagrad.meta_rl.compare` does on this machine: same arguments and settings (see
    :func:`metagrad.meta_rl.defaults`), same files in ``storage`` (``<algo>/seed<s>/`` per
    run, then ``summary.csv``, ``summary.md`` and ``fig1d``/``fig2``), same numbers.

    * ``storage``: the grid's folder, on a filesystem shared by every node and the driver
      (made absolute here).
    * ``address``: the cluster to connect to (``"auto"``, ``"HOST:6379"``; ``None``: the
      ``RAY_ADDRESS`` variable, else a local Ray instance). If Ray is already initialised
      in this process, that connection is used and ``address`` must be ``None``.
    * ``num_cpus_per_run``: CPUs each run reserves, and its number of threads (results do
      not depend on it).
    * ``sampling_workers``: 0 (default) samples each run's tasks in the run's own task; N > 0
      gives every run N sampling actors of ``num_cpus_per_worker`` CPUs each, as
      :func:`train` does (same numbers bit for bit). Each run then holds a placement group
      of 1 + N bundles (the run's ``num_cpus_per_run`` CPUs, then one bundle per actor,
      placed by ``placement_strategy``: ``"PACK"``, ``"SPREAD"``, ``"STRICT_PACK"`` or
      ``"STRICT_SPREAD"``). Ray reserves a group whole or not at all, so a run never holds
      CPUs while it waits for its actors (runs and actors drawing on one pool of CPUs can
      deadlock); groups beyond the cluster's size wait their turn, each is removed when
      its run ends, and a group that no node set of the cluster (as it is at the call)
      could ever hold is refused before anything is submitted (``ValueError``).
    * ``max_retries``: retries of a run whose worker process or node died (it continues from
      its checkpoint), and restarts of each of its sampling actors. A run's own exception
      is never retried.

    All settings are validated before anything is submitted (``ValueError``). Returns a
    :class:`GridResult`; ``<storage>/failures.json`` lists the failed runs (removed once
    none is left). Re-running the same call continues the grid.
    """
    num_cpus_per_run = _whole("num_cpus_per_run", num_cpus_per_run, 1)
    max_retries = _whole("max_retries", max_retries, 0)
    workers = _whole("sampling_workers", sampling_workers, 0)
    worker_cpus = _cpus("num_cpus_per_worker", num_cpus_per_worker)
    if placement_strategy not in _STRATEGIES:
        raise ValueError(f"invalid placement_strategy: {placement_strategy!r} (expected one of {', '.join(_STRATEGIES)})")
    env, iterations = meta_rl._library_default("env", env), meta_rl._library_default("iterations", iterations)
    storage = os.path.abspath(os.fspath(storage))
    grid = dict(env=env, algos=algos, seeds=seeds, iterations=iterations, at=at, out=storage, **settings)
    runs = meta_rl.grid_runs(**grid)  # validates every run's settings (ValueError)
    run_settings, env_def = _env_split(env, dict(settings, iterations=iterations))
    _env_specs(env_def, run_settings)
    text = _convert.settings_json("metagrad.ray.run_grid", run_settings)
    bundles = [{"CPU": num_cpus_per_run}] + [{"CPU": worker_cpus}] * workers if workers else []

    with _connected(address, verbose) as ray:
        if bundles:
            _check_placement(ray, bundles, placement_strategy)
        failures = _run_all(ray, text, runs, storage, num_cpus_per_run, max_retries, verbose,
                            (bundles, placement_strategy), env_def)

    failures_path = os.path.join(storage, "failures.json")
    if failures:
        _write_json_atomically(failures_path, failures)
        if verbose:
            print(f"metagrad.ray: {len(failures)} of {len(runs)} runs failed, see {failures_path}; "
                  "no summary written", file=sys.stderr, flush=True)
        return GridResult(None, failures)
    if os.path.exists(failures_path):
        os.remove(failures_path)
    return GridResult(meta_rl.summarise(**grid), [])


_STRATEGIES = ("PACK", "SPREAD", "STRICT_PACK", "STRICT_SPREAD")


def _cpus(name: str, value) -> float:
    """``value`` as a finite number of CPUs > 0 (``ValueError`` naming ``name`` otherwise)."""
    try:
        cpus = float(value)
    except (TypeError, ValueError):
        cpus = float("nan")
    if isinstance(value, bool) or not 0 < cpus < float("inf"):
        raise ValueError(f"invalid {name}: {value!r} (expected a finite number > 0)")
    return cpus


def _check_placement(ray, bundles: List[dict], strategy: str) -> None:
    """Refuses (``ValueError``) a run's placement group that the cluster's alive nodes could
    never hold, whatever else runs: a bundle larger than every node, more CPUs than the
    cluster has, more than one node has (``STRICT_PACK``), or more bundles than nodes with
    room for one (``STRICT_SPREAD``)."""
    nodes = [float(n.get("Resources", {}).get("CPU", 0)) for n in ray.nodes() if n.get("Alive")]
    need = [b["CPU"] for b in bundles]
    total, largest = sum(need), max(nodes, default=0.0)
    what = (f"a run with sampling_workers={len(need) - 1} needs {total:g} CPUs ({need[0]:g} for the run, "
            f"{need[-1]:g} per sampling actor, placement_strategy={strategy!r})")
    has = f"the cluster has {len(nodes)} node{'s' * (len(nodes) != 1)} (CPUs: {', '.join(f'{c:g}' for c in nodes)})"
    if max(need) > largest or total > sum(nodes):
        raise ValueError(f"{what}, but {has}: the runs could never start")
    if strategy == "STRICT_PACK" and total > largest:
        raise ValueError(f"{what} on one node, but {has}: the runs could never start")
    if strategy == "STRICT_SPREAD" and sum(1 for c in nodes if c >= max(need)) < len(need):
        raise ValueError(f"{what} on {len(need)} distinct nodes, but {has}: the runs could never start")


def _run_all(ray, text: str, runs: List[dict], storage: str, num_cpus_per_run: int, max_retries: int,
             verbose: bool, placement=([], "PACK"), env_def=None) -> List[dict]:
    """Every run of a grid as a Ray task, until all have ended; returns the failed ones.
    ``placement = (bundles, strategy)``: with bundles, each run gets its placement group
    (the run in bundle 0, its sampling actors in the others), removed when the run ends."""
    bundles, strategy = placement
    # The placement-group API is imported only by grids that use it (runs with sampling
    # actors); without bundles no group is made and these names stay None.
    if bundles:
        from ray.util.placement_group import placement_group, remove_placement_group
        from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy
    else:
        placement_group = remove_placement_group = PlacementGroupSchedulingStrategy = None
    pending, groups = {}, {}
    try:
        os.makedirs(storage, exist_ok=True)
        run_one = ray.remote(_run_one)
        options = dict(num_cpus=num_cpus_per_run, max_retries=max_retries, retry_exceptions=False, name="metagrad-run")
        for r in runs:
            args = (text, r["algo"], int(r["seed"]), r["out"], num_cpus_per_run)
            if not bundles:
                pending[run_one.options(**options).remote(*args, None, env_def)] = r
                continue
            group = placement_group(bundles, strategy=strategy, name=f"metagrad-{r['algo']}-seed{r['seed']}")
            at = PlacementGroupSchedulingStrategy(group, placement_group_bundle_index=0)
            ref = run_one.options(scheduling_strategy=at, **options).remote(
                *args, (group, len(bundles) - 1, bundles[-1]["CPU"], max_retries), env_def
            )
            pending[ref], groups[ref] = r, group
        failures = []
        done, t0 = 0, time.monotonic()
        while pending:
            ready, _ = ray.wait(list(pending), num_returns=1)
            ref = ready[0]
            r = pending.pop(ref)
            if ref in groups:
                remove_placement_group(groups.pop(ref))
            done += 1
            label = f"[{done}/{len(runs)}] {r['algo']} seed {r['seed']}"
            try:
                n = ray.get(ref)
                status = f"{n} iterations"
            except ray.exceptions.RayTaskError as e:
                cause = e.cause if e.cause is not None else e
                failures.append(dict(r, kind="error", error=f"{type(cause).__name__}: {cause}"))
                status = f"FAILED: {type(cause).__name__}: {cause}"
            except ray.exceptions.RayError as e:
                failures.append(
                    dict(r, kind="system", error=f"{type(e).__name__} (after {max_retries} retries): {e}")
                )
                status = f"FAILED: {type(e).__name__} after {max_retries} retries"
            if verbose:
                print(f"metagrad.ray: {label}: {status} ({time.monotonic() - t0:.0f} s)", file=sys.stderr, flush=True)
    except BaseException:
        # Interrupted (Ctrl-C): stop the runs still going; each keeps its last checkpoint.
        for ref in pending:
            ray.cancel(ref, force=True)
        for group in groups.values():
            remove_placement_group(group)
        raise
    return failures


class _SamplingWorker:
    """A Ray actor: one run's sampler (its environment built once), sampling ranges of tasks."""

    def __init__(self, settings_json: str, algo: str, seed: int, threads: int, env_def=None):
        spec, _ = _env_specs(env_def, {}, with_test=False)
        self._sampler = _metagrad.MetaRlTaskSampler(settings_json, algo, seed, threads, spec)

    def sample(self, theta: List[float], iteration: int, start: int, end: int) -> bytes:
        """Tasks ``start..end`` of ``iteration`` with θ, in the library's exact binary form."""
        return self._sampler.sample(theta, iteration, start, end)

    def ping(self) -> None:
        """Nothing (for measuring a call's round trip)."""


class _SamplingPool:
    """The sampling workers of a run, as :func:`metagrad.meta_rl.train` calls them: each
    iteration's tasks are split into one consecutive range per worker (the split does not
    change the results), ``poll`` returns the parts once all are back. ``times`` records
    each iteration's seconds from ``start`` to the last part (for benchmarks)."""

    def __init__(self, ray, workers: list):
        self._ray, self._workers, self._pending = ray, workers, []
        self._t0 = 0.0
        self.times: List[float] = []

    def start(self, theta: List[float], iteration: int, tasks: int) -> None:
        ref = self._ray.put(theta)
        n = len(self._workers)
        bounds = [tasks * i // n for i in range(n + 1)]
        self._t0 = time.perf_counter()
        self._pending = [
            w.sample.remote(ref, iteration, a, b) for w, a, b in zip(self._workers, bounds, bounds[1:]) if b > a
        ]

    def poll(self, timeout: float) -> Optional[List[bytes]]:
        ready, _ = self._ray.wait(self._pending, num_returns=len(self._pending), timeout=timeout)
        if len(ready) < len(self._pending):
            return None
        parts = self._ray.get(self._pending)
        self.times.append(time.perf_counter() - self._t0)
        self._pending = []
        return parts

    def cancel(self) -> None:
        for ref in self._pending:
            self._ray.cancel(ref)
        self._pending = []

    def stop(self) -> None:
        """Ends the actors."""
        for w in self._workers:
            self._ray.kill(w)


def train(
    *,
    env: Union[str, Callable, None] = None,
    algo: str = "promp-taypo2",
    iterations: Optional[int] = None,
    seed: int = 1,
    out: str = "results/meta-rl",
    resume: Union[bool, str] = False,
    address: Optional[str] = None,
    sampling_workers: int = 2,
    num_cpus_per_worker: float = 1,
    threads: Optional[int] = None,
    max_restarts: int = 3,
    worker_niceness: Optional[int] = None,
    verbose: bool = True,
    **settings,
):
    """One meta-RL run, as :func:`metagrad.meta_rl.train` (same arguments, files, resume and
    numbers, bit for bit), with the tasks of every iteration sampled by
    ``sampling_workers`` Ray actors; the outer update runs here, on ``threads`` threads
    (default: all cores). Each actor reserves ``num_cpus_per_worker`` CPUs (a fraction is
    allowed) and samples on that many threads (at least one); it builds the run's
    environment once. An actor whose process or node dies is restarted, and its tasks
    sampled again, up to ``max_restarts`` times. ``worker_niceness``: the actors' Unix
    niceness, 0–19 (``None``: Ray's default for its workers, 15, so that on a node shared
    with other work they yield the CPU to it; 0 gives them the driver's priority).
    ``address``: as in :func:`run_grid`. Settings are validated before anything starts
    (``ValueError``). Returns the progress as a DataFrame."""
    workers = _whole("sampling_workers", sampling_workers, 1)
    max_restarts = _whole("max_restarts", max_restarts, 0)
    seed = _whole("seed", seed, 0)
    _cpus("num_cpus_per_worker", num_cpus_per_worker)
    if worker_niceness is not None and not 0 <= _whole("worker_niceness", worker_niceness, 0) <= 19:
        raise ValueError(f"invalid worker_niceness: {worker_niceness!r} (expected 0–19 or None)")
    env, iterations = meta_rl._library_default("env", env), meta_rl._library_default("iterations", iterations)
    run_settings, env_def = _env_split(env, dict(settings, iterations=iterations))
    _env_specs(env_def, run_settings)  # checks the environment, sets its name
    text = _convert.settings_json("metagrad.ray.train", run_settings)
    json.loads(_metagrad.meta_rl_params(text, algo, seed, *_env_specs(env_def, {})))  # validates (ValueError)
    with _connected(address, verbose) as ray:
        pool = _start_pool(ray, text, algo, seed, workers, num_cpus_per_worker, max_restarts, worker_niceness,
                           None, env_def)
        try:
            return meta_rl.train(env=env, algo=algo, iterations=iterations, seed=seed, out=out, resume=resume,
                                 verbose=verbose, threads=threads, sampler=pool, **settings)
        finally:
            pool.stop()


def _start_pool(ray, settings_json: str, algo: str, seed: int, workers: int, num_cpus_per_worker: float,
                max_restarts: int, niceness: Optional[int] = None, group=None, env_def=None) -> _SamplingPool:
    """``workers`` sampling actors of one run, as a pool (``niceness``: see :func:`train`);
    with a placement ``group``, actor i is placed in its bundle i + 1."""
    options = dict(num_cpus=num_cpus_per_worker, max_restarts=max_restarts, max_task_retries=max_restarts)
    if niceness is not None:
        # Read by the raylet when it starts the actor's worker process (Ray's own setting).
        options["runtime_env"] = {"env_vars": {"RAY_worker_niceness": str(int(niceness))}}
    actor = ray.remote(_SamplingWorker)
    threads = max(1, int(num_cpus_per_worker))
    placed = [options] * workers
    if group is not None:
        from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

        placed = [
            dict(options, scheduling_strategy=PlacementGroupSchedulingStrategy(group, placement_group_bundle_index=i + 1))
            for i in range(workers)
        ]
    return _SamplingPool(ray, [actor.options(**o).remote(settings_json, algo, seed, threads, env_def) for o in placed])


def _flags(parser: argparse.ArgumentParser) -> None:
    """One flag per run setting, named and typed as the command line's (defaults are the
    library's: a flag left out is not passed)."""
    group = parser.add_argument_group("run settings (those of `metagrad meta-rl compare`)")
    for name, default in meta_rl.defaults().items():
        if name in ("env", "iterations"):
            continue
        flag = "--" + name.replace("_", "-")
        hint = "default: by environment" if default is None else f"default {default}"
        if isinstance(default, bool):
            group.add_argument(flag, dest=name, action="store_true", default=argparse.SUPPRESS)
        elif isinstance(default, list):
            group.add_argument(flag, dest=name, type=_int_list, default=argparse.SUPPRESS, metavar="N,N")
        elif isinstance(default, float):
            group.add_argument(flag, dest=name, type=float, default=argparse.SUPPRESS, help=hint)
        elif isinstance(default, int) or default is None:
            group.add_argument(flag, dest=name, type=int, default=argparse.SUPPRESS, help=hint)
        else:
            group.add_argument(flag, dest=name, default=argparse.SUPPRESS, help=hint)


def _int_list(text: str) -> List[int]:
    try:
        return [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated whole numbers, got {text!r}") from None


def main(argv: Optional[List[str]] = None) -> int:
    """``python -m metagrad.ray compare ...``: :func:`run_grid` from the command line (exit
    status 0 when every run finished, the summary is printed; 1 when a run failed), and
    ``python -m metagrad.ray train ... --sampling-workers N``: :func:`train` (the progress
    is printed). Exit status 2 for bad arguments or settings."""
    parser = argparse.ArgumentParser(prog="python -m metagrad.ray", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("compare", help="run or resume a grid of algorithms × seeds on a Ray cluster")
    p.add_argument("--address", default=None, help="Ray cluster address (default: $RAY_ADDRESS, else a local instance)")
    p.add_argument("--env", default=None, help=f"environment (default {meta_rl.defaults()['env']})")
    p.add_argument("--algos", default="all", help="comma-separated algorithms, or all")
    p.add_argument("--seeds", type=_int_list, default=[1, 2, 3], metavar="S,S")
    p.add_argument("--iterations", type=int, default=None, help=f"default {meta_rl.defaults()['iterations']}")
    p.add_argument("--at", type=_int_list, default=[], metavar="I,I")
    p.add_argument("--out", "--storage", dest="storage", default="results/meta-rl-compare",
                   help="grid folder on a filesystem shared by all nodes")
    p.add_argument("--num-cpus-per-run", type=int, default=1, help="CPUs (and threads) of each run")
    p.add_argument("--sampling-workers", type=int, default=0,
                   help="Ray actors sampling each run's tasks (default 0: the run samples them)")
    p.add_argument("--num-cpus-per-worker", type=float, default=1, help="CPUs (and threads) of each sampling actor")
    p.add_argument("--placement-strategy", default="PACK", choices=_STRATEGIES,
                   help="how a run's placement group (run + its actors) spreads over nodes")
    p.add_argument("--max-retries", type=int, default=3, help="retries of a run whose worker or node died")
    p.add_argument("--quiet", action="store_true", help="no progress lines")
    _flags(p)
    t = sub.add_parser("train", help="one run with every iteration's tasks sampled by Ray actors")
    t.add_argument("--address", default=None, help="Ray cluster address (default: $RAY_ADDRESS, else a local instance)")
    t.add_argument("--env", default=None, help=f"environment (default {meta_rl.defaults()['env']})")
    t.add_argument("--algo", default="promp-taypo2")
    t.add_argument("--seed", type=int, default=1)
    t.add_argument("--iterations", type=int, default=None, help=f"default {meta_rl.defaults()['iterations']}")
    t.add_argument("--out", default="results/meta-rl", help="run folder (on the driver's machine)")
    t.add_argument("--resume", action="store_true", help="continue the run in --out")
    t.add_argument("--sampling-workers", type=int, default=2, help="Ray actors sampling the tasks of an iteration")
    t.add_argument("--num-cpus-per-worker", type=float, default=1, help="CPUs (and threads) of each actor")
    t.add_argument("--threads", type=int, default=None, help="threads of the outer update (default: all cores)")
    t.add_argument("--max-restarts", type=int, default=3, help="restarts of an actor whose process or node died")
    t.add_argument("--worker-niceness", type=int, default=None,
                   help="Unix niceness of the actors, 0–19 (default: Ray's, 15)")
    t.add_argument("--quiet", action="store_true", help="no progress bar")
    _flags(t)
    args = vars(parser.parse_args(argv))
    command = args.pop("command")
    verbose = not args.pop("quiet")
    try:
        if command == "train":
            print(train(verbose=verbose, **args).to_string(index=False))
            return 0
        result = run_grid(verbose=verbose, **args)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if result.failures:
        for f in result.failures:
            print(f"failed: {f['algo']} seed {f['seed']} ({f['out']}): {f['error']}", file=sys.stderr)
        return 1
    with open(os.path.join(os.path.abspath(args["storage"]), "summary.md")) as f:
        print(f.read(), end="")
    return 0


if __name__ == "__main__":
    # Run the functions of the importable module (what Ray's workers import), not of __main__.
    from metagrad.ray import main as _main

    sys.exit(_main())
