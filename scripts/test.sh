#!/usr/bin/env bash
# The whole suite, slow real-model and real-simulator tests included, DDS confined to this machine.
set -euo pipefail
source "$(dirname "$0")/env.sh"
cd "$(dirname "$0")/.."
bash scripts/sim_setup.sh  # the simulator's own venv, so the real-MetaDrive tests run too (idempotent)
exec python -m pytest test -q -ra --timeout=900 "$@"
