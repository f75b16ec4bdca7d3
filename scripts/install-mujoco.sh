#!/usr/bin/env bash
# Install the pinned MuJoCo engine, the Gymnasium robot model files and a Python venv
# for the parity tests into <repo>/.deps (gitignored). Idempotent: re-running is cheap.
#
#   .deps/venv/                 python venv with mujoco, gymnasium, numpy (parity reference)
#   .deps/mujoco/lib/           libmujoco.so.<ver> (+ libmujoco.so symlink) from the PyPI wheel
#   .deps/mujoco/include/       MuJoCo C headers from the same wheel
#   .deps/mujoco/assets/        robot XML files shipped in the gymnasium wheel
#
# Build afterwards with:  cargo build --features mujoco
set -euo pipefail

MUJOCO_VERSION="3.17.0"
GYMNASIUM_VERSION="1.4.0"

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
deps="$repo/.deps"
venv="$deps/venv"
dest="$deps/mujoco"
stamp="$dest/.installed-mujoco-$MUJOCO_VERSION-gymnasium-$GYMNASIUM_VERSION"

venv_ok() {
    [[ -x "$venv/bin/python" ]] &&
        "$venv/bin/python" -c 'import mujoco, numpy, gymnasium.envs.mujoco' >/dev/null 2>&1
}

if [[ -f "$stamp" && -f "$dest/lib/libmujoco.so.$MUJOCO_VERSION" ]] && venv_ok; then
    echo "install-mujoco: already installed in $dest (remove $stamp to reinstall)"
    exit 0
fi

python="${PYTHON:-python3}"
if ! command -v "$python" >/dev/null 2>&1; then
    echo "install-mujoco: error: '$python' not found; set PYTHON=/path/to/python3 (>= 3.10)" >&2
    exit 1
fi

mkdir -p "$deps"
if [[ ! -x "$venv/bin/python" ]]; then
    echo "install-mujoco: creating venv $venv"
    "$python" -m venv "$venv"
fi
echo "install-mujoco: pip install mujoco==$MUJOCO_VERSION gymnasium[mujoco]==$GYMNASIUM_VERSION numpy"
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check --only-binary=:all: \
    "mujoco==$MUJOCO_VERSION" "gymnasium[mujoco]==$GYMNASIUM_VERSION" numpy
if ! venv_ok; then
    echo "install-mujoco: error: the venv cannot import mujoco, numpy and gymnasium.envs.mujoco" >&2
    exit 1
fi

# Locate the packages inside the venv and copy what the Rust build needs.
read -r mj_dir gym_dir < <("$venv/bin/python" - <<'PY'
import os, mujoco, gymnasium
print(os.path.dirname(mujoco.__file__), os.path.dirname(gymnasium.__file__))
PY
)
got="$("$venv/bin/python" -c 'import mujoco; print(mujoco.__version__)')"
if [[ "$got" != "$MUJOCO_VERSION" ]]; then
    echo "install-mujoco: error: venv has mujoco $got, expected $MUJOCO_VERSION" >&2
    exit 1
fi

lib_src="$mj_dir/libmujoco.so.$MUJOCO_VERSION"
if [[ ! -f "$lib_src" ]]; then
    echo "install-mujoco: error: $lib_src not found in the mujoco wheel" >&2
    exit 1
fi
assets_src="$gym_dir/envs/mujoco/assets"
if [[ ! -d "$assets_src" ]]; then
    echo "install-mujoco: error: $assets_src not found in the gymnasium wheel" >&2
    exit 1
fi

tmp="$(mktemp -d "$deps/mujoco.tmp.XXXXXX")"
trap 'rm -rf "$tmp"' EXIT
mkdir -p "$tmp/lib" "$tmp/include" "$tmp/assets"
cp "$lib_src" "$tmp/lib/"
ln -s "libmujoco.so.$MUJOCO_VERSION" "$tmp/lib/libmujoco.so"
cp -r "$mj_dir/include/." "$tmp/include/"
cp -r "$assets_src/." "$tmp/assets/"
rm -rf "$dest"
mv "$tmp" "$dest"
trap - EXIT
touch "$stamp"
echo "install-mujoco: installed MuJoCo $MUJOCO_VERSION into $dest"
