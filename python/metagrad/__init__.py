"""metagrad: exact gradient, Hessian and meta-gradient estimators for RL value functions.

Off-policy value estimates V̂(θ) — step-wise importance sampling (DiCE), doubly robust
(Loaded DiCE), truncated DR, TayPO-K (TayPO-1 = LVC, TayPO-2) — and their exact
derivatives, from the Rust engine of the `metagrad` command line (Tang et al., NeurIPS
2021). The same library functions serve both faces, so the numbers are the same.

* :class:`TabularProblem` — a tabular problem from numpy arrays: estimates, gradients,
  Hessians, Hessian-vector products, and the exact oracle (V, ∇V, ∇²V; J_T).
* :func:`tabular_study` — the paper's Fig. 1 (a–c) study, tables as DataFrames.
* :mod:`metagrad.meta_rl` — meta-RL runs and grids (paper Fig. 1 d, Fig. 2).
* :mod:`metagrad.envs` — the meta-task environments with Gymnasium's API (registered with
  Gymnasium on import).
* :mod:`metagrad.rows` — estimators on the rows of any framework's policy.
* ``CPU_LEVEL`` — the instruction-set level of the hot loops in this process
  (``"baseline"``, ``"avx2"`` or ``"avx512"``: the best the CPU has, or the one the
  environment variable ``METAGRAD_CPU`` asks for, capped at the CPU's); results do not
  depend on it.

The code lives in the modules (:mod:`metagrad.tabular`, :mod:`metagrad.meta_rl`, …); this
package re-exports their main names.
"""

from __future__ import annotations

import os as _os
import sys as _sys

try:
    from . import _metagrad
except ValueError as _e:  # METAGRAD_CPU names no level: the extension refuses to load
    if _os.path.basename(_sys.argv[0] if _sys.argv else "") == "metagrad":
        # The `metagrad` console script: report it as the binary does, not as a traceback.
        _sys.stderr.write(f"error: {_e}\n")
        raise SystemExit(2) from None
    raise

from . import envs, meta_rl, rows
from ._metagrad import CPU_LEVEL, __version__
from .meta_rl import ALGORITHMS
from .tabular import ESTIMATORS, Study, TabularProblem, tabular_study, tabular_study_defaults

__all__ = [
    "__version__",
    "CPU_LEVEL",
    "ALGORITHMS",
    "ESTIMATORS",
    "TabularProblem",
    "Study",
    "tabular_study",
    "tabular_study_defaults",
    "envs",
    "meta_rl",
    "rows",
]
