#!/usr/bin/env bash
# The project's test command (README "Quick start"; CI runs it via .ci/run).
# Formatting, lints, then every test in the optimised test profile.
set -euo pipefail
cd "$(dirname "$0")/.."
for c in rustfmt clippy; do
  rustup component list --installed 2>/dev/null | grep -q "^$c" || rustup component add "$c"
done
cargo fmt --check
cargo clippy --all-targets -- -D warnings
cargo test
