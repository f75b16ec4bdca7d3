"""Type stubs of the Rust extension module (the engine behind the `metagrad` package)."""

from os import PathLike
from typing import Any, Callable, Optional, Union

import numpy as np
import numpy.typing as npt

__version__: str
CPU_LEVEL: str

def cli_main(argv: list[str]) -> int: ...

_F = npt.NDArray[np.float64]
_I = npt.NDArray[np.int64]
_Path = Union[str, PathLike]

class TabularProblem:
    def __init__(
        self,
        *,
        transitions: _F,
        rewards: _F,
        theta: _F,
        behaviour: _F,
        gamma: float,
        start_state: int,
        states: _I,
        actions: _I,
        trajectory_rewards: _F,
        lengths: Optional[_I] = None,
        state_values: Optional[_F] = None,
        action_values: Optional[_F] = None,
    ) -> None: ...
    @staticmethod
    def from_json(text: str) -> "TabularProblem": ...
    @staticmethod
    def load(path: _Path) -> "TabularProblem": ...
    def to_json(self) -> str: ...
    @property
    def n_states(self) -> int: ...
    @property
    def n_actions(self) -> int: ...
    @property
    def gamma(self) -> float: ...
    @property
    def n_trajectories(self) -> int: ...
    def estimate(self, estimator: str, truncation: float = 1.0, hessian: bool = True) -> dict[str, Any]: ...
    def hvp(self, estimator: str, v: _F, truncation: float = 1.0) -> _F: ...
    def exact(self) -> dict[str, Any]: ...
    def finite_horizon(self, horizon: int, bootstrap: bool = True) -> dict[str, Any]: ...

def tabular_study_defaults() -> str: ...
def tabular_study(
    settings: str, out: Optional[_Path] = None, progress: Optional[Callable[[int, int], None]] = None
) -> tuple[str, str, str, str, str, str]: ...
def meta_rl_defaults() -> str: ...
def meta_rl_params(
    settings_json: str, algo: str, seed: int, env: Optional[Any] = None, test_env: Optional[Any] = None
) -> str: ...
def meta_rl_train(
    settings_json: str,
    algo: str,
    seed: int,
    out: _Path,
    resume: str = "no",
    progress: Optional[Callable[[dict[str, Any]], None]] = None,
    threads: Optional[int] = None,
    sampler: Optional[Any] = None,
    env: Optional[Any] = None,
    test_env: Optional[Any] = None,
) -> str: ...

class MetaRlTaskSampler:
    def __init__(
        self, settings_json: str, algo: str, seed: int, threads: Optional[int] = None, env: Optional[Any] = None
    ) -> None: ...
    def sample(self, theta: list[float], iteration: int, start: int, end: int) -> bytes: ...
    def initial_theta(self) -> list[float]: ...
    @property
    def tasks(self) -> int: ...

def meta_rl_compare(
    settings_json: str,
    algos: str,
    seeds: list[int],
    at: list[int],
    out: _Path,
    progress: Optional[Callable[[dict[str, Any]], None]] = None,
    threads: Optional[int] = None,
    jobs: int = 1,
    env: Optional[Any] = None,
    test_env: Optional[Any] = None,
) -> str: ...
def meta_rl_summarise(
    settings_json: str,
    algos: str,
    seeds: list[int],
    at: list[int],
    out: _Path,
    env: Optional[Any] = None,
    test_env: Optional[Any] = None,
) -> str: ...
def meta_rl_grid_runs(
    settings_json: str,
    algos: str,
    seeds: list[int],
    at: list[int],
    out: _Path,
    env: Optional[Any] = None,
    test_env: Optional[Any] = None,
) -> str: ...
def row_derivatives(
    estimator: str,
    u: _F,
    log_mu: _F,
    rewards: _F,
    *,
    gamma: float,
    truncation: float = 1.0,
    discount: str = "absolute",
    lengths: Optional[_I] = None,
    state_values: Optional[_F] = None,
    q_taken: Optional[_F] = None,
    behaviour_means: Optional[_F] = None,
    critic_means: Optional[_F] = None,
    gradient: bool = True,
    direction: Optional[_F] = None,
    direction_c: Optional[_F] = None,
    per_trajectory: bool = False,
    f32_out: bool = False,
) -> tuple[Union[float, _F], Optional[_F], Optional[_F], Optional[_F], Optional[_F]]: ...

ENV_NAMES: list[str]
ALGORITHMS: list[str]
ESTIMATORS: list[str]

class VecEnv:
    def __init__(
        self,
        name: str,
        num_envs: int,
        horizon: Optional[int],
        autoreset_mode: str,
        seed: int,
        assets_dir: Optional[_Path] = None,
        num_threads: Optional[int] = None,
    ) -> None: ...
    def reset(
        self, seeds: Optional[list[Optional[int]]] = None, mask: Optional[npt.NDArray[np.bool_]] = None
    ) -> _F: ...
    def step(
        self, actions: _F
    ) -> tuple[_F, _F, npt.NDArray[np.bool_], npt.NDArray[np.bool_], Optional[tuple[npt.NDArray[np.bool_], _F]]]: ...
    def set_tasks(self, tasks: _F) -> None: ...
    def tasks(self) -> _F: ...
    def sample_tasks(self, n: int, seed: int, iteration: int) -> _F: ...
    @property
    def name(self) -> str: ...
    @property
    def num_envs(self) -> int: ...
    @property
    def obs_dim(self) -> int: ...
    @property
    def act_dim(self) -> int: ...
    @property
    def task_dim(self) -> int: ...
    @property
    def horizon(self) -> Optional[int]: ...
    @property
    def action_bounds(self) -> tuple[list[float], list[float]]: ...
