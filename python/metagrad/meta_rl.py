"""Gradient-based meta-RL (paper Fig. 1 d and Fig. 2): TRPO-MAML, TRPO-FMAML, TRPO-E-MAML,
TRPO-DiCE, ProMP and ProMP-TayPO-2, run by the same library functions as
``metagrad meta-rl`` and ``metagrad meta-rl compare``: same settings, same files, same
numbers for the same seed, resumable in the same way.
"""

from __future__ import annotations

import json
import pathlib
from typing import Callable, Iterable, Optional, Union

from . import _convert, _metagrad
from ._progress import progress as _progress

#: The meta-RL algorithms, in the paper's order (the library's list).
ALGORITHMS: tuple = tuple(_metagrad.ALGORITHMS)

__all__ = ["ALGORITHMS", "defaults", "params", "train", "compare", "summarise", "grid_runs", "load_progress", "load_grid"]


def defaults() -> dict:
    """Every setting with its default (the command line's): ``env``, ``iterations``,
    ``tasks``, ``rollouts``, ``horizon``, ``inner_steps``, ``inner_lr``, ``gamma``,
    ``gae_lambda``, ``hidden``, ``precision``, ``normalisation``, ``taypo_discount``,
    ``no_dr_normalise``, ``dice_critic``, ``taypo2_pairs``, ``taypo2_ratio_clip``, ``taypo2_pair_clip``,
    ``max_kl``, ``ppo_clip``, ``kl_coeff``, ``adam_lr``, ``promp_steps``,
    ``emaml_weight``, ``divergence_threshold``, ``ratio_guard``, ``inner_kl_average``,
    ``adam_eps``, ``log_std_floor``, ``max_steps_per_iteration``, ``test_every``,
    ``test_tasks``, ``test_episodes``.

    Returns:
        A dict of every setting's name and default (the library's, which the command line
        shares).
    """
    return _convert.settings_from_json(_metagrad.meta_rl_defaults())


def _library_default(name: str, value):
    """``value``, or (when ``None``) the library's default of the run setting ``name``
    (:func:`defaults`: one source for the command line and Python)."""
    return defaults()[name] if value is None else value


def params(*, algo: str = "promp-taypo2", seed: int = 1, env: Union[str, Callable, None] = None,
           test_env: Optional[Callable] = None, env_name: Optional[str] = None, **settings) -> dict:
    """The validated settings of one run, as its ``config.json`` records them.

    Args:
        algo: One of :data:`ALGORITHMS`.
        seed: The run's seed.
        env: A built-in environment's name or a factory, as in :func:`train`.
        test_env: The meta-test's factory, as in :func:`train`.
        env_name: The name a factory's runs record, as in :func:`train`.
        **settings: The other settings (see :func:`defaults`).

    Returns:
        A dict of the recorded settings.
    """
    spec, test_spec = _envs(_library_default("env", env), test_env, env_name, 0, None, settings)
    text = _convert.settings_json("meta_rl.params", settings)
    return _convert.settings_from_json(
        _metagrad.meta_rl_params(text, algo, _convert.whole("seed", seed), spec, test_spec)
    )


def _history_frame(text: str):
    """A run's history (JSON records) as the DataFrame of its ``progress.csv``."""
    import pandas as pd

    rows = json.loads(text)
    k = len(rows[0]["post_returns"]) if rows else 0
    steps = max((len(r.get("diagnostics", {}).get("outer_losses", [])) for r in rows), default=0)
    diag = ["inner_step_norm_mean", "inner_step_norm_max", "max_inner_ratio_dev"]
    success = any("pre_success" in r for r in rows)
    test = any("test" in r for r in rows)
    test_success = any("pre_success" in r.get("test", {}) for r in rows)
    # The diagnostics recorded since the first runs, as write_progress writes them: columns
    # only when some iteration has them.
    log_std = any("log_std" in r.get("diagnostics", {}) for r in rows)
    promp = any("promp" in r.get("diagnostics", {}) for r in rows)
    promp_cols = (
        [f"inner_kl_{i + 1}" for i in range(k)]
        + [f"max_inner_ratio_dev_{i + 1}" for i in range(k)]
        + ["clip_fraction", "outer_step_norm", "outer_step_max", "adaptation_gain"]
    )
    records = []
    for r in rows:
        d = r.get("diagnostics", {})
        rec = {"iteration": r["iteration"], "pre_return": r["pre_return"]}
        rec.update({f"post_return_{i + 1}": x for i, x in enumerate(r["post_returns"])})
        rec.update(env_steps=r["env_steps"], wall_s=r["wall_s"], outer_diag=r["outer_diag"])
        rec.update({name: d.get(name, 0.0) for name in diag})
        rec.update({f"outer_loss_{i + 1}": x for i, x in enumerate(d.get("outer_losses", []))})
        if success:
            rec["pre_success"] = r.get("pre_success")
            rec.update({f"post_success_{i + 1}": x for i, x in enumerate(r.get("post_success", []))})
        t = r.get("test", {})
        rec.update({f"test_{name}": t.get(name) for name in ("pre_return", "post_return", "pre_success", "post_success")})
        rec.update(log_std=d.get("log_std"), adapted_log_std_min=d.get("adapted_log_std_min"))
        o = d.get("promp") or {}
        at = lambda key, i: o[key][i] if key in o and i < len(o[key]) else None  # noqa: E731
        rec.update({f"inner_kl_{i + 1}": at("inner_kl", i) for i in range(k)})
        rec.update({f"max_inner_ratio_dev_{i + 1}": at("inner_ratio_dev", i) for i in range(k)})
        rec.update({name: o.get(name) for name in ("clip_fraction", "outer_step_norm", "outer_step_max", "adaptation_gain")})
        records.append(rec)
    cols = (
        ["iteration", "pre_return"]
        + [f"post_return_{i + 1}" for i in range(k)]
        + ["env_steps", "wall_s", "outer_diag"]
        + diag
        + [f"outer_loss_{i + 1}" for i in range(steps)]
        + (["pre_success"] + [f"post_success_{i + 1}" for i in range(k)] if success else [])
        + (["test_pre_return", "test_post_return"] if test else [])
        + (["test_pre_success", "test_post_success"] if test_success else [])
        + (["log_std", "adapted_log_std_min"] if log_std else [])
        + (promp_cols if promp else [])
    )
    return pd.DataFrame(records, columns=cols)


def _env_name(env) -> str:
    """The name a factory's runs record: its ``env_name`` attribute, else its qualified name."""
    name = getattr(env, "env_name", None)
    if isinstance(name, str) and name:
        return name
    f = getattr(env, "func", env)  # functools.partial
    qual = getattr(f, "__qualname__", None) or type(f).__qualname__
    return f"{getattr(f, '__module__', None) or 'python'}.{qual}"


def _envs(env, test_env, env_name, env_workers, env_copies, settings: dict):
    """The settings' ``env`` name and the engine's environment specs: ``None`` for a
    built-in environment (a name), else a checked ``Spec`` of the factory (and of the
    test factory)."""
    from . import _env_pool

    if test_env is not None and isinstance(env, str):
        raise ValueError("invalid test_env: a separate meta-test environment needs env to be a factory too")
    if isinstance(env, str):
        if env_name is not None:
            raise ValueError("invalid env_name: only for an environment given as a factory")
        settings["env"] = env
        return None, None
    workers = _convert.whole("env_workers", env_workers)
    copies = None if env_copies is None else _convert.whole("env_copies", env_copies, 1)

    def spec(factory, name):
        if name is not None and not (isinstance(name, str) and name.strip()):
            raise ValueError(f"invalid env_name: expected a non-empty string, got {name!r}")
        name = name or _env_name(factory)
        hint = getattr(factory, "max_copies", None)  # a factory's suggestion (e.g. Meta-World's)
        return _env_pool.Spec(factory, name=name, settings=getattr(factory, "env_settings", None),
                              workers=workers, copies=copies if copies is not None else hint)

    main = spec(env, env_name)
    test = None if test_env is None else spec(test_env, f"{main.name} (test)")
    settings["env"] = main.name
    return main, test


def _observer(bar, per_run_total: int):
    if bar is None:
        return None

    done = {}  # iterations done per run (a grid may run several at a time)

    def on_event(e: dict) -> None:
        label = f"[{e['run'] + 1}/{e['runs']}] {e['algo']} seed {e['seed']}" if e["runs"] > 1 else f"{e['algo']} seed {e['seed']}"
        bar.set_description(label)
        if e["kind"] == "started":
            done[e["run"]] = e["done"]
            bar.update_to(sum(done.values()), e["runs"] * per_run_total)
        elif e["kind"] == "diverged":
            bar.set_postfix(f"diverged at iteration {e['iteration']}: {e['cause']}")
        else:
            post = " → ".join(f"{x:.1f}" for x in e["post_returns"])
            bar.set_postfix(f"pre {e['pre_return']:.1f} → post {post} | {e['env_steps_per_s'] / 1e3:.1f}k steps/s")
            done[e["run"]] = e["iteration"] + 1
            bar.update_to(sum(done.values()), e["runs"] * per_run_total)

    return on_event


def train(
    *,
    env: Union[str, Callable, None] = None,
    algo: str = "promp-taypo2",
    iterations: Optional[int] = None,
    seed: int = 1,
    out: str = "results/meta-rl",
    resume: Union[bool, str] = False,
    verbose: bool = True,
    threads: Optional[int] = None,
    sampler=None,
    test_env: Optional[Callable] = None,
    env_name: Optional[str] = None,
    env_workers: int = 0,
    env_copies: Optional[int] = None,
    **settings,
):
    """One meta-RL run, as ``metagrad meta-rl``.

    Writes ``config.json``, ``progress.csv``, ``checkpoint.json`` (every iteration) and
    ``learning_curve.{png,svg}`` to ``out`` and returns the progress as a DataFrame (one row
    per iteration).

    Args:
        env: a built-in environment's name (:data:`metagrad.envs.NAMES`), or a factory of
            your own meta-task: a picklable callable returning a ``gymnasium.Env`` with flat
            ``Box`` spaces and the methods ``sample_tasks(num_tasks)`` and ``set_task(task)``
            (tasks are opaque objects). ``sample_tasks`` must draw from ``self.np_random``,
            which metagrad seeds before every call, so that the run is reproducible by its
            seed (checked when the run starts). The policy's actions, presented in
            [-10, 10]^d, are mapped linearly onto the action space's (finite) bounds, as
            for the built-in environments; an episode ends when the environment reports
            ``terminated`` or ``truncated``, or at ``horizon`` steps, and every episode is
            reset with a seed drawn from the run's seed. Meta-World: see
            :mod:`metagrad.envs.metaworld`.
        algo: one of :data:`ALGORITHMS`.
        iterations: meta-iterations (may grow when resuming).
        seed: the seed every random draw comes from.
        out: the run's folder.
        resume: ``True`` continues the run in ``out`` bit-identically (settings must match);
            ``False`` refuses a folder that holds a run; ``"if-present"`` continues a run if
            ``out`` holds one and starts one otherwise (as :func:`compare` does).
        verbose: show a progress bar.
        threads: worker threads of this call (default: all cores; results do not depend on
            it).
        sampler: a pool of sampling workers that samples every iteration's tasks
            (:func:`metagrad.ray.train` makes one of Ray actors; the same results bit for
            bit), or ``None`` to sample here.
        test_env: a factory of the meta-test's environment (e.g. Meta-World's test split);
            default: ``env`` itself. Used when ``test_every`` > 0.
        env_name: the name a factory's runs record (default: the factory's ``env_name``
            attribute, else its qualified name). A factory's ``env_settings`` attribute,
            if any, is recorded as ``env_config`` and must match when resuming.
        env_workers: worker processes that step a factory's copies (0: this process).
            Results do not depend on it.
        env_copies: most copies of a factory's environment stepped at once (default: every
            task of a round). Results do not depend on it.
        **settings: the other settings, see :func:`defaults` (``test_every``,
            ``test_tasks``, ``test_episodes`` set up the meta-test).

    Returns:
        The run's progress (``progress.csv``) as a ``pandas.DataFrame``.

    Ctrl-C stops within a second (with a ``sampler``: once the iteration's tasks are
    cancelled), keeping the last finished iteration's checkpoint; so does an error of the
    environment, which is raised as ``ValueError`` naming the environment, the method and
    the value."""
    modes = {False: "no", True: "required", "if-present": "if-present"}
    if not isinstance(resume, (bool, str)) or resume not in modes:
        raise ValueError(f"invalid resume: {resume!r} (expected False, True or 'if-present')")
    env, iterations = _library_default("env", env), _library_default("iterations", iterations)
    seed, iterations, threads = _convert.whole("seed", seed), _convert.whole("iterations", iterations), _threads(threads)
    settings.update(iterations=iterations)
    spec, test_spec = _envs(env, test_env, env_name, env_workers, env_copies, settings)
    text = _convert.settings_json("meta_rl.train", settings)
    with _progress(verbose, f"{algo} seed {seed}", "it") as bar:
        hist = _metagrad.meta_rl_train(
            text, algo, seed, str(out), modes[resume], _observer(bar, iterations), threads, sampler, spec, test_spec
        )
    return _history_frame(hist)


def _threads(threads) -> Optional[int]:
    return None if threads is None else _convert.whole("threads", threads, 1)


def _grid_args(function, env, iterations, algos, seeds, at, settings):
    """The grid's settings as JSON, its algorithms, seeds, report points and iteration
    count, and the environment specs (see :func:`train`'s ``env``, ``test_env``,
    ``env_name``, ``env_workers``, ``env_copies``, taken from ``settings``), each checked
    once here."""
    env, iterations = _library_default("env", env), _library_default("iterations", iterations)
    iterations = _convert.whole("iterations", iterations)
    settings = dict(settings, iterations=iterations)
    env_args = {k: settings.pop(k, d) for k, d in (("test_env", None), ("env_name", None), ("env_workers", 0), ("env_copies", None))}
    specs = _envs(env, env_args["test_env"], env_args["env_name"], env_args["env_workers"], env_args["env_copies"], settings)
    text = _convert.settings_json(function, settings)
    seeds, at = _convert.wholes("seeds", seeds), _convert.wholes("at", at)
    return text, _convert.name_list("algos", algos), seeds, at, iterations, specs


def compare(
    *,
    env: Union[str, Callable, None] = None,
    algos: Union[str, Iterable[str]] = "all",
    seeds: Iterable[int] = (1, 2, 3),
    iterations: Optional[int] = None,
    at: Iterable[int] = (),
    out: str = "results/meta-rl-compare",
    verbose: bool = True,
    threads: Optional[int] = None,
    jobs: int = 1,
    **settings,
):
    """A grid of algorithms × seeds, as ``metagrad meta-rl compare``: runs or resumes every
    run in ``out/<algo>/seed<s>/``, then writes ``summary.csv``, ``paired.csv`` (paired
    differences between algorithms, seed by seed: ``pandas.read_csv(f"{out}/paired.csv")``),
    ``summary.md`` and the figure (``fig1d`` or ``fig2``), and returns the summary as a
    DataFrame. ``env`` (a name or a factory, with ``test_env``, ``env_name``,
    ``env_workers``, ``env_copies``) and ``threads``: as in :func:`train`. ``jobs``: runs at a time, each on
    max(1, threads / jobs) threads (the same files whatever the value). To spread the runs
    over a Ray cluster, see :mod:`metagrad.ray`."""
    import pandas as pd

    text, algos, seeds, at, iterations, (spec, test_spec) = _grid_args(
        "meta_rl.compare", env, iterations, algos, seeds, at, settings
    )
    jobs = _convert.whole("jobs", jobs, 1)
    with _progress(verbose, "meta-rl compare", "it") as bar:
        rows = _metagrad.meta_rl_compare(
            text, algos, seeds, at, str(out), _observer(bar, iterations),
            _threads(threads), jobs, spec, test_spec
        )
    return pd.DataFrame(json.loads(rows))


def summarise(
    *,
    env: Union[str, Callable, None] = None,
    algos: Union[str, Iterable[str]] = "all",
    seeds: Iterable[int] = (1, 2, 3),
    iterations: Optional[int] = None,
    at: Iterable[int] = (),
    out: str = "results/meta-rl-compare",
    **settings,
):
    """The summary files of a grid whose runs have all finished (e.g. run elsewhere), as
    :func:`compare` writes them after running; returns the summary as a DataFrame."""
    import pandas as pd

    text, algos, seeds, at, _, (spec, test_spec) = _grid_args(
        "meta_rl.summarise", env, iterations, algos, seeds, at, settings
    )
    return pd.DataFrame(json.loads(_metagrad.meta_rl_summarise(text, algos, seeds, at, str(out), spec, test_spec)))


def grid_runs(
    *,
    env: Union[str, Callable, None] = None,
    algos: Union[str, Iterable[str]] = "all",
    seeds: Iterable[int] = (1, 2, 3),
    iterations: Optional[int] = None,
    at: Iterable[int] = (),
    out: str = "results/meta-rl-compare",
    **settings,
) -> list:
    """The runs of a grid, validated as :func:`compare` validates them (every run's settings
    checked before anything runs), in the summary's order: a list of dicts ``{"algo",
    "seed", "out"}`` with each run's folder. Running each with ``train(algo=..., seed=...,
    out=..., resume="if-present", **same settings)`` (anywhere, in any order) and then
    :func:`summarise` gives what :func:`compare` gives."""
    text, algos, seeds, at, _, (spec, test_spec) = _grid_args(
        "meta_rl.compare", env, iterations, algos, seeds, at, settings
    )
    return json.loads(_metagrad.meta_rl_grid_runs(text, algos, seeds, at, str(out), spec, test_spec))


def load_progress(run_dir) -> "pandas.DataFrame":  # noqa: F821
    """A run folder's ``progress.csv`` as a DataFrame."""
    import pandas as pd

    return pd.read_csv(f"{run_dir}/progress.csv", float_precision="round_trip")


def load_grid(out) -> "pandas.DataFrame":  # noqa: F821
    """Every run of a grid folder (as :func:`compare` writes it: ``<algo>/seed<s>/``) in one
    long DataFrame: columns ``algo`` and ``seed``, then the run's ``progress.csv`` columns,
    one row per run and iteration, runs in the order of the grid's ``config.json`` if
    there is one (else by algorithm and seed). Iterations beyond the grid's budget are
    included (a run may have been continued further); a column some runs lack (ProMP's
    ``outer_loss_*`` for a TRPO run) is NaN in theirs. Every iteration's return is there, so
    e.g. ``load_grid(out).groupby(["algo", "iteration"]).post_return_1.agg(["mean", "sem"])``
    gives the curves of the figure."""
    import pandas as pd

    root = pathlib.Path(out)
    config = root / "config.json"
    if config.is_file():
        runs = [(r["algo"], int(r["seed"])) for r in json.loads(config.read_text())["settings"]["runs"]]
    else:
        found = [p.parent for p in root.glob("*/seed*/progress.csv")]
        runs = sorted((d.parent.name, int(d.name[4:])) for d in found if d.name[4:].isdigit())
    if not runs:
        raise ValueError(f"invalid out: {str(out)!r} holds no runs (no <algo>/seed<s>/progress.csv)")
    frames = []
    for algo, seed in runs:
        df = load_progress(root / algo / f"seed{seed}")
        df.insert(0, "seed", seed)
        df.insert(0, "algo", algo)
        frames.append(df)
    return pd.concat(frames, ignore_index=True)
