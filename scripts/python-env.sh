#!/usr/bin/env bash
# The project's Python environment: .deps/venv (the venv of scripts/install-mujoco.sh, which
# this calls first) with the pinned test tools, and the metagrad package built from ./python
# and installed into it (or, with METAGRAD_WHEEL=path, that wheel). Idempotent; re-running
# rebuilds the package incrementally (cargo reuses target/).
#
#   scripts/python-env.sh          # then: .deps/venv/bin/python -c 'import metagrad'
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="$repo/.deps/venv"
"$repo/scripts/install-mujoco.sh" >/dev/null
# matplotlib: scripts/promp-diagnostics.py, run by python/tests/test_scripts.py.
# ray: metagrad.ray (grids on a Ray cluster) and its tests, on loopback only.
# torch: metagrad.torch and its tests (the PyPI wheel pulls its CUDA libraries, ≈ 5 GB, which
# it needs to import even on a CPU-only machine; installed once, the stamp below skips it).
pins=(maturin==1.16.0 pytest==8.4.2 pandas==2.3.3 tqdm==4.67.1 jax==0.10.2 jaxlib==0.10.2 ray==2.60.0
    torch==2.15.0 matplotlib==3.11.2)
stamp="$venv/.metagrad-python-tools-$(echo "${pins[*]}" | md5sum | cut -c1-12)"
if [[ ! -f "$stamp" ]]; then
    echo "python-env: pip install ${pins[*]}"
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check --only-binary=:all: "${pins[@]}"
    touch "$stamp"
fi
if [[ -n "${METAGRAD_WHEEL:-}" ]]; then
    # A wheel already built (scripts/test.sh: the one scripts/wheel.sh built and checked).
    echo "python-env: installing $METAGRAD_WHEEL into $venv"
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check --no-deps --force-reinstall "$METAGRAD_WHEEL"
else
    echo "python-env: building and installing ./python into $venv"
    # No build isolation: maturin comes from the venv (pinned above), nothing is downloaded.
    PATH="$venv/bin:$PATH" "$venv/bin/python" -m pip install --quiet --disable-pip-version-check --no-build-isolation \
        --no-deps --force-reinstall "$repo/python"
fi
"$venv/bin/python" -c 'import metagrad; print("python-env: metagrad", metagrad.__version__, "from", metagrad.__file__)'
