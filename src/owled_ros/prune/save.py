"""Write a pruned model directory whole or not at all.

The model (safetensors, exact zeros kept), prune_report.json and layer_sparsity.png are
built in a hidden temporary directory beside `out`, and that directory is renamed to
`out` last. Any exception, Ctrl-C included, removes it.
"""
from __future__ import annotations

import json
from pathlib import Path

from owled_ros.fsutil import staged_dir
from owled_ros.model.checkpoint import PRUNE_REPORT, save_vlm
from owled_ros.model.vlm import DrivingVLM
from owled_ros.prune.report import plot_sparsity

PLOT_NAME = "layer_sparsity.png"
PRUNED_META = ("method", "ratios", "nm", "target_sparsity", "achieved_sparsity")  # report keys kept in the model's meta


def write_report(report: dict, model_dir: Path) -> None:
    (model_dir / PRUNE_REPORT).write_text(json.dumps(report, indent=2))
    plot_sparsity(report, model_dir / PLOT_NAME)


def write_pruned(vlm: DrivingVLM, report: dict, out: Path) -> Path:
    with staged_dir(out) as model_dir:
        vlm.meta["pruned"] = {k: report[k] for k in PRUNED_META}
        save_vlm(vlm, model_dir)
        write_report(report, model_dir)
    return out
