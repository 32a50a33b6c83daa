"""Prune one part of a model (a list of blocks) with a method and per-block ratios.

OWL ratios need every block's outlier ratio before any block is pruned (they are
min-max normalized over all blocks), so OWL makes a first sequential pass over the
DENSE part that only collects Wanda statistics, as the reference code does; the
pruning pass follows. Uniform ratios skip that pass. Magnitude pruning reads no data,
so uniform magnitude runs no calibration at all.
"""
from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import torch
from torch import nn

from owled_ros.errors import OwledError
from owled_ros.prune.calibrate import RESIDENT, BlockStore, Captured, LayerStats, walk
from owled_ros.prune.config import PruneConfig
from owled_ros.prune.layers import Block, weight_matrix
from owled_ros.prune.masks import layer_mask, nm_mask, row_mask
from owled_ros.prune.owl import outlier_ratio, owl_sparsities
from owled_ros.prune.scores import magnitude_scores, wanda_scores
from owled_ros.prune.sparsegpt import sparsegpt


@dataclass
class PartResult:
    """What was assigned to each prunable block of one part (encoder or llm)."""

    name: str
    target: float
    blocks: list[Block]  # the blocks that hold prunable layers
    sparsities: list[float]
    outlier_ratios: list[float] | None = None

    @property
    def params(self) -> list[int]:
        return [b.params for b in self.blocks]


@torch.no_grad()
def prune_layer(layer: nn.Module, stats: LayerStats | None, sparsity: float, config: PruneConfig) -> None:
    """Zero the layer's weights in place (SparseGPT also updates the kept ones)."""
    w = weight_matrix(layer)
    if config.method == "sparsegpt":
        w.copy_(sparsegpt(w, stats.hessian, sparsity, config.nm))
        return
    scores = magnitude_scores(w) if config.method == "magnitude" else wanda_scores(w, stats.norm)
    if config.nm is not None:
        mask = nm_mask(scores, *config.nm)
    else:
        # magnitude compares a whole layer, Wanda each output row (as in their papers)
        mask = (layer_mask if config.method == "magnitude" else row_mask)(scores, sparsity)
    w[mask] = 0


def block_wanda_scores(block: Block, stats: dict[str, LayerStats]) -> Iterator[torch.Tensor]:
    """Each prunable layer's Wanda scores, one at a time (OWL's outlier statistics pool them)."""
    return (wanda_scores(weight_matrix(layer), stats[name].norm) for name, layer in block.layers.items())


def outlier_ratios(
    blocks: list[Block], captured: Captured, ms: Sequence[float], desc: str = "owl", dtype: str = "fp32", store: BlockStore = RESIDENT
) -> dict[float, list[float]]:
    """Per prunable block, the share of Wanda scores above M * mean, for each M (one dense pass)."""
    ratios: dict[float, list[float]] = {m: [] for m in ms}

    def visit(_k: int, block: Block, stats: dict[str, LayerStats]) -> None:
        if block.layers:
            for m in ms:
                ratios[m].append(outlier_ratio(lambda: block_wanda_scores(block, stats), m))

    walk(blocks, captured, visit, prunes=False, hessian=False, desc=desc, dtype=dtype, store=store)
    return ratios


def _check_nm(blocks: list[Block], nm: tuple[int, int] | None) -> None:
    """Refuse before any work starts, not halfway through the walk."""
    if nm is None:
        return
    for block in blocks:
        for name, layer in block.layers.items():
            cols = weight_matrix(layer).shape[1]
            if cols % nm[1]:
                raise OwledError(f"{name}: input dimension {cols} is not a multiple of M={nm[1]}; N:M {nm[0]}:{nm[1]} cannot apply")


def prune_part(
    name: str,
    blocks: list[Block],
    capture: Callable[[], Captured],
    target: float,
    config: PruneConfig,
    dense_outlier_ratios: list[float] | None = None,
    store: BlockStore = RESIDENT,
    keep_capture: bool = False,
) -> PartResult:
    """Prune the blocks to `target` (block-wise by config.ratios); `capture` runs only if data is needed.

    `dense_outlier_ratios` lets sweeps over S and lambda reuse one OWL pass (`outlier_ratios`).
    `store` says where the blocks' weights live (prune/stream.py streams them from disk).
    The pruning walk replaces the captured inputs as it goes, unless `keep_capture` (a caller
    that prunes several times from one capture).
    """
    prunable = [b for b in blocks if b.layers]
    result = PartResult(name, target, prunable, [0.0] * len(prunable))
    if target == 0 or not prunable:
        return result
    _check_nm(prunable, config.nm)
    owl_pass = config.ratios == "owl" and dense_outlier_ratios is None
    captured = capture() if config.method != "magnitude" or owl_pass else None
    if config.ratios == "owl":
        if owl_pass:
            dense_outlier_ratios = outlier_ratios(blocks, captured, [config.owl_m], f"{name} owl", config.calib_dtype, store)[config.owl_m]
        result.outlier_ratios = list(dense_outlier_ratios)
        result.sparsities = owl_sparsities(result.outlier_ratios, result.params, target, config.owl_lambda)
    else:
        result.sparsities = [target] * len(prunable)
    assigned = {b.name: s for b, s in zip(prunable, result.sparsities)}

    if config.method == "magnitude":
        for block in prunable:
            store.load(block)
            for layer in block.layers.values():
                prune_layer(layer, None, assigned[block.name], config)
            store.unload(block, True)
        return result

    def visit(_k: int, block: Block, stats: dict[str, LayerStats]) -> None:
        for layer_name, layer in block.layers.items():
            prune_layer(layer, stats[layer_name], assigned[block.name], config)

    walk(blocks, captured, visit, prunes=True, hessian=config.method == "sparsegpt", desc=f"{name} {config.method}",
         dtype=config.calib_dtype, store=store, consume=not keep_capture, inputs=config.calib_inputs)
    return result
