"""LLaVA-style projector: encoder tokens -> LM embedding space, plus a learned position per token."""
from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import nn


@dataclass
class ProjectorConfig:
    in_dim: int
    out_dim: int
    n_tokens: int
    hidden_dim: int | None = None
    position_embedding: bool = True

    def to_dict(self) -> dict:
        return asdict(self)


class MLPProjector(nn.Module):
    """Linear-GELU-Linear as in LLaVA-1.5 (so a LLaVA projector loads into it unchanged)."""

    def __init__(self, config: ProjectorConfig) -> None:
        super().__init__()
        self.config = config
        hidden = config.hidden_dim or config.out_dim
        self.linear_1 = nn.Linear(config.in_dim, hidden)
        self.act = nn.GELU()
        self.linear_2 = nn.Linear(hidden, config.out_dim)
        self.position = nn.Parameter(torch.zeros(config.n_tokens, config.out_dim)) if config.position_embedding else None

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        out = self.linear_2(self.act(self.linear_1(tokens)))
        return out + self.position if self.position is not None else out
