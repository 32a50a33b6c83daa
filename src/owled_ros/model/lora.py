"""Low-rank adapters for the LM: trained beside the frozen weights, shipped as a small delta, merged at load."""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn


@dataclass(frozen=True)
class LoraConfig:
    rank: int = 8
    alpha: float = 16.0
    targets: tuple[str, ...] = ("q_proj", "v_proj", "o_proj", "gate_proj", "down_proj")

    @property
    def scale(self) -> float:
        return self.alpha / self.rank


class LoraLinear(nn.Module):
    def __init__(self, base: nn.Linear, config: LoraConfig) -> None:
        super().__init__()
        self.base = base
        self.scale = config.scale
        self.lora_A = nn.Parameter(torch.randn(config.rank, base.in_features) / base.in_features**0.5)
        self.lora_B = nn.Parameter(torch.zeros(base.out_features, config.rank))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.base(x) + (x @ self.lora_A.T @ self.lora_B.T) * self.scale


def add_lora(model: nn.Module, config: LoraConfig) -> list[str]:
    """Wrap every target Linear; returns the wrapped module names."""
    names = [n for n, m in model.named_modules() if isinstance(m, nn.Linear) and n.rsplit(".", 1)[-1] in config.targets]
    for name in names:
        parent_name, child = name.rsplit(".", 1)
        parent = model.get_submodule(parent_name)
        setattr(parent, child, LoraLinear(getattr(parent, child), config))
    return names


def lora_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    return {
        f"{name}.{p}": getattr(m, p).detach().contiguous()
        for name, m in model.named_modules()
        if isinstance(m, LoraLinear)
        for p in ("lora_A", "lora_B")
    }


@torch.no_grad()
def apply_lora_delta(model: nn.Module, state: dict[str, torch.Tensor], config: LoraConfig) -> None:
    names = {k.rsplit(".", 1)[0] for k in state}
    for name in names:
        linear = model.get_submodule(name)
        linear.weight += (state[f"{name}.lora_B"] @ state[f"{name}.lora_A"]).to(linear.weight.dtype) * config.scale
