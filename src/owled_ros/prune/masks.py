"""Pruning masks from scores: True marks a weight to remove (the lowest scores go).

Scores are [out, in] matrices. Which weights compete with each other is the method's
choice: the whole layer (magnitude), one output row (Wanda), or N:M groups of M
consecutive inputs of one row (any method; hardware 2:4 sparsity is N:M along the
input dimension).
"""
from __future__ import annotations

import torch


def _count(n: int, sparsity: float) -> int:
    """How many of n weights go; nearest integer, so no float noise (0.29 * 100) drops one."""
    return int(round(sparsity * n))


def _lowest(scores: torch.Tensor, k: int) -> torch.Tensor:
    """Mask of the k lowest entries along the last dimension."""
    mask = torch.zeros_like(scores, dtype=torch.bool)
    if k > 0:
        mask.scatter_(-1, torch.topk(scores, k, dim=-1, largest=False).indices, True)
    return mask


def layer_mask(scores: torch.Tensor, sparsity: float) -> torch.Tensor:
    """The lowest `sparsity` share of the whole matrix."""
    flat = scores.reshape(-1)
    return _lowest(flat, _count(flat.numel(), sparsity)).view_as(scores)


def row_mask(scores: torch.Tensor, sparsity: float) -> torch.Tensor:
    """The lowest `sparsity` share of each output row."""
    return _lowest(scores, _count(scores.shape[1], sparsity))


def nm_mask(scores: torch.Tensor, n: int, m: int) -> torch.Tensor:
    """The n lowest of every group of m consecutive inputs in each row."""
    rows, cols = scores.shape
    if cols % m:
        raise ValueError(f"N:M {n}:{m} needs the input dimension to be a multiple of {m}, got {cols}")
    return _lowest(scores.reshape(rows, cols // m, m), n).view(rows, cols)
