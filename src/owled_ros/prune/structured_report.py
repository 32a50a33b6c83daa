"""prune_report.json of a structured prune: the fields of an unstructured report, counted as weights removed.

`layer_sparsity` and `achieved_sparsity` are the share of each prunable layer's dense
weights that no longer exist (1.0 for a dropped layer), so plots and tools that read an
unstructured report read this one the same way. Extra fields: `structure`, `importance`,
`widths` (the pruned model's per-layer sizes), `removed_units`, `block_influence`,
`removed_layers`, `params` (whole model, before and after).
"""
from __future__ import annotations

from owled_ros.machine import peak_rss_mb
from owled_ros.prune.config import PruneConfig
from owled_ros.prune.layers import Block
from owled_ros.prune.structured import StructuredPart

DenseNumels = dict[str, int]  # prunable layer name -> dense weight count


def dense_numels(blocks: list[Block]) -> DenseNumels:
    """Call before cutting: every prunable layer's weight count."""
    return {name: layer.weight.numel() for b in blocks for name, layer in b.layers.items()}


def _now(part: StructuredPart) -> dict[str, int]:
    out = {}
    for i, block in enumerate(part.blocks):
        for name in block.layers:
            sub = name[len(block.name) + 1:]
            out[name] = 0 if i in part.dropped else block.module.get_submodule(sub).weight.numel()
    return out


def structured_report(config: PruneConfig, parts: list[StructuredPart], dense: DenseNumels, calibration: dict, seconds: float,
                      params: dict[str, int], widths: dict) -> dict:
    layer_sparsity, achieved, target, blocks_out = {}, {}, {}, {}
    total_dense = total_left = 0
    for part in parts:
        now = _now(part)
        layer_sparsity.update({n: 1 - now[n] / dense[n] for n in now})
        d, left = sum(dense[n] for n in now), sum(now.values())
        total_dense, total_left = total_dense + d, total_left + left
        achieved[part.name] = 1 - left / d if d else 0.0
        target[part.name] = part.target
        blocks_out[part.name] = []
        for i, b in enumerate(part.blocks):
            bd = sum(dense[n] for n in b.layers)
            entry = {"name": b.name, "params": bd, "assigned_sparsity": part.sparsities[i],
                     "achieved_sparsity": 1 - sum(now[n] for n in b.layers) / bd}
            if part.outlier_ratios:
                entry["outlier_ratio"] = part.outlier_ratios[i]
            if part.block_influence:
                entry["block_influence"] = part.block_influence[i]
            if part.sensitivity:
                entry["action_sensitivity"] = part.sensitivity[i]
            if b.name in part.removed_units:
                entry["removed_units"] = part.removed_units[b.name]
            blocks_out[part.name].append(entry)
    achieved["overall"] = 1 - total_left / total_dense if total_dense else 0.0
    target["overall"] = sum(p.target * sum(dense[n] for b in p.blocks for n in b.layers) for p in parts) / total_dense if total_dense else 0.0
    owl = None
    if config.ratios == "owl" and config.structure == "channels":
        owl = {"M": config.owl_m, "lambda": config.owl_lambda}
        owl.update({p.name: {"outlier_ratios": p.outlier_ratios, "sparsities": p.sparsities} for p in parts})
    importance = config.importance if config.structure == "channels" else "block_influence"
    return {
        "method": importance,
        "structure": config.structure,
        "importance": importance,
        "ratios": config.ratios if config.structure == "channels" else "block_influence",
        "nm": None,
        "target_sparsity": target,
        "achieved_sparsity": achieved,
        "layer_sparsity": layer_sparsity,
        "blocks": blocks_out,
        "owl": owl,
        "removed_layers": [p.blocks[i].name for p in parts for i in p.dropped],
        "widths": widths,
        "params": params,
        "calibration": calibration,
        "calib_dtype": config.calib_dtype,
        "seconds": round(seconds, 2),
        "peak_rss_mb": round(peak_rss_mb(), 1),
    }
