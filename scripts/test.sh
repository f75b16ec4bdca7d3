#!/usr/bin/env bash
# The project's test command (README "Quick start"; CI runs it via .ci/run).
# Installs the pinned MuJoCo engine, the Gymnasium reference and the Python test tools into
# .deps/ (idempotent), checks formatting, lints (with and without MuJoCo, and the Python
# extension), the Rust API docs' links and the documentation site (strict build), runs every
# Rust test, MuJoCo parity tests included, in the optimised test profile, then builds the CLI
# and the Python package's wheel (tested from a fresh venv without Rust, scripts/wheel.sh) and
# runs the Python test suite on that wheel (which compares the two faces bit for bit and runs
# every code block of the README), and the Meta-World tests in a venv made as a user makes it
# (scripts/metaworld-env.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
for c in rustfmt clippy; do
  rustup component list --installed 2>/dev/null | grep "^$c" >/dev/null || rustup component add "$c"
done
scripts/install-mujoco.sh
cargo fmt --all --check
cargo clippy --all-targets -- -D warnings
cargo clippy --all-targets --features mujoco -- -D warnings
cargo clippy -p metagrad-python --all-targets -- -D warnings
RUSTDOCFLAGS="-D warnings" cargo doc --no-deps --features mujoco
scripts/docs.sh
cargo test --features mujoco
# The default build (no MuJoCo, what the quick start builds): its own error paths.
cargo test --test mujoco_disabled --test meta_rl
cargo build --release --features mujoco
# The portable wheel: built, checked with auditwheel and smoke-tested in a fresh venv without
# Rust (scripts/wheel.sh); the Python test suite then runs on that wheel.
scripts/wheel.sh
METAGRAD_WHEEL="$(ls target/wheels/metagrad-*.whl)" scripts/python-env.sh
METAGRAD_NO_SKIPS=1 .deps/venv/bin/python -m pytest python/tests -q -p no:cacheprovider
# Meta-World in its own venv (its MuJoCo Python package beside metagrad's engine).
scripts/metaworld-env.sh
(cd python/tests_metaworld && ../../.deps/venv-metaworld/bin/python -m pytest -q -p no:cacheprovider .)
