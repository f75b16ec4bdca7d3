"""Meta-tasks of the test suite's own, written as a user would write them: Gymnasium
environments with ``sample_tasks(num_tasks)`` and ``set_task(task)``, and faulty variants
for the error tests. Importable by worker processes (module-level classes)."""

from __future__ import annotations

import numpy as np
import gymnasium
from gymnasium import spaces


class PointGoal(gymnasium.Env):
    """A point in the plane moved by velocity actions towards a goal (the task, drawn
    uniformly in [-1, 1]^2). Reward: minus the distance; the episode terminates within 0.05
    of the goal; ``info["success"]`` within 0.2. Observations are float32, as many
    Gymnasium environments' are."""

    def __init__(self, limit: int = 0):
        self.observation_space = spaces.Box(-np.inf, np.inf, (4,), np.float32)
        self.action_space = spaces.Box(-0.1, 0.1, (2,), np.float32)
        self.goal = np.zeros(2)
        self.pos = np.zeros(2)
        self.limit = limit  # truncate after this many steps (0: never)
        self.t = 0

    def sample_tasks(self, num_tasks):
        return [g for g in self.np_random.uniform(-1.0, 1.0, size=(num_tasks, 2))]

    def set_task(self, task):
        self.goal = np.asarray(task, dtype=np.float64)

    def get_task(self):
        return self.goal

    def _obs(self):
        return np.concatenate([self.pos, self.goal - self.pos]).astype(np.float32)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.pos = self.np_random.uniform(-0.2, 0.2, size=2)
        self.t = 0
        return self._obs(), {}

    def step(self, action):
        self.pos = self.pos + np.clip(action, -0.1, 0.1)
        self.t += 1
        d = float(np.linalg.norm(self.pos - self.goal))
        truncated = self.limit > 0 and self.t >= self.limit
        return self._obs(), -d, d < 0.05, truncated, {"success": d < 0.2}


def point_goal():
    """The factory of :class:`PointGoal` (a plain function: picklable by reference)."""
    return PointGoal()


def point_goal_truncated():
    return PointGoal(limit=7)


class NoSetTask(PointGoal):
    set_task = None


class WrongShape(PointGoal):
    def step(self, action):
        obs, r, te, tr, info = super().step(action)
        return obs[:3] if self.t == 5 else obs, r, te, tr, info


class NanReward(PointGoal):
    def step(self, action):
        obs, r, te, tr, info = super().step(action)
        return obs, float("nan") if self.t == 4 else r, te, tr, info


class RaisesInStep(PointGoal):
    """Raises at the 3rd step of an episode after ``fail_after`` episodes of its process."""

    episodes = 0

    def reset(self, *, seed=None, options=None):
        type(self).episodes += 1
        return super().reset(seed=seed, options=options)

    def step(self, action):
        if self.t == 2 and type(self).episodes > 30:
            raise RuntimeError("the simulator blew up")
        return super().step(action)


class GlobalRandom(PointGoal):
    def sample_tasks(self, num_tasks):
        return [g for g in np.random.uniform(-1.0, 1.0, size=(num_tasks, 2))]


class Unpicklable(PointGoal):
    def sample_tasks(self, num_tasks):
        goals = super().sample_tasks(num_tasks)
        return [(lambda g=g: g) for g in goals]

    def set_task(self, task):
        super().set_task(task())


class DiscreteActions(PointGoal):
    def __init__(self):
        super().__init__()
        self.action_space = spaces.Discrete(4)


class Dies(PointGoal):
    """Kills its own process at the 3rd step of its second episode (a crashing simulator)."""

    def __init__(self):
        super().__init__()
        self.episodes = 0

    def reset(self, *, seed=None, options=None):
        self.episodes += 1
        return super().reset(seed=seed, options=options)

    def step(self, action):
        if self.episodes >= 2 and self.t == 2:
            import os

            os._exit(3)
        return super().step(action)
