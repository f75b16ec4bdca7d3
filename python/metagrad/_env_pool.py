"""Copies of a user's Gymnasium meta-task, stepped as one batch for the Rust sampler.

The engine (``metagrad::envs::external``) drives a :class:`Pool` through five calls —
``draw_tasks(n, seed)``, ``start(tasks, seeds)``, ``step(actions)``, ``reset(copies, seeds)``
and ``close()`` — each for a whole batch of copies at once, so that Python is entered once
per batch step, not once per copy. The copies live in this process (``workers=0``) or are
spread over worker processes (``workers=W``: contiguous blocks of copies, stepped
concurrently; the factory travels to them by cloudpickle, so a factory defined in a
notebook works).

The contract an environment follows (the ProMP / learn2learn ``MetaEnv`` one):

* the factory is a picklable callable returning a ``gymnasium.Env`` with flat ``Box``
  observation and action spaces (finite action bounds) and the methods
  ``sample_tasks(num_tasks) -> list`` and ``set_task(task)`` (``get_task()`` is optional);
  tasks are opaque Python objects (picklable when worker processes are used);
* ``sample_tasks`` draws its randomness from ``self.np_random``: before every call metagrad
  assigns it a fresh ``numpy.random.Generator`` seeded from the run's seed and the
  iteration. Two draws from the same seed must give the same tasks (checked when the pool
  opens);
* after ``set_task(task)`` and ``reset(seed=s)`` an episode is a function of the task, ``s``
  and the actions alone (every episode is reset with a seed of its own, drawn from the run's
  seed).

Errors of the environment (a missing method, an exception, an observation of the wrong
shape or dtype, a non-finite reward) become ``ValueError``s that name the environment, the
method, the copy and the value; a worker process that dies is reported with its exit code.
"""

from __future__ import annotations

import multiprocessing as mp
import pickle
import signal
import traceback
import weakref
from typing import Any, Callable, Optional

import numpy as np

#: Seconds between checks that worker processes are alive while waiting for them.
_POLL_S = 0.2


class EnvError(ValueError):
    """A user's environment misbehaved (the message names the environment, the method and
    the value)."""


def _method(env, name: str, env_name: str):
    """``env``'s method ``name``, found through Gymnasium wrappers."""
    getter = getattr(env, "get_wrapper_attr", None)
    try:
        m = getter(name) if getter is not None else getattr(env, name)
    except AttributeError:
        m = None
    if not callable(m):
        raise EnvError(
            f"env {env_name!r}: the environment has no method {name}(); a meta-task needs "
            f"sample_tasks(num_tasks) and set_task(task) (the ProMP / learn2learn contract)"
        )
    return m


def _call(env_name: str, what: str, f: Callable, *args, **kwargs):
    """``f(*args)``, with any exception re-raised as :class:`EnvError` naming ``what``."""
    try:
        return f(*args, **kwargs)
    except EnvError:
        raise
    except Exception as e:  # the user's code: anything may come out
        raise EnvError(f"env {env_name!r}: {what} raised {type(e).__name__}({e})") from e


def _spaces(env, env_name: str):
    """(obs_dim, act_dim, low, high, action dtype) of ``env``'s flat Box spaces."""
    from gymnasium import spaces

    obs, act = env.observation_space, env.action_space
    for what, sp in (("observation_space", obs), ("action_space", act)):
        if not isinstance(sp, spaces.Box) or len(sp.shape) != 1:
            raise EnvError(f"env {env_name!r}: {what} must be a flat gymnasium.spaces.Box, got {sp!r}")
    low, high = np.asarray(act.low, dtype=np.float64), np.asarray(act.high, dtype=np.float64)
    if not (np.isfinite(low).all() and np.isfinite(high).all()):
        raise EnvError(
            f"env {env_name!r}: action_space bounds must be finite (policy actions are mapped "
            f"linearly onto them), got low={low.tolist()}, high={high.tolist()}"
        )
    return int(obs.shape[0]), int(act.shape[0]), low, high, act.dtype


def _obs(env_name: str, what: str, obs, obs_dim: int, copy: Optional[int]) -> np.ndarray:
    """An observation checked for shape and dtype, as float64."""
    where = f"{what}" + ("" if copy is None else f" (copy {copy})")
    a = np.asarray(obs)
    if a.dtype.kind not in "fiu" or a.dtype.kind == "b":
        raise EnvError(f"env {env_name!r}: {where} returned an observation of dtype {a.dtype}, expected real numbers")
    if a.shape != (obs_dim,):
        raise EnvError(
            f"env {env_name!r}: {where} returned an observation of shape {a.shape}, "
            f"the observation_space has shape ({obs_dim},)"
        )
    return a.astype(np.float64, copy=False)


class _Copies:
    """The environment copies of one process, with the calls of :class:`Pool` on them."""

    def __init__(self, factory: Callable, env_name: str):
        self.factory = factory
        self.env_name = env_name
        self.envs: list = []
        self.n = 0
        self.obs_dim = self.act_dim = 0
        self.act_dtype = np.float64
        self.success = False

    def _env(self, i: int):
        while len(self.envs) <= i:
            env = _call(self.env_name, "the factory", self.factory)
            self.obs_dim, self.act_dim, _, _, self.act_dtype = _spaces(env, self.env_name)
            self.envs.append(env)
        return self.envs[i]

    def configure(self, success: bool) -> None:
        self.success = success

    def _reset(self, i: int, seed: int) -> np.ndarray:
        env = self.envs[i]
        out = _call(self.env_name, f"reset(seed={seed}) (copy {i})", env.reset, seed=int(seed))
        obs = out[0] if isinstance(out, tuple) else out
        return _obs(self.env_name, "reset", obs, self.obs_dim, i)

    def start(self, tasks: list, seeds: list, pickled: bool) -> np.ndarray:
        self.n = len(tasks)
        rows = []
        for i, (task, seed) in enumerate(zip(tasks, seeds)):
            env = self._env(i)
            if pickled:
                task = pickle.loads(task)
            set_task = _method(env, "set_task", self.env_name)
            _call(self.env_name, f"set_task({task!r}) (copy {i})", set_task, task)
            rows.append(self._reset(i, seed))
        obs = np.stack(rows) if rows else np.empty((0, self.obs_dim))
        return obs

    def reset(self, copies: list, seeds: list) -> np.ndarray:
        return np.stack([self._reset(i, s) for i, s in zip(copies, seeds)]) if copies else np.empty((0, self.obs_dim))

    def step(self, actions: np.ndarray):
        n, od = self.n, self.obs_dim
        shape = (od,)
        obs = np.empty((n, od))
        rew = np.empty(n)
        term = np.zeros(n, dtype=bool)
        trunc = np.zeros(n, dtype=bool)
        succ = np.zeros(n, dtype=bool)
        acts = actions.astype(self.act_dtype, copy=False)
        envs, success, ndarray = self.envs, self.success, np.ndarray
        for i in range(n):
            try:
                o, r, te, tr, info = envs[i].step(acts[i])
            except Exception as e:
                raise EnvError(
                    f"env {self.env_name!r}: step (copy {i}) raised {type(e).__name__}({e}) "
                    f"on action {acts[i].tolist()}"
                ) from e
            # The common case (a real ndarray of the right shape) without a function call.
            if type(o) is ndarray and o.shape == shape and o.dtype.kind in "fiu":
                obs[i] = o
            else:
                obs[i] = _obs(self.env_name, "step", o, od, i)
            try:
                rew[i] = r
            except (TypeError, ValueError):
                raise EnvError(f"env {self.env_name!r}: step (copy {i}) returned a reward that is not a number: {r!r}") from None
            term[i] = te
            trunc[i] = tr
            if success:
                succ[i] = info.get("success", 0)
        return obs, rew, term, trunc, succ

    def close(self) -> None:
        for env in self.envs:
            try:
                env.close()
            except Exception:  # closing is best effort
                pass
        self.envs = []


def _worker(conn, payload: bytes, env_name: str) -> None:
    """A worker process: builds its copies from the factory and serves the pool's calls."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent handles Ctrl-C
    import cloudpickle  # noqa: F401 (gymnasium's dependency; unpickles the factory)

    copies = None
    try:
        copies = _Copies(pickle.loads(payload), env_name)
        while True:
            try:
                cmd, args = conn.recv()
            except EOFError:  # the parent is gone
                return
            if cmd == "close":
                conn.send(("ok", None))
                return
            try:
                conn.send(("ok", getattr(copies, cmd)(*args)))
            except EnvError as e:
                conn.send(("err", str(e)))
            except Exception as e:
                conn.send(("err", f"env {env_name!r}: worker failed in {cmd}: {type(e).__name__}({e})\n{traceback.format_exc()}"))
    except KeyboardInterrupt:
        return
    finally:
        if copies is not None:
            copies.close()


class _Remote:
    """One worker process and its pipe."""

    def __init__(self, ctx, payload: bytes, env_name: str, index: int):
        self.conn, child = ctx.Pipe()
        self.proc = ctx.Process(target=_worker, args=(child, payload, env_name), daemon=True,
                                name=f"metagrad-env-{index}")
        self.proc.start()
        child.close()
        self.index = index
        self.env_name = env_name

    def send(self, cmd: str, *args) -> None:
        try:
            self.conn.send((cmd, args))
        except (BrokenPipeError, OSError):
            self._died()

    def recv(self):
        while not self.conn.poll(_POLL_S):
            if not self.proc.is_alive():
                self._died()
        try:
            status, value = self.conn.recv()
        except (EOFError, OSError):
            self._died()
        if status == "err":
            raise EnvError(value)
        return value

    def _died(self):
        self.proc.join(1.0)
        raise EnvError(
            f"env {self.env_name!r}: worker process {self.index} (pid {self.proc.pid}) exited "
            f"unexpectedly (exit code {self.proc.exitcode})"
        )

    def close(self) -> None:
        if self.proc.is_alive():
            try:
                self.conn.send(("close", ()))
                if self.conn.poll(5.0):
                    self.conn.recv()
            except (BrokenPipeError, EOFError, OSError):
                pass
            self.proc.join(5.0)
        if self.proc.is_alive():
            self.proc.kill()
            self.proc.join(5.0)
        self.conn.close()


def _shutdown(remotes: list) -> None:
    for r in remotes:
        try:
            r.close()
        except Exception:
            pass


def _draw(env, env_name: str, n: int, seed: int) -> list:
    """``n`` tasks from ``env.sample_tasks`` with ``env.np_random`` seeded by ``seed``."""
    sample = _method(env, "sample_tasks", env_name)
    env.np_random = np.random.Generator(np.random.PCG64(seed))
    tasks = _call(env_name, f"sample_tasks({n})", sample, n)
    try:
        tasks = list(tasks)
    except TypeError:
        raise EnvError(f"env {env_name!r}: sample_tasks({n}) returned {tasks!r}, expected a list of tasks") from None
    if len(tasks) != n:
        raise EnvError(f"env {env_name!r}: sample_tasks({n}) returned {len(tasks)} tasks, expected {n}")
    return tasks


def _pickle_tasks(env_name: str, tasks: list) -> list:
    out = []
    for k, t in enumerate(tasks):
        try:
            out.append(pickle.dumps(t))
        except Exception as e:
            raise EnvError(
                f"env {env_name!r}: task #{k} of sample_tasks ({t!r}) cannot be pickled for a "
                f"worker process: {type(e).__name__}({e}); use workers=0 or picklable tasks"
            ) from e
    return out


class Spec:
    """A user's meta-task as the engine sees it: checked once here (spaces, methods,
    reproducible task draws, one reset and one step of the first task), then opened as a
    :class:`Pool` by every sampler of a run."""

    def __init__(self, factory: Callable, *, name: str, settings: Any = None, workers: int = 0,
                 copies: Optional[int] = None):
        if not callable(factory):
            raise TypeError(f"invalid env: expected an environment name or a callable returning a gymnasium.Env, got {factory!r}")
        self.factory, self.name, self.settings = factory, name, settings
        self.workers, self.copies = workers, copies
        env = _call(name, "the factory", factory)
        self.obs_dim, self.act_dim, self.low, self.high, _ = _spaces(env, name)
        a, b = _draw(env, name, 2, 0), _draw(env, name, 2, 0)
        try:
            same = pickle.dumps(a) == pickle.dumps(b)
        except Exception:
            if workers > 0:
                _pickle_tasks(name, a)
            same = True  # tasks that do not pickle cannot be compared: trusted

        if not same:
            raise EnvError(
                f"env {name!r}: sample_tasks is not reproducible: two draws from the same seed "
                f"gave {a!r} and {b!r}; draw the tasks from self.np_random (metagrad seeds it "
                f"before every call), not from numpy's or Python's global generators"
            )
        _call(name, f"set_task({a[0]!r})", _method(env, "set_task", name), a[0])
        out = _call(name, "reset(seed=0)", env.reset, seed=0)
        _obs(name, "reset", out[0] if isinstance(out, tuple) else out, self.obs_dim, None)
        mid = ((self.low + self.high) / 2).astype(env.action_space.dtype)
        step = _call(name, "step", env.step, mid)
        if not (isinstance(step, tuple) and len(step) == 5):
            raise EnvError(
                f"env {name!r}: step returned {type(step).__name__} of {len(step) if isinstance(step, tuple) else '?'} "
                f"items, expected Gymnasium's (obs, reward, terminated, truncated, info)"
            )
        _obs(name, "step", step[0], self.obs_dim, None)
        info = step[4] if isinstance(step[4], dict) else {}
        self.success = "success" in info
        _call(name, "close", env.close)

    def info(self) -> dict:
        """The description the engine reads (``metagrad::envs::EnvInfo``)."""
        import json

        return {
            "name": self.name,
            "obs_dim": self.obs_dim,
            "act_dim": self.act_dim,
            "action_low": self.low.tolist(),
            "action_high": self.high.tolist(),
            "reports_success": self.success,
            "settings": json.dumps(self.settings),
        }

    def open(self) -> "Pool":
        return Pool(self)


class Pool:
    """Copies of one meta-task stepped as a batch (see the module docs), in this process or
    in ``spec.workers`` worker processes."""

    def __init__(self, spec: Spec):
        self.name = spec.name
        self.spec = spec
        self.task_env = _call(spec.name, "the factory", spec.factory)
        self.tasks: list = []
        self.pickled: list = []
        self.n = 0
        self.remotes: list = []
        self.local: Optional[_Copies] = None
        if spec.workers > 0:
            import cloudpickle

            payload = cloudpickle.dumps(spec.factory)
            ctx = mp.get_context("spawn")
            self.remotes = [_Remote(ctx, payload, spec.name, w) for w in range(spec.workers)]
            self._finalizer = weakref.finalize(self, _shutdown, self.remotes)
            for r in self.remotes:
                r.send("configure", spec.success)
            for r in self.remotes:
                r.recv()
        else:
            self.local = _Copies(spec.factory, spec.name)
            self.local.configure(spec.success)
        self.bounds: list = []

    def max_copies(self) -> int:
        if self.spec.copies is not None:
            return self.spec.copies
        return 0  # the engine's default: every task of a round at once

    def draw_tasks(self, n: int, seed: int) -> None:
        self.tasks = _draw(self.task_env, self.name, n, seed)
        self.pickled = _pickle_tasks(self.name, self.tasks) if self.remotes else []

    def _blocks(self, n: int) -> list:
        w = len(self.remotes)
        return [(i * n // w, (i + 1) * n // w) for i in range(w)]

    def start(self, tasks: list, seeds: list) -> np.ndarray:
        for t in tasks:
            if not 0 <= t < len(self.tasks):
                raise EnvError(f"env {self.name!r}: task index {t} is not one of the {len(self.tasks)} drawn")
        self.n = len(tasks)
        if self.local is not None:
            return self.local.start([self.tasks[t] for t in tasks], seeds, False)
        self.bounds = self._blocks(self.n)
        for r, (a, b) in zip(self.remotes, self.bounds):
            r.send("start", [self.pickled[t] for t in tasks[a:b]], seeds[a:b], True)
        parts = [r.recv() for r in self.remotes]
        return np.concatenate([p.reshape(-1, self.spec.obs_dim) for p in parts])

    def reset(self, copies: list, seeds: list) -> np.ndarray:
        if self.local is not None:
            return self.local.reset(copies, seeds)
        out = np.empty((len(copies), self.spec.obs_dim))
        jobs = []
        for r, (a, b) in zip(self.remotes, self.bounds):
            idx = [j for j, c in enumerate(copies) if a <= c < b]
            if idx:
                r.send("reset", [copies[j] - a for j in idx], [seeds[j] for j in idx])
                jobs.append((r, idx))
        for r, idx in jobs:
            out[idx] = r.recv()
        return out

    def step(self, actions: np.ndarray):
        if self.local is not None:
            return self.local.step(actions)
        for r, (a, b) in zip(self.remotes, self.bounds):
            r.send("step", actions[a:b])
        parts = [r.recv() for r in self.remotes]
        return tuple(np.concatenate([p[k] for p in parts]) for k in range(5))

    def close(self) -> None:
        if self.local is not None:
            self.local.close()
        if self.remotes:
            self._finalizer()
        try:
            self.task_env.close()
        except Exception:
            pass
