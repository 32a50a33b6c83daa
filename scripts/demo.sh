#!/usr/bin/env bash
# The README's main command: prune the bundled model with OWL (quick calibration), run owled_node
# on it over a replayed scene bag, printing every answer, then compare with the dense model.
# Steps already done (bag, pruned model) are kept; delete runs/demo to start over.
set -euo pipefail
source "$(dirname "$0")/env.sh"
cd "$(dirname "$0")/.."
out=runs/demo
sparsity="${OWLED_DEMO_SPARSITY:-0.3}"
[ -d "$out/scenes" ] || owled bag make --source scenes --frames 20 --hz 10 --out "$out/scenes"
[ -d "$out/pruned" ] || owled prune --model default --method wanda --ratios owl --sparsity "$sparsity" \
  --calib scenes --calib-samples 16 --out "$out/pruned"
owled demo --bag "$out/scenes" --pruned "$out/pruned" --out "$out"
