#!/usr/bin/env bash
# The README's main command: prune the bundled model (the vehicle recipe: 10 % OWL-Wanda, quick
# calibration), trim its LM head to the tokens it says (owled trim-vocab), deploy it as int8 on the fastest runtime that passes the deploy gate on this CPU
# (torch, ONNX Runtime or OpenVINO: the vehicle-CPU path), run owled_node on it over a replayed
# scene bag, printing every answer, then compare with the dense fp32 model.
# Recipe knobs: OWLED_DEMO_STRUCTURE (unstructured | channels | layers), OWLED_DEMO_SPARSITY,
# OWLED_DEMO_RECOVER_STEPS (distillation steps after pruning; 0: none). The structured recipe,
#   OWLED_DEMO_STRUCTURE=channels OWLED_DEMO_SPARSITY=0.2 OWLED_DEMO_RECOVER_STEPS=60 make demo
# is smaller and faster by itself but still loses actions (docs/structured-pruning.md).
# The pruned model's directory is named by its recipe. Steps already done (bag, pruned and
# deployed models) are kept; delete runs/demo to start over.
set -euo pipefail
source "$(dirname "$0")/env.sh"
cd "$(dirname "$0")/.."
out=runs/demo
structure="${OWLED_DEMO_STRUCTURE:-unstructured}"
sparsity="${OWLED_DEMO_SPARSITY:-0.1}"
recover_steps="${OWLED_DEMO_RECOVER_STEPS:-0}"
pruned="$out/pruned-$structure-$sparsity-r$recover_steps"
[ -d "$out/scenes" ] || owled bag make --source scenes --frames 20 --hz 10 --out "$out/scenes"
[ -d "$pruned" ] || owled prune --model default --structure "$structure" --ratios owl --sparsity "$sparsity" \
  --owl-lambda 0.1 --calib scenes --calib-samples 16 --recover-steps "$recover_steps" --out "$pruned"
[ -d "$pruned-tv" ] || owled trim-vocab --model "$pruned" --calib-samples 8 --check-frames 8 --out "$pruned-tv"
[ -d "$pruned-tv-int8" ] || owled deploy --model "$pruned-tv" --down-alpha 0.3 --calib-samples 16 --backend auto --out "$pruned-tv-int8"
owled demo --bag "$out/scenes" --pruned "$pruned-tv-int8" --out "$out"
