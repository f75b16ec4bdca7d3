"""The meta-task environments of metagrad, vectorised in Rust, with Gymnasium's API.

In Gymnasium's naming: ``make(name)`` gives one environment (a :class:`MetaTaskEnv`, a
``gymnasium.Env``); ``make_vec(name, num_envs)`` gives a :class:`MetaVectorEnv`, a
``gymnasium.vector.VectorEnv``: ``num_envs`` copies of one environment stepped as a batch in
Rust, in parallel (rayon threads, GIL released). The environments are registered with
Gymnasium under versioned ids (:data:`GYM_IDS`, e.g. ``metagrad/HalfCheetahRandDirec-v0``),
so that ``gymnasium.make`` and ``gymnasium.make_vec`` build them too (after
``import metagrad``). Tasks as in learn2learn: ``sample_tasks(num_tasks)``, ``set_task(task)``,
``get_task()``.

Environments (:data:`NAMES`): ``point-corners`` and ``point-corners-simple`` (2-D navigation
to a corner goal, docs/theory.md#environments) and the eight MuJoCo meta-tasks
``half-cheetah-rand-direc``,
``ant-rand-direc``, ``ant-rand-goal``, ``walker2d-rand-direc``, ``hopper-rand-params``,
``walker2d-rand-params``, ``humanoid-rand-direc-2d``, ``ant-rand-direc-2d`` (Gymnasium v5 robots, MuJoCo 3.17.0;
the robots' XML files are read from :func:`default_assets_dir`).

Conventions:

* Spaces follow Gymnasium's MuJoCo envs: observations ``Box(-inf, inf, (obs_dim,),
  float64)``; actions ``Box(low, high, (act_dim,), float32)`` in the environment's own
  units (HalfCheetah: [-1, 1]^6, the point envs: [-0.1, 0.1]^2). metagrad's policies present
  actions in [-10, 10]^d and the sampler maps them linearly onto these bounds; here actions
  go to the environment unchanged, as in Gymnasium (the point envs clip them, MuJoCo clamps
  the controls; the control costs see them unclipped). Actions may be of any real dtype
  that converts to float64 without loss (float32 included); they must be finite.
* Episodes are truncated after ``horizon`` steps (default 100, the meta-RL setup of
  docs/theory.md#meta-rl-setup;
  ``None``: never), as Gymnasium's ``TimeLimit`` does. Terminations are the envs' own (Ant,
  Walker2d, Hopper, Humanoid leave their healthy range; the point envs and HalfCheetah never
  terminate).
* Autoreset: Gymnasium's ``AutoresetMode.NEXT_STEP`` by default (``SAME_STEP`` and
  ``DISABLED`` available), with Gymnasium's semantics and ``info`` keys.
* Seeding: ``reset(seed=s)`` seeds copy i with ``s + i`` (as Gymnasium's vector envs), a list
  gives one seed (or None) per copy, ``reset()`` continues every copy's random stream (which
  autoresets draw from too). Copy i of a batch is bit-identical to a one-copy env reset with
  seed ``s + i``, whatever the number of threads. The envs' steps are deterministic.
* Tasks are float64 arrays of ``task_dim`` entries: ``[d]`` with d = ±1 (direction tasks),
  ``[gx, gy]`` (point goal, Ant goal), a unit ``[dx, dy]`` (Humanoid), or the exponents of the
  randomised physical parameters (Hopper, Walker2d). :meth:`MetaVectorEnv.sample_tasks` draws
  them as ``metagrad meta-rl`` does; :meth:`MetaVectorEnv.set_task` sets one task for all
  copies or one per copy.

Bad input raises ``ValueError`` (``TypeError`` for a wrong type) naming the argument and
the value: unknown names, wrong action shapes, non-finite actions, invalid tasks, seeds.
"""

from __future__ import annotations

import os
import pathlib
import secrets
import warnings
from typing import Any, Optional, Sequence, Union

import gymnasium
import numpy as np
from gymnasium import spaces
from gymnasium.vector import AutoresetMode, VectorEnv
from gymnasium.vector.utils import batch_space

from .. import _convert
from .. import _metagrad

__all__ = [
    "NAMES",
    "GYM_IDS",
    "DEFAULT_HORIZON",
    "MetaVectorEnv",
    "MetaTaskEnv",
    "make",
    "make_vec",
    "make_env",
    "default_assets_dir",
]

#: Names of the environments.
NAMES: tuple = tuple(_metagrad.ENV_NAMES)


def _gym_id(name: str) -> str:
    return "metagrad/" + "".join(part[:1].upper() + part[1:] for part in name.split("-")) + "-v0"


#: Gymnasium ids of the environments, by name (e.g. ``"half-cheetah-rand-direc"`` →
#: ``"metagrad/HalfCheetahRandDirec-v0"``).
GYM_IDS: dict = {name: _gym_id(name) for name in NAMES}

#: Default episode length (the meta-RL horizon of docs/theory.md#meta-rl-setup).
DEFAULT_HORIZON = 100

_ASSETS_ENV_VAR = "METAGRAD_MUJOCO_ASSETS"


def default_assets_dir() -> str:
    """The directory the MuJoCo robots' XML files are read from by default:
    ``$METAGRAD_MUJOCO_ASSETS`` if set, else the ``envs/mujoco/assets`` directory of the
    installed ``gymnasium`` package (the files Gymnasium's own v5 envs load)."""
    env = os.environ.get(_ASSETS_ENV_VAR)
    if env:
        return env
    return str(pathlib.Path(gymnasium.__file__).resolve().parent / "envs" / "mujoco" / "assets")


def _name(name) -> str:
    if not isinstance(name, str):
        raise TypeError(f"invalid name: expected a string, got {name!r} (type {type(name).__name__})")
    if name not in NAMES:
        raise ValueError(f"invalid name: unknown environment {name!r}; known: {', '.join(NAMES)}")
    return name


def _count(field: str, value, *, minimum: int = 1, none_ok: bool = False) -> Optional[int]:
    if value is None and none_ok:
        return None
    return _convert.whole(field, value, minimum)


def _seed(field: str, value, offset: int = 0) -> int:
    """A seed such that seed + offset (the last copy's) is still a u64."""
    return _convert.whole(field, value, 0, _convert.U64 - 1 - offset)


def _autoreset(mode) -> AutoresetMode:
    if isinstance(mode, AutoresetMode):
        return mode
    try:
        return AutoresetMode(mode)
    except ValueError:
        known = ", ".join(m.value for m in AutoresetMode)
        raise ValueError(f"invalid autoreset_mode: {mode!r}; expected an AutoresetMode or one of {known}") from None


class MetaVectorEnv(VectorEnv):
    """``num_envs`` copies of the metagrad environment ``name``, stepped as a batch in Rust
    (a ``gymnasium.vector.VectorEnv``; module docs for the conventions).

    Arguments: ``name`` (one of :data:`NAMES`); ``num_envs`` ≥ 1; ``horizon`` (steps before
    truncation, default 100; ``None``: no time limit); ``autoreset_mode`` (a
    ``gymnasium.vector.AutoresetMode`` or its value, default ``NEXT_STEP``); ``num_threads``
    (worker threads stepping the copies; default ``None``: all cores; results never depend on
    it); ``assets_dir`` (directory of the robots' XML files, default
    :func:`default_assets_dir`).

    Attributes as Gymnasium's: ``num_envs``, ``single_observation_space``,
    ``single_action_space``, ``observation_space``, ``action_space``, ``metadata``
    (``autoreset_mode``), plus ``name``, ``horizon``, ``task_dim`` and ``tasks``.
    """

    def __init__(
        self,
        name: str,
        num_envs: int = 1,
        *,
        horizon: Optional[int] = DEFAULT_HORIZON,
        autoreset_mode: Union[AutoresetMode, str] = AutoresetMode.NEXT_STEP,
        num_threads: Optional[int] = None,
        assets_dir: Union[str, os.PathLike, None] = None,
    ):
        name = _name(name)
        num_envs = _count("num_envs", num_envs)
        horizon = _count("horizon", horizon, none_ok=True)
        num_threads = _count("num_threads", num_threads, none_ok=True)
        mode = _autoreset(autoreset_mode)
        if assets_dir is None:
            assets = None if name.startswith("point-") else default_assets_dir()
        else:
            assets = os.fspath(assets_dir)
            if not os.path.isdir(assets):
                raise ValueError(f"invalid assets_dir: {assets!r} is not a directory")
        # Until the first seeded reset, copy i's stream starts from a random seed + i.
        self._env = _metagrad.VecEnv(name, num_envs, horizon, mode.value, secrets.randbits(63), assets, num_threads)
        self.name = name
        self.num_envs = num_envs
        self.horizon = horizon
        self.task_dim = self._env.task_dim
        self.autoreset_mode = mode
        self.metadata = {"autoreset_mode": mode, "render_modes": []}
        low, high = self._env.action_bounds
        self.single_action_space = spaces.Box(
            np.asarray(low, dtype=np.float32), np.asarray(high, dtype=np.float32), dtype=np.float32
        )
        self.single_observation_space = spaces.Box(-np.inf, np.inf, (self._env.obs_dim,), np.float64)
        self.action_space = batch_space(self.single_action_space, num_envs)
        self.observation_space = batch_space(self.single_observation_space, num_envs)

    def reset(
        self,
        *,
        seed: Union[int, Sequence[Optional[int]], None] = None,
        options: Optional[dict[str, Any]] = None,
    ) -> tuple[np.ndarray, dict[str, Any]]:
        """Resets every copy (or those of ``options["reset_mask"]``, a bool array of shape
        ``(num_envs,)``) and returns ``(observations, {})``, observations of shape
        ``(num_envs, obs_dim)`` (rows of copies not reset are their current observations).
        ``seed``: ``None`` continues the copies' random streams, an integer s seeds copy i with
        s + i, a list gives one seed (or None) per copy."""
        seeds = None
        if seed is not None:
            if isinstance(seed, (list, tuple)):
                if len(seed) != self.num_envs:
                    raise ValueError(
                        f"invalid seed: a list of seeds must have num_envs = {self.num_envs} entries, got {len(seed)}"
                    )
                seeds = [None if s is None else _seed(f"seed[{i}]", s) for i, s in enumerate(seed)]
            else:
                s = _seed("seed", seed, self.num_envs - 1)
                seeds = [s + i for i in range(self.num_envs)]
                super().reset(seed=s)
        mask = None
        if options:
            unknown = sorted(set(options) - {"reset_mask"})
            if unknown:
                raise ValueError(f"invalid options: unknown key(s) {unknown}; supported: 'reset_mask'")
            mask = options["reset_mask"]
            if not isinstance(mask, np.ndarray) or mask.dtype != np.bool_:
                raise TypeError(f"invalid options['reset_mask']: expected a numpy bool array, got {mask!r}")
            mask = np.ascontiguousarray(mask)
            if mask.shape != (self.num_envs,):
                raise ValueError(f"invalid options['reset_mask']: expected shape ({self.num_envs},), got {mask.shape}")
        return self._env.reset(seeds, mask), {}

    def step(self, actions) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, dict[str, Any]]:
        """One step of every copy with ``actions`` of shape ``(num_envs, act_dim)``; returns
        ``(observations, rewards, terminations, truncations, infos)`` as numpy arrays
        (float64, float64, bool, bool). ``infos`` is empty, except with ``SAME_STEP``
        autoreset when a copy was reset: then ``final_obs``/``_final_obs`` and
        ``final_info``/``_final_info`` as Gymnasium's vector envs give them."""
        a = _convert.floats("actions", actions, 2)
        obs, rewards, terminated, truncated, final = self._env.step(a)
        infos: dict[str, Any] = {}
        if final is not None and final[0].any():
            mask, final_obs = final
            objs = np.full(self.num_envs, None, dtype=object)
            for i in np.flatnonzero(mask):
                objs[i] = final_obs[i]
            infos = {"final_obs": objs, "_final_obs": mask, "final_info": {}, "_final_info": mask.copy()}
        return obs, rewards, terminated, truncated, infos

    @property
    def tasks(self) -> np.ndarray:
        """The copies' current tasks, shape ``(num_envs, task_dim)``."""
        return self._env.tasks()

    def set_task(self, task) -> None:
        """Sets the task of every copy: ``task`` of shape ``(task_dim,)`` for all copies, or
        ``(num_envs, task_dim)`` for one per copy (e.g. rows of :meth:`sample_tasks`). Every
        task is checked before any copy changes. Directions and goals take effect at once (in
        the rewards); a randomised-parameter task re-initialises the physics state: call
        :meth:`reset` afterwards to start episodes under the new tasks."""
        try:
            ndim = np.ndim(task)
        except ValueError as e:  # ragged nested lists
            raise ValueError(f"invalid task: not an array of numbers ({e})") from None
        t = _convert.floats("task", task, ndim)
        if t.ndim == 1:
            if t.shape != (self.task_dim,):
                raise ValueError(f"invalid task: expected shape ({self.task_dim},) for {self.name}, got {t.shape}")
            t = t[None, :]
        elif t.ndim != 2 or t.shape != (self.num_envs, self.task_dim):
            raise ValueError(
                f"invalid task: expected shape ({self.task_dim},) or ({self.num_envs}, {self.task_dim}) "
                f"for {self.num_envs} copies of {self.name}, got {t.shape}"
            )
        self._env.set_tasks(np.ascontiguousarray(t))

    def sample_tasks(self, num_tasks: int, seed: Optional[int] = None, *, iteration: int = 0) -> np.ndarray:
        """Tasks of this environment's task distribution (learn2learn's ``sample_tasks``).

        Args:
            num_tasks: How many tasks (≥ 0).
            seed: With a seed, exactly the tasks ``metagrad meta-rl --env <name> --seed <seed>
                --tasks <num_tasks>`` trains on at meta-iteration ``iteration``; ``None``:
                drawn from the environment's own random stream (``np_random``, seeded by
                ``reset(seed=...)``).
            iteration: The meta-iteration whose tasks a seed gives.

        Returns:
            A float64 array of shape ``(num_tasks, task_dim)``; its rows go to
            :meth:`set_task`.
        """
        n = _count("num_tasks", num_tasks, minimum=0)
        if seed is None:
            seed = int(self.np_random.integers(0, 2**63))
        return self._env.sample_tasks(n, _seed("seed", seed), _seed("iteration", iteration))

    def get_task(self) -> np.ndarray:
        """The copies' current tasks (learn2learn's ``get_task``; the same as :attr:`tasks`).

        Returns:
            A float64 array of shape ``(num_envs, task_dim)``.
        """
        return self.tasks

    def __repr__(self) -> str:
        return f"MetaVectorEnv({self.name}, num_envs={self.num_envs}, horizon={self.horizon})"


class MetaTaskEnv(gymnasium.Env):
    """One copy of the metagrad environment ``name`` as a ``gymnasium.Env`` (the same engine
    as :class:`MetaVectorEnv` with one copy and no autoreset; truncation after ``horizon``
    steps built in, as ``TimeLimit``). ``reset(seed=s)`` gives the same episodes as copy 0 of
    a vector env reset with seed s. Also offers ``tasks``, ``set_task`` and ``sample_tasks``."""

    metadata = {"render_modes": []}

    def __init__(
        self,
        name: str,
        *,
        horizon: Optional[int] = DEFAULT_HORIZON,
        assets_dir: Union[str, os.PathLike, None] = None,
    ):
        self._vec = MetaVectorEnv(
            name, 1, horizon=horizon, autoreset_mode=AutoresetMode.DISABLED, num_threads=1, assets_dir=assets_dir
        )
        self.name = self._vec.name
        self.horizon = self._vec.horizon
        self.task_dim = self._vec.task_dim
        self.action_space = self._vec.single_action_space
        self.observation_space = self._vec.single_observation_space

    def reset(self, *, seed: Optional[int] = None, options: Optional[dict[str, Any]] = None):
        """Starts an episode; returns ``(observation, {})``."""
        super().reset(seed=seed)
        if options:
            raise ValueError(f"invalid options: unknown key(s) {sorted(options)}")
        obs, info = self._vec.reset(seed=seed)
        return obs[0], info

    def step(self, action):
        """One step; returns ``(observation, reward, terminated, truncated, {})``."""
        a = _convert.floats("action", action, 1)
        obs, rewards, terminated, truncated, _ = self._vec.step(a[None, :])
        return obs[0], float(rewards[0]), bool(terminated[0]), bool(truncated[0]), {}

    @property
    def tasks(self) -> np.ndarray:
        """The current task, shape ``(task_dim,)``."""
        return self._vec.tasks[0]

    def set_task(self, task) -> None:
        """Sets the task (shape ``(task_dim,)``); see :meth:`MetaVectorEnv.set_task`."""
        self._vec.set_task(task)

    def sample_tasks(self, num_tasks: int, seed: Optional[int] = None, *, iteration: int = 0) -> np.ndarray:
        """Tasks of this environment's task distribution (learn2learn's ``sample_tasks``).

        Args:
            num_tasks: How many tasks (≥ 0).
            seed: As in :meth:`MetaVectorEnv.sample_tasks`; ``None``: drawn from this
                environment's own random stream (``np_random``).
            iteration: The meta-iteration whose tasks a seed gives.

        Returns:
            A float64 array of shape ``(num_tasks, task_dim)``; its rows go to :meth:`set_task`.
        """
        if seed is None:
            seed = int(self.np_random.integers(0, 2**63))
        return self._vec.sample_tasks(num_tasks, seed, iteration=iteration)

    def get_task(self) -> np.ndarray:
        """The current task (learn2learn's ``get_task``; the same as :attr:`tasks`).

        Returns:
            A float64 array of shape ``(task_dim,)``.
        """
        return self.tasks

    def __repr__(self) -> str:
        return f"MetaTaskEnv({self.name}, horizon={self.horizon})"


#: Keyword arguments that only the vector environment takes.
_VECTOR_ONLY = ("num_envs", "autoreset_mode", "num_threads")


def make(name: str, *args, **kwargs) -> MetaTaskEnv:
    """One copy of the environment ``name`` as a ``gymnasium.Env`` (Gymnasium's ``make``).

    Args:
        name: One of :data:`NAMES`.
        **kwargs: ``horizon`` (steps before truncation, default 100; ``None``: no time
            limit) and ``assets_dir`` (the robots' XML files, default
            :func:`default_assets_dir`).

    Returns:
        A :class:`MetaTaskEnv`.

    The earlier form ``make(name, num_envs)`` (or with ``num_envs``, ``autoreset_mode`` or
    ``num_threads`` as keywords) still gives the vector environment, with a
    ``DeprecationWarning``: use :func:`make_vec` for it.
    """
    if args or any(k in kwargs for k in _VECTOR_ONLY):
        warnings.warn(
            "metagrad.envs.make(name, num_envs) is deprecated: make(name) gives one environment, "
            "make_vec(name, num_envs) the vector environment",
            DeprecationWarning,
            stacklevel=2,
        )
        return MetaVectorEnv(name, *args, **kwargs)
    return MetaTaskEnv(name, **kwargs)


def make_vec(name: str, num_envs: int = 1, **kwargs) -> MetaVectorEnv:
    """``num_envs`` copies of the environment ``name`` stepped as a batch (Gymnasium's
    ``make_vec``).

    Args:
        name: One of :data:`NAMES`.
        num_envs: Number of copies (≥ 1).
        **kwargs: ``horizon``, ``autoreset_mode``, ``num_threads``, ``assets_dir`` (see
            :class:`MetaVectorEnv`).

    Returns:
        A :class:`MetaVectorEnv`.
    """
    return MetaVectorEnv(name, num_envs, **kwargs)


def make_env(name: str, **kwargs) -> MetaTaskEnv:
    """Deprecated alias of :func:`make` (one environment).

    Args:
        name: One of :data:`NAMES`.
        **kwargs: As :func:`make`.

    Returns:
        A :class:`MetaTaskEnv`.
    """
    warnings.warn(
        "metagrad.envs.make_env(name) is deprecated: use metagrad.envs.make(name)", DeprecationWarning, stacklevel=2
    )
    return MetaTaskEnv(name, **kwargs)


def _register() -> None:
    """Registers every environment with Gymnasium (:data:`GYM_IDS`), once."""
    for name, env_id in GYM_IDS.items():
        if env_id not in gymnasium.registry:
            gymnasium.register(
                env_id,
                entry_point="metagrad.envs:MetaTaskEnv",
                vector_entry_point="metagrad.envs:MetaVectorEnv",
                kwargs={"name": name},
            )


_register()
