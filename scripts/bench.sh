#!/usr/bin/env bash
# `make bench`: the measured comparisons of benchmarks/BENCHMARKS.md, regenerated in one run.
set -euo pipefail
source "$(dirname "$0")/env.sh"
cd "$(dirname "$0")/.."
if [ ! -x .venv-llmcompressor/bin/python ]; then
    # llm-compressor in a venv of its own, so its pins never touch ours (torch stays the CPU wheel).
    python -m venv .venv-llmcompressor
    .venv-llmcompressor/bin/pip install -q torch==2.13.0 llmcompressor==0.14.0.1
fi
exec python benchmarks/regenerate.py "$@"
