"""prune_report.json and layer_sparsity.png: what was asked, what was assigned, what came out.

Achieved sparsities count exact zeros over the prunable layers only (layers.py), so a
dense encoder under text calibration shows as 0 and embeddings never dilute the LM's.
"""
from __future__ import annotations

from pathlib import Path

from owled_ros.machine import peak_rss_mb
from owled_ros.prune.apply import PartResult
from owled_ros.prune.config import PruneConfig
from owled_ros.prune.layers import Block
from owled_ros.prune.memory import MemoryPeaks


ZeroCounts = dict[str, tuple[int, int]]  # prunable layer name -> (zeros, weights)


def count_zeros(blocks: list[Block]) -> ZeroCounts:
    """For blocks still in memory; a streamed prune counts each block as it writes it out."""
    return {name: (int((layer.weight == 0).sum()), layer.weight.numel()) for b in blocks for name, layer in b.layers.items()}


def _zeros(blocks: list[Block], counts: ZeroCounts) -> tuple[int, int]:
    pairs = [counts[name] for b in blocks for name in b.layers]
    return sum(z for z, _ in pairs), sum(n for _, n in pairs)


def build_report(
    config: PruneConfig, parts: list[PartResult], calibration: dict, seconds: float, counts: ZeroCounts, memory: MemoryPeaks | None = None
) -> dict:
    """`memory`: the sampled anonymous / file-backed peaks (prune/memory.py), reported beside VmHWM."""
    layer_sparsity, achieved, target, blocks_out = {}, {}, {}, {}
    for part in parts:
        for b in part.blocks:
            for name in b.layers:
                zeros, weights = counts[name]
                layer_sparsity[name] = zeros / weights
        zeros, params = _zeros(part.blocks, counts)
        achieved[part.name] = zeros / params if params else 0.0
        target[part.name] = part.target
        blocks_out[part.name] = [
            {
                "name": b.name,
                "params": b.params,
                "assigned_sparsity": s,
                "achieved_sparsity": _zeros([b], counts)[0] / b.params,
                **({"outlier_ratio": part.outlier_ratios[i]} if part.outlier_ratios else {}),
            }
            for i, (b, s) in enumerate(zip(part.blocks, part.sparsities))
        ]
    all_blocks = [b for part in parts for b in part.blocks]
    zeros, params = _zeros(all_blocks, counts)
    achieved["overall"] = zeros / params if params else 0.0
    target["overall"] = sum(part.target * sum(part.params) for part in parts) / params if params else 0.0
    owl = None
    if config.ratios == "owl":
        owl = {"M": config.owl_m, "lambda": config.owl_lambda}
        for part in parts:
            owl[part.name] = {"outlier_ratios": part.outlier_ratios, "sparsities": part.sparsities}
    return {
        "method": config.method,
        "ratios": config.ratios,
        "nm": f"{config.nm[0]}:{config.nm[1]}" if config.nm else None,
        "target_sparsity": target,
        "achieved_sparsity": achieved,
        "layer_sparsity": layer_sparsity,
        "blocks": blocks_out,
        "owl": owl,
        "calibration": calibration,
        "calib_dtype": config.calib_dtype,
        "seconds": round(seconds, 2),
        "peak_rss_mb": round(peak_rss_mb(), 1),
        **(memory.to_dict() if memory is not None else {}),
    }


def plot_sparsity(report: dict, path: Path) -> None:
    """Per-block sparsity (assigned line, achieved bars) and outlier ratio, encoder above LM."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    parts = [(name, blocks) for name, blocks in report["blocks"].items() if blocks]
    fig, axes = plt.subplots(len(parts), 1, figsize=(10, 3.2 * len(parts)), squeeze=False)
    for ax, (name, blocks) in zip(axes[:, 0], parts):
        x = range(len(blocks))
        ax.bar(x, [b["achieved_sparsity"] for b in blocks], color="tab:blue", alpha=0.6, label="achieved")
        ax.plot(x, [b["assigned_sparsity"] for b in blocks], "k.-", label="assigned")
        ax.set_ylim(0, 1)
        ax.set_ylabel("sparsity")
        ax.set_xlabel(f"{name} block (those with prunable layers, in model order)")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_title(f"{name}: {report['method']} / {report['ratios']}, target {report['target_sparsity'][name]:.2f}")
        if "outlier_ratio" in blocks[0]:
            twin = ax.twinx()
            twin.plot(x, [100 * b["outlier_ratio"] for b in blocks], "r^--", label="outliers")
            twin.set_ylabel("outlier ratio (%)", color="tab:red")
        ax.legend(loc="lower left")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
