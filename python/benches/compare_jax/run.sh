#!/usr/bin/env bash
# Times `metagrad tabular --sweep eps` against the JAX reference on this machine.
# Usage: bash python/benches/compare_jax/run.sh
# Env: METAGRAD_ARGS / JAX_ARGS add arguments to either side (keep the work the same);
#      CARGO_TARGET_DIR is honoured.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../../.." && pwd)"
py="$here/.venv/bin/python"

if [ ! -x "$py" ] || ! "$py" -c 'import jax' 2>/dev/null; then
    echo "== setting up $here/.venv"
    bash "$here/setup.sh"
fi

echo "== cargo build --release"
(cd "$root" && cargo build --release --quiet)
bin="${CARGO_TARGET_DIR:-$root/target}/release/metagrad"
[ -x "$bin" ] || { echo "no binary at $bin" >&2; exit 1; }

now() { date +%s.%N; }

echo "== metagrad tabular --sweep eps ${METAGRAD_ARGS:-}"
t0=$(now)
# shellcheck disable=SC2086
"$bin" tabular --sweep eps ${METAGRAD_ARGS:-}
t1=$(now)
rust_s=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.3f", b - a }')

echo
echo "== JAX: tabular_eps_sweep.py ${JAX_ARGS:-}"
out="$(mktemp)"
trap 'rm -f "$out"' EXIT
t0=$(now)
# shellcheck disable=SC2086
"$py" "$here/tabular_eps_sweep.py" ${JAX_ARGS:-} | tee "$out"
t1=$(now)
jax_wall=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.3f", b - a }')
jax_sweep=$(awk '$1 == "sweep_seconds" { print $2 }' "$out")
jax_compile=$(awk '$1 == "compile_seconds" { print $2 }' "$out")

echo
echo "== summary ($(nproc) cores; load average: $(cut -d' ' -f1-3 /proc/loadavg))"
awk -v r="$rust_s" -v jw="$jax_wall" -v js="$jax_sweep" -v jc="$jax_compile" 'BEGIN {
    printf "metagrad (release, whole process)        %9.3f s\n", r
    printf "JAX whole process (import+compile+sweep) %9.3f s   ratio JAX/metagrad %8.1f\n", jw, jw / r
    printf "JAX sweep excluding compile              %9.3f s   ratio JAX/metagrad %8.1f\n", js, js / r
    printf "JAX compile (XLA)                        %9.3f s\n", jc
}'
