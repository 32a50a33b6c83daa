"""Run a structured prune and write its model directory whole or not at all (fsutil.staged_dir).

A DrivingVLM saves as any owled model directory: the LM's config.json carries the per-layer
widths (model/widths.py) and owled_vlm.json the encoder's MBConv widths, so `load_vlm`
rebuilds the smaller layers. A plain HF LM saves as an HF checkpoint; pruned by whole
layers only it is a standard one (its config just has fewer layers).
"""
from __future__ import annotations

import time
from pathlib import Path

import torch

from owled_ros.data.calibration import CalibrationSet
from owled_ros.fsutil import staged_dir
from owled_ros.model.lm import load_hf_lm
from owled_ros.model.vlm import DrivingVLM
from owled_ros.model.widths import measured_widths
from owled_ros.prune.config import PruneConfig
from owled_ros.prune.save import write_pruned, write_report
from owled_ros.prune.structured import prune_lm_structured, prune_vlm_structured
from owled_ros.prune.structured_latency import LatencyBudget, prune_vlm_for_latency
from owled_ros.prune.structured_report import dense_numels, structured_report
from owled_ros.prune.vlm import encoder_blocks, lm_blocks
from owled_ros.prune.layers import make_blocks


def _params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def prune_vlm_to(vlm: DrivingVLM, calib: CalibrationSet, config: PruneConfig, out: Path, calibration: dict, start: float,
                 budget: LatencyBudget | None = None) -> dict:
    """Prune the loaded DrivingVLM structurally (to the split a latency budget picks, if given), save it to `out`; returns the report."""
    dense = dense_numels(encoder_blocks(vlm) + lm_blocks(vlm))
    before = _params(vlm)
    latency = None
    if budget is None:
        parts = prune_vlm_structured(vlm, calib, config)
    else:
        parts, config, latency = prune_vlm_for_latency(vlm, calib, config, budget)
    widths = {"encoder_mid_channels": list(vlm.encoder.config.mid_channels or []), "llm": measured_widths(vlm.lm).to_dict()}
    params = {"before": before, "after": _params(vlm)}
    report = structured_report(config, parts, dense, calibration, time.perf_counter() - start, params, widths)
    if latency is not None:
        report["latency_budget"] = latency
    write_pruned(vlm, report, out)
    return report


def prune_lm_dir_structured(src: Path, windows: torch.Tensor, config: PruneConfig, out: Path, calibration: dict) -> dict:
    """Prune the HF causal LM in `src` structurally (loaded whole: the cut needs every layer at once) and save it to `out`."""
    start = time.perf_counter()
    lm, tokenizer = load_hf_lm(src)
    dense = dense_numels(make_blocks(lm, list(lm.get_decoder().layers)))
    before = _params(lm)
    parts = prune_lm_structured(lm, windows, config)
    report = structured_report(config, parts, dense, calibration, time.perf_counter() - start,
                               {"before": before, "after": _params(lm)}, {"llm": measured_widths(lm).to_dict()})
    with staged_dir(out) as model_dir:
        lm.save_pretrained(model_dir, safe_serialization=True)
        tokenizer.save_pretrained(model_dir)
        write_report(report, model_dir)
    return report
