#!/usr/bin/env bash
# The project's test command (README "Quick start"; CI runs it via .ci/run).
# Installs the pinned MuJoCo engine and the Gymnasium reference into .deps/ (idempotent),
# checks formatting and lints with and without MuJoCo, then runs every test, MuJoCo
# parity tests included, in the optimised test profile.
set -euo pipefail
cd "$(dirname "$0")/.."
for c in rustfmt clippy; do
  rustup component list --installed 2>/dev/null | grep -q "^$c" || rustup component add "$c"
done
scripts/install-mujoco.sh
cargo fmt --check
cargo clippy --all-targets -- -D warnings
cargo clippy --all-targets --features mujoco -- -D warnings
cargo test --features mujoco
