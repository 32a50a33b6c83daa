#!/usr/bin/env bash
# The README's main command: prune the bundled model with OWL (quick calibration), deploy it as
# int8 (the vehicle-CPU path), run owled_node on it over a replayed scene bag, printing every
# answer, then compare with the dense fp32 model.
# Steps already done (bag, pruned and deployed models) are kept; delete runs/demo to start over.
set -euo pipefail
source "$(dirname "$0")/env.sh"
cd "$(dirname "$0")/.."
out=runs/demo
sparsity="${OWLED_DEMO_SPARSITY:-0.1}"  # the vehicle recipe (README, On-vehicle speed)
[ -d "$out/scenes" ] || owled bag make --source scenes --frames 20 --hz 10 --out "$out/scenes"
[ -d "$out/pruned" ] || owled prune --model default --method wanda --ratios owl --sparsity "$sparsity" \
  --owl-lambda 0.1 --calib scenes --calib-samples 16 --out "$out/pruned"
[ -d "$out/pruned-int8" ] || owled deploy --model "$out/pruned" --down-alpha 0.3 --calib-samples 16 --out "$out/pruned-int8"
owled demo --bag "$out/scenes" --pruned "$out/pruned-int8" --out "$out"
