"""Tabular problems and the paper's tabular study (Fig. 1 a–c): :class:`TabularProblem` (estimates,
gradients, Hessians, Hessian-vector products and the exact oracle of one problem) and
:func:`tabular_study` (the study of ``metagrad tabular``, tables as DataFrames)."""

from __future__ import annotations

import json
from typing import NamedTuple, Optional

import numpy as np

from . import _convert, _metagrad
from ._progress import progress as _progress

__all__ = ["ESTIMATORS", "TabularProblem", "Study", "tabular_study", "tabular_study_defaults"]

#: The estimator names (the library's list; ``taypo-K`` for any order K ≥ 1).
ESTIMATORS: tuple = tuple(_metagrad.ESTIMATORS)


class TabularProblem:
    """A tabular MDP, a softmax policy π_θ, a behaviour policy μ, an optional critic and
    trajectories from μ, validated once (the checks of ``metagrad estimate``).

    Arguments (keyword only; arrays of any real dtype that converts without loss):

    * ``transitions`` |X|×|A|×|X|, each row a probability distribution (±1e-9);
    * ``rewards`` |X|×|A| (the MDP's, for the exact oracle); ``theta`` |X|×|A| softmax logits
      of π_θ; ``behaviour`` |X|×|A| μ, rows summing to 1; ``gamma`` in [0, 1);
      ``start_state`` x_0;
    * trajectories as padded arrays: ``states`` N×(T+1) (x_0 … x_T), ``actions`` N×T,
      ``trajectory_rewards`` N×T, and ``lengths`` (N,) if they differ (entries past a
      trajectory's length are ignored); trajectory n's ``actions[n, t]`` is the field
      ``trajectories[n].actions[t]`` in error messages;
    * a critic: ``state_values`` (|X|,) or ``action_values`` |X|×|A| (IS needs none).

    Bad input raises ``ValueError`` (``TypeError`` for a wrong dtype) naming the field and
    the value.
    """

    def __init__(
        self,
        *,
        transitions,
        rewards,
        theta,
        behaviour,
        gamma: float,
        start_state: int = 0,
        states,
        actions,
        trajectory_rewards,
        lengths=None,
        state_values=None,
        action_values=None,
    ):
        f, i = _convert.floats, _convert.ints
        self._inner = _metagrad.TabularProblem(
            transitions=f("transitions", transitions, 3),
            rewards=f("rewards", rewards, 2),
            theta=f("theta", theta, 2),
            behaviour=f("behaviour", behaviour, 2),
            gamma=_convert.real("gamma", gamma),
            start_state=_convert.whole("start_state", start_state),
            states=i("states", states, 2),
            actions=i("actions", actions, 2),
            trajectory_rewards=f("trajectory_rewards", trajectory_rewards, 2),
            lengths=None if lengths is None else i("lengths", lengths, 1),
            state_values=None if state_values is None else f("state_values", state_values, 1),
            action_values=None if action_values is None else f("action_values", action_values, 2),
        )

    @classmethod
    def _wrap(cls, inner) -> "TabularProblem":
        obj = cls.__new__(cls)
        obj._inner = inner
        return obj

    @classmethod
    def from_json(cls, text: str) -> "TabularProblem":
        """A problem from the JSON text of a ``metagrad estimate`` input file."""
        return cls._wrap(_metagrad.TabularProblem.from_json(text))

    @classmethod
    def load(cls, path) -> "TabularProblem":
        """A problem from a ``metagrad estimate`` input file."""
        return cls._wrap(_metagrad.TabularProblem.load(str(path)))

    def to_json(self) -> str:
        """The problem as a ``metagrad estimate`` input file's JSON text."""
        return self._inner.to_json()

    @property
    def n_states(self) -> int:
        """|X|."""
        return self._inner.n_states

    @property
    def n_actions(self) -> int:
        """|A|."""
        return self._inner.n_actions

    @property
    def gamma(self) -> float:
        """γ."""
        return self._inner.gamma

    @property
    def n_trajectories(self) -> int:
        """N."""
        return self._inner.n_trajectories

    def estimate(self, estimator: str, *, truncation: float = 1.0, hessian: bool = True) -> dict:
        """Mean of V̂ over the trajectories with its gradient (|X|×|A|) and Hessian (D×D,
        D = |X|·|A|, index x·|A| + a; ``None`` unless ``hessian``): a dict with keys
        ``value``, ``gradient``, ``hessian``. ``estimator`` is one of ``is``, ``dr``,
        ``dr-trunc`` (with ``truncation`` ρ̄ = c̄), ``taypo-K`` for any K ≥ 1, ``lvc``
        (= taypo-1), ``maml``. Equal bit for bit to ``metagrad estimate``."""
        return self._inner.estimate(str(estimator), float(truncation), bool(hessian))

    def hvp(self, estimator: str, v, *, truncation: float = 1.0) -> np.ndarray:
        """The Hessian-vector product ∇²V̂·v without forming the Hessian; ``v`` has D entries
        (or shape |X|×|A|), and so has the result."""
        v = _convert.floats("v", v, np.ndim(v))
        shape = v.shape
        return self._inner.hvp(str(estimator), np.ascontiguousarray(v.reshape(-1)), float(truncation)).reshape(shape)

    def exact(self) -> dict:
        """The exact infinite-horizon V^{π_θ}(x_0), its gradient and Hessian (the oracle)."""
        return self._inner.exact()

    def finite_horizon(self, horizon: int, *, bootstrap: bool = True) -> dict:
        """The exact T-step value J_T(θ) from x_0 and its derivatives, bootstrapped at x_T by
        the critic (what DR and TayPO estimate without bias) or by 0 (IS's target)."""
        return self._inner.finite_horizon(_convert.whole("horizon", horizon), bool(bootstrap))

    def __repr__(self) -> str:
        return (
            f"TabularProblem(n_states={self.n_states}, n_actions={self.n_actions}, "
            f"gamma={self.gamma}, n_trajectories={self.n_trajectories})"
        )


class Study(NamedTuple):
    """Tables of :func:`tabular_study`: one row per trial, and mean ± s.e. over trials;
    with ``sweep="biasvar"`` also the bias–variance decomposition (``biasvar``: one row per
    trial × ε × estimator × quantity × target, the columns of ``biasvar.csv``;
    ``biasvar_summary``: means over trials), its predictions of the N sweep
    (``predictions``) and the TayPO-2 / TayPO-1 crossovers (``crossovers``). These four are
    empty DataFrames for the other sweeps."""

    trials: "pandas.DataFrame"  # noqa: F821
    summary: "pandas.DataFrame"  # noqa: F821
    biasvar: "pandas.DataFrame"  # noqa: F821
    biasvar_summary: "pandas.DataFrame"  # noqa: F821
    predictions: "pandas.DataFrame"  # noqa: F821
    crossovers: "pandas.DataFrame"  # noqa: F821


def tabular_study_defaults() -> dict:
    """The default settings of :func:`tabular_study`.

    Returns:
        A dict of every setting's name and default (the library's, which the command line
        shares).
    """
    return json.loads(_metagrad.tabular_study_defaults())


def tabular_study(*, out: Optional[str] = None, verbose: bool = True, **settings) -> Study:
    """The tabular study of ``metagrad tabular`` (paper Fig. 1 a–c and the meta-gradient
    sweep), with the command line's settings as keyword arguments (``sweep``, ``eps``,
    ``n``, ``n_grid``, ``n_sweep_eps``, ``trials``, ``seed``, ``states``, ``actions``,
    ``gamma``, ``horizon``, ``dirichlet``, ``critic_noise``, ``estimators``,
    ``truncation``, ``eta``, ``biasvar_trajectories``, ``biasvar_chunk``; see
    :func:`tabular_study_defaults`). ``sweep="biasvar"`` runs the bias–variance
    decomposition against the exact derivatives (with the N sweep it predicts). The same
    seed gives the same numbers as the command line. With ``out``, writes the command
    line's files there (``trials.csv``, ``summary.csv``, ``config.json``, figures, and the
    ``biasvar*.csv`` files). Ctrl-C stops it within a second (``KeyboardInterrupt``).

    Args:
        out: A folder for the command line's files, or ``None``.
        verbose: Show a progress bar.
        **settings: The study's settings (see :func:`tabular_study_defaults`).

    Returns:
        A :class:`Study` of DataFrames (the biasvar tables are empty unless
        ``sweep="biasvar"``).
    """
    import pandas as pd

    if "estimators" in settings:
        settings["estimators"] = _convert.name_list("estimators", settings["estimators"])
    text = _convert.settings_json("tabular_study", settings)
    with _progress(verbose, "tabular study", "jobs") as bar:
        tables = _metagrad.tabular_study(
            text, None if out is None else str(out), None if bar is None else bar.update_to
        )
    return Study(*(pd.DataFrame(json.loads(t)) for t in tables))
