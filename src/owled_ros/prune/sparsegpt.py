"""SparseGPT (Frantar & Alistarh 2023): prune with OBS weight updates, after the reference.

H = X X^T over the calibration rows, dampened by 1 % of its mean diagonal, inverted and
factored as an upper Cholesky factor U (H^-1 = U^T U). Columns go in blocks of 128: the
block's mask takes the lowest w^2 / U_jj^2 (unstructured: over the block's tile; N:M:
per group, chosen when the group is reached), then column by column the pruned
weights are zeroed and the error is spread over the remaining columns, first inside
the block, then at once onto all later columns.
"""
from __future__ import annotations

import torch

from owled_ros.prune.masks import layer_mask, nm_mask

BLOCK_SIZE = 128
PERCENT_DAMP = 0.01


def _inverse_cholesky(hessian: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    h = hessian.clone()
    dead = torch.diag(h) == 0  # inputs that were always zero: their weights carry nothing
    h[dead, dead] = 1
    weight[:, dead] = 0
    h.diagonal().add_(PERCENT_DAMP * torch.mean(torch.diag(h)))
    h = torch.cholesky_inverse(torch.linalg.cholesky(h))
    return torch.linalg.cholesky(h, upper=True)


@torch.no_grad()
def sparsegpt(
    weight: torch.Tensor,
    hessian: torch.Tensor,
    sparsity: float,
    nm: tuple[int, int] | None = None,
    block_size: int = BLOCK_SIZE,
) -> torch.Tensor:
    """The pruned and updated [out, in] weight (float32, pruned entries exactly 0)."""
    if nm is not None and block_size % nm[1]:
        raise ValueError(f"N:M groups of {nm[1]} must tile the column blocks of {block_size}")
    w = weight.detach().float().clone()
    hinv = _inverse_cholesky(hessian.float(), w)
    cols = w.shape[1]
    for i1 in range(0, cols, block_size):
        i2 = min(i1 + block_size, cols)
        w1 = w[:, i1:i2].clone()
        err1 = torch.zeros_like(w1)
        hinv1 = hinv[i1:i2, i1:i2]
        d = torch.diag(hinv1)
        if nm is None:
            mask1 = layer_mask(w1.square() / d.square().view(1, -1), sparsity)
        else:
            mask1 = torch.zeros_like(w1, dtype=torch.bool)  # filled group by group below
        for i in range(i2 - i1):
            if nm is not None and i % nm[1] == 0:
                group = slice(i, i + nm[1])
                mask1[:, group] = nm_mask(w1[:, group].square() / d[group].square().view(1, -1), *nm)
            col = w1[:, i]
            q = torch.where(mask1[:, i], torch.zeros_like(col), col)
            e = (col - q) / hinv1[i, i]
            w1[:, i:].addr_(e, hinv1[i, i:], alpha=-1)  # rank-1 OBS update; 7x a k=1 matmul on CPU
            w1[:, i] = q  # exact zeros, not col - e * hinv1[i, i] up to rounding
            err1[:, i] = e
        w[:, i1:i2] = w1
        w[:, i2:] -= err1 @ hinv[i1:i2, i2:]
    return w
