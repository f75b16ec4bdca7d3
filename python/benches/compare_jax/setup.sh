#!/usr/bin/env bash
# Creates python/benches/compare_jax/.venv with a CPU build of JAX and NumPy.
# Usage: bash python/benches/compare_jax/setup.sh   (from anywhere; needs python3 >= 3.11 and pip access)
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
JAX_VERSION="${JAX_VERSION:-0.10.2}"
PYTHON="${PYTHON:-python3}"

if [ ! -x "$here/.venv/bin/python" ]; then
    "$PYTHON" -m venv "$here/.venv"
fi
"$here/.venv/bin/python" -m pip install --quiet --upgrade pip
# The plain `jax` wheel pulls the CPU-only jaxlib.
"$here/.venv/bin/python" -m pip install --quiet "jax==${JAX_VERSION}" numpy
"$here/.venv/bin/python" -c 'import jax, numpy; print("jax", jax.__version__, "numpy", numpy.__version__, "devices", jax.devices())'
