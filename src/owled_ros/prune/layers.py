"""Which layers are pruned, and how a layer's weight reads as a matrix [out, in].

Prunable: every `nn.Linear` inside a block (LM decoder layers: q, k, v, o, gate, up, down;
CLIP/SigLIP encoder layers: q, k, v, out, fc1, fc2) and every pointwise `nn.Conv2d`
(1x1, stride 1, groups 1: the EfficientNet expand / project / head convs). A pointwise
conv is exactly a Linear over channels, applied at every pixel, so its weight is the
matrix [out, in] and its calibration rows are the pixels.

Kept dense, by choice:
- depthwise convs and the 3x3 stem: 0.18M of EfficientNet-Lite0's 3.33M conv weights
  (5.5 %, so pruning them could not buy much), and the most sensitive ones (one filter per
  channel: a pruned tap removes a channel's whole spatial context). A k x k dense conv
  would be unfolded to [out, in*k*k]; Lite0 has none besides the stem, so no unfold here;
- embeddings and lm_head (never: the DESIGN's prunable set is the blocks), norms, biases,
  BatchNorm, the projector (1M weights, the interface between the two parts).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn


def is_prunable(module: nn.Module) -> bool:
    if isinstance(module, nn.Linear):
        return True
    return (
        isinstance(module, nn.Conv2d)
        and module.groups == 1
        and tuple(module.kernel_size) == (1, 1)
        and tuple(module.stride) == (1, 1)
    )


def weight_matrix(module: nn.Module) -> torch.Tensor:
    """The weight as [out, in], a view: writing into it writes the layer."""
    return module.weight.data.view(module.weight.shape[0], -1)


@dataclass
class Block:
    """One unit of the sequential walk and of OWL's layerwise ratios."""

    name: str
    module: nn.Module
    layers: dict[str, nn.Module]  # full module name -> prunable layer

    @property
    def params(self) -> int:
        return sum(layer.weight.numel() for layer in self.layers.values())


def make_blocks(root: nn.Module, modules: list[nn.Module]) -> list[Block]:
    """Blocks named by their path in `root`, each with its prunable layers."""
    names = {id(m): n for n, m in root.named_modules()}
    blocks = []
    for module in modules:
        name = names[id(module)]
        layers = {f"{name}.{sub}": m for sub, m in module.named_modules() if sub and is_prunable(m)}
        blocks.append(Block(name, module, layers))
    return blocks
