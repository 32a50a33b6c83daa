"""OWL: Outlier-Weighed Layerwise sparsity (Yin et al. 2024), with blocks of unequal size.

Per block, the layerwise outlier distribution D is the share of the block's Wanda
scores (all its prunable layers pooled) above M times their mean. D is min-max
normalized to [0, 2*lambda]; a block's sparsity is S + lambda + c - D_norm, clipped
to [S - lambda, S + lambda], so more outliers mean less pruning. The shift c is solved
so that the PARAMETER-WEIGHTED mean sparsity is exactly S.

Where this departs from the reference code: the reference shifts by the plain mean of
D_norm (every LLaMA block has the same size), which leaves its sparsities in
[S - 2*lambda + mean, S + mean] rather than the paper's S +- lambda. Blocks here differ
in size (encoder stages), so the mean is weighted by parameters, and the bounds are
enforced by clipping; the mean is then re-solved under the clip. Without clipping and
with equal sizes it is the reference's formula: c = mean(D_norm) - lambda.
"""
from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence

import numpy as np
import torch

BISECTION_STEPS = 200


def outlier_ratio(scores: Callable[[], Iterable[torch.Tensor]], m: float) -> float:
    """Share of the pooled scores above m * their mean. `scores` gives the block's per-layer scores afresh
    on each call, and is called twice (mean, then count): one layer's scores in memory at a time, not a
    pooled copy (a 7B-wide block's are 0.8 GB in fp32)."""
    total, count = 0.0, 0
    for s in scores():
        total += float(s.sum())  # fp32 per layer (a float64 copy would double the peak), pooled in a Python float
        count += s.numel()
    threshold = m * total / count
    above = sum(int((s > threshold).sum()) for s in scores())
    return above / count


def owl_sparsities(outlier_ratios: Sequence[float], params: Sequence[int], target: float, lam: float) -> list[float]:
    """Per-block sparsities in [target - lambda, target + lambda] (and [0, 1]) whose
    parameter-weighted mean is `target`; the block with the most outliers is pruned least."""
    d = np.asarray(outlier_ratios, dtype=np.float64)
    w = np.asarray(params, dtype=np.float64)
    if len(d) != len(w) or not len(d) or w.sum() <= 0:
        raise ValueError("owl_sparsities needs one outlier ratio and a positive total parameter count per block")
    span = d.max() - d.min()
    norm = (d - d.min()) / span * 2 * lam if span > 0 else np.zeros_like(d)
    lo, hi = max(target - lam, 0.0), min(target + lam, 1.0)

    def sparsities(c: float) -> np.ndarray:
        return np.clip(target + lam + c - norm, lo, hi)

    def weighted_mean(c: float) -> float:
        return float(np.dot(w, sparsities(c)) / w.sum())

    # weighted_mean rises monotonically with c from lo (c = -3 lambda) to hi (c = +lambda)
    a, b = -3 * lam - 1.0, lam + 1.0
    for _ in range(BISECTION_STEPS):
        mid = (a + b) / 2
        a, b = (mid, b) if weighted_mean(mid) < target else (a, mid)
    return sparsities((a + b) / 2).tolist()
