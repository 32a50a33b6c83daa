"""Scores and masks (Wanda, magnitude, N:M) and SparseGPT, on small layers with known answers."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from owled_ros.prune.apply import prune_layer
from owled_ros.observe import observe
from owled_ros.prune.config import PruneConfig
from owled_ros.prune.masks import layer_mask, nm_mask, row_mask
from owled_ros.prune.scores import wanda_scores
from owled_ros.prune.sparsegpt import sparsegpt


def _observed(layer: nn.Module, x: torch.Tensor, hessian: bool = False):
    with observe({"layer": layer}, hessian) as stats, torch.no_grad():
        layer(x)
    return stats["layer"]


def test_wanda_mask_equals_the_formula_computed_independently() -> None:
    torch.manual_seed(0)
    layer = nn.Linear(16, 8, bias=False)
    x = torch.randn(3, 40, 16) * torch.linspace(0.1, 3.0, 16)  # input features of very different size
    w = layer.weight.detach().clone()
    prune_layer(layer, _observed(layer, x), 0.5, PruneConfig("wanda", "uniform", 0.0, 0.5))

    rows = x.reshape(-1, 16)
    score = w.abs() * torch.sqrt((rows**2).sum(0))
    for i in range(8):
        expected = set(torch.argsort(score[i])[:8].tolist())
        assert set((layer.weight[i] == 0).nonzero().flatten().tolist()) == expected
    kept = layer.weight != 0
    assert torch.equal(layer.weight[kept], w[kept])


def test_pointwise_conv_statistics_equal_linear_statistics_over_pixels() -> None:
    torch.manual_seed(0)
    conv, lin = nn.Conv2d(6, 4, 1, bias=False), nn.Linear(6, 4, bias=False)
    x = torch.randn(2, 6, 5, 7)
    a, b = _observed(conv, x, hessian=True), _observed(lin, x.permute(0, 2, 3, 1), hessian=True)
    assert a.rows == b.rows == 2 * 5 * 7
    assert torch.allclose(a.sq_sum, b.sq_sum) and torch.allclose(a.hessian, b.hessian)


def test_statistics_stay_fp32_inside_a_bf16_walk() -> None:
    """A bf16 calibration walk runs its hooks under autocast; SparseGPT's X^T X must not be a bf16 product."""
    torch.manual_seed(0)
    layer, x = nn.Linear(64, 8), torch.randn(4, 50, 64)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        stats = _observed(layer, x, hessian=True)
    rows = x.reshape(-1, 64)
    assert torch.allclose(stats.hessian, rows.T @ rows, rtol=1e-5, atol=1e-4)
    assert torch.allclose(stats.sq_sum, (rows**2).sum(0), rtol=1e-6)


@pytest.mark.parametrize("width", [1, 3, 7, 64, 130])
def test_gram_from_upper_tiles_is_the_full_product(width: int) -> None:
    from owled_ros.observe import gram

    rows = torch.randn(300, width)
    assert torch.allclose(gram(rows), rows.T @ rows, rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize("sparsity", [0.29, 0.5, 0.7, 1 / 3])
def test_masks_remove_the_asked_share_within_one_rounding(sparsity: float) -> None:
    scores = torch.rand(12, 100)
    per_row = row_mask(scores, sparsity).sum(1)
    assert torch.all(per_row == round(sparsity * 100))
    assert abs(layer_mask(scores, sparsity).float().mean() - sparsity) <= 0.5 / scores.numel()
    # the removed entries are the lowest ones of their row / of the layer
    m = row_mask(scores, sparsity)
    assert torch.all(scores[m].view(12, -1).max(1).values <= scores.masked_fill(m, 2).min(1).values)


@pytest.mark.parametrize("n,m", [(2, 4), (1, 4), (4, 8)])
def test_nm_masks_hold_group_by_group(n: int, m: int) -> None:
    torch.manual_seed(1)
    scores = torch.rand(6, 32)
    mask = nm_mask(scores, n, m)
    groups, group_scores = mask.view(6, -1, m), scores.view(6, -1, m)
    assert torch.all(groups.sum(-1) == n)
    pruned_max = group_scores.masked_fill(~groups, -1).max(-1).values
    kept_min = group_scores.masked_fill(groups, 2).min(-1).values
    assert torch.all(pruned_max <= kept_min)
    with pytest.raises(ValueError):
        nm_mask(torch.rand(2, 10), 2, 4)


def test_nm_pruning_of_a_layer_holds_for_each_method() -> None:
    torch.manual_seed(2)
    x = torch.randn(200, 32)
    for method in ("magnitude", "wanda", "sparsegpt"):
        layer = nn.Linear(32, 16, bias=False)
        prune_layer(layer, _observed(layer, x, hessian=True), 0.5, PruneConfig(method, "uniform", 0.0, 0.5, nm=(2, 4)))
        assert torch.all((layer.weight == 0).view(16, -1, 4).sum(-1) == 2), method


def _inputs(n: int, d: int) -> torch.Tensor:
    """Features of very different size plus a shared component, as in LLM activations."""
    torch.manual_seed(3)
    return torch.randn(n, d) * torch.linspace(0.1, 3.0, d) + 0.5 * torch.randn(n, 1)


def test_sparsegpt_reconstructs_the_output_better_than_magnitude() -> None:
    x = _inputs(1024, 128)
    torch.manual_seed(4)
    w = torch.randn(64, 128)
    h = x.T @ x
    errors = {}
    for name in ("magnitude", "sparsegpt"):
        pruned = sparsegpt(w, h, 0.5) if name == "sparsegpt" else w.masked_fill(layer_mask(w.abs(), 0.5), 0)
        assert (pruned == 0).float().mean().item() == pytest.approx(0.5, abs=1 / 128)
        errors[name] = ((x @ w.T - x @ pruned.T) ** 2).sum().item()
    assert errors["sparsegpt"] < 0.5 * errors["magnitude"], errors


def test_sparsegpt_handles_dead_inputs_and_keeps_exact_zeros() -> None:
    x = _inputs(300, 64)
    x[:, 5] = 0  # a feature that never fires (ReLU6 channels do this)
    w = torch.randn(8, 64)
    out = sparsegpt(w, x.T @ x, 0.6)
    assert torch.all(out[:, 5] == 0) and torch.isfinite(out).all()
    assert wanda_scores(out, torch.ones(64)).eq(0).float().mean() >= 0.6 - 1 / 64
