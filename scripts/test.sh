#!/usr/bin/env bash
# The whole suite, slow real-model tests included, DDS confined to this machine.
set -euo pipefail
source "$(dirname "$0")/env.sh"
cd "$(dirname "$0")/.."
exec python -m pytest test -q -ra --timeout=900 "$@"
