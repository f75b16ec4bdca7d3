#!/usr/bin/env bash
# The Meta-World environment: .deps/venv-metaworld, a venv made exactly as a user makes it,
# `pip install ./python metaworld==3.1.1` (Meta-World pins the MuJoCo Python package 3.3.0
# while metagrad carries its own engine, 3.17.0), plus pytest. Idempotent;
# re-running reinstalls metagrad from ./python (cargo reuses target/).
#
#   scripts/metaworld-env.sh     # then: .deps/venv-metaworld/bin/python -c 'import metagrad.envs.metaworld'
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="$repo/.deps/venv-metaworld"
"$repo/scripts/install-mujoco.sh" >/dev/null
python="${PYTHON:-python3}"
[[ -x "$venv/bin/python" ]] || "$python" -m venv "$venv"
stamp="$venv/.metagrad-metaworld-tools"
if [[ ! -f "$stamp" ]]; then
    echo "metaworld-env: pip install ./python metaworld==3.1.1 pytest==8.4.2"
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check "$repo/python" metaworld==3.1.1 pytest==8.4.2
    touch "$stamp"
fi
echo "metaworld-env: building and installing ./python into $venv"
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check --no-deps --force-reinstall "$repo/python"
"$venv/bin/python" -m pip check
"$venv/bin/python" -c 'import metagrad.envs.metaworld as mw, metaworld, mujoco; from importlib.metadata import version as v; print("metaworld-env: metagrad", v("metagrad"), "with metaworld", v("metaworld"), "and mujoco", mujoco.__version__)'
