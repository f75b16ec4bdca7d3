#!/usr/bin/env bash
# The project's test command (README "Quick start"; CI runs it via .ci/run).
# Installs the pinned MuJoCo engine and the Gymnasium reference into .deps/ (idempotent),
# checks formatting, lints (with and without MuJoCo) and the API docs' links, then runs
# every test, MuJoCo parity tests included, in the optimised test profile.
set -euo pipefail
cd "$(dirname "$0")/.."
for c in rustfmt clippy; do
  rustup component list --installed 2>/dev/null | grep -q "^$c" || rustup component add "$c"
done
scripts/install-mujoco.sh
cargo fmt --check
cargo clippy --all-targets -- -D warnings
cargo clippy --all-targets --features mujoco -- -D warnings
RUSTDOCFLAGS="-D warnings" cargo doc --no-deps --features mujoco
cargo test --features mujoco
