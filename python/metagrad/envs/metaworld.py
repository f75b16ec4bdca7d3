"""Meta-World's ML1 and ML10 benchmarks as meta-tasks for :func:`metagrad.meta_rl.train`.

    from metagrad import meta_rl
    from metagrad.envs import metaworld as mw

    train = mw.ml1("reach-v3")                       # the meta-training tasks
    meta_rl.train(env=train, test_env=train.test_split(), algo="promp",
                  tasks=20, rollouts=10, horizon=mw.HORIZON, test_every=10, env_workers=2)

The environments are built from Meta-World's own benchmark objects
(``metaworld.ML1(task_name, seed=...)``, ``metaworld.ML10(seed=...)``): their
``train_classes`` / ``train_tasks`` for the meta-training split and ``test_classes`` /
``test_tasks`` for the held-out split (ML1: 50 goal positions of one task each; ML10: 10
training tasks and 5 held-out tasks of 50 goal positions each). Meta-World's registered
``gymnasium.make_vec("Meta-World/ML1-*")`` entry points are not used.

* ``sample_tasks(n)`` draws from ``self.np_random`` (which the engine seeds): ML1 uniformly
  among the split's tasks; ML10 balanced over the split's task classes (task k is of class
  k mod C, drawn uniformly among that class's tasks), as Meta-World's own ML10 task sampling
  cycles through the classes.
* ``set_task(task)`` switches to an environment of the task's class (one per class, built
  when first needed) and sets the task; ``reset`` and ``step`` are Meta-World's. An episode
  ends at Meta-World's ``max_path_length`` (500 steps, :data:`HORIZON`), where Meta-World
  truncates it. Success is Meta-World's metric: ``info["success"]``; metagrad counts an
  episode as a success when some step reports it.
* ``reward_function_version`` ("v2", Meta-World's default, or "v1") is passed to every
  environment and recorded, with the benchmark, the task, the split, the benchmark's seed
  and Meta-World's version, in a run's ``config.json`` (``env_config``): a run resumed with
  other settings is refused.

Requires ``metaworld==3.1.1`` (``pip install "metagrad[metaworld]"``). Meta-World pins its
own MuJoCo Python package (3.3.0); metagrad carries the engine it links (3.17.0) inside its
package, so both live in one environment.
"""

from __future__ import annotations

import functools
from importlib.metadata import version as _version
from typing import Any, Optional

import gymnasium
import numpy as np

try:
    import metaworld as _metaworld
except ImportError as e:  # pragma: no cover - depends on the environment
    raise ImportError(
        "metagrad.envs.metaworld needs Meta-World: pip install 'metagrad[metaworld]' "
        "(metaworld==3.1.1)"
    ) from e

__all__ = ["HORIZON", "BENCHMARKS", "MetaWorldFactory", "MetaWorldMetaTask", "ml1", "ml10"]

#: Meta-World's episode length (``max_path_length``).
HORIZON = 500

#: The benchmarks offered here.
BENCHMARKS = ("ML1", "ML10")

#: Environment copies a factory suggests stepping at once (≈ 20 MB each).
DEFAULT_COPIES = 50


@functools.lru_cache(maxsize=8)
def _benchmark(kind: str, task_name: Optional[str], seed: int):
    """Meta-World's benchmark object (built once per process: it generates the goals)."""
    if kind == "ML1":
        return _metaworld.ML1(task_name, seed=seed)
    return _metaworld.ML10(seed=seed)


class MetaWorldFactory:
    """A picklable factory of :class:`MetaWorldMetaTask` for one benchmark split (see the
    module docs); pass it as ``env`` (or ``test_env``) of :func:`metagrad.meta_rl.train`.

    Attributes read by metagrad: ``env_name`` (the name runs record), ``env_settings``
    (recorded as ``env_config``) and ``max_copies`` (copies stepped at once unless
    ``env_copies`` is given)."""

    def __init__(self, kind: str, task_name: Optional[str], split: str, seed: int,
                 reward_function_version: str):
        if kind not in BENCHMARKS:
            raise ValueError(f"invalid benchmark: {kind!r} (expected one of {', '.join(BENCHMARKS)})")
        if split not in ("train", "test"):
            raise ValueError(f"invalid split: {split!r} (expected 'train' or 'test')")
        if reward_function_version not in ("v1", "v2"):
            raise ValueError(f"invalid reward_function_version: {reward_function_version!r} (expected 'v1' or 'v2')")
        if kind == "ML1" and task_name not in _metaworld.ML1.ENV_NAMES:
            raise ValueError(
                f"invalid task_name: {task_name!r} is not a Meta-World v3 task "
                f"(e.g. {', '.join(_metaworld.ML1.ENV_NAMES[:4])}, …)"
            )
        if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
            raise ValueError(f"invalid seed: expected a non-negative integer, got {seed!r}")
        self.kind, self.task_name, self.split = kind, task_name, split
        self.seed, self.reward_function_version = seed, reward_function_version
        self.max_copies = DEFAULT_COPIES

    @property
    def env_name(self) -> str:
        base = f"metaworld/{self.kind}" + (f"-{self.task_name}" if self.kind == "ML1" else "")
        return base if self.split == "train" else f"{base}/test"

    @property
    def env_settings(self) -> dict:
        return {
            "benchmark": self.kind,
            "task_name": self.task_name,
            "split": self.split,
            "benchmark_seed": self.seed,
            "reward_function_version": self.reward_function_version,
            "max_path_length": HORIZON,
            "metaworld": _version("metaworld"),
        }

    def test_split(self) -> "MetaWorldFactory":
        """The same benchmark's held-out split (for ``test_env``)."""
        return MetaWorldFactory(self.kind, self.task_name, "test", self.seed, self.reward_function_version)

    def __call__(self) -> "MetaWorldMetaTask":
        return MetaWorldMetaTask(self)

    def __repr__(self) -> str:
        return f"MetaWorldFactory({self.env_name!r}, seed={self.seed}, reward_function_version={self.reward_function_version!r})"


class MetaWorldMetaTask(gymnasium.Env):
    """One split of a Meta-World benchmark as a Gymnasium meta-task (module docs)."""

    metadata = {"render_modes": []}

    def __init__(self, factory: MetaWorldFactory):
        b = _benchmark(factory.kind, factory.task_name, factory.seed)
        train = factory.split == "train"
        self._classes = b.train_classes if train else b.test_classes
        tasks = b.train_tasks if train else b.test_tasks
        self._names = list(self._classes)
        self._by_class = {n: [t for t in tasks if t.env_name == n] for n in self._names}
        self._tasks = tasks
        self._kind = factory.kind
        self._rfv = factory.reward_function_version
        self._envs: dict = {}
        first = self._env_for(self._names[0])
        self.observation_space = first.observation_space
        self.action_space = first.action_space
        self._current = None
        self._task = None

    def _env_for(self, name: str):
        env = self._envs.get(name)
        if env is None:
            env = self._classes[name](reward_function_version=self._rfv)
            self._envs[name] = env
        return env

    def sample_tasks(self, num_tasks: int) -> list:
        """``num_tasks`` tasks of the split, from ``self.np_random`` (module docs)."""
        rng = self.np_random
        if self._kind == "ML1":
            return [self._tasks[i] for i in rng.integers(0, len(self._tasks), size=num_tasks)]
        out = []
        for k in range(num_tasks):
            pool = self._by_class[self._names[k % len(self._names)]]
            out.append(pool[int(rng.integers(0, len(pool)))])
        return out

    def set_task(self, task) -> None:
        if getattr(task, "env_name", None) not in self._classes:
            raise ValueError(f"invalid task: {task!r} is not a task of this split ({', '.join(self._names)})")
        env = self._env_for(task.env_name)
        env.set_task(task)
        self._current, self._task = env, task

    def get_task(self):
        return self._task

    def reset(self, *, seed: Optional[int] = None, options: Optional[dict] = None):
        super().reset(seed=seed)
        if self._current is None:
            raise RuntimeError("set_task(task) must be called before reset()")
        return self._current.reset()

    def step(self, action) -> tuple[Any, ...]:
        return self._current.step(action)

    def close(self) -> None:
        for env in self._envs.values():
            env.close()
        self._envs = {}


def ml1(task_name: str, *, split: str = "train", seed: int = 0, reward_function_version: str = "v2") -> MetaWorldFactory:
    """Meta-World's ML1 benchmark of one task (e.g. ``"reach-v3"``, ``"push-v3"``,
    ``"pick-place-v3"``): 50 goal positions for meta-training, 50 held out.

    Args:
        task_name: a Meta-World v3 task name.
        split: ``"train"`` or ``"test"`` (the held-out goals).
        seed: the seed of Meta-World's benchmark object (which goals it generates).
        reward_function_version: ``"v2"`` (Meta-World's default) or ``"v1"``.

    Returns:
        A picklable factory for ``meta_rl.train(env=...)``.
    """
    return MetaWorldFactory("ML1", task_name, split, seed, reward_function_version)


def ml10(*, split: str = "train", seed: int = 0, reward_function_version: str = "v2") -> MetaWorldFactory:
    """Meta-World's ML10 benchmark: 10 meta-training tasks and 5 held-out tasks, 50 goal
    positions each. Arguments and result as :func:`ml1`."""
    return MetaWorldFactory("ML10", None, split, seed, reward_function_version)
