"""Importance scores of a layer's weights, as pure functions of (weight, input statistics)."""
from __future__ import annotations

import torch


def magnitude_scores(weight: torch.Tensor) -> torch.Tensor:
    return weight.abs()


def wanda_scores(weight: torch.Tensor, input_norm: torch.Tensor) -> torch.Tensor:
    """|W[i, j]| * ||X_j||_2: a weight matters as much as the inputs it multiplies."""
    return weight.abs() * input_norm.view(1, -1)
