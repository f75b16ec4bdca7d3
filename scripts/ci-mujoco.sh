#!/usr/bin/env bash
# CI step for the MuJoCo environments (called from .ci/run): install the pinned engine, the
# robot models and the Gymnasium reference venv into .deps/, then run the parity test against
# Gymnasium v5, the MuJoCo environment tests and the sampler tests on MuJoCo.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

scripts/install-mujoco.sh
cargo test --release --features mujoco --test mujoco_parity --test mujoco_envs --test mujoco_sampler
