"""Write a pruned model directory whole or not at all.

Model (save_vlm: safetensors, exact zeros kept), prune_report.json and
layer_sparsity.png are built in a hidden temporary directory beside `out`, and that
directory is renamed to `out` last. Any exception, Ctrl-C included, removes it.
"""
from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path

from owled_ros.errors import OwledError
from owled_ros.model.checkpoint import save_vlm
from owled_ros.model.vlm import DrivingVLM
from owled_ros.prune.report import plot_sparsity

REPORT_NAME = "prune_report.json"
PLOT_NAME = "layer_sparsity.png"


def write_pruned(vlm: DrivingVLM, report: dict, out: Path) -> Path:
    if out.exists():
        raise OwledError(f"{out}: already exists (choose another --out or remove it)")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
    try:
        vlm.meta["pruned"] = {k: report[k] for k in ("method", "ratios", "nm", "target_sparsity", "achieved_sparsity")}
        model_dir = save_vlm(vlm, tmp / "model")
        (model_dir / REPORT_NAME).write_text(json.dumps(report, indent=2))
        plot_sparsity(report, model_dir / PLOT_NAME)
        model_dir.rename(out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out
