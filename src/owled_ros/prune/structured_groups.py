"""The removable structures of a block, and how a per-weight quantity sums to one number per unit.

A `ChannelGroup` is a set of interchangeable units of one block (LM MLP channels, LM KV
groups, or EfficientNet MBConv expansion channels). `members` lists every weight a unit owns,
with the axis along which the units lie: removing unit u removes slice u of each (see
prune/structured_surgery.py). Any per-weight map (w * dL/dw, |W| * ||X||, g1 * g2) becomes a
per-unit vector with `per_unit`, so every importance uses the same bookkeeping.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from owled_ros.model.efficientnet_lite import MBConvBlock
from owled_ros.prune.layers import Block

KINDS = ("mlp", "heads", "mbconv")


@dataclass
class ChannelGroup:
    kind: str  # one of KINDS
    block: str  # the Block's name (OWL's unit)
    module: nn.Module  # the MLP, the attention, or the MBConv block
    units: int
    members: list[tuple[nn.Module, int]]  # (layer, axis of the units in its weight)
    consumer: nn.Module  # the layer that reads the units as input columns (activation score)

    @property
    def unit_params(self) -> int:
        return sum(layer.weight.numel() for layer, _ in self.members) // self.units

    @property
    def params(self) -> int:
        return self.unit_params * self.units


def per_unit(group: ChannelGroup, values: Callable[[nn.Module], torch.Tensor]) -> torch.Tensor:
    """Sum of values(layer) (shaped like layer.weight) over each unit's slice of every member -> (units,)."""
    total = torch.zeros(group.units, dtype=torch.float64)
    for layer, axis in group.members:
        v = values(layer).detach().movedim(axis, 0)
        total += v.reshape(group.units, -1).sum(1).double().cpu()
    return total


def lm_groups(block: Block) -> list[ChannelGroup]:
    """MLP channels and KV groups of one decoder layer."""
    layer = block.module
    mlp, attn = layer.mlp, layer.self_attn
    kv_heads = attn.k_proj.out_features // attn.head_dim
    return [
        ChannelGroup("mlp", block.name, mlp, mlp.gate_proj.out_features,
                     [(mlp.gate_proj, 0), (mlp.up_proj, 0), (mlp.down_proj, 1)], mlp.down_proj),
        ChannelGroup("heads", block.name, attn, kv_heads,
                     [(attn.q_proj, 0), (attn.k_proj, 0), (attn.v_proj, 0), (attn.o_proj, 1)], attn.o_proj),
    ]


def encoder_groups(block: Block) -> list[ChannelGroup]:
    """Expansion channels of an MBConv block with an expand conv; nothing for the stem, head or expand-1 block."""
    m = block.module
    if not isinstance(m, MBConvBlock) or not m.has_expand:
        return []
    return [ChannelGroup("mbconv", block.name, m, m._expand_conv.out_channels,
                         [(m._expand_conv, 0), (m._depthwise_conv, 0), (m._project_conv, 1)], m._project_conv)]

