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
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from typing import Iterable, List, NamedTuple, Optional, Union

from . import _convert, _metagrad, meta_rl

__all__ = ["GridResult", "run_grid", "main"]


class GridResult(NamedTuple):
    """What :func:`run_grid` returns."""

    #: The summary table (``summary.csv``) as a DataFrame, or ``None`` if a run failed.
    summary: Optional["pandas.DataFrame"]  # noqa: F821
    #: Failed runs: dicts ``{"algo", "seed", "out", "kind", "error"}``, ``kind`` being
    #: ``"error"`` (the run's own exception, not retried) or ``"system"`` (its worker or
    #: node died more than ``max_retries`` times); empty when every run finished.
    failures: List[dict]


def _run_one(settings_json: str, algo: str, seed: int, out: str, threads: int) -> int:
    """One grid run, in a Ray worker: start it, or continue it from its checkpoint.
    Returns the number of finished iterations."""
    hist = _metagrad.meta_rl_train(settings_json, algo, seed, out, "if-present", None, threads)
    return len(json.loads(hist))


def _write_json_atomically(path: str, value) -> None:
    tmp = f"{os.path.dirname(path)}/.{os.path.basename(path)}.tmp-{os.getpid()}"
    with open(tmp, "w") as f:
        json.dump(value, f, indent=2)
        f.write("\n")
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def run_grid(
    *,
    env: str = "point-corners",
    algos: Union[str, Iterable[str]] = "all",
    seeds: Iterable[int] = (1, 2, 3),
    iterations: int = 500,
    at: Iterable[int] = (),
    storage: str = "results/meta-rl-compare",
    address: Optional[str] = None,
    num_cpus_per_run: int = 1,
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
    * ``max_retries``: retries of a run whose worker process or node died (it continues from
      its checkpoint). A run's own exception is never retried.

    All settings are validated before anything is submitted (``ValueError``). Returns a
    :class:`GridResult`; ``<storage>/failures.json`` lists the failed runs (removed once
    none is left). Re-running the same call continues the grid.
    """
    import ray

    if isinstance(num_cpus_per_run, bool) or int(num_cpus_per_run) != num_cpus_per_run or num_cpus_per_run < 1:
        raise ValueError(f"invalid num_cpus_per_run: {num_cpus_per_run!r} (expected a whole number ≥ 1)")
    if isinstance(max_retries, bool) or int(max_retries) != max_retries or max_retries < 0:
        raise ValueError(f"invalid max_retries: {max_retries!r} (expected a whole number ≥ 0)")
    num_cpus_per_run, max_retries = int(num_cpus_per_run), int(max_retries)
    storage = os.path.abspath(os.fspath(storage))
    grid = dict(env=env, algos=algos, seeds=seeds, iterations=iterations, at=at, out=storage, **settings)
    runs = meta_rl.grid_runs(**grid)  # validates every run's settings (ValueError)
    run_settings = dict(settings, env=env, iterations=iterations)
    text = _convert.settings_json("metagrad.ray.run_grid", run_settings)

    started_here = False
    if ray.is_initialized():
        if address is not None:
            raise ValueError("Ray is already initialised in this process: leave address=None to use that connection")
    else:
        ray.init(address=address, log_to_driver=verbose)
        started_here = True
    try:
        os.makedirs(storage, exist_ok=True)
        task = ray.remote(_run_one).options(
            num_cpus=num_cpus_per_run, max_retries=max_retries, retry_exceptions=False, name="metagrad-run"
        )
        pending = {
            task.remote(text, r["algo"], int(r["seed"]), r["out"], num_cpus_per_run): r for r in runs
        }
        failures = []
        done, t0 = 0, time.monotonic()
        while pending:
            ready, _ = ray.wait(list(pending), num_returns=1)
            ref = ready[0]
            r = pending.pop(ref)
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
        raise
    finally:
        if started_here:
            ray.shutdown()

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
    """``python -m metagrad.ray compare ...``: :func:`run_grid` from the command line.
    Exit status 0 when every run finished (the summary is printed), 1 when a run failed,
    2 for bad arguments or settings."""
    parser = argparse.ArgumentParser(prog="python -m metagrad.ray", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("compare", help="run or resume a grid of algorithms × seeds on a Ray cluster")
    p.add_argument("--address", default=None, help="Ray cluster address (default: $RAY_ADDRESS, else a local instance)")
    p.add_argument("--env", default="point-corners")
    p.add_argument("--algos", default="all", help="comma-separated algorithms, or all")
    p.add_argument("--seeds", type=_int_list, default=[1, 2, 3], metavar="S,S")
    p.add_argument("--iterations", type=int, default=500)
    p.add_argument("--at", type=_int_list, default=[], metavar="I,I")
    p.add_argument("--out", "--storage", dest="storage", default="results/meta-rl-compare",
                   help="grid folder on a filesystem shared by all nodes")
    p.add_argument("--num-cpus-per-run", type=int, default=1, help="CPUs (and threads) of each run")
    p.add_argument("--max-retries", type=int, default=3, help="retries of a run whose worker or node died")
    p.add_argument("--quiet", action="store_true", help="no progress lines")
    _flags(p)
    args = vars(parser.parse_args(argv))
    args.pop("command")
    verbose = not args.pop("quiet")
    try:
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
